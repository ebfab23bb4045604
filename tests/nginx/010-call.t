# Calls through resty.hotffi: round trips, method names, request types, the
# nginx contexts that can wait, and several light threads in one request.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;

run_tests();

__DATA__

=== TEST 1: a call returns the runtime's answer; any method name works
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("echo"))
        ngx.say(rt:echo("hello"))
        ngx.say(rt:whatever_name("world"))
        ngx.say(rt("called"))
    }
}
--- request
GET /t
--- response_body
truehello
trueworld
truecalled



=== TEST 2: load is cached per lib & cfg, and per worker
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local a = hotffi.load("ctl", "x")
        local b = hotffi.load("ctl", "x")
        local c = hotffi.load("ctl", "y")
        local d = hotffi.load("ctl")
        ngx.say(a == b, " ", a == c, " ", c == d)
        ngx.say(select(2, a:q("cfg")), " ", select(2, c:q("cfg")),
                " ", select(2, d:q("cfg")))
        ngx.say(hotffi.stats().runtimes)
    }
}
--- request
GET /t
--- response_body
true false false
x y <nil>
3



=== TEST 3: numbers are converted; nil is a call without a request; tables and booleans are refused
--- config
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("echo")
        ngx.say(rt:echo(42.5))
        ngx.say(rt:echo())
        ngx.say(rt:echo(nil))
        for _, bad in ipairs({ {}, true }) do
            local ok, err = pcall(rt.echo, rt, bad)
            ngx.say(ok, " ", err)
        end
    }
}
--- request
GET /t
--- response_body_like
^true42.5
true
true
false [^\n]*bad request: string or nil expected, got table
false [^\n]*bad request: string or nil expected, got boolean
$



=== TEST 4: a failing answer gives false, rc, payload; no payload gives nil
--- config
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl")
        ngx.say(rt:q("fail:5:bad input"))
        ngx.say(rt:q("fail:-3:"))
        ngx.say(rt:q("null"))
        ngx.say(rt:q("nonsense"))
    }
}
--- request
GET /t
--- response_body
false5bad input
false-3
truenil
false2unknown command



=== TEST 5: calls work in rewrite, access, content and timer contexts
--- config
location = /t {
    rewrite_by_lua_block {
        local rt = require("resty.hotffi").load("echo")
        local ok, res = rt:echo("rewrite")
        ngx.ctx.seen = { res }
    }
    access_by_lua_block {
        local rt = require("resty.hotffi").load("echo")
        local ok, res = rt:echo("access")
        table.insert(ngx.ctx.seen, res)
    }
    content_by_lua_block {
        local rt = require("resty.hotffi").load("echo")
        local ok, res = rt:echo("content")
        table.insert(ngx.ctx.seen, res)

        local dict = ngx.shared.results
        assert(ngx.timer.at(0, function()
            local ok, res = rt:echo("timer")
            dict:set("timer", res)
        end))
        local got
        for _ = 1, 200 do
            got = dict:get("timer")
            if got then break end
            ngx.sleep(0.01)
        end
        table.insert(ngx.ctx.seen, got)
        ngx.say(table.concat(ngx.ctx.seen, " "))
    }
}
--- http_config
lua_shared_dict results 1m;
--- request
GET /t
--- response_body
rewrite access content timer



=== TEST 6: many light threads in one request wait at the same time
--- config
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl", "threads=8")
        local threads = {}
        for i = 1, 8 do
            threads[i] = ngx.thread.spawn(function()
                return rt:q("sleep:200")
            end)
        end
        -- every thread has posted its call and is parked on it
        ngx.say(rt:__stats().inflight)
        local answers = 0
        for i = 1, 8 do
            local _, ok, res = ngx.thread.wait(threads[i])
            if ok and res == "slept" then answers = answers + 1 end
        end
        ngx.say(answers, " ", rt:__stats().inflight)
    }
}
--- request
GET /t
--- response_body
8
8 0



=== TEST 7: the event loop keeps serving while a call waits
--- config
location = /slow {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl")
        ngx.say(rt:q("sleep:500"))
    }
}
location = /fast {
    return 200 "fast\n";
}
location = /t {
    content_by_lua_block {
        local port = ngx.var.server_port
        -- the same runtime object as /slow's: one worker, one cache
        local rt = require("resty.hotffi").load("ctl")
        local slow = ngx.thread.spawn(function()
            local sock = ngx.socket.tcp()
            assert(sock:connect("127.0.0.1", port))
            sock:send("GET /slow HTTP/1.0\r\n\r\n")
            -- no tail call: sock must stay referenced while receive waits
            local res = sock:receive("*a")
            return res
        end)
        -- /fast is asked while /slow's call is in flight, not after a
        -- sleep that hopes so
        ngx.say("in flight ", require("hotffi_threads").wait_for(function()
            return rt:__stats().inflight == 1
        end))
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", port))
        sock:send("GET /fast HTTP/1.0\r\n\r\n")
        local fast = sock:receive("*a")
        local _, slow_res = ngx.thread.wait(slow)
        ngx.say(fast:match("fast") ~= nil, " ", slow_res:match("trueslept") ~= nil)
    }
}
--- request
GET /t
--- response_body
in flight true
true true



=== TEST 8: resty_ffi defines lua-resty-ffi's ngx.load_ffi
--- config
location = /t {
    content_by_lua_block {
        require "resty_ffi"
        local demo = ngx.load_ffi("echo")
        local ok, res, err = demo:call("compat")
        ngx.say(ok, " ", res, " ", err)
        ngx.say(ngx.load_ffi("echo") == demo)
        local ctl = ngx.load_ffi("ctl", nil, { max_queue = 16 })
        ngx.say(ctl:call("fail:9:nine"))
        ngx.say(demo:__unload())
        ngx.say(demo:call("late"))
    }
}
--- request
GET /t
--- response_body
true compat nil
true
false9nine
true
falsetask queue is finished



=== TEST 9: a library given by path or file name
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local dir = os.getenv("LD_LIBRARY_PATH"):match("[^:]+")
        local a = assert(hotffi.load(dir .. "/libecho.so"))
        local b = assert(hotffi.load("libecho.so"))
        ngx.say(select(2, a:x("path")), " ", select(2, b:x("file")))
    }
}
--- request
GET /t
--- response_body
path file



=== TEST 10: the worker's counters are zero before the first load (which drains its START: one wake-up, then the answer's)
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local s = hotffi.stats()
        ngx.say(s.tasks_live, " ", s.wakeups, " ", s.completions, " ",
                s.runtimes)
        hotffi.load("echo"):x("one")
        s = hotffi.stats()
        ngx.say(s.tasks_live, " ", s.wakeups, " ", s.completions, " ",
                s.runtimes)
    }
}
--- request
GET /t
--- response_body
0 0 0 0
0 2 2 1
