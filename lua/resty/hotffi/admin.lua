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
local concat = table.concat
local error = error
local get_phase = ngx.get_phase
local huge = math.huge
local insert = table.insert
local ipairs = ipairs
local now = ngx.now
local sleep = ngx.sleep
local tostring = tostring
local type = type
local update_time = ngx.update_time


local _M = { version = "0.1.0" }

-- lua_shared_dict keys, besides the bus's
local K_RT = "rt:"         -- rt:<name>: the lib and cfg every worker runs

local DEFAULT_POLL = 0.1
local DEFAULT_TIMEOUT = 30
local DEFAULT_SETTLE = 0.5 -- seconds the canary must stay up after its
                           -- reload before the others follow
local MAX_SETTLE = 60
local MAX_TIMEOUT = 3600   -- seconds a reload may be given; the request
                           -- that asks waits that long at most
local MAX_CFG_SHOWN = 128  -- bytes of a cfg GET shows; a longer one is
                           -- shown by its CRC-32 and length only
local MAX_NAMES_SHOWN = 20 -- names a 404 lists

local commands             -- the bus, over ngx.shared[opts.dict]


-- What a load of name should open instead of what it was given: what the
-- last reload applied to every worker chose.
local function resolve(name)
    local rec = commands:get(K_RT .. name)
    if rec then
        return rec.lib, rec.cfg
    end
end


-- __stats(), and what serves: the library and the file mapped (device,
-- inode, modification time), the cfg and since when (see docs/reload.md).
local function runtime_status(rt)
    local s = rt:__stats()
    s.key = nil
    local v = rt:__serving()
    if v then
        s.lib, s.dev, s.ino, s.mtime = v.lib, v.dev, v.ino, v.mtime
        s.cfg_len, s.cfg_crc32, s.since = v.cfg_len, v.cfg_crc32, v.since
        if v.cfg and #v.cfg <= MAX_CFG_SHOWN then
            s.cfg = v.cfg
        end
    end
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
    local rt, load_err = hotffi.get(cmd.runtime)
    if not rt then
        -- the names it has: a name sent without URL-encoding its "&"
        -- arrives cut short, and the list shows what was meant
        return { ok = true, loaded = false, load_error = load_err,
                 runtimes = control.array(hotffi.names()) }
    end

    local from = rt:__stats().version
    local started = now()
    local res, err, last = rt:__reload{ lib = cmd.lib, cfg = cmd.cfg,
                                        state = cmd.state,
                                        timeout = cmd.timeout,
                                        retire_timeout = cmd.retire_timeout }
    update_time()

    if not res then
        -- to: the version the attempt started, or none when it was
        -- refused before; version: the one serving now
        return { ok = false, loaded = true, from = last and last.from or from,
                 to = last and last.to, version = rt:__stats().version,
                 error = err, seconds = now() - started }
    end
    local report = { ok = true, loaded = true, from = res.from, to = res.to,
                     seconds = res.seconds, overdue = res.overdue }
    if cmd.probe then
        local ok, rc, answer = rt[cmd.probe](rt, cmd.probe_req)
        if not ok then
            report.ok = false
            report.error = "the probe rt:" .. cmd.probe .. "() failed "
                           .. "after the reload: " .. tostring(rc)
                           .. (answer and ": " .. answer or "")
        end
    end
    return report
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


-- When no worker has loaded runtime `name` (every report says so), the
-- 404's message: what the workers do have, and why a name may not match.
local function not_loaded(reports, name)
    local names, seen = {}, {}
    for _, r in ipairs(reports) do
        if r.loaded ~= false then
            return nil
        end
        for _, n in ipairs(r.runtimes or {}) do
            if not seen[n] and #names < MAX_NAMES_SHOWN then
                seen[n] = true
                names[#names + 1] = n
            end
        end
    end
    table.sort(names)
    local msg = "no worker has loaded runtime \"" .. name .. "\": nothing "
                .. "was reloaded; loaded: "
                .. (names[1] and "\"" .. concat(names, "\", \"") .. "\""
                    or "none")
                .. " (URL-encode the name: \"&\" is %26, \"+\" is %2B, "
                .. "\"=\" is %3D)"
    for _, r in ipairs(reports) do
        if r.load_error then
            return msg .. "; worker " .. tostring(r.id) .. " failed to "
                       .. "load it: " .. r.load_error
        end
    end
    return msg
end


local function reload_command(args)
    local name = args.runtime
    if type(name) ~= "string" or name == "" then
        return nil, "runtime=<name> is required"
    end
    for _, k in ipairs{ "lib", "cfg", "state", "timeout", "retire_timeout",
                        "canary", "probe", "probe_req", "settle" } do
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
    local settle
    settle, err = control.seconds_arg(args, "settle", DEFAULT_SETTLE,
                                      MAX_SETTLE)
    if not settle then
        return nil, err
    end
    if args.canary ~= nil and args.canary ~= "0" and args.canary ~= "1" then
        return nil, "canary must be 1 (the default) or 0"
    end
    if args.probe == "" or args.probe and args.probe:sub(1, 2) == "__" then
        return nil, "probe must name a method of the runtime"
    end
    return { op = "reload", runtime = name, lib = args.lib, cfg = args.cfg,
             state = args.state ~= "0",
             timeout = retire_timeout or timeout,
             retire_timeout = retire_timeout,
             canary = args.canary ~= "0", settle = settle,
             probe = args.probe, probe_req = args.probe_req }
end


-- Whether the worker that serves id `id` is still pid `pid` after
-- `settle` seconds.
local function stays_up(id, pid, settle)
    local deadline = now() + settle
    repeat
        sleep(0.05)
        update_time()
        if commands:pids()[id] ~= pid then
            return false
        end
    until now() >= deadline
    return true
end


-- Reloads in one worker first -- the canary: the lowest id but the
-- asking worker's own, which must live to answer -- and in the others
-- only once the canary's reload succeeded (its probe too, when one is
-- named) and the canary is still up `settle` seconds later.  A failing
-- canary stops the rollout: the others keep what they run.
local function rollout(cmd, wait)
    local count = ngx.worker.count()
    if not cmd.canary or count == 1 then
        return commands:ask(cmd, wait)
    end

    local canary = ngx.worker.id() == 0 and 1 or 0
    local others = {}
    for id = 0, count - 1 do
        if id ~= canary then
            others[#others + 1] = id
        end
    end
    cmd.workers = { canary }
    local first, err = commands:ask(cmd, wait)
    if not first then
        return nil, err
    end
    first.canary = canary
    local report = first.workers[1]
    if first.ok and report.loaded ~= false
       and not stays_up(canary, report.pid, cmd.settle)
    then
        first.ok = false
        report.ok = false
        report.error = "the worker (pid " .. tostring(report.pid)
                       .. ") exited within " .. cmd.settle
                       .. " s of its reload"
    end
    if not first.ok then
        first.error = "the canary, worker " .. canary .. ", failed: "
                      .. tostring(report.error) .. "; the rollout "
                      .. "stopped: worker(s) " .. concat(others, ", ")
                      .. " kept what they run"
        return first
    end

    cmd.workers = others
    local rest
    rest, err = commands:ask(cmd, wait)
    if not rest then
        return nil, err
    end
    insert(rest.workers, 1, report)
    rest.canary = canary
    return rest
end


-- The bus, for resty.hotffi.metrics; nil before init_worker().
function _M.bus()
    return commands
end


-- The HTTP handler.  Context: content_by_lua*.
--   GET            every worker's runtimes
--   POST ?runtime=NAME[&lib=PATH][&cfg=CFG][&state=0][&timeout=S]
--        [&retire_timeout=S][&probe=METHOD][&probe_req=REQ][&settle=S]
--        [&canary=0]
--                  reload NAME in a canary worker, then (if it passed) in
--                  every other, and answer each one's report
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
    if cmd.op == "reload" then
        body, err = rollout(cmd, cmd.timeout + 1)
    else
        body, err = commands:ask(cmd, 2 + 1)
    end
    if not body then
        return control.fail(500, err)
    end

    if cmd.op == "reload" then
        body.runtime = cmd.runtime
        local missing = not_loaded(body.workers, cmd.runtime)
        if missing then
            return control.fail(404, missing)
        end
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
