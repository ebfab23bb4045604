# The Python loader (libhotffi_python.so): calls into real CPython through
# hotffi.serve() and hotffi.poll(), handler errors, every way a load can
# fail, configuration parsing, several runtimes in one interpreter, the
# interpreter's set-up inside nginx, and unload joining the runtime's threads.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use File::Temp qw(tempdir);

# CPython under valgrind needs its own suppressions (see the file)
$ENV{HOTFFI_TEST_VALGRIND_SUPP} //= "$HotffiTest::REPO/loaders/python/valgrind.supp";

BAIL_OUT("build first: make ($HotffiTest::REPO/build/lib/libhotffi_python.so "
         . "does not exist)")
    unless -e "$HotffiTest::REPO/build/lib/libhotffi_python.so";

# The Python modules the blocks load, in a directory nginx's workers (user
# nobody when the tests run as root) can read.
our $PY = tempdir('hotffi-py-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $PY;

sub write_module {
    my ($name, $text) = @_;
    open my $fh, '>', "$PY/$name.py" or die "cannot write $PY/$name.py: $!";
    print {$fh} $text;
    close $fh or die "cannot write $PY/$name.py: $!";
}

write_module('t_serve', <<'PY');
import json
import os
import sys
import threading
import time

import hotffi

barrier = threading.Barrier(4)


def info():
    blocked = 0
    with open("/proc/thread-self/status") as f:
        for line in f:
            if line.startswith("SigBlk:"):
                blocked = int(line.split()[1], 16)
    # HUP QUIT USR1 USR2 ALRM TERM CHLD IO: the ones nginx handles
    nginx_signals = [1, 3, 10, 12, 14, 15, 17, 29]
    v = sys.version_info
    return {
        "prefix": sys.prefix,
        "stdlib": f"/usr/lib/python{v.major}.{v.minor}" in sys.path,
        "executable": sys.executable,
        "pid": os.getpid(),
        "interpreter": id(sys.modules),
        "signals_blocked": all(blocked & (1 << (s - 1))
                               for s in nginx_signals),
    }


def handle(req):
    cmd, _, arg = req.partition(b":")
    if cmd == b"echo":
        return arg
    if cmd == b"str":
        return arg.decode() + "\u00e9"
    if cmd == b"none":
        return None
    if cmd == b"bytearray":
        return bytearray(arg)
    if cmd == b"int":
        return 42
    if cmd == b"boom":
        raise ValueError("boom: " + arg.decode())
    if cmd == b"exit":
        sys.exit(3)
    if cmd == b"error":
        rc, _, text = arg.partition(b":")
        raise hotffi.Error(int(rc), text)
    if cmd == b"error-nodata":
        raise hotffi.Error(9)
    if cmd == b"error-badrc":
        raise hotffi.Error("x", b"y")
    if cmd == b"sleep":
        time.sleep(float(arg))
        return b"slept"
    if cmd == b"barrier":
        barrier.wait(timeout=5)
        return b"met"
    if cmd == b"info":
        return json.dumps(info(), sort_keys=True)
    return b"unknown"


def init(cfg, tq):
    hotffi.serve(tq, handle, threads=int(str(cfg) or 1))
    return 0


def init_cfg(cfg, tq):
    seen = json.dumps({"cfg": cfg, "type": type(cfg).__name__,
                       "is_str": isinstance(cfg, str),
                       "has_address": int(cfg) != 0,
                       "tq_is_int": type(tq) is int}, sort_keys=True)
    hotffi.serve(tq, lambda req: seen)
    return 0


def init_forever(cfg, tq):
    # a thread of init's that outlives the stop: libffi_fini() waits for
    # it for ever, which must not hold up anything else
    threading.Thread(target=threading.Event().wait, daemon=True).start()
    hotffi.serve(tq, handle)
    return 0
PY

write_module('t_low', <<'PY');
import json
import threading
import time

import hotffi


def init(cfg, tq):
    seen = {"cancelled": 0, "twice": None}

    def loop():
        while True:
            task = hotffi.poll(tq)
            if task is None:
                return
            cmd, _, arg = task.req.partition(b":")
            if cmd == b"echo":
                task.respond(0, b"low:" + arg)
            elif cmd == b"fail":
                task.respond(int(arg), "failed on purpose")
            elif cmd == b"nodata":
                task.respond()
            elif cmd == b"drop":
                del task
            elif cmd == b"twice":
                task.respond(0, b"first")
                try:
                    task.respond(0, b"second")
                except RuntimeError as e:
                    seen["twice"] = f"{type(e).__name__}: {e}"
            elif cmd == b"wait":
                deadline = time.monotonic() + 5
                while not task.cancelled and time.monotonic() < deadline:
                    time.sleep(0.01)
                if task.cancelled:
                    seen["cancelled"] += 1
                task.respond(0, b"gave up" if task.cancelled else b"no")
            elif cmd == b"seen":
                task.respond(0, json.dumps(seen, sort_keys=True))
            else:
                task.respond(0, repr(task))

    threading.Thread(target=loop, daemon=True).start()
    return 0
PY

write_module('t_init', <<'PY');
import hotffi


def init_raises(cfg, tq):
    raise ValueError("init says no: " + cfg)


def init_none(cfg, tq):
    pass


def init_str(cfg, tq):
    return "0"


def init_bool(cfg, tq):
    return True


def init_rc(cfg, tq):
    return int(str(cfg))


def init_big(cfg, tq):
    return 2 ** 40


def init_poll(cfg, tq):
    hotffi.poll(tq)
    return 0


def init_serve_bad(cfg, tq):
    hotffi.serve(tq, "not a function")
    return 0


def init_serve_zero(cfg, tq):
    hotffi.serve(tq, len, threads=0)
    return 0


not_a_function = 42
PY

# hotffi.shared_dict()'s bad inputs: each a clear Python exception
write_module('t_dict', <<'PY');
import hotffi


def init(cfg, tq):
    def handle(req):
        out = []
        def attempt(what, f):
            try:
                out.append("%s: %r" % (what, f()))
            except Exception as e:
                out.append("%s: %s %s" % (what, type(e).__name__, e))
        attempt("nodict", lambda: hotffi.shared_dict("nope"))
        attempt("name", lambda: hotffi.shared_dict(b"d"))
        d = hotffi.shared_dict("d")
        attempt("repr", lambda: d)
        attempt("type", lambda: d.set("k", [1]))
        attempt("key", lambda: d.get(3))
        attempt("empty", lambda: d.get(b""))
        attempt("emptystr", lambda: d.set("", 1))
        attempt("long", lambda: d.set("k" * 65536, 1))
        attempt("longest", lambda: (d.set("k" * 65535, 1), d.get("k" * 65535))[1])
        attempt("exptime", lambda: d.set("k", 1, -1))
        attempt("nan", lambda: d.set("k", 1, float("nan")))
        attempt("notnum", lambda: (d.set("s", "x"), d.incr("s", 1))[1])
        attempt("absent", lambda: d.incr("absent", 1))
        attempt("init", lambda: d.incr("n", 1.5, init=1, init_ttl=10))
        attempt("bytes", lambda: (d.set("b", bytearray(b"\0\xff")), d.get("b"))[1])
        attempt("big", lambda: len(d.get((d.set("big", "x" * 100000), "big")[1])[0]))
        attempt("full", lambda: d.safe_set("huge", "y" * (2 << 20)))
        return "\n".join(out)
    hotffi.serve(tq, handle)
    return 0
PY

write_module('t_syntax', <<'PY');
def init(cfg, tq)
    return 0
PY

write_module('t_broken', <<'PY');
import no_such_dependency_here


def init(cfg, tq):
    return 0
PY

our $EXAMPLES = "$HotffiTest::REPO/examples/python";

# Shared Lua helpers, made in the master (init_by_lua) for every block:
# the module directories, a load that must work, and one that must fail.
our $HTTP_CONFIG = <<"CONF";
init_by_lua_block {
    package.loaded.pytest = {
        dir = "$PY",
        examples = "$EXAMPLES",
        -- the runtime of a module of dir, e.g. load("/t_serve,init,4")
        load = function(rel)
            return assert(require("resty.hotffi").load("hotffi_python",
                                                       "$PY" .. rel))
        end,
        -- "rc true": the load failed with rc, and its message has needle
        fails = function(cfg, needle)
            local rt, err = require("resty.hotffi").load("hotffi_python",
                                                         cfg)
            if rt then
                return "loaded"
            end
            local rc = err:match("failed: (%-?%d+)") or err
            return rc .. " " .. tostring(err:find(needle, 1, true) ~= nil)
        end,
    }
}
CONF

# Many requests at once, over two workers: each worker has its own
# interpreter, and every call is answered.
{
    my $nginx = HotffiTest::Nginx->new(
        name => 'python under load', workers => 2,
        listen_options => 'reuseport',
        http_config => $HTTP_CONFIG,
        config => <<'CONF');
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local rt = t.load("/t_serve,init,4")
        -- $request_id is made anew each time Lua reads it
        local id = ngx.var.request_id
        local ok, res = rt:call("echo:" .. id)
        if not ok or res ~= id then
            ngx.log(ngx.ERR, "bad answer: ", ok, " ", res)
            return ngx.exit(500)
        end
        ngx.say("ok")
    }
}
CONF
    $nginx->start;
    my $r = concurrent_requests($nginx, 400, 8, '/t');
    is($r->{ok}, 400, '400 concurrent calls over 2 workers all answered')
        or diag(explain($r), $nginx->error_log_text);
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
           'error log is clean');
    $nginx->stop;
}

run_tests();

__DATA__

=== TEST 1: the echo example answers round trips; is_global is not needed
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("hotffi_python",
                                      t.examples .. "/echo,init,2"))
        ngx.say(rt:echo("hello"))
        ngx.say(rt:echo(""))
        -- no request: the handler gets b""
        ngx.say(rt:echo())
        ngx.say(rt:echo(nil))
        local g = assert(hotffi.load("hotffi_python",
                                     t.examples .. "/echo,init,1",
                                     { is_global = true }))
        ngx.say(g:echo("global"))
    }
}
--- request
GET /t
--- response_body
truehello
true
true
true
trueglobal



=== TEST 2: binary requests with NULs, and 1 MiB, come back byte for byte
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        ngx.req.read_body()
        local body = ngx.req.get_body_data()
        local rt = t.load("/t_serve")
        local ok, res = rt:x("echo:" .. body)
        ngx.say(ok, " ", #body, " ", res == body)
        ok, res = rt:x("echo:\0a\0\0b\0")
        ngx.say(ok, " ", #res, " ", res == "\0a\0\0b\0")
    }
}
--- request
POST /t
--- request_body eval
join '', map { chr($_ % 256) } 0 .. 1024 * 1024 - 1
--- response_body
true 1048576 true
true 6 true



=== TEST 3: what a handler returns: bytes, str (UTF-8), bytearray, None
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local rt = t.load("/t_serve")
        ngx.say(rt:x("echo:bytes"))
        ngx.say(rt:x("str:caf"))
        ngx.say(rt:x("bytearray:ba"))
        ngx.say(rt:x("none"))
        ngx.say(rt:x("unknown thing"))
    }
}
--- request
GET /t
--- response_body
truebytes
truecafé
trueba
truenil
trueunknown



=== TEST 4: a handler's exception fails the call with its traceback, which the error log gets too; the runtime goes on
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local rt = t.load("/t_serve")
        local ok, rc, tb = rt:x("boom:bad input")
        ngx.say(ok, " ", rc)
        ngx.say(tb:find("Traceback (most recent call last):", 1, true) == 1)
        ngx.say(tb:find('t_serve.py", line %d+, in handle') ~= nil)
        ngx.say(tb:match("[^\n]+$"))
        ngx.say(rt:x("echo:still serving"))
        ok, rc, tb = rt:x("exit")
        ngx.say(ok, " ", rc, " ", tb:match("[^\n]+$"))
        ok, rc, tb = rt:x("int")
        ngx.say(ok, " ", rc, " ", tb:match("[^\n]+$"))
        ngx.say(rt:x("echo:and still"))
    }
}
--- request
GET /t
--- response_body
false 1
true
true
ValueError: boom: bad input
truestill serving
false 1 SystemExit: 3
false 1 TypeError: an answer must be bytes, str or None, not int
trueand still
--- error_log
qr/\[error\] \d+#\d+: hotffi: runtime "hotffi_python&[^"]*t_serve[^"]*" v1: serve\(\) handler raised: Traceback \(most recent call last\):\n/
qr/t_serve.py", line \d+, in handle\n(.*\n)*ValueError: boom: bad input$/m
qr/\[error\] .*serve\(\) handler raised: (.*\n)*SystemExit: 3$/m
qr/\[error\] .*serve\(\) handler raised: (.*\n)*TypeError: an answer must be bytes, str or None, not int$/m
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 5: hotffi.Error fails a call on purpose with rc and payload, unlogged; an Error with a bad rc is an unmeant failure, logged
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local rt = t.load("/t_serve")
        ngx.say(rt:x("error:22:not valid"))
        ngx.say(rt:x("error-nodata"))
        local ok, rc, tb = rt:x("error-badrc")
        ngx.say(ok, " ", rc, " ", tb:match("[^\n]+$"))
        ngx.say(tb:find("hotffi.Error: ('x', b'y')", 1, true) ~= nil)
    }
}
--- request
GET /t
--- response_body
false22not valid
false9nil
false 1 TypeError: 'str' object cannot be interpreted as an integer
true
--- error_log
qr/\[error\] .*serve\(\) handler raised: (.*\n)*TypeError: 'str' object cannot be interpreted as an integer$/m
--- no_error_log
[alert]
[crit]
[emerg]
not valid



=== TEST 6: serve threads run handlers at the same time, each call waits alone
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local rt = t.load("/t_serve,init,4")
        -- four handlers meet at a barrier: only concurrent threads can
        local threads = {}
        for i = 1, 4 do
            threads[i] = ngx.thread.spawn(function()
                return rt:x("barrier")
            end)
        end
        for i = 1, 4 do
            local _, ok, res = ngx.thread.wait(threads[i])
            ngx.say(ok, " ", res)
        end
        -- and many more light threads than serve threads
        ngx.say(require("hotffi_threads").count_true(50, function(i)
            local ok, res = rt:x("echo:" .. i)
            return ok and res == tostring(i)
        end))
    }
}
--- request
GET /t
--- response_body
true met
true met
true met
true met
50



=== TEST 7: the low-level API: poll, task.req, task.respond, drops and misuse
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local rt = t.load("/t_low")
        ngx.say(rt:x("echo:hi"))
        ngx.say(rt:x("fail:5"))
        ngx.say(rt:x("nodata"))
        ngx.say(rt:x("drop"))
        ngx.say(rt:x("twice"))
        ngx.say(rt:x("hello"))
        ngx.say(rt:x())
        ngx.say(select(2, rt:x("seen")))
    }
}
--- request
GET /t
--- response_body
truelow:hi
false5failed on purpose
truenil
false2the Python runtime dropped the task without answering it
truefirst
true<hotffi.Task 5 bytes>
true<hotffi.Task 0 bytes>
{"cancelled": 0, "twice": "RuntimeError: task already answered"}



=== TEST 8: task.cancelled turns true when the caller gives up
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local cjson = require "cjson.safe"
        local rt = t.load("/t_low")
        ngx.say(rt:x("wait", 0.1))
        local seen
        for _ = 1, 300 do
            seen = cjson.decode(select(2, rt:x("seen")))
            if seen.cancelled == 1 then break end
            ngx.sleep(0.01)
        end
        ngx.say(seen.cancelled)
    }
}
--- request
GET /t
--- response_body
falseniltimeout
1



=== TEST 9: the configuration: module,function,cfg with commas kept, and defaults
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        for _, cfg in ipairs({ '/t_serve,init_cfg,a,b,{"c":1}',
                               '/t_serve,init_cfg,',
                               '/t_serve,init_cfg' }) do
            local rt = t.load(cfg)
            ngx.say(select(2, rt:x("")))
        end
        -- no function: init
        local rt = t.load("/t_serve")
        ngx.say(rt:x("echo:default init"))
        -- an empty function: init too
        rt = t.load("/t_serve,,2")
        ngx.say(rt:x("echo:empty function"))
    }
}
--- request
GET /t
--- response_body
{"cfg": "a,b,{\"c\":1}", "has_address": true, "is_str": true, "tq_is_int": true, "type": "Config"}
{"cfg": "", "has_address": true, "is_str": true, "tq_is_int": true, "type": "Config"}
{"cfg": "", "has_address": false, "is_str": true, "tq_is_int": true, "type": "Config"}
truedefault init
trueempty function



=== TEST 10: modules on PYTHONPATH load without a directory; dotted names work
--- main_config eval
"env PYTHONPATH=$::PY;"
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("hotffi_python", "t_serve,init"))
        ngx.say(rt:x("echo:from PYTHONPATH"))
        -- a stdlib package's submodule is found too (its init is missing)
        ngx.say(require("pytest").fails("json.decoder,nope",
                "AttributeError: module 'json.decoder' has no attribute 'nope'"))
    }
}
--- request
GET /t
--- response_body
truefrom PYTHONPATH
3 true



=== TEST 11: a missing module, function, or a broken module: nil and the traceback
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local d = t.dir
        ngx.say(t.fails(d .. "/t_nope,init",
                        "ModuleNotFoundError: No module named 't_nope'"))
        ngx.say(t.fails(d .. "/t_nope?,init",
                        "ModuleNotFoundError: No module named 't_nope'"))
        ngx.say(t.fails(d .. "/t_init,nope",
                        "AttributeError: module 't_init' has no attribute 'nope'"))
        ngx.say(t.fails(d .. "/t_init,not_a_function",
                        "TypeError: t_init.not_a_function is int, not a function"))
        ngx.say(t.fails(d .. "/t_syntax,init", "SyntaxError: expected ':'"))
        ngx.say(t.fails(d .. "/t_syntax?,init", 't_syntax.py", line 1'))
        ngx.say(t.fails(d .. "/t_broken,init",
                        "ModuleNotFoundError: No module named 'no_such_dependency_here'"))
        ngx.say(t.fails(d .. "/t_broken?,init", 't_broken.py", line 1, in <module>'))
        -- a failed load is not cached, and good ones still load
        ngx.say(select(2, assert(require("resty.hotffi").load("hotffi_python",
                d .. "/t_serve")):x("echo:fine")))
    }
}
--- request
GET /t
--- response_body
3 true
3 true
3 true
3 true
3 true
3 true
3 true
3 true
fine
--- error_log
hotffi_python: runtime "
ModuleNotFoundError: No module named 't_nope'
SyntaxError: expected ':'
ModuleNotFoundError: No module named 'no_such_dependency_here'



=== TEST 12: init that raises, returns no int, or a non-zero rc fails the load
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local m = t.dir .. "/t_init,"
        ngx.say(t.fails(m .. "init_raises,abc", "ValueError: init says no: abc"))
        ngx.say(t.fails(m .. "init_raises,abc", 'in init_raises\n'))
        ngx.say(t.fails(m .. "init_none",
                        "TypeError: t_init.init_none() returned NoneType, expected an int (0 = ok)"))
        ngx.say(t.fails(m .. "init_str", "returned str, expected an int"))
        ngx.say(t.fails(m .. "init_bool", "returned bool, expected an int"))
        ngx.say(t.fails(m .. "init_rc,7", "t_init.init_rc() returned 7"))
        ngx.say(t.fails(m .. "init_rc,-3", "t_init.init_rc() returned -3"))
        ngx.say(t.fails(m .. "init_big",
                        "OverflowError: t_init.init_big() returned an int out of C int range"))
        ngx.say(t.fails(m .. "init_poll",
                        "RuntimeError: hotffi.poll() inside init would wait for init to return"))
        ngx.say(t.fails(m .. "init_serve_bad",
                        "TypeError: hotffi.serve(): handler must be callable, not str"))
        ngx.say(t.fails(m .. "init_serve_zero",
                        "ValueError: hotffi.serve(): threads must be from 1 to 256, not 0"))
    }
}
--- request
GET /t
--- response_body
4 true
4 true
4 true
4 true
4 true
7 true
-3 true
4 true
4 true
4 true
4 true
--- error_log
ValueError: init says no: abc
t_init.init_rc() returned 7



=== TEST 13: configurations the loader cannot parse
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        ngx.say(t.fails(nil, "no configuration"))
        ngx.say(t.fails("", "bad module name"))
        ngx.say(t.fails("/tmp/?,init", "bad module name"))
        ngx.say(t.fails(".relative,init", "bad module name"))
        ngx.say(t.fails("trailing.,init", "bad module name"))
    }
}
--- request
GET /t
--- response_body
1 true
1 true
1 true
1 true
1 true



=== TEST 14: runtimes of several modules and configurations share one interpreter
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local cjson = require "cjson.safe"
        local hotffi = require "resty.hotffi"
        local a = t.load("/t_serve,init,1")
        local b = t.load("/t_serve,init,2")
        local c = t.load("/t_low")
        local e = assert(hotffi.load("hotffi_python", t.examples .. "/echo"))
        ngx.say(a ~= b, " ", select(2, c:x("echo:c")), " ", select(2, e:x("e")))
        local ia = cjson.decode(select(2, a:x("info")))
        local ib = cjson.decode(select(2, b:x("info")))
        ngx.say(ia.interpreter == ib.interpreter, " ",
                ia.pid == ngx.worker.pid())
    }
}
--- request
GET /t
--- response_body
true low:c e
true true



=== TEST 15: inside nginx: Debian's CPython, its stdlib, nginx's signals blocked
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local rt = t.load("/t_serve")
        local info = select(2, rt:x("info"))
        ngx.say((info:gsub('"interpreter": %d+, "pid": %d+, ', "")))
    }
}
--- request
GET /t
--- response_body
{"executable": "/usr/bin/python3", "prefix": "/usr", "signals_blocked": true, "stdlib": true}



=== TEST 16: unload answers queued calls, then libffi_fini joins the threads
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local hotffi = require "resty.hotffi"
        -- stats() is nil until the worker's first load
        local base = (hotffi.stats() or { runtimes = 0 }).runtimes
        for _, m in ipairs({ "/t_serve,init,1", "/t_low" }) do
            local rt = t.load(m)
            local threads = {}
            for i = 1, 3 do
                threads[i] = ngx.thread.spawn(function()
                    return rt:x("echo:" .. i)
                end)
            end
            rt:__unload()
            local answers = {}
            for i = 1, 3 do
                local _, ok, res = ngx.thread.wait(threads[i])
                answers[i] = tostring(ok) .. res
            end
            ngx.say(table.concat(answers, " "))
            ngx.say(rt:x("echo:late"))
            -- the runtime's memory goes once libffi_fini() returned and
            -- Lua let go of it
            rt = nil
            local gone = false
            for _ = 1, 500 do
                collectgarbage()
                if hotffi.stats().runtimes == base then
                    gone = true
                    break
                end
                ngx.sleep(0.01)
            end
            ngx.say(gone)
        end
    }
}
--- request
GET /t
--- response_body_like
^true1 true2 true3
falsenilruntime "hotffi_python&[^"]+/t_serve,init,1" is unloaded
true
truelow:1 truelow:2 truelow:3
falsenilruntime "hotffi_python&[^"]+/t_low" is unloaded
true
$



=== TEST 17: a thread of init's that never ends holds nothing up
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local rt = t.load("/t_serve,init_forever")
        ngx.say(rt:x("echo:before"))
        rt:__unload()
        ngx.sleep(0.1)
        local other = t.load("/t_serve,init,3")
        ngx.say(other:x("echo:others serve"))
    }
}
--- request
GET /t
--- response_body
truebefore
trueothers serve



=== TEST 18: the validate example: a schema from the configuration
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local cjson = require "cjson.safe"
        local hotffi = require "resty.hotffi"
        local schema = [[{"type": "object", "required": ["name"],
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string", "minLength": 1, "pattern": "^[a-z]+$"},
                "age": {"type": "integer", "minimum": 0},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]},
                         "maxItems": 2}}}]]
        local rt = assert(hotffi.load("hotffi_python",
                                      t.examples .. "/validate,init," .. schema))
        ngx.say(rt:validate('{ "name": "ann",  "age": 7 }'))
        local ok, rc, err = rt:validate('{"age": -1, "x": 1, "tags": ["a", "c", "b"]}')
        ngx.say(ok, " ", rc)
        for _, p in ipairs(cjson.decode(err)) do
            ngx.say(p.path, ": ", p.error)
        end
        ok, rc, err = rt:validate('{"name": 5}')
        ngx.say(cjson.decode(err)[1].error)
        ok, rc, err = rt:validate('not json')
        ngx.say(rc, " ", cjson.decode(err)[1].error:match("^not JSON"))
        -- a schema with a typo is refused at load
        ngx.say(t.fails(t.examples .. '/validate,init,{"typ": "object"}',
                        "ValueError: schema: unsupported keywords ['typ']"))
    }
}
--- request
GET /t
--- response_body
true{"name":"ann","age":7}
false 22
$: 'name' is required
$.age: -1 is less than the minimum 0
$.x: is not an allowed property
$.tags: more than 2 items
$.tags[1]: "c" is not one of ["a", "b"]
5 is not of type string
22 not JSON
4 true



=== TEST 19: a relative directory is the worker's current one, made absolute
--- main_config eval
"working_directory $HotffiTest::REPO/examples;"
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("hotffi_python", "python/echo?,init"))
        ngx.say(rt:echo("relative"))
        local sys_path = assert(hotffi.load("hotffi_python",
                                            "python/validate,init,{}"))
        ngx.say(sys_path:v("{}"))
    }
}
--- request
GET /t
--- response_body
truerelative
true{}



=== TEST 20: loaded in init_worker_by_lua, used by requests
--- http_config eval
$::HTTP_CONFIG . <<'CONF';
init_worker_by_lua_block {
    local t = require "pytest"
    assert(require("resty.hotffi").load("hotffi_python",
                                        t.examples .. "/echo,init,2"))
}
CONF
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local hotffi = require "resty.hotffi"
        local before = hotffi.stats().runtimes
        local rt = hotffi.load("hotffi_python", t.examples .. "/echo,init,2")
        ngx.say(before, " ", hotffi.stats().runtimes, " ", select(2, rt:x("warm")))
    }
}
--- request
GET /t
--- response_body
1 1 warm



=== TEST 21: hotffi.shared_dict(): bad names, keys, values and limits raise clear exceptions
--- http_config eval
$::HTTP_CONFIG . "lua_shared_dict d 1m;\n"
--- config
location = /t {
    content_by_lua_block {
        local t = require "pytest"
        local ok, res = t.load("/t_dict,init"):q()
        ngx.say(ok, "\n", res)
    }
}
--- request
GET /t
--- response_body
true
nodict: KeyError "no lua_shared_dict named 'nope'"
name: TypeError hotffi.shared_dict(): name must be str, not bytes
repr: <hotffi.SharedDict 'd'>
type: TypeError a shared dict holds None, bool, int, float, str or bytes, not list
key: TypeError shared dict key must be str or bytes, not int
empty: ValueError shared dict key is empty
emptystr: ValueError shared dict key is empty
long: ValueError shared dict key is longer than 65535 bytes
longest: (1.0, 0)
exptime: ValueError shared dict set: exptime must be 0 or more seconds
nan: ValueError shared dict set: exptime must be 0 or more seconds
notnum: RuntimeError shared dict incr: not a number
absent: KeyError 'absent'
init: 2.5
bytes: (b'\x00\xff', 0)
big: 100000
full: RuntimeError shared dict safe_set: no memory
--- no_error_log
[error]
[alert]
