-- resty.hotffi.code -- hot reload of Lua code: the public entry point.
--
-- Hot reload of Lua code in running nginx workers, from a directory or,
-- for a whole fleet, from Redis.  See docs/code-reload.md.  The work is
-- done by one module per idea under resty.hotffi.code.*:
--
--   conf      the options, checked once
--   dir, redis  the two sources (reading, Redis protocol)
--   bundle    the bundle format, signatures, current-version records
--   leader    worker 0 looks at the source, checks and publishes versions
--   store     the versions in the lua_shared_dict: stamp, history, ...
--   lock      a spin lock across workers over the shared dict
--   worker    this worker's version: applies the stamp, finds modules
--   loader    staging and swapping a version's modules (and __migrate)
--   status    workers' and the source's reports; the instance's status
--   rollback  the previous version made current (dir, or Redis for all)
--   admin     the admin handler's requests
--
-- How a version travels:
--
--   source (dir, Redis) --leader--> lua_shared_dict --each worker--> VM
--
-- One worker per nginx instance, the leader (worker 0), watches the
-- source: it reads the directory every `interval` seconds, or listens on
-- Redis pub/sub and asks Redis every `interval` seconds as a fallback.  A
-- new version is checked (signature, syntax, FFI rules) and stored in the
-- shared dict with a new stamp.  Every worker compares the stamp with the
-- version it runs every `poll` seconds and before each request it serves
-- through handler()/require(), and applies a new version atomically (see
-- resty.hotffi.code.loader).  Workers never talk to the source, so a
-- version reaches them from the dict in any phase, without I/O.

local admin = require "resty.hotffi.code.admin"
local conf_mod = require "resty.hotffi.code.conf"
local control = require "resty.hotffi.control"
local leader = require "resty.hotffi.code.leader"
local rollback = require "resty.hotffi.code.rollback"
local status = require "resty.hotffi.code.status"
local store = require "resty.hotffi.code.store"
local worker = require "resty.hotffi.code.worker"

local error = error
local format = string.format
local get_phase = ngx.get_phase
local type = type
local worker_id = ngx.worker.id


local _M = { version = "0.1.0" }

local conf                 -- the configuration (see configure)
local started = false      -- init_worker() ran


-- Checks and stores the options; see docs/code-reload.md.  Any phase; in
-- init_by_lua* it runs as the master's user, who may read secret_file.
function _M.configure(opts)
    if started then
        error("resty.hotffi.code.configure: already started", 2)
    end
    conf = conf_mod.check(opts)
    return true
end


-- Starts this worker: applies the current version and starts the timers.
-- Context: init_worker_by_lua*.
function _M.init_worker(opts)
    if get_phase() ~= "init_worker" then
        error("resty.hotffi.code.init_worker: call it in"
              .. " init_worker_by_lua*", 2)
    end
    if started then
        error("resty.hotffi.code.init_worker: already started", 2)
    end
    if opts ~= nil then
        _M.configure(opts)
    elseif not conf then
        error("resty.hotffi.code.init_worker: no options, and configure()"
              .. " was not called", 2)
    end
    started = true
    store.init(conf)
    status.init(conf)
    leader.init(conf)
    worker.init(conf)
    if conf.dir then
        leader.look(false)      -- files can be read here
    end
    worker.start()
    if (worker_id() or 0) == 0 then
        leader.start()
    end
    return true
end


-- Using the code ----------------------------------------------------------

local function current(name, level)
    if not started then
        error("resty.hotffi.code: not started: call init_worker() in"
              .. " init_worker_by_lua*", level + 1)
    end
    if conf.dev then
        leader.look(false)
    end
    local m = worker.module(name, level + 1)  -- not a tail call: levels
    return m
end


-- The current version of module `name` of the bundle.  Context: wherever
-- the module may be used; it waits for a first version (up to `wait`
-- seconds) only where ngx.sleep works.
function _M.require(name)
    if type(name) ~= "string" then
        error("resty.hotffi.code.require: a module name expected", 2)
    end
    local m = current(name, 2)    -- not a tail call: keeps error levels
    return m
end


local handlers = {}

-- A function that calls the current version of module `name` (a function,
-- or a table's field `field`, default "handler") with its arguments.
function _M.handler(name, field)
    if type(name) ~= "string" then
        error("resty.hotffi.code.handler: a module name expected", 2)
    end
    if field ~= nil and type(field) ~= "string" then
        error("resty.hotffi.code.handler: bad field name", 2)
    end
    local key = field and name .. "\0" .. field or name
    local h = handlers[key]
    if h then
        return h
    end
    local fname = field or "handler"
    h = function(...)
        local m = current(name, 2)
        if type(m) == "function" then
            return m(...)
        end
        local f = type(m) == "table" and m[fname]
        if not f then
            error(format("resty.hotffi.code: module \"%s\" of code version"
                         .. " \"%s\" has no function \"%s\"", name,
                         worker.version(), fname), 2)
        end
        return f(...)
    end
    handlers[key] = h
    return h
end


-- The version this worker runs, and the one it should run.
function _M.current_version()
    return worker.version(), started and store.current() or nil
end


-- Administration ----------------------------------------------------------

-- The whole instance's state, from the shared dict.
function _M.status()
    if not started then
        return nil, "not started"
    end
    return status.instance()
end


-- Makes the previous version current: on Redis for every server of the
-- fleet (context: where cosockets work), or in this nginx for the dir
-- source until a file changes.  Returns its name, or nil and a message.
function _M.rollback()
    if not started then
        return nil, "not started"
    end
    return rollback.run(conf)
end


-- Looks at the source now.  Context: where cosockets work (Redis).
function _M.check()
    if not started then
        return nil, "not started"
    end
    leader.look_again()
    worker.sync()
    return true
end


-- The admin handler.  Context: content_by_lua*.
--   GET            the status of the instance and of each worker
--   POST ?action=rollback   make the previous version current
--   POST ?action=check      look at the source now
-- opts.token (required): requests need "Authorization: Bearer <token>";
-- false serves without authentication; nil (a token os.getenv() did not
-- find) answers 503 and says what to add -- the scheme of
-- resty.hotffi.admin (resty.hotffi.control).  Also allow 127.0.0.1 only.
function _M.admin(opts)
    if get_phase() ~= "content" then
        error("resty.hotffi.code.admin: call it in content_by_lua*", 2)
    end
    if not control.guard(opts, "resty.hotffi.code.admin") then
        return
    end
    return admin.serve(_M)
end


return _M
