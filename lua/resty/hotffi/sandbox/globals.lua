-- resty.hotffi.sandbox.globals -- the global table a script sees: a
-- whitelist of read-only library tables, with guarded versions of the
-- functions that could escape a budget or change shared state (table
-- functions, pairs and friends, pcall, coroutines), and the host's own
-- values from the sandbox's `env` option.

local budget = require "resty.hotffi.sandbox.budget"
local copy = require "resty.hotffi.sandbox.copy"
local strings = require "resty.hotffi.sandbox.strings"

local assert = assert
local error = error
local getmetatable = getmetatable
local ipairs = ipairs
local next = next
local pairs = pairs
local pcall = pcall
local rawequal = rawequal
local rawget = rawget
local rawset = rawset
local select = select
local setmetatable = setmetatable
local tab_concat = table.concat
local tab_insert = table.insert
local tab_remove = table.remove
local tonumber = tonumber
local tostring = tostring
local type = type
local unpack = unpack

-- ngx_lua replaces coroutine.* with versions that yield to its scheduler
-- and keeps LuaJIT's own as coroutine._*; scripts get LuaJIT's.
local co_create = coroutine._create or coroutine.create
local co_resume = coroutine._resume or coroutine.resume
local co_yield = coroutine._yield or coroutine.yield
local co_status = coroutine._status or coroutine.status
local co_running = coroutine.running

local as_string = strings.as_string
local opt_int = strings.opt_int
local sort = require("resty.hotffi.sandbox.sort").sort
local cost = budget.cost
local need = budget.need
local readonly = copy.readonly
local SHADOW = copy.SHADOW


-- ------------------------------------------------------------------------
-- Guarded table library

local function check_writable(t)
    if SHADOW[t] then
        error("attempt to modify a read-only table", 3)
    end
end


local function safe_concat(t, sep, i, j)
    local st = budget.current
    t = SHADOW[t] or t
    i, j = opt_int(i), opt_int(j)
    if st and type(t) == "table" then
        local lsep = #(as_string(sep) or "")
        local first = type(i) == "number" and i or 1
        local last = type(j) == "number" and j or #t
        local bytes, n = 0, 0
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
            n = n + 1
        end
        need(st, bytes)
        cost(st, bytes + n)
    end
    return tab_concat(t, sep, i, j)
end


-- Charges moving the elements from pos to the end of t (insert, remove).
local function charge_shift(len, pos)
    local st = budget.current
    if st and len - pos > 64 then
        cost(st, (len - pos) * 8)
    end
end


-- table.insert(t, pos, v) and (t, v).  The position is passed on as the
-- int the native function would read: LuaJIT moves the elements from the
-- end down to it, so NaN (INT_MIN) would move 2^31 of them in one call.
local function safe_insert(t, ...)
    check_writable(t)
    if select("#", ...) == 2 and type(t) == "table" then
        local len, pos = #t, opt_int((...))
        if type(pos) == "number" then
            if pos < 1 or pos > len + 1 then
                error("bad argument #2 to 'insert' (position out of bounds)",
                      2)
            end
            charge_shift(len, pos)
        end
        return tab_insert(t, pos, select(2, ...))
    end
    return tab_insert(t, ...)
end


local function safe_remove(t, pos)
    check_writable(t)
    pos = opt_int(pos)
    if type(pos) == "number" and type(t) == "table" then
        local len = #t
        if not ((pos >= 1 and pos <= len + 1) or (len == 0 and pos == 0)) then
            error("bad argument #2 to 'remove' (position out of bounds)", 2)
        end
        charge_shift(len, pos)
    end
    return tab_remove(t, pos)
end


local function safe_sort(t, comp)
    check_writable(t)
    return sort(t, comp)
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
    local st = budget.current
    if st and type(v) == "string" and #v > 4096 then
        cost(st, #v)        -- a numeral is scanned to its end
    end
    return tonumber(v, base)
end


-- error(msg, level) copies a string message to put the position in
-- front of it, in one C call: a 16 MiB message is 16 MiB more.  The level
-- counts this wrapper: it is passed on one higher.
local function safe_error(msg, level)
    local st = budget.current
    level = opt_int(level)
    if level == nil then
        level = 1
    elseif type(level) ~= "number" then
        error("bad argument #2 to 'error' (number expected, got "
              .. type(level) .. ")", 2)
    end
    if level > 0 then
        if st and type(msg) == "string" then
            need(st, #msg)
            cost(st, #msg)
        end
        level = level + 1
    end
    error(msg, level)
end


local function safe_getmetatable(v)
    if type(v) ~= "table" then
        return nil      -- never the string metatable
    end
    return getmetatable(v)
end


-- What the sandbox's pcall, xpcall and coroutine.resume return: a budget
-- stop, or an error that means the VM ran out of a resource (possibly
-- inside the count hook, budget.uncatchable), ends the run instead.
local function after_pcall(st, ok, ...)
    if st and not ok and budget.uncatchable(st, (...)) then
        error(st.message, 0)
    end
    if st and st.stopped then
        error(st.message, 0)    -- a budget stop cannot be caught
    end
    return ok, ...
end


local function safe_pcall(f, ...)
    return after_pcall(budget.current, pcall(f, ...))
end


-- The handler runs after the error has unwound, not before as LuaJIT's
-- xpcall calls it: when the error was raised inside the count hook (a
-- budget stop, or a stack overflow in the hook), LuaJIT would call the
-- handler with the hook still marked active, so no hook would fire in it.
-- Scripts have no debug library: a handler cannot see the difference.
local function handled(st, handler, ok, ...)
    if ok then
        return ok, ...
    end
    -- like LuaJIT's: false and the handler's first result (or its error)
    local _, res = after_pcall(st, pcall(handler, (...)))
    return false, res
end


local function safe_xpcall(f, handler, ...)
    local st = budget.current
    return handled(st, handler, after_pcall(st, pcall(f, ...)))
end


-- ------------------------------------------------------------------------
-- Guarded coroutines: LuaJIT's own, limited to coroutines the script
-- created; yielding out of the run fails (C boundary: run_protected in
-- resty.hotffi.sandbox).

local function script_thread(co, name)
    local st = budget.current
    if type(co) ~= "thread" or not (st and st.threads[co]) then
        error("bad argument #1 to '" .. name .. "' (coroutine expected)", 3)
    end
end


local function safe_co_create(f)
    if type(f) ~= "function" then
        error("bad argument #1 to 'create' (function expected)", 2)
    end
    local co = co_create(f)
    local st = budget.current
    if st then
        st.threads[co] = true
    end
    return co
end


local function safe_co_resume(co, ...)
    script_thread(co, "resume")
    return after_pcall(budget.current, co_resume(co, ...))
end


local function safe_co_status(co)
    script_thread(co, "status")
    return co_status(co)
end


local function safe_co_running()
    local co = co_running()
    local st = budget.current
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
        return wrap_results(budget.current, co_resume(co, ...))
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
        string = readonly(strings.lib, false, seen),
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


local BASE_FUNCTIONS = {
    assert = assert, error = safe_error, getmetatable = safe_getmetatable,
    ipairs = safe_ipairs, next = safe_next, pairs = safe_pairs,
    rawequal = rawequal, rawget = safe_rawget, rawset = safe_rawset,
    select = select, setmetatable = setmetatable, tonumber = safe_tonumber,
    tostring = tostring, type = type, unpack = safe_unpack,
    _VERSION = _VERSION,
}


-- The globals of a sandbox made with `opts` (see resty.hotffi.sandbox's
-- new); raises for an `env` value that cannot cross into a sandbox.
local function build(opts)
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
        g[name] = copy.expose(v, true, seen)
    end
    return g
end



return {
    build = build,
    -- the string metatable's __index while a script runs
    string_index = SHADOW[LIBS.string],
}
