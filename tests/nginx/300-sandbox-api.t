use strict;
use warnings;

# resty.hotffi.sandbox: the API (compile, run, results, errors, the host
# environment, the per-tenant cache) and the nginx contexts it runs in.

use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;

run_tests();

__DATA__

=== TEST 1: compile once, run with arguments, get results
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new()
        local script = assert(sb:compile([[
            local a, b, t = ...
            return a + b, t.name:upper(), #t.list, { sum = a + b }
        ]], "add"))
        local ok, sum, name, n, tab = script:run(1, 2, { name = "x", list = { 1, 2, 3 } })
        ngx.say(ok, " ", sum, " ", name, " ", n, " ", tab.sum)
        ok, sum = script:run(10, 20, { name = "y", list = {} })
        ngx.say(ok, " ", sum)
    }
}
--- request
GET /t
--- response_body
true 3 X 3 3
true 30



=== TEST 2: syntax errors, bytecode and oversized sources are refused
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new({ max_source = 64 })
        ngx.say(select(2, sb:compile("return +", "broken")))
        ngx.say(select(2, sb:compile(string.dump(function() return 1 end))))
        ngx.say(select(2, sb:compile(string.rep(" ", 65))))
    }
}
--- request
GET /t
--- response_body
broken:1: unexpected symbol near '+'
attempt to load chunk with wrong mode
script too large (65 bytes, at most 64)



=== TEST 3: misuse raises errors
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local function try(f, ...)
            local ok, err = pcall(f, ...)
            ngx.say(ok, " ", (tostring(err):gsub("^.-:%d+: ", "")))
        end
        try(sandbox.new, "x")
        try(sandbox.new, { bogus = 1 })
        try(sandbox.new, { limits = { instructions = -1 } })
        try(sandbox.new, { limits = { time = math.huge } })
        try(sandbox.new, { limits = { memory = 0 / 0 } })
        try(sandbox.new, { limits = { cpu = 1 } })
        try(sandbox.new, { env = { f = coroutine.create(function() end) } })
        local sb = sandbox.new()
        try(sb.compile, sb, 42)
        local script = sb:compile("return ...")
        try(script.run_with, script, { memory = "lots" })
        try(script.run, script, coroutine.create(function() end))
        try(script.run, script, { nested = { co = coroutine.create(function() end) } })
        try(sandbox.new_cache, {})
    }
}
--- request
GET /t
--- response_body
false bad argument #1 to 'new' (table expected, got string)
false unknown option "bogus"
false limit "instructions" must be a positive finite number
false limit "time" must be a positive finite number
false limit "memory" must be a positive finite number
false unknown limit "cpu"
false bad option "env": cannot pass a thread value into a sandbox
false bad argument #1 to 'compile' (string expected, got number)
false limit "memory" must be a positive finite number
false bad argument #1 to 'run' (cannot pass a thread value into a sandbox)
false bad argument #1 to 'run' (cannot pass a thread value into a sandbox)
false bad argument #1 to 'new_cache' (sandbox expected)



=== TEST 4: failures come back as false, message, kind
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new({ limits = { instructions = 10000 } })
        local function show(src)
            local script = assert(sb:compile(src, "s"))
            local ok, msg, kind = script:run()
            ngx.say(tostring(ok), " | ", tostring(msg), " | ", tostring(kind))
        end
        show("error('boom')")
        show("error({ code = 1 })")
        show("local x = nil; return x.y")
        show("while true do end")
        show("return function() end")
        ngx.say(tostring(debug.gethook()), " ", getmetatable("").__index == string)
    }
}
--- request
GET /t
--- response_body
false | s:1: boom | error
false | (error object is a table value) | error
false | s:1: attempt to index local 'x' (a nil value) | error
false | instruction budget exceeded (10000 instructions) | instructions
false | cannot pass a function value out of the sandbox (result) | error
nil true



=== TEST 5: the hook and the string metatable are restored after every run
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new({ limits = { instructions = 10000 } })
        for _, src in ipairs({ "return 1", "error('x')", "while true do end",
                               "return ('x'):rep(1e12)" }) do
            local script = sb:compile(src)
            local ok, err, kind = script:run()
            ngx.say(kind or "ok", " ", tostring(debug.gethook()), " ",
                    getmetatable("").__index == string, " ", ("ab"):rep(2))
        end
    }
}
--- request
GET /t
--- response_body
ok nil true abab
error nil true abab
instructions nil true abab
memory nil true abab



=== TEST 6: globals are fresh on every run; libraries are shared read-only
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new()
        local script = sb:compile([[
            counter = (counter or 0) + 1
            local ok = pcall(function() string.custom = 1 end)
            return counter, ok, _G == getfenv, type(_G), string.custom
        ]])
        ngx.say(script:run())
        ngx.say(script:run())
    }
}
--- request
GET /t
--- response_body
true1falsefalsetablenil
true1falsefalsetablenil



=== TEST 7: the host environment: functions, read-only tables, plain copies
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local seen
        local sb = sandbox.new({
            env = {
                api = {
                    store = function(t) seen = t return t end,
                    fail = function() error({ reason = "denied" }) end,
                    version = "1.0",
                },
                answer = 42,
            },
        })
        local script = sb:compile([[
            local t = setmetatable({ a = 1 }, { __index = function() return "meta" end })
            local back = api.store(t)
            local ok, err = pcall(api.fail)
            return answer, api.version, t.zzz, back.zzz, ok, err.reason,
                   pcall(api.store, function() end)
        ]])
        local res = { script:run() }
        for i = 1, 9 do res[i] = tostring(res[i]) end
        ngx.say(table.concat(res, " "))
        ngx.say(tostring(getmetatable(seen)), " ", seen.a)
    }
}
--- request
GET /t
--- response_body
true 42 1.0 meta nil false denied false cannot pass a function value out of the sandbox (argument of a host function)
nil 1



=== TEST 8: pcall and coroutine can be left out
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local full = sandbox.new()
        local bare = sandbox.new({ pcall = false, coroutine = false })
        local src = "return type(pcall), type(xpcall), type(coroutine)"
        ngx.say(full:compile(src):run())
        ngx.say(bare:compile(src):run())
    }
}
--- request
GET /t
--- response_body
truefunctionfunctiontable
truenilnilnil



=== TEST 9: coroutines inside a script
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new({ env = { double = function(x) return 2 * x end } })
        local script = sb:compile([[
            local gen = coroutine.wrap(function()
                for i = 1, 3 do coroutine.yield(double(i)) end
            end)
            local co = coroutine.create(function(a)
                local b = coroutine.yield(a + 1)
                return b * 10
            end)
            local _, x = coroutine.resume(co, 1)
            local _, y = coroutine.resume(co, 5)
            return gen(), gen(), gen(), x, y, coroutine.status(co)
        ]])
        ngx.say(table.concat({ select(2, script:run()) }, " "))
    }
}
--- request
GET /t
--- response_body
2 4 6 2 50 dead



=== TEST 10: the budgeted Lua matcher agrees with the native one
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local native = sandbox.new()
        local lua = sandbox.new({ pattern_steps = 0 })
        local src = [[
            local s = "key1=val1; key2=val2; (nested (parens)) end"
            local out = {}
            local function add(...)
                local t = { n = select("#", ...), ... }
                for i = 1, t.n do t[i] = tostring(t[i]) end
                out[#out + 1] = table.concat(t, ",")
            end
            add(s:find("(%w+)=(%w+)"))
            add(s:find("val", 12, true))
            add(s:match("%b()"))
            add(s:match("()key2()"))
            add(s:gsub("(%w+)=(%w+)", "%2=%1"))
            add(s:gsub("%w+", { key1 = "K" }, 2))
            add(s:gsub("%f[%w]%w+", function(w) return #w end))
            for k, v in s:gmatch("(%w+)=(%w+)") do add(k, v) end
            add(pcall(string.find, s, "%"))
            return table.concat(out, "|")
        ]]
        local a = select(2, native:compile(src):run())
        local b = select(2, lua:compile(src):run())
        ngx.say(a == b, " ", a)
    }
}
--- request
GET /t
--- response_body
true 1,9,key1,val1|17,19|(nested (parens))|12,16|val1=key1; val2=key2; (nested (parens)) end,2|K=val1; key2=val2; (nested (parens)) end,2|4=4; 4=4; (6 (6)) 3,7|key1,val1|key2,val2|false,malformed pattern (ends with '%')



=== TEST 11: per-tenant cache keyed by version
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new()
        local cache = sandbox.new_cache(sb, 100)
        local compiled = 0
        local function source(key, version)
            compiled = compiled + 1
            if version == 3 then return "return +" end
            if version == 4 then return nil, "no such version" end
            return "return '" .. key .. " v" .. version .. "'"
        end
        local function call(v)
            local script, err = cache:fetch("tenant-a", v, source)
            if not script then return "nil (" .. err .. ")" end
            return select(2, script:run())
        end
        ngx.say(call(1), " ", call(1), " compiled ", compiled)
        ngx.say(call(2), " compiled ", compiled)
        ngx.say(call(3), " ", call(3), " compiled ", compiled)
        local live, version = cache:get("tenant-a")
        ngx.say("live ", select(2, live:run()), " version ", version)
        ngx.say(call(4), " ", tostring(cache:get("tenant-a", 1)))
        ngx.say(select(2, cache:set("tenant-b", "x", "return 'b'"):run()))
        cache:delete("tenant-a")
        ngx.say(tostring(cache:get("tenant-a")), " ", call(2), " compiled ", compiled)
    }
}
--- request
GET /t
--- response_body
tenant-a v1 tenant-a v1 compiled 1
tenant-a v2 compiled 2
nil (tenant-a:1: unexpected symbol near '+') nil (tenant-a:1: unexpected symbol near '+') compiled 3
live tenant-a v2 version 2
nil (no such version) nil
b
nil tenant-a v2 compiled 5



=== TEST 12: a host function may run another sandboxed script
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local inner = sandbox.new({ limits = { instructions = 5000 } })
        local spin = inner:compile("while true do end", "inner")
        local outer_script
        local sb = sandbox.new({
            env = {
                run_inner = function() return spin:run() end,
                run_self = function() return outer_script:run() end,
            },
        })
        outer_script = sb:compile([[
            local a, b, c = run_inner()
            local d, e = run_self()
            return a, b, c, d, e, ("x"):rep(2)
        ]], "outer")
        local res = { outer_script:run() }
        for i = 1, 7 do res[i] = tostring(res[i]) end
        ngx.say(table.concat(res, " | "))
    }
}
--- request
GET /t
--- response_body
true | false | instruction budget exceeded (5000 instructions) | instructions | false | script is already running | xx



=== TEST 13: rewrite and access phases
--- config
location = /t {
    rewrite_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local script = sandbox.new():compile("local uri = ... return (uri:gsub('^/t', '/rewritten'))")
        ngx.ctx.uri = select(2, script:run(ngx.var.uri))
    }
    access_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local script = sandbox.new():compile("local ip = ... return ip:find('^127%.') ~= nil")
        if not select(2, script:run(ngx.var.remote_addr)) then
            return ngx.exit(403)
        end
    }
    content_by_lua_block {
        ngx.say(ngx.ctx.uri)
    }
}
--- request
GET /t
--- response_body
/rewritten



=== TEST 14: timers
--- http_config
lua_shared_dict results 1m;
--- config
location = /t {
    content_by_lua_block {
        local function job(premature)
            local sandbox = require "resty.hotffi.sandbox"
            local sb = sandbox.new({ limits = { instructions = 10000 } })
            local a = { sb:compile("return 6 * 7"):run() }
            local b = { sb:compile("while true do end"):run() }
            ngx.shared.results:set("r", tostring(a[2]) .. " " .. b[3])
        end
        assert(ngx.timer.at(0, job))
        for _ = 1, 100 do
            local r = ngx.shared.results:get("r")
            if r then
                ngx.say(r)
                return
            end
            ngx.sleep(0.01)
        end
        ngx.say("timeout")
    }
}
--- request
GET /t
--- response_body
42 instructions



=== TEST 15: log phase
--- config
location = /t {
    content_by_lua_block { ngx.say("hi") }
    log_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new({ env = { log = function(m) ngx.log(ngx.WARN, m) end } })
        sb:compile("log('sandboxed ' .. ('x'):rep(3))"):run()
    }
}
--- request
GET /t
--- response_body
hi
--- error_log
sandboxed xxx



=== TEST 16: init, init_worker, set, header_filter and body_filter
--- http_config
init_by_lua_block {
    local sandbox = require "resty.hotffi.sandbox"
    local sb = sandbox.new({ limits = { instructions = 10000 } })
    sandbox_init_result = table.concat({
        tostring(select(2, sb:compile("return ('i'):rep(2)"):run())),
        tostring(select(3, sb:compile("while true do end"):run())),
    }, " ")
}
init_worker_by_lua_block {
    local sandbox = require "resty.hotffi.sandbox"
    local sb = sandbox.new()
    sandbox_worker_result = select(2, sb:compile("return 'w' .. 1"):run())
}
--- config
location = /t {
    set_by_lua_block $from_set {
        local sandbox = require "resty.hotffi.sandbox"
        return select(2, sandbox.new():compile("return ('s'):upper()"):run())
    }
    header_filter_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local script = sandbox.new():compile("return (...):lower()")
        ngx.header["X-Sandboxed"] = select(2, script:run("HEADER"))
    }
    body_filter_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        if ngx.arg[1] ~= "" then
            local script = sandbox.new():compile("return ((...):gsub('body', 'BODY'))")
            ngx.arg[1] = select(2, script:run(ngx.arg[1]))
        end
    }
    content_by_lua_block {
        ngx.say(sandbox_init_result, " ", sandbox_worker_result, " ",
                ngx.var.from_set, " body")
    }
}
--- request
GET /t
--- response_headers
X-Sandboxed: header
--- response_body
ii instructions w1 S BODY



=== TEST 17: runs counted per tenant class (sandbox.stats(), for resty.hotffi.metrics)
--- config
location = /t {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local free = sandbox.new{ class = "free",
                                  limits = { instructions = 10000,
                                             memory = 1024 * 1024 } }
        local plain = sandbox.new()
        for _, src in ipairs{ "return 1", "while true do end",
                              "return ('x'):rep(4 * 1024 * 1024)",
                              "error('x')" } do
            free:compile(src):run()
        end
        plain:compile("return 1"):run()
        local s = sandbox.stats()
        local f, d = s.free, s.default
        ngx.say(f.ok, " ", f.instructions, " ", f.memory, " ", f.error, " ",
                f.time, " ", f.seconds > 0)
        ngx.say(d.ok, " ", d.error)
        ngx.say(pcall(sandbox.new, { class = 1 }))
    }
}
--- request
GET /t
--- response_body_like
^1 1 1 1 0 true
1 0
false.*option "class" must be a string
