-- resty.hotffi.sandbox -- run untrusted Lua scripts with budgets that the
-- script cannot escape.  See docs/sandbox.md for the API, the budgets and
-- the threat model.
--
-- How it holds together, in short:
--
--  * a script is compiled from text only (load mode "t"), with JIT
--    disabled for all of its functions, so that the count hook fires in
--    every one of them;
--  * each run gets a fresh global table whose __index is a whitelist of
--    read-only library tables (proxies), so a script can change nothing
--    shared;
--  * a count hook enforces the instruction, time and memory budgets; a
--    budget stop is "sticky": once stopped, the hook raises again in any
--    script code that still runs, and the sandbox's pcall, xpcall and
--    coroutine.resume re-raise it, so nothing can swallow it;
--  * library functions that do unbounded work in one C call (string.rep,
--    format, gsub, find, table.concat, ...) are wrapped: they check the
--    memory budget before allocating and charge their work to the
--    instruction budget; patterns whose worst case is too costly for the
--    native matcher run on a budgeted Lua port of it;
--  * while a script runs, the string metatable's __index points at the
--    sandbox's string table (so ("x"):rep() is the guarded rep), and the
--    run happens inside a C call boundary so that nothing can yield out
--    of it: both are undone before the run returns;
--  * only plain data crosses the boundary: arguments, results, and the
--    arguments and results of host functions are copied without
--    metatables; script functions never reach the host.

local jit_util = require "jit.util"

local getinfo = debug.getinfo
local gethook = debug.gethook
local sethook = debug.sethook
local debug_getmetatable = debug.getmetatable
local assert = assert
local error = error
local gc = collectgarbage
local getmetatable = getmetatable
local ipairs = ipairs
local jit_off = jit.off
local load = load
local next = next
local pairs = pairs
local pcall = pcall
local rawequal = rawequal
local rawget = rawget
local rawset = rawset
local select = select
local setfenv = setfenv
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local unpack = unpack
local xpcall = xpcall

local floor = math.floor
local huge = math.huge
local log = math.log
local max = math.max
local band = bit.band
local rshift = bit.rshift

local str_byte = string.byte
local str_find = string.find
local str_format = string.format
local str_gmatch = string.gmatch
local str_gsub = string.gsub
local str_lower = string.lower
local str_match = string.match
local str_rep = string.rep
local str_reverse = string.reverse
local str_sub = string.sub
local str_upper = string.upper
local tab_concat = table.concat
local tab_insert = table.insert
local tab_remove = table.remove
local tab_sort = table.sort

-- ngx_lua replaces coroutine.* with versions that yield to its scheduler
-- and keeps LuaJIT's own as coroutine._*; scripts get LuaJIT's.
local co_create = coroutine._create or coroutine.create
local co_resume = coroutine._resume or coroutine.resume
local co_yield = coroutine._yield or coroutine.yield
local co_status = coroutine._status or coroutine.status
local co_running = coroutine.running

local STRING_MT = debug_getmetatable("")

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


local _M = { version = "0.1.0" }


local DEFAULT_LIMITS = {
    instructions = 1000000,     -- VM instructions + charged library work
    time = 0.1,                 -- seconds of wall-clock time
    memory = 8 * 1024 * 1024,   -- bytes of Lua heap growth
}

local DEFAULT_MAX_SOURCE = 1024 * 1024
local DEFAULT_PATTERN_STEPS = 200000   -- ~1 ms for the native matcher

local CHECK_EVERY = 1000        -- longest hook interval, in instructions
local CLOCK_EVERY = 250         -- instructions between two clock reads
-- Library work is charged to the instruction budget in bytes: 64 bytes
-- copied or compared cost one instruction; a step of the Lua matcher
-- costs 16 (4 per instruction), a worst-case step of the native matcher 4
-- (its estimate is loose).  A plain search compares 64 bytes in the time
-- of one matcher step.
local BYTES_PER_INSTRUCTION = 64
local LUA_STEP_BYTES = 16
local NATIVE_STEP_BYTES = 4
local PLAIN_PER_STEP = 64
local TICK = 4096               -- Lua matcher steps between budget checks
local MIN_BASE = 1024           -- bytes; floor of the largest-string guess
local ADD_GROWTH = 16 * 1024    -- bytes one instruction can add (unpack)
-- One instruction can grow the largest string by at most 1.32x through
-- `..` (CAT needs one instruction per operand); 1 / ln(1.32):
local CAT_FACTOR = 1 / log(1.32)
local MAX_ERROR_LEN = 2048
local MAX_WALK = 100000         -- stack levels inspected by a budget stop

local BUDGET_MESSAGES = {
    instructions = "instruction budget exceeded (%d instructions)",
    time = "time budget exceeded (%g s)",
    memory = "memory budget exceeded (%d bytes)",
}

local LIMIT_NAMES = { instructions = true, time = true, memory = true }

-- the per-run state of the innermost running script, or nil
local current

-- read-only proxy -> the plain table it shows (weak keys)
local SHADOW = setmetatable({}, { __mode = "k" })

-- a script's chunk holds this environment between runs
local IDLE_ENV = setmetatable({}, { __metatable = false })


-- ------------------------------------------------------------------------
-- Budgets

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


local function over_budget(st)
    if st.used >= st.max_instr then
        return "instructions"
    end
    if memory_used(st) > st.max_mem then
        return "memory"
    end
    if st.used >= st.clock_at then
        st.clock_at = st.used + CLOCK_EVERY
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


-- Functions whose frames tell whether a budget stop may be raised: the
-- script runs inside run_and_copy (raise), the host's bookkeeping around
-- it runs in boundary and run_protected (never raise).  Filled below.
local FRAMES = {}


-- True when the code that was interrupted belongs to the run (the script,
-- a library wrapper or a host function it called), false when it is the
-- host's bookkeeping before or after the script.
local function inside_script()
    local level = 3
    while level < MAX_WALK do
        local info = getinfo(level, "f")
        if info == nil then
            return true     -- the bottom of a coroutine the script created
        end
        local verdict = FRAMES[info.func]
        if verdict ~= nil then
            return verdict
        end
        level = level + 1
    end
    return true
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


-- Stops the run: raises the budget error unless the interrupted code is
-- the host's.  A host function the script called is not interrupted (it
-- may be updating host state): the stop is raised when it returns.
local function stop(st, kind)
    if st.in_host > 0 then
        mark_stopped(st, kind)
        return
    end
    if not inside_script() then
        return
    end
    mark_stopped(st, kind)
    error(st.message, 0)
end


local function check_now(st)
    local kind = over_budget(st)
    if kind then
        stop(st, kind)
    end
end


-- Charges library work (in steps) to the instruction budget.
local function cost(st, steps)
    local used = st.used + steps / BYTES_PER_INSTRUCTION
    st.used = used
    if used >= st.clock_at or used >= st.max_instr then
        check_now(st)
    end
end


local hook, rearm

-- Stops the run unless `bytes` more fit in the memory budget.  A string
-- that big may be doubled by `..` from now on: the check interval is
-- recomputed for it.
local function need(st, bytes)
    if bytes <= 4096 then
        return
    end
    if bytes > st.max_mem - memory_used(st) then
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
    if to_clock < k then
        k = to_clock
    end
    if k > CHECK_EVERY then
        k = CHECK_EVERY
    end
    local room = st.hard_mem - used_mem
    local k_add = room / ADD_GROWTH
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
    return k < 1 and 1 or k
end


-- Restarts the count with a fresh interval (the instructions run since
-- the last hook are not counted: at most one interval).
rearm = function(st)
    local k = interval(st, memory_used(st))
    st.k = k
    sethook(hook, "", k)
end


hook = function()
    local st = current
    if st == nil then
        return
    end
    st.used = st.used + st.k
    if st.stopped then
        return stop(st, st.stopped)     -- sticky: raise again
    end
    check_now(st)
    local k = interval(st, memory_used(st))
    if k ~= st.k then
        st.k = k
        sethook(hook, "", k)
    end
end


-- ------------------------------------------------------------------------
-- Plain data across the boundary

local function inert_userdata(v)
    -- a userdata without a metatable (ngx.null, cjson.null) has no
    -- behaviour a script could reach
    return debug_getmetatable(v) == nil
end


local copy_in, wrap_host

-- Host value -> script value: tables are copied without metatables,
-- functions are wrapped; returns nil, err for values that must not cross.
local function copy_in_value(v, seen, st)
    local tv = type(v)
    if tv == "string" then
        if st and #v > st.base then
            st.base = #v
        end
        return v
    end
    if tv == "number" or tv == "boolean" or tv == "nil" then
        return v
    end
    if tv == "table" then
        return copy_in(v, seen, st)
    end
    if tv == "function" then
        return wrap_host(v)
    end
    if tv == "userdata" and inert_userdata(v) then
        return v
    end
    return nil, "cannot pass a " .. tv .. " value into a sandbox"
end


copy_in = function(t, seen, st)
    local c = seen[t]
    if c then
        return c
    end
    c = {}
    seen[t] = c
    for k, v in next, t do
        local ck, err = copy_in_value(k, seen, st)
        if err then
            return nil, err
        end
        local cv
        cv, err = copy_in_value(v, seen, st)
        if err then
            return nil, err
        end
        c[ck] = cv
    end
    return c
end


local copy_out

-- Script value -> host value: plain copies only; raises in the script.
local function copy_out_value(v, seen, what)
    local tv = type(v)
    if tv == "string" or tv == "number" or tv == "boolean" or tv == "nil" then
        return v
    end
    if tv == "table" then
        local shadow = SHADOW[v]
        return copy_out(shadow or v, seen, what)
    end
    if tv == "userdata" and inert_userdata(v) then
        return v
    end
    error("cannot pass a " .. tv .. " value out of the sandbox (" .. what
          .. ")", 0)
end


copy_out = function(t, seen, what)
    local c = seen[t]
    if c then
        return c
    end
    c = {}
    seen[t] = c
    for k, v in next, t do
        c[copy_out_value(k, seen, what)] = copy_out_value(v, seen, what)
    end
    return c
end


local function copy_out_list(list, n, what)
    local seen = {}
    for i = 1, n do
        list[i] = copy_out_value(list[i], seen, what)
    end
    return list
end


local function copy_in_list(st, list, n)
    local seen = {}
    for i = 1, n do
        local v, err = copy_in_value(list[i], seen, st)
        if err then
            error(err, 0)
        end
        list[i] = v
    end
    return list
end


local function pack(...)
    return { n = select("#", ...), ... }
end


-- Calls f(...) where nothing can yield: a gsub callback runs under a C
-- call, and LuaJIT cannot yield across it.
local function call_unyieldable(f, args)
    local res
    str_gsub("x", "x", function()
        res = pack(pcall(f, unpack(args, 1, args.n)))
    end)
    return res
end


local function host_error(st, err)
    if type(err) == "string" then
        return err
    end
    local copy = copy_in_value(err, {}, st)
    if copy == nil and err ~= nil then
        return "(error object is a " .. type(err) .. " value)"
    end
    return copy
end


-- Calls a host function for the script: plain copies of the arguments
-- go in, plain copies of the results come out; budgets are checked when
-- it returns.
local function call_host(f, ...)
    local st = current
    local n = select("#", ...)
    local args = copy_out_list({ ... }, n, "argument of a host function")
    args.n = n
    if st == nil then
        return f(unpack(args, 1, n))
    end
    cost(st, BYTES_PER_INSTRUCTION)
    st.in_host = st.in_host + 1
    local res
    if st.threads[co_running()] then
        -- in a script coroutine a host function could yield it: forbid it
        res = call_unyieldable(f, args)
    else
        res = pack(pcall(f, unpack(args, 1, n)))
    end
    st.in_host = st.in_host - 1
    if st.stopped then
        error(st.message, 0)
    end
    st.clock_at = st.used   -- its (JIT-compiled) loops ran without hooks
    check_now(st)
    if not res[1] then
        error(host_error(st, res[2]), 0)
    end
    local base = st.base
    copy_in_list(st, res, res.n)
    if st.base > base then
        rearm(st)           -- it returned a bigger string than seen so far
    end
    return unpack(res, 2, res.n)
end


wrap_host = function(f)
    return function(...)
        return call_host(f, ...)
    end
end


-- ------------------------------------------------------------------------
-- Read-only tables

local function deny_write()
    error("attempt to modify a read-only table", 2)
end


local readonly

local function expose(v, host, seen)
    local tv = type(v)
    if tv == "table" then
        return readonly(v, host, seen)
    end
    if not host then
        return v
    end
    if tv == "function" then
        return wrap_host(v)
    end
    local c, err = copy_in_value(v, seen, nil)
    if err then
        error(err, 0)
    end
    return c
end


-- A proxy showing t (deeply) read-only; host functions inside are wrapped
-- when `host` is true.
readonly = function(t, host, seen)
    local p = seen[t]
    if p then
        return p
    end
    local shadow = {}
    p = setmetatable({}, {
        __index = shadow,
        __newindex = deny_write,
        __metatable = false,
    })
    seen[t] = p
    SHADOW[p] = shadow
    for k, v in next, t do
        shadow[expose(k, host, seen)] = expose(v, host, seen)
    end
    return p
end


-- ------------------------------------------------------------------------
-- A budgeted port of LuaJIT's pattern matcher (lib_string.c), used when a
-- pattern's worst case is too costly for one native call.

-- exports: find, match (via find), gmatch, gsub, plain_find, cost
local PATTERN = {}

do

    local L_ESC = 37            -- %
    local CAP_UNFINISHED = -1
    local CAP_POSITION = -2
    local MAX_CAPTURES = 32
    local MAX_DEPTH = 200       -- LJ_MAX_XLEVEL

    local CLASS = {}
    do
        local function range(t, a, b)
            for c = a, b do
                t[c] = true
            end
        end
        local sets = {
            a = function(t) range(t, 65, 90) range(t, 97, 122) end,
            c = function(t) range(t, 0, 31) t[127] = true end,
            d = function(t) range(t, 48, 57) end,
            l = function(t) range(t, 97, 122) end,
            p = function(t)
                range(t, 33, 47) range(t, 58, 64) range(t, 91, 96)
                range(t, 123, 126)
            end,
            s = function(t) range(t, 9, 13) t[32] = true end,
            u = function(t) range(t, 65, 90) end,
            w = function(t)
                range(t, 48, 57) range(t, 65, 90) range(t, 97, 122)
            end,
            x = function(t)
                range(t, 48, 57) range(t, 65, 70) range(t, 97, 102)
            end,
            z = function(t) t[0] = true end,
        }
        for name, fill in pairs(sets) do
            local yes, no = {}, {}
            fill(yes)
            for c = 0, 255 do
                no[c] = not yes[c]
                yes[c] = yes[c] or false
            end
            CLASS[str_byte(name)] = yes
            CLASS[str_byte(str_upper(name))] = no
        end
    end


    local function pat_at(ms, i)
        if i < ms.pend then
            return str_byte(ms.pat, i)
        end
        return 0
    end


    local function tick(ms)
        local steps = ms.steps + 1
        ms.steps = steps
        if steps >= ms.next_check then
            ms.next_check = steps + TICK
            local st = current
            if st then
                cost(st, TICK * LUA_STEP_BYTES)
            end
        end
    end


    local function class_end(ms, p)
        local c = pat_at(ms, p)
        p = p + 1
        if c == L_ESC then
            if p >= ms.pend then
                error("malformed pattern (ends with '%')", 0)
            end
            return p + 1
        end
        if c == 91 then                                 -- [
            if pat_at(ms, p) == 94 then                 -- ^
                p = p + 1
            end
            repeat
                if p >= ms.pend then
                    error("malformed pattern (missing ']')", 0)
                end
                local cc = pat_at(ms, p)
                p = p + 1
                if cc == L_ESC and p < ms.pend then
                    p = p + 1
                end
            until pat_at(ms, p) == 93                   -- ]
            return p + 1
        end
        return p
    end


    local function match_class(c, cl)
        local set = CLASS[cl]
        if set then
            return set[c]
        end
        return cl == c
    end


    local function match_bracket(ms, c, p, ec)
        local sig = true
        if pat_at(ms, p + 1) == 94 then
            sig = false
            p = p + 1
        end
        while true do
            p = p + 1
            if p >= ec then
                return not sig
            end
            local pc = pat_at(ms, p)
            if pc == L_ESC then
                p = p + 1
                if match_class(c, pat_at(ms, p)) then
                    return sig
                end
            elseif pat_at(ms, p + 1) == 45 and p + 2 < ec then     -- a-z
                p = p + 2
                if pc <= c and c <= pat_at(ms, p) then
                    return sig
                end
            elseif pc == c then
                return sig
            end
        end
    end


    local function single_match(ms, c, p, ep)
        local pc = pat_at(ms, p)
        if pc == 46 then                                -- .
            return true
        elseif pc == L_ESC then
            return match_class(c, pat_at(ms, p + 1))
        elseif pc == 91 then
            return match_bracket(ms, c, p, ep - 1)
        end
        return pc == c
    end


    local do_match

    local function match_balance(ms, s, p)
        if p + 1 >= ms.pend then
            error("unbalanced pattern", 0)
        end
        local b = pat_at(ms, p)
        if s > ms.slen or str_byte(ms.src, s) ~= b then
            return nil
        end
        local e = pat_at(ms, p + 1)
        local src, slen = ms.src, ms.slen
        local cont = 1
        s = s + 1
        while s <= slen do
            tick(ms)
            local c = str_byte(src, s)
            if c == e then
                cont = cont - 1
                if cont == 0 then
                    return s + 1
                end
            elseif c == b then
                cont = cont + 1
            end
            s = s + 1
        end
        return nil
    end


    local function max_expand(ms, s, p, ep)
        local i = 0
        local src, slen = ms.src, ms.slen
        while s + i <= slen and single_match(ms, str_byte(src, s + i), p, ep) do
            tick(ms)
            i = i + 1
        end
        while i >= 0 do
            tick(ms)
            local res = do_match(ms, s + i, ep + 1)
            if res then
                return res
            end
            i = i - 1
        end
        return nil
    end


    local function min_expand(ms, s, p, ep)
        while true do
            tick(ms)
            local res = do_match(ms, s, ep + 1)
            if res then
                return res
            end
            if s <= ms.slen
               and single_match(ms, str_byte(ms.src, s), p, ep)
            then
                s = s + 1
            else
                return nil
            end
        end
    end


    local function start_capture(ms, s, p, what)
        local level = ms.level
        if level >= MAX_CAPTURES then
            error("too many captures", 0)
        end
        ms.cinit[level] = s
        ms.clen[level] = what
        ms.level = level + 1
        local res = do_match(ms, s, p)
        if not res then
            ms.level = ms.level - 1
        end
        return res
    end


    local function end_capture(ms, s, p)
        local l = ms.level - 1
        while l >= 0 and ms.clen[l] ~= CAP_UNFINISHED do
            l = l - 1
        end
        if l < 0 then
            error("invalid pattern capture", 0)
        end
        ms.clen[l] = s - ms.cinit[l]
        local res = do_match(ms, s, p)
        if not res then
            ms.clen[l] = CAP_UNFINISHED
        end
        return res
    end


    local function match_capture(ms, s, l)
        l = l - 49                                      -- '1'
        if l < 0 or l >= ms.level or ms.clen[l] == CAP_UNFINISHED then
            error("invalid capture index", 0)
        end
        local len = ms.clen[l]
        if len < 0 or ms.slen + 1 - s < len then
            return nil
        end
        local init = ms.cinit[l]
        if len > 0 then
            ms.steps = ms.steps + len
            tick(ms)
            if str_sub(ms.src, init, init + len - 1)
               ~= str_sub(ms.src, s, s + len - 1)
            then
                return nil
            end
        end
        return s + len
    end


    local function is_digit(c)
        return c >= 48 and c <= 57
    end


    -- Matches the pattern from p against the subject from s; returns the end
    -- of the match (exclusive) or nil.
    do_match = function(ms, s, p)
        local depth = ms.depth + 1
        if depth > MAX_DEPTH then
            error("pattern too complex", 0)
        end
        ms.depth = depth
        local pend = ms.pend
        local res
        while true do
            tick(ms)
            if p >= pend then
                res = s
                break
            end
            local pc = str_byte(ms.pat, p)
            local nc = pat_at(ms, p + 1)
            if pc == 40 then                            -- (
                if nc == 41 then
                    res = start_capture(ms, s, p + 2, CAP_POSITION)
                else
                    res = start_capture(ms, s, p + 1, CAP_UNFINISHED)
                end
                break
            elseif pc == 41 then                        -- )
                res = end_capture(ms, s, p + 1)
                break
            elseif pc == 36 and p + 1 == pend then      -- $ at the end
                if s == ms.slen + 1 then
                    res = s
                end
                break
            elseif pc == L_ESC and nc == 98 then        -- %b
                s = match_balance(ms, s, p + 2)
                if not s then
                    break
                end
                p = p + 4
            elseif pc == L_ESC and nc == 102 then       -- %f
                p = p + 2
                if pat_at(ms, p) ~= 91 then
                    error("missing '[' after '%f' in pattern", 0)
                end
                local ep = class_end(ms, p)
                local prev = s == 1 and 0 or str_byte(ms.src, s - 1)
                local cur = s <= ms.slen and str_byte(ms.src, s) or 0
                if match_bracket(ms, prev, p, ep - 1)
                   or not match_bracket(ms, cur, p, ep - 1)
                then
                    break
                end
                p = ep
            elseif pc == L_ESC and is_digit(nc) then    -- %1
                s = match_capture(ms, s, nc)
                if not s then
                    break
                end
                p = p + 2
            else
                local ep = class_end(ms, p)
                local m = s <= ms.slen
                          and single_match(ms, str_byte(ms.src, s), p, ep)
                local q = pat_at(ms, ep)
                if q == 63 then                         -- ?
                    if m then
                        res = do_match(ms, s + 1, ep + 1)
                        if res then
                            break
                        end
                    end
                    p = ep + 1
                elseif q == 42 then                     -- *
                    res = max_expand(ms, s, p, ep)
                    break
                elseif q == 43 then                     -- +
                    if m then
                        res = max_expand(ms, s + 1, p, ep)
                    end
                    break
                elseif q == 45 then                     -- -
                    res = min_expand(ms, s, p, ep)
                    break
                else
                    if not m then
                        break
                    end
                    s = s + 1
                    p = ep
                end
            end
        end
        ms.depth = depth - 1
        return res
    end


    local function pattern_end(p, from)
        return str_find(p, "\0", from, true) or #p + 1
    end


    local function new_matcher(s, p, pstart)
        return {
            src = s, slen = #s, pat = p, pend = pattern_end(p, pstart),
            level = 0, depth = 0, cinit = {}, clen = {},
            steps = 0, next_check = TICK,
        }
    end


    local function get_capture(ms, i, s, e)
        if i >= ms.level then
            if i == 0 then
                return str_sub(ms.src, s, e - 1)
            end
            error("invalid capture index", 0)
        end
        local len = ms.clen[i]
        local init = ms.cinit[i]
        if len == CAP_UNFINISHED then
            error("unfinished capture", 0)
        end
        if len == CAP_POSITION then
            return init
        end
        return str_sub(ms.src, init, init + len - 1)
    end


    local function captures(ms, s, e)
        local n = (ms.level == 0 and s) and 1 or ms.level
        if n == 0 then
            return
        end
        if n == 1 then
            return get_capture(ms, 0, s, e)
        end
        local caps = {}
        for i = 0, n - 1 do
            caps[i + 1] = get_capture(ms, i, s, e)
        end
        return unpack(caps, 1, n)
    end


    -- string.find / string.match on the Lua matcher; start is 1-based and
    -- already normalized.
    local function lua_find(s, p, start, find)
        local pstart = 1
        local anchor = str_byte(p, 1) == 94
        if anchor then
            pstart = 2
        end
        local ms = new_matcher(s, p, pstart)
        local pos, last = start, ms.slen + 1
        repeat
            ms.level = 0
            ms.depth = 0
            local e = do_match(ms, pos, pstart)
            if e then
                if find then
                    return pos, e - 1, captures(ms, nil, nil)
                end
                return captures(ms, pos, e)
            end
            pos = pos + 1
        until pos > last or anchor
        return nil
    end


    -- Plain search in windows, so that each native call does bounded work.
    local function plain_find(st, s, p, start, limit)
        local m, n = #p, #s
        if m == 0 then
            return start, start - 1
        end
        local window = floor(limit / m)
        if window < 1 then
            window = 1
        end
        local pos = start
        while pos + m - 1 <= n do
            cost(st, window * m)
            local chunk = str_sub(s, pos, pos + window + m - 2)
            local i = str_find(chunk, p, 1, true)
            if i then
                return pos + i - 1, pos + i + m - 2
            end
            pos = pos + window
        end
        return nil
    end


    local function lua_gmatch(s, p)
        local ms = new_matcher(s, p, 1)
        local src, last = 1, ms.slen + 1
        return function()
            while src <= last do
                ms.level = 0
                ms.depth = 0
                local e = do_match(ms, src, 1)
                if e then
                    local start = src
                    src = e == src and e + 1 or e
                    return captures(ms, start, e)
                end
                src = src + 1
            end
            return nil
        end
    end


    -- The replacement text for one match, as gsub's add_s builds it.
    local function expand_repl(ms, repl, s, e)
        local out, n = {}, 0
        local i, l = 1, #repl
        while i <= l do
            local c = str_byte(repl, i)
            local piece
            if c ~= L_ESC then
                local j = str_find(repl, "%", i, true) or l + 1
                piece = str_sub(repl, i, j - 1)
                i = j
            else
                i = i + 1
                local d = str_byte(repl, i) or 0
                if not is_digit(d) then
                    piece = d == 0 and "\0" or str_sub(repl, i, i)
                elseif d == 48 then
                    piece = str_sub(ms.src, s, e - 1)
                else
                    piece = get_capture(ms, d - 49, s, e)
                end
                i = i + 1
            end
            n = n + 1
            out[n] = piece
        end
        return tab_concat(out)
    end


    local function repl_value(ms, repl, kind, s, e)
        local v
        if kind == "string" then
            return expand_repl(ms, repl, s, e)
        elseif kind == "function" then
            v = repl(captures(ms, s, e))
        else
            v = repl[get_capture(ms, 0, s, e)]
        end
        if not v then
            return str_sub(ms.src, s, e - 1)
        end
        local tv = type(v)
        if tv == "number" then
            return tostring(v)
        end
        if tv ~= "string" then
            error("invalid replacement value (a " .. tv .. ")", 0)
        end
        return v
    end


    local function lua_gsub(st, s, p, repl, kind, max_n)
        local pstart = 1
        local anchor = str_byte(p, 1) == 94
        if anchor then
            pstart = 2
        end
        local ms = new_matcher(s, p, pstart)
        local slen = ms.slen
        local out, no, size = {}, 0, 0
        local src, keep, n = 1, 1, 0
        while n < max_n do
            ms.level = 0
            ms.depth = 0
            local e = do_match(ms, src, pstart)
            if e then
                n = n + 1
                local v = repl_value(ms, repl, kind, src, e)
                out[no + 1] = str_sub(s, keep, src - 1)
                out[no + 2] = v
                no = no + 2
                size = size + (src - keep) + #v
                need(st, size)
                keep = e
            end
            if e and e > src then
                src = e
            elseif src <= slen then
                src = src + 1
            else
                break
            end
            if anchor then
                break
            end
        end
        out[no + 1] = str_sub(s, keep, slen)
        need(st, size + slen - keep)
        return tab_concat(out), n
    end


    -- ------------------------------------------------------------------------
    -- Worst-case cost of a pattern for the native matcher

    local SHAPES = { {}, {} }       -- [pstart][pattern] = items
    local shape_count = 0
    local MAX_SHAPES = 1024

    local CAP_ITEM = { t = "cap" }
    local DOLLAR_ITEM = { t = "dollar" }
    local REF_ITEM = { t = "ref" }


    local function class_set(ms, p, ep)
        local set = {}
        for c = 0, 255 do
            set[c] = single_match(ms, c, p, ep) or nil
        end
        return set
    end


    local function parse_items(ms, p, items)
        local pend = ms.pend
        while p < pend do
            local c, nc = pat_at(ms, p), pat_at(ms, p + 1)
            if c == 40 then
                p = p + (nc == 41 and 2 or 1)
                items[#items + 1] = CAP_ITEM
            elseif c == 41 then
                p = p + 1
                items[#items + 1] = CAP_ITEM
            elseif c == 36 and p + 1 == pend then
                p = p + 1
                items[#items + 1] = DOLLAR_ITEM
            elseif c == L_ESC and nc == 98 then
                if p + 3 >= pend then
                    return
                end
                items[#items + 1] = { t = "bal", open = pat_at(ms, p + 2) }
                p = p + 4
            elseif c == L_ESC and nc == 102 then
                p = class_end(ms, p + 2)
                items[#items + 1] = CAP_ITEM
            elseif c == L_ESC and is_digit(nc) then
                p = p + 2
                items[#items + 1] = REF_ITEM
            else
                local ep = class_end(ms, p)
                local q = pat_at(ms, ep)
                local item = { t = "single", set = class_set(ms, p, ep), q = 0 }
                if q == 63 or q == 42 or q == 43 or q == 45 then
                    item.q = q
                    ep = ep + 1
                end
                items[#items + 1] = item
                p = ep
            end
        end
    end


    local function sets_disjoint(a, b)
        for c = 0, 255 do
            if a[c] and b[c] then
                return false
            end
        end
        return true
    end


    -- A repeated item whose successor cannot start where it can match only
    -- backtracks into cheap failures: its cost adds instead of multiplying.
    local function mark_disjoint(items)
        for i = 1, #items do
            local it = items[i]
            if it.t == "single" and it.q ~= 0 and it.q ~= 63 then
                local j = i + 1
                while items[j] == CAP_ITEM do
                    j = j + 1
                end
                local nx = items[j]
                if nx == nil or nx == DOLLAR_ITEM then
                    it.disjoint = true
                elseif nx.t == "single" and (nx.q == 0 or nx.q == 43) then
                    it.disjoint = sets_disjoint(it.set, nx.set)
                elseif nx.t == "bal" then
                    it.disjoint = not it.set[nx.open]
                end
            end
        end
    end


    local function pattern_shape(p, pstart)
        local cache = SHAPES[pstart]
        local items = cache[p]
        if items then
            return items
        end
        items = {}
        local ms = { pat = p, pend = pattern_end(p, pstart) }
        -- a malformed pattern fails when the matcher reaches the bad part:
        -- the items before it are what it can cost
        pcall(parse_items, ms, pstart, items)
        mark_disjoint(items)
        if shape_count >= MAX_SHAPES then
            SHAPES[1], SHAPES[2], shape_count = {}, {}, 0
            cache = SHAPES[pstart]
        end
        shape_count = shape_count + 1
        cache[p] = items
        return items
    end


    -- Upper bound of matcher steps for one match attempt on n characters.
    local function attempt_cost(items, n)
        local rest = 1
        for i = #items, 1, -1 do
            local it = items[i]
            local t = it.t
            if t == "single" then
                local q = it.q
                if q == 0 then
                    rest = rest + 1
                elseif q == 63 then
                    rest = 2 * rest + 1
                elseif it.disjoint then
                    rest = rest + 2 * n + 1
                else
                    rest = (n + 1) * rest + n
                end
            elseif t == "dollar" then
                rest = 1
            elseif t == "cap" then
                rest = rest + 1
            else
                rest = rest + n
            end
            if rest > 1e300 then
                return huge
            end
        end
        return rest
    end


    local function pattern_cost(p, n, pstart, attempts)
        return attempts * attempt_cost(pattern_shape(p, pstart), n)
    end

    PATTERN.find = lua_find
    PATTERN.plain_find = plain_find
    PATTERN.gmatch = lua_gmatch
    PATTERN.gsub = lua_gsub
    PATTERN.cost = pattern_cost
end


-- ------------------------------------------------------------------------
-- Guarded string library

local function as_string(v)
    local tv = type(v)
    if tv == "string" then
        return v
    end
    if tv == "number" then
        return tostring(v)
    end
    return nil
end


-- LuaJIT's start position for find/match, 1-based; nil when init is not
-- a number (the native function then raises the error).
local function start_pos(n, init)
    local start = 1
    if init ~= nil then
        start = tonumber(init)
        if start == nil then
            return nil
        end
        start = start >= 0 and floor(start) or -floor(-start)
    end
    if start < 0 then
        start = n + start
    else
        start = start - 1
    end
    if start < 0 then
        start = 0
    elseif start > n then
        start = n
    end
    return start + 1
end


local function has_specials(p)
    return str_find(p, "[%^%$%*%+%?%.%(%[%%%-]") ~= nil
end


local function find_aux(find, s, p, init, plain)
    local st = current
    local ss, ps = as_string(s), as_string(p)
    local start = ss and start_pos(#ss, init)
    if st == nil or not ps or not start then
        return nil
    end
    local n = #ss - start + 1
    local limit = st.pattern_steps
    if find and (plain or not has_specials(ps)) then
        local work = n * #ps        -- bytes compared, worst case
        if work <= limit * PLAIN_PER_STEP then
            cost(st, work)
            return nil
        end
        return true, PATTERN.plain_find(st, ss, ps, start,
                                        limit * PLAIN_PER_STEP)
    end
    local anchored = str_byte(ps, 1) == 94
    local work = PATTERN.cost(ps, n, anchored and 2 or 1,
                              anchored and 1 or n + 1)
    if work <= limit then
        cost(st, work * NATIVE_STEP_BYTES)
        return nil
    end
    return true, PATTERN.find(ss, ps, start, find)
end


-- find_aux either charges the native call (returns nil) or runs the Lua
-- matcher (returns true, results...); these dispatch on that.
local function finish_find(s, p, init, plain, handled, ...)
    if handled then
        return ...
    end
    return str_find(s, p, init, plain)
end


local function finish_match(s, p, init, handled, ...)
    if handled then
        return ...
    end
    return str_match(s, p, init)
end


local function safe_find(s, p, init, plain)
    return finish_find(s, p, init, plain, find_aux(true, s, p, init, plain))
end


local function safe_match(s, p, init)
    return finish_match(s, p, init, find_aux(false, s, p, init))
end


local function safe_gmatch(s, p)
    local st = current
    local ss, ps = as_string(s), as_string(p)
    if st == nil or not ss or not ps then
        return str_gmatch(s, p)
    end
    local n = #ss
    local work = PATTERN.cost(ps, n, 1, n + 1)
    if work <= st.pattern_steps then
        cost(st, work * NATIVE_STEP_BYTES)
        return str_gmatch(s, p)
    end
    return PATTERN.gmatch(ss, ps)
end


-- Replacement-size bound for a string replacement with `lit` literal
-- bytes and `refs` capture references, over n subject bytes.
local function repl_shape(repl)
    local refs = 0
    for _ in str_gmatch(repl, "%%%d") do
        refs = refs + 1
    end
    return #repl - 2 * refs, refs
end


-- Wraps a function or table replacement so that the text it adds to the
-- native gsub's buffer is counted against the memory budget.
local function counted_repl(st, repl, kind, room)
    local total = 0
    local function count(v)
        if type(v) == "string" then
            total = total + #v
            if total > room then
                stop(st, "memory")
            end
        end
        return v
    end
    if kind == "function" then
        return function(...)
            return count(repl(...))
        end
    end
    return function(c)
        return count(repl[c])
    end
end


local function gsub_kind(repl)
    local tr = type(repl)
    if tr == "string" or tr == "number" then
        return "string"
    end
    if tr == "function" or tr == "table" then
        return tr
    end
    return nil
end


local function safe_gsub(s, p, repl, max_n)
    local st = current
    local ss, ps, kind = as_string(s), as_string(p), gsub_kind(repl)
    local n = ss and #ss
    local maxn = max_n == nil and (n and n + 1) or tonumber(max_n)
    if st == nil or not ss or not ps or not kind or not maxn then
        return str_gsub(s, p, repl, max_n)
    end
    maxn = maxn >= 0 and floor(maxn) or -floor(-maxn)
    local anchored = str_byte(ps, 1) == 94
    local work = PATTERN.cost(ps, n, anchored and 2 or 1,
                              anchored and 1 or n + 1)
    if kind == "string" then
        repl = as_string(repl)
    end
    if work > st.pattern_steps then
        return PATTERN.gsub(st, ss, ps, repl, kind, maxn)
    end
    cost(st, work * NATIVE_STEP_BYTES + n)
    if kind == "string" then
        local lit, refs = repl_shape(repl)
        local matches = maxn < n + 1 and maxn or n + 1
        need(st, n + matches * (lit + 11 * refs) + refs * n)
        return str_gsub(s, p, repl, max_n)
    end
    local room = st.max_mem - memory_used(st) - n
    return str_gsub(s, p, counted_repl(st, repl, kind, room), max_n)
end


local function safe_rep(s, n, sep)
    local st = current
    local ss, count = as_string(s), tonumber(n)
    if st and ss and count and count > 0 then
        local lsep = sep ~= nil and #(as_string(sep) or "") or 0
        local bytes = count * #ss + (count - 1) * lsep
        need(st, bytes)
        cost(st, bytes)
    end
    return str_rep(s, n, sep)
end


local function safe_format(fmt, ...)
    local st = current
    if st == nil or type(fmt) ~= "string" then
        return str_format(fmt, ...)
    end
    local n = select("#", ...)
    local args = { ... }
    local factor = str_find(fmt, "%q", 1, true) and 4 or 1
    local bytes = #fmt + 100 * n
    for i = 1, n do
        local v = args[i]
        if type(v) == "table" then
            v = tostring(v)     -- __tostring runs once, in the script
            args[i] = v
        end
        if type(v) == "string" then
            bytes = bytes + factor * #v
        else
            bytes = bytes + 512
        end
    end
    need(st, bytes)
    cost(st, bytes)
    return str_format(fmt, unpack(args, 1, n))
end


-- Charges a copy of up to #s bytes (upper, lower, reverse).
local function charge_copy(s)
    local st = current
    if st and type(s) == "string" and #s > 4096 then
        need(st, #s)
        cost(st, #s)
    end
end


local function safe_upper(s)
    charge_copy(s)
    return str_upper(s)
end


local function safe_lower(s)
    charge_copy(s)
    return str_lower(s)
end


local function safe_reverse(s)
    charge_copy(s)
    return str_reverse(s)
end


local function safe_sub(s, i, j)
    local st = current
    if st and type(s) == "string" and #s > 4096 then
        local l = #s
        local a, b = tonumber(i) or 1, tonumber(j) or -1
        if a < 0 then
            a = a + l + 1
        end
        if b < 0 then
            b = b + l + 1
        elseif b > l then
            b = l
        end
        local len = b - (a < 1 and 1 or a) + 1
        if len > 4096 then
            need(st, len)
            cost(st, len)
        end
    end
    return str_sub(s, i, j)
end


-- ------------------------------------------------------------------------
-- Guarded table library

local function check_writable(t)
    if SHADOW[t] then
        error("attempt to modify a read-only table", 3)
    end
end


local function safe_concat(t, sep, i, j)
    local st = current
    t = SHADOW[t] or t
    if st and type(t) == "table" then
        local lsep = #(as_string(sep) or "")
        local first = tonumber(i) or 1
        local last = tonumber(j) or #t
        local bytes = 0
        for k = first, last do
            local v = rawget(t, k)
            local tv = type(v)
            if tv == "string" then
                bytes = bytes + #v + lsep
            elseif tv == "number" then
                bytes = bytes + 24 + lsep
            else
                break   -- the native concat raises the error
            end
        end
        need(st, bytes)
        cost(st, bytes + (last - first))
    end
    return tab_concat(t, sep, i, j)
end


local function position(v)
    local pos = tonumber(v)
    if pos then
        return pos >= 0 and floor(pos) or -floor(-pos)
    end
    return nil
end


-- Charges moving the elements from pos to the end of t (insert, remove).
local function charge_shift(len, pos)
    local st = current
    if st and len - pos > 64 then
        cost(st, (len - pos) * 8)
    end
end


local function safe_insert(t, ...)
    check_writable(t)
    if select("#", ...) == 2 and type(t) == "table" then
        local len, pos = #t, position((...))
        if pos and (pos < 1 or pos > len + 1) then
            error("bad argument #2 to 'insert' (position out of bounds)", 2)
        end
        if pos then
            charge_shift(len, pos)
        end
    end
    return tab_insert(t, ...)
end


local function safe_remove(t, pos)
    check_writable(t)
    if pos ~= nil and type(t) == "table" then
        local len, p = #t, position(pos)
        if p and not ((p >= 1 and p <= len + 1)
                      or (len == 0 and p == 0))
        then
            error("bad argument #2 to 'remove' (position out of bounds)", 2)
        end
        if p then
            charge_shift(len, p)
        end
    end
    return tab_remove(t, pos)
end


local function safe_sort(t, comp)
    check_writable(t)
    local st = current
    if st and type(t) == "table" then
        local n = #t
        if n > 1 then
            cost(st, n * log(n) / log(2) * BYTES_PER_INSTRUCTION / 4)
        end
    end
    return tab_sort(t, comp)
end


-- ------------------------------------------------------------------------
-- Guarded base library

local function proxy_next(p, k)
    return next(SHADOW[p], k)
end


local function safe_next(t, k)
    return next(SHADOW[t] or t, k)
end


local function safe_pairs(t)
    if SHADOW[t] then
        return proxy_next, t, nil
    end
    return pairs(t)
end


local function proxy_inext(p, i)
    i = i + 1
    local v = SHADOW[p][i]
    if v ~= nil then
        return i, v
    end
end


local function safe_ipairs(t)
    if SHADOW[t] then
        return proxy_inext, t, 0
    end
    return ipairs(t)
end


local function safe_unpack(t, i, j)
    return unpack(SHADOW[t] or t, i, j)
end


local function safe_rawget(t, k)
    return rawget(SHADOW[t] or t, k)
end


local function safe_rawset(t, k, v)
    check_writable(t)
    return rawset(t, k, v)
end


local function safe_tonumber(v, base)
    local st = current
    if st and type(v) == "string" and #v > 4096 then
        cost(st, #v)        -- a numeral is scanned to its end
    end
    return tonumber(v, base)
end


local function safe_getmetatable(v)
    if type(v) ~= "table" then
        return nil      -- never the string metatable
    end
    return getmetatable(v)
end


local function after_pcall(st, ok, ...)
    if st and st.stopped then
        error(st.message, 0)    -- a budget stop cannot be caught
    end
    return ok, ...
end


local function safe_pcall(f, ...)
    return after_pcall(current, pcall(f, ...))
end


-- When the budget stop is raised inside the count hook, LuaJIT calls the
-- error handler before unwinding, with the hook still marked active: no
-- hook would fire in the handler.  So the script's handler never runs
-- once the run is stopped.
local function safe_xpcall(f, handler, ...)
    local st = current
    local function guarded(e)
        if st and st.stopped then
            return e
        end
        return handler(e)
    end
    return after_pcall(st, xpcall(f, guarded, ...))
end


-- ------------------------------------------------------------------------
-- Guarded coroutines: LuaJIT's own, limited to coroutines the script
-- created; yielding out of the run fails (C boundary, see run_protected).

local function script_thread(co, name)
    local st = current
    if type(co) ~= "thread" or not (st and st.threads[co]) then
        error("bad argument #1 to '" .. name .. "' (coroutine expected)", 3)
    end
end


local function safe_co_create(f)
    if type(f) ~= "function" then
        error("bad argument #1 to 'create' (function expected)", 2)
    end
    local co = co_create(f)
    local st = current
    if st then
        st.threads[co] = true
    end
    return co
end


local function safe_co_resume(co, ...)
    script_thread(co, "resume")
    return after_pcall(current, co_resume(co, ...))
end


local function safe_co_status(co)
    script_thread(co, "status")
    return co_status(co)
end


local function safe_co_running()
    local co = co_running()
    local st = current
    if st and st.threads[co] then
        return co
    end
    return nil
end


local function wrap_results(st, ok, ...)
    if st and st.stopped then
        error(st.message, 0)
    end
    if not ok then
        error((...), 0)
    end
    return ...
end


local function safe_co_wrap(f)
    local co = safe_co_create(f)
    return function(...)
        return wrap_results(current, co_resume(co, ...))
    end
end


-- ------------------------------------------------------------------------
-- The whitelist

local function pick(lib, names)
    local t = {}
    for _, name in ipairs(names) do
        t[name] = lib[name]
    end
    return t
end


local LIBS
do
    local seen = {}
    local math_lib = {}
    for k, v in pairs(math) do
        if k ~= "randomseed" then
            math_lib[k] = v
        end
    end
    LIBS = {
        string = readonly({
            byte = string.byte, char = string.char, find = safe_find,
            format = safe_format, gmatch = safe_gmatch, gsub = safe_gsub,
            len = string.len, lower = safe_lower, match = safe_match,
            rep = safe_rep, reverse = safe_reverse, sub = safe_sub,
            upper = safe_upper,
        }, false, seen),
        table = readonly({
            concat = safe_concat, insert = safe_insert,
            remove = safe_remove, sort = safe_sort,
        }, false, seen),
        math = readonly(math_lib, false, seen),
        os = readonly(pick(os, { "clock", "difftime", "time" }), false, seen),
        bit = readonly(pick(bit, {
            "arshift", "band", "bnot", "bor", "bswap", "bxor", "lshift",
            "rol", "ror", "rshift", "tobit", "tohex",
        }), false, seen),
        coroutine = readonly({
            create = safe_co_create, resume = safe_co_resume,
            running = safe_co_running, status = safe_co_status,
            wrap = safe_co_wrap, yield = co_yield,
        }, false, seen),
    }
end

-- the string metatable's __index while a script runs
local SAFE_STRING_INDEX = SHADOW[LIBS.string]

local BASE_FUNCTIONS = {
    assert = assert, error = error, getmetatable = safe_getmetatable,
    ipairs = safe_ipairs, next = safe_next, pairs = safe_pairs,
    rawequal = rawequal, rawget = safe_rawget, rawset = safe_rawset,
    select = select, setmetatable = setmetatable, tonumber = safe_tonumber,
    tostring = tostring, type = type, unpack = safe_unpack,
    _VERSION = _VERSION,
}


-- ------------------------------------------------------------------------
-- Running a script

local function collect(st, ...)
    local n = select("#", ...)
    st.results = copy_out_list({ ... }, n, "result")
    st.results.n = n
end


-- Runs inside the budget: the script and the copy of its results.
local function run_and_copy(st)
    local args = st.args
    return collect(st, st.fn(unpack(args, 1, args.n)))
end


-- The gsub callback: a C call below, so nothing above can yield.
local function boundary()
    local st = current
    local ok, err = pcall(run_and_copy, st)
    st.ok = ok
    st.err = err
end


local function run_protected(st)
    local prev_state = current
    local prev_hook, prev_mask, prev_count = gethook()
    local prev_index = STRING_MT.__index
    current = st
    STRING_MT.__index = SAFE_STRING_INDEX
    sethook(hook, "", st.k)
    local ok, err = pcall(str_gsub, "x", "x", boundary)
    if type(prev_hook) == "function" then
        sethook(prev_hook, prev_mask, prev_count)
    else
        sethook()
    end
    STRING_MT.__index = prev_index
    current = prev_state
    if not ok then
        st.ok = false
        st.err = err
    end
end

FRAMES[run_and_copy] = true
FRAMES[boundary] = false
FRAMES[run_protected] = false


local function error_text(err)
    local te = type(err)
    if te == "string" then
        if #err > MAX_ERROR_LEN then
            return str_sub(err, 1, MAX_ERROR_LEN) .. "..."
        end
        return err
    end
    if te == "number" or te == "boolean" or te == "nil" then
        return tostring(err)
    end
    -- never tostring() a script's table: its __tostring would run unbudgeted
    return "(error object is a " .. te .. " value)"
end


local function outcome(st)
    if st.stopped then
        return false, st.message, st.stopped
    end
    if st.ok then
        local res = st.results
        return true, unpack(res, 1, res.n)
    end
    if st.err == "not enough memory" then
        return false, budget_message(st, "memory"), "memory"
    end
    return false, error_text(st.err), "error"
end


local function new_state(script, limits)
    local st = {
        fn = script.fn,
        limits = limits,
        max_instr = limits.instructions,
        max_mem = limits.memory,
        hard_mem = 2 * limits.memory,
        mem_seen = gc("count"),
        mem_used = 0,
        deadline = now() + limits.time,
        used = 0,
        clock_at = CLOCK_EVERY,
        concat_width = script.concat_width,
        base = max(script.source_len, MIN_BASE),
        pattern_steps = script.sandbox.pattern_steps,
        threads = {},
        in_host = 0,
    }
    return st
end


local function run(script, limits, ...)
    if script.running then
        return false, "script is already running", "error"
    end
    local st = new_state(script, limits)
    local n = select("#", ...)
    local args, seen = { n = n, ... }, {}
    for i = 1, n do
        local v, err = copy_in_value(args[i], seen, st)
        if err then
            error("bad argument #" .. i .. " to 'run' (" .. err .. ")", 3)
        end
        args[i] = v
    end
    st.args = args
    st.k = interval(st, 0)
    local env = setmetatable({}, script.sandbox.env_mt)
    env._G = env
    setfenv(script.fn, env)
    script.running = true
    run_protected(st)
    script.running = false
    setfenv(script.fn, IDLE_ENV)
    return outcome(st)
end


-- ------------------------------------------------------------------------
-- Compiling

local BC_CAT
do
    local ok, vmdef = pcall(require, "jit.vmdef")
    if ok and type(vmdef) == "table" and vmdef.bcnames then
        BC_CAT = (str_find(vmdef.bcnames, "CAT   ", 1, true) - 1) / 6
    else
        -- probe: the instruction before the final RET is the CAT
        local f = load("local a, b = ... return a .. b", "=probe", "t")
        local nbc = jit_util.funcinfo(f).bytecodes
        BC_CAT = band(jit_util.funcbc(f, nbc - 2), 0xff)
    end
end


-- The most operands one `..` of the chunk concatenates (0: none).  `..`
-- lets memory grow geometrically between hooks, and one `..` of m
-- operands allocates up to about (m + 2) times its largest operand.
local function widest_concat(fn)
    local info = jit_util.funcinfo(fn)
    local widest = 0
    for pc = 1, info.bytecodes or 0 do
        local ins = jit_util.funcbc(fn, pc)
        if ins and band(ins, 0xff) == BC_CAT then
            -- CAT A B C: A = B .. ... .. C
            local n = band(rshift(ins, 16), 0xff) - rshift(ins, 24) + 1
            widest = max(widest, n)
        end
    end
    for i = 1, info.gcconsts or 0 do
        local k = jit_util.funck(fn, -i)
        if type(k) == "proto" then
            widest = max(widest, widest_concat(k))
        end
    end
    return widest
end


local script_mt = {}
script_mt.__index = script_mt


local function check_limits(limits, base, level)
    local merged = {}
    for name, v in pairs(base) do
        merged[name] = v
    end
    if limits == nil then
        return merged
    end
    if type(limits) ~= "table" then
        error("limits must be a table", level + 1)
    end
    for name, v in pairs(limits) do
        if not LIMIT_NAMES[name] then
            error("unknown limit \"" .. tostring(name) .. "\"", level + 1)
        end
        if type(v) ~= "number" or v <= 0 or v ~= v then
            error("limit \"" .. name .. "\" must be a positive number",
                  level + 1)
        end
        merged[name] = v
    end
    return merged
end


function script_mt:run(...)
    if getmetatable(self) ~= script_mt then
        error("use script:run(...)", 2)
    end
    return run(self, self.sandbox.limits, ...)
end


function script_mt:run_with(limits, ...)
    if getmetatable(self) ~= script_mt then
        error("use script:run_with(limits, ...)", 2)
    end
    return run(self, check_limits(limits, self.sandbox.limits, 2), ...)
end


local sandbox_mt = {}
sandbox_mt.__index = sandbox_mt


function sandbox_mt:compile(source, name)
    if getmetatable(self) ~= sandbox_mt then
        error("use sandbox:compile(source, name)", 2)
    end
    if type(source) ~= "string" then
        error("bad argument #1 to 'compile' (string expected, got "
              .. type(source) .. ")", 2)
    end
    if name ~= nil and type(name) ~= "string" then
        error("bad argument #2 to 'compile' (string expected, got "
              .. type(name) .. ")", 2)
    end
    if #source > self.max_source then
        return nil, "script too large (" .. #source .. " bytes, at most "
                    .. self.max_source .. ")"
    end
    local fn, err = load(source, "=" .. (name or "script"), "t")
    if not fn then
        return nil, err
    end
    jit_off(fn, true)   -- this function and every function inside it
    setfenv(fn, IDLE_ENV)
    return setmetatable({
        fn = fn,
        sandbox = self,
        name = name or "script",
        source_len = #source,
        concat_width = widest_concat(fn),
        running = false,
    }, script_mt)
end


local function build_globals(opts)
    local g = {}
    for name, v in pairs(BASE_FUNCTIONS) do
        g[name] = v
    end
    for name, lib in pairs(LIBS) do
        g[name] = lib
    end
    if opts.pcall ~= false then
        g.pcall = safe_pcall
        g.xpcall = safe_xpcall
    end
    if opts.coroutine == false then
        g.coroutine = nil
    end
    local seen = {}
    for name, v in pairs(opts.env or {}) do
        g[name] = expose(v, true, seen)
    end
    return g
end


local OPTIONS = {
    env = "table", limits = "table", pcall = "boolean",
    coroutine = "boolean", max_source = "number", pattern_steps = "number",
}


function _M.new(opts)
    if opts == nil then
        opts = {}
    elseif type(opts) ~= "table" then
        error("bad argument #1 to 'new' (table expected, got "
              .. type(opts) .. ")", 2)
    end
    for k, v in pairs(opts) do
        if OPTIONS[k] == nil then
            error("unknown option \"" .. tostring(k) .. "\"", 2)
        end
        if type(v) ~= OPTIONS[k] then
            error("option \"" .. k .. "\" must be a " .. OPTIONS[k], 2)
        end
    end
    local ok, globals = pcall(build_globals, opts)
    if not ok then
        error("bad option \"env\": " .. tostring(globals), 2)
    end
    return setmetatable({
        limits = check_limits(opts.limits, DEFAULT_LIMITS, 2),
        max_source = opts.max_source or DEFAULT_MAX_SOURCE,
        pattern_steps = opts.pattern_steps or DEFAULT_PATTERN_STEPS,
        env_mt = { __index = globals, __metatable = false },
    }, sandbox_mt)
end


-- ------------------------------------------------------------------------
-- Per-tenant cache of compiled scripts: one live version per key; a new
-- version replaces it once it compiles; a version that failed to compile
-- is remembered so it is not recompiled on every request.

local cache_mt = {}
cache_mt.__index = cache_mt


function _M.new_cache(sandbox, size)
    if getmetatable(sandbox) ~= sandbox_mt then
        error("bad argument #1 to 'new_cache' (sandbox expected)", 2)
    end
    size = size or 1000
    if type(size) ~= "number" or size < 1 then
        error("bad argument #2 to 'new_cache' (positive number expected)", 2)
    end
    local lru, err = require("resty.lrucache").new(size)
    if not lru then
        return nil, err
    end
    return setmetatable({ sandbox = sandbox, lru = lru }, cache_mt)
end


local function check_key(key, version)
    if type(key) ~= "string" then
        error("bad argument #1 (string key expected, got " .. type(key)
              .. ")", 3)
    end
    local tv = type(version)
    if tv ~= "string" and tv ~= "number" then
        error("bad argument #2 (string or number version expected, got "
              .. tv .. ")", 3)
    end
end


-- The live script of `key` and its version (or nil); with `version`,
-- only when that version is the live one.
function cache_mt:get(key, version)
    local entry = self.lru:get(key)
    if not entry or not entry.script then
        return nil
    end
    if version ~= nil and entry.version ~= version then
        return nil
    end
    return entry.script, entry.version
end


local function compile_into(self, key, version, source, entry)
    local script, err = self.sandbox:compile(source, key)
    if not script then
        entry = entry or {}
        entry.failed_version, entry.failed_err = version, err
        self.lru:set(key, entry)
        return nil, err
    end
    self.lru:set(key, { version = version, script = script })
    return script
end


-- The compiled script for (key, version); compiles `source` (a string,
-- or a function(key, version) returning source or nil, err) when that
-- version is not cached yet.
function cache_mt:fetch(key, version, source)
    check_key(key, version)
    local entry = self.lru:get(key)
    if entry then
        if entry.version == version and entry.script then
            return entry.script
        end
        if entry.failed_version == version then
            return nil, entry.failed_err
        end
    end
    local ts = type(source)
    if ts == "function" then
        local src, err = source(key, version)
        if type(src) ~= "string" then
            return nil, err or "no source for \"" .. key .. "\" version "
                               .. tostring(version)
        end
        source = src
    elseif ts ~= "string" then
        error("bad argument #3 to 'fetch' (string or function expected, got "
              .. ts .. ")", 2)
    end
    return compile_into(self, key, version, source, entry)
end


-- Compiles and installs `source` as `version` of `key`, even if cached.
function cache_mt:set(key, version, source)
    check_key(key, version)
    if type(source) ~= "string" then
        error("bad argument #3 to 'set' (string expected, got "
              .. type(source) .. ")", 2)
    end
    return compile_into(self, key, version, source, self.lru:get(key))
end


function cache_mt:delete(key)
    self.lru:delete(key)
end


function cache_mt:flush_all()
    self.lru:flush_all()
end


return _M
