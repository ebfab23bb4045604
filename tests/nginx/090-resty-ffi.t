# lua-resty-ffi's semantics under `require "resty_ffi"`, row by row of the
# table in docs/api.md ("Coming from lua-resty-ffi"): each block makes the
# same call through ngx.load_ffi and through resty.hotffi and shows both
# results.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;

our $helpers = <<'LUA';
init_by_lua_block {
    -- every value a call returned, nil included, on one line
    function show(label, ...)
        local out = { label .. ":" }
        for i = 1, select("#", ...) do
            out[#out + 1] = tostring((select(i, ...)))
        end
        ngx.say(table.concat(out, " "))
    end

    -- the same runtime through both APIs
    function both(lib, cfg, opts)
        require "resty_ffi"
        return ngx.load_ffi(lib, cfg, opts),
               require("resty.hotffi").load(lib, cfg, opts)
    end

    -- a bounded wait for a condition, on the event loop
    function wait_for(cond)
        for _ = 1, 500 do
            if cond() then return true end
            ngx.sleep(0.01)
        end
        return false
    end
}
LUA

run_tests();

__DATA__

=== TEST 1: an answer, an answer without payload, a runtime's failure
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        local compat, own = both("ctl")
        show("resty_ffi", compat:q("echo:hi"))
        show("hotffi", own:q("echo:hi"))
        show("resty_ffi", compat:q("null"))
        show("hotffi", own:q("null"))
        show("resty_ffi", compat:q("fail:5:bad input"))
        show("hotffi", own:q("fail:5:bad input"))
    }
}
--- request
GET /t
--- response_body
resty_ffi: true hi
hotffi: true hi
resty_ffi: true nil
hotffi: true nil
resty_ffi: false 5 bad input
hotffi: false 5 bad input



=== TEST 2: a call without a request: the runtime sees NULL and 0
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        local compat, own = both("ctl")
        show("resty_ffi", compat:q())
        show("resty_ffi", compat:q(nil))
        show("hotffi", own:q())
        show("hotffi", own:q(nil, 5))
        -- an empty string is a request: a pointer and 0
        show("hotffi", own:q(""))
        local echo = require("resty.hotffi").load("echo")
        show("echo", echo:x())
    }
}
--- request
GET /t
--- response_body
resty_ffi: true NULL, 0
resty_ffi: true NULL, 0
hotffi: true NULL, 0
hotffi: true NULL, 0
hotffi: false 2 unknown command
echo: true 



=== TEST 3: a call after __unload(); `finished`
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        local compat, own = both("ctl", "a")
        show("finished", compat.finished)
        show("unload", compat:__unload())
        show("finished", compat.finished)
        show("resty_ffi", compat:q("echo:late"))
        show("hotffi", own:q("echo:late"))
        -- unloaded by the other API: the flag follows the runtime
        local compat2, own2 = both("ctl", "b")
        own2:__unload()
        show("finished", compat2.finished)
        show("resty_ffi", compat2:q("echo:late"))
        -- a load after the unload is a fresh runtime, with a fresh flag
        local again = ngx.load_ffi("ctl", "a")
        show("again", again ~= compat, again.finished, again:q("echo:x"))
    }
}
--- request
GET /t
--- response_body
finished: false
unload: true
finished: true
resty_ffi: false task queue is finished
hotffi: false nil runtime "ctl&a" is unloaded
finished: true
resty_ffi: false task queue is finished
again: true false true x



=== TEST 4: a full queue
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        local compat, own = both("ctl", "threads=1", { max_queue = 1 })
        -- the only thread sleeps in a call (one it merely held, it would
        -- poll again and take the next), one more fills the queue
        local busy = ngx.thread.spawn(function()
            return own:q("sleep:1000", 5)
        end)
        assert(wait_for(function() return own:__stats().queued == 0 end))
        local queued = ngx.thread.spawn(function()
            return own:q("echo:queued", 5)
        end)
        show("resty_ffi", compat:q("echo:over"))
        show("hotffi", own:q("echo:over"))
        own:__unload()
        show("busy", select(2, ngx.thread.wait(busy)))
        show("queued", select(2, ngx.thread.wait(queued)))
    }
}
--- request
GET /t
--- response_body_like
^resty_ffi: false post failed, queue full
hotffi: false nil queue full
busy: true slept
queued: true queued
$
--- error_log
calls refused (queue full: 1,



=== TEST 5: a timeout, which lua-resty-ffi does not have
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        local compat, own = both("ctl")
        show("resty_ffi", compat:q("sleep:300", 0.05))
        show("hotffi", own:q("sleep:300", 0.05))
    }
}
--- request
GET /t
--- response_body
resty_ffi: false timeout
hotffi: false nil timeout



=== TEST 6: a phase that cannot wait: a failure, before anything is posted
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        ngx.say("body")
    }
    log_by_lua_block {
        local compat, own = both("ctl")
        local a = { compat:q("echo:x") }
        local b = { own:q("echo:x") }
        ngx.log(ngx.WARN, "resty_ffi: ", tostring(a[1]), " ", a[2],
                "; hotffi: ", tostring(b[1]), " ", tostring(b[2]), " ", b[3],
                "; calls: ", own:__stats().calls)
    }
}
--- request
GET /t
--- response_body
body
--- error_log
qr/resty_ffi: false API disabled in the context of log_by_lua\*.*ngx\.timer\.at.*; hotffi: false nil API disabled in the context of log_by_lua\*.*; calls: 0 /



=== TEST 7: loading: libffi_init() failing, a library that is not there
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        require "resty_ffi"
        local hotffi = require "resty.hotffi"
        show("resty_ffi", ngx.load_ffi("ctl", "fail-init"))
        local rt, err0 = hotffi.load("ctl", "fail-init")
        show("hotffi", rt, err0:match("^[^\n]*"))
        local ok, err = pcall(ngx.load_ffi, "no_such_library")
        ngx.say("resty_ffi raises: ", not ok, " ",
                err:find('"libno_such_library.so"', 1, true) ~= nil)
        local rt, err2 = hotffi.load("no_such_library")
        ngx.say("hotffi returns: ", rt, " ",
                err2:find("cannot open shared object file", 1, true) ~= nil)
        ok, err = pcall(ngx.load_ffi, "noinit")
        ngx.say("no libffi_init raises: ", not ok, " ",
                err:find("libffi_init", 1, true) ~= nil)
    }
}
--- request
GET /t
--- response_body
resty_ffi: nil 7
hotffi: nil libffi_init() of runtime "ctl&fail-init" failed: 7: asked to fail
resty_ffi raises: true true
hotffi returns: nil true
no libffi_init raises: true true



=== TEST 8: misuse raises in both, at the caller's line
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        local compat, own = both("ctl")
        -- no tail calls: the error names the line of the call itself
        for _, f in ipairs({
            function() local r = compat:q({}) return r end,
            function() local r = own:q(true) return r end,
            function() local r = ngx.load_ffi(42) return r end,
            function()
                local r = ngx.load_ffi("ctl", nil, { max_queue = 0 })
                return r
            end,
        }) do
            local ok, err = pcall(f)
            ngx.say(ok, " ", tostring(err))
        end
    }
}
--- request
GET /t
--- response_body_like
^false content_by_lua\(nginx.conf:\d+\):\d+: bad request: string or nil expected, got table
false content_by_lua\(nginx.conf:\d+\):\d+: bad request: string or nil expected, got boolean
false content_by_lua\(nginx.conf:\d+\):\d+: bad library: non-empty string expected, got number
false content_by_lua\(nginx.conf:\d+\):\d+: bad option max_queue: integer from 1 to 2147483647 expected, got 0
$



=== TEST 9: the same runtime object for the same lib and cfg; both APIs share the runtime
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        local compat, own = both("ctl", "shared")
        show("same", ngx.load_ffi("ctl", "shared") == compat, compat ~= own)
        compat:q("echo:one")
        own:q("echo:two")
        show("calls", own:__stats().calls, compat:__stats().calls)
    }
}
--- request
GET /t
--- response_body
same: true true
calls: 2 2



=== TEST 10: a timeout longer than a semaphore can wait waits as long as it can
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        local compat, own = both("ctl")
        for _, t in ipairs({ 1e300, 2 ^ 53, math.huge, 2 ^ 31 }) do
            show("hotffi " .. t, own:q("sleep:20", t))
        end
        show("resty_ffi", compat:q("sleep:20", 1e300))
        local ok, err = pcall(own.q, own, "echo:x", 0 / 0)
        ngx.say(ok, " ", err:match("bad timeout: .*"))
    }
}
--- request
GET /t
--- response_body
hotffi 1e+300: true slept
hotffi 9.007199254741e+15: true slept
hotffi inf: true slept
hotffi 2147483648: true slept
resty_ffi: true slept
false bad timeout: positive number of seconds expected, got nan
