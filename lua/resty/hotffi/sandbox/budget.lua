-- resty.hotffi.sandbox.budget -- the instruction, time and memory budgets
-- of a run: a count hook, and the charges library wrappers add for work
-- done in one C call.  A budget stop is "sticky": once stopped, the hook
-- raises again in any script code that still runs.

local error = error
local floor = math.floor
local gc = collectgarbage
local getinfo = debug.getinfo
local huge = math.huge
local log = math.log
local pcall = pcall
local sethook = debug.sethook
local str_find = string.find
local str_format = string.format
local tonumber = tonumber
local type = type

-- Seconds from a monotonic clock: clock_gettime() through the vDSO (tens
-- of ns; the asm label keeps this declaration apart from any other
-- module's), else ngx.now() after ngx.update_time(), else os.clock().
local now
do
    local ok, ffi = pcall(require, "ffi")
    ok = ok and pcall(ffi.cdef, [[
        typedef struct {
            long  tv_sec;
            long  tv_nsec;
        } hotffi_sandbox_timespec_t;
        int hotffi_sandbox_clock_gettime(int clk,
            hotffi_sandbox_timespec_t *ts) __asm__("clock_gettime");
    ]])
    if ok and ffi.os == "Linux" then
        local C = ffi.C
        local ts = ffi.new("hotffi_sandbox_timespec_t")
        local CLOCK_MONOTONIC = 1
        now = function()
            C.hotffi_sandbox_clock_gettime(CLOCK_MONOTONIC, ts)
            return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
        end
    elseif ngx and ngx.update_time then
        local update_time, ngx_now = ngx.update_time, ngx.now
        now = function()
            update_time()
            return ngx_now()
        end
    else
        now = os.clock
    end
end


local _M = {
    -- the per-run state of the innermost running script, or nil: a
    -- field, read as budget.current, because resty.hotffi.sandbox sets
    -- it around each run and every library wrapper reads it
    current = nil,
    now = now,
}

local CHECK_EVERY = 1000        -- longest hook interval, in instructions
local CLOCK_EVERY = 250         -- instructions between two clock reads
-- Some single instructions take time in proportion to the data they
-- touch: `<` on two long strings reads both, `next` skips empty slots.
-- The clock is read often enough that this many bytes of such work (about
-- 0.05 s) fit between two reads, taking the run's largest string or its
-- whole heap growth as what one instruction may touch.
local CLOCK_BYTES = 256 * 1024 * 1024
-- Library work is charged to the instruction budget in bytes: 64 bytes
-- copied or compared cost one instruction (the wrappers convert their own
-- units of work to bytes).
local BYTES_PER_INSTRUCTION = 64
-- Bytes one instruction can add, at least: {unpack(t)} copies up to 8000
-- values (LUAI_MAXCSTACK) of 8 bytes.  Table constructors can add more:
-- the script's own bound (script.step_growth) replaces it then.
local ADD_GROWTH = 64 * 1024
-- One instruction can grow the largest string by at most 1.32x through
-- `..` (CAT needs one instruction per operand); 1 / ln(1.32):
local CAT_FACTOR = 1 / log(1.32)

_M.CLOCK_EVERY = CLOCK_EVERY
_M.ADD_GROWTH = ADD_GROWTH
_M.BYTES_PER_INSTRUCTION = BYTES_PER_INSTRUCTION

local BUDGET_MESSAGES = {
    instructions = "instruction budget exceeded (%d instructions)",
    time = "time budget exceeded (%g s)",
    memory = "memory budget exceeded (%d bytes)",
}


-- Heap growth of the run, in bytes: the sum of the increases of the VM's
-- heap seen at each check.  Decreases are not credited back: a collection
-- during the run frees other requests' garbage too, and crediting it
-- would give the script that much extra room.
local function memory_used(st)
    local kb = gc("count")
    local grown = kb - st.mem_seen
    st.mem_seen = kb
    if grown > 0 then
        st.mem_used = st.mem_used + grown * 1024
    end
    return st.mem_used
end


-- Instructions until the next clock read (see CLOCK_BYTES).
local function clock_every(st)
    local touched = st.base > st.mem_used and st.base or st.mem_used
    local every = floor(CLOCK_BYTES / touched)
    if every >= CLOCK_EVERY then
        return CLOCK_EVERY
    end
    return every >= 1 and every or 1
end


local function over_budget(st)
    if st.used >= st.max_instr then
        return "instructions"
    end
    if memory_used(st) > st.max_mem then
        return "memory"
    end
    if st.used >= st.clock_at then
        st.clock_at = st.used + clock_every(st)
        if now() >= st.deadline then
            return "time"
        end
    end
    return nil
end


local function budget_message(st, kind)
    local limits = st.limits
    return str_format(BUDGET_MESSAGES[kind], limits[kind])
end


-- The message is set before the flag: outside the hook (a library
-- wrapper stopping the run), the hook may fire between the two, and it
-- raises st.message as soon as st.stopped is set.
local function mark_stopped(st, kind)
    if not st.stopped then
        st.message = budget_message(st, kind)
        st.stopped = kind
    end
end


-- Errors that mean the VM ran out of a resource: raised where the script
-- happened to be, possibly inside the count hook (a stack filled to just
-- below its limit leaves the hook no room to run).  A script that caught
-- one could keep the hook failing and so escape the budget: the sandbox's
-- pcall, xpcall and coroutine.resume make them end the run instead, like
-- a budget stop ("error" kind, or "memory").
local function resource_error(err)
    if type(err) ~= "string" then
        return nil
    end
    if err == "not enough memory" then
        return "memory"
    end
    if str_find(err, "stack overflow", 1, true)
       or err == "error in error handling"
    then
        return "error"
    end
    return nil
end


-- True (and the run is stopped for good) when a caught error must not be
-- caught: a budget stop, or a resource error.
function _M.uncatchable(st, err)
    if st.stopped then
        return true
    end
    local kind = resource_error(err)
    if kind == nil then
        return false
    end
    st.message = kind == "memory" and budget_message(st, kind) or err
    st.stopped = kind
    return true
end


-- Functions of the host's bookkeeping around the script (before it starts
-- and after it ended, in resty.hotffi.sandbox, which fills this set): a
-- hook that interrupts one of them never raises.  Only the interrupted
-- function is looked at (getinfo at a fixed level, O(1)), never a walk of
-- the stack, which would cost O(depth²) under a deep recursion.
local HOST_FRAMES = {}
_M.host_frames = HOST_FRAMES


-- Stops the run: raises the budget error, unless `interrupted` (the
-- function a hook interrupted, if any) is the host's bookkeeping, or the
-- script is in a host function, which is not interrupted (it may be
-- updating host state): the stop is raised when it returns.
local function stop(st, kind, interrupted)
    if HOST_FRAMES[interrupted] then
        return
    end
    mark_stopped(st, kind)
    if st.in_host > 0 then
        return
    end
    error(st.message, 0)
end


local function check_now(st)
    local kind = over_budget(st)
    if kind then
        stop(st, kind, nil)
    end
end


-- Charges library work (in steps) to the instruction budget.  The counter
-- stays finite and never goes back, whatever a wrapper computed from the
-- script's arguments: a negative charge counts nothing, a NaN one the
-- whole budget (a NaN counter would never compare as spent again).
local function cost(st, steps)
    if not (steps > 0) then
        if steps == steps then
            return
        end
        steps = huge
    end
    local used = st.used + steps / BYTES_PER_INSTRUCTION
    if used > st.max_instr then
        used = st.max_instr
    end
    st.used = used
    if used >= st.clock_at or used >= st.max_instr then
        check_now(st)
    end
end


local hook, rearm

-- Stops the run unless `bytes` more fit in the memory budget (a NaN does
-- not).  A string that big may be doubled by `..` from now on: the check
-- interval is recomputed for it.
local function need(st, bytes)
    if bytes <= 4096 then
        return
    end
    if not (bytes <= st.max_mem - memory_used(st)) then
        stop(st, "memory")
    end
    if bytes > st.base then
        st.base = bytes
        rearm(st)
    end
end


-- How many instructions may run before the next check, so that memory
-- cannot grow past twice the budget in between (see docs/sandbox.md).
local function interval(st, used_mem)
    local k = st.max_instr - st.used
    local to_clock = st.clock_at - st.used
    local every = clock_every(st)
    if every < to_clock then
        -- a big string arrived since the last clock read (an argument,
        -- a library result): read it sooner
        to_clock = every
        st.clock_at = st.used + every
    end
    if to_clock < k then
        k = to_clock
    end
    if k > CHECK_EVERY then
        k = CHECK_EVERY
    end
    local room = st.hard_mem - used_mem
    local k_add = room / st.step_growth
    if k_add < k then
        k = k_add
    end
    local width = st.concat_width
    if width > 0 then
        local base = used_mem > st.base and used_mem or st.base
        local ratio = room / ((width + 2) * base)
        local k_cat = ratio > 1 and log(ratio) * CAT_FACTOR or 0
        if k_cat < k then
            k = k_cat
        end
    end
    k = floor(k)
    -- never 0 or NaN: sethook with either would disarm the hook
    return k >= 1 and k or 1
end


-- Restarts the count with a fresh interval (the instructions run since
-- the last hook are not counted: at most one interval).
rearm = function(st)
    local k = interval(st, memory_used(st))
    st.k = k
    sethook(hook, "", k)
end


hook = function()
    local st = _M.current
    if st == nil then
        return
    end
    st.used = st.used + st.k
    -- sticky: once stopped, raise again in any script code still running
    local kind = st.stopped or over_budget(st)
    if kind then
        stop(st, kind, getinfo(2, "f").func)
    end
    local k = interval(st, memory_used(st))
    if k ~= st.k then
        st.k = k
        sethook(hook, "", k)
    end
end


_M.memory_used = memory_used
_M.message = budget_message
_M.stop = stop
_M.check_now = check_now
_M.cost = cost
_M.need = need
_M.interval = interval
_M.rearm = rearm
_M.hook = hook

return _M
