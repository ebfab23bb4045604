# Isolated runtimes (docs/isolation.md): the runtime's library in a helper
# process.  A runtime built to misbehave (tests/runtimes/misbehave.c)
# crashes, exits, hangs or leaks there: only its own calls fail, the worker
# keeps its pid and serves on, and the runtime serves again after the
# restart.  The unmodified example runtimes work isolated too.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;

run_tests();

__DATA__

=== TEST 1: an isolated runtime answers from a process of its own; a plain load of the same runtime is another one
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("misbehave", nil, { isolate = true }))
        local ok, pid = rt:q("pid")
        ngx.say(ok, " ", tonumber(pid) ~= ngx.worker.pid())
        ngx.say(rt:echo("hello"))
        ngx.say(rt:echo(""))
        ngx.say(rt:echo())
        local big = string.rep("0123456789", 1024)
        ngx.say(select(2, rt:echo(big)) == big)
        local again = hotffi.load("misbehave", nil, { isolate = true })
        ngx.say(again == rt)
        ngx.say(hotffi.load("misbehave", nil, { isolate = false }))
    }
}
--- request
GET /t
--- response_body
true true
truehello
true
truenil
true
true
nilruntime "misbehave" is loaded already, isolated



=== TEST 2: the unmodified C, Go and Rust echo runtimes and the Python loader, isolated
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local repo = package.path:match("([^;]+)/lua/%?%.lua")
        local py = repo .. "/examples/python/echo,init"
        for _, lib in ipairs({ "echo", "go_echo", "rust_echo",
                               "hotffi_python" }) do
            local cfg = lib == "hotffi_python" and py or nil
            local rt, err = hotffi.load(lib, cfg, { isolate = true })
            if not rt then
                ngx.say(lib, ": ", err)
            else
                local ok, res = rt:echo(lib .. " isolated")
                ngx.say(ok, " ", res)
                rt:__unload()
            end
        end
    }
}
--- request
GET /t
--- response_body
true echo isolated
true go_echo isolated
true rust_echo isolated
true hotffi_python isolated



=== TEST 3: a segfault on a request fails that call only; the worker lives; the runtime serves again
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("misbehave", nil, { isolate = true }))
        local plain = assert(hotffi.load("echo"))
        local worker = ngx.worker.pid()
        local _, before = rt:q("pid")
        ngx.say(rt:q("segv"))
        local ok, after = rt:q("pid")
        ngx.say(ok, " ", after ~= before, " ", ngx.worker.pid() == worker)
        ngx.say(plain:echo("in process, untouched"))
    }
}
--- request
GET /t
--- response_body
false-102runtime "misbehave" process died: signal 11; restarting
true true true
truein process, untouched
--- error_log
runtime "misbehave" process died: signal 11; restarting
--- no_error_log
[alert]
[crit]



=== TEST 4: exit() on a request, and a leak past the memory limit
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("misbehave", nil,
                                      { isolate = { memory = 256 * 2^20 } }))
        ngx.say(rt:q("exit"))
        ngx.say(rt:q("leak"))
        ngx.say(rt:q("still here"))
    }
}
--- request
GET /t
--- response_body
false-102runtime "misbehave" process died: exit code 7; restarting
false-102runtime "misbehave" process died: signal 6; restarting
truestill here
--- error_log
process died: exit code 7; restarting
process died: signal 6; restarting
--- no_error_log
[alert]
[crit]



=== TEST 5: a helper stuck on a call is killed after stuck_timeout, and restarted
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("misbehave", nil,
                                      { isolate = { stuck_timeout = 0.5 },
                                        timeout = 30 }))
        local _, before = rt:q("pid")
        local t0 = ngx.now()
        local ok, rc, err = rt:q("hang")
        ngx.update_time()
        ngx.say(ok, " ", rc, " ", err)
        ngx.say("before the call's own timeout: ", ngx.now() - t0 < 20)
        local ok2, after = rt:q("pid")
        ngx.say(ok2, " ", after ~= before)
    }
}
--- request
GET /t
--- response_body_like
^false -102 runtime "misbehave" process died: stuck: 1 call\(s\) waiting, none taken or answered for 500 ms, killed; restarting
before the call's own timeout: true
true true
$
--- error_log
runtime "misbehave" process
--- no_error_log
[alert]
[crit]



=== TEST 6: a call never answered times out alone; the helper serves on, unrestarted
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("misbehave", nil,
                                      { isolate = { stuck_timeout = 1 },
                                        timeout = 0.3 }))
        local _, before = rt:q("pid")
        ngx.say(rt:q("noanswer"))
        ngx.sleep(1.5)
        local ok, again = rt:q("pid")
        ngx.say(ok, " ", again == before)
    }
}
--- request
GET /t
--- response_body_like
^false\s*-?\d*\s*.*timeout.*
true true
$



=== TEST 7: a segfault in libffi_init() fails the load with why; a crash loop on calls marks the runtime failed; a reload brings it back
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        ngx.say(hotffi.load("misbehave", "segv", { isolate = true }))
        local rt = assert(hotffi.load("misbehave", nil,
                                      { isolate = { restarts = 3 } }))
        local last
        for _ = 1, 10 do
            last = select(3, rt:q("segv"))
            if last:find("failed", 1, true) then
                break
            end
        end
        ngx.say(last)
        -- failed: the next call fails at once
        ngx.say(select(3, rt:q("x")) == last)
        local res, err = rt:__reload{ cfg = "fine" }
        ngx.say(res and res.ok, " ", err)
        ngx.say(rt:q("serving again"))
    }
}
--- request
GET /t
--- response_body
nillibffi_init() of runtime "misbehave&segv" failed: 5: its process ended in libffi_init(): signal 11
runtime "misbehave" failed: its process died 3 times within 30000 ms (last: signal 11); not restarted
true
true nil
trueserving again
--- error_log
runtime "misbehave" failed: its process died 3 times
--- no_error_log
[alert]
[crit]



=== TEST 8: a hang in libffi_init() is killed at init_timeout; exit() in init and a failed init fail the load with why; a reload to one rolls back
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        ngx.say(hotffi.load("misbehave", "hang",
                            { isolate = true, init_timeout = 0.5 }))
        ngx.say(hotffi.load("misbehave", "exit", { isolate = true }))
        ngx.say(hotffi.load("misbehave", "fail", { isolate = true }))
        local rt = assert(hotffi.load("misbehave", "fine",
                                      { isolate = true }))
        local _, before = rt:q("pid")
        local res, err = rt:__reload{ cfg = "fail" }
        ngx.say(res and res.ok, " ", err)
        local ok, after = rt:q("pid")
        ngx.say(ok, " ", after ~= before)
    }
}
--- request
GET /t
--- response_body_like
^nil[^\n]*still running after[^\n]*
nillibffi_init\(\) of runtime "misbehave&exit" failed: 5: its process ended in libffi_init\(\): exit code 3
nillibffi_init\(\) of runtime "misbehave&fail" failed: 5: libffi_init\(\) failed: rc 1: misbehave: told to fail
nil libffi_init\(\) of runtime "misbehave&fail" failed: 5: libffi_init\(\) failed: rc 1: misbehave: told to fail; version 1 serves again
true true
$
--- no_error_log
[alert]
[crit]



=== TEST 9: bad isolate options are refused; a payload over the ring fails with the reason; the helper option overrides where the helper is
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        for _, bad in ipairs({ "yes", { memory = -1 }, { bogus = 1 },
                               { helper = 3 } }) do
            local ok, err = pcall(hotffi.load, "echo", "bad",
                                  { isolate = bad })
            ngx.say(ok, " ", err)
        end
        local rt = assert(hotffi.load("echo", nil,
                                      { isolate = { ring = 4096 } }))
        ngx.say(rt:echo(string.rep("x", 4000)) )
        ngx.say(rt:echo(string.rep("x", 5000)))
        local r2, err = hotffi.load("echo", "x",
                                    { isolate = { ring = 1000 } })
        ngx.say(r2, " ", err)
        local r3, err3 = hotffi.load("echo", "y", { isolate = {
                                        helper = "/nonexistent/helper" } })
        ngx.say(r3, " ", err3)
    }
}
--- request
GET /t
--- response_body_like
^false [^\n]*bad option isolate: boolean or table expected, got string
false [^\n]*bad option isolate.memory: number from 0 expected, got -1
false [^\n]*bad option isolate.bogus: unknown
false [^\n]*bad option isolate.helper: non-empty string expected
truex{4000}
false-102runtime "echo": request of 5000 bytes exceeds its isolation ring \(4072 bytes; see the ring option\)
nil [^\n]*isolation option ring: a power of two from 4096 to 2\^31 expected
nil [^\n]*access\("/nonexistent/helper"\) failed: No such file or directory
$



=== TEST 10: an unload ends the helper process
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("misbehave", nil, { isolate = true }))
        local _, pid = rt:q("pid")
        local function alive()
            local f = io.open("/proc/" .. pid .. "/stat")
            if not f then
                return false
            end
            local stat = f:read("*a")
            f:close()
            -- a zombie is gone too, but not reaped: count it as alive
            return true, stat:match("^%d+ %b() (%a)")
        end
        ngx.say(alive())
        rt:__unload()
        local gone
        for _ = 1, 100 do
            if not alive() then
                gone = true
                break
            end
            ngx.sleep(0.05)
        end
        ngx.say(gone)
    }
}
--- request
GET /t
--- response_body_like
^true[SR]
true
$



=== TEST 11: the open-files and CPU-time limits apply to the helper
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("misbehave", nil,
                                      { isolate = { files = 16, cpu = 1,
                                                    stuck_timeout = 60 } }))
        local ok, n = rt:q("files")
        ngx.say(ok, " ", tonumber(n) > 0 and tonumber(n) < 16)
        ngx.say(rt:q("spin"))
        ngx.say(rt:q("serving again"))
    }
}
--- request
GET /t
--- timeout: 30
--- response_body_like
^true true
false-102runtime "misbehave" process died: signal (24|9); restarting
trueserving again
$
--- error_log
runtime "misbehave" process died
--- no_error_log
[alert]
[crit]



=== TEST 12: lua-resty-ffi's ngx.load_ffi takes the option: its shapes, isolated
--- config
location = /t {
    content_by_lua_block {
        require "resty_ffi"
        local rt = assert(ngx.load_ffi("misbehave", nil, { isolate = true }))
        local _, before = rt:q("pid")
        ngx.say(tonumber(before) ~= ngx.worker.pid())
        ngx.say(rt:echo("hello"))
        ngx.say(rt:q("segv"))
        local ok, after = rt:q("pid")
        ngx.say(ok, " ", after ~= before)
        ngx.say(pcall(ngx.load_ffi, "echo", "x", { isolate = { bogus = 1 } }))
        ngx.say(rt.finished)
        rt:__unload()
        ngx.say(rt.finished, " ", rt:echo("gone"))
    }
}
--- request
GET /t
--- response_body
true
truehello
false-102runtime "misbehave" process died: signal 11; restarting
true true
falsebad option isolate.bogus: unknown
false
true falsetask queue is finished
--- error_log
process died: signal 11; restarting
--- no_error_log
[alert]
[crit]



=== TEST 13: a caller that gives up is seen by the helper's hotffi_task_cancelled()
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("ctl", "threads=2",
                                      { isolate = true, timeout = 0.2 }))
        -- the call is given up long before the runtime looks (after 3 s)
        ngx.say(rt:q("sleep:3000"))
        local seen
        for _ = 1, 200 do
            seen = select(2, rt:q("cancelled"))
            if seen == "1" then break end
            ngx.sleep(0.05)
        end
        ngx.say("cancelled seen: ", seen)
        ngx.say(rt:q("echo:serves on"))
    }
}
--- request
GET /t
--- timeout: 30
--- response_body
falseniltimeout
cancelled seen: 1
trueserves on
--- no_error_log
[alert]
[crit]



=== TEST 14: hotffi_log() from the helper reaches the worker's error.log; shared dicts are refused, not crashed on
--- http_config
lua_shared_dict counters 1m;
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("ctl", "threads=1", { isolate = true }))
        ngx.say(rt:q("log:5:2:from-the-helper"))
        ngx.say(rt:q("log:8:1:below-the-level"))
        local dict = assert(hotffi.load("dictctl", nil, { isolate = true }))
        ngx.say(dict:q("nodict:counters"))
        ngx.say(dict:q("incr:counters:k:1"))
    }
}
--- request
GET /t
--- response_body
truelogged 2
truelogged 1
truenull
trueerror: no shared dicts in an isolated runtime
--- error_log eval
[qr/\[warn\] .*hotffi: runtime "ctl&threads=1" v1: from-the-helper 1/,
 qr/\[warn\] .*hotffi: runtime "ctl&threads=1" v1: from-the-helper 2/]
--- no_error_log
below-the-level
[alert]
[crit]



=== TEST 15: in-place reload of an isolated runtime hands its state over; a failed start rolls back with the state; a sleep call in flight is answered
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local repo = package.path:match("([^;]+)/lua/%?%.lua")
        local b = repo .. "/build/lib/libcounter_b.so"
        local rt = assert(hotffi.load("counter", "threads=2",
                                      { isolate = true }))
        for _ = 1, 3 do rt:q("x") end
        ngx.say(rt:q("x"))
        -- a call the old version holds while it retires
        local slow = ngx.thread.spawn(function()
            return rt:q("sleep:300")
        end)
        ngx.sleep(0.05)
        local res, err = rt:__reload{ lib = b }
        ngx.say(res and res.ok, " ", err)
        ngx.say(select(2, ngx.thread.wait(slow)))
        ngx.say(rt:q("x"))
        -- a new version that fails to start: the old code again, its state kept
        res, err = rt:__reload{ cfg = "fail" }
        ngx.say(res, " ", err ~= nil)
        ngx.say(rt:q("x"))
        -- state = false: the next version starts from nothing
        res, err = rt:__reload{ lib = "counter", state = false }
        ngx.say(res and res.ok, " ", err)
        ngx.say(rt:q("x"))
    }
}
--- request
GET /t
--- timeout: 30
--- response_body
truea 4
true nil
truea 5
trueb 6
nil true
trueb 7
true nil
truea 1
--- no_error_log
[alert]
[crit]
