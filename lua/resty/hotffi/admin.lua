-- resty.hotffi.admin -- reload a runtime in every nginx worker with one
-- HTTP request, and see every worker's runtimes.  See docs/reload.md.
--
-- Commands travel on resty.hotffi.bus: the request that asks posts a
-- numbered command, every worker runs it in a timer and reports, and the
-- request answers with every worker's report.  A reload that every
-- worker applied is remembered (rt:<name>), so that a worker started
-- later -- respawned after a crash, or by nginx -s reload -- loads what
-- the others run.

local bus = require "resty.hotffi.bus"
local control = require "resty.hotffi.control"
local hotffi = require "resty.hotffi"

local ngx = ngx
local error = error
local get_phase = ngx.get_phase
local huge = math.huge
local ipairs = ipairs
local now = ngx.now
local tostring = tostring
local type = type
local update_time = ngx.update_time


local _M = { version = "0.1.0" }

-- lua_shared_dict keys, besides the bus's
local K_RT = "rt:"         -- rt:<name>: the lib and cfg every worker runs

local DEFAULT_POLL = 0.1
local DEFAULT_TIMEOUT = 30
local MAX_TIMEOUT = 3600   -- seconds a reload may be given; the request
                           -- that asks waits that long at most

local commands             -- the bus, over ngx.shared[opts.dict]


-- What a load of name should open instead of what it was given: what the
-- last reload applied to every worker chose.
local function resolve(name)
    local rec = commands:get(K_RT .. name)
    if rec then
        return rec.lib, rec.cfg
    end
end


local function runtime_status(rt)
    local s = rt:__stats()
    s.key = nil
    return s
end


local ops = {}


function ops.status()
    local runtimes = {}
    for _, name in ipairs(hotffi.names()) do
        runtimes[name] = runtime_status(hotffi.get(name))
    end
    return { ok = true, runtimes = runtimes }
end


function ops.reload(cmd)
    local rt = hotffi.get(cmd.runtime)
    if not rt then
        -- it loads what the reload chose when it is first used
        return { ok = true, loaded = false }
    end

    local from = rt:__stats().version
    local started = now()
    local res, err = rt:__reload{ lib = cmd.lib, cfg = cmd.cfg,
                                  state = cmd.state,
                                  timeout = cmd.timeout,
                                  retire_timeout = cmd.retire_timeout }
    update_time()

    if not res then
        return { ok = false, loaded = true, from = from,
                 to = rt:__stats().version, error = err,
                 seconds = now() - started }
    end
    return { ok = true, loaded = true, from = res.from, to = res.to,
             seconds = res.seconds, overdue = res.overdue }
end


-- resty.hotffi.metrics's scrape: this worker's counters and gauges.
function ops.metrics()
    return require("resty.hotffi.metrics").report(commands.dict)
end


-- Starts this worker's part.  Context: init_worker_by_lua*.
--   opts.dict  the lua_shared_dict's name (required; 1m is plenty)
--   opts.poll  seconds between looks for commands (default 0.1)
function _M.init_worker(opts)
    if get_phase() ~= "init_worker" then
        error("resty.hotffi.admin.init_worker: call it in "
              .. "init_worker_by_lua*", 2)
    end
    if type(opts) ~= "table" or type(opts.dict) ~= "string"
       or not ngx.shared[opts.dict]
    then
        error("resty.hotffi.admin.init_worker: opts.dict must name a "
              .. "lua_shared_dict", 2)
    end
    local poll = opts.poll or DEFAULT_POLL
    -- not (poll > 0) also refuses NaN
    if type(poll) ~= "number" or not (poll > 0) or poll == huge then
        error("resty.hotffi.admin.init_worker: bad poll: positive number "
              .. "of seconds expected", 2)
    end

    commands = bus.new(ngx.shared[opts.dict], "resty.hotffi.admin")
    -- commands from before this worker started are not for it: what they
    -- changed for good, it loads through resolve()
    hotffi.set_resolver(resolve)
    commands:listen(poll, function(cmd)
        local op = ops[cmd.op]
        if not op then
            return { ok = false, error = "no such command: "
                                         .. tostring(cmd.op) }
        end
        return op(cmd)
    end)
end


local function reload_command(args)
    local name = args.runtime
    if type(name) ~= "string" or name == "" then
        return nil, "runtime=<name> is required"
    end
    for _, k in ipairs{ "lib", "cfg", "state", "timeout", "retire_timeout" } do
        if args[k] ~= nil and type(args[k]) ~= "string" then
            return nil, k .. " must be given once, with a value"
        end
    end
    -- numbers are checked here, before anything is posted: NaN, an
    -- infinity or a negative would reach every worker's reload
    local timeout, err = control.seconds_arg(args, "timeout",
                                             DEFAULT_TIMEOUT, MAX_TIMEOUT)
    if not timeout then
        return nil, err
    end
    local retire_timeout
    retire_timeout, err = control.seconds_arg(args, "retire_timeout", nil,
                                              MAX_TIMEOUT)
    if err then
        return nil, err
    end
    return { op = "reload", runtime = name, lib = args.lib, cfg = args.cfg,
             state = args.state ~= "0",
             timeout = retire_timeout or timeout,
             retire_timeout = retire_timeout }
end


-- The bus, for resty.hotffi.metrics; nil before init_worker().
function _M.bus()
    return commands
end


-- The HTTP handler.  Context: content_by_lua*.
--   GET            every worker's runtimes
--   POST ?runtime=NAME[&lib=PATH][&cfg=CFG][&state=0][&timeout=S]
--        [&retire_timeout=S]
--                  reload NAME in every worker, answer each one's report
-- opts.token (required): requests need "Authorization: Bearer <token>";
-- false serves without authentication; nil (a token os.getenv() did not
-- find) answers 503 and says what to add (see resty.hotffi.control).
-- Mount it where only operators reach it (allow 127.0.0.1; deny all;).
function _M.handler(opts)
    if not control.guard(opts, "resty.hotffi.admin.handler") then
        return
    end
    if not commands then
        return control.fail(500, "resty.hotffi.admin.init_worker() was"
                                 .. " not called")
    end

    local method = ngx.req.get_method()
    local cmd, err
    if method == "GET" then
        cmd = { op = "status" }
    elseif method == "POST" then
        cmd, err = reload_command(ngx.req.get_uri_args())
        if not cmd then
            return control.fail(400, err)
        end
    else
        return control.fail(405, "GET or POST")
    end

    local body
    body, err = commands:ask(cmd, (cmd.timeout or 2) + 1)
    if not body then
        return control.fail(500, err)
    end

    if cmd.op == "reload" then
        body.runtime = cmd.runtime
        -- workers started later run it too, unless it failed somewhere
        if body.ok and (cmd.lib or cmd.cfg) then
            local rec = commands:get(K_RT .. cmd.runtime) or {}
            rec.lib = cmd.lib or rec.lib
            rec.cfg = cmd.cfg or rec.cfg
            commands:put(K_RT .. cmd.runtime, rec)
        end
    end

    return control.answer(body.ok and 200 or 500, body)
end


return _M
