-- resty.hotffi.sandbox -- run untrusted Lua scripts with budgets that the
-- script cannot escape.  See docs/sandbox.md for the API, the budgets and
-- the threat model.
--
-- How it holds together, in short:
--
--  * a script is compiled from text only (load mode "t"), with JIT
--    disabled for all of its functions, so that the count hook fires in
--    every one of them (this file);
--  * each run gets a fresh global table whose __index is a whitelist of
--    read-only library tables (proxies), so a script can change nothing
--    shared (sandbox.globals);
--  * a count hook enforces the instruction, time and memory budgets; a
--    budget stop is "sticky": once stopped, the hook raises again in any
--    script code that still runs, and the sandbox's pcall, xpcall and
--    coroutine.resume re-raise it, so nothing can swallow it
--    (sandbox.budget);
--  * library functions that do unbounded work in one C call (string.rep,
--    format, gsub, find, table.concat, ...) are wrapped: they check the
--    memory budget before allocating and charge their work to the
--    instruction budget; patterns whose worst case is too costly for the
--    native matcher run on a budgeted Lua port of it (sandbox.strings,
--    sandbox.pattern, sandbox.globals);
--  * while a script runs, the string metatable's __index points at the
--    sandbox's string table (so ("x"):rep() is the guarded rep), and the
--    run happens inside a C call boundary so that nothing can yield out
--    of it: both are undone before the run returns (this file);
--  * only plain data crosses the boundary: arguments, results, and the
--    arguments and results of host functions are copied without
--    metatables; script functions never reach the host (sandbox.copy).
--
-- Compiled scripts can be kept per tenant in a cache (sandbox.cache).

local jit_util = require "jit.util"
local budget = require "resty.hotffi.sandbox.budget"
local cache = require "resty.hotffi.sandbox.cache"
local copy = require "resty.hotffi.sandbox.copy"
local globals = require "resty.hotffi.sandbox.globals"

local debug_getmetatable = debug.getmetatable
local error = error
local gc = collectgarbage
local gethook = debug.gethook
local huge = math.huge
local getmetatable = getmetatable
local jit_off = jit.off
local load = load
local max = math.max
local next = next
local pairs = pairs
local pcall = pcall
local select = select
local setfenv = setfenv
local sethook = debug.sethook
local setmetatable = setmetatable
local str_find = string.find
local str_gsub = string.gsub
local str_sub = string.sub
local tostring = tostring
local type = type
local unpack = unpack
local band = bit.band
local rshift = bit.rshift

local copy_in_value = copy.copy_in_value
local copy_out_list = copy.copy_out_list
local hook = budget.hook
local now = budget.now
local ADD_GROWTH = budget.ADD_GROWTH
local CLOCK_EVERY = budget.CLOCK_EVERY

local STRING_MT = debug_getmetatable("")
local SAFE_STRING_INDEX = globals.string_index


local _M = { version = "0.1.0" }


local DEFAULT_LIMITS = {
    instructions = 1000000,     -- VM instructions + charged library work
    time = 0.1,                 -- seconds of wall-clock time
    memory = 8 * 1024 * 1024,   -- bytes of Lua heap growth
}

local DEFAULT_MAX_SOURCE = 1024 * 1024
local DEFAULT_PATTERN_STEPS = 200000   -- ~1 ms for the native matcher

local MIN_BASE = 1024           -- bytes; floor of the largest-string guess
local MAX_ERROR_LEN = 2048

local LIMIT_NAMES = { instructions = true, time = true, memory = true }

-- a script's chunk holds this environment between runs
local IDLE_ENV = setmetatable({}, { __metatable = false })


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
    local st = budget.current
    local ok, err = pcall(run_and_copy, st)
    st.ok = ok
    st.err = err
end


local function run_protected(st)
    local prev_state = budget.current
    local prev_hook, prev_mask, prev_count = gethook()
    local prev_index = STRING_MT.__index
    budget.current = st
    STRING_MT.__index = SAFE_STRING_INDEX
    sethook(hook, "", st.k)
    local ok, err = pcall(str_gsub, "x", "x", boundary)
    if type(prev_hook) == "function" then
        sethook(prev_hook, prev_mask, prev_count)
    else
        sethook()
    end
    STRING_MT.__index = prev_index
    budget.current = prev_state
    if not ok then
        st.ok = false
        st.err = err
    end
end

budget.host_frames[boundary] = true
budget.host_frames[run_protected] = true


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
        return false, error_text(st.message), st.stopped
    end
    if st.ok then
        local res = st.results
        return true, unpack(res, 1, res.n)
    end
    if st.err == "not enough memory" then
        return false, budget.message(st, "memory"), "memory"
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
        step_growth = script.step_growth,
        base = max(script.source_len, MIN_BASE),
        pattern_steps = script.sandbox.pattern_steps,
        threads = {},
        in_host = 0,
    }
    return st
end


-- Runs and time per tenant class of this worker, for
-- resty.hotffi.metrics: class -> { ok = n, instructions = n, time = n,
-- memory = n, error = n, seconds = s }, counted as runs end.
local tallies = {}


-- Counts a run of sandbox sb that started at `started` and ended with
-- ok, ... (script:run()'s results); returns them.
local function tally(sb, started, ok, ...)
    local t = tallies[sb.class]
    if not t then
        t = { ok = 0, instructions = 0, time = 0, memory = 0, error = 0,
              seconds = 0 }
        tallies[sb.class] = t
    end
    local kind = ok and "ok" or select(2, ...)
    t[kind] = t[kind] + 1
    t.seconds = t.seconds + (now() - started)
    return ok, ...
end


local function run(script, limits, ...)
    if script.running then
        return false, "script is already running", "error"
    end
    local sb = script.sandbox
    local started = now()
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
    if script.step_growth > st.max_mem then
        -- one table constructor of the script allocates more than the
        -- whole budget, in one instruction that no check can interrupt
        return tally(sb, started, false, budget.message(st, "memory"),
                     "memory")
    end
    st.k = budget.interval(st, 0)
    local env = setmetatable({}, script.sandbox.env_mt)
    env._G = env
    setfenv(script.fn, env)
    script.running = true
    run_protected(st)
    script.running = false
    setfenv(script.fn, IDLE_ENV)
    return tally(sb, started, outcome(st))
end


-- ------------------------------------------------------------------------
-- Compiling

-- The opcode called `name`, from jit.vmdef, or else probed: the
-- instruction before the final RET of `probe`.
local function opcode(name, probe)
    local ok, vmdef = pcall(require, "jit.vmdef")
    if ok and type(vmdef) == "table" and vmdef.bcnames then
        return (str_find(vmdef.bcnames, name, 1, true) - 1) / 6
    end
    local f = load(probe, "=probe", "t")
    local nbc = jit_util.funcinfo(f).bytecodes
    return band(jit_util.funcbc(f, nbc - 2), 0xff)
end

local BC_CAT = opcode("CAT   ", "local a, b = ... return a .. b")
local BC_TNEW = opcode("TNEW  ", "return {}")

-- What one table constructor may allocate: LuaJIT's nodes are 24 bytes
-- and a hash part is a power of two, so 48 bytes per entry covers it.
local TABLE_ENTRY_BYTES = 48


-- Bytes a constant table (the template of a TDUP) takes.
local function template_bytes(t)
    local n = 0
    for _ in next, t do
        n = n + 1
    end
    return n * TABLE_ENTRY_BYTES
end


-- What the chunk's bytecode lets one instruction allocate, found at
-- compile time:
--  * `width`: the most operands one `..` concatenates (0: none).  `..`
--    lets memory grow geometrically between hooks, and one `..` of m
--    operands allocates up to about (m + 2) times its largest operand;
--  * `growth`: the most one table constructor allocates (TDUP copies a
--    constant table, TNEW sizes a table from its hints), at least
--    budget.ADD_GROWTH.
local function scan_allocs(fn, found)
    local info = jit_util.funcinfo(fn)
    for pc = 1, info.bytecodes or 0 do
        local ins = jit_util.funcbc(fn, pc)
        local op = ins and band(ins, 0xff)
        if op == BC_CAT then
            -- CAT A B C: A = B .. ... .. C
            local n = band(rshift(ins, 16), 0xff) - rshift(ins, 24) + 1
            found.width = max(found.width, n)
        elseif op == BC_TNEW then
            -- TNEW A D: D = array size (11 bits) | hash bits << 11
            local d = rshift(ins, 16)
            local hbits = rshift(d, 11)
            local bytes = band(d, 0x7ff) * 8
                          + (hbits > 0 and 2 ^ hbits * 24 or 0)
            found.growth = max(found.growth, bytes)
        end
    end
    for i = 1, info.gcconsts or 0 do
        local k = jit_util.funck(fn, -i)
        local tk = type(k)
        if tk == "proto" then
            scan_allocs(k, found)
        elseif tk == "table" then
            found.growth = max(found.growth, template_bytes(k))
        end
    end
    return found
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
        -- an infinite limit would turn the counters' arithmetic into NaN
        if type(v) ~= "number" or not (v > 0 and v < huge) then
            error("limit \"" .. name .. "\" must be a positive finite number",
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
    local allocs = scan_allocs(fn, { width = 0, growth = ADD_GROWTH })
    return setmetatable({
        fn = fn,
        sandbox = self,
        name = name or "script",
        source_len = #source,
        concat_width = allocs.width,
        step_growth = allocs.growth,
        running = false,
    }, script_mt)
end


local OPTIONS = {
    env = "table", limits = "table", pcall = "boolean",
    coroutine = "boolean", max_source = "number", pattern_steps = "number",
    class = "string",
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
    local ok, g = pcall(globals.build, opts)
    if not ok then
        error("bad option \"env\": " .. tostring(g), 2)
    end
    return setmetatable({
        limits = check_limits(opts.limits, DEFAULT_LIMITS, 2),
        max_source = opts.max_source or DEFAULT_MAX_SOURCE,
        pattern_steps = opts.pattern_steps or DEFAULT_PATTERN_STEPS,
        class = opts.class or "default",
        env_mt = { __index = g, __metatable = false },
    }, sandbox_mt)
end


-- This worker's runs per tenant class (a copy of `tallies` above).
function _M.stats()
    local out = {}
    for class, t in pairs(tallies) do
        local c = {}
        for k, v in pairs(t) do
            c[k] = v
        end
        out[class] = c
    end
    return out
end


-- See resty.hotffi.sandbox.cache.
function _M.new_cache(sandbox, size)
    if getmetatable(sandbox) ~= sandbox_mt then
        error("bad argument #1 to 'new_cache' (sandbox expected)", 2)
    end
    size = size or 1000
    if type(size) ~= "number" or size < 1 then
        error("bad argument #2 to 'new_cache' (positive number expected)", 2)
    end
    return cache.new(sandbox, size)
end


return _M
