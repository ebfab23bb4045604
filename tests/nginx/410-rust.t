# Rust runtimes built with the Rust SDK (sdk/rust/hotffi): the echo and
# words examples and the ctl runtime the tests steer (sdk/rust/ctl).
# What only Rust runtimes do: the exported symbols, a reload of the
# library's code with unpin = true without restarting nginx, answers in C
# memory (CBuf), threads=N, the words example.  What every language does
# (round trips, errors, panics, cancellation, configuration, unload, load,
# nginx reload) is 450-languages.t, for Rust too.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use HotffiScenarios;
use File::Copy qw(copy);

plan(skip_all => 'the Rust runtimes are not run under valgrind')
    if $ENV{HOTFFI_TEST_VALGRIND};

my $lib = "$HotffiTest::REPO/build/lib";
for my $name (qw(rust_echo rust_words rust_ctl rust_reload_a rust_reload_b)) {
    next if -e "$lib/lib$name.so";
    # sdk/rust/rust.mk builds nothing without cargo; say so rather than fail
    my $cargo = grep { -x "$_/cargo" } split(/:/, $ENV{PATH} // ''),
                                       "$ENV{HOME}/.cargo/bin";
    plan(skip_all => 'no cargo (PATH, ~/.cargo/bin): Rust runtimes not built')
        unless $cargo;
    BAIL_OUT("build first: make ($lib/lib$name.so does not exist)");
}

# Only the two entry points are exported; the ABI is left to the dynamic
# linker, and hotffi's own functions are not linked at all (looked up at
# run time), so that the library also loads on lua-resty-ffi.
{
    my $syms = `nm -D --defined-only $lib/librust_echo.so`;
    is(join(' ', sort map { (split)[2] } grep { / T / } split /\n/, $syms),
       'libffi_fini libffi_init', 'rust_echo exports libffi_init and libffi_fini');
    my $undef = `nm -D --undefined-only $lib/librust_echo.so`;
    like($undef, qr/^\s+U ngx_http_lua_ffi_respond$/m,
         'the respond function is left to the dynamic linker');
    unlike($undef, qr/hotffi_/, 'no hotffi-only symbol is linked');
}

# The code reload: version A of a library is loaded with unpin = true and
# answers; it is unloaded and retires (libffi_fini joins its thread, hotffi
# dlclose()s it); version B is renamed over the same file and loaded again:
# the same nginx worker now runs B.  Then back to A, to show it repeats.
{
    my $nginx = HotffiTest::Nginx->new(name => 'rust reload',
        http_config => $HotffiScenarios::LUA, config => <<'CONF');
location = /call {
    content_by_lua_block {
        local path = ngx.config.prefix() .. "rt/libreload.so"
        local rt, err = require("resty.hotffi").load(path, nil,
                                                     { unpin = true })
        if not rt then
            ngx.say(err)
            return
        end
        local ok, res, err = rt:version("")
        ngx.say(res or err)
    }
}
location = /unload {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local path = ngx.config.prefix() .. "rt/libreload.so"
        local rt = assert(hotffi.load(path, nil, { unpin = true }))
        rt:__unload()
        -- closed and freed once its Lua object is gone too
        rt = nil
        ngx.say(closed() and "closed" or "still " .. hotffi.stats().runtimes)
    }
}
CONF
    $nginx->start;
    my $dir = $nginx->prefix . '/rt';
    mkdir $dir or die "mkdir $dir: $!";

    # Never write into a mapped file: a new file, renamed over the old one.
    my $install = sub {
        my ($version) = @_;
        copy("$lib/librust_reload_$version.so", "$dir/libreload.so.tmp")
            or die "copy: $!";
        rename("$dir/libreload.so.tmp", "$dir/libreload.so") or die "rename: $!";
    };
    my $worker;
    my $mapped = sub {
        my @lines = grep { /libreload\.so/ } split /\n/, HotffiTest::_slurp("/proc/$worker/maps");
        return !@lines ? 'not mapped'
             : (grep { /\(deleted\)/ } @lines) ? 'an unlinked file mapped'
             : 'mapped';
    };

    $install->('a');
    is($nginx->get('/call')->{content}, "A 1\n", 'version A answers');
    ($worker) = $nginx->worker_pids;
    ok($worker, "the worker's pid") or BAIL_OUT('no worker process found');
    is($mapped->(), 'mapped', 'version A is mapped');
    is($nginx->get('/call')->{content}, "A 2\n", 'version A keeps its state');
    $install->('b');
    is($nginx->get('/call')->{content}, "A 3\n",
       'a new file changes nothing while the runtime is loaded');
    is($mapped->(), 'an unlinked file mapped', 'A runs from its old file');
    is($nginx->get('/unload')->{content}, "closed\n", 'A unloaded and closed');
    is($mapped->(), 'not mapped', 'the old library is no longer mapped');
    is($nginx->get('/call')->{content}, "B 1\n",
       'loaded again: version B answers, with fresh state');
    is($mapped->(), 'mapped', 'the new file is mapped');

    is($nginx->get('/unload')->{content}, "closed\n", 'B unloaded and closed');
    $install->('a');
    is($nginx->get('/call')->{content}, "A 1\n", 'and back to version A');
    is($worker, ($nginx->worker_pids)[0], 'all in the same worker process');
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
           'error log is clean');
    $nginx->stop;
}

run_tests();

__DATA__

=== TEST 1: answers built in C memory (CBuf), up to 16 MiB
--- config
location = /t {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("rust_ctl"))
        for _, n in ipairs({ 0, 1, 10, 65537, 16777216 }) do
            local ok, res = rt:q("big:" .. n)
            local want = ("0123456789"):rep(math.ceil(n / 10)):sub(1, n)
            ngx.say(n, " ", ok, " ", res == want)
        end
    }
}
--- request
GET /t
--- response_body
0 true true
1 true true
10 true true
65537 true true
16777216 true true



=== TEST 2: the threads serve calls in parallel
--- config
location = /t {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("rust_ctl", "threads=8"))
        local start = ngx.now()
        local slept = require("hotffi_threads").count_true(16, function()
            local ok, res = rt:q("sleep:200")
            return ok and res == "slept"
        end)
        ngx.update_time()
        -- 16 calls on 8 threads, 200 ms each: 2 rounds, not 16
        local took = ngx.now() - start
        ngx.say(slept, " ", took >= 0.39 and took < 2)
    }
}
--- request
GET /t
--- response_body
16 true



=== TEST 3: words: the most frequent words of a text, on the runtime's threads
--- config
location = /t {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("rust_words", "k=3 threads=2"))
        ngx.print(select(2, rt:count("The cat and the hat, and THE bat.")))
        local text = ("alpha beta gamma beta "):rep(25000)
        local threads = {}
        for i = 1, 8 do
            threads[i] = ngx.thread.spawn(function()
                return rt:count(text)
            end)
        end
        for i = 1, 8 do
            local _, ok, res = ngx.thread.wait(threads[i])
            if i == 1 then ngx.print(res) end
        end
        ngx.say(rt:count("caf\195\169 caf\195\169 \255"))
        ngx.say(require("resty.hotffi").load("rust_words", "k=0"))
    }
}
--- request
GET /t
--- response_body
8 5
3 the
2 and
1 bat
100000 3
50000 beta
25000 alpha
25000 gamma
false2not UTF-8: invalid utf-8 sequence of 1 bytes from index 12
nillibffi_init() of runtime "rust_words&k=0" failed: 1: bad configuration "k=0"
