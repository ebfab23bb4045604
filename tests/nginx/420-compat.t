# Runtimes written for lua-resty-ffi, from its ABI description alone (no
# hotffi header, no SDK: tests/compat/), loaded the lua-resty-ffi way
# through `require "resty_ffi"` and ngx.load_ffi: they work unmodified.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Copy ();
use File::Temp ();
use HotffiTest;

plan(skip_all => 'the Go and Rust runtimes are not run under valgrind')
    if $ENV{HOTFFI_TEST_VALGRIND};

my $lib = "$HotffiTest::REPO/build/lib";
my @libs = ('ffi_go_echo', 'ffi_rust_echo');
BAIL_OUT("build first: make ($lib/libffi_go_echo.so does not exist)")
    unless -e "$lib/libffi_go_echo.so";
unless (-e "$lib/libffi_rust_echo.so") {
    # tests/compat/compat.mk builds no Rust without cargo; say so
    my $cargo = grep { -x "$_/cargo" } split(/:/, $ENV{PATH} // ''),
                                       "$ENV{HOME}/.cargo/bin";
    plan(skip_all => 'no cargo (PATH, ~/.cargo/bin): ffi_rust_echo not built')
        unless $cargo;
    BAIL_OUT("build first: make ($lib/libffi_rust_echo.so does not exist)");
}

# Neither library knows hotffi: lua-resty-ffi's four names are all they
# need, and they export nothing but libffi_init.
for my $name (@libs) {
    my $syms = `nm -D $lib/lib$name.so`;
    unlike($syms, qr/hotffi_/, "$name uses no hotffi-only symbol");
    unlike($syms, qr/libffi_fini/, "$name has no libffi_fini");
}

# Without libffi_fini a library cannot say when its threads are gone, but
# the kernel can: with unpin = true, once every thread that served the
# runtime has ended, the library is closed and the next load reads the
# file again (lua-resty-ffi's hot-reload note).  The Rust one, by its
# short name: its 4 polling threads end, then it leaves the worker.
{
    my $nginx = HotffiTest::Nginx->new(name => 'compat unpin', config => <<'CONF');
location = /load {
    content_by_lua_block {
        require "resty_ffi"
        local demo = ngx.load_ffi("ffi_rust_echo", "threads=4", { unpin = true })
        ngx.say(demo:call("hello"))
    }
}
location = /unload {
    content_by_lua_block {
        require "resty_ffi"
        local demo = ngx.load_ffi("ffi_rust_echo", "threads=4", { unpin = true })
        ngx.say(demo:__unload(), " ", demo.finished)
    }
}
CONF
    $nginx->start;
    is($nginx->get('/load')->{content}, "truehello\n", 'loaded with unpin');
    my ($worker) = $nginx->worker_pids;
    my $threads = sub { scalar(() = glob "/proc/$worker/task/*") };
    my $mapped = sub {
        HotffiTest::_slurp("/proc/$worker/maps") =~ /libffi_rust_echo\.so/
    };
    my $before = $threads->();
    ok($mapped->(), 'mapped while loaded');
    is($nginx->get('/unload')->{content}, "true true\n", 'unloaded');
    wait_until(sub { $threads->() == $before - 4 }, 10,
               'the 4 polling threads to see the stop and end');
    wait_until(sub { !$mapped->() }, 15,
               'the library without libffi_fini to be closed');
    is($nginx->get('/load')->{content}, "truehello\n", 'and loads again');
    unlike($nginx->error_log_text, qr/\[(warn|error|alert|crit)\]/,
           'nothing to warn about');
    $nginx->stop;
}

# New code from disk: a C and a Rust library, each loaded by a path whose
# file is then overwritten in place (same inode: were the old mapping still
# there, loading the path again would reuse it) with another build.
{
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    chmod 0755, $dir;
    my %first = (c => 'ffi_c_echo', rust => 'ffi_rust_echo');
    for my $lang (sort keys %first) {
        File::Copy::copy("$lib/lib$first{$lang}.so", "$dir/libswap_$lang.so")
            or die "copy: $!";
    }
    my $nginx = HotffiTest::Nginx->new(name => 'compat new code',
                                       config => <<"CONF");
location = /call {
    content_by_lua_block {
        require "resty_ffi"
        local path = "$dir/libswap_" .. ngx.var.arg_lang .. ".so"
        local demo = ngx.load_ffi(path, nil, { unpin = true })
        ngx.say(demo:call("build"))
    }
}
location = /unload {
    content_by_lua_block {
        require "resty_ffi"
        local path = "$dir/libswap_" .. ngx.var.arg_lang .. ".so"
        ngx.say(ngx.load_ffi(path, nil, { unpin = true }):__unload())
    }
}
CONF
    $nginx->start;
    my %said = (c => "truea\n", rust => "truebuild\n");
    for my $lang (sort keys %first) {
        is($nginx->get("/call?lang=$lang")->{content}, $said{$lang},
           "$lang: the first build answers");
        my ($worker) = $nginx->worker_pids;
        my $mapped = sub {
            HotffiTest::_slurp("/proc/$worker/maps") =~ /libswap_$lang\.so/
        };
        ok($mapped->(), "$lang: mapped while loaded");
        is($nginx->get("/unload?lang=$lang")->{content}, "true\n",
           "$lang: unloaded");
        wait_until(sub { !$mapped->() }, 15, "$lang: the library closed");
        File::Copy::copy("$lib/libffi_c_echo_b.so", "$dir/libswap_$lang.so")
            or die "copy: $!";
        is($nginx->get("/call?lang=$lang")->{content}, "trueb\n",
           "$lang: the new file's code answers");
    }
    $nginx->stop;
}

# A thread that outlives the grace period: the library stays mapped, one
# warning says why, and nothing breaks.
{
    my $nginx = HotffiTest::Nginx->new(
        name => 'compat lingering thread',
        env => { HOTFFI_UNPIN_GRACE_MS => 300 },
        config => <<'CONF');
location = /t {
    content_by_lua_block {
        require "resty_ffi"
        local demo = ngx.load_ffi("ffi_c_echo", "linger=3000", { unpin = true })
        ngx.say(demo:call("build"))
        ngx.say(demo:__unload())
        ngx.say(ngx.load_ffi("ffi_c_echo", "other"):call("still"))
    }
}
CONF
    $nginx->start;
    is($nginx->get('/t')->{content}, "truea\ntrue\ntruestill\n",
       'served, unloaded, and the library serves again');
    my ($worker) = $nginx->worker_pids;
    wait_until(sub { $nginx->error_log_text =~ /stays mapped/ }, 15,
               'the warning that the library stays');
    my @warnings = $nginx->error_log_text
        =~ /\[warn\][^\n]*"ffi_c_echo&linger=3000" unloaded, but a thread/g;
    is(scalar @warnings, 1, 'one warning, naming the runtime');
    like(HotffiTest::_slurp("/proc/$worker/maps"), qr/libffi_c_echo\.so/,
         'still mapped');
    $nginx->stop;
}

# Lua helpers of the blocks, the same checks for the Go and the Rust
# library: round trips of every kind of payload, an error and the
# configuration; 100 calls at once; unload and a call after it.
our $helpers = <<'LUA';
init_by_lua_block {
    function round_trips(demo)
        ngx.say(demo:call("hello"))
        local bin = "a\0b\255\0\0z"
        local ok, res = demo:call(bin)
        ngx.say(ok, " ", res == bin)
        ok, res = demo:call("")
        ngx.say(ok, " [", res, "]")
        local big = ("\0xyz"):rep(262144)
        ok, res = demo:call(big)
        ngx.say(ok, " ", #res, " ", res == big)
        ngx.say(demo:call("fail:no good"))
        ngx.say(demo:call("cfg"))
    end

    function concurrent_then_unload(demo)
        ngx.say(require("hotffi_threads").count_true(100, function(i)
            local ok, res = demo:call(("x"):rep(i * 100))
            return ok and #res == i * 100
        end))
        ngx.say(demo:__unload())
        ngx.say(demo:call("late"))
    end
}
LUA

run_tests();

__DATA__

=== TEST 1: Go: ngx.load_ffi, round trips, rc, configuration, cache
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        require "resty_ffi"
        local demo = ngx.load_ffi("ffi_go_echo")
        round_trips(demo)
        ngx.say(ngx.load_ffi("ffi_go_echo", '{"a":1}'):call("cfg"))
        ngx.say(ngx.load_ffi("ffi_go_echo") == demo)
    }
}
--- request
GET /t
--- response_body
truehello
true true
true []
true 1048576 true
false1no good
true<nil>
true{"a":1}
true



=== TEST 2: Go: concurrent calls, then unload
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        require "resty_ffi"
        local demo = ngx.load_ffi("ffi_go_echo", "c", { max_queue = 4096 })
        concurrent_then_unload(demo)
    }
}
--- request
GET /t
--- response_body
100
true
falsetask queue is finished



=== TEST 3: Rust: ngx.load_ffi, round trips, rc, configuration, concurrency
--- http_config eval
$::helpers
--- config
location = /t {
    content_by_lua_block {
        require "resty_ffi"
        local demo = ngx.load_ffi("ffi_rust_echo", "threads=4")
        round_trips(demo)
        ngx.say(ngx.load_ffi("ffi_rust_echo"):call("cfg"))
        concurrent_then_unload(demo)
    }
}
--- request
GET /t
--- response_body
truehello
true true
true []
true 1048576 true
false1no good
truethreads=4
true<nil>
100
true
falsetask queue is finished
