-- resty.hotffi.sandbox.copy -- what crosses between host and script: only
-- plain data.  Arguments, results, and the arguments and results of host
-- functions are copied without metatables; host functions are wrapped so
-- that budgets hold while they run; shared tables are shown through
-- read-only proxies; script functions never reach the host.

local budget = require "resty.hotffi.sandbox.budget"

local debug_getmetatable = debug.getmetatable
local error = error
local next = next
local pcall = pcall
local select = select
local setmetatable = setmetatable
local str_gsub = string.gsub
local type = type
local unpack = unpack
local co_running = coroutine.running

local check_now = budget.check_now
local cost = budget.cost
local rearm = budget.rearm
local BYTES_PER_INSTRUCTION = budget.BYTES_PER_INSTRUCTION


local _M = {}

-- read-only proxy -> the plain table it shows (weak keys)
local SHADOW = setmetatable({}, { __mode = "k" })
_M.SHADOW = SHADOW


local function inert_userdata(v)
    -- a userdata without a metatable (ngx.null, cjson.null) has no
    -- behaviour a script could reach
    return debug_getmetatable(v) == nil
end


local copy_in_value, copy_out_value, wrap_host

-- A copy of t without its metatable, each key and value passed through
-- copy_value(v, seen, extra) (nil, err: the copy fails); `seen` maps the
-- tables copied so far to their copies, so that shared and cyclic
-- tables stay so.
local function copy_table(t, seen, copy_value, extra)
    local c = seen[t]
    if c then
        return c
    end
    c = {}
    seen[t] = c
    for k, v in next, t do
        local ck, err = copy_value(k, seen, extra)
        if err then
            return nil, err
        end
        local cv
        cv, err = copy_value(v, seen, extra)
        if err then
            return nil, err
        end
        c[ck] = cv
    end
    return c
end


-- Host value -> script value: tables are copied without metatables,
-- functions are wrapped; returns nil, err for values that must not cross.
copy_in_value = function(v, seen, st)
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
        return copy_table(v, seen, copy_in_value, st)
    end
    if tv == "function" then
        return wrap_host(v)
    end
    if tv == "userdata" and inert_userdata(v) then
        return v
    end
    return nil, "cannot pass a " .. tv .. " value into a sandbox"
end


-- Script value -> host value: plain copies only; raises in the script.
copy_out_value = function(v, seen, what)
    local tv = type(v)
    if tv == "string" or tv == "number" or tv == "boolean" or tv == "nil" then
        return v
    end
    if tv == "table" then
        return copy_table(SHADOW[v] or v, seen, copy_out_value, what)
    end
    if tv == "userdata" and inert_userdata(v) then
        return v
    end
    error("cannot pass a " .. tv .. " value out of the sandbox (" .. what
          .. ")", 0)
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
    local st = budget.current
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


_M.copy_in_value = copy_in_value
_M.copy_out_list = copy_out_list
_M.expose = expose
_M.readonly = readonly

return _M
