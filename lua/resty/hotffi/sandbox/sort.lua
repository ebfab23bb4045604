-- resty.hotffi.sandbox.sort -- table.sort for scripts: a heap sort in
-- Lua that charges every comparison.  LuaJIT's own is a quicksort that is
-- quadratic on adversarial input (and with a comparator that lies), all
-- inside one C call where no hook fires.  A heap sort makes at most about
-- 2·n·log2(n) comparisons whatever the input and the comparator say, and
-- since this code may run compiled (no hook), it charges them itself:
-- one instruction each, plus the bytes `<` reads of two strings.

local budget = require "resty.hotffi.sandbox.budget"

local error = error
local floor = math.floor
local rawget = rawget
local rawset = rawset
local type = type

local cost = budget.cost
local BYTES_PER_INSTRUCTION = budget.BYTES_PER_INSTRUCTION

-- charges are added up and handed to the budget in batches of this many
-- bytes (64 comparisons), so that a stop comes at most that late
local BATCH = 64 * BYTES_PER_INSTRUCTION


-- a < b as table.sort decides it, charged to the sort's state s
local function less(s, a, b)
    local bytes = s.bytes + BYTES_PER_INSTRUCTION
    local res
    if s.comp then
        res = s.comp(a, b)      -- script code: its instructions count too
    else
        local ta, tb = type(a), type(b)
        if ta ~= tb then
            -- LuaJIT's message, without this file's position
            error("attempt to compare " .. ta .. " with " .. tb, 0)
        end
        if ta == "string" then
            bytes = bytes + (#a < #b and #a or #b)
        end
        res = a < b
    end
    if bytes >= BATCH and s.st then
        cost(s.st, bytes)
        bytes = 0
    end
    s.bytes = bytes
    return res
end


-- Moves t[root] down the max-heap t[1..n], by swaps, so that t stays a
-- permutation of its elements even if a comparison raises.
local function sift(s, t, root, n)
    while true do
        local child = 2 * root
        if child > n then
            return
        end
        local cv = rawget(t, child)
        if child < n then
            local rv = rawget(t, child + 1)
            if less(s, cv, rv) then
                child = child + 1
                cv = rv
            end
        end
        local rv = rawget(t, root)
        if not less(s, rv, cv) then
            return
        end
        rawset(t, root, cv)
        rawset(t, child, rv)
        root = child
    end
end


-- table.sort(t, comp), for a table t the script may write; tail-called
-- by the script's table.sort, so level 2 is the script.
local function sort(t, comp)
    if type(t) ~= "table" then
        error("bad argument #1 to 'sort' (table expected, got " .. type(t)
              .. ")", 2)
    end
    if comp ~= nil and type(comp) ~= "function" then
        error("bad argument #2 to 'sort' (function expected, got "
              .. type(comp) .. ")", 2)
    end
    local n = #t
    local s = { comp = comp, st = budget.current, bytes = 0 }
    for root = floor(n / 2), 1, -1 do
        sift(s, t, root, n)
    end
    for last = n, 2, -1 do
        local top = rawget(t, 1)
        rawset(t, 1, rawget(t, last))
        rawset(t, last, top)
        sift(s, t, 1, last - 1)
    end
    if s.st then
        cost(s.st, s.bytes)
    end
end


return {
    sort = sort,
}
