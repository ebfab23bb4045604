use strict;
use warnings;

# resty.hotffi.sandbox: the three budgets (instructions, time, memory),
# per-run overrides, charged library work, and what the check interval
# costs legitimate scripts.

use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;

run_tests();

__DATA__

=== TEST 1: instruction budget, and a per-run override
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new({ limits = { instructions = 100000, time = 5 } })
        local script = sb:compile("local n = ... for i = 1, n do end return n")
        ngx.say(script:run(10000))
        ngx.say(script:run(1000000))
        ngx.say(script:run_with({ instructions = 10000000 }, 1000000))
    }
}
--- request
GET /t
--- response_body
true10000
falseinstruction budget exceeded (100000 instructions)instructions
true1000000



=== TEST 2: time budget on a pure loop
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new({ limits = { instructions = 1e15, time = 0.05 } })
        local script = sb:compile("while true do end")
        ngx.update_time()
        local t0 = ngx.now()
        local ok, err, kind = script:run()
        ngx.update_time()
        local elapsed = ngx.now() - t0
        ngx.say(ok, " ", err, " ", kind)
        ngx.say(elapsed >= 0.04 and elapsed < 0.5 and "in time" or elapsed)
    }
}
--- request
GET /t
--- response_body
false time budget exceeded (0.05 s) time
in time



=== TEST 3: time budget with a slow host function (not interrupted, checked on return)
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local calls = 0
        local sb = sandbox.new({
            limits = { time = 0.05 },
            env = {
                spin = function()
                    calls = calls + 1
                    local t = ngx.now() + 0.02
                    repeat ngx.update_time() until ngx.now() >= t
                    return "done"
                end,
            },
        })
        local script = sb:compile("while true do spin() end")
        ngx.update_time()
        local t0 = ngx.now()
        local ok, err, kind = script:run()
        ngx.update_time()
        local elapsed = ngx.now() - t0
        ngx.say(ok, " ", kind, " ", calls >= 2 and calls <= 4 and "calls ok" or calls)
        ngx.say(elapsed < 0.2 and "in time" or elapsed)
    }
}
--- request
GET /t
--- response_body
false time calls ok
in time



=== TEST 4: memory budget, and a per-run override
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new({ limits = { memory = 4 * 1024 * 1024, time = 5 } })
        local script = sb:compile("local n = ... return #string.rep('x', n)")
        ngx.say(script:run(1024 * 1024))
        ngx.say(script:run(8 * 1024 * 1024))
        ngx.say(script:run_with({ memory = 16 * 1024 * 1024 }, 8 * 1024 * 1024))
        local tables = sb:compile([[
            local t = {}
            for i = 1, ... do t[i] = { i } end
            return #t
        ]])
        ngx.say(tables:run(1000))
        ngx.say(tables:run(1000000))
    }
}
--- request
GET /t
--- response_body
true1048576
falsememory budget exceeded (4194304 bytes)memory
true8388608
true1000
falsememory budget exceeded (4194304 bytes)memory



=== TEST 5: concatenation bombs stop close to the budget
One `..` of m operands can allocate about (m + 2) times its largest operand
after the last check passed (docs/sandbox.md): the bound depends on m.
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local budget = 4 * 1024 * 1024
        local sb = sandbox.new({ limits = { memory = budget, time = 5 } })
        local attacks = {
            { 3, "local s = 'x' while true do s = s .. s end" },
            { 3, "local s, t = 'x', {} while true do s = s .. s t[#t + 1] = s end" },
            { 6, "local s = ('x'):rep(100000) while true do s = s .. s .. s .. s end" },
        }
        for _, a in ipairs(attacks) do
            collectgarbage()
            local before = collectgarbage("count")
            local ok, err, kind = sb:compile(a[2]):run()
            local grown = (collectgarbage("count") - before) * 1024
            ngx.say(kind, " ", grown < a[1] * budget and "bounded" or grown / budget)
        end
    }
}
--- request
GET /t
--- response_body
memory bounded
memory bounded
memory bounded



=== TEST 6: library work is charged to the instruction budget
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        -- a generous time budget: the machine may be busy
        local sb = sandbox.new({ limits = { time = 5 } })
        local script = sb:compile([[
            local s = string.rep("a", 1000000)
            local found = 0
            for i = 1, ... do
                if s:find("b", 1, true) then found = found + 1 end
            end
            return found
        ]])
        ngx.say(script:run(10))
        ngx.say(script:run(100000))
    }
}
--- request
GET /t
--- response_body
true0
falseinstruction budget exceeded (1000000 instructions)instructions



=== TEST 7: costly patterns still complete, on the budgeted matcher
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new({ limits = { time = 5 } })
        local script = sb:compile([[
            local s = string.rep("k=v;", 2500)
            local head, tail = s:match("^(.*)=(.*)$")
            local n = select(2, s:gsub(".-;", ""))
            return #head, #tail, n
        ]])
        ngx.say(script:run())
    }
}
--- request
GET /t
--- response_body
true999722500



=== TEST 8: nothing runs in the script after a stop
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local marks = 0
        local sb = sandbox.new({
            limits = { instructions = 10000 },
            env = { mark = function() marks = marks + 1 end },
        })
        local script = sb:compile([[
            pcall(function() while true do end end)
            mark()
            local co = coroutine.wrap(function() while true do end end)
            pcall(co)
            mark()
        ]])
        ngx.say(script:run())
        ngx.say("marks ", marks)
    }
}
--- request
GET /t
--- response_body
falseinstruction budget exceeded (10000 instructions)instructions
marks 0



=== TEST 9: scripts that build strings run normally
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new({ limits = { time = 5 } })
        local script = sb:compile([[
            local piece = string.rep("x", 1000)
            local s = ""
            for i = 1, 100 do s = s .. piece end
            local parts = {}
            for i = 1, 1000 do parts[i] = "k" .. i .. "=" .. i end
            return #s, #table.concat(parts, "&")
        ]])
        ngx.say(script:run())
    }
}
--- request
GET /t
--- response_body
true1000008785
