-- resty.hotffi.metrics -- the whole nginx instance's hotffi metrics in
-- Prometheus text format 0.0.4.  See docs/operations.md.
--
-- Gathered as resty.hotffi.admin gathers status, over its command bus
-- (resty.hotffi.bus) and its lua_shared_dict:
--
--   handler() --"metrics" command--> every worker's bus timer: report()
--     adds its counters' growth since its last report to the dict
--     (m:<series>) and stores its gauges (g:<worker id>)
--   --> handler() waits, bounded, for every worker, then reads the dict
--
-- The C core counts calls as they happen (src/core/hotffi_metrics.h) and
-- nothing is read on the call path: a worker reads its counters only
-- when asked.  Counters live in the dict, so they survive `nginx -s
-- reload` (the dict does when its size and name stay) and the workers
-- that come and go; a worker's growth since its last report is added
-- once more when it exits (a timer that fires at exit).  Gauges are each
-- answering worker's values of this scrape.

local control = require "resty.hotffi.control"
local hotffi = require "resty.hotffi"

local ngx = ngx
local concat = table.concat
local floor = math.floor
local format = string.format
local huge = math.huge
local gsub = string.gsub
local ipairs = ipairs
local log = ngx.log
local match = string.match
local pairs = pairs
local setmetatable = setmetatable
local sort = table.sort
local sub = string.sub
local timer_at = ngx.timer.at
local tostring = tostring
local type = type
local worker_id = ngx.worker.id

local ERR = ngx.ERR


local _M = { version = "0.1.0" }

-- lua_shared_dict keys, besides the bus's and the admin handler's
local K_SERIES = "m:"      -- m:<series>: a counter, the sum of its growth
local K_GAUGES = "g:"      -- g:<worker id>: a worker's gauges, as JSON

local DEFAULT_WAIT = 2     -- seconds a scrape waits for the workers
local MAX_WAIT = 30
local FOREVER = 365 * 24 * 3600   -- the exit timer's delay: it fires at
                                  -- the worker's exit only

local BUCKETS = hotffi.LATENCY_BUCKETS


-- The families, in the order they are written: name, type, help.  A
-- counter's samples are name .. "_total"; a histogram's name .. "_bucket",
-- "_sum" and "_count".
local FAMILIES = {
    { "hotffi_calls", "counter",
      "Calls to a runtime by outcome: ok, error (the runtime's rc), "
      .. "timeout, queue_full, unloaded, abandoned." },
    { "hotffi_call_duration_seconds", "histogram",
      "Time from a call's post to the runtime's answer, of the answers "
      .. "taken." },
    { "hotffi_payload_bytes", "counter",
      "Request (in) and answer (out) bytes of calls." },
    { "hotffi_queue_depth", "gauge", "Calls waiting in a runtime's queue." },
    { "hotffi_calls_in_flight", "gauge",
      "Calls posted to a runtime and not yet answered." },
    { "hotffi_reloads", "counter",
      "In-place runtime reloads by result: ok, failed." },
    { "hotffi_runtime_version", "gauge",
      "The version number serving a runtime (1 at load, +1 per reload)." },
    { "hotffi_reload_duration_seconds", "gauge",
      "How long a runtime's last reload took." },
    { "hotffi_code_versions", "counter",
      "Lua code versions a worker applied or refused (resty.hotffi.code)." },
    { "hotffi_code_version_info", "gauge",
      "The Lua code version a worker runs (resty.hotffi.code)." },
    { "hotffi_sandbox_runs", "counter",
      "Sandboxed script runs by tenant class and outcome: ok, "
      .. "instructions, time, memory, error." },
    { "hotffi_sandbox_seconds", "counter",
      "Time sandboxed scripts ran, by tenant class." },
    { "hotffi_bridge_wakeups", "counter",
      "Wake-ups of a worker's event loop that delivered answers." },
    { "hotffi_bridge_completions", "counter",
      "Answers those wake-ups delivered." },
    { "hotffi_bridge_spin_hits", "counter",
      "Calls answered while the event loop spun for them." },
    { "hotffi_bridge_spin_misses", "counter",
      "Spins that ended unanswered." },
    { "hotffi_scrape_worker_up", "gauge",
      "1 when the worker reported for this scrape, 0 when it did not in "
      .. "time (its gauges are missing, its counters may lag)." },
}

local OUTCOMES = { "ok", "error", "timeout", "queue_full", "unloaded",
                   "abandoned" }
local SANDBOX_OUTCOMES = { "ok", "instructions", "time", "memory", "error" }


-- A label value, escaped as the text format wants.
local function esc(v)
    return (gsub(tostring(v), '[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"',
                                           ["\n"] = "\\n" }))
end


-- `{k1="v1",k2="v2"}` of the pairs k1, v1, k2, v2, ...
local function labels(...)
    local t = { ... }
    local out = {}
    for i = 1, #t, 2 do
        out[#out + 1] = t[i] .. '="' .. esc(t[i + 1]) .. '"'
    end
    return "{" .. concat(out, ",") .. "}"
end


-- A number as the text format writes it.
local function num(v)
    if v == huge then
        return "+Inf"
    end
    if v == floor(v) and v < 2 ^ 53 and v > -2 ^ 53 then
        return format("%d", v)
    end
    return format("%.15g", v)
end


-- This worker's side ------------------------------------------------------

-- What this worker has added to the dict so far, per source of counts:
-- a runtime object (a new load starts from 0 again) or a module name.
-- Weak keys: an unloaded runtime's record goes with it.
local added = setmetatable({}, { __mode = "k" })
local dict                 -- the dict this worker reports to
local exit_timer = false   -- armed


-- Adds the growth of counter `series` (sample name and labels), now at
-- `value`, since the last report of source `src` to the dict.  Counts
-- only grow in a source: a runtime loaded again is a new source.
local function count(src, series, value)
    local seen = added[src]
    if not seen then
        seen = {}
        added[src] = seen
    end
    local delta = value - (seen[series] or 0)
    -- a series is written at 0 too: Prometheus sees it from the start
    if delta > 0 or seen[series] == nil then
        local ok, err = dict:incr(K_SERIES .. series, delta, 0)
        if not ok then
            log(ERR, "resty.hotffi.metrics: lua_shared_dict: ", err,
                " (give the admin dict more room)")
            return
        end
        seen[series] = value
    end
end


local function runtime_counts(w, name, rt, m, s)
    local l = 'runtime="' .. esc(name) .. '",worker="' .. w .. '"'
    for _, o in ipairs(OUTCOMES) do
        count(rt, 'hotffi_calls_total{' .. l .. ',outcome="' .. o .. '"}',
              m[o])
    end
    count(rt, 'hotffi_payload_bytes_total{' .. l .. ',direction="in"}',
          m.bytes_in)
    count(rt, 'hotffi_payload_bytes_total{' .. l .. ',direction="out"}',
          m.bytes_out)
    for i, n in ipairs(m.latency) do
        -- one per bucket, made cumulative when written
        count(rt, "hotffi_call_duration_seconds_bucket{" .. l .. ',le="'
                  .. num(BUCKETS[i] or huge) .. '"}', n)
    end
    count(rt, "hotffi_call_duration_seconds_sum{" .. l .. "}",
          m.latency_sum)
    count(rt, 'hotffi_reloads_total{' .. l .. ',result="ok"}', s.reloads)
    count(rt, 'hotffi_reloads_total{' .. l .. ',result="failed"}',
          s.reload_failures)
end


-- The code version this worker runs, and the versions it applied and
-- refused, read from what resty.hotffi.code records (its status) and
-- counted as changes seen between two reports: a new version running, a
-- new refusal in the worker's record (last_error_at; the leader records
-- there the versions it refuses at the source).  Two changes of the same
-- kind between two scrapes count once.
local code_seen = { applied = 0, refused = 0 }

local function code_counts(w, gauges)
    local loaded = package.loaded["resty.hotffi.code"]
    if not loaded then
        return
    end
    local version = loaded.current_version()
    local st = loaded.status()
    local mine
    for _, r in ipairs(st and st.workers or {}) do
        if r.pid == ngx.worker.pid() then
            mine = r
        end
    end
    if version and version ~= code_seen.version then
        code_seen.applied = code_seen.applied + 1
        code_seen.version = version
    end
    local refused_at = mine and type(mine.last_error_at) == "number"
                       and mine.last_error_at
    if refused_at and refused_at ~= code_seen.refused_at then
        code_seen.refused = code_seen.refused + 1
        code_seen.refused_at = refused_at
    end
    local l = 'worker="' .. w .. '"'
    count("code", 'hotffi_code_versions_total{' .. l .. ',result="applied"}',
          code_seen.applied)
    count("code", 'hotffi_code_versions_total{' .. l .. ',result="refused"}',
          code_seen.refused)
    if version then
        gauges[#gauges + 1] = { "hotffi_code_version_info{" .. l
                                .. ',version="' .. esc(version) .. '"}', 1 }
    end
end


local function sandbox_counts(w)
    local sb = package.loaded["resty.hotffi.sandbox"]
    if not sb then
        return
    end
    for class, t in pairs(sb.stats()) do
        local l = 'class="' .. esc(class) .. '",worker="' .. w .. '"'
        for _, o in ipairs(SANDBOX_OUTCOMES) do
            count("sandbox", 'hotffi_sandbox_runs_total{' .. l
                             .. ',outcome="' .. o .. '"}', t[o])
        end
        count("sandbox", "hotffi_sandbox_seconds_total{" .. l .. "}",
              t.seconds)
    end
end


-- Adds this worker's counters to the dict; returns its gauges, an array
-- of { series, value }.
local function flush()
    local w = tostring(worker_id() or 0)
    local gauges = {}
    -- counts of every runtime still referenced, the unloaded ones too
    for _, rt in ipairs(hotffi.runtimes()) do
        local s = rt:__stats()
        runtime_counts(w, s.name, rt, rt:__metrics(), s)
    end
    -- gauges of those loaded, one per name
    for _, name in ipairs(hotffi.names()) do
        local rt = hotffi.get(name)
        local m, s = rt:__metrics(), rt:__stats()
        local l = '{runtime="' .. esc(name) .. '",worker="' .. w .. '"}'
        gauges[#gauges + 1] = { "hotffi_queue_depth" .. l, m.queued }
        gauges[#gauges + 1] = { "hotffi_calls_in_flight" .. l, m.inflight }
        gauges[#gauges + 1] = { "hotffi_runtime_version" .. l, s.version }
        if s.last_reload then
            gauges[#gauges + 1] = { "hotffi_reload_duration_seconds" .. l,
                                    s.last_reload.seconds }
        end
    end
    local h = hotffi.stats()
    local l = '{worker="' .. w .. '"}'
    count("bridge", "hotffi_bridge_wakeups_total" .. l, h.wakeups)
    count("bridge", "hotffi_bridge_completions_total" .. l, h.completions)
    count("bridge", "hotffi_bridge_spin_hits_total" .. l, h.spin_hits)
    count("bridge", "hotffi_bridge_spin_misses_total" .. l, h.spin_misses)
    sandbox_counts(w)
    code_counts(w, gauges)
    return gauges
end


-- The last growth, added when the worker exits (the timer fires then,
-- premature); a worker that crashes loses what it counted since its last
-- report.
local function at_exit(premature)
    if premature then
        flush()
    end
end


-- This worker's report for a scrape: run by resty.hotffi.admin's bus
-- timer on the "metrics" command, with its lua_shared_dict.  Returns the
-- bus report.
function _M.report(shared)
    dict = shared
    if not exit_timer then
        exit_timer = timer_at(FOREVER, at_exit) and true or false
    end
    local gauges = flush()
    local w = worker_id() or 0
    local ok, err = dict:set(K_GAUGES .. w, control.json(gauges))
    if not ok then
        return { ok = false, error = "lua_shared_dict: " .. tostring(err) }
    end
    return { ok = true }
end


-- The scrape's side -------------------------------------------------------

-- The family of a sample name (FAMILIES), by its longest known prefix.
local family_of = {}
for i, f in ipairs(FAMILIES) do
    local name, kind = f[1], f[2]
    if kind == "counter" then
        family_of[name .. "_total"] = i
    elseif kind == "histogram" then
        family_of[name .. "_bucket"] = i
        family_of[name .. "_sum"] = i
    else
        family_of[name] = i
    end
end


-- Writes histogram `name` from its per-bucket counts and sums (list of
-- { series, value }): cumulative buckets in order of le, +Inf, _sum and
-- _count per label set.
local function histogram(out, name, list)
    local sets, order = {}, {}
    for _, s in ipairs(list) do
        local suffix, l = match(s[1], "^" .. name .. "_(%a+)(%b{})$")
        local base = gsub(l, ',le="[^"]*"', "")
        local set = sets[base]
        if not set then
            set = { buckets = {}, sum = 0 }
            sets[base] = set
            order[#order + 1] = base
        end
        if suffix == "sum" then
            set.sum = s[2]
        else
            set.buckets[match(l, 'le="([^"]*)"')] = s[2]
        end
    end
    sort(order)
    for _, base in ipairs(order) do
        local set = sets[base]
        local inner = sub(base, 2, -2)
        local total = 0
        for i = 1, #BUCKETS + 1 do
            local le = num(BUCKETS[i] or huge)
            total = total + (set.buckets[le] or 0)
            out[#out + 1] = name .. "_bucket{" .. inner .. ',le="' .. le
                            .. '"} ' .. num(total)
        end
        out[#out + 1] = name .. "_sum" .. base .. " " .. num(set.sum)
        out[#out + 1] = name .. "_count" .. base .. " " .. num(total)
    end
end


-- The exposition of the dict's counters and the reports' gauges.
local function render(shared, reports)
    local samples = {}      -- family index -> { { series, value } }
    for i = 1, #FAMILIES do
        samples[i] = {}
    end
    local function add(series, value)
        local i = family_of[match(series, "^[%w_]+")]
        if i then
            local list = samples[i]
            list[#list + 1] = { series, value }
        end
    end

    for _, key in ipairs(shared:get_keys(0)) do
        if sub(key, 1, #K_SERIES) == K_SERIES then
            local v = shared:get(key)
            if v then
                add(sub(key, #K_SERIES + 1), v)
            end
        end
    end

    for _, r in ipairs(reports) do
        local up = r.ok and 1 or 0
        if r.ok then
            local gauges = control.decode(shared:get(K_GAUGES .. r.id))
            for _, g in ipairs(type(gauges) == "table" and gauges or {}) do
                add(g[1], g[2])
            end
        end
        add('hotffi_scrape_worker_up{worker="' .. r.id .. '"}', up)
    end

    local out = {}
    for i, f in ipairs(FAMILIES) do
        local list = samples[i]
        if #list > 0 then
            local name, kind = f[1], f[2]
            -- format 0.0.4 names a counter by its samples' name
            local head = kind == "counter" and name .. "_total" or name
            out[#out + 1] = "# HELP " .. head .. " " .. f[3]
            out[#out + 1] = "# TYPE " .. head .. " " .. kind
            sort(list, function(a, b) return a[1] < b[1] end)
            if kind == "histogram" then
                histogram(out, name, list)
            else
                for _, s in ipairs(list) do
                    out[#out + 1] = s[1] .. " " .. num(s[2])
                end
            end
        end
    end
    out[#out + 1] = ""
    return concat(out, "\n")
end


-- The HTTP handler.  Context: content_by_lua*.  Needs
-- resty.hotffi.admin.init_worker() (its dict and bus).
--   opts.token  as resty.hotffi.admin's: "Authorization: Bearer <token>"
--               is required; false serves without authentication (a
--               scraper on 127.0.0.1, say); nil answers 503
--   opts.wait   seconds to wait for every worker's report (default 2)
-- Mount it where only the scraper reaches it (allow ...; deny all;).
function _M.handler(opts)
    if not control.guard(opts, "resty.hotffi.metrics.handler") then
        return
    end
    local wait = opts.wait or DEFAULT_WAIT
    if type(wait) ~= "number" or not (wait > 0) or wait > MAX_WAIT then
        error("resty.hotffi.metrics.handler: bad wait: seconds, more than"
              .. " 0 and at most " .. MAX_WAIT, 2)
    end
    local commands = require("resty.hotffi.admin").bus()
    if not commands then
        return control.fail(500, "resty.hotffi.admin.init_worker() was"
                                 .. " not called")
    end
    local body, err = commands:ask({ op = "metrics" }, wait)
    if not body then
        return control.fail(500, err)
    end
    local text = render(commands.dict, body.workers)
    ngx.header["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    ngx.header["Cache-Control"] = "no-store"
    ngx.print(text)
    return ngx.exit(200)
end


return _M
