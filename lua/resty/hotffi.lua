-- resty.hotffi -- call runtimes written in C, Go, Rust, Python... from nginx
-- Lua without blocking the event loop.  See docs/api.md.

local ffi = require "ffi"
local base = require "resty.core.base"
local semaphore = require "ngx.semaphore"
local isolation = require "resty.hotffi.isolate"

local C = ffi.C
local ffi_gc = ffi.gc
local ffi_new = ffi.new
local ffi_str = ffi.string
local get_phase = ngx.get_phase
local timer_at = ngx.timer.at
local log = ngx.log
local get_request = base.get_request
local get_string_buf = base.get_string_buf
local get_size_ptr = base.get_size_ptr
local sema_wait = semaphore.wait
local error = error
local floor = math.floor
local format = string.format
local pairs = pairs
local pcall = pcall
local rawget = rawget
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type

local ERR = ngx.ERR


-- ngx.semaphore's cdef comes first: it declares ngx_http_lua_sema_t
ffi.cdef[[
void ngx_http_hotffi_ffi_shdict_add(const char *name, size_t len,
    void *zone);
typedef struct {
    uint64_t  calls;
    uint64_t  ok;
    uint64_t  failed;
    uint64_t  abandoned;
    uint64_t  rejected;
    uint64_t  full;
    uint64_t  inflight_full;
    uint64_t  timeouts;
    uint64_t  dropped;
    uint64_t  inflight;
    uint64_t  queued;
    uint64_t  unloaded;
    uint64_t  closed;
    uint64_t  version;
    uint64_t  reloads;
    uint64_t  reload_failures;
    uint64_t  reloading;
} hotffi_ffi_stats_t;

typedef struct {
    int       ok;
    uint64_t  from;
    uint64_t  to;
    double    started;
    double    seconds;
    int       overdue;
} hotffi_ffi_reload_t;

typedef struct {
    uint64_t     version;
    const char  *lib;
    const char  *cfg;
    size_t       cfg_len;
    uint32_t     cfg_crc32;
    uint64_t     dev_major;
    uint64_t     dev_minor;
    uint64_t     ino;
    int64_t      mtime;
    double       since;
} hotffi_ffi_serving_t;

typedef struct {
    uint64_t  ok;
    uint64_t  error;
    uint64_t  timeout;
    uint64_t  queue_full;
    uint64_t  unloaded;
    uint64_t  abandoned;
    uint64_t  bytes_in;
    uint64_t  bytes_out;
    uint64_t  latency_sum_ns;
    uint64_t  latency[20];
    uint64_t  inflight;
    uint64_t  queued;
} hotffi_ffi_metrics_t;

typedef struct {
    uint64_t  tasks_live;
    uint64_t  wakeups;
    uint64_t  completions;
    uint64_t  runtimes;
    uint64_t  spin_hits;
    uint64_t  spin_misses;
} hotffi_ffi_hub_stats_t;

int ngx_http_hotffi_ffi_version(void);
void *ngx_http_hotffi_ffi_runtime_load(const char *lib, const char *cfg,
    size_t cfg_len, const char *name, uint32_t max_queue,
    uint32_t max_inflight, int global, int unpin, ngx_http_lua_sema_t **psema,
    unsigned char *err, size_t *errlen);
int ngx_http_hotffi_ffi_runtime_started(void *rt, ngx_http_lua_sema_t *sema,
    int *init_rc, unsigned char *err, size_t *errlen);
int ngx_http_hotffi_ffi_runtime_wait(void *rt, double timeout);
void ngx_http_hotffi_ffi_runtime_unload(void *rt);
void ngx_http_hotffi_ffi_runtime_release(void *rt);
void ngx_http_hotffi_ffi_runtime_stats(void *rt, hotffi_ffi_stats_t *out);
void ngx_http_hotffi_ffi_runtime_metrics(void *rt, hotffi_ffi_metrics_t *out);
int ngx_http_hotffi_ffi_hub_stats(hotffi_ffi_hub_stats_t *out);
int ngx_http_hotffi_ffi_runtime_serving(void *rt, hotffi_ffi_serving_t *out);
int ngx_http_hotffi_ffi_runtime_reload(void *rt, const char *lib,
    const char *cfg, size_t cfg_len, int keep_cfg, int handover,
    ngx_http_lua_sema_t **psema, unsigned char *err, size_t *errlen);
void ngx_http_hotffi_ffi_runtime_reload_release(void *rt,
    ngx_http_lua_sema_t *sema);
int ngx_http_hotffi_ffi_runtime_reload_overdue(void *rt);
int ngx_http_hotffi_ffi_runtime_last_reload(void *rt,
    hotffi_ffi_reload_t *out, unsigned char *err, size_t *errlen);
void *ngx_http_hotffi_ffi_call_post(ngx_http_request_t *r, void *rt,
    const char *req, size_t len, double timeout, int spin, int *pstate,
    uint32_t *pslot, ngx_http_lua_sema_t **psema, unsigned char *err,
    size_t *errlen);
int ngx_http_hotffi_ffi_call_result(void *task, const char **rsp,
    size_t *len);
void ngx_http_hotffi_ffi_call_finish(void *task);
void ngx_http_hotffi_ffi_call_abandon(void *task);
void ngx_http_hotffi_ffi_call_timeout(void *task);
ngx_http_lua_sema_t *ngx_http_hotffi_ffi_yield(void);
void ngx_http_hotffi_ffi_exiting(void);
]]


local FFI_VERSION = 8
local ERR_BUF_SIZE = 1024
-- HOTFFI_ERR_MAX (src/core/hotffi_err.h): an init error may be a traceback
local LOAD_ERR_BUF_SIZE = 4096
local DEFAULT_MAX_QUEUE = 65536
local DEFAULT_MAX_INFLIGHT = 65536
local DEFAULT_TIMEOUT = 60
-- ngx.semaphore waits in whole milliseconds held in a C int: a longer
-- timeout would wrap around and fail at once, so it waits this long
local MAX_TIMEOUT = (2 ^ 31 - 1) / 1000
local MAX_QUEUE_LIMIT = 2 ^ 31 - 1


do
    local ok, v = pcall(function() return C.ngx_http_hotffi_ffi_version() end)
    if not ok then
        error("resty.hotffi: ngx_http_hotffi_module is not loaded "
              .. "(add load_module .../ngx_http_hotffi_module.so after "
              .. "ngx_http_lua_module to nginx.conf)", 2)
    end
    if v ~= FFI_VERSION then
        error("resty.hotffi: ngx_http_hotffi_module speaks FFI version "
              .. v .. ", this Lua library version " .. FFI_VERSION
              .. ": install matching builds", 2)
    end
end


local _M = { version = "0.1.0" }

-- A runtime object is a table whose every string key is a call, so its own
-- state lives under integer keys that no method name can shadow.
local PTR, KEY, TIMEOUT, NAME = 1, 2, 3, 4
-- while libffi_init() runs: the ngx.semaphore other loads wait on (read
-- with rawget: a missing key reads as a call)
local STARTING = 5

-- an isolated runtime's { lib =, cfg =, opt = } (resty.hotffi.isolate);
-- read with rawget: a missing key of a runtime object is a call
local ISOLATE = 6

-- per worker: "lib&cfg" -> runtime object, and name -> runtime object;
-- name -> the error of its last load, while that load failed
local runtimes = {}
local named = {}
local failed = {}
local nfailed = 0
local MAX_FAILED = 256     -- names whose failure is remembered, at most

-- every runtime object still referenced, loaded or unloaded (weak keys:
-- for resty.hotffi.metrics, which counts calls refused as unloaded too)
local every = setmetatable({}, { __mode = "k" })
local resolver

local NGX_OK, NGX_ERROR, NGX_AGAIN = 0, -1, -2

local psema = ffi_new("ngx_http_lua_sema_t *[1]")
local pstate = ffi_new("int[1]")
local pslot = ffi_new("uint32_t[1]")
local pinit_rc = ffi_new("int[1]")
local prsp = ffi_new("const char *[1]")
local plen = ffi_new("size_t[1]")
local stats_buf = ffi_new("hotffi_ffi_stats_t")
local metrics_buf = ffi_new("hotffi_ffi_metrics_t")
local hub_stats_buf = ffi_new("hotffi_ffi_hub_stats_t")
local reload_buf = ffi_new("hotffi_ffi_reload_t")
local serving_buf = ffi_new("hotffi_ffi_serving_t")

-- semaphore.wait() reads .sem before it yields and never after, and the
-- semaphore itself belongs to the C side, so one table serves every call.
local waiter = {}

-- call_post() states (HOTFFI_* in src/core/hotffi_core.h and _call.h):
-- answered while spinning (and, for the second, 64 such calls in a row
-- kept the event loop from everything else: let it run once), wait on the
-- semaphore, the timeout passed while spinning; other negative: an error.
-- When no task was made, the state says why: the runtime is unloaded, its
-- queue is full, or something else (the message says what).
local WAIT, SPUN_OUT, ANSWERED_YIELD = -2, -4, 1
local REFUSED_UNLOADED, REFUSED_FULL = -5, -3

-- The runtime reads a request in place, from the Lua string's own bytes,
-- for as long as the C task lives, which may be longer than the call (an
-- abandoned task lives until the runtime answers it).  So each request is
-- referenced here by its task's slot, from before the call can yield until
-- the slot's next call replaces it: a slot is reused only once its task was
-- freed, i.e. once the runtime is done with the bytes.  Calls that finish
-- normally clear their entry at once, so only abandoned calls leave one.
local pins = {}

-- The phases where a coroutine can wait (ngx.semaphore's contexts).  A
-- call anywhere else fails before it is posted, whatever the timing: were
-- it posted, it would succeed when the answer came within the spin and
-- fail otherwise.
local wait_phases = {
    rewrite = true,
    server_rewrite = true,
    access = true,
    content = true,
    timer = true,
    ssl_cert = true,
    ssl_session_fetch = true,
    ssl_client_hello = true,
}


-- The buffer a C function writes its error message to, and its size in
-- and out; both are lua-resty-core's, reused by every call.
local function err_buf(size)
    local errlen = get_size_ptr()
    errlen[0] = size
    return get_string_buf(size), errlen
end


-- Seconds, positive; longer than MAX_TIMEOUT (infinity included) waits
-- MAX_TIMEOUT.
local function check_timeout(t, what, level)
    if type(t) ~= "number" or t ~= t or t <= 0 then
        error("bad " .. what .. ": positive number of seconds expected, got "
              .. tostring(t), level + 1)
    end
    return t < MAX_TIMEOUT and t or MAX_TIMEOUT
end


-- Lets the event loop run once (see src/nginx/ngx_http_hotffi_yield.c).
local function yield_once()
    -- sem: the C module's, kept for the worker's life; borrowed here
    local sem = C.ngx_http_hotffi_ffi_yield()
    if sem ~= nil then
        waiter.sem = sem
        sema_wait(waiter, DEFAULT_TIMEOUT)
    end
end


-- Waits for a runtime's start or reload to end: on sem (the C side's)
-- where a coroutine can wait, otherwise (init_worker_by_lua*, where loads
-- are common) by blocking the event loop, which serves nothing yet there.
-- true, or false and the reason.
local function wait_runtime(ptr, sem, timeout)
    if wait_phases[get_phase()] then
        waiter.sem = sem
        return sema_wait(waiter, timeout)
    end
    if C.ngx_http_hotffi_ffi_runtime_wait(ptr, timeout) == NGX_OK then
        return true
    end
    return false, "timeout"
end


-- A worker that exits (HUP, quit) runs its pending timers at once, with
-- premature set: then the C module gives the calls still waiting a grace
-- (HOTFFI_SHUTDOWN_GRACE_MS) before they fail, rather than their whole
-- timeout.  One timer per worker, armed by its first load.
local EXIT_WATCH = 3600
local exit_watched

local function exit_watch(premature)
    if premature then
        C.ngx_http_hotffi_ffi_exiting()
        return
    end
    exit_watched = timer_at(EXIT_WATCH, exit_watch)
end


-- Hands runtimes every lua_shared_dict (hotffi_shdict() in hotffi.h): the
-- zones, as lua-nginx-module's own shdict functions take them, by name.
-- Once per worker, with its first load, before any runtime thread runs.
local function share_dicts()
    -- lua-resty-core may have declared it already
    pcall(ffi.cdef, "void *ngx_http_lua_ffi_shdict_udata_to_zone(void *);")
    for name, dict in pairs(ngx.shared) do
        local udata = type(dict) == "table" and dict[1]
        if type(udata) == "userdata" then
            C.ngx_http_hotffi_ffi_shdict_add(name, #name,
                C.ngx_http_lua_ffi_shdict_udata_to_zone(udata))
        end
    end
end


-- The calls of both APIs: fail(message, why) shapes the failures of the
-- bridge itself (not the runtime's, which are always false, rc, payload);
-- why is "unloaded", "full" or nil.
local function caller(fail)
    return function(self, req, timeout)
        local tr = type(req)
        if tr == "number" then
            req = tostring(req)
        elseif tr ~= "string" and tr ~= "nil" then
            error("bad request: string or nil expected, got " .. tr, 2)
        end

        if timeout == nil then
            timeout = self[TIMEOUT]
        else
            timeout = check_timeout(timeout, "timeout", 2)
        end

        local r = get_request()
        if not r then
            error("no request found", 2)
        end

        local phase = get_phase()
        if not wait_phases[phase] then
            -- lua-nginx-module's own words for an API it disables there
            return fail("API disabled in the context of " .. phase
                        .. "_by_lua* (a call waits for its answer: make it "
                        .. "from a timer, ngx.timer.at(0, ...))")
        end

        local err, errlen = err_buf(ERR_BUF_SIZE)

        -- nil: a call without a request, NULL for the runtime
        local task = C.ngx_http_hotffi_ffi_call_post(r, self[PTR], req,
                                                     req and #req or 0,
                                                     timeout, 1, pstate,
                                                     pslot, psema, err,
                                                     errlen)
        local state = pstate[0]
        if task == nil then
            return fail(ffi_str(err, errlen[0]),
                        state == REFUSED_UNLOADED and "unloaded"
                        or state == REFUSED_FULL and "full" or nil)
        end

        local slot
        if state < 0 then
            -- the runtime may still read req: pinned, see `pins`
            slot = pslot[0]
            pins[slot] = req

            if state ~= WAIT then
                if state == SPUN_OUT then
                    C.ngx_http_hotffi_ffi_call_timeout(task)
                    return fail("timeout")
                end
                -- no semaphore: the C side gave the call up already
                return fail(ffi_str(err, errlen[0]))
            end

            -- self stays referenced by this frame across the yield, and the
            -- task holds its own reference on the C runtime
            waiter.sem = psema[0]
            local ok, werr = sema_wait(waiter, timeout)
            if not ok then
                if werr == "timeout" then
                    C.ngx_http_hotffi_ffi_call_timeout(task)
                else
                    C.ngx_http_hotffi_ffi_call_abandon(task)
                end
                return fail(werr)
            end
        end

        local rc = C.ngx_http_hotffi_ffi_call_result(task, prsp, plen)
        local rsp
        if prsp[0] ~= nil then
            rsp = ffi_str(prsp[0], plen[0])
        end
        C.ngx_http_hotffi_ffi_call_finish(task)
        if slot then
            pins[slot] = nil
        elseif state == ANSWERED_YIELD then
            yield_once()
        end

        if rc == 0 then
            return true, rsp
        end
        return false, rc, rsp
    end
end


local call = caller(function(msg)
    return false, nil, msg
end)


-- Drops rt from this worker's tables; self may be rt or a face on it.
local function forget(self)
    local rt = runtimes[self[KEY]]
    if rt and rt[PTR] == self[PTR] then
        runtimes[self[KEY]] = nil
    end
    rt = named[self[NAME]]
    if rt and rt[PTR] == self[PTR] then
        named[self[NAME]] = nil
    end
end


local function unload(self)
    C.ngx_http_hotffi_ffi_runtime_unload(self[PTR])
    forget(self)
    return true
end


-- The last reload that ended, as a table, or nil.
local function last_reload(self)
    local err, errlen = err_buf(LOAD_ERR_BUF_SIZE)

    local r = reload_buf
    if C.ngx_http_hotffi_ffi_runtime_last_reload(self[PTR], r, err, errlen)
       ~= NGX_OK
    then
        return nil
    end
    return {
        ok = r.ok ~= 0,
        from = tonumber(r.from),
        to = tonumber(r.to),
        started = r.started,
        seconds = r.seconds,
        overdue = r.overdue ~= 0 or nil,
        error = r.ok == 0 and ffi_str(err, errlen[0]) or nil,
    }
end


local function opt_string(opts, name, level)
    local v = opts[name]
    if type(v) == "number" then
        return tostring(v)
    end
    if v ~= nil and (type(v) ~= "string" or v == "") then
        error("bad option " .. name .. ": non-empty string expected, got "
              .. (v == "" and "an empty string" or type(v)), level + 1)
    end
    return v
end


-- In-place reload: same handle, same queue, state handed over.  Returns
-- the result table (from, to, seconds...) or nil and the error.
local function reload(self, opts)
    if opts == nil then
        opts = {}
    elseif type(opts) ~= "table" then
        error("bad options: table or nil expected, got " .. type(opts), 2)
    end

    local lib = opt_string(opts, "lib", 2)
    local cfg = opt_string(opts, "cfg", 2)
    local handover = opts.state ~= false and 1 or 0
    local timeout = self[TIMEOUT]
    if opts.timeout ~= nil then
        timeout = check_timeout(opts.timeout, "option timeout", 2)
    end
    local retire_timeout = opts.retire_timeout
    if retire_timeout ~= nil then
        timeout = check_timeout(retire_timeout, "option retire_timeout", 2)
    end

    -- an isolated runtime reloads its helper's library and cfg: the
    -- isolation library itself is given them anew
    local iso = rawget(self, ISOLATE)
    local keep_cfg = cfg == nil and 1 or 0
    if iso then
        lib, cfg = lib or iso.lib, cfg or iso.cfg
        iso.next_lib, iso.next_cfg = lib, cfg
        lib, cfg = isolation.wrap(lib, cfg, self[NAME], iso.opt, timeout, 2)
        keep_cfg = 0
    end

    local err, errlen = err_buf(LOAD_ERR_BUF_SIZE)

    local rc = C.ngx_http_hotffi_ffi_runtime_reload(self[PTR], lib, cfg,
                                                    cfg and #cfg or 0,
                                                    keep_cfg, handover,
                                                    psema, err, errlen)
    if rc == NGX_ERROR then
        return nil, ffi_str(err, errlen[0])
    end

    if rc == NGX_AGAIN then
        -- psema is shared: another reload may overwrite it while we wait
        local sem = psema[0]
        local ok, werr = wait_runtime(self[PTR], sem, timeout)
        if not ok and retire_timeout then
            -- the next version starts now (unless it is starting already,
            -- or the reload just ended): its libffi_init() is waited for
            -- as long again; the old one retires later
            C.ngx_http_hotffi_ffi_runtime_reload_overdue(self[PTR])
            ok, werr = wait_runtime(self[PTR], sem, timeout)
        end
        C.ngx_http_hotffi_ffi_runtime_reload_release(self[PTR], sem)
        if not ok then
            return nil, "reload still in progress after " .. timeout
                        .. " s (" .. tostring(werr) .. "): the old version "
                        .. "has not retired yet, or the new one's "
                        .. "libffi_init() has not returned"
        end
    end

    local res = last_reload(self)
    if iso and res.ok then
        iso.lib, iso.cfg = iso.next_lib, iso.next_cfg
    elseif iso then
        -- named by what the user asked for, not by the wrapped cfg
        local tried = iso.next_cfg and iso.next_lib .. "&" .. iso.next_cfg
                      or iso.next_lib
        res.error = isolation.unwrap_error(res.error, lib .. "&" .. cfg,
                                           tried)
    end
    if not res.ok then
        -- a failed rollback unloads the runtime: the next load starts anew
        C.ngx_http_hotffi_ffi_runtime_stats(self[PTR], stats_buf)
        if stats_buf.unloaded ~= 0 then
            forget(self)
        end
        return nil, res.error, res
    end
    return res
end


local function stats(self)
    C.ngx_http_hotffi_ffi_runtime_stats(self[PTR], stats_buf)
    local s = stats_buf
    return {
        key = self[KEY],
        name = self[NAME],
        version = tonumber(s.version),
        reloads = tonumber(s.reloads),
        reload_failures = tonumber(s.reload_failures),
        reloading = s.reloading ~= 0,
        last_reload = last_reload(self),
        calls = tonumber(s.calls),
        ok = tonumber(s.ok),
        failed = tonumber(s.failed),
        abandoned = tonumber(s.abandoned),
        rejected = tonumber(s.rejected),
        full = tonumber(s.full),
        inflight_full = tonumber(s.inflight_full),
        timeouts = tonumber(s.timeouts),
        dropped = tonumber(s.dropped),
        inflight = tonumber(s.inflight),
        queued = tonumber(s.queued),
        unloaded = s.unloaded ~= 0,
        closed = s.closed ~= 0,
    }
end


-- What serves now: the version, its library and the file mapped, its
-- cfg (and the CRC-32 the audit lines give), since when; nil when no
-- version serves (unloaded, or in the midst of a reload).
local function serving(self)
    local v = serving_buf
    if C.ngx_http_hotffi_ffi_runtime_serving(self[PTR], v) ~= NGX_OK then
        return nil
    end
    local known = v.ino ~= 0
    return {
        version = tonumber(v.version),
        lib = ffi_str(v.lib),
        cfg = v.cfg ~= nil and ffi_str(v.cfg, v.cfg_len) or nil,
        cfg_len = tonumber(v.cfg_len),
        cfg_crc32 = v.cfg ~= nil and format("%08x", v.cfg_crc32) or nil,
        dev = known and format("%d:%d", tonumber(v.dev_major),
                               tonumber(v.dev_minor)) or nil,
        ino = known and tonumber(v.ino) or nil,
        mtime = v.mtime ~= 0 and tonumber(v.mtime) or nil,
        since = v.since,
    }
end


-- The upper bounds of the latency buckets, seconds (HOTFFI_METRICS_BUCKETS_NS
-- in src/core/hotffi_metrics.h); the last bucket is +Inf.
_M.LATENCY_BUCKETS = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}
local NBUCKETS = #_M.LATENCY_BUCKETS + 1


-- What resty.hotffi.metrics reads of a runtime (see docs/api.md).
local function metrics(self)
    C.ngx_http_hotffi_ffi_runtime_metrics(self[PTR], metrics_buf)
    local m = metrics_buf
    local latency = {}
    for i = 1, NBUCKETS do
        latency[i] = tonumber(m.latency[i - 1])
    end
    return {
        ok = tonumber(m.ok),
        error = tonumber(m.error),
        timeout = tonumber(m.timeout),
        queue_full = tonumber(m.queue_full),
        unloaded = tonumber(m.unloaded),
        abandoned = tonumber(m.abandoned),
        bytes_in = tonumber(m.bytes_in),
        bytes_out = tonumber(m.bytes_out),
        latency = latency,
        latency_sum = tonumber(m.latency_sum_ns) / 1e9,
        inflight = tonumber(m.inflight),
        queued = tonumber(m.queued),
    }
end


local specials = {
    __unload = unload,
    __reload = reload,
    __stats = stats,
    __serving = serving,
    __metrics = metrics,
}

local mt = {
    __index = function(_, name)
        return specials[name] or call
    end,
    __call = call,
}


local function opt_flag(opts, name, level)
    local v = opts[name]
    if v ~= nil and type(v) ~= "boolean" then
        error("bad option " .. name .. ": boolean expected, got " .. type(v),
              level + 1)
    end
    return v and 1 or 0
end


local function opt_limit(opts, name, default, level)
    local n = opts[name]
    if n == nil then
        return default
    end
    if type(n) ~= "number" or n < 1 or n > MAX_QUEUE_LIMIT
       or floor(n) ~= n
    then
        error("bad option " .. name .. ": integer from 1 to "
              .. MAX_QUEUE_LIMIT .. " expected, got " .. tostring(n),
              level + 1)
    end
    return n
end


-- rt if its start ended well; nil, the error and libffi_init()'s rc if it
-- failed; nil when it still runs.  sem: the load's semaphore, released.
local function start_result(rt, sem)
    local err, errlen = err_buf(LOAD_ERR_BUF_SIZE)
    local rc = C.ngx_http_hotffi_ffi_runtime_started(rt[PTR], sem, pinit_rc,
                                                     err, errlen)
    if rc == NGX_OK then
        return rt
    end
    if rc == NGX_ERROR then
        return nil, ffi_str(err, errlen[0]), pinit_rc[0]
    end
    return nil
end


-- A load of a runtime whose start another load waits for: waits with it
-- where a coroutine can wait, and takes the same outcome; elsewhere the
-- runtime comes at once, its calls queued until libffi_init() returns.
local function await_other_start(rt, timeout)
    if not wait_phases[get_phase()] then
        return rt
    end
    rawget(rt, STARTING):wait(timeout)
    local res, err, init_rc = start_result(rt, nil)
    if res or err then
        return res, err, init_rc
    end
    return nil, "libffi_init() of runtime \"" .. rt[NAME] .. "\" still "
                .. "running after " .. timeout .. " s"
end


-- _M.load() below, misuse raised at the given level; on failure nil, the
-- reason and what libffi_init() returned (0: it was not called, nil: the
-- C module was not reached).
-- Remembers why the load of name failed, for get(name), says so in
-- error.log where no request would, and returns nil, msg, init_rc.
local function load_failed(name, msg, init_rc)
    -- names made per request must not grow the table for ever
    if not failed[name] then
        if nfailed >= MAX_FAILED then
            failed, nfailed = {}, 0
        end
        nfailed = nfailed + 1
    end
    failed[name] = msg
    if get_phase() == "init_worker" then
        -- else only the first request using it would find out
        log(ERR, "hotffi: loading runtime \"", name, "\" in ",
                "init_worker_by_lua* failed: ", msg, "; hotffi.get(\"",
                name, "\") returns nil and this error until a load ",
                "succeeds: fix the cause, then nginx -s reload (or load ",
                "it again)")
    end
    return nil, msg, init_rc
end


local function load(level, lib, cfg, opts)
    if type(lib) ~= "string" or lib == "" then
        error("bad library: non-empty string expected, got "
              .. (lib == "" and "an empty string" or type(lib)), level)
    end

    if type(cfg) == "number" then
        cfg = tostring(cfg)
    elseif cfg ~= nil and type(cfg) ~= "string" then
        error("bad configuration: string or nil expected, got " .. type(cfg),
              level)
    end

    if opts ~= nil and type(opts) ~= "table" then
        error("bad options: table or nil expected, got " .. type(opts), level)
    end

    if get_phase() == "init" then
        -- threads started in the master would not survive the fork
        return nil, "runtimes are loaded in worker processes "
                    .. "(init_worker_by_lua* or later), not in init_by_lua*"
    end

    -- checked even when the runtime is cached: misuse fails every time;
    -- a load given none (the usual per-request one) pays nothing for it
    local timeout, max_queue, max_inflight, global, unpin, name, iso =
        DEFAULT_TIMEOUT, DEFAULT_MAX_QUEUE, DEFAULT_MAX_INFLIGHT, 0, 0, nil,
        nil
    -- the calls' timeout is no bound for init: a runtime whose calls must
    -- answer in 50 ms may well take a second to start
    local init_timeout = DEFAULT_TIMEOUT

    if opts then
        if opts.timeout ~= nil then
            timeout = check_timeout(opts.timeout, "option timeout", level)
        end
        if opts.init_timeout ~= nil then
            init_timeout = check_timeout(opts.init_timeout,
                                         "option init_timeout", level)
        end
        max_queue = opt_limit(opts, "max_queue", DEFAULT_MAX_QUEUE, level)
        max_inflight = opt_limit(opts, "max_inflight", DEFAULT_MAX_INFLIGHT,
                                 level)
        global = opt_flag(opts, "is_global", level)
        unpin = opt_flag(opts, "unpin", level)
        name = opt_string(opts, "name", level)
        iso = isolation.check(opts.isolate, level)
    end

    local key = cfg and lib .. "&" .. cfg or lib
    local rt = runtimes[key]
    if rt then
        if opts and opts.isolate ~= nil
           and not iso ~= not rawget(rt, ISOLATE)
        then
            return nil, "runtime \"" .. key .. "\" is loaded already, "
                        .. (iso and "not " or "") .. "isolated"
        end
        if rawget(rt, STARTING) then
            return await_other_start(rt, init_timeout)
        end
        return rt
    end

    name = name or key

    if named[name] then
        return nil, "runtime name \"" .. name .. "\" is taken by runtime \""
                    .. named[name][KEY] .. "\""
    end

    -- a reload applied to every worker (resty.hotffi.admin) outlives the
    -- workers that ran it: a worker started since loads what it chose
    if resolver then
        local rlib, rcfg = resolver(name)
        lib, cfg = rlib or lib, rcfg or cfg
    end

    if not exit_watched then
        exit_watch()
        share_dicts()
    end

    if iso then
        iso = { lib = lib, cfg = cfg, opt = iso }
        lib, cfg = isolation.wrap(lib, cfg, name, iso.opt, init_timeout,
                                  level)
    end

    local err, errlen = err_buf(LOAD_ERR_BUF_SIZE)

    local ptr = C.ngx_http_hotffi_ffi_runtime_load(lib, cfg, cfg and #cfg or 0,
                                                   name, max_queue,
                                                   max_inflight, global,
                                                   unpin, psema, err, errlen)
    if ptr == nil then
        local msg = ffi_str(err, errlen[0])
        if iso then
            msg = isolation.unwrap_error(msg, lib .. "&" .. cfg, key)
        end
        return load_failed(name, msg, 0)
    end
    local sem = psema[0]

    ffi_gc(ptr, C.ngx_http_hotffi_ffi_runtime_release)

    -- listed at once: a load of the same runtime meanwhile waits for this
    -- start on rt[STARTING] rather than starting another
    local starting = semaphore.new()
    rt = setmetatable({ [PTR] = ptr, [KEY] = key, [TIMEOUT] = timeout,
                        [NAME] = name, [STARTING] = starting,
                        [ISOLATE] = iso }, mt)
    runtimes[key] = rt
    named[name] = rt
    every[rt] = true

    -- libffi_init() runs on a thread of its own: the event loop serves
    -- other requests meanwhile, this one waits
    local ok = wait_runtime(ptr, sem, init_timeout)
    rt[STARTING] = nil
    local res, rerr, init_rc = start_result(rt, sem)
    if not res and ok then
        forget(rt)
    elseif not res then
        -- given up: the runtime goes once its libffi_init() returns
        C.ngx_http_hotffi_ffi_runtime_unload(ptr)
        forget(rt)
        rerr = "libffi_init() of runtime \"" .. name .. "\" still running "
               .. "after " .. init_timeout .. " s: the load fails, and the "
               .. "runtime is unloaded once it returns"
    end

    local waiting = -starting:count()
    if waiting > 0 then
        starting:post(waiting)
    end
    if not res then
        if iso then
            rerr = isolation.unwrap_error(rerr, lib .. "&" .. cfg, key)
        end
        return load_failed(name, rerr, init_rc)
    end
    if failed[name] then
        failed[name] = nil
        nfailed = nfailed - 1
    end
    return res, rerr, init_rc
end


-- lua-resty-ffi's ngx.load_ffi(), with a default timeout for every call.
function _M.load(lib, cfg, opts)
    local rt, err = load(3, lib, cfg, opts)
    return rt, err
end


-- Another API's objects on the runtimes this module loads (lua-resty-ffi's,
-- in resty_ffi.lua).  fail(message, why) shapes the bridge's own failures
-- of their calls, as caller() above; fields[name](face) gives the names
-- that are plain fields there, not calls.  Returns:
--   load(level, lib, cfg, opts) -> the face of the runtime, one per
--       runtime, or nil, the reason, libffi_init()'s result (as the local
--       load() above, level counted from the returned function).
function _M.faces(fail, fields)
    local face_call = caller(fail)
    local face_mt = {
        __index = function(face, name)
            local field = fields[name]
            if field then
                return field(face)
            end
            return specials[name] or face_call
        end,
        __call = face_call,
    }

    -- weak: a face lives as long as its runtime object
    local made = setmetatable({}, { __mode = "k" })

    return function(level, lib, cfg, opts)
        local rt, err, init_rc = load(level + 1, lib, cfg, opts)
        if not rt then
            return nil, err, init_rc
        end

        local face = made[rt]
        if not face then
            -- the face holds rt's own cdata, whose finaliser drops Lua's
            -- reference on the C runtime: it lives while either is held
            face = setmetatable({ [PTR] = rt[PTR], [KEY] = rt[KEY],
                                  [TIMEOUT] = rt[TIMEOUT], [NAME] = rt[NAME],
                                  [ISOLATE] = rawget(rt, ISOLATE) },
                                face_mt)
            made[rt] = face
        end
        return face
    end
end


-- The runtime loaded in this worker under name (opts.name, or "lib&cfg"),
-- or nil and, when its last load failed, that load's error.
function _M.get(name)
    local rt = named[name]
    if rt then
        return rt
    end
    return nil, failed[name]
end


-- The names of the runtimes loaded in this worker, sorted.
function _M.names()
    local list = {}
    for name in pairs(named) do
        list[#list + 1] = name
    end
    table.sort(list)
    return list
end


-- Every runtime object of this worker that Lua still references, loaded
-- or not (an array; its name is rt:__stats().name).
function _M.runtimes()
    local list = {}
    for rt in pairs(every) do
        list[#list + 1] = rt
    end
    return list
end


-- For resty.hotffi.admin: fn(name) -> lib, cfg (nil: as load was given)
-- overrides what a load opens.
function _M.set_resolver(fn)
    resolver = fn
end


-- Counters of this worker: live tasks, event-loop wake-ups and the
-- completions they delivered, runtimes not yet freed.  All 0 until the
-- first load, which makes the worker's hub.
function _M.stats()
    local s = hub_stats_buf
    if C.ngx_http_hotffi_ffi_hub_stats(s) ~= 0 then
        s.tasks_live, s.wakeups, s.completions, s.runtimes = 0, 0, 0, 0
        s.spin_hits, s.spin_misses = 0, 0
    end
    return {
        tasks_live = tonumber(s.tasks_live),
        wakeups = tonumber(s.wakeups),
        completions = tonumber(s.completions),
        runtimes = tonumber(s.runtimes),
        spin_hits = tonumber(s.spin_hits),
        spin_misses = tonumber(s.spin_misses),
    }
end


return _M
