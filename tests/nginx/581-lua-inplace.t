# In-place reload of a Lua service (rt:__reload) edited on disk: the old
# version's VM finishes the calls it took, calls arriving meanwhile wait
# in the queue, its retire() hands a value to the new version's init in a
# fresh VM (string.buffer: tables, strings, numbers, booleans exactly).
# A new version that does not compile, or whose init raises, rolls back
# to the old code (not the broken file) with its state; a retire() that
# raises or returns what cannot cross (a function, a cdata) fails the
# reload and the very same VM serves on, state untouched.  Under load no
# call fails; after a hundred reloads one VM is alive.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use HotffiReload;

my $LIB = "$HotffiTest::REPO/build/lib/libhotffi_lua.so";
BAIL_OUT("build first: make ($LIB does not exist)") unless -e $LIB;

my $dir = deploy_dir('hotffi-lua-inplace', 0777);

sub write_file { deploy_text($_[0], "$dir/counter.lua") }

# A counter: every answer is "<tag> <count>"; the count (and a nested
# table, to check it crosses exactly) go to the next version through
# retire() and init(cfg, state).  $retire replaces retire's body.
sub counter {
    my ($tag, $retire) = @_;
    $retire //= 'return { count = count, nested = nested }';
    return <<"LUA";
local hotffi = require "hotffi"
local TAG = "$tag"
local count, nested = 0, nil
local M = {}

function M.init(cfg, state)
    if cfg == "fail" then error("told to fail by cfg") end
    count = state and state.count or 0
    nested = state and state.nested
        or { list = { 1, 2.5, "x\\0y", true, false }, deep = { n = -0 } }
    hotffi.serve(function(req)
        if req == "nested" then
            local l = nested.list
            return string.format("%d %s %q %s %s %s", #l, l[2], l[3],
                tostring(l[4]), tostring(l[5]), 1 / nested.deep.n)
        end
        count = count + 1
        return TAG .. " " .. count
    end)
end

function M.retire()
    $retire
end

return M
LUA
}

# the worker's threads named hotffi-lua/N, read without a fork (a forked
# child would leave valgrind a log of its own)
our $THREADS = <<'LUA';
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

my $config = reload_locations(
    load => 'require("resty.hotffi").load("hotffi_lua",
                 os.getenv("LUA_DIR") .. "/counter?,init,x",
                 { name = "luacount" })',
    reload_args => <<'LUA') . <<'CONF';
local lib, cfg = nil, ngx.var.arg_cfg
if cfg then cfg = os.getenv("LUA_DIR") .. "/counter?,init," .. cfg end
LUA
location = /nested {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("hotffi_lua",
            os.getenv("LUA_DIR") .. "/counter?,init,x", { name = "luacount" }))
        ngx.say(select(2, rt:q("nested")))
    }
}
location = /vms {
    content_by_lua_block {
        local ffi = require "ffi"
        pcall(ffi.cdef, "size_t hotffi_lua_vms_alive(void);")
        local lib = ffi.load(os.getenv("LUA_LIB"))
        local n = 0
        n = lua_threads()
        ngx.say("vms ", tonumber(lib.hotffi_lua_vms_alive()), " threads ", n)
    }
}
CONF

write_file(counter('v1'));
my $nginx = HotffiTest::Nginx->new(name => 'lua inplace', config => $config,
                                   http_config => $THREADS,
                                   env => { LUA_DIR => $dir,
                                            LUA_LIB => $LIB });
$nginx->start;

my ($status, $text);
reload_story($nginx, tags => [qw(v1 v2)],
             switch => sub { write_file(counter('v2')); return '/reload' },
             fail => sub {
                 write_file("local x = = 1\n");
                 return ('/reload', qr/failed: 3: \S*counter\.lua:1: unexpected symbol near '='/);
             },
             after_handover => sub {
                 is_deeply([ body($nginx, '/nested') ],
                           [ 200, '5 2.5 "x\\0y" true false -inf' ],
                           'a nested table crossed exactly (NUL, -0, booleans)');
             });

# ---- a new version that raises while it loads, or in init: rolled back
# to the code the old version ran, with its state
write_file(counter('bad') =~ s/^return M$/error("this version refuses to start")\nreturn M/mr);
($status, $text) = body($nginx, '/reload');
is($status, 500, 'a version that raises while loading fails the reload');
like($text, qr/failed: 3: \S*counter\.lua:\d+: this version refuses to start\nstack traceback:.*; version 3 serves again$/s,
     'with the error and its traceback');
is_deeply([ body($nginx, '/count') ], [ 200, 'v2 4' ], 'v2 again, count kept');

write_file(counter('v3'));
($status, $text) = body($nginx, '/reload?cfg=fail');
is($status, 500, 'an init that raises fails the reload');
like($text, qr/failed: 4: \S*counter\.lua:\d+: told to fail by cfg\nstack traceback:.*; version 3 serves again$/s,
     'with init\'s error and traceback');
is_deeply([ body($nginx, '/count') ], [ 200, 'v2 5' ],
          'v2 (not v3 from disk) again, count kept');
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 3 7' ],
          'a good version after three failures (versions 4, 5, 6)');
is_deeply([ body($nginx, '/count') ], [ 200, 'v3 6' ], 'v3 counts on');

# ---- v4's retire() refuses three times (a function in its state, an
# error, a cdata), then hands over: each refusal fails the reload and the
# very same VM serves on, its count untouched
write_file(counter('v4', <<'LUA'));
tries = (tries or 0) + 1
    if tries == 1 then return { count = count, f = print } end
    if tries == 2 then error("cannot hand over yet") end
    if tries == 3 then
        return { count = count, p = require("ffi").new("int[1]") }
    end
    return { count = count, nested = nested }
LUA
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 7 8' ], 'into v4');
is_deeply([ body($nginx, '/count') ], [ 200, 'v4 7' ], 'v4 counts on');
write_file(counter('v5'));
($status, $text) = body($nginx, '/reload');
is($status, 500, 'a function in the state fails the reload');
like($text, qr/^error: libffi_retire\(\) of version 8 failed: 5: the state retire\(\) returned cannot cross to the next version: cannot serialize 'function' \(tables, strings, numbers and booleans can\); version 8 serves again$/,
     'the error says what cannot cross');
is_deeply([ body($nginx, '/count') ], [ 200, 'v4 8' ],
          'v4, the very VM, serves on: its count untouched');
($status, $text) = body($nginx, '/reload');
is($status, 500, 'a retire() that raises fails the reload');
like($text, qr/failed: 5: \S*counter\.lua:\d+: cannot hand over yet\nstack traceback:.*; version 8 serves again$/s,
     'with its error and traceback');
is_deeply([ body($nginx, '/count') ], [ 200, 'v4 9' ],
          'v4 serves on, count untouched');
($status, $text) = body($nginx, '/reload');
is($status, 500, 'a cdata in the state fails the reload');
like($text, qr/cannot serialize 'cdata'.*; version 8 serves again$/s,
     'the error says so');
is_deeply([ body($nginx, '/count') ], [ 200, 'v4 10' ], 'v4 serves on');
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 8 12' ],
          'its fourth retire() hands over: into v5');
is_deeply([ body($nginx, '/count') ], [ 200, 'v5 11' ],
          'v5 with v4\'s count');

# ---- reloads under load: none fails, the count never restarts
reload_under_load($nginx, reloads => 10, pause => 0.02,
                  before_each => sub {
                      my ($i) = @_;
                      write_file(counter("L$i"));
                      return "L$i";
                  },
                  refuse => {
                      at     => 5,
                      before => sub { write_file("local x = = 1\n") },
                      error  => qr/unexpected symbol/,
                  },
                  answered_by => 3);

# ---- a hundred reloads: one VM and one thread alive after them
is_deeply([ body($nginx, '/vms') ], [ 200, 'vms 1 threads 1' ],
          'one VM and one serving thread');
my $ok = 0;
for my $i (1 .. 100) {
    write_file(counter("H$i"));
    $ok++ if (body($nginx, '/reload'))[0] == 200;
}
is($ok, 100, 'a hundred reloads');
is((body($nginx, '/count'))[1] =~ /^H100 \d+$/ ? 1 : 0, 1,
   'the last version answers');
is_deeply([ body($nginx, '/vms') ], [ 200, 'vms 1 threads 1' ],
          'still one VM and one serving thread: every old VM was closed');

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
$nginx->stop;

done_testing;
