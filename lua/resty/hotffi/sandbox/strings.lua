-- resty.hotffi.sandbox.strings -- the string library a script sees:
-- functions that do unbounded work in one C call check the memory budget
-- before allocating and charge their work to the instruction budget;
-- patterns whose worst case is too costly for the native matcher run on
-- resty.hotffi.sandbox.pattern, which charges as it goes.

local budget = require "resty.hotffi.sandbox.budget"
local pattern = require "resty.hotffi.sandbox.pattern"

local floor = math.floor
local select = select
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
local tonumber = tonumber
local tostring = tostring
local type = type
local unpack = unpack

local cost = budget.cost
local memory_used = budget.memory_used
local need = budget.need
local stop = budget.stop

-- What one step of the native matcher costs, in bytes of the instruction
-- budget (its worst-case estimate is loose); a plain search compares 64
-- bytes in the time of one step.
local NATIVE_STEP_BYTES = 4
local PLAIN_PER_STEP = 64


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


local INT_MIN, INT_MAX = -2 ^ 31, 2 ^ 31 - 1

-- The int32 a wrapper passes to LuaJIT's C function for an index or count
-- argument, or nil when it is not a number (the native function then
-- raises the error).  LuaJIT itself (lj_lib_checkint) reads numerals in
-- strings, then casts: truncation toward zero, and on x86-64 INT_MIN for
-- NaN, the infinities and anything out of range, so 2^53 would become a
-- negative index.  This reading saturates instead (NaN is INT_MIN), and
-- the wrappers charge for it and pass it on, so that what runs is what
-- was charged, on any CPU.
local function to_int(v)
    local n = tonumber(v)
    if n == nil then
        return nil
    end
    if n >= INT_MAX then
        return INT_MAX
    end
    if not (n > INT_MIN) then
        return INT_MIN
    end
    return n >= 0 and floor(n) or -floor(-n)
end


-- An optional index or count argument as the native function reads it:
-- nil, to_int's value, or the value itself when it is not a number (for
-- the native function's error).
local function opt_int(v)
    if v == nil then
        return nil
    end
    return to_int(v) or v
end


-- LuaJIT's start position for find/match, 1-based, from init as opt_int
-- read it; nil when init is not a number.
local function start_pos(n, init)
    local start = init or 1
    if type(start) ~= "number" then
        return nil
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


-- The characters that make a pattern more than a plain string (LuaJIT's
-- lj_str_haspattern).  One plain find per character, each a memchr:
-- a [set] pattern would test every byte against the set, about 1 s for a
-- 16 MiB pattern, in one uncharged C call.
local SPECIALS = { "^", "$", "*", "+", "?", ".", "(", "[", "%", "-" }

local function has_specials(p)
    for i = 1, #SPECIALS do
        if str_find(p, SPECIALS[i], 1, true) then
            return true
        end
    end
    return false
end


local function find_aux(find, s, p, init, plain)
    local st = budget.current
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
        return true, pattern.plain_find(st, ss, ps, start,
                                        limit * PLAIN_PER_STEP)
    end
    local work = pattern.cost(ps, n, true)
    if work <= limit then
        cost(st, work * NATIVE_STEP_BYTES)
        return nil
    end
    return true, pattern.find(ss, ps, start, find)
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
    init = opt_int(init)
    return finish_find(s, p, init, plain, find_aux(true, s, p, init, plain))
end


local function safe_match(s, p, init)
    init = opt_int(init)
    return finish_match(s, p, init, find_aux(false, s, p, init))
end


local function safe_gmatch(s, p)
    local st = budget.current
    local ss, ps = as_string(s), as_string(p)
    if st == nil or not ss or not ps then
        return str_gmatch(s, p)
    end
    local n = #ss
    -- gmatch reads a leading ^ as a literal, and tries every position
    local work = pattern.cost(ps, n, false)
    if work <= st.pattern_steps then
        cost(st, work * NATIVE_STEP_BYTES)
        return str_gmatch(s, p)
    end
    return pattern.gmatch(ss, ps)
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
    local st = budget.current
    local ss, ps, kind = as_string(s), as_string(p), gsub_kind(repl)
    local n = ss and #ss
    max_n = opt_int(max_n)
    local maxn = max_n == nil and (n and n + 1) or max_n
    if st == nil or not ss or not ps or not kind
       or type(maxn) ~= "number"
    then
        return str_gsub(s, p, repl, max_n)
    end
    local work = pattern.cost(ps, n, true)
    if kind == "string" then
        repl = as_string(repl)
    end
    if work > st.pattern_steps then
        return pattern.gsub(st, ss, ps, repl, kind, maxn)
    end
    cost(st, work * NATIVE_STEP_BYTES + n)
    if kind == "string" then
        local lit, refs = repl_shape(repl)
            local matches = maxn < n + 1 and maxn or n + 1
        if matches < 0 then
            matches = 0
        end
        need(st, n + matches * (lit + 11 * refs) + refs * n)
        return str_gsub(s, p, repl, max_n)
    end
    local room = st.max_mem - memory_used(st) - n
    return str_gsub(s, p, counted_repl(st, repl, kind, room), max_n)
end


local function safe_rep(s, n, sep)
    local st = budget.current
    local ss, count = as_string(s), to_int(n)
    if count == nil then
        return str_rep(s, n, sep)
    end
    local lsep = sep ~= nil and #(as_string(sep) or "") or 0
    if st and ss and count > 0 and #ss + lsep > 0 then
        local bytes = count * #ss + (count - 1) * lsep
        need(st, bytes)
        cost(st, bytes + count)     -- and one copy call per repetition
    end
    return str_rep(s, count, sep)
end


local function safe_format(fmt, ...)
    local st = budget.current
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
    local st = budget.current
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
    local st = budget.current
    i, j = opt_int(i), opt_int(j)
    if st and type(s) == "string" and #s > 4096
       and type(i) == "number" and type(j or -1) == "number"
    then
        local l = #s
        local a, b = i, j or -1
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


return {
    as_string = as_string,
    to_int = to_int,
    opt_int = opt_int,
    -- the library itself
    lib = {
        byte = string.byte, char = string.char, find = safe_find,
        format = safe_format, gmatch = safe_gmatch, gsub = safe_gsub,
        len = string.len, lower = safe_lower, match = safe_match,
        rep = safe_rep, reverse = safe_reverse, sub = safe_sub,
        upper = safe_upper,
    },
}
