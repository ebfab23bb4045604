-- bench/sandbox.lua -- what a sandboxed script costs against the same code
-- run natively, inside one nginx worker.  See bench/sandbox.md.
--
-- As a module:   require("sandbox").run(opts) -> report table
-- As a handler:  content_by_lua_file .../bench/sandbox.lua
--                (GET ?format=json for JSON, ?quick=1 for a smoke run)

local modname = ...     -- set by require(), nil under content_by_lua_file

local cjson = require "cjson.safe"
local sandbox = require "resty.hotffi.sandbox"

local clock = os.clock
local floor = math.floor
local sort = table.sort
local str_format = string.format


local _M = {}


-- Each workload: a script, and a function returning its arguments.
local WORKLOADS = {
    {
        name = "empty",
        what = "return 1: the fixed cost of a run",
        src = "return 1",
        args = function() return end,
    },
    {
        name = "routing",
        what = "a routing rule: match, lower, find on a request",
        src = [[
            local req = ...
            local tenant, rest = req.uri:match("^/t/([%w-]+)(/.*)$")
            if not tenant then return nil end
            local ua = (req.headers["user-agent"] or ""):lower()
            local bot = ua:find("bot", 1, true) ~= nil
            local depth = 0
            for i = 1, #rest do
                if rest:byte(i) == 47 then depth = depth + 1 end
            end
            return tenant .. ":" .. (bot and "bot" or "human") .. ":" .. depth
        ]],
        args = function()
            return {
                uri = "/t/acme-corp/api/v2/orders/12345/items",
                headers = {
                    ["user-agent"] = "Mozilla/5.0 (compatible; Googlebot/2.1)",
                },
            }
        end,
    },
    {
        name = "waf",
        what = "a WAF rule: gmatch and gsub over a 2 KB form body",
        src = [[
            local body = ...
            local hits = 0
            for k, v in body:gmatch("([^&=]+)=([^&]*)") do
                v = v:gsub("%%(%x%x)", function(h)
                    return string.char(tonumber(h, 16))
                end)
                if v:find("<script", 1, true) or v:find("union%s+select") then
                    hits = hits + 1
                end
            end
            return hits
        ]],
        args = function()
            local parts = {}
            for i = 1, 60 do
                parts[i] = "field" .. i .. "=value%20" .. i
                           .. (i % 20 == 0 and "%3Cscript%3E" or "")
            end
            return table.concat(parts, "&")
        end,
    },
    {
        name = "compute",
        what = "an arithmetic loop (JIT-compiled natively, interpreted here)",
        src = [[
            local n, x = ..., 0
            for i = 1, n do x = (x + i * 7) % 1000003 end
            return x
        ]],
        args = function() return 20000 end,
    },
    {
        name = "concat",
        what = "string building with .. (denser memory checks)",
        src = [[
            local n = ...
            local s = ""
            for i = 1, n do s = s .. i .. "," end
            return #s
        ]],
        args = function() return 500 end,
    },
}


local function native_compile(src)
    local fn = assert(load(src, "=native", "t"))
    setfenv(fn, setmetatable({}, { __index = _G }))
    return function(...)
        return true, fn(...)
    end
end


local function sandbox_compile(sb, src)
    local script = assert(sb:compile(src, "bench"))
    return function(...)
        return script:run(...)
    end
end


-- Runs f(args) until `seconds` passed (at least `min_runs` times);
-- returns µs per run and the last result.
local function measure(f, args, seconds, min_runs)
    for _ = 1, 10 do
        f(args)    -- warm-up (and JIT traces for the native side)
    end
    local runs, ok, res = 0, nil, nil
    local t0 = clock()
    local deadline = t0 + seconds
    repeat
        for _ = 1, 10 do
            ok, res = f(args)
        end
        runs = runs + 10
    until clock() >= deadline and runs >= min_runs
    if not ok then
        error("run failed: " .. tostring(res))
    end
    return (clock() - t0) / runs * 1e6, res
end


local function median(list)
    local copy = {}
    for i, v in ipairs(list) do
        copy[i] = v
    end
    sort(copy)
    local n = #copy
    if n % 2 == 1 then
        return copy[(n + 1) / 2]
    end
    return (copy[n / 2] + copy[n / 2 + 1]) / 2
end


local function bench_one(sb, w, opts)
    local native = native_compile(w.src)
    local boxed = sandbox_compile(sb, w.src)
    local args = w.args()
    local native_us, sandbox_us, ratios = {}, {}, {}
    for rep = 1, opts.reps do
        local n_us, n_res = measure(native, args, opts.seconds, 20)
        local s_us, s_res = measure(boxed, args, opts.seconds, 20)
        if n_res ~= s_res then
            error(w.name .. ": sandboxed result " .. tostring(s_res)
                  .. " differs from native " .. tostring(n_res))
        end
        native_us[rep], sandbox_us[rep], ratios[rep] = n_us, s_us, s_us / n_us
    end
    return {
        name = w.name,
        what = w.what,
        native_us = median(native_us),
        sandbox_us = median(sandbox_us),
        ratio = median(ratios),
        native_runs = native_us,
        sandbox_runs = sandbox_us,
    }
end


-- opts: reps (5), seconds per measurement (0.2), quick (1 rep, 0.05 s)
function _M.run(opts)
    opts = opts or {}
    local conf = {
        reps = opts.reps or (opts.quick and 1 or 5),
        seconds = opts.seconds or (opts.quick and 0.05 or 0.2),
    }
    local sb = sandbox.new({
        limits = { instructions = 1e7, time = 1, memory = 64 * 1024 * 1024 },
    })
    local report = { reps = conf.reps, seconds = conf.seconds, cases = {} }
    for i, w in ipairs(WORKLOADS) do
        report.cases[i] = bench_one(sb, w, conf)
    end
    return report
end


function _M.format(report)
    local lines = {
        "sandboxed script vs the same code run natively (median of "
        .. report.reps .. " reps)",
        str_format("%-9s %12s %12s %8s  %s", "case", "native µs",
                   "sandbox µs", "ratio", "what"),
    }
    for _, c in ipairs(report.cases) do
        lines[#lines + 1] = str_format("%-9s %12.2f %12.2f %7.1fx  %s",
                                       c.name, c.native_us, c.sandbox_us,
                                       c.ratio, c.what)
    end
    return table.concat(lines, "\n") .. "\n"
end


-- content_by_lua_file use
if modname == nil and ngx and ngx.get_phase() == "content" then
    local args = ngx.req.get_uri_args()
    local report = _M.run({
        quick = args.quick == "1",
        reps = tonumber(args.reps),
        seconds = tonumber(args.seconds),
    })
    if args.format == "json" then
        ngx.print(cjson.encode(report))
    else
        ngx.print(_M.format(report))
    end
    return
end

return _M
