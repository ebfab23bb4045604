use strict;
use warnings;

# The sandbox's escape and denial-of-service corpus.  Each attack is posted
# as a script to one nginx worker, which runs it in resty.hotffi.sandbox
# and reports the outcome; after each attack the test checks that
#   - the outcome is the expected contained one (a named budget stop, an
#     error, or a harmless result),
#   - the host's argument table was not touched and a fresh script in the
#     same sandbox still sees pristine libraries (no poisoning),
#   - a normal request is served by the same worker process, with the
#     string metatable and debug hook restored.
# At the end: no crash, no [alert]/[crit] in error.log, bounded peak RSS.

use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;

my $config = <<'CONF';
    location = /attack {
        content_by_lua_block {
            local sandbox = require "resty.hotffi.sandbox"
            local sb = sandbox.new({
                limits = {
                    instructions = 1000000,
                    time = 2,
                    memory = 8 * 1024 * 1024,
                },
                env = {
                    host = {
                        echo = function(...) return ... end,
                        info = { name = "tenant", list = { 1, 2, 3 } },
                        sleep = function() ngx.sleep(0.001) end,
                    },
                },
            })
            ngx.req.read_body()
            local src = ngx.req.get_body_data() or ""
            local req = { uri = ngx.var.uri }
            local script, err = sb:compile(src, "attack")
            if not script then
                ngx.say("compile\n", err)
                return
            end
            local function collect(...)
                return { n = select("#", ...), ... }
            end
            local res = collect(script:run(req))
            collectgarbage()    -- runs any finalizer the script armed
            if res[1] then
                local out = {}
                for i = 2, res.n do
                    local v = res[i]
                    if type(v) == "table" then
                        -- touching a result must run no script code
                        v = "table:" .. tostring(v.anything)
                                     .. tostring(getmetatable(v))
                    end
                    out[#out + 1] = tostring(v)
                end
                ngx.say("ok\n", table.concat(out, " "))
            else
                ngx.say(res[3], "\n", res[2])
            end
            ngx.say("req ", tostring(getmetatable(req)), " ", tostring(req.y),
                    " ", req.uri)
            local canary = sb:compile([[
                return string.upper("a") .. math.floor(1.5) .. tostring(x)
                       .. ("b"):rep(2) .. type(string.rep) .. #host.info.name
            ]], "canary")
            ngx.say("canary ", select(2, canary:run()))
        }
    }

    location = /normal {
        content_by_lua_block {
            ngx.say("normal ", ("abc"):upper(), " ",
                    tostring(getmetatable("").__index == string), " ",
                    tostring(debug.gethook()), " ", ("x"):rep(3))
        }
    }
CONF

# [ name, script, expected outcome, expected message (regex) ]
my @corpus = (
    # ---- infinite loops
    [ 'loop: while true', 'while true do end',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'loop: repeat until false', 'repeat local x = 1 until false',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'loop: JIT-friendly numeric for', 'for i = 1, math.huge do end',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'loop: JIT-friendly arithmetic',
      'local x = 0 for i = 1, 1e15 do x = x + i % 7 end return x',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'loop: goto', '::top:: goto top',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'loop: tail recursion', 'local function f() return f() end return f()',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'loop: unbounded recursion', 'local function f(n) return f(n + 1) + 1 end return f(1)',
      'error', qr/stack overflow/ ],
    [ 'loop: in an __index metamethod',
      'local t = setmetatable({}, { __index = function() while true do end end }) return t.x',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'loop: in a gsub callback',
      'return string.gsub("abc", "%w", function() while true do end end)',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'loop: in a table.sort comparator',
      'table.sort({ 3, 2, 1 }, function(a, b) while true do end end)',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'loop: in a host callback chain',
      'local t = { __lt = function() while true do end end }
       local a, b = setmetatable({}, t), setmetatable({}, t) return a < b',
      'instructions', qr/^instruction budget exceeded/ ],

    # ---- string patterns: work inside one C call
    [ 'pattern: catastrophic find .-.-.-.-b',
      'return string.find(string.rep("a", 30000), ".-.-.-.-b")',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'pattern: quadratic find %w+= on 1 MB',
      'return (string.rep("a", 1000000)):find("%w+=")',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'pattern: catastrophic gsub a*a*a*b',
      'return (string.rep("a", 30000)):gsub("a*a*a*b", "")',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'pattern: catastrophic gmatch',
      'for x in (string.rep("a", 30000)):gmatch(".-.-b") do end',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'pattern: exponential a?^n a^n',
      'local n = 40
       return string.find(string.rep("a", n),
                          "^" .. string.rep("a?", n) .. string.rep("a", n) .. "$")',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'pattern: worst-case plain find',
      'local s = string.rep("a", 4000000)
       return s:find(string.rep("a", 4000) .. "b", 1, true)',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'pattern: method call on a string literal',
      'return ("x"):rep(100000):find(".-.-.-y")',
      'instructions', qr/^instruction budget exceeded/ ],

    # ---- hostile numbers reaching the accounting (issue 13, class 1)
    [ 'number: rep of "" math.huge times (a NaN charge)',
      'string.rep("", math.huge) while true do end',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'number: table.concat of a NaN range',
      'pcall(table.concat, { "a" }, "", 0 / 0, 1) while true do end',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'number: table.insert at a NaN position',
      'local t = { 1, 2, 3 } table.insert(t, 0 / 0, 4) return #t',
      'error', qr/position out of bounds/ ],
    [ 'number: sub from a NaN start',
      'local s, t = string.rep("x", 4000000), {}
       for i = 1, 1e9 do t[i] = s:sub(0 / 0) end',
      'memory', qr/^memory budget exceeded/ ],

    # ---- one long C call (issue 13, class 3)
    [ 'pattern: gmatch reads a leading ^ as a literal',
      'for x in string.rep("^", 66000):gmatch("^.-b") do end',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'pattern: a long [set] is read at each step',
      'return string.rep("a", 300):find("[" .. string.rep("a", 100000) .. "b]*c")',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'sort: a bad comparator is the script\'s error',
      'table.sort({}, 5)',
      'error', qr/^attack:1: bad argument #2 to 'sort' \(function expected, got number\)$/ ],
    [ 'sort: mixed types, no host file in the message',
      'table.sort({ 1, "x", 3 })',
      'error', qr/^attempt to compare (number with string|string with number)$/ ],
    [ 'sort: a lying C comparator',
      'local t = {} for i = 1, 100000 do t[i] = i end
       table.sort(t, math.max) while true do end',
      'instructions', qr/^instruction budget exceeded/ ],

    # ---- memory bombs
    [ 'memory: string.rep', 'return #string.rep("x", 2^40)',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: ("x"):rep through the string metatable', 'return #("x"):rep(1e9)',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: rep with a separator',
      'return #string.rep("", 1e9, string.rep("y", 100))',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: concatenation doubling', 'local s = "x" while true do s = s .. s end',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: many-operand concatenation',
      'local s = string.rep("x", 100000)
       while true do s = s .. s .. s .. s .. s .. s .. s .. s end',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: table growth',
      'local t, i = {}, 0
       while true do i = i + 1 t[i] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 } end',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: distinct big strings kept',
      'local t, s = {}, string.rep("x", 1000000)
       for i = 1, 1e9 do t[i] = s .. i end',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: table.concat',
      'local t, s = {}, string.rep("x", 100000)
       for i = 1, 60 do t[i] = s end
       return #table.concat(t, string.rep("y", 100000))',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: string.format',
      'local s = string.rep("x", 3000000)
       return #string.format("%s%s%s%s", s, s, s, s)',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: format through __tostring',
      'local big = string.rep("x", 3000000)
       local t = setmetatable({}, { __tostring = function() return big end })
       return #string.format("%s%s%s%s%s%s", t, t, t, t, t, t)',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: gsub string expansion',
      'return #(string.rep("x", 100000)):gsub("x", string.rep("y", 1000))',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: gsub function expansion',
      'local big = string.rep("z", 100000)
       return #(string.rep("x", 10000)):gsub("x", function() return big end)',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: table copies through unpack',
      'local t = {} for i = 1, 7000 do t[i] = i end
       local keep = {} while true do keep[#keep + 1] = { unpack(t) } end',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: coroutines',
      'local t = {} while true do t[#t + 1] = coroutine.create(function() end) end',
      'memory', qr/^memory budget exceeded/ ],
    [ 'memory: table.insert at a far position',
      'table.insert({}, -1e9, 1)',
      'error', qr/position out of bounds/ ],
    [ 'memory: table.remove at a far position',
      'return table.remove({}, -1e9)',
      'error', qr/position out of bounds/ ],
    [ 'memory: string.byte of a whole big string',
      'return select("#", string.byte(string.rep("x", 1000000), 1, -1))',
      'error', qr/string slice too long/ ],
    [ 'finalizer: __gc on a script table (runs after the run, unbudgeted)',
      'setmetatable({}, { __gc = function() while true do end end }) return "armed"',
      'ok', qr/^armed$/ ],
    [ 'memory: unpack of a huge range', 'return select("#", unpack({}, 1, 1e8))',
      'error', qr/too many results to unpack/ ],

    # ---- catching the budget stop
    [ 'catch: pcall', 'local ok = pcall(function() while true do end end) return "survived", ok',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'catch: pcall in a loop', 'while true do pcall(function() while true do end end) end',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'catch: xpcall with a looping handler',
      'return xpcall(function() while true do end end, function() while true do end end)',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'catch: xpcall handler looping after an ordinary error',
      'return xpcall(function() error("x") end, function() while true do end end)',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'catch: pcall of a memory stop',
      'local ok = pcall(string.rep, "x", 1e10) return "survived", ok',
      'memory', qr/^memory budget exceeded/ ],
    [ 'catch: pcall around gsub with a looping callback',
      'pcall(string.gsub, "a", "a", function() while true do end end) return "survived"',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'catch: error rethrown as a table',
      'local ok, e = pcall(function() while true do end end) error({ e })',
      'instructions', qr/^instruction budget exceeded/ ],

    # ---- coroutine tricks
    [ 'coroutine: resume swallows the stop',
      'local co = coroutine.create(function() while true do end end)
       local ok = coroutine.resume(co) return "survived", ok',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'coroutine: loop inside a coroutine',
      'local co = coroutine.wrap(function() while true do coroutine.yield() end end)
       while true do co() end',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'coroutine: wrap inside pcall',
      'return pcall(coroutine.wrap(function() while true do end end))',
      'instructions', qr/^instruction budget exceeded/ ],
    [ 'coroutine: yield out of the run', 'coroutine.yield(1) return "after yield"',
      'error', qr/attempt to yield across C-call boundary/ ],
    [ 'coroutine: host function that yields', 'host.sleep() return "slept"',
      'error', qr/attempt to yield across C-call boundary/ ],
    [ 'coroutine: host function yielding inside a script coroutine',
      'return coroutine.wrap(function() host.sleep() return "slept" end)()',
      'error', qr/attempt to yield across C-call boundary/ ],
    [ 'coroutine: resume the host thread', 'return coroutine.running()',
      'ok', qr/^nil$/ ],
    [ 'coroutine: resume a thread it did not create',
      'return coroutine.resume(coroutine.running())',
      'error', qr/coroutine expected/ ],

    # ---- error objects
    [ 'error object: __tostring loop',
      'error(setmetatable({}, { __tostring = function() while true do end end }))',
      'error', qr/^\(error object is a table value\)$/ ],
    [ 'error object: __index loop',
      'error(setmetatable({}, { __index = function() while true do end end }))',
      'error', qr/^\(error object is a table value\)$/ ],
    [ 'error object: huge message', 'error(string.rep("x", 1000000), 0)',
      'error', qr/^x{2048}\.\.\.$/ ],
    [ 'error object: forged budget message',
      'error("instruction budget exceeded (1000000 instructions)", 0)',
      'error', qr/^instruction budget exceeded/ ],

    # ---- the string metatable and string.dump
    [ 'string metatable: getmetatable("")', 'return getmetatable(""), getmetatable("x") == nil',
      'ok', qr/^nil true$/ ],
    [ 'string metatable: ("").__index', 'return ("").__index, ("").dump',
      'ok', qr/^nil nil$/ ],
    [ 'string metatable: string.dump', 'return string.dump(function() end)',
      'error', qr/attempt to call field 'dump'/ ],
    [ 'string metatable: methods are the guarded ones', 'return ("").rep == string.rep',
      'ok', qr/^true$/ ],

    # ---- poisoning shared tables
    [ 'poison: assign string.upper',
      'string.upper = function() return "pwned" end',
      'error', qr/attempt to modify a read-only table/ ],
    [ 'poison: rawset on string', 'rawset(string, "upper", print)',
      'error', qr/attempt to modify a read-only table/ ],
    [ 'poison: setmetatable on math', 'setmetatable(math, {})',
      'error', qr/cannot change a protected metatable/ ],
    [ 'poison: table.insert into a library table', 'table.insert(string, 1)',
      'error', qr/attempt to modify a read-only table/ ],
    [ 'poison: replace globals (affects only this run)',
      '_G.string = { upper = function() return "pwned" end } x = 1 math = nil
       return string.upper("a")',
      'ok', qr/^pwned$/ ],
    [ 'poison: host API table', 'host.info.name = "evil"',
      'error', qr/attempt to modify a read-only table/ ],
    [ 'poison: nested host table', 'table.insert(host.info.list, 4)',
      'error', qr/attempt to modify a read-only table/ ],
    [ 'poison: argument table metatable',
      'local req = ...
       setmetatable(req, { __index = function() while true do end end })
       req.y = setmetatable({}, { __index = function() while true do end end })
       return "done"',
      'ok', qr/^done$/ ],

    # ---- reaching the host through _G, upvalues, environments
    [ 'globals: nothing dangerous is reachable',
      'local names = { "load", "loadstring", "loadfile", "dofile", "require",
         "module", "io", "debug", "ffi", "jit", "package", "getfenv", "setfenv",
         "collectgarbage", "newproxy", "print", "gcinfo", "ngx" }
       local found = {}
       for _, n in ipairs(names) do
           if _G[n] ~= nil or rawget(_G, n) ~= nil then found[#found + 1] = n end
       end
       return #found == 0 and "none" or table.concat(found, ","),
              os.execute, os.exit, os.getenv, math.randomseed',
      'ok', qr/^none nil nil nil nil$/ ],
    [ 'globals: the environment metatable is protected',
      'return getmetatable(_G), pcall(setmetatable, _G, {})',
      'ok', qr/^false false cannot change a protected metatable$/ ],
    [ 'globals: library proxies hide their tables',
      'local n = 0 for k, v in pairs(string) do n = n + 1 end
       return getmetatable(string), n, rawget(string, "dump")',
      'ok', qr/^false 13 nil$/ ],
    [ 'host boundary: a function cannot reach the host', 'return host.echo(print or function() end)',
      'error', qr/cannot pass a function value out of the sandbox/ ],
    [ 'host boundary: tables reach the host without metatables',
      'return host.echo(setmetatable({}, { __index = function() while true do end end }))',
      'ok', qr/^table:nilnil$/ ],
    [ 'host boundary: returning a function', 'return function() while true do end end',
      'error', qr/cannot pass a function value out of the sandbox \(result\)/ ],
    [ 'host boundary: returning a table with a looping __index',
      'return setmetatable({}, { __index = function() while true do end end })',
      'ok', qr/^table:nilnil$/ ],
    [ 'host boundary: returning a cyclic table', 'local t = {} t.t = t return t',
      'ok', qr/^table:nilnil$/ ],
);

plan tests => scalar(@corpus) + 3;

my $nginx = HotffiTest::Nginx->new(name => 'sandbox escapes', config => $config);
$nginx->start;

my @workers;
HotffiTest::_poll(sub { @workers = $nginx->worker_pids }, 5);
is(scalar(@workers), 1, 'one worker process');

for my $case (@corpus) {
    my ($name, $script, $kind, $message) = @$case;
    subtest $name => sub {
        plan tests => 7;
        my $res = $nginx->post('/attack', $script);
        is($res->{status}, 200, 'attack request answered');
        my ($got_kind, $got_message, $req, $canary) = split /\n/, $res->{content} // '';
        is($got_kind, $kind, 'outcome');
        like($got_message // '', $message, 'message');
        is($req, 'req nil nil /attack', 'host argument table untouched');
        is($canary, 'canary A1nilbbfunction6', 'no poisoning of later scripts');
        my $normal = $nginx->get('/normal');
        is($normal->{content}, "normal ABC true nil xxx\n", 'the worker serves a normal request');
        is_deeply([ $nginx->worker_pids ], \@workers, 'same worker process');
    };
}

my ($pid) = @workers;
my ($peak) = HotffiTest::_slurp("/proc/$pid/status") =~ /^VmHWM:\s+(\d+) kB/m;
ok(defined $peak && $peak < 400 * 1024, 'peak worker RSS stays bounded ('
   . ($peak // '?') . ' kB)');

$nginx->quit;
my $log = $nginx->error_log_text;
my @bad = grep { /\[(alert|crit|emerg|error)\]|exited on signal/ } split /^/m, $log;
ok(!@bad, 'no error, crash or alert in error.log') or diag(join '', @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
$nginx->stop;
