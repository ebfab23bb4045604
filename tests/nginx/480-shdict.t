# Shared dicts from runtime threads (hotffi_shdict_*() in include/hotffi.h):
# a value one side writes is the value the other reads, with Lua's types,
# flags, expiry and add/replace/incr answers; and Lua in two workers and
# runtime threads incrementing the same keys at once lose no increment.
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
            ngx.say(req, " -> ", ok and res or "failed " .. tostring(res))
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
--- no_error_log
[error]
[alert]

