# Go runtimes built with the Go SDK (sdk/go/hotffi): the echo and fetch
# examples and the ctl runtime the tests steer (sdk/go/internal/ctl).
# What only Go runtimes do: the exported symbols, what a Go library can and
# cannot do about being unloaded, goroutines per call and MaxConcurrency,
# fetch, several Go libraries in a worker, BorrowRequest.  What every
# language does (round trips, errors, panics, cancellation, configuration,
# unload, load, nginx reload) is 450-languages.t, for Go too.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use HotffiScenarios;

plan(skip_all => 'the Go runtime is not run under valgrind')
    if $ENV{HOTFFI_TEST_VALGRIND};

my $lib = "$HotffiTest::REPO/build/lib";
for my $name (qw(go_echo go_fetch go_ctl)) {
    BAIL_OUT("build first: make ($lib/lib$name.so does not exist)")
        unless -e "$lib/lib$name.so";
}

# The symbols: libffi_init/libffi_fini exported; lua-resty-ffi's functions
# undefined (bound at dlopen() from the nginx module); hotffi's own weak,
# so that the library also loads on lua-resty-ffi.
{
    my $syms = `nm -D $lib/libgo_echo.so`;
    like($syms, qr/^\S+ T libffi_init$/m, 'go_echo exports libffi_init');
    like($syms, qr/^\S+ T libffi_fini$/m, 'go_echo exports libffi_fini');
    like($syms, qr/^\s+U ngx_http_lua_ffi_task_poll$/m,
         'the poll function is left to the dynamic linker');
    like($syms, qr/^\s+w hotffi_task_cancelled$/m,
         'hotffi-only functions are weak');

    # libffi_fini is only safe to export because dlclose() never unmaps a
    # Go library: the Go linker marks every c-shared library NODELETE.
    like(`readelf -d $lib/libgo_echo.so`, qr/\(FLAGS_1\).*NODELETE/,
         'go_echo is linked -z nodelete');
}

# With unpin = true the runtime retires (libffi_fini returns once every
# call was answered, so its queue is freed), but the library stays mapped:
# a Go library cannot be unloaded, and Go runtimes reload by configuration.
{
    my $nginx = HotffiTest::Nginx->new(name => 'go unpin',
        http_config => $HotffiScenarios::LUA, config => <<'CONF');
location = /load {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("go_echo", "x",
                                                       { unpin = true }))
        ngx.say(select(2, rt:echo("loaded")))
    }
}
location = /unload {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("go_echo", "x", { unpin = true }))
        rt:__unload()
        rt = nil
        ngx.say(closed() and "closed" or "still " .. hotffi.stats().runtimes)
    }
}
CONF
    $nginx->start;
    is($nginx->get('/load')->{content}, "loaded\n", 'loaded with unpin');
    is($nginx->get('/unload')->{content}, "closed\n",
       'unloaded: the runtime closed');
    my ($worker) = $nginx->worker_pids;
    ok($worker, "the worker's pid") or BAIL_OUT('no worker process found');
    like(HotffiTest::_slurp("/proc/$worker/maps"), qr/libgo_echo\.so/,
         'the Go library is still mapped after dlclose()');
    is($nginx->get('/load')->{content}, "loaded\n",
       'a new runtime of the same library starts');
    like($nginx->error_log_text,
         qr/\[warn\].*runtime "go_echo&x" version 1 retired, but its library stays mapped after dlclose\(\)/,
         'hotffi warns that unpin could not unmap the library');
    $nginx->stop;
}

run_tests();

__DATA__

=== TEST 1: slow calls run on goroutines of their own: 200 sleeps overlap
--- config
location = /t {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("go_ctl"))
        local start = ngx.now()
        local slept = require("hotffi_threads").count_true(200, function()
            local ok, res = rt:q("sleep:300")
            return ok and res == "slept"
        end)
        ngx.update_time()
        ngx.say(slept, " ", ngx.now() - start < 3)
        ngx.say(select(2, rt:q("peak")) == "200")
    }
}
--- request
GET /t
--- response_body
200 true
true



=== TEST 2: MaxConcurrency bounds the handlers running at once
--- config
location = /t {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("go_ctl", "max=4"))
        local start = ngx.now()
        local slept = require("hotffi_threads").count_true(16, function()
            local ok, res = rt:q("sleep:100")
            return ok and res == "slept"
        end)
        ngx.update_time()
        -- 16 calls, 4 at a time, 100 ms each: 4 rounds
        ngx.say(slept, " ", select(2, rt:q("peak")), " ",
                ngx.now() - start >= 0.39)
    }
}
--- request
GET /t
--- response_body
16 4 true



=== TEST 3: fetch: concurrent HTTP GETs from the standard library
--- http_config
lua_shared_dict flags 1m;
--- config
location = /data/a { return 200 "alpha"; }
location = /data/b { return 200 "bravo!"; }
location = /data/slow {
    lua_check_client_abort on;
    content_by_lua_block {
        local ok = ngx.on_abort(function()
            ngx.shared.flags:set("aborted", true)
            ngx.exit(499)
        end)
        ngx.sleep(5)
        ngx.say("late")
    }
}
location = /t {
    content_by_lua_block {
        local cjson = require "cjson"
        local cfg = cjson.encode({
            base = "http://127.0.0.1:" .. ngx.var.server_port .. "/data",
            timeout_ms = 3000, parallel = 4,
        })
        local rt = assert(require("resty.hotffi").load("go_fetch", cfg))
        local paths = {}
        for i = 1, 12 do
            paths[i] = ({ "/a", "/b", "/missing" })[i % 3 + 1]
        end
        local ok, res = rt:get(cjson.encode({ paths = paths }))
        assert(ok, res)
        local seen = {}
        for _, r in ipairs(cjson.decode(res)) do
            local line = r.path .. " " .. r.status
            if r.status == 200 then
                line = line .. " " .. r.bytes .. " " .. r.sha256
            end
            seen[line] = (seen[line] or 0) + 1
        end
        local lines = {}
        for line, n in pairs(seen) do
            lines[#lines + 1] = n .. " x " .. line
        end
        table.sort(lines)
        ngx.say(table.concat(lines, "\n"))

        ngx.say(rt:get('{"paths":["http://elsewhere/"]}'))

        -- the caller gives up: the runtime cancels its HTTP request
        ngx.say(rt:get('{"paths":["/slow"]}', 0.2))
        for _ = 1, 300 do
            if ngx.shared.flags:get("aborted") then break end
            ngx.sleep(0.01)
        end
        ngx.say("aborted ", ngx.shared.flags:get("aborted"))
    }
}
--- request
GET /t
--- response_body eval
use Digest::SHA qw(sha256_hex);
"4 x /a 200 5 " . sha256_hex("alpha") . "\n"
. "4 x /b 200 6 " . sha256_hex("bravo!") . "\n"
. "4 x /missing 404\n"
. "false2bad request: path \"http://elsewhere/\" does not start with /\n"
. "falseniltimeout\n"
. "aborted true\n"
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 4: fetch refuses a configuration without an http(s) base
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        ngx.say(hotffi.load("go_fetch", '{"base":"file:///etc"}'))
        ngx.say(hotffi.load("go_fetch", 'not json'))
    }
}
--- request
GET /t
--- response_body_like
^nillibffi_init\(\) of runtime "go_fetch&\{"base":"file:///etc"\}" failed: 1: bad configuration: base "file:///etc" is not an http\(s\) URL
nillibffi_init\(\) of runtime "go_fetch&not json" failed: 1: bad configuration: invalid character .*
$



=== TEST 5: several Go libraries in one worker (works with Go 1.19 on Linux, unsupported by Go)
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local ctl = assert(hotffi.load("go_ctl"))
        local echo = assert(hotffi.load("go_echo"))
        ngx.say(require("hotffi_threads").count_true(40, function(i)
            if i % 4 == 0 then
                -- a nil dereference: a SIGSEGV the Go runtimes must
                -- route to the library it happened in
                local _, rc = ctl:q("nilptr")
                return rc == 2
            end
            local req = ("x"):rep(i * 1000)
            local ok, res = (i % 2 == 0 and echo or ctl):q(
                i % 2 == 0 and req or "echo:" .. req)
            return ok and res == req
        end))
    }
}
--- request
GET /t
--- repeat_each
5
--- response_body
40



=== TEST 6: BorrowRequest: the handler reads the caller's bytes, not a copy; 300 calls in flight each get their own
--- config
location = /t {
    content_by_lua_block {
        local ffi = require "ffi"
        local hotffi = require "resty.hotffi"
        -- "addr" answers where the handler's request starts: the Lua
        -- string's own bytes when borrowed, a copy's otherwise
        local req = "addr"
        local at = tonumber(ffi.cast("uintptr_t",
                                     ffi.cast("const char *", req)))
        local ok, addr = assert(hotffi.load("go_ctl", "borrow")):q(req)
        ngx.say("borrowed: ", ok and tonumber(addr) == at)
        ok, addr = assert(hotffi.load("go_ctl")):q(req)
        ngx.say("copied: ", ok and tonumber(addr) ~= nil
                            and tonumber(addr) ~= at)

        -- go_echo borrows: an answer that came from another call's bytes,
        -- or from bytes reused too early, would not match
        local rt = assert(hotffi.load("go_echo"))
        ngx.say(require("hotffi_threads").count_true(300, function(i)
            local mine = string.char(i % 256, 0):rep(i * 37) .. tostring(i)
            local done, res = rt:echo(mine)
            return done and res == mine
        end))
    }
}
--- request
GET /t
--- response_body
borrowed: true
copied: true
300



=== TEST 7: a slow call does not hold up the calls polled with or after it
--- config
location = /t {
    content_by_lua_block {
        -- quick handlers are answered on the polling goroutine: one that
        -- turns out slow must hand the polling on (TEST 1 covers a batch
        -- split while it runs)
        local rt = assert(require("resty.hotffi").load("go_ctl"))
        local order = {}
        local threads = {}
        threads[1] = ngx.thread.spawn(function()
            rt:q("sleep:500")
            order[#order + 1] = "slow"
        end)
        for i = 2, 12 do
            threads[i] = ngx.thread.spawn(function()
                local ok, res = rt:q("echo:" .. i)
                order[#order + 1] = (ok and res == tostring(i)) and "quick"
                                    or "wrong"
            end)
        end
        for i = 1, 12 do
            ngx.thread.wait(threads[i])
        end
        ngx.say(table.concat(order, " ", 1, 11))
        ngx.say(order[12])
    }
}
--- request
GET /t
--- response_body
quick quick quick quick quick quick quick quick quick quick quick
slow
