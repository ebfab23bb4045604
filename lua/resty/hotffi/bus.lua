-- resty.hotffi.bus -- the control plane's one command bus.
--
-- The control plane's command bus: numbered commands in a lua_shared_dict
-- that every nginx worker applies and reports on, and JSON records (cjson)
-- of what workers report.  Used by resty.hotffi.admin (commands run in
-- order) and resty.hotffi.code (the current version, which workers follow,
-- and its workers' reports); see docs/reload.md and docs/code-reload.md.
--
-- How a command travels:
--
--   post() --cmd:<n>--> lua_shared_dict --each worker's timer--> run(cmd)
--   --res:<n>:<worker id>--> lua_shared_dict --> collect()
--
-- The request that asks stores a numbered command; every worker looks
-- for new commands every `poll` seconds, runs them one at a time, in
-- order, and stores its report; the request waits, bounded, for one
-- report per worker.  Commands from before a worker started are not for
-- it.
--
-- The current command is the other kind: one numbered command that
-- replaces the one before; a worker follows it (applies the newest, and
-- skips those it missed) whenever it looks, which is cheap: one string
-- compared.

local control = require "resty.hotffi.control"

local ngx = ngx
local concat = table.concat
local decode = control.decode
local error = error
local exiting = ngx.worker.exiting
local ipairs = ipairs
local json = control.json
local log = ngx.log
local match = string.match
local now = ngx.now
local pcall = pcall
local setmetatable = setmetatable
local sleep = ngx.sleep
local sub = string.sub
local timer_every = ngx.timer.every
local tostring = tostring
local update_time = ngx.update_time
local worker_count = ngx.worker.count
local worker_id = ngx.worker.id
local worker_pid = ngx.worker.pid

local ERR = ngx.ERR


local _M = { version = "0.1.0" }

-- lua_shared_dict keys
local K_SERIAL = "serial"  -- the last command's number
local K_CMD = "cmd:"       -- cmd:<n>: the command
local K_RES = "res:"       -- res:<n>:<worker id>: a worker's report
local K_CURRENT = "current"
                           -- "<n> <command>": the current command
local K_CURRENT_SERIAL = "current_serial"
local K_PID = "pid:"       -- pid:<worker id>: the pid serving that id now

local CMD_TTL = 600        -- seconds a command and its reports are kept
local WAIT_STEP = 0.01     -- seconds between looks for reports
local LATE = 1             -- seconds a numbered command may take to be
                           -- stored (by another worker) before it counts
                           -- as lost


local bus = {}
bus.__index = bus


-- A bus over lua_shared_dict `dict` (the dict itself); `who` names its
-- user in messages.  Any phase.
function _M.new(dict, who)
    return setmetatable({ dict = dict, who = who, seen = 0,
                          busy = false }, bus)
end


-- Stores JSON record `value` under `key` (for `ttl` seconds, or for
-- good).  Returns true, or nil and a message.
function bus:put(key, value, ttl)
    local text, err = json(value)
    if not text then
        return nil, err
    end
    return self.dict:set(key, text, ttl)
end


-- The JSON record under `key`, or nil.
function bus:get(key)
    return decode(self.dict:get(key))
end


-- Removes the record under `key`.
function bus:delete(key)
    self.dict:delete(key)
end


-- The JSON records whose keys start with `prefix` (an array; the dict's
-- keys are walked: for a few records, not for many).
function bus:records(prefix)
    local out = {}
    for _, key in ipairs(self.dict:get_keys(0)) do
        if sub(key, 1, #prefix) == prefix then
            out[#out + 1] = self:get(key)
        end
    end
    return out
end


-- Makes `cmd` (a table) the current command; returns its number.  Call
-- it under a lock where what it posts depends on what it read.
function bus:set_current(cmd)
    local text, err = json(cmd)
    if not text then
        return nil, err
    end
    local n = self.dict:incr(K_CURRENT_SERIAL, 1, 0)
    local ok
    ok, err = self.dict:set(K_CURRENT, n .. " " .. text)
    if not ok then
        return nil, "lua_shared_dict: " .. tostring(err)
    end
    return n
end


-- The current command as it is stored (a string that changes with every
-- command: compare it to see whether there is a new one), or nil.
function bus:current()
    return self.dict:get(K_CURRENT)
end


-- A stored current command (what current() returned) as a table, or
-- nil.  The last one read is kept: the same text is read again often.
local last_text, last_cmd
function _M.command_of(text)
    if text ~= last_text then
        last_cmd = decode(text and match(text, "^%d+ (.*)$"))
        last_text = text
    end
    return last_cmd
end


-- Stores a command (a table); returns its number, or nil and a message.
function bus:post(cmd)
    local n, err = self.dict:incr(K_SERIAL, 1, 0)
    if not n then
        return nil, "lua_shared_dict: " .. tostring(err)
    end
    local ok
    ok, err = self:put(K_CMD .. n, cmd, CMD_TTL)
    if not ok then
        return nil, "lua_shared_dict: " .. tostring(err)
    end
    return n
end


-- Whether command `cmd` is for the worker with id `id`: a command that
-- names its workers (cmd.workers, an array of ids) is for those only.
local function addressed(cmd, id)
    if not cmd.workers then
        return true
    end
    for _, w in ipairs(cmd.workers) do
        if w == id then
            return true
        end
    end
    return false
end


-- Runs command n in this worker and stores the report; false when the
-- command is not stored yet (posted a moment ago by another worker).
function bus:run(n, apply)
    local cmd = self:get(K_CMD .. n)
    local res
    if cmd and not addressed(cmd, worker_id()) then
        return true
    elseif not cmd then
        self.missing_since = self.missing_since or now()
        if now() - self.missing_since < LATE then
            return false
        end
        res = { ok = false, error = "no such command (expired?)" }
    else
        local ok, r = pcall(apply, cmd)
        res = ok and r or { ok = false, error = tostring(r) }
    end
    self.missing_since = nil
    res.id = worker_id()
    res.pid = worker_pid()
    local ok, err = self:put(K_RES .. n .. ":" .. res.id, res, CMD_TTL)
    if not ok then
        log(ERR, self.who, ": cannot store a report: ", err)
    end
    return true
end


-- Starts this worker's part: every `poll` seconds, runs each new
-- command, in order, with apply(cmd), which returns the report (a table
-- with `ok`; an error is reported as {ok = false, error = ...}).
-- Context: init_worker_by_lua*.
function bus:listen(poll, apply)
    local dict = self.dict
    -- commands from before this worker started are not for it
    self.seen = dict:get(K_SERIAL) or 0
    -- a worker that waits for this one's report sees it was replaced
    dict:set(K_PID .. worker_id(), worker_pid())
    local function tick(premature)
        if premature or self.busy or exiting() then
            return
        end
        self.busy = true
        local last = dict:get(K_SERIAL) or 0
        while self.seen < last and self:run(self.seen + 1, apply) do
            self.seen = self.seen + 1
        end
        self.busy = false
    end
    local ok, err = timer_every(poll, tick)
    if not ok then
        error(self.who .. ": ngx.timer.every() failed: " .. tostring(err), 3)
    end
end


-- The pid serving each worker id now, by id.
function bus:pids()
    local pids = {}
    for id = 0, worker_count() - 1 do
        pids[id] = self.dict:get(K_PID .. id)
    end
    return pids
end


-- The reports of command n by the workers `ids` (an array), waited for
-- at most `wait` seconds: an array, in the order of `ids`.  A worker
-- that did not report within the time is reported as {id = id, ok =
-- false, error = "no answer ..."}; one whose pid is no longer the one in
-- `pids` (as bus:pids() gave it before the command was posted) died
-- meanwhile, and is reported as such at once.
function bus:collect(n, wait, ids, pids)
    local reports = {}
    local deadline = now() + wait

    while true do
        local missing = 0
        for i, id in ipairs(ids) do
            if not reports[i] then
                reports[i] = self:get(K_RES .. n .. ":" .. id)
                local pid = self.dict:get(K_PID .. id)
                if not reports[i] and pid ~= pids[id] then
                    reports[i] = { id = id, ok = false, pid = pids[id],
                                   error = "worker " .. id .. " (pid "
                                           .. tostring(pids[id])
                                           .. ") exited before it "
                                           .. "answered; pid "
                                           .. tostring(pid)
                                           .. " serves in its place" }
                end
                if not reports[i] then
                    missing = missing + 1
                end
            end
        end
        if missing == 0 or now() >= deadline then
            break
        end
        sleep(WAIT_STEP)
        update_time()
    end

    for i, id in ipairs(ids) do
        reports[i] = reports[i]
            or { id = id, ok = false,
                 error = "no answer within " .. wait .. " s" }
    end
    return control.array(reports)
end


-- Posts command `cmd` and waits, at most `wait` seconds, for the report
-- of every worker it is for (cmd.workers, an array of worker ids; every
-- worker when nil).  Returns {op = cmd.op, ok = <all ok>, workers =
-- reports, error = "failed in worker(s) 1, 3" when one was not ok}, or
-- nil and a message when the command could not be posted.
function bus:ask(cmd, wait)
    local ids = cmd.workers
    if not ids then
        ids = {}
        for id = 0, worker_count() - 1 do
            ids[#ids + 1] = id
        end
    end
    local pids = self:pids()
    local n, err = self:post(cmd)
    if not n then
        return nil, err
    end
    local reports = self:collect(n, wait, ids, pids)
    local failed = {}
    for _, r in ipairs(reports) do
        if not r.ok then
            failed[#failed + 1] = tostring(r.id)
        end
    end
    return { op = cmd.op, ok = #failed == 0, workers = reports,
             error = failed[1] and "failed in worker(s) "
                                   .. concat(failed, ", ") or nil }
end


return _M
