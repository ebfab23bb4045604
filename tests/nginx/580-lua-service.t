# Lua services (loaders/lua, libhotffi_lua.so): Lua code in VMs of its own
# on threads of its own.  Binary payloads both ways; 200 concurrent calls
# over four VMs; errors fail their call with rc and traceback and the
# service serves on; an instruction budget; shared dicts; every way a load fails; the
# event loop serving other requests while a service burns CPU; unload
# with every serving thread and VM gone.  Clean under valgrind
# (HOTFFI_TEST_VALGRIND=1), leaks included.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use HotffiReload qw(body deploy_dir deploy_text);

my $LIB = "$HotffiTest::REPO/build/lib/libhotffi_lua.so";
BAIL_OUT("build first: make ($LIB does not exist)") unless -e $LIB;

my $dir = deploy_dir('hotffi-lua-svc', 0777);
deploy_text($_->[1], "$dir/$_->[0].lua") for
    [ echo => <<'LUA' ],
local hotffi = require "hotffi"
return {
    init = function(cfg)
        hotffi.serve(function(req) return req end,
                     { threads = tonumber(cfg) or 1 })
    end,
}
LUA
    [ errors => <<'LUA' ],
local hotffi = require "hotffi"
local M = {}
local function deeper(x) error("boom " .. x) end
function M.init()
    hotffi.serve(function(req)
        if req == "error" then deeper("here") end
        if req == "table" then error({}) end
        if req == "rc" then return "told to fail", 7 end
        if req == "badret" then return {} end
        if req == "loop" then while true do end end
        if req == "vm" then return tostring(_G.vm_id) end
        return "ok " .. req
    end, { budget = 1000000 })
end
return M
LUA
    [ burn => <<'LUA' ],
local hotffi = require "hotffi"
return {
    init = function(cfg)
        hotffi.serve(function(req)
            -- spins until the file exists: the caller makes it only once
            -- the event loop answered other requests meanwhile
            local spins, x = 0, 0
            while true do
                for i = 1, 100000 do x = (x + i) % 7919 end
                spins = spins + 1
                local f = io.open(req, "r")
                if f then f:close() return "spun " .. spins end
            end
        end)
    end,
}
LUA
    [ shared => <<'LUA' ],
local hotffi = require "hotffi"
return {
    init = function()
        local d = assert(hotffi.shared("svc"))
        hotffi.serve(function(req)
            if req == "missing" then
                return select(2, hotffi.shared("nope"))
            end
            local n = assert(d:incr("hits", 1, 0))
            assert(d:set("from_svc", "s\0x", 0, 7))
            assert(d:add("once", true) or n > 1)
            local v, flags = d:get("from_worker")
            return string.format("%d %s %s %s", n, tostring(v),
                                 tostring(flags), tostring(d:get("gone")))
        end)
    end,
}
LUA
    [ tag => <<'LUA' ],
local hotffi = require "hotffi"
return { init = function() hotffi.serve(function() return "v1" end) end }
LUA
    [ syntax => "local x = = 1\n" ],
    [ throws => "return { init = function() error('init refuses') end }\n" ],
    [ noserve => "return { init = function() end }\n" ],
    [ ffi => <<'LUA' ];
local hotffi = require "hotffi"
local ffi = require "ffi"
ffi.cdef[[ unsigned long crc32(unsigned long crc, const char *buf,
                               unsigned len); ]]
local z = ffi.load("z")
return {
    init = function()
        hotffi.serve(function(req)
            return string.format("%08x %s", tonumber(z.crc32(0, req, #req)),
                                 jit.version)
        end, { threads = 2 })
    end,
}
LUA

# the worker's threads named hotffi-lua/N, read without a fork (a forked
# child would leave valgrind a log of its own)
our $THREADS = <<'LUA';
lua_shared_dict svc 1m;
init_by_lua_block {
    local ffi = require "ffi"
    ffi.cdef [[
        typedef struct { uint64_t ino; int64_t off; unsigned short reclen;
                         unsigned char type; char name[256]; } hlt_dirent;
        void *opendir(const char *name);
        hlt_dirent *readdir(void *dir);
        int closedir(void *dir);
    ]]
    function lua_threads()
        local task = "/proc/" .. ngx.worker.pid() .. "/task/"
        local d = ffi.C.opendir(task)
        assert(d ~= nil, "opendir " .. task)
        local n = 0
        while true do
            local e = ffi.C.readdir(d)
            if e == nil then break end
            local f = io.open(task .. ffi.string(e.name) .. "/comm")
            if f then
                if (f:read("*l") or ""):find("^hotffi%-lua/") then
                    n = n + 1
                end
                f:close()
            end
        end
        ffi.C.closedir(d)
        return n
    end
}
LUA

my $config = <<'CONF';
location = /payloads {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("hotffi_lua",
            os.getenv("LUA_DIR") .. "/echo,init,2"))
        local all = {}
        for i = 0, 255 do all[#all + 1] = string.char(i) end
        all = table.concat(all)
        local big = ("0123456789abcdef\0"):rep(61681):sub(1, 1048576)
        for _, p in ipairs({ "hello", "a\0b\255\0\0z", all, big }) do
            local ok, res = rt:echo(p)
            ngx.say(ok, " ", #res, " ", res == p)
        end
        local ok, res = rt:echo("")
        ngx.say(ok, " [", res, "]")
        ok, res = rt:echo()
        ngx.say(ok, " [", tostring(res), "]")
    }
}
location = /concurrent {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("hotffi_lua",
            os.getenv("LUA_DIR") .. "/echo,init,4"))
        local threads = {}
        for i = 1, 200 do
            threads[i] = ngx.thread.spawn(function()
                local p = ("call " .. i .. "\0"):rep(i)
                local ok, res = rt:echo(p)
                return ok and res == p
            end)
        end
        local good = 0
        for i = 1, 200 do
            local _, ok = ngx.thread.wait(threads[i])
            if ok then good = good + 1 end
        end
        local vms = 0
        vms = lua_threads()
        ngx.say(good, " answered right by ", vms, " serving threads")
        -- in place, under calls: four fresh VMs take over from the four
        for i = 1, 50 do
            threads[i] = ngx.thread.spawn(function()
                return rt:echo("again " .. i)
            end)
        end
        local res = assert(rt:__reload{})
        good = 0
        for i = 1, 50 do
            local _, ok, r = ngx.thread.wait(threads[i])
            if ok and r == "again " .. i then good = good + 1 end
        end
        ngx.say(good, " answered across reload ", res.from, " -> ", res.to,
                ", ", lua_threads(), " serving threads")
    }
}
location = /errors {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("hotffi_lua",
            os.getenv("LUA_DIR") .. "/errors"))
        local function show(...)
            local ok, rc, res = ...
            ngx.say(ok, " ", rc, " ", (tostring(res):gsub("\n.*", "")))
            return res
        end
        local tb = show(rt:q("error"))
        ngx.say(tb:find("stack traceback:", 1, true) ~= nil,
                " ", tb:find("in function 'deeper'", 1, true) ~= nil)
        show(rt:q("table"))
        show(rt:q("rc"))
        show(rt:q("badret"))
        show(rt:q("loop"))
        ngx.say(rt:q("still"))
    }
}
location = /loads {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local d = os.getenv("LUA_DIR")
        for _, cfg in ipairs({ d .. "/syntax", d .. "/throws",
                               d .. "/noserve", d .. "/missing",
                               d .. "/echo,no-such", d .. "/echo,1bad",
                               "" }) do
            local rt, err = hotffi.load("hotffi_lua", cfg)
            local e = tostring(err):gsub("\n.*", "")
            local at = e:find(d, 1, true)
            while at do
                e = e:sub(1, at - 1) .. "D" .. e:sub(at + #d)
                at = e:find(d, 1, true)
            end
            ngx.say(e)
        end
    }
}
location = /ffi {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("hotffi_lua",
            os.getenv("LUA_DIR") .. "/ffi"))
        ngx.say(rt:crc("hello"))
    }
}
location = /shared {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("hotffi_lua",
            os.getenv("LUA_DIR") .. "/shared"))
        local dict = ngx.shared.svc
        dict:set("from_worker", 42.5, 0, 3)
        dict:set("gone", "x")
        dict:delete("gone")
        ngx.say(select(2, rt:q("")))
        ngx.say(select(2, rt:q("")))
        local v, flags = dict:get("from_svc")
        ngx.say(v == "s\0x", " ", flags, " ", dict:get("once"))
        ngx.say(select(2, rt:q("missing")))
    }
}
location = /kept {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local d = os.getenv("LUA_DIR")
        local function once(cfg)
            local rt = assert(hotffi.load("hotffi_lua", d .. cfg))
            local _, res = rt:q("")
            rt:__unload()
            return res
        end
        local out = { once("/tag") }
        local f = assert(io.open(d .. "/tag.lua.new", "w"))
        f:write((assert(io.open(d .. "/tag.lua")):read("*a")
                 :gsub('"v1"', '"v2"')))
        f:close()
        assert(os.rename(d .. "/tag.lua.new", d .. "/tag.lua"))
        out[#out + 1] = once("/tag")        -- no "?": the code read first
        out[#out + 1] = once("/tag?")       -- "?": the file as it is now
        ngx.say(table.concat(out, " "))
    }
}
location = /cheap {
    content_by_lua_block { ngx.say("cheap") }
}
location = /burn {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("hotffi_lua",
            os.getenv("LUA_DIR") .. "/burn"))
        local flag = os.getenv("LUA_DIR") .. "/stop"
        os.remove(flag)
        local done
        local th = ngx.thread.spawn(function()
            local ok, res = rt:burn(flag, 300)
            done = true
            return ok, res
        end)
        -- the service burns CPU; the event loop answers meanwhile
        local cheap = 0
        for _ = 1, 20 do
            local r = ngx.location.capture("/cheap")
            if r.body == "cheap\n" and not done then cheap = cheap + 1 end
        end
        assert(io.open(flag, "w")):close()
        local _, ok, res = ngx.thread.wait(th)
        ngx.say(cheap, " cheap answers while it burned; ", ok, " ",
                res:match("^spun %d+$") ~= nil)
    }
}
location = /unload {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local lib = require("ffi").load(os.getenv("LUA_LIB"))
        require("ffi").cdef("size_t hotffi_lua_vms_alive(void);")
        local function serving()
            local n = 0
            n = lua_threads()
            return n
        end
        ngx.say("before: threads ", serving(), " vms ",
                tonumber(lib.hotffi_lua_vms_alive()))
        for _, rt in ipairs(hotffi.list and hotffi.list() or {}) do
            rt:__unload()
        end
        for _, name in ipairs({ "echo,init,2", "echo,init,4", "errors",
                                "burn", "ffi", "shared" }) do
            local rt = hotffi.load("hotffi_lua",
                                   os.getenv("LUA_DIR") .. "/" .. name)
            if rt then rt:__unload() end
        end
        for _ = 1, 500 do
            if serving() == 0 and lib.hotffi_lua_vms_alive() == 0 then
                break
            end
            ngx.sleep(0.01)
        end
        ngx.say("after: threads ", serving(), " vms ",
                tonumber(lib.hotffi_lua_vms_alive()))
    }
}
CONF

my $nginx = HotffiTest::Nginx->new(name => 'lua service', config => $config,
                                   http_config => $THREADS,
                                   env => { LUA_DIR => $dir,
                                            LUA_LIB => $LIB });
$nginx->start;

is((body($nginx, '/payloads'))[1], join("\n",
   'true 5 true', 'true 7 true', 'true 256 true', 'true 1048576 true',
   'true []', 'true [nil]'),
   'binary payloads cross both ways exactly; "" and no request');

is((body($nginx, '/concurrent'))[1],
   "200 answered right by 6 serving threads\n"
   . '50 answered across reload 1 -> 2, 6 serving threads',
   '200 concurrent calls over four VMs (six with the echo of two), each '
   . 'answered with its own bytes; 50 more across an in-place reload');

is((body($nginx, '/errors'))[1], join("\n",
   "false 2 ${dir}/errors.lua:3: boom here",
   'true true',
   'false 2 (error object is a table value)',
   'false 7 told to fail',
   'false 2 the handler returned a table: a string, a number or nil '
   . 'expected',
   'false 2 instruction budget exceeded',
   'trueok still'),
   'errors fail their call with rc and traceback; the service serves on');

is((body($nginx, '/loads'))[1], join("\n",
   'libffi_init() of runtime "hotffi_lua&D/syntax" failed: 3: '
   . "D/syntax.lua:1: unexpected symbol near '='",
   'libffi_init() of runtime "hotffi_lua&D/throws" failed: 4: '
   . 'D/throws.lua:1: init refuses',
   'libffi_init() of runtime "hotffi_lua&D/noserve" failed: 4: '
   . 'D/noserve.lua: init() did not call hotffi.serve()',
   'libffi_init() of runtime "hotffi_lua&D/missing" failed: 3: '
   . 'cannot open "D/missing.lua": No such file or directory',
   'libffi_init() of runtime "hotffi_lua&D/echo,no-such" failed: 1: '
   . 'bad function name "no-such"',
   'libffi_init() of runtime "hotffi_lua&D/echo,1bad" failed: 1: '
   . 'bad function name "1bad"',
   'libffi_init() of runtime "hotffi_lua&" failed: 1: '
   . 'no module: "module[?][,function[,cfg]]" expected'),
   'every way a load fails says why, with its rc');

like((body($nginx, '/ffi'))[1], qr/^true3610a686 LuaJIT 2\.1/,
     'LuaJIT FFI to a system library (zlib) inside the service');

is((body($nginx, '/shared'))[1], join("\n",
   '1 42.5 3 nil', '2 42.5 3 nil', 'true 7 true',
   'no lua_shared_dict "nope"'),
   'hotffi.shared(): a lua_shared_dict read and written from the service');

is((body($nginx, '/kept'))[1], 'v1 v1 v2',
   'without "?" the code read first is kept; with "?" the file is read again');

is((body($nginx, '/burn'))[1], '20 cheap answers while it burned; true true',
   'the event loop serves other requests while a service burns CPU');

is((body($nginx, '/unload'))[1], "before: threads 11 vms 11\n"
   . 'after: threads 0 vms 0',
   'unload: every serving thread and every VM gone');

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/,
       'no alert in the error log');
$nginx->stop;

done_testing;
