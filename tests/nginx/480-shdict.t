# Shared dicts from runtime threads (hotffi_shdict_*() in include/hotffi.h):
# a value one side writes is the value the other reads, with Lua's types,
# flags, expiry and add/replace/incr answers; Lua in two workers and
# runtime threads incrementing and rewriting the same keys at once lose no
# increment and break no value; and the rate limit of
# examples/c/ratelimit.c allows exactly its limit, however the hits split.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;

# Lua in two workers and four runtime threads per worker increment the same
# key at once: the lock of the zone excludes threads of one worker as it
# excludes workers, so no increment is lost.
{
    my $nginx = HotffiTest::Nginx->new(
        name => 'shdict-race', workers => 2, listen_options => 'reuseport',
        http_config => <<'CONF',
lua_shared_dict d 1m;
init_worker_by_lua_block {
    assert(require("resty.hotffi").load("dictctl", "threads=4",
                                        { name = "dict" }))
}
CONF
        config => <<'CONF');
location = /bump {
    content_by_lua_block {
        local rt = require("resty.hotffi").get("dict")
        local threads = {}
        for i = 1, 4 do
            threads[i] = ngx.thread.spawn(function()
                return rt:q("bump:d:hits:500")
            end)
        end
        local d = ngx.shared.d
        for i = 1, 500 do
            d:incr("hits", 1, 0)
            if i % 50 == 0 then ngx.sleep(0) end
        end
        for i = 1, 4 do
            local _, ok, res = ngx.thread.wait(threads[i])
            if not ok or res ~= "done" then
                ngx.log(ngx.ERR, "bump failed: ", tostring(res))
                return ngx.exit(500)
            end
        end
        ngx.say("done")
    }
}
location = /count {
    content_by_lua_block { ngx.say(ngx.shared.d:get("hits")) }
}
CONF
    $nginx->start;
    my $r = concurrent_requests($nginx, 16, 4, '/bump');
    is($r->{ok}, 16, 'every bump answered 200') or diag(explain($r));
    is($nginx->get('/count')->{content}, 16 * 5 * 500 . "\n",
       'no increment lost: 16 requests x (4 runtime calls + Lua) x 500');
    unlike($nginx->error_log_text, qr/\[(error|alert|crit)\]/,
           'no error in the log');
    $nginx->stop;
}

# The load test: two workers, each with eight runtime threads; per request,
# eight runtime calls (four keys, two calls each) and the Lua of the
# request increment the same four keys, while two more runtime calls and
# the Lua rewrite strings of up to 3000 bytes on eight other keys (slab
# pages taken and given back) and check every one they read is whole.
# The totals match exactly, and every string left reads back whole.
{
    my ($N, $REQS) = (300, 24);
    my $nginx = HotffiTest::Nginx->new(
        name => 'shdict-load', workers => 2, listen_options => 'reuseport',
        http_config => <<'CONF',
lua_shared_dict d 4m;
init_worker_by_lua_block {
    assert(require("resty.hotffi").load("dictctl", "threads=8",
                                        { name = "dict" }))
}
CONF
        config => <<"CONF");
location = /load {
    content_by_lua_block {
        local rt = require("resty.hotffi").get("dict")
        local d = ngx.shared.d
        local seed = tonumber(ngx.var.connection) + ngx.worker.pid()
        local threads = {}
        for i = 1, 8 do
            threads[#threads + 1] = ngx.thread.spawn(function()
                return rt:q("bump:d:k" .. (i % 4) .. ":$N")
            end)
        end
        for i = 1, 2 do
            threads[#threads + 1] = ngx.thread.spawn(function()
                return rt:q("churn:d:$N:" .. (seed * 2 + i))
            end)
        end
        local bad
        for i = 1, $N do
            for k = 0, 3 do
                d:incr("k" .. k, 1, 0)
            end
            local key = "c" .. (i % 8)
            if i % 2 == 0 then
                local len = 1 + (i * 37 + seed) % 3000
                d:set(key, len .. ":" .. string.rep("z", len))
            else
                local v = d:get(key)
                local len, rest = (v or "0:"):match("^(%d+):(.*)\$")
                if not len or #rest ~= tonumber(len)
                   or rest ~= rest:sub(1, 1):rep(#rest)
                then
                    bad = key .. " " .. tostring(v):sub(1, 40)
                end
            end
            if i % 25 == 0 then ngx.sleep(0) end
        end
        for i = 1, #threads do
            local _, ok, res = ngx.thread.wait(threads[i])
            if not ok or res ~= "done" then
                ngx.log(ngx.ERR, "runtime call failed: ", tostring(res))
                return ngx.exit(500)
            end
        end
        if bad then
            ngx.log(ngx.ERR, "Lua read a broken value: ", bad)
            return ngx.exit(500)
        end
        ngx.say("done")
    }
}
location = /totals {
    content_by_lua_block {
        local d = ngx.shared.d
        local out = {}
        for k = 0, 3 do out[#out + 1] = d:get("k" .. k) end
        for k = 0, 7 do
            local v = d:get("c" .. k)
            local len, rest = (v or "0:"):match("^(%d+):(.*)\$")
            out[#out + 1] = (len and #rest == tonumber(len)
                             and rest == rest:sub(1, 1):rep(#rest))
                            and "whole" or "broken"
        end
        ngx.say(table.concat(out, " "))
    }
}
CONF
    $nginx->start;
    my $r = concurrent_requests($nginx, $REQS, 6, '/load');
    is($r->{ok}, $REQS, "every load request answered 200")
        or diag(explain($r));
    my $each = $REQS * (2 * $N + $N);
    is($nginx->get('/totals')->{content},
       join(' ', ($each) x 4, ('whole') x 8) . "\n",
       "each key: $REQS requests x (2 runtime calls + Lua) x $N, "
       . 'and every string whole');
    unlike($nginx->error_log_text, qr/\[(error|alert|crit)\]/,
           'no error in the log');
    $nginx->stop;
}

# The rate limit of examples/c/ratelimit.c (the demo's /limit): two
# workers' Lua and the runtime's threads draw on one budget; however the
# hits are split and interleaved, exactly `limit` of them are allowed.
{
    my ($LIMIT, $HITS) = (100, 300);
    my $nginx = HotffiTest::Nginx->new(
        name => 'shdict-ratelimit', workers => 2,
        listen_options => 'reuseport',
        http_config => <<"CONF",
lua_shared_dict ratelimit 1m;
init_worker_by_lua_block {
    assert(require("resty.hotffi").load("ratelimit", "ratelimit $LIMIT 600",
                                        { name = "limit" }))
}
CONF
        config => <<"CONF");
location = /hit {
    content_by_lua_block {
        local rt = require("resty.hotffi").get("limit")
        local allowed = 0
        local threads = {}
        for i = 1, 5 do
            threads[i] = ngx.thread.spawn(function()
                local ok, res = rt:hit("k")
                return ok and res:find("^ok ") and 1 or 0
            end)
        end
        for i = 1, 5 do
            local n = ngx.shared.ratelimit:incr("k", 1, 0, 600)
            if n <= $LIMIT then allowed = allowed + 1 end
        end
        for i = 1, 5 do
            local ok, n = ngx.thread.wait(threads[i])
            allowed = allowed + (ok and n or 0)
        end
        ngx.shared.ratelimit:incr("allowed", allowed, 0)
        ngx.say(allowed)
    }
}
location = /allowed {
    content_by_lua_block {
        local d = ngx.shared.ratelimit
        ngx.say(d:get("allowed"), " of ", d:get("k"))
    }
}
location = /bad {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        ngx.say(hotffi.load("ratelimit", "nope 5 60"))
        ngx.say(hotffi.load("ratelimit", "ratelimit five 60"))
    }
}
CONF
    $nginx->start;
    my $r = concurrent_requests($nginx, $HITS / 10, 6, '/hit');
    is($r->{ok}, $HITS / 10, 'every hit answered 200') or diag(explain($r));
    is($nginx->get('/allowed')->{content}, "$LIMIT of $HITS\n",
       "exactly $LIMIT of $HITS hits allowed, Lua's and the runtime's");
    like($nginx->get('/bad')->{content},
         qr/failed: 4: no such lua_shared_dict\n.*failed: 3: cfg: "DICT LIMIT WINDOW" expected/s,
         'a bad dict or cfg fails the load with a reason');
    unlike($nginx->error_log_text, qr/\[(alert|crit)\]|\[error\](?!.*ratelimit&(nope|ratelimit five))/,
           'no error in the log but the bad loads\'');
    $nginx->stop;
}

run_tests();

__DATA__

=== TEST 1: values cross both ways with their types and flags
--- http_config
lua_shared_dict d 1m;
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("dictctl"))
        local d = ngx.shared.d
        local function q(req)
            local ok, res = rt:q(req)
            ngx.say(req, " -> ", ok and res or "failed " .. tostring(res))
        end
        d:set("s", "hello", 0, 7)
        d:set("n", 3.25)
        d:set("t", true)
        d:set("f", false, 0, 1)
        q("get:d:s")
        q("get:d:n")
        q("get:d:t")
        q("get:d:f")
        q("get:d:none")
        q("set:d:rs:s:from-c:0:9")
        q("set:d:rn:n:-12.5:0:0")
        q("set:d:rb:b:1:0:0")
        ngx.say(d:get("rs"), " ", select(2, d:get("rs")), " ", d:get("rn"),
                " ", tostring(d:get("rb")))
        q("set:d:rs:nil::0:0")
        ngx.say("deleted: ", tostring(d:get("rs")))
        q("nodict:nope")
        q("nodict:d")
        q("get:nope:x")
    }
}
--- request
GET /t
--- response_body
get:d:s -> string 7 hello
get:d:n -> number 0 3.25
get:d:t -> boolean 0 true
get:d:f -> boolean 1 false
get:d:none -> nil
set:d:rs:s:from-c:0:9 -> ok
set:d:rn:n:-12.5:0:0 -> ok
set:d:rb:b:1:0:0 -> ok
from-c 9 -12.5 true
set:d:rs:nil::0:0 -> ok
deleted: nil
nodict:nope -> null
nodict:d -> found
get:nope:x -> error: no such shared dict
--- no_error_log
[error]
[alert]



=== TEST 2: add, replace, incr, expiry and ttl answer as in Lua
--- http_config
lua_shared_dict d 1m;
--- config
location = /t {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("dictctl"))
        local d = ngx.shared.d
        local function q(req)
            local ok, res = rt:q(req)
            ngx.say((req:gsub("k+:s:", function(m)
                        return #m > 1000 and "KKK:s:" or m
                    end)), " -> ", ok and res or "failed " .. tostring(res))
        end
        d:set("k", "v")
        q("add:d:k:s:x:0:0")
        q("add:d:new:s:x:0:0")
        q("replace:d:absent:s:x:0:0")
        q("replace:d:k:s:y:0:0")
        ngx.say("k=", d:get("k"), " new=", d:get("new"))
        q("incr:d:absent:1")
        q("incr:d:c:2:10")
        q("incr:d:c:-0.5")
        q("incr:d:k:1")
        ngx.say("c=", d:get("c"))
        q("set:d:e:s:gone:0.05:0")
        q("ttl:d:k")
        q("ttl:d:absent")
        ngx.sleep(0.2)
        q("get:d:e")
        q("stale:d:e")
        q("get:d:")
        q("set:d::s:x:0:0")
        q("incr:d::1:0")
        q("ttl:d:")
        q("set:d:" .. string.rep("k", 65536) .. ":s:x:0:0")
        q("set:d:" .. string.rep("k", 65535) .. ":s:longest:0:0")
        ngx.say(d:get(string.rep("k", 65535)))
    }
}
--- request
GET /t
--- response_body
add:d:k:s:x:0:0 -> declined: exists
add:d:new:s:x:0:0 -> ok
replace:d:absent:s:x:0:0 -> declined: not found
replace:d:k:s:y:0:0 -> ok
k=y new=x
incr:d:absent:1 -> declined: not found
incr:d:c:2:10 -> 12
incr:d:c:-0.5 -> 11.5
incr:d:k:1 -> error: not a number
c=11.5
set:d:e:s:gone:0.05:0 -> ok
ttl:d:k -> 0
ttl:d:absent -> -1
get:d:e -> nil
stale:d:e -> string 0 gone stale
get:d: -> error: empty key
set:d::s:x:0:0 -> error: empty key
incr:d::1:0 -> error: empty key
ttl:d: -> -1
set:d:KKK:s:x:0:0 -> error: key too long
set:d:KKK:s:longest:0:0 -> ok
longest
--- no_error_log
[error]
[alert]

