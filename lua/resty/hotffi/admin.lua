-- resty.hotffi.admin -- reload a runtime in every nginx worker with one
-- HTTP request, and see every worker's runtimes.  See docs/reload.md.
--
-- How a command travels:
--
--   admin request --cmd:<n>--> lua_shared_dict --each worker's timer-->
--   rt:__reload() --res:<n>:<worker id>--> lua_shared_dict --> the reply
--
-- The request that asks stores a numbered command; every worker looks for
-- new commands every `poll` seconds, runs them one at a time and stores
-- its result; the request waits for one result per worker and answers
-- with all of them.  A reload that every worker applied is remembered
-- (rt:<name>), so that a worker started later -- respawned after a crash,
-- or by nginx -s reload -- loads what the others run.

local cjson = require "cjson.safe"
local control = require "resty.hotffi.control"
local hotffi = require "resty.hotffi"

local ngx = ngx
local concat = table.concat
local error = error
local exiting = ngx.worker.exiting
local get_phase = ngx.get_phase
local huge = math.huge
local ipairs = ipairs
local log = ngx.log
local now = ngx.now
local pcall = pcall
local sleep = ngx.sleep
local timer_every = ngx.timer.every
local tostring = tostring
local type = type
local update_time = ngx.update_time
local worker_count = ngx.worker.count
local worker_id = ngx.worker.id
local worker_pid = ngx.worker.pid

local ERR = ngx.ERR


local _M = { version = "0.1.0" }

-- lua_shared_dict keys
local K_SERIAL = "serial"  -- the last command's number
local K_CMD = "cmd:"       -- cmd:<n>: the command, JSON
local K_RES = "res:"       -- res:<n>:<worker id>: a worker's result, JSON
local K_RT = "rt:"         -- rt:<name>: the lib and cfg every worker runs

local CMD_TTL = 600        -- seconds a command and its results are kept
local WAIT_STEP = 0.01     -- seconds between looks for results
local DEFAULT_POLL = 0.1
local DEFAULT_TIMEOUT = 30
local MAX_TIMEOUT = 3600   -- seconds a reload may be given; the request
                           -- that asks waits that long at most

local dict                 -- ngx.shared[opts.dict]
local seen = 0             -- the last command this worker ran
local busy = false         -- a command runs in this worker


local function decode(text)
    return text and cjson.decode(text)
end


-- What a load of name should open instead of what it was given: what the
-- last reload applied to every worker chose.
local function resolve(name)
    local rec = decode(dict:get(K_RT .. name))
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


local function run(n)
    local cmd = decode(dict:get(K_CMD .. n))
    local res
    if not cmd or not ops[cmd.op] then
        res = { ok = false, error = "no such command (expired?)" }
    else
        local ok, r = pcall(ops[cmd.op], cmd)
        res = ok and r or { ok = false, error = tostring(r) }
    end

    res.id = worker_id()
    res.pid = worker_pid()
    local ok, err = dict:set(K_RES .. n .. ":" .. res.id, cjson.encode(res),
                             CMD_TTL)
    if not ok then
        log(ERR, "resty.hotffi.admin: cannot store a result: ", err)
    end
end


local function tick(premature)
    if premature or busy or exiting() then
        return
    end

    busy = true
    local last = dict:get(K_SERIAL) or 0
    while seen < last do
        seen = seen + 1
        run(seen)
    end
    busy = false
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

    dict = ngx.shared[opts.dict]

    -- commands from before this worker started are not for it: what they
    -- changed for good, it loads through resolve()
    seen = dict:get(K_SERIAL) or 0
    hotffi.set_resolver(resolve)

    local ok, err = timer_every(poll, tick)
    if not ok then
        error("resty.hotffi.admin.init_worker: " .. tostring(err), 2)
    end
end


-- Stores a command; returns its number.
local function post(cmd)
    local n, err = dict:incr(K_SERIAL, 1, 0)
    if not n then
        return nil, err
    end
    local ok
    ok, err = dict:set(K_CMD .. n, cjson.encode(cmd), CMD_TTL)
    if not ok then
        return nil, err
    end
    return n
end


-- Waits for every worker's result of command n, at most wait seconds.
local function collect(n, wait)
    local count = worker_count()
    local results = {}
    local deadline = now() + wait
    local missing = count

    while true do
        missing = 0
        for id = 0, count - 1 do
            if not results[id + 1] then
                results[id + 1] = decode(dict:get(K_RES .. n .. ":" .. id))
                if not results[id + 1] then
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

    for id = 0, count - 1 do
        results[id + 1] = results[id + 1]
            or { id = id, ok = false,
                 error = "no answer within " .. wait .. " s" }
    end
    return results
end


local function reply(status, body)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say(cjson.encode(body))
    return ngx.exit(status)
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


-- The HTTP handler.  Context: content_by_lua*.
--   GET            every worker's runtimes
--   POST ?runtime=NAME[&lib=PATH][&cfg=CFG][&state=0][&timeout=S]
--        [&retire_timeout=S]
--                  reload NAME in every worker, answer each one's result
-- opts.token (required): requests need "Authorization: Bearer <token>";
-- false serves without authentication; nil (a token os.getenv() did not
-- find) answers 503 and says what to add (see resty.hotffi.control).
-- Mount it where only operators reach it (allow 127.0.0.1; deny all;).
function _M.handler(opts)
    local ok, status, why = control.authorize(opts,
                                              "resty.hotffi.admin.handler")
    if not ok then
        return reply(status, { error = why })
    end
    if not dict then
        return reply(500, { error = "resty.hotffi.admin.init_worker() was "
                                    .. "not called" })
    end

    local method = ngx.req.get_method()
    local cmd, err
    if method == "GET" then
        cmd = { op = "status" }
    elseif method == "POST" then
        cmd, err = reload_command(ngx.req.get_uri_args())
        if not cmd then
            return reply(400, { error = err })
        end
    else
        return reply(405, { error = "GET or POST" })
    end

    local n
    n, err = post(cmd)
    if not n then
        return reply(500, { error = "lua_shared_dict: " .. tostring(err) })
    end

    local results = collect(n, (cmd.timeout or 2) + 1)
    local all_ok = true
    local failed = {}
    for _, r in ipairs(results) do
        if not r.ok then
            all_ok = false
            failed[#failed + 1] = tostring(r.id)
        end
    end

    local body = { op = cmd.op, ok = all_ok, workers = results }

    if cmd.op == "reload" then
        body.runtime = cmd.runtime
        -- workers started later run it too, unless it failed somewhere
        if all_ok and (cmd.lib or cmd.cfg) then
            local rec = decode(dict:get(K_RT .. cmd.runtime)) or {}
            rec.lib = cmd.lib or rec.lib
            rec.cfg = cmd.cfg or rec.cfg
            dict:set(K_RT .. cmd.runtime, cjson.encode(rec))
        end
        if not all_ok then
            body.error = "failed in worker(s) " .. concat(failed, ", ")
        end
    end

    return reply(all_ok and 200 or 500, body)
end


return _M
