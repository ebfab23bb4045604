# Every way a load or a call can go wrong gives a defined, readable result,
# and the worker keeps serving.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;

run_tests();

__DATA__

=== TEST 1: a library that does not exist: nil, dlopen()'s reason, and for a name what to do and where it was looked for
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        ngx.say(hotffi.load("no_such_runtime"))
        ngx.say(hotffi.load("libno_such_runtime.so"))
        ngx.say(hotffi.load("/nowhere/libx.so"))
        ngx.say(select(2, hotffi.load("echo"):x("still serving")))
    }
}
--- request
GET /t
--- response_body_like
^nildlopen\(\) "libno_such_runtime.so" failed: libno_such_runtime.so: cannot open shared object file: No such file or directory; the dynamic linker reads LD_LIBRARY_PATH once, when nginx starts \(an "env" directive does not change it\): load the library by its absolute path, e.g. "/path/to/libno_such_runtime.so" \(searched: /\S+/build/lib, [^\n]*/usr/lib[^\n]* and the ldconfig cache\)
nildlopen\(\) "libno_such_runtime.so" failed: [^\n]*\(searched: [^\n]*\)
nildlopen\(\) "/nowhere/libx.so" failed: /nowhere/libx.so: cannot open shared object file: No such file or directory
still serving
$



=== TEST 2: a library without libffi_init, and an init that fails
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt, err = hotffi.load("noinit")
        ngx.say(rt, " ", err:match('dlsym%(%) "libffi_init" in "libnoinit.so" failed: .*undefined symbol: libffi_init') ~= nil)
        ngx.say(hotffi.load("ctl", "fail-init"))
        ngx.say(hotffi.load("ctl", "fail-init-silent"))
        -- the failed configuration is not cached: a good one loads
        ngx.say(select(2, hotffi.load("ctl", "threads=1"):x("cfg")))
    }
}
--- request
GET /t
--- response_body
nil true
nillibffi_init() of runtime "ctl&fail-init" failed: 7: asked to fail
by its configuration
nillibffi_init() of runtime "ctl&fail-init-silent" failed: 7
threads=1



=== TEST 3: a nil configuration reaches libffi_init as NULL, "" as ""
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        ngx.say(select(2, hotffi.load("ctl"):x("cfg")))
        ngx.say("[", select(2, hotffi.load("ctl", ""):x("cfg")), "]")
    }
}
--- request
GET /t
--- response_body
<nil>
[]



=== TEST 4: bad arguments to load raise errors naming them
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local cases = {
            { 42 },
            { "" },
            { "echo", {} },
            { "echo", nil, "opts" },
            { "echo", nil, { max_queue = 0 } },
            { "echo", nil, { max_queue = 1.5 } },
            { "echo", nil, { timeout = -1 } },
            { "echo", nil, { is_global = "yes" } },
        }
        for _, c in ipairs(cases) do
            local ok, err = pcall(hotffi.load, c[1], c[2], c[3])
            ngx.say(ok, " ", (err:gsub("^.-:%d+: ", "")))
        end
    }
}
--- request
GET /t
--- response_body
false bad library: non-empty string expected, got number
false bad library: non-empty string expected, got an empty string
false bad configuration: string or nil expected, got table
false bad options: table or nil expected, got string
false bad option max_queue: integer from 1 to 2147483647 expected, got 0
false bad option max_queue: integer from 1 to 2147483647 expected, got 1.5
false bad option timeout: positive number of seconds expected, got -1
false bad option is_global: boolean expected, got string



=== TEST 5: a full queue fails the call at once and logs the overflow
--- config
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl", "threads=1",
                                                { max_queue = 2 })
        -- the only thread sleeps, two calls fill the queue, one more fails
        local busy = ngx.thread.spawn(function() return rt:q("sleep:300") end)
        -- not a sleep: the thread took the call once the queue is empty
        ngx.say("taken ", require("hotffi_threads").wait_for(function()
            return rt:__stats().queued == 0
        end))
        local queued = {}
        for i = 1, 2 do
            queued[i] = ngx.thread.spawn(function() return rt:q("echo:q" .. i) end)
        end
        ngx.say(rt:q("echo:overflow"))
        for i = 1, 2 do
            ngx.say(select(2, ngx.thread.wait(queued[i])))
        end
        ngx.say(select(2, ngx.thread.wait(busy)))
        local s = rt:__stats()
        ngx.say(s.calls, " ", s.rejected, " ", s.ok)
    }
}
--- request
GET /t
--- response_body
taken true
falsenilqueue full
trueq1
trueq2
trueslept
3 1 3
--- error_log
runtime "ctl&threads=1": 1 calls refused (queue full: 1, max_inflight: 0), 0 timed out, 0 dropped since the last such line (max_queue 2, max_inflight 65536)
--- no_error_log
[error]



=== TEST 6: unload answers what was queued, then refuses calls
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl", "threads=1")
        local threads = {}
        for i = 1, 3 do
            threads[i] = ngx.thread.spawn(function()
                local ok, res = rt:q("sleep:50")
                return res
            end)
        end
        ngx.say(rt:__unload())
        for i = 1, 3 do
            ngx.say(select(2, ngx.thread.wait(threads[i])))
        end
        ngx.say(rt:q("echo:late"))
        ngx.say(rt:__stats().unloaded)
        -- a new load makes a fresh runtime
        local again = hotffi.load("ctl", "threads=1")
        ngx.say(again ~= rt, " ", select(2, again:q("echo:fresh")))
    }
}
--- request
GET /t
--- response_body
true
slept
slept
slept
falsenilruntime "ctl&threads=1" is unloaded
true
true fresh



=== TEST 7: loading in init_by_lua is refused; in init_worker it works
--- http_config
init_by_lua_block {
    local hotffi = require "resty.hotffi"
    local rt, err = hotffi.load("echo")
    package.loaded.init_result = tostring(rt) .. " " .. err
}
init_worker_by_lua_block {
    assert(require("resty.hotffi").load("echo", "from init_worker"))
}
--- config
location = /t {
    content_by_lua_block {
        ngx.say(package.loaded.init_result)
        local rt = require("resty.hotffi").load("echo", "from init_worker")
        ngx.say(rt:x("ok"))
    }
}
--- request
GET /t
--- response_body
nil runtimes are loaded in worker processes (init_worker_by_lua* or later), not in init_by_lua*
trueok



=== TEST 8: a call where Lua cannot wait fails with lua-nginx-module's reason
--- config
location = /t {
    content_by_lua_block {
        ngx.say("body")
    }
    log_by_lua_block {
        local rt = require("resty.hotffi").load("echo")
        local ok, res, err = rt:x("from log")
        ngx.log(ngx.WARN, "log phase call: ", ok, " ", res, " ", err)
    }
}
--- request
GET /t
--- response_body
body
--- error_log
qr/log phase call: false nil API disabled in the context of log_by_lua/



=== TEST 9: a call in init_worker_by_lua fails, however fast the answer would come, and nothing is posted; a timer it starts can call
--- env
HOTFFI_SPIN_US=1000000
HOTFFI_POLL_SPIN_US=1000000
--- http_config
lua_shared_dict results 1m;
init_worker_by_lua_block {
    local rt = require("resty.hotffi").load("ctl")
    -- warm: its threads watch the queue, an answer would come at once
    local ok, res, err = rt:q("echo:x")
    ngx.shared.results:set("init_worker", tostring(ok) .. " " .. tostring(res)
                           .. " " .. err .. " " .. rt:__stats().calls)
    assert(ngx.timer.at(0, function()
        ngx.shared.results:set("timer", select(2, rt:q("echo:from a timer")))
    end))
}
--- config
location = /t {
    content_by_lua_block {
        ngx.say(ngx.shared.results:get("init_worker"))
        for _ = 1, 500 do
            if ngx.shared.results:get("timer") then break end
            ngx.sleep(0.01)
        end
        ngx.say(ngx.shared.results:get("timer"))
    }
}
--- request
GET /t
--- response_body
false nil API disabled in the context of init_worker_by_lua* (a call waits for its answer: make it from a timer, ngx.timer.at(0, ...)) 0
from a timer



=== TEST 10: the C module and the Lua library check each other's version
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        ngx.say(hotffi.version)
        ngx.say(require("ffi").C.ngx_http_hotffi_ffi_version())
    }
}
--- request
GET /t
--- response_body
0.1.0
8



=== TEST 11: a load that failed in init_worker_by_lua: an error line that says what to do, a warning in the audit trail, and hotffi.get() answers nil and the load's error until a load succeeds
--- http_config
init_worker_by_lua_block {
    require("resty.hotffi").load("ctl", "fail-init", { name = "broken" })
}
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        ngx.say(hotffi.get("broken"))
        ngx.say(hotffi.get("never loaded"))
        assert(hotffi.load("ctl", "threads=1", { name = "broken" }))
        ngx.say(hotffi.get("broken") ~= nil, select("#", hotffi.get("broken")))
    }
}
--- request
GET /t
--- response_body
nillibffi_init() of runtime "ctl&fail-init" failed: 7: asked to fail
by its configuration
nilnil
true1
--- error_log
qr/\[error\] \d+#\d+: (?:\*\d+ )?\[lua\] hotffi\.lua:\d+: load\(\): hotffi: loading runtime "broken" in init_worker_by_lua\* failed: libffi_init\(\) of runtime "ctl&fail-init" failed: 7: asked to fail\nby its configuration; hotffi\.get\("broken"\) returns nil and this error until a load succeeds: fix the cause, then nginx -s reload \(or load it again\)/
qr/\[warn\] \d+#\d+: hotffi: audit: load refused runtime="broken" pid=\d+ version=0->1 lib="ctl" dev=\S+ ino=\S+ mtime=\S+ cfg=[0-9a-f]{8}\/9 seconds=[\d.]+ error="libffi_init\(\) of runtime "ctl&fail-init" failed: 7/
qr/\[notice\] \d+#\d+: hotffi: audit: load ok runtime="broken" pid=\d+ version=0->1 lib="ctl"/
--- no_error_log
[alert]
[crit]
