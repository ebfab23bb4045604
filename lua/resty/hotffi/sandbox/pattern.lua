-- resty.hotffi.sandbox.pattern -- a budgeted port of LuaJIT's pattern
-- matcher (lib_string.c), and the worst-case cost of a pattern.  The
-- guarded string library (resty.hotffi.sandbox.strings) charges a
-- pattern's cost and lets the native matcher run when it is small, and
-- runs this port, which charges as it goes, when it is not.

local budget = require "resty.hotffi.sandbox.budget"

local error = error
local huge = math.huge
local floor = math.floor
local pairs = pairs
local pcall = pcall
local str_byte = string.byte
local str_find = string.find
local str_sub = string.sub
local str_upper = string.upper
local tab_concat = table.concat
local tostring = tostring
local type = type
local unpack = unpack

local cost = budget.cost
local need = budget.need

-- A step of this matcher costs 16 bytes of the instruction budget (4 per
-- instruction); the budget is charged every TICK steps.
local LUA_STEP_BYTES = 16
local TICK = 4096


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
        local st = budget.current
        if st then
            cost(st, TICK * ms.step_bytes)
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


local do_match, pattern_shape

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


-- A matcher of p on s; a leading "^" anchors it when `anchored` (its
-- items then start after it, at pstart).  A step costs more for a
-- pattern with a long [set], which it reads at each step.
local function new_matcher(s, p, anchored)
    local anchor = anchored and str_byte(p, 1) == 94
    local pstart = anchor and 2 or 1
    return {
        src = s, slen = #s, pat = p, pend = pattern_end(p, pstart),
        anchor = anchor, pstart = pstart,
        level = 0, depth = 0, cinit = {}, clen = {},
        steps = 0, next_check = TICK,
        step_bytes = LUA_STEP_BYTES * pattern_shape(p, pstart).weight,
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
    local ms = new_matcher(s, p, true)
    local pos, last = start, ms.slen + 1
    repeat
        ms.level = 0
        ms.depth = 0
        local e = do_match(ms, pos, ms.pstart)
        if e then
            if find then
                return pos, e - 1, captures(ms, nil, nil)
            end
            return captures(ms, pos, e)
        end
        pos = pos + 1
    until pos > last or ms.anchor
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
    local ms = new_matcher(s, p, false)
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
    local ms = new_matcher(s, p, true)
    local slen = ms.slen
    local out, no, size = {}, 0, 0
    local src, keep, n = 1, 1, 0
    while n < max_n do
        ms.level = 0
        ms.depth = 0
        local e = do_match(ms, src, ms.pstart)
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
        if ms.anchor then
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
            if ms.st then
                -- 256 single matches, each reading the item: charged as
                -- it goes, so that a stop (a clock read) can come between
                -- two items of a long pattern
                cost(ms.st, 256 * (ep - p) * LUA_STEP_BYTES)
            end
            local item = { t = "single", set = class_set(ms, p, ep), q = 0 }
            if ep - p > items.width then
                items.width = ep - p    -- a [set] is read at each step
            end
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


pattern_shape = function(p, pstart)
    local cache = SHAPES[pstart]
    local items = cache[p]
    if items then
        return items
    end
    -- this Lua code may run compiled, where no hook fires: parse_items
    -- charges its own work
    items = { width = 1 }
    local ms = { pat = p, pend = pattern_end(p, pstart),
                 st = budget.current }
    -- a malformed pattern fails when the matcher reaches the bad part:
    -- the items before it are what it can cost.  Anything else that cut
    -- the parse short (a budget stop, a stack overflow) leaves a shape
    -- that is too cheap: it is never cached, every run shares the cache.
    local ok, err = pcall(parse_items, ms, pstart, items)
    if not ok and not (type(err) == "string"
                       and str_find(err, "malformed pattern", 1, true))
    then
        error(err, 0)
    end
    mark_disjoint(items)
    -- a step reads the widest item; up to 8 bytes that is no slower
    items.weight = items.width > 8 and items.width / 8 or 1
    if shape_count >= MAX_SHAPES then
        SHAPES[1], SHAPES[2], shape_count = {}, {}, 0
        cache = SHAPES[pstart]
    end
    shape_count = shape_count + 1
    cache[p] = items
    return items
end


-- Upper bound of matcher steps for one match attempt on n characters,
-- weighted by the pattern's widest item, which a step may read.
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
    return rest * items.weight
end


-- Upper bound of matcher steps for matching p on n characters: one
-- attempt when p is anchored, one at each position otherwise.  A leading
-- "^" anchors find, match and gsub (`anchored`), but is a literal for
-- gmatch.
local function pattern_cost(p, n, anchored)
    if anchored and str_byte(p, 1) == 94 then
        return attempt_cost(pattern_shape(p, 2), n)
    end
    return (n + 1) * attempt_cost(pattern_shape(p, 1), n)
end


return {
    find = lua_find,        -- and match, with find = false
    plain_find = plain_find,
    gmatch = lua_gmatch,
    gsub = lua_gsub,
    cost = pattern_cost,
}
