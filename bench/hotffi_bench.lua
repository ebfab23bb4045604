-- hotffi_bench -- the benchmark cases, run inside one nginx worker and
-- driven over HTTP by bench/run.pl (see bench/README.md).  Every case answers
-- JSON; a failed or wrong answer fails the whole request with status 500.

local ffi = require "ffi"
local cjson = require "cjson.safe"
local hotffi = require "resty.hotffi"
local semaphore = require "ngx.semaphore"

local byte = string.byte
local char = string.char
local ceil = math.ceil
local floor = math.floor
local min = math.min
local max = math.max
local ngx_print = ngx.print
local spawn = ngx.thread.spawn
local thread_wait = ngx.thread.wait
local tcp = ngx.socket.tcp
local tonumber = tonumber
local tostring = tostring


ffi.cdef[[
typedef struct {
    long  tv_sec;
    long  tv_nsec;
} hotffi_bench_timespec_t;

int clock_gettime(int clk, hotffi_bench_timespec_t *ts);
]]

local C = ffi.C
local CLOCK_MONOTONIC = 1
local ts = ffi.new("hotffi_bench_timespec_t")

-- seconds, monotonic, to the nanosecond (ngx.now() has milliseconds only)
local function now()
    C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end


local _M = {}

-- written by bench/run.pl into the prefix: { sock = path, runtimes = {...} }
local conf = require "hotffi_bench_conf"

local runtimes = {}      -- name -> runtime object
local load_errors = {}   -- name -> why it did not load

local HTTP_REQ = "hello, hotffi"
local CALL_TIMEOUT = 60


-- the hand-off bound's library (bench/handoff.c), when it loaded
local handoff

function _M.init_worker()
    if conf.handoff then
        ffi.cdef[[
        int hotffi_bench_handoff_init(void);
        int hotffi_bench_handoff(void *sem);
        void hotffi_bench_handoff_exit(void);
        ]]
        local ok, lib = pcall(ffi.load, conf.handoff)
        if ok and lib.hotffi_bench_handoff_init() == 0 then
            handoff = lib
        else
            ngx.log(ngx.WARN, "bench: no hand-off bound: ",
                    ok and "see the error log" or lib)
        end
    end
    for _, d in ipairs(conf.runtimes) do
        local rt, err = hotffi.load(d.lib, d.cfg,
                                    { is_global = d.global,
                                      isolate = d.isolate,
                                      timeout = CALL_TIMEOUT })
        if rt then
            runtimes[d.name] = rt
        else
            load_errors[d.name] = err
            ngx.log(ngx.WARN, "bench: runtime \"", d.name, "\" not loaded: ",
                    err)
        end
    end
end


function _M.exit_worker()
    if handoff then
        handoff.hotffi_bench_handoff_exit()
    end
end


local function fail(msg)
    ngx.status = 500
    ngx_print(msg)
    return ngx.exit(500)
end


local function answer(t)
    ngx.header["Content-Type"] = "application/json"
    ngx_print(cjson.encode(t))
end


-- payloads: every byte value, NULs included, repeated to the size asked
local payloads = {}

local function payload(size)
    local p = payloads[size]
    if p then
        return p
    end

    local t = {}
    for i = 0, 255 do
        t[#t + 1] = char(i)
    end
    local pattern = table.concat(t)
    p = pattern:rep(ceil(size / 256)):sub(1, size)
    payloads[size] = p
    return p
end


-- the unix-socket baseline: 4 bytes big-endian length, then the bytes
local function frame(req)
    local n = #req
    return char(floor(n / 16777216) % 256, floor(n / 65536) % 256,
                floor(n / 256) % 256, n % 256) .. req
end


local function unix_connect()
    local sock = tcp()
    sock:settimeout(CALL_TIMEOUT * 1000)
    local ok, err = sock:connect("unix:" .. conf.sock)
    if not ok then
        return nil, "connect to the echo server failed: " .. tostring(err)
    end
    return sock
end


-- one round trip over the socket; returns the answer or nil, err
local function unix_call(sock, framed)
    local ok, err = sock:send(framed)
    if not ok then
        return nil, "send failed: " .. tostring(err)
    end

    local h
    h, err = sock:receive(4)
    if not h then
        return nil, "receive failed: " .. tostring(err)
    end

    local b1, b2, b3, b4 = byte(h, 1, 4)
    local n = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
    if n == 0 then
        return ""
    end

    local res
    res, err = sock:receive(n)
    if not res then
        return nil, "receive failed: " .. tostring(err)
    end
    return res
end


-- One call of each kind the sequential case times: true, or nil and why.
local function call_hotffi(rt, req)
    local ok, res, err = rt:echo(req)
    if not ok then
        return nil, "call failed: " .. tostring(res) .. " " .. tostring(err)
    end
    if res ~= req then
        return nil, "wrong answer: " .. #tostring(res) .. " bytes"
    end
    return true
end


local function call_unix(sock, framed, req)
    local res, err = unix_call(sock, framed)
    if not res then
        return nil, err
    end
    if res ~= req then
        return nil, "wrong answer: " .. #res .. " bytes"
    end
    return true
end


-- One hand-off (bench/handoff.c), the bound of a caller that parks: the
-- calling coroutine hands its semaphore to a helper thread, which hands
-- it back through an eventfd, and waits on it.  No payload, no task, no
-- copy.  The semaphores are kept for the worker's life; one that timed
-- out may still be posted, so it is not used again.
local handoff_sems = {}

local function call_handoff()
    local n = #handoff_sems
    local sem = handoff_sems[n]
    if sem then
        handoff_sems[n] = nil
    else
        sem = semaphore.new()
    end
    if handoff.hotffi_bench_handoff(sem.sem) ~= 0 then
        return nil, "hand-off refused: too many waiting"
    end
    local ok, err = sem:wait(CALL_TIMEOUT)
    if not ok then
        return nil, "hand-off not answered: " .. tostring(err)
    end
    handoff_sems[#handoff_sems + 1] = sem
    return true
end


-- A run makes up to n calls in chunks, and stops after the chunk that passes
-- the deadline, so that slow cases stay bounded; at least 3 calls count.
-- Each chunk's time per call goes to `chunks`: their median is a figure that
-- a burst of other work on the machine hardly moves.  call(): one call,
-- as above.
local CHUNK = 16

local function seq_run(call, n, deadline, chunks)
    local done = 0
    local t = now()
    while done < n do
        local k = min(CHUNK, n - done)
        for _ = 1, k do
            local ok, err = call()
            if not ok then
                return nil, err
            end
        end
        done = done + k
        local t1 = now()
        chunks[#chunks + 1] = (t1 - t) / k
        t = t1
        if done >= 3 and t1 > deadline then
            break
        end
    end
    return done
end


local function median(t)
    table.sort(t)
    local n = #t
    if n == 0 then
        return nil
    end
    if n % 2 == 1 then
        return t[(n + 1) / 2]
    end
    return (t[n / 2] + t[n / 2 + 1]) / 2
end


local function args()
    local a = ngx.req.get_uri_args()
    local size = tonumber(a.size) or 16
    local n = tonumber(a.n) or 1000
    local max_s = tonumber(a.max_s) or 2
    return a.rt, size, n, max_s, tonumber(a.threads) or 1
end


-- GET /seq?rt=NAME|unix|handoff&size=B&n=N&max_s=S: one coroutine, calls
-- in a row
function _M.seq()
    local name, size, n, max_s = args()
    local req = payload(size)
    -- warm-up (the JIT, the allocators, the socket buffers): not timed
    local warm = max(2, min(200, floor(2e6 / max(size, 1)), n))

    local call, sock
    if name == "unix" then
        local err
        sock, err = unix_connect()
        if not sock then
            return fail(err)
        end
        local framed = frame(req)
        call = function() return call_unix(sock, framed, req) end
    elseif name == "handoff" then
        if not handoff then
            return fail("no hand-off bound: see the error log")
        end
        call = call_handoff
    else
        local rt = runtimes[name]
        if not rt then
            return fail("no runtime " .. tostring(name) .. ": "
                        .. tostring(load_errors[name]))
        end
        call = function() return call_hotffi(rt, req) end
    end

    local ok, err = seq_run(call, warm, now() + max_s, {})
    if not ok then
        return fail(err)
    end

    local chunks = {}
    local s0 = hotffi.stats()
    local t0 = now()
    local done
    done, err = seq_run(call, n, t0 + max_s, chunks)
    local t1 = now()
    if not done then
        return fail(err)
    end
    local s1 = hotffi.stats()

    if sock then
        sock:close()
    end

    answer({
        calls = done,
        seconds = t1 - t0,
        us_per_call = (t1 - t0) * 1e6 / done,
        us_per_call_p50 = median(chunks) * 1e6,
        wakeups = s1.wakeups - s0.wakeups,
        completions = s1.completions - s0.completions,
        -- the event loop's spins for an answer, hit or missed
        spins = s1.spin_hits + s1.spin_misses - s0.spin_hits
                - s0.spin_misses,
    })
end


-- light threads of the concurrent case share one state table
local function conc_hotffi(rt, req, state)
    while state.left > 0 and not state.err do
        state.left = state.left - 1
        local ok, res = rt:echo(req)
        if not ok or res ~= req then
            state.err = "call failed or wrong answer: " .. tostring(res)
            return
        end
        state.done = state.done + 1
        if now() > state.deadline then
            state.left = 0
        end
    end
end


local function conc_unix(sock, req, state)
    local framed = frame(req)
    while state.left > 0 and not state.err do
        state.left = state.left - 1
        local res, err = unix_call(sock, framed)
        if res ~= req then
            state.err = err or "wrong answer"
            return
        end
        state.done = state.done + 1
        if now() > state.deadline then
            state.left = 0
        end
    end
end


local function conc_run(name, objs, req, threads, n, max_s)
    local fn = name == "unix" and conc_unix or conc_hotffi
    local state = { left = n, done = 0, deadline = now() + max_s }
    local th = {}

    local s0 = hotffi.stats()
    local t0 = now()

    for i = 1, threads do
        local t, err = spawn(fn, objs[i], req, state)
        if not t then
            return nil, "spawn failed: " .. tostring(err)
        end
        th[i] = t
    end

    for i = 1, threads do
        local ok, err = thread_wait(th[i])
        if not ok then
            state.err = state.err or tostring(err)
        end
    end

    local t1 = now()
    local s1 = hotffi.stats()

    if state.err then
        return nil, state.err
    end

    return {
        calls = state.done,
        seconds = t1 - t0,
        calls_per_s = state.done / (t1 - t0),
        wakeups = s1.wakeups - s0.wakeups,
        completions = s1.completions - s0.completions,
    }
end


-- GET /conc?rt=NAME|unix&threads=T&size=B&n=N&max_s=S: T light threads
-- share N calls; for the socket, each thread has its own connection
function _M.conc()
    local name, size, n, max_s, threads = args()
    local req = payload(size)
    local objs = {}

    if name == "unix" then
        for i = 1, threads do
            local sock, err = unix_connect()
            if not sock then
                return fail(err)
            end
            objs[i] = sock
        end
    else
        local rt = runtimes[name]
        if not rt then
            return fail("no runtime " .. tostring(name) .. ": "
                        .. tostring(load_errors[name]))
        end
        for i = 1, threads do
            objs[i] = rt
        end
    end

    -- warm-up: a short run with every thread, not timed
    local res, err = conc_run(name, objs, req, threads,
                              min(n, max(500, 2 * threads)), max_s)
    if res then
        res, err = conc_run(name, objs, req, threads, n, max_s)
    end

    if name == "unix" then
        for i = 1, threads do
            objs[i]:close()
        end
    end

    if not res then
        return fail(err)
    end
    answer(res)
end


-- GET /ok?rt=NAME: the ceiling, same Lua as /call but no call
function _M.ok()
    local rt = runtimes[ngx.var.arg_rt]
    if rt == nil and ngx.var.arg_rt ~= "none" then
        return ngx.exit(500)
    end
    ngx_print("ok")
end


-- GET /yield?rt=none: the bound of the HTTP case.  Only what any
-- asynchronous bridge must do per request: the request's coroutine yields
-- once and the event loop resumes it (a 0 ms timer posts a semaphore,
-- src/nginx/ngx_http_hotffi_yield.c; an answer's semaphore is posted the
-- same way, from the loop), with no call, no task and no other thread.
-- Otherwise the same Lua as /ok and /call.
local yield_waiter = {}   -- semaphore.wait() reads .sem before it yields

function _M.yield()
    local rt = runtimes[ngx.var.arg_rt]
    if rt == nil and ngx.var.arg_rt ~= "none" then
        return ngx.exit(500)
    end
    -- the C module's semaphore, kept for the worker's life: borrowed
    local sem = C.ngx_http_hotffi_ffi_yield()
    if sem == nil then
        return ngx.exit(500)
    end
    yield_waiter.sem = sem
    if not semaphore.wait(yield_waiter, CALL_TIMEOUT) then
        return ngx.exit(500)
    end
    ngx_print("ok")
end


-- GET /handoff?rt=none: the bound of the HTTP case for a call answered
-- on another thread: one hand-off per request.  Otherwise the same Lua as
-- /yield.
function _M.handoff()
    local rt = runtimes[ngx.var.arg_rt]
    if handoff == nil or rt == nil and ngx.var.arg_rt ~= "none" then
        return ngx.exit(500)
    end
    if not call_handoff() then
        return ngx.exit(500)
    end
    ngx_print("ok")
end


-- GET /call?rt=NAME: one echo call per request
function _M.call()
    local rt = runtimes[ngx.var.arg_rt]
    if rt == nil then
        return ngx.exit(500)
    end
    local ok, res = rt:echo(HTTP_REQ)
    if not ok or res ~= HTTP_REQ then
        return ngx.exit(500)
    end
    ngx_print("ok")
end


-- GET /burn?where=loop|svc: the cpu case's CPU-heavy request, done on
-- the event loop or by a Lua service (bench/hotffi_burn.lua both ways)
local BURN_N = 2000000
local burn_svc

function _M.burn()
    local burn = require "hotffi_burn"
    local x
    if ngx.var.arg_where == "svc" then
        if burn_svc == nil then
            local err
            burn_svc, err = hotffi.load(conf.lua_cpu.lib, conf.lua_cpu.cfg,
                                        { timeout = CALL_TIMEOUT })
            if not burn_svc then
                return fail(err)
            end
        end
        local ok, res = burn_svc:burn(tostring(BURN_N))
        if not ok then
            return fail(tostring(res))
        end
        x = res
    else
        x = tostring(burn.work(BURN_N))
    end
    ngx_print(x)
end


-- GET /info: the worker, the runtimes loaded and those that failed
function _M.info()
    local loaded = {}
    for name in pairs(runtimes) do
        loaded[#loaded + 1] = name
    end
    table.sort(loaded)
    answer({
        pid = ngx.worker.pid(),
        loaded = loaded,
        errors = load_errors,
        stats = hotffi.stats(),
    })
end


return _M
