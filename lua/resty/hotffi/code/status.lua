-- resty.hotffi.code.status -- workers' reports and the instance's status.
--
-- What each worker and the leader report in the lua_shared_dict (JSON
-- records on resty.hotffi.bus), and the instance's status made of them: what
-- code.status() and the admin handler show.

local bus = require "resty.hotffi.bus"
local control = require "resty.hotffi.control"
local store = require "resty.hotffi.code.store"

local array = control.array
local ipairs = ipairs
local now = ngx.now
local null = ngx.null
local sort = table.sort
local type = type

local _M = { version = "0.1.0" }

-- lua_shared_dict keys
local K_SOURCE = "src"     -- the source's state, written by the leader
local K_WORKER = "w:"      -- w:<pid>: one worker's state

local WORKER_TTL = 10      -- a worker's report outlives it this long

local reports              -- the bus over the dict
local pid


-- Starts the reports of this worker over ngx.shared[c.dict].
function _M.init(c)
    reports = bus.new(ngx.shared[c.dict], "resty.hotffi.code")
    pid = ngx.worker.pid()
end


-- nil as JSON null, for the record's fields that are not set.
local function fill(rec, names)
    for _, k in ipairs(names) do
        if rec[k] == nil then
            rec[k] = null
        end
    end
    return rec
end

local WORKER_FIELDS = {
    "id", "version", "wanted", "error", "last_error", "last_error_version",
    "last_error_at", "applied_at", "modules",
}

local SOURCE_FIELDS = {
    "kind", "name", "checked_by", "error", "error_since", "checked_at",
    "last_refused", "nothing_published",
}


-- Stores this worker's report `rec` (fields WORKER_FIELDS, and pinned,
-- an array of module names); it outlives the worker WORKER_TTL seconds.
function _M.report_worker(rec)
    rec.pid = pid
    rec.updated_at = now()
    rec.pinned = array(rec.pinned or {})
    reports:put(K_WORKER .. pid, fill(rec, WORKER_FIELDS), WORKER_TTL)
end


-- Removes this worker's report (it exits).
function _M.remove_worker()
    reports:delete(K_WORKER .. pid)
end


-- Stores the leader's report of the source (fields SOURCE_FIELDS).
function _M.report_source(rec)
    reports:put(K_SOURCE, fill(rec, SOURCE_FIELDS))
end


-- The leader's report of the source, or nil before its first.
function _M.source()
    return reports:get(K_SOURCE)
end


-- The whole instance's state, from the shared dict (see
-- docs/code-reload.md, "The admin handler").
function _M.instance()
    local out = {
        version = store.current() or null,
        history = array(store.history()),
        rolled_back_from = store.rolled_back_from() or null,
        workers = array({}),
    }
    out.source = reports:get(K_SOURCE)
    for _, w in ipairs(reports:records(K_WORKER)) do
        if type(w) == "table" then
            w.pinned = array(w.pinned or {})
            out.workers[#out.workers + 1] = w
        end
    end
    sort(out.workers, function(a, b)
        if a.id ~= b.id then
            return a.id < b.id
        end
        return a.pid < b.pid
    end)
    return out
end


return _M
