-- resty.hotffi.code.worker -- this worker's code version, kept current.
--
-- This worker's code version: brings it to the stamp of the shared dict
-- (resty.hotffi.code.store) with resty.hotffi.code.loader, remembers why a
-- version was refused, reports to resty.hotffi.code.status, and finds the
-- current module for require() and handler().  Workers never talk to the
-- source.

local conf_mod = require "resty.hotffi.code.conf"
local loader = require "resty.hotffi.code.loader"
local status = require "resty.hotffi.code.status"
local store = require "resty.hotffi.code.store"

local bundle = require "resty.hotffi.code.bundle"

local error = error
local format = string.format
local get_phase = ngx.get_phase
local loaded = package.loaded
local log = ngx.log
local now = ngx.now
local pairs = pairs
local pcall = pcall
local sleep = ngx.sleep
local sort = table.sort
local type = type
local timer_every = ngx.timer.every
local update_time = ngx.update_time
local worker_id = ngx.worker.id
local worker_pid = ngx.worker.pid

local ERR = ngx.ERR
local NOTICE = ngx.NOTICE

local _M = { version = "0.1.0" }

local REPORT_EVERY = 1     -- seconds between a worker's reports

local YIELDABLE = {
    rewrite = true, access = true, content = true, timer = true,
}

local conf

-- this worker's state
local applied_stamp        -- the stamp it applied, nil before the first
local applied_version
local applied_at
local refused_stamp        -- the stamp it refused last, so as not to retry
local cur_error            -- why the wanted version is not running
local last_error, last_error_version, last_error_at
local reported_at = 0


-- The version this worker runs, or nil.
function _M.version()
    return applied_version
end


-- Remembers the last error of a version, for the report.
function _M.record_error(version, err)
    last_error, last_error_version, last_error_at = err, version, now()
end


-- The audit line of a refused version: one per version refused, by the
-- worker that refused it (`where` says more: "at the source" for the
-- leader's checks).  Its applied twin is in try_apply.
function _M.log_refused(version, err, where)
    log(ERR, "code version \"", version, "\" refused",
        where and " " .. where or "", ": ", conf_mod.source_name(conf),
        ", worker ", worker_pid(), ", \"", applied_version or "none",
        "\" -> \"", version, "\" not made, still serving \"",
        applied_version or "none", "\": ", err)
end


-- Stores this worker's report now.
function _M.report()
    local pinned = {}
    for name in pairs(loader.pinned()) do
        pinned[#pinned + 1] = name
    end
    sort(pinned)
    status.report_worker{
        id = worker_id() or 0, version = applied_version,
        wanted = store.current(), error = cur_error,
        last_error = last_error, last_error_version = last_error_version,
        last_error_at = last_error_at, applied_at = applied_at,
        modules = loader.count(), pinned = pinned,
    }
    reported_at = now()
end


-- What a worker that runs some version compares a new one against, for
-- the modules it has not loaded itself: the version workers ran when the
-- new one was made current (the stamp's <ran>).  So a worker that
-- skipped versions judges a module's FFI use as the workers that did not
-- skip them do (see resty.hotffi.code.loader).  A worker with no version
-- loads everything fresh.
function _M.baseline(ran)
    if not applied_version or ran == nil then
        return nil
    end
    return store.bundle(ran)
end


-- Applies one version from the dict, made current while version `ran`
-- was what workers ran (`instead` of the current one, which this worker
-- refused).  Returns true, or nil and a message.
local function try_apply(version, ran, instead)
    local text = store.text(version)
    if not text then
        return nil, format("version \"%s\" is not in lua_shared_dict"
                           .. " \"%s\"", version, conf.dict)
    end
    local b, err = bundle.parse(text, nil, { trusted = true,
                                             max_size = #text })
    if not b then
        return nil, err
    end
    if b.version ~= version then
        return nil, format("the bundle stored as \"%s\" says version"
                           .. " \"%s\"", version, b.version)
    end
    update_time()
    local t0 = now()
    local ok, info = loader.apply(b, _M.baseline(ran))
    if not ok then
        return nil, info
    end
    update_time()
    local from = applied_version
    applied_version, applied_at = version, now()
    store.set_ran(version)
    log(NOTICE, "code version \"", version, "\" applied",
        instead and " instead of \"" .. instead .. "\"" or "", ": ",
        conf_mod.source_name(conf), ", worker ", worker_pid(), ", \"",
        from or "none", "\" -> \"", version, "\", ", info.loaded, " of ",
        info.modules, " modules loaded in ",
        format("%.1f", (now() - t0) * 1000), " ms")
    return true
end


local function apply_stamp(stamp)
    local version = store.stamp_version(stamp)
    local ok, err = try_apply(version, store.stamp_ran(stamp))
    if ok then
        applied_stamp, refused_stamp, cur_error = stamp, nil, nil
    else
        refused_stamp, cur_error = stamp, err
        _M.record_error(version, err)
        store.refuse(version, err)
        _M.log_refused(version, err)
    end
    _M.report()
    return ok, err
end


-- Brings this worker to the version of the stamp; cheap when it is there.
function _M.sync()
    local stamp = store.stamp()
    if stamp == nil or stamp == applied_stamp or stamp == refused_stamp
       or loader.busy()
    then
        return
    end
    apply_stamp(stamp)
end


local function tick(premature)
    if premature then
        status.remove_worker()
        return
    end
    local ok, err = pcall(_M.sync)
    if not ok then
        log(ERR, "code sync failed: ", err)
    end
    if now() - reported_at >= REPORT_EVERY then
        _M.report()
    end
end


-- Configures this worker's part (configuration `c`), before the
-- leader's first look.
function _M.init(c)
    conf = c
end


-- Starts this worker: applies the current version (or, when it cannot,
-- the newest older one it can), reports, and looks at the stamp every
-- conf.poll seconds.  Context: init_worker_by_lua*.
function _M.start()
    local stamp = store.stamp()
    if stamp then
        _M.sync()       -- done already when this worker published it
        -- a new worker that cannot load the current version serves the
        -- newest older one it can
        local hist = store.history()
        for i = #hist, 1, -1 do
            if applied_version then
                break
            end
            local current = store.stamp_version(stamp)
            if hist[i] ~= current then
                local ok, err = try_apply(hist[i], nil, current)
                if not ok then
                    _M.log_refused(hist[i], err, "as a fallback")
                end
            end
        end
    end
    _M.report()
    local ok, err = timer_every(conf.poll, tick)
    if not ok then
        error("resty.hotffi.code: ngx.timer.every() failed: " .. err, 3)
    end
end


-- Why there is no version yet, as the leader saw the source: nothing
-- published under the Redis prefix (and how to publish), or the source's
-- error; "" when it does not know.
local function why_none()
    local src = status.source()
    if type(src) ~= "table" then
        return ""
    end
    if src.nothing_published == true then
        return format(": nothing is published under %s (no key"
                      .. " \"%s:current\"); publish a version with: %s",
                      conf_mod.source_name(conf), conf.redis.prefix,
                      conf_mod.publish_command(conf))
    end
    if type(src.error) == "string" then
        return ": " .. src.error
    end
    return ""
end


local function wait_first(level)
    if YIELDABLE[get_phase()] then
        local deadline = now() + conf.wait
        while not applied_version and now() < deadline do
            sleep(0.01)
            _M.sync()
        end
    end
    if not applied_version then
        error("resty.hotffi.code: no code version loaded yet"
              .. (cur_error and ": " .. cur_error or why_none()), level + 1)
    end
end


-- The current version of module `name`, after a sync (waiting for a first
-- version where it can); errors are raised at `level` of the caller.
function _M.module(name, level)
    _M.sync()
    if not applied_version then
        wait_first(level + 1)
    end
    if not loader.has(name) then
        error(format("resty.hotffi.code: module \"%s\" is not in code"
                     .. " version \"%s\"", name, applied_version),
              level + 1)
    end
    return loaded[name]
end


return _M
