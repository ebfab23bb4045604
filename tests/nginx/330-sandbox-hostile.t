use strict;
use warnings;

# resty.hotffi.sandbox against hostile arguments and inputs (issue 13,
# classes 1-4), and the guarantees docs/sandbox.md states as numbers:
#
#   - a run ends at most TIME_SLACK past its time budget: checked on the
#     worker's CPU time (os.clock), which a loaded machine does not
#     inflate, with a tolerance (CPU_TOLERANCE);
#   - a run's heap growth, measured with the collector stopped (so every
#     byte it allocated counts), stays below MEMORY_FACTOR x its memory
#     budget.
#
# A generated sweep calls every function a script can reach with NaN,
# the infinities, -0.0, -2^31, 2^31-1, 2^53, empty and 16 MiB strings,
# adversarial patterns and an adversarial sort input, each in its own run
# followed by an endless loop (a poisoned counter would let it run
# forever), while a client keeps requesting another location of the same
# worker; then a canary script checks that other tenants see nothing
# changed.

use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;

my $http_config = <<'CONF';
    init_by_lua_block {
        -- the numbers docs/sandbox.md states, and the tests' tolerance
        TIME_BUDGET = 0.25
        TIME_SLACK = 0.05       -- seconds past the time budget, at most
        CPU_TOLERANCE = 0.25    -- seconds more the test accepts (noise)
        MEMORY_FACTOR = 4       -- heap growth, in memory budgets, at most
        MEMORY = 8 * 1024 * 1024
        BUDGET_KINDS = { instructions = true, time = true, memory = true }

        -- an input on which LuaJIT's quicksort makes n²/4 comparisons:
        -- McIlroy's adversary ("A killer adversary for quicksort", 1999)
        -- decides the comparisons while LuaJIT sorts, and the values it
        -- chose are the input.
        function killer(n)
            local val, gas, solid, candidate = {}, n + 1, 0, nil
            local idx = {}
            for i = 1, n do
                idx[i] = i
            end
            table.sort(idx, function(x, y)
                if val[x] == nil and val[y] == nil then
                    solid = solid + 1
                    if x == candidate then
                        val[x] = solid
                    else
                        val[y] = solid
                    end
                end
                if val[x] == nil then
                    candidate = x
                elseif val[y] == nil then
                    candidate = y
                end
                return (val[x] or gas) < (val[y] or gas)
            end)
            for i = 1, n do
                if val[i] == nil then
                    solid = solid + 1
                    val[i] = solid
                end
            end
            return val
        end

        -- Runs script under limits; returns its outcome, the CPU seconds
        -- it took and its heap growth in memory budgets.
        function measure(script, limits, ...)
            if collectgarbage("count") > 256 * 1024 then
                collectgarbage()
            end
            collectgarbage("stop")
            local before, cpu = collectgarbage("count"), os.clock()
            local res = { script:run_with(limits, ...) }
            cpu = os.clock() - cpu
            local growth = (collectgarbage("count") - before) * 1024
                           / limits.memory
            collectgarbage("restart")
            return res, cpu, growth
        end

        CASES = {}

        -- class 2: a stack filled to just below its limit, then a loop,
        -- under xpcall with a looping handler.  The count hook that fires
        -- in the loop has no room left and fails: that must end the run,
        -- never leave the handler running without a hook.  The frame size
        -- (w locals) and the depth move where the hook's calls overflow.
        function CASES.full_stack()
            local sandbox = require "resty.hotffi.sandbox"
            local limits = { instructions = 1e6, time = TIME_BUDGET,
                             memory = MEMORY }
            local sb = sandbox.new({ limits = limits })
            local bad, runs = {}, 0
            for w = 0, 12 do
                local names = {}
                for i = 1, w do
                    names[i] = "a" .. i
                end
                local script = assert(sb:compile(([[
                    local depth, probe = ...
                    local function deep(n)
                        %s
                        if n ~= 0 then
                            return 1 + deep(n - 1)
                        end
                        while not probe do end
                        return 0
                    end
                    if probe then
                        return deep(depth)
                    end
                    return xpcall(deep, function() while true do end end,
                                  depth)
                ]]):format(w > 0 and "local " .. table.concat(names, ", ")
                                 or "")))
                local lo, hi = 1, 200000        -- the deepest that fits
                while hi - lo > 1 do
                    local mid = math.floor((lo + hi) / 2)
                    if script:run(mid, true) then
                        lo = mid
                    else
                        hi = mid
                    end
                end
                for depth = lo, lo - 3, -1 do
                    local res, cpu, growth = measure(script, limits, depth)
                    runs = runs + 1
                    local verdict = within(cpu, growth)
                    if res[1] or verdict ~= "within" then
                        bad[#bad + 1] = ("w %d depth %d: %s %s"):format(
                            w, depth, tostring(res[3]), verdict)
                    end
                end
            end
            return #bad == 0 and "within" or table.concat(bad, "; ")
        end

        -- class 3: LuaJIT's quicksort makes n²/4 comparisons on the
        -- killer input, inside one C call (about 1.5 s for n = 16000);
        -- the sandbox's sort makes at most 2·n·log2(n).
        function CASES.sort_killer()
            local sandbox = require "resty.hotffi.sandbox"
            local limits = { instructions = 1e9, time = TIME_BUDGET,
                             memory = MEMORY }
            local script = sandbox.new({ limits = limits }):compile([[
                local t = ...
                table.sort(t)
                for i = 2, #t do
                    if t[i - 1] > t[i] then
                        return "unsorted"
                    end
                end
                return "sorted"
            ]])
            SORT_KILLER = SORT_KILLER or killer(16000)
            local res, cpu, growth = measure(script, limits, SORT_KILLER)
            return tostring(res[2]) .. " " .. within(cpu, growth)
        end

        -- class 3: a tenant whose budget runs out while the sandbox
        -- reads a new pattern; the estimate, shared by every tenant of
        -- the worker, must not keep what that stop cut short, or the
        -- next tenant runs the pattern natively for hours (.- five
        -- times over 200 characters).
        function CASES.cut_short_estimate()
            local sandbox = require "resty.hotffi.sandbox"
            local pattern = "^" .. ("a"):rep(1000) .. (".-"):rep(5) .. "b"
            local first = sandbox.new({ limits = { instructions = 3000 } })
            local res = { first:compile("return ('a'):find(...)"):run(pattern) }
            local limits = { instructions = 1e6, time = TIME_BUDGET,
                             memory = MEMORY }
            local next_tenant = sandbox.new({ limits = limits }):compile([[
                return string.rep("a", 1200):find(...)
            ]])
            local res2, cpu, growth = measure(next_tenant, limits, pattern)
            return tostring(res[3]) .. " " .. tostring(res2[3]) .. " "
                   .. within(cpu, growth)
        end

        -- class 4: one instruction (TDUP) copying a constant table of
        -- 150000 entries (1.2 MB) over and over; the check interval must
        -- know that one instruction can add that much.
        function CASES.table_constructor()
            local sandbox = require "resty.hotffi.sandbox"
            local limits = { instructions = 1e9, time = 5, memory = MEMORY }
            local script = sandbox.new({ limits = limits }):compile(
                "local k = {} while true do k[#k + 1] = { "
                .. string.rep("1, ", 150000) .. "} end")
            local res, cpu, growth = measure(script, limits)
            return tostring(res[3]) .. " "
                   .. (growth <= MEMORY_FACTOR and "within"
                       or ("%.2f budgets"):format(growth))
        end

        -- one instruction whose time grows with the data: `<` reads two
        -- 64 MiB strings up to their last byte (several ms); the clock is
        -- read often enough.
        function CASES.long_compare()
            local sandbox = require "resty.hotffi.sandbox"
            local limits = { instructions = 1e9, time = TIME_BUDGET,
                             memory = MEMORY }
            local script = sandbox.new({ limits = limits }):compile([[
                local a, b = ...
                while true do local lt = a < b end
            ]])
            local huge = string.rep("a", 64 * 1024 * 1024)
            local res, cpu, growth = measure(script, limits, huge,
                                             huge:sub(2) .. "b")
            return tostring(res[3]) .. " " .. within(cpu, growth)
        end

        function within(cpu, growth)
            local bad = {}
            if cpu > TIME_BUDGET + TIME_SLACK + CPU_TOLERANCE then
                bad[#bad + 1] = ("cpu %.3f s"):format(cpu)
            end
            if growth > MEMORY_FACTOR then
                bad[#bad + 1] = ("memory %.2f budgets"):format(growth)
            end
            return #bad == 0 and "within" or table.concat(bad, ", ")
        end
    }
CONF

my $config = <<'CONF';
    location = /ping {
        content_by_lua_block { ngx.say("pong") }
    }

    # One hostile case per class the generated sweep cannot build: each
    # answers "within" when the run ended inside the stated bounds.
    location = /case {
        content_by_lua_block {
            ngx.say(CASES[ngx.var.arg_name]())
        }
    }

    location = /list {
        content_by_lua_block {
            local sandbox = require "resty.hotffi.sandbox"
            local ok, names = sandbox.new():compile([[
                -- every global name of LuaJIT 5.1, whether offered or not
                local GLOBALS = {
                    "assert", "collectgarbage", "dofile", "error", "gcinfo",
                    "getfenv", "getmetatable", "ipairs", "load", "loadfile",
                    "loadstring", "module", "newproxy", "next", "pairs",
                    "pcall", "print", "rawequal", "rawget", "rawlen",
                    "rawset", "require", "select", "setfenv", "setmetatable",
                    "tonumber", "tostring", "type", "unpack", "xpcall",
                    "bit", "coroutine", "debug", "ffi", "io", "jit", "math",
                    "os", "package", "string", "table",
                }
                local out = {}
                for _, name in ipairs(GLOBALS) do
                    local v = _G[name]
                    if type(v) == "function" then
                        out[#out + 1] = name
                    elseif type(v) == "table" then
                        for k, f in pairs(v) do
                            if type(f) == "function" then
                                out[#out + 1] = name .. "." .. k
                            end
                        end
                    end
                end
                table.sort(out)
                return table.concat(out, " ")
            ]]):run()
            ngx.say(ok and names)
        }
    }

    location = /sweep {
        content_by_lua_block {
            local sandbox = require "resty.hotffi.sandbox"
            local limits = { instructions = 20000, time = TIME_BUDGET,
                             memory = MEMORY }
            local sb = sandbox.new({ limits = limits })
            BIG = BIG or string.rep("a", 16 * 1024 * 1024)
            KILLER = KILLER or killer(3000)
            -- no `..` in it: with one, a 16 MiB argument would make the
            -- hook fire at every instruction (docs/sandbox.md, Memory),
            -- and the sweep would crawl
            local script = assert(sb:compile([[
                local name, pos, vi, BIG, KILLER = ...
                local S = "hello, world"
                local function copy(t)
                    local c = {}
                    for i = 1, #t do c[i] = t[i] end
                    return c
                end
                local VALUES = {
                    0 / 0, 1 / 0, -1 / 0, -0.0, -2 ^ 31, 2 ^ 31 - 1, 2 ^ 53,
                    "", BIG, "(.-)(.-)(.-)(.-)b", "^.-.-.-b",
                    ("[%s]*b"):format(("a"):rep(1000)), KILLER,
                }
                local TEMPLATES = {
                    ["string.format"] = { "%5.2s|%d|%s", S, 3, BIG },
                    ["string.gsub"] = { BIG, "a", "%0%0", 2 },
                    ["string.rep"] = { "ab", 3, "," },
                    ["string.char"] = { 65, 66, 67 },
                    ["string.byte"] = { BIG, 1, 100 },
                    ["table.concat"] = { { "a", "b", "c" }, ",", 1, 3 },
                    ["table.insert"] = { { 1, 2, 3 }, 2, 9 },
                    ["table.remove"] = { { 1, 2, 3 }, 2 },
                    ["table.sort"] = { KILLER },
                    unpack = { { 1, 2, 3 }, 1, 3 },
                    select = { 2, "a", "b", "c" },
                    tonumber = { "10", 16 },
                }
                local lib, fname = name:match("^(%a+)%.(%a+)$")
                local f = lib and _G[lib][fname] or _G[name]
                local args = TEMPLATES[name]
                              or (lib == "string" and { BIG, 2, 5 })
                              or { 2, 3, 4 }
                local n = #args
                local call = {}
                for i = 1, n do
                    local v = args[i]
                    call[i] = type(v) == "table" and copy(v) or v
                end
                if pos > 0 then
                    local v = VALUES[vi]
                    call[pos] = type(v) == "table" and copy(v) or v
                    if pos > n then n = pos end
                else
                    -- the adversarial sort input, with the function as
                    -- the comparator
                    f, call, n = table.sort, { copy(KILLER), f }, 2
                end
                pcall(f, unpack(call, 1, n))
                while true do end
            ]], "sweep"))
            local name = ngx.var.arg_name
            local runs, worst_cpu, worst_growth, bad = 0, 0, 0, {}
            local function one(pos, vi)
                local res, cpu, growth = measure(script, limits, name, pos,
                                                 vi, BIG, KILLER)
                runs = runs + 1
                worst_cpu = math.max(worst_cpu, cpu)
                worst_growth = math.max(worst_growth, growth)
                local verdict = within(cpu, growth)
                -- the run ends in the loop after the call: a budget stop
                if not BUDGET_KINDS[res[3]] or verdict ~= "within" then
                    bad[#bad + 1] = ("%s pos %d value %d: %s, %s, %s"):format(
                        name, pos, vi, tostring(res[3]), tostring(res[2]),
                        verdict)
                end
                ngx.sleep(0)    -- let the worker serve the other client
            end
            one(0, 0)
            for pos = 1, 3 do
                for vi = 1, 13 do
                    one(pos, vi)
                end
            end
            local canary = sb:compile([[
                return string.upper("a") .. math.floor(1.5) .. tostring(x)
                       .. ("b"):rep(2) .. type(string.rep)
                       .. table.concat({ 1, 2 }, ",")
            ]], "canary")
            ngx.say(runs, " runs")
            ngx.say(#bad == 0 and "all within" or table.concat(bad, "\n"))
            ngx.say("canary ", select(2, canary:run()))
            ngx.say(worst_cpu, " ", worst_growth)
        }
    }
CONF

my $nginx = HotffiTest::Nginx->new(name => 'sandbox hostile', config => $config,
                                   http_config => $http_config);
$nginx->start;

my $list = $nginx->get('/list');
my @names = split ' ', $list->{content} // '';
cmp_ok(scalar(@names), '>', 60, 'the sweep covers every function a script sees ('
       . scalar(@names) . ')');

for my $case ([ 'full_stack', 'within' ], [ 'sort_killer', 'sorted within' ],
              [ 'cut_short_estimate', 'instructions instructions within' ],
              [ 'table_constructor', 'memory within' ],
              [ 'long_compare', 'time within' ]) {
    my ($name, $expected) = @$case;
    my $res = $nginx->get("/case?name=$name", { timeout => 30 });
    is($res->{content}, "$expected\n", "hostile case: $name");
}

my $clients = HotffiTest::start_clients($nginx, 1, '/ping', timeout => 5);
my ($worst_cpu, $worst_growth, $worst_cpu_of, $worst_growth_of) = (0, 0, '', '');
for my $name (@names) {
    my $res = $nginx->get("/sweep?name=$name", { timeout => 30 });
    if ($res->{status} ne '200') {
        # the worker is held (or gone): the rest would only time out
        fail("sweep: $name answered ($res->{status})");
        last;
    }
    my ($runs, @rest) = split /\n/, $res->{content} // '';
    my ($cpu, $growth) = split ' ', pop(@rest) // '0 0';
    ($worst_cpu, $worst_cpu_of) = ($cpu, $name) if $cpu > $worst_cpu;
    ($worst_growth, $worst_growth_of) = ($growth, $name) if $growth > $worst_growth;
    my $canary = pop @rest;
    is(join("\n", @rest), 'all within', "sweep: $name ($runs)");
    is($canary, 'canary A1nilbbfunction1,2', "sweep: $name leaves other scripts alone");
}
diag(sprintf('sweep: worst run %.3f s of CPU (%s), worst heap growth %.2f budgets (%s)',
             $worst_cpu, $worst_cpu_of, $worst_growth, $worst_growth_of));
my @answers = HotffiTest::stop_clients($clients);
cmp_ok(scalar(@answers), '>', 0, 'the worker served another location during the sweep ('
       . scalar(@answers) . ' answers)');
is(scalar(grep { $_->[0] ne '200' } @answers), 0, 'every concurrent request succeeded');

$nginx->quit;
$nginx->stop;

done_testing();
