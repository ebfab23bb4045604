# Timeouts: the caller gets "timeout", the runtime can see that nobody waits
# any more, and the late answer is freed when it arrives.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;

run_tests();

__DATA__

=== TEST 1: a per-call timeout; the late answer is freed, the runtime sees it
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl")
        ngx.say(rt:q("sleep:300", 0.05))
        -- live tasks: the abandoned one until its answer is drained
        ngx.say(hotffi.stats().tasks_live)
        local freed
        for _ = 1, 300 do
            if hotffi.stats().tasks_live == 0 then freed = true break end
            ngx.sleep(0.01)
        end
        ngx.say("freed: ", freed)
        ngx.say(rt:q("cancelled"))
        local s = rt:__stats()
        ngx.say(s.abandoned, " ", s.inflight)
    }
}
--- request
GET /t
--- response_body
falseniltimeout
1
freed: true
true1
1 0



=== TEST 2: the runtime's default timeout applies; a call can override it
--- config
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl", "t", { timeout = 0.05 })
        ngx.say(rt:q("sleep:200"))
        ngx.say(rt:q("sleep:100", 2))
    }
}
--- request
GET /t
--- response_body
falseniltimeout
trueslept



=== TEST 2b: the calls' timeout does not bound the load's wait for init; init_timeout does
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt, err = hotffi.load("ctl", "init-sleep=300",
                                    { timeout = 0.05 })
        ngx.say(rt ~= nil, " ", tostring(err))
        rt, err = hotffi.load("ctl", "init-sleep=2000",
                              { init_timeout = 0.2 })
        ngx.say(rt ~= nil, " ", err)
    }
}
--- request
GET /t
--- response_body
true nil
false libffi_init() of runtime "ctl&init-sleep=2000" still running after 0.2 s: the load fails, and the runtime is unloaded once it returns



=== TEST 3: a runtime that never answers: timeout, then freed at unload
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl", "threads=1")
        for i = 1, 3 do
            ngx.say(rt:q("hang", 0.05))
        end
        ngx.say(hotffi.stats().tasks_live)
        -- ctl answers the tasks it held when it sees the stop
        rt:__unload()
        local freed
        for _ = 1, 300 do
            if hotffi.stats().tasks_live == 0 then freed = true break end
            ngx.sleep(0.01)
        end
        ngx.say("freed: ", freed)
        -- ctl exports libffi_fini: once it joined the threads, it closed
        local closed
        for _ = 1, 300 do
            closed = rt:__stats().closed
            if closed then break end
            ngx.sleep(0.01)
        end
        ngx.say("closed: ", closed)
    }
}
--- request
GET /t
--- response_body
falseniltimeout
falseniltimeout
falseniltimeout
3
freed: true
closed: true



=== TEST 4: a task given up while still queued never reaches the runtime
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl", "threads=1")
        local busy = ngx.thread.spawn(function() return rt:q("sleep:200") end)
        ngx.sleep(0.02)
        -- queued behind the sleep, given up long before the thread is free
        ngx.say(rt:q("echo:never", 0.05))
        ngx.thread.wait(busy)
        local freed
        for _ = 1, 300 do
            if hotffi.stats().tasks_live == 0 then freed = true break end
            ngx.sleep(0.01)
        end
        ngx.say("freed: ", freed)
        local s = rt:__stats()
        -- the sleep answered ok; the skipped task was neither ok nor failed
        ngx.say(s.calls, " ", s.ok, " ", s.failed, " ", s.abandoned)
    }
}
--- request
GET /t
--- response_body
falseniltimeout
freed: true
2 1 0 1



=== TEST 5: bad timeouts are refused
--- config
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("echo")
        for _, t in ipairs({ 0, -1, "soon" }) do
            local ok, err = pcall(rt.x, rt, "x", t)
            ngx.say(ok, " ", (err:gsub("^.-:%d+: ", "")))
        end
    }
}
--- request
GET /t
--- response_body
false bad timeout: positive number of seconds expected, got 0
false bad timeout: positive number of seconds expected, got -1
false bad timeout: positive number of seconds expected, got soon



=== TEST 6: rt:__metrics(): a timeout is its own outcome, not abandoned, not an answer
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl", "metrics")
        rt:q("echo:abc")
        rt:q("fail:2:no")
        rt:q("sleep:300", 0.05)
        local m = rt:__metrics()
        ngx.say(m.ok, " ", m.error, " ", m.timeout, " ", m.abandoned, " ",
                m.queue_full, " ", m.unloaded)
        ngx.say(m.bytes_in, " ", m.bytes_out)
        local n = 0
        for _, c in ipairs(m.latency) do n = n + c end
        ngx.say(#m.latency, " buckets, ", n, " answers, ",
                #hotffi.LATENCY_BUCKETS, " bounds")
    }
}
--- request
GET /t
--- response_body
1 1 1 0 0 0
26 5
20 buckets, 2 answers, 19 bounds
