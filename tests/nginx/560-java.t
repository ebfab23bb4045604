# The Java loader (libhotffi_java.so): calls into a real JVM through the
# SDK's serve threads, binary payloads (1 and 16 MiB, copied or lent in
# place), lent requests revoked by the answer, exceptions as
# errors, cancellation, load errors, in-place reload with state, and
# unload ending the runtime's Java threads.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;

skip_all_reason();

sub skip_all_reason {
    if ($ENV{HOTFFI_TEST_VALGRIND}) {
        Test::More::plan(skip_all => 'the JVM is not run under valgrind '
                         . '(its JIT and signals defeat it)');
    }
    BAIL_OUT("build first: make ($HotffiTest::REPO/build/lib/"
             . "libhotffi_java.so does not exist)")
        unless -e "$HotffiTest::REPO/build/lib/libhotffi_java.so";
}

our $CP = "$HotffiTest::REPO/build/java";

our $HTTP_CONFIG = <<"CONF";
init_by_lua_block {
    package.loaded.jtest = {
        ctl = function(cfg)
            return assert(require("resty.hotffi").load("hotffi_java",
                "classpath=$CP/tests,ctl.Ctl,init," .. (cfg or "")))
        end,
        load = function(cfg)
            return require("resty.hotffi").load("hotffi_java", cfg)
        end,
        examples = "classpath=$CP/examples,",
        tests = "classpath=$CP/tests,",
    }
}
CONF

# Many calls at once over two workers, each with its own JVM.
{
    my $nginx = HotffiTest::Nginx->new(
        name => 'java under load', workers => 2,
        listen_options => 'reuseport',
        http_config => $HTTP_CONFIG,
        config => <<'CONF');
location = /t {
    content_by_lua_block {
        local rt = require("jtest").ctl("4")
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
    my $r = concurrent_requests($nginx, 200, 8, '/t');
    is($r->{ok}, 200, '200 concurrent calls over 2 workers all answered')
        or diag(explain($r), $nginx->error_log_text);
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
           'error log is clean');
    $nginx->stop;
}

run_tests();

__DATA__

=== TEST 1: the echo example answers; no request is an empty array
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jtest"
        local rt = assert(t.load(t.examples .. "demo.Echo,init,2"))
        ngx.say(rt:echo("hello"))
        ngx.say(rt:echo(""))
        ngx.say(rt:echo())
    }
}
--- request
GET /t
--- response_body
truehello
true
true



=== TEST 2: binary requests with NULs and 1 MiB come back byte for byte; the request in place as a direct, read-only buffer
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        ngx.req.read_body()
        local body = ngx.req.get_body_data()
        local rt = require("jtest").ctl("2")
        local ok, res = rt:x("echo:" .. body)
        ngx.say(ok, " ", #body, " ", res == body)
        ok, res = rt:x("echo:\0a\0\0b\0")
        ngx.say(ok, " ", #res, " ", res == "\0a\0\0b\0")
        ngx.say(rt:x("buffer:in place"))
        ngx.say(rt:x("null"))
        ngx.say(rt:x("empty"))
        ngx.say(rt:x("fail:22:not valid"))
        ngx.say(rt:x("what"))
    }
}
--- request
POST /t
--- request_body eval
join '', map { chr($_ % 256) } 0 .. 1024 * 1024 - 1
--- response_body
true 1048576 true
true 6 true
truetrue true in place
truenil
true
false22not valid
false3unknown command



=== TEST 3: an exception fails the call with rc 1 and the stack trace, logged; the thread goes on serving
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local rt = require("jtest").ctl("1")
        for i = 1, 3 do
            local ok, rc, tr = rt:x("throw:bad " .. i)
            ngx.say(ok, " ", rc, " ", tr:match("^[^\n]+"))
            ngx.say(tr:find("\tat ctl.Ctl.handle(Ctl.java:", 1, true) ~= nil)
        end
        ngx.say(rt:x("echo:still serving"))
        -- HotffiError: a failure on purpose, with its rc and data, unlogged
        ngx.say(rt:x("herror:42:on purpose"))
    }
}
--- request
GET /t
--- response_body
false 1 java.lang.IllegalStateException: thrown: bad 1
true
false 1 java.lang.IllegalStateException: thrown: bad 2
true
false 1 java.lang.IllegalStateException: thrown: bad 3
true
truestill serving
false42on purpose
--- error_log
qr/\[error\] .*hotffi: runtime "hotffi_java&[^"]*ctl.Ctl[^"]*" v1: serve\(\) handler threw: java.lang.IllegalStateException: thrown: bad 1/
--- no_error_log
[alert]
[crit]
on purpose



=== TEST 4: a timed-out call is cancelled on the Java side, which sees it
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local rt = require("jtest").ctl("2")
        local ok, rc, err = rt:x("sleep:600000", 0.05)
        ngx.say(ok, " ", rc, " ", err)
        -- the handler sees cancelled() and answers at once
        local n
        for _ = 1, 2000 do
            n = select(2, rt:x("cancelled"))
            if n == "1" then break end
            ngx.sleep(0.01)
        end
        ngx.say("seen ", n)
    }
}
--- request
GET /t
--- response_body
false nil timeout
seen 1



=== TEST 5: load errors: bad cfg, missing class, missing method, init rc, init throwing
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jtest"
        local function try(cfg)
            local rt, err = t.load(cfg)
            ngx.say(rt, " ", (err:gsub("\n.*", "")))
        end
        try(nil)
        try(t.examples .. "demo.No,init")
        try(t.examples .. "demo.Echo,nope")
        try(t.examples .. "bad/name,init")
        try(t.examples .. "demo.Echo,init,notanumber")
        try(t.tests .. "ctl.Ctl,init,fail-init")
    }
}
--- request
GET /t
--- response_body_like
^nil libffi_init\(\) of runtime "hotffi_java" failed: 1: no configuration: .*
nil libffi_init\(\) of runtime "[^"]*" failed: 3: cannot load the class: java.lang.ClassNotFoundException: demo.No
nil libffi_init\(\) of runtime "[^"]*" failed: 3: init threw: java.lang.NoSuchMethodException: demo.Echo.nope\(java.lang.String,long\)
nil libffi_init\(\) of runtime "[^"]*" failed: 1: bad class name in "bad/name,init": .*
nil libffi_init\(\) of runtime "[^"]*" failed: 4: init threw: java.lang.NumberFormatException: For input string: "notanumber"
nil libffi_init\(\) of runtime "[^"]*" failed: 7: ctl.Ctl,init returned 7
$



=== TEST 6: unload ends every Java thread of the runtime
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jtest"
        local probe = t.ctl("1")
        ngx.say(probe:x("threads"))
        local rt = assert(t.load(t.examples .. "demo.Echo,init,5"))
        ngx.say(rt:x("hi"))
        ngx.say(probe:x("threads"))
        rt:__unload()
        local n
        for _ = 1, 2000 do
            n = select(2, probe:x("threads"))
            if n == "1" then break end
            ngx.sleep(0.01)
        end
        ngx.say("after unload ", n)
    }
}
--- request
GET /t
--- response_body
true1
truehi
true6
after unload 1



=== TEST 7: in-place reload hands the count to the next version; "?" re-reads the class
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jtest"
        local rt = assert(t.load(t.examples .. "demo.Counter?,init"))
        ngx.say(select(2, rt:hit()), " ", select(2, rt:hit()))
        for i = 1, 3 do
            local res, err = rt:__reload{}
            ngx.say("reload ", res and res.ok, " ", err)
            ngx.say(select(2, rt:hit()))
        end
        -- a new version that fails to start: the old one serves again,
        -- with the state it handed over
        local res, err = rt:__reload{ cfg = t.examples .. "demo.Echo,init,x" }
        ngx.say(res, " ", err:match("serves again") ~= nil)
        ngx.say(select(2, rt:hit()))
    }
}
--- request
GET /t
--- response_body
1 2
reload true nil
3
reload true nil
4
reload true nil
5
nil true
6
--- no_error_log
[alert]
[crit]



=== TEST 8: a JVM that cannot start fails the load with why, and the worker lives on
--- env
HOTFFI_JAVA_OPTS=-Xmxbad
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jtest"
        for i = 1, 2 do
            local rt, err = t.load(t.examples .. "demo.Echo,init")
            ngx.say(rt, " ", err:match("failed: %d+: [^(]*"))
        end
        ngx.say(ngx.worker.pid() == tonumber(ngx.var.pid))
    }
}
--- request
GET /t
--- response_body_like
^nil failed: 2: \S.*
nil failed: 2: \S.*
true
$
--- no_error_log
[alert]
[crit]



=== TEST 9: an unclosed quote in HOTFFI_JAVA_OPTS fails the load
--- env
HOTFFI_JAVA_OPTS=-Dx='a b
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jtest"
        local rt, err = t.load(t.examples .. "demo.Echo,init")
        ngx.say(rt, " ", err:match("failed: .*"))
    }
}
--- request
GET /t
--- response_body
nil failed: 2: HOTFFI_JAVA_OPTS: unclosed ' in "-Dx='a b"



=== TEST 10: Lua written for lua-resty-ffi: ngx.load_ffi("ffi_java", "Class?,init,"), CLASSPATH from the environment, __unload
--- main_config eval
"env CLASSPATH=$::CP/examples;"
--- config
location = /t {
    content_by_lua_block {
        require "resty_ffi"
        local demo = ngx.load_ffi("ffi_java", "demo.Echo?,init,",
                                  { is_global = true })
        ngx.say(demo:echo("hello"))
        ngx.say(ngx.load_ffi("ffi_java", "demo.Echo?,init,",
                             { is_global = true }) == demo)
        ngx.say(demo:__unload())
        ngx.say(demo:echo("late"))
        local again = ngx.load_ffi("ffi_java", "demo.Echo?,init,",
                                   { is_global = true })
        ngx.say(again ~= demo, " ", select(2, again:echo("again")))
        -- the same loader, one JVM, under either name
        local own = ngx.load_ffi("hotffi_java", "demo.Echo,init,1")
        ngx.say(select(2, own:echo("own")))
    }
}
--- request
GET /t
--- response_body
truehello
true
true
falsetask queue is finished
true again
own



=== TEST 11: hotffi's threads that called Java (init, reaper) are detached when they end: 30 loads and unloads leave none attached
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jtest"
        local probe = t.ctl("1")
        for i = 1, 30 do
            local rt = assert(t.load(t.examples .. "demo.Echo?,init," .. i % 3 + 1))
            assert(rt:x("x"))
            rt:__unload()
        end
        local n
        for _ = 1, 3000 do
            n = select(2, probe:x("attached"))
            if n == "0" then break end
            ngx.sleep(0.01)
        end
        ngx.say("attached ", n)
    }
}
--- request
GET /t
--- response_body
attached 0



=== TEST 12: System.exit() and Runtime.halt() in a runtime fail the call or the load, never the worker
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jtest"
        local pid = ngx.worker.pid()
        local rt = t.ctl("1")
        for _, req in ipairs{ "exit:3", "halt:4", "setsm" } do
            local ok, rc, tr = rt:x(req)
            ngx.say(ok, " ", rc, " ", tr:match("^[^\n]+"))
        end
        ngx.say(rt:x("echo:still serving"))
        local rt2, err = t.load(t.tests .. "ctl.Ctl,init,exit-init")
        ngx.say(rt2, " ", (err:gsub("\n.*", "")))
        ngx.say(rt:x("echo:and serving"))
        ngx.say(ngx.worker.pid() == pid)
    }
}
--- request
GET /t
--- response_body_like
^false 1 java.lang.SecurityException: System.exit/Runtime.halt\(3\) refused: a runtime cannot end the nginx worker
false 1 java.lang.SecurityException: System.exit/Runtime.halt\(4\) refused: a runtime cannot end the nginx worker
false 1 java.lang.SecurityException: hotffi's exit guard is the JVM's security manager and stays so
truestill serving
nil libffi_init\(\) of runtime "[^"]*" failed: \d+: init threw: java.lang.SecurityException: System.exit/Runtime.halt\(9\) refused: a runtime cannot end the nginx worker
trueand serving
true
$
--- no_error_log
[alert]
[crit]
maintainers of io.hotffi



=== TEST 13: the echo lends each request in place (serveBuffers) or copies it (",copy"): 1 MiB and 16 MiB of every byte value come back byte for byte, and so does no request
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jtest"
        local all = {}
        for i = 0, 255 do all[#all + 1] = string.char(i) end
        all = table.concat(all)
        for _, cfg in ipairs{ "1", "1,copy" } do
            local rt = assert(t.load(t.examples .. "demo.Echo,init," .. cfg))
            for _, mib in ipairs{ 1, 16 } do
                -- a head of its own, so that no answer equals another
                local req = cfg .. mib .. all:rep(mib * 4096)
                local ok, res = rt:echo(req, 30)
                ngx.say(cfg, " ", mib, " MiB: ", ok, " ", #res == #req,
                        " ", res == req)
            end
            ngx.say(rt:echo(""))
            ngx.say(rt:echo())
        end
    }
}
--- request
GET /t
--- timeout: 60
--- response_body
1 1 MiB: true true true
1 16 MiB: true true true
true
true
1,copy 1 MiB: true true true
1,copy 16 MiB: true true true
true
true



=== TEST 14: a lent request: answered from a slice of itself, and revoked by the answer (a buffer kept past it reads nothing)
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local rt = require("jtest").ctl("1")
        ngx.say(rt:x("slice:the tail"))
        ngx.say(rt:x("keep:abc"))
        ngx.say(rt:x("kept"))
        ngx.say(rt:x("echo:still serving"))
    }
}
--- request
GET /t
--- response_body
truethe tail
truekept 8
truerevoked 0 0
truestill serving



=== TEST 15: 64 callers at once, each with 100 KiB of its own, through a lending echo of 4 threads: every answer is its own request
--- http_config eval
$::HTTP_CONFIG
--- config
location = /t {
    content_by_lua_block {
        local t = require "jtest"
        local rt = assert(t.load(t.examples .. "demo.Echo,init,4"))
        local base = string.rep("0123456789abcdef", 6400)
        local function caller(i)
            local bad = 0
            for j = 1, 20 do
                local req = i .. ":" .. j .. ":" .. base
                local ok, res = rt:echo(req)
                if not ok or res ~= req then
                    bad = bad + 1
                end
            end
            return bad
        end
        local threads = {}
        for i = 1, 64 do
            threads[i] = ngx.thread.spawn(caller, i)
        end
        local bad = 0
        for i = 1, 64 do
            local ok, n = ngx.thread.wait(threads[i])
            bad = bad + (ok and n or 20)
        end
        ngx.say("wrong answers: ", bad)
    }
}
--- request
GET /t
--- timeout: 60
--- response_body
wrong answers: 0
