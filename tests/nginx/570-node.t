# The Node.js loader (libhotffi_node.so): calls into real Node.js (Debian's
# libnode) through hotffi.serve(), binary requests as Buffers, answers as
# Buffers, strings and Promises, thrown errors and rejections, a caller
# giving up (task.cancelled), 200 calls answered at once by async handlers,
# failing loads, and what an embedded Node must not do to the worker:
# process.exit() ends the version, never the worker; signals stay nginx's.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use File::Temp qw(tempdir);

# V8 (its JIT, its platform threads) under valgrind is too slow and noisy
# to say anything about hotffi
plan(skip_all => "the Node.js runtimes are not run under valgrind: V8's "
               . "JIT and platform threads drown it")
    if $ENV{HOTFFI_TEST_VALGRIND};

BAIL_OUT("build first: make ($HotffiTest::REPO/build/lib/libhotffi_node.so "
         . "does not exist)")
    unless -e "$HotffiTest::REPO/build/lib/libhotffi_node.so";

# The modules the blocks load, in a directory nginx's workers can read.
our $JS = tempdir('hotffi-node-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $JS;

sub write_module {
    my ($name, $text) = @_;
    open my $fh, '>', "$JS/$name.js" or die "cannot write $JS/$name.js: $!";
    print {$fh} $text;
    close $fh or die "cannot write $JS/$name.js: $!";
}

write_module('t_serve', <<'JS');
'use strict';
const hotffi = require('hotffi');
const fs = require('fs');

let cancelled = 0;

function sigblk() {
    const m = /SigBlk:\s*([0-9a-f]+)/.exec(
        fs.readFileSync('/proc/thread-self/status', 'utf8'));
    const blocked = BigInt('0x' + m[1]);
    // HUP QUIT USR1 USR2 ALRM TERM CHLD IO: the ones nginx handles
    return [1, 3, 10, 12, 14, 15, 17, 29]
        .every((s) => (blocked & (1n << BigInt(s - 1))) !== 0n);
}

async function handle(req, task) {
    const i = req.indexOf(0x3a);   // ':'
    const cmd = (i < 0 ? req : req.subarray(0, i)).toString();
    const arg = i < 0 ? Buffer.alloc(0) : req.subarray(i + 1);
    switch (cmd) {
    case 'echo': return arg;
    case 'isbuffer': return String(Buffer.isBuffer(req));
    case 'str': return arg.toString() + '\u00e9';
    case 'none': return undefined;
    case 'u8': return new Uint8Array([104, 105]);
    case 'num': return 42;
    case 'later':
        await new Promise((r) => setTimeout(r, Number(arg)));
        return 'later ' + arg;
    case 'boom': throw new RangeError('boom: ' + arg);
    case 'reject': return Promise.reject(new Error('rejected: ' + arg));
    case 'error': {
        const [rc, text] = arg.toString().split(':');
        throw new hotffi.Error(Number(rc), text);
    }
    case 'wait':
        for (let n = 0; n < 1000; n++) {
            if (task.cancelled) {
                cancelled++;
                return 'gave up';
            }
            await new Promise((r) => setTimeout(r, 10));
        }
        return 'no';
    case 'cancelled': return String(cancelled);
    case 'exit': process.exit(Number(arg));
    case 'signal':
        try { process.on('SIGUSR1', () => {}); return 'installed'; }
        catch (e) { return e.message; }
    case 'kill':
        try { process.kill(process.pid, 'SIGTERM'); return 'killed'; }
        catch (e) { return e.message; }
    case 'chdir':
        try { process.chdir('/'); return 'changed'; }
        catch (e) { return e.code; }
    case 'console': console.log('console says %s', arg.toString()); return 'ok';
    case 'info':
        return JSON.stringify({ pid: process.pid, signals_blocked: sigblk(),
                                node: process.versions.node });
    default: return 'unknown';
    }
}

exports.init = (cfg, tq) => {
    hotffi.serve(tq, handle);
    return 0;
};

exports.init_cfg = (cfg, tq) => {
    hotffi.serve(tq, () => JSON.stringify({ cfg, tq: typeof tq }));
};

exports.init_async = async (cfg, tq) => {
    await new Promise((r) => setTimeout(r, 20));
    hotffi.serve(tq, () => 'async init done');
    return 0;
};

exports.init_throws = (cfg) => { throw new Error('init says no: ' + cfg); };
exports.init_rejects = async () => { throw new Error('init rejected'); };
exports.init_rc = (cfg) => Number(cfg);
exports.init_str = () => '0';
exports.init_exit = () => process.exit(9);
exports.init_never = () => new Promise(() => {});
exports.not_a_function = 42;
JS

write_module('t_syntax', "exports.init = (cfg, tq) => {\n");
write_module('t_broken', "require('no-such-dependency-here');\n");

our $HTTP_CONFIG = <<"CONF";
init_by_lua_block {
    package.loaded.jstest = {
        dir = "$JS",
        load = function(rel)
            return assert(require("resty.hotffi").load("hotffi_node",
                                                       "$JS" .. rel))
        end,
        fails = function(cfg, needle)
            local rt, err = require("resty.hotffi").load("hotffi_node", cfg)
            if rt then
                return "loaded"
            end
            local rc = err:match("failed: (%-?%d+)") or err
            return rc .. " " .. tostring(err:find(needle, 1, true) ~= nil)
        end,
    }
}
CONF

# 200 calls at once, each held by an async handler (a timer) until the
# others are in: every one is answered, in one worker.
{
    my $nginx = HotffiTest::Nginx->new(
        name => 'node under load', workers => 1,
        http_config => $HTTP_CONFIG,
        config => <<'CONF');
location = /t {
    content_by_lua_block {
        local t = require "jstest"
        local rt = t.load("/t_serve,init")
        local id = ngx.var.request_id
        local ok, res = rt:call("later:5")
        if not ok or res ~= "later 5" then
            ngx.log(ngx.ERR, "bad answer: ", ok, " ", res)
            return ngx.exit(500)
        end
        ok, res = rt:call("echo:" .. id)
        if not ok or res ~= id then
            ngx.log(ngx.ERR, "bad answer: ", ok, " ", res)
            return ngx.exit(500)
        end
        ngx.say("ok")
    }
}
CONF
    $nginx->start;
    my $r = concurrent_requests($nginx, 200, 200, '/t');
    is($r->{ok}, 200, '200 concurrent calls through async handlers answered')
        or diag(explain($r), $nginx->error_log_text);
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
           'error log is clean');
    $nginx->stop;
}

# nginx's signals with a Node.js runtime loaded: USR1 (reopen, the signal
# Node's inspector would take) reopens the logs and the worker survives,
# serving on and logging into the new file; HUP replaces the workers,
# whose new Node starts again; QUIT ends them in the usual time.
{
    my $nginx = HotffiTest::Nginx->new(
        name => 'node and nginx signals', workers => 1,
        http_config => $HTTP_CONFIG,
        config => <<'CONF');
location = /t {
    content_by_lua_block {
        local t = require "jstest"
        local rt = t.load("/t_serve")
        local ok, res = rt:x("console:" .. (ngx.var.arg_say or ""))
        ngx.say(ok, " ", res, " ", ngx.worker.pid())
    }
}
CONF
    $nginx->start;
    my ($pid) = $nginx->get('/t?say=before')->{content} =~ /^true ok (\d+)$/;
    ok($pid, 'the Node.js runtime answers');
    my $log = "$nginx->{prefix}/logs/error.log";
    rename $log, "$log.1" or die "cannot rename $log: $!";
    $nginx->signal('USR1');
    like(HotffiTest::_slurp("$log.1"), qr/console says before/,
         'the runtime logged into the first file');
    wait_until(sub { -e $log }, 10, 'nginx reopened its logs on USR1');
    # the worker reopens its files on its next turn of the loop: ask
    # until a line of the runtime lands in the new file
    my $answers = 0;
    wait_until(sub {
        $answers++ if $nginx->get('/t?say=after')->{content} eq "true ok $pid\n";
        $nginx->error_log_text =~ /console says after/;
    }, 10, 'the runtime logs into the reopened file');
    ok($answers > 0, 'the same worker answers after USR1');
    unlike($nginx->error_log_text, qr/exited on signal|\[alert\]/,
           'no worker died');
    $nginx->reload;
    my ($pid2) = $nginx->get('/t?say=reloaded')->{content} =~ /^true ok (\d+)$/;
    ok($pid2 && $pid2 != $pid, 'after HUP a new worker runs Node.js again');
    $nginx->quit;
    ok(!$nginx->killed, 'QUIT: the workers and their Node.js exit');
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/,
           'no alert in the error log');
    $nginx->stop;
}

run_tests();

__DATA__

=== TEST 1: the echo example answers; requests reach JavaScript as Buffers
--- http_config eval
$::HTTP_CONFIG
--- config eval
"location = /t {
    content_by_lua_block {
        local t = require 'jstest'
        local hotffi = require 'resty.hotffi'
        local rt = assert(hotffi.load('hotffi_node',
                          '$HotffiTest::REPO/examples/node/echo,init'))
        ngx.say(rt:echo('hello'))
        ngx.say(rt:echo(''))
        ngx.say(rt:echo())
        local s = t.load('/t_serve')
        ngx.say(s:x('isbuffer'))
    }
}"
--- request
GET /t
--- response_body
truehello
true
true
truetrue



=== TEST 2: binary requests with NULs, and 1 MiB, come back byte for byte
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jstest"
        ngx.req.read_body()
        local body = ngx.req.get_body_data()
        local rt = t.load("/t_serve")
        local ok, res = rt:x("echo:" .. body)
        ngx.say(ok, " ", #body, " ", res == body)
        ok, res = rt:x("echo:\0a\0\0b\0\255")
        ngx.say(ok, " ", #res, " ", res == "\0a\0\0b\0\255")
    }
}
--- request
POST /t
--- request_body eval
join '', map { chr($_ % 256) } 0 .. 1024 * 1024 - 1
--- response_body
true 1048576 true
true 7 true



=== TEST 3: answers: Buffer, string (UTF-8), Uint8Array, nothing, a Promise; another type fails
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jstest"
        local rt = t.load("/t_serve")
        ngx.say(rt:x("echo:bytes"))
        ngx.say(rt:x("str:caf"))
        ngx.say(rt:x("u8"))
        ngx.say(rt:x("none"))
        ngx.say(rt:x("later:1"))
        local ok, rc, err = rt:x("num")
        ngx.say(ok, " ", rc, " ", err:match("^[^\n]+"))
    }
}
--- request
GET /t
--- response_body
truebytes
truecafé
truehi
truenil
truelater 1
false 1 TypeError: serve() handler gave number, expected a Buffer, a string or nothing
--- error_log
serve() handler threw: TypeError
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 4: a throw and a rejection fail the call with rc 1 and the stack, logged; hotffi.Error is rc and data, unlogged
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jstest"
        local rt = t.load("/t_serve")
        local ok, rc, st = rt:x("boom:bad input")
        ngx.say(ok, " ", rc, " ", st:match("^[^\n]+"))
        ngx.say(st:find("t_serve.js:%d+") ~= nil)
        ok, rc, st = rt:x("reject:nope")
        ngx.say(ok, " ", rc, " ", st:match("^[^\n]+"))
        ngx.say(rt:x("error:7:mine"))
        ngx.say(rt:x("echo:still serving"))
    }
}
--- request
GET /t
--- response_body
false 1 RangeError: boom: bad input
true
false 1 Error: rejected: nope
false7mine
truestill serving
--- error_log eval
[qr/\[error\] .*hotffi: runtime "hotffi_node&[^"]*t_serve" v1: serve\(\) handler threw: RangeError: boom: bad input/,
 qr/serve\(\) handler threw: Error: rejected: nope/]
--- no_error_log
mine



=== TEST 5: a caller that gives up: the call times out, the handler sees task.cancelled
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jstest"
        local rt = t.load("/t_serve")
        ngx.say(rt:x("wait", 0.1))
        for _ = 1, 500 do
            local _, n = rt:x("cancelled")
            if n == "1" then
                break
            end
            ngx.sleep(0.01)
        end
        ngx.say(rt:x("cancelled"))
    }
}
--- request
GET /t
--- response_body
falseniltimeout
true1



=== TEST 6: configuration: cfg and tq reach init; async init; a rc, a throw, a rejection, a non-int, a missing module, function or dependency, a syntax error fail the load
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jstest"
        local d = t.dir
        ngx.say(t.load("/t_serve,init_cfg,a,b c"):x())
        ngx.say(t.load("/t_serve,init_cfg"):x())
        ngx.say(t.load("/t_serve?,init_async,"):x())
        ngx.say(t.fails(d .. "/t_serve,init_rc,7", "init_rc() returned 7"))
        ngx.say(t.fails(d .. "/t_serve,init_throws,x", "Error: init says no: x"))
        ngx.say(t.fails(d .. "/t_serve,init_rejects", "init rejected"))
        ngx.say(t.fails(d .. "/t_serve,init_str", "expected an int"))
        ngx.say(t.fails(d .. "/t_serve,not_a_function", 'exports no function "not_a_function"'))
        ngx.say(t.fails(d .. "/no_such_module", "Cannot find module"))
        ngx.say(t.fails(d .. "/t_syntax", "SyntaxError"))
        ngx.say(t.fails(d .. "/t_broken", "no-such-dependency-here"))
        ngx.say(t.fails("", "no module"))
        ngx.say(t.fails(d .. "/t_serve,init_exit", "process.exit(9)"))
        ngx.say(t.load("/t_serve"):x("echo:still"))
    }
}
--- request
GET /t
--- response_body
true{"cfg":"a,b c","tq":"number"}
true{"cfg":"","tq":"number"}
trueasync init done
7 true
4 true
4 true
4 true
3 true
3 true
3 true
3 true
1 true
4 true
truestill



=== TEST 7: process.exit() in a handler ends that version with an error, never the worker; other runtimes go on
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jstest"
        local other = t.load("/t_serve,init,other")
        local rt = t.load("/t_serve")
        local _, info = rt:x("info")
        local pid = require("cjson").decode(info).pid
        ngx.say(pid == ngx.worker.pid())
        local ok, rc, err = rt:x("exit:3")
        ngx.say(ok, " ", rc, " ", err)
        ok, rc, err = rt:x("echo:after")
        ngx.say(ok, " ", rc, " ", err)
        ngx.say(other:x("echo:other"))
        ngx.say(ngx.worker.pid() == pid)
    }
}
--- request
GET /t
--- response_body
true
false 4 the Node.js runtime ended: process.exit(3) was called
false 4 the Node.js runtime ended: process.exit(3) was called
trueother
true
--- error_log
process.exit(3) was called: its calls fail until it is unloaded or reloaded
--- no_error_log
exited on signal



=== TEST 8: nginx's process state stays nginx's: signals blocked on Node's threads, no signal listeners, no kill of the worker, no chdir; console goes to the error log
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jstest"
        local rt = t.load("/t_serve")
        local _, info = rt:x("info")
        info = require("cjson").decode(info)
        ngx.say(info.signals_blocked, " ", info.node:match("^%d+"))
        ngx.say(rt:x("signal"))
        ngx.say(rt:x("kill"))
        ngx.say(rt:x("chdir"))
        ngx.say(rt:x("console:hi"))
    }
}
--- request
GET /t
--- response_body
true 18
truehotffi: process.on("SIGUSR1") refused: signals belong to nginx
truehotffi: process.kill() of nginx refused
trueERR_WORKER_UNSUPPORTED_OPERATION
trueok
--- error_log
console says hi



=== TEST 9: the examples: fetch calls an HTTP server on 127.0.0.1 asynchronously (here nginx itself), many at once; counter reloads in place with its count
--- http_config eval
$::HTTP_CONFIG
--- config eval
"location = /hello {
    return 200 'hello from nginx';
}
location = /missing {
    return 404 'not here';
}
location = /t {
    content_by_lua_block {
        local hotffi = require 'resty.hotffi'
        local rt = assert(hotffi.load('hotffi_node',
            '$HotffiTest::REPO/examples/node/fetch,init,http://127.0.0.1:'
            .. ngx.var.server_port))
        ngx.say(rt:get('/hello'))
        ngx.say(rt:get('/missing'))
        local threads = {}
        for i = 1, 20 do
            threads[i] = ngx.thread.spawn(function() return rt:get('/hello') end)
        end
        local n = 0
        for i = 1, 20 do
            local _, ok, res = ngx.thread.wait(threads[i])
            if ok and res == 'hello from nginx' then n = n + 1 end
        end
        ngx.say(n)
        local c = assert(hotffi.load('hotffi_node',
            '$HotffiTest::REPO/examples/node/counter?,init'))
        c:count()
        c:count()
        assert(c:__reload())
        ngx.say(c:count())
    }
}"
--- request
GET /t
--- response_body
truehello from nginx
false404not here
20
true3



=== TEST 10: an init whose Promise never settles fails the load at init_timeout; the worker serves on and quits in the usual time
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jstest"
        local rt, err = require("resty.hotffi").load("hotffi_node",
            t.dir .. "/t_serve,init_never", { init_timeout = 1 })
        ngx.say(rt, " ", err:match("still running after 1 s") or err)
        ngx.say(t.load("/t_serve"):x("echo:still"))
    }
}
--- request
GET /t
--- response_body
nil still running after 1 s
truestill
--- no_error_log
[alert]
[crit]



=== TEST 11: a worker that started Node exits with the status it asked for (the loader ends it past libnode's exit handlers)
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        ngx.say(require("jstest").load("/t_serve"):x("echo:up"))
        ngx.timer.at(0.05, function() os.exit(3) end)
    }
}
--- request
GET /t
--- response_body
trueup
--- error_log
exited with code 3
--- no_error_log
[alert]
[crit]
