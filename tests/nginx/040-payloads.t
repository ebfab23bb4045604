# Payloads from 0 bytes to 16 MiB round-trip byte-exact, NUL bytes included.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Digest::SHA qw(sha256_hex);

run_tests();

__DATA__

=== TEST 1: sizes from 0 to 16 MiB, with NULs and high bytes, through echo
--- config
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("echo")
        local unit = "a\0b\255\0\0z\n"
        for _, n in ipairs({ 0, 1, 7, 16, 4096, 65537, 1048576, 16777216 }) do
            local req = (unit:rep(math.floor(n / #unit) + 1)):sub(1, n)
            local ok, res = rt:echo(req)
            ngx.say(n, " ", ok, " ", #res, " ", res == req)
        end
    }
}
--- request
GET /t
--- timeout
60
--- response_body
0 true 0 true
1 true 1 true
7 true 7 true
16 true 16 true
4096 true 4096 true
65537 true 65537 true
1048576 true 1048576 true
16777216 true 16777216 true



=== TEST 2: a binary request body round-trips through HTTP and a runtime
--- config
location = /t {
    content_by_lua_block {
        ngx.req.read_body()
        local body = ngx.req.get_body_data()
        local ok, res = require("resty.hotffi").load("echo"):echo(body)
        ngx.print(res)
    }
}
--- request
POST /t
--- request_body eval
join '', map { chr($_ % 256) } 0 .. 300000
--- response_body eval
join '', map { chr($_ % 256) } 0 .. 300000



=== TEST 3: the digest example hashes on its thread pool, as sha256sum would
--- config
location = /t {
    content_by_lua_block {
        ngx.req.read_body()
        local rt = require("resty.hotffi").load("digest", "sha256 4")
        local threads = {}
        local body = ngx.req.get_body_data()
        for i = 1, 16 do
            threads[i] = ngx.thread.spawn(function()
                local ok, hex = rt:sum(body)
                return hex
            end)
        end
        local first
        for i = 1, 16 do
            local _, hex = ngx.thread.wait(threads[i])
            if i == 1 then first = hex elseif hex ~= first then first = "differ" end
        end
        ngx.say(first)
        ngx.say(require("resty.hotffi").load("digest", "no-such-algo"))
    }
}
--- request
POST /t
--- request_body eval
"hello\0world" x 1000
--- response_body eval
Digest::SHA::sha256_hex("hello\0world" x 1000) . "\n"
. "nillibffi_init() of runtime \"digest&no-such-algo\" failed: 22\n"
