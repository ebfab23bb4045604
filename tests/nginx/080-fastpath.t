# The fast path: calls answered while the event loop spins, a timeout that
# ends inside the spin, phases that cannot wait, requests read in place from
# Lua strings that the caller dropped, and the event loop kept responsive.
#
# Most blocks set both spin windows to their largest (1 s): a runtime thread
# then still spins on its queue when the next call comes (the worker only
# spins for calls a spinning runtime thread takes), and a call whose answer
# comes is always answered inside the worker's spin, however loaded this
# machine is; HOTFFI_SPIN_LOAD=0 keeps them spinning on a busy machine too
# (docs/api.md, "Spinning").  What must or must not happen is told by
# counters, not clocks.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;

# Lua helpers of TEST 4 and 5: a 100 KB request of known bytes, garbage
# that reuses the memory of dropped requests, and waiting for the runtime's
# verdict on what it read.
our $verify_helpers = <<'LUA';
init_by_lua_block {
    -- 100000 bytes "abc...zab..." (what ctl's verify checks), and a wait
    -- for ctl's "verified" counters
    function verify_payload()
        local t = {}
        for i = 0, 99999 do t[#t + 1] = string.char(97 + i % 26) end
        return table.concat(t)
    end

    function verify_churn(n)
        for round = 1, 3 do
            collectgarbage("collect")
            local junk = {}
            for i = 1, 50 do
                -- the size the dropped requests had: their memory is reused
                junk[i] = string.rep(string.char(65 + (i + round) % 26), n)
            end
            junk = nil
            collectgarbage("collect")
        end
    end

    function verify_wait(rt, want)
        local v
        for _ = 1, 500 do
            v = select(2, rt:q("verified"))
            if v == want then break end
            ngx.sleep(0.01)
        end
        return v
    end
}
LUA

# TEST 8 and 9: the scheduling policy of each thread of the worker, field
# 41 of its /proc stat (0 SCHED_OTHER, 3 SCHED_BATCH): the worker's own,
# and how many of the others have each
our $policy_helpers = <<'LUA';
init_by_lua_block {
    -- after a call to the C echo, whose one thread has polled since
    function thread_policies()
        assert(require("resty.hotffi").load("echo"):echo("x"))
        local pid = ngx.worker.pid()
        local dir = "/proc/" .. pid .. "/task/"
        local ls = assert(io.popen("ls " .. dir))
        local main, others = nil, {}
        for tid in ls:lines() do
            local f = assert(io.open(dir .. tid .. "/stat"))
            local after_comm = f:read("*a"):match("%) (.*)$")
            f:close()
            local fields = {}
            for v in after_comm:gmatch("%S+") do
                fields[#fields + 1] = v
            end
            local policy = fields[41 - 2]
            if tonumber(tid) == pid then
                main = policy
            else
                others[policy] = (others[policy] or 0) + 1
            end
        end
        ls:close()
        return main, others
    end
}
LUA

# TEST 8 and 9: the worker's policy, then the echo thread's and how many
# threads have it
our $policy_location = <<'NGINX';
location = /t {
    content_by_lua_block {
        local main, others = thread_policies()
        ngx.say("worker ", main, ", echo's thread: ", next(others), " ",
                others[next(others)])
    }
}
NGINX

run_tests();

__DATA__

=== TEST 1: calls answered while spinning give the same results as ever
--- env
HOTFFI_SPIN_US=1000000
HOTFFI_SPIN_LOAD=0
HOTFFI_POLL_SPIN_US=1000000
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl")
        rt:q("echo:warm-up")
        local s0 = hotffi.stats()
        local big = string.rep("0123456789\0", 10000)
        ngx.say(rt:q("echo:hello"))
        ngx.say(rt:q("echo:"))
        ngx.say(rt:q("null"))
        ngx.say(rt:q("fail:3:bad"))
        local ok, rsp = rt:q("echo:" .. big)
        ngx.say(ok, " ", rsp == big)
        for i = 1, 200 do
            local req = "echo:" .. i
            local ok2, rsp2 = rt:q(req)
            if not ok2 or rsp2 ~= tostring(i) then
                ngx.say("call ", i, ": ", ok2, " ", rsp2)
            end
        end
        local s1 = hotffi.stats()
        -- how many of the 205 calls were spun for, and answered within the
        -- window, depends on when the threads ran: that some were, and no
        -- more than were made, does not
        local hits = s1.spin_hits - s0.spin_hits
        local spun = hits + s1.spin_misses - s0.spin_misses
        ngx.say("hits ", hits > 0, " spun ", spun <= 205,
                " live ", s1.tasks_live)
        local st = rt:__stats()
        ngx.say(st.calls, " ", st.ok, " ", st.failed, " ", st.inflight)
    }
}
--- request
GET /t
--- response_body
truehello
true
truenil
false3bad
true true
hits true spun true live 0
206 205 1 0



=== TEST 2: a timeout shorter than the spin ends the call inside the spin
--- env
HOTFFI_SPIN_US=1000000
HOTFFI_SPIN_LOAD=0
HOTFFI_POLL_SPIN_US=1000000
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl")
        local s0 = hotffi.stats()
        ngx.say(rt:q("sleep:300", 0.05))
        local s1 = hotffi.stats()
        ngx.say("misses ", s1.spin_misses - s0.spin_misses,
                " live ", s1.tasks_live)
        local freed
        for _ = 1, 300 do
            if hotffi.stats().tasks_live == 0 then freed = true break end
            ngx.sleep(0.01)
        end
        ngx.say("freed: ", freed)
        ngx.say(rt:q("cancelled"))
        local st = rt:__stats()
        ngx.say(st.abandoned, " ", st.inflight)
    }
}
--- request
GET /t
--- response_body
falseniltimeout
misses 1 live 1
freed: true
true1
1 0



=== TEST 3: a phase that cannot wait fails the same way, however fast the answer
--- env
HOTFFI_SPIN_US=1000000
HOTFFI_SPIN_LOAD=0
HOTFFI_POLL_SPIN_US=1000000
--- config
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl")
        -- the runtime is warm and answers at once
        ngx.say(rt:q("echo:ready"))
    }
    log_by_lua_block {
        local rt = require("resty.hotffi").load("ctl")
        local ok, res, err = rt:q("echo:from log")
        ngx.log(ngx.WARN, "log phase call: ", ok, " ", res, " ", err)
    }
}
--- request
GET /t
--- response_body
trueready
--- error_log
qr/log phase call: false nil API disabled in the context of log_by_lua/



=== TEST 4: a request stays intact while the runtime reads it, after its caller gave up inside the spin and the GC ran
--- env
HOTFFI_SPIN_US=1000000
HOTFFI_SPIN_LOAD=0
HOTFFI_POLL_SPIN_US=1000000
--- http_config eval
$::verify_helpers

--- config
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl")
        local req = "verify:200:" .. verify_payload()
        local n = #req
        ngx.say(rt:q(req, 0.01))
        req = nil
        verify_churn(n)
        ngx.say(verify_wait(rt, "1 0"))
    }
}
--- request
GET /t
--- response_body
falseniltimeout
1 0
--- timeout: 20



=== TEST 5: the same for callers that gave up while parked: timeout, killed light thread
--- http_config eval
$::verify_helpers

--- env
HOTFFI_SPIN_US=0
HOTFFI_SPIN_LOAD=0
--- config
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl")
        local payload = verify_payload()
        local n = #payload + 11

        local req = "verify:200:" .. payload
        ngx.say(rt:q(req, 0.01))
        req = nil

        local th = ngx.thread.spawn(function()
            return rt:q("verify:300:" .. payload, 5)
        end)
        -- killed once the handler holds the request, not after a sleep
        -- that hopes so: the queue is empty when a thread took it
        assert(require("hotffi_threads").wait_for(function()
            return rt:__stats().queued == 0
        end), "the call was not taken")
        ngx.say(ngx.thread.kill(th))
        th = nil

        verify_churn(n)
        ngx.say(verify_wait(rt, "2 0"))
    }
}
--- request
GET /t
--- response_body
falseniltimeout
1
2 0
--- timeout: 20



=== TEST 6: a coroutine calling back to back lets the worker run other work, without a [warn]
--- env
HOTFFI_SPIN_US=1000000
HOTFFI_SPIN_LOAD=0
HOTFFI_POLL_SPIN_US=1000000
--- config
location = /t {
    content_by_lua_block {
        local semaphore = require "ngx.semaphore"
        local rt = require("resty.hotffi").load("ctl")
        rt:q("echo:warm-up")
        -- the other light thread can run only when the event loop does:
        -- its semaphore is posted, and posts are handled by the loop
        local sema = semaphore.new()
        local calls, ran_after = 0
        local other = ngx.thread.spawn(function()
            sema:wait(10)
            ran_after = calls
        end)
        sema:post(1)
        for i = 1, 256 do
            local ok = rt:q("echo:x")
            if not ok then ngx.say("call ", i, " failed") end
            calls = i
        end
        ngx.thread.wait(other)
        -- a call either waited (the loop ran then) or was answered while
        -- spinning, and 64 of those in a row let the loop run once
        ngx.say("other thread ran within 64 calls: ", ran_after <= 64)
    }
}
--- request
GET /t
--- response_body
other thread ran within 64 calls: true
--- no_error_log
[warn]
[error]



=== TEST 7: without spinning, calls go through the semaphore as before
--- env
HOTFFI_SPIN_US=0
HOTFFI_SPIN_LOAD=0
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl")
        for i = 1, 20 do
            local ok, rsp = rt:q("echo:" .. i)
            if not ok or rsp ~= tostring(i) then ngx.say("bad ", i) end
        end
        local s = hotffi.stats()
        ngx.say(s.spin_hits, " ", s.spin_misses, " ", s.wakeups >= 20)
    }
}
--- request
GET /t
--- response_body
0 0 true



=== TEST 8: by default the thread that polls runs SCHED_BATCH on a machine not crowded (HOTFFI_SPIN_LOAD=0: never); the worker's own policy is untouched
--- env
HOTFFI_SPIN_LOAD=0
--- http_config eval
$::policy_helpers
--- config eval
$::policy_location
--- request
GET /t
--- response_body
worker 0, echo's thread: 3 1



=== TEST 9: with HOTFFI_POLL_BATCH=0 hotffi leaves every thread's policy alone
--- env
HOTFFI_POLL_BATCH=0
HOTFFI_SPIN_LOAD=0
--- http_config eval
$::policy_helpers
--- config eval
$::policy_location
--- request
GET /t
--- response_body
worker 0, echo's thread: 0 1
