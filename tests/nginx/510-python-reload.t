# Python hot reload without touching nginx: "module?" reads the module's
# file again on every load, so a new configuration key (or __unload and a
# new load) runs the new code while older runtimes keep serving theirs; a
# version that does not compile or whose init fails is refused, and
# everything loaded before keeps working.  Also: swapping versions under
# load loses no call, and unpin is harmless for the loader.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use File::Temp qw(tempdir);

# CPython under valgrind needs its own suppressions (see the file)
$ENV{HOTFFI_TEST_VALGRIND_SUPP} //= "$HotffiTest::REPO/loaders/python/valgrind.supp";

BAIL_OUT("build first: make ($HotffiTest::REPO/build/lib/libhotffi_python.so "
         . "does not exist)")
    unless -e "$HotffiTest::REPO/build/lib/libhotffi_python.so";

# Writable by the workers (user nobody under root), as a deployment
# directory may well be: non-"?" imports then write __pycache__ into it,
# which "?" must not be fooled by.
my $dir = tempdir('hotffi-py-reload-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0777, $dir;

sub write_version {
    my ($text) = @_;
    # write and rename, as a deployment would: a load never sees half a file
    open my $fh, '>', "$dir/hot.py.new" or die "cannot write: $!";
    print {$fh} $text;
    close $fh or die "cannot write: $!";
    rename "$dir/hot.py.new", "$dir/hot.py" or die "cannot rename: $!";
}

# Same length for every good version: the file's size and mtime (in
# seconds) may not change between two versions, __pycache__'s whole test.
sub good_version {
    my ($version) = @_;
    return <<"PY";
import hotffi

VERSION = "$version"


def init(cfg, tq):
    hotffi.serve(tq, lambda req: f"{VERSION}/{cfg}:".encode() + req)
    return 0
PY
}

my $config = <<'CONF';
# GET /call?tag=T[&reload=1][&msg=M]: load hot[?],init,T and call it
location = /call {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local cfg = os.getenv("HOT_DIR") .. "/hot"
                    .. (ngx.var.arg_reload and "?" or "") .. ",init,"
                    .. ngx.var.arg_tag
        local rt, err = hotffi.load("hotffi_python", cfg)
        if not rt then
            ngx.say("load failed: ", err)
            return
        end
        local ok, res, e = rt:x(ngx.var.arg_msg or "x")
        ngx.say(ok and res or ("call failed: " .. tostring(res) .. " "
                               .. tostring(e)))
    }
}

# GET /unload?tag=T: unload hot?,init,T
location = /unload {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local cfg = os.getenv("HOT_DIR") .. "/hot?,init," .. ngx.var.arg_tag
        hotffi.load("hotffi_python", cfg):__unload()
        ngx.say("unloaded")
    }
}

# The pattern for production: each version under its own key; a new one
# replaces the current only once it loaded, then the old one is unloaded
# (its queued calls are still answered).
location = /live {
    content_by_lua_block {
        local live = package.loaded.live
        local rt = require("resty.hotffi").load("hotffi_python", live.cfg)
        local ok, res = rt:x("live")
        if not ok then
            return ngx.exit(500)
        end
        ngx.say(res)
    }
}

location = /swap {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local live = package.loaded.live
        live.gen = live.gen + 1
        local cfg = os.getenv("HOT_DIR") .. "/hot?,init,gen" .. live.gen
        local rt, err = hotffi.load("hotffi_python", cfg)
        if not rt then
            ngx.say("kept ", live.cfg:match("gen%d+"), ": ",
                    err:match("[^\n]+$"))
            return
        end
        local old = hotffi.load("hotffi_python", live.cfg)
        live.cfg = cfg
        old:__unload()
        ngx.say("now gen", live.gen)
    }
}

# unpin: hotffi dlclose()s the loader after unload; it stays (nodelete),
# and so does the interpreter
location = /unpin {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local cfg = os.getenv("HOT_DIR") .. "/hot?,init,unpin"
        -- what is left of earlier runtimes once Lua let go of them
        collectgarbage()
        local base = hotffi.stats().runtimes
        for i = 1, 3 do
            local rt = assert(hotffi.load("hotffi_python", cfg,
                                          { unpin = true }))
            local ok, res = rt:x(tostring(i))
            rt:__unload()
            rt = nil
            -- until libffi_fini() returned and the library was closed
            for _ = 1, 300 do
                collectgarbage()
                if hotffi.stats().runtimes == base then break end
                ngx.sleep(0.01)
            end
            ngx.say(ok, " ", res, " ", hotffi.stats().runtimes == base)
        end
    }
}
CONF

my $http_config = <<'CONF';
init_by_lua_block {
    package.loaded.live = {
        gen = 0,
        cfg = os.getenv("HOT_DIR") .. "/hot?,init,gen0",
    }
}
CONF

my $nginx = HotffiTest::Nginx->new(
    name => 'python reload', config => $config, http_config => $http_config,
    env => { HOT_DIR => $dir });

sub call {
    my ($query) = @_;
    my $res = $nginx->get("/call?$query");
    is($res->{status}, 200, "GET /call?$query: status 200");
    return $res->{content};
}

write_version(good_version('v1'));
$nginx->start;

is(call('reload=1&tag=a'), "v1/a:x\n", 'v1 loaded with "?"');

write_version(good_version('v2'));
is(call('reload=1&tag=a'), "v1/a:x\n",
   'the loaded runtime is cached: still v1');
is(call('reload=1&tag=b'), "v2/b:x\n",
   'a new key reads the file again: v2, though size and mtime may match');
is(call('reload=1&tag=a'), "v1/a:x\n",
   'the v1 runtime keeps its own module and globals');

is($nginx->get('/unload?tag=a')->{content}, "unloaded\n", 'unload v1');
is(call('reload=1&tag=a'), "v2/a:x\n",
   'after __unload the same key loads v2');
is(call('tag=c'), "v2/c:x\n", 'without "?" the last good version is used');

write_version("import hotffi\n\ndef init(cfg, tq)\n    return 0\n");
like(call('reload=1&tag=d'),
     qr/^load failed: libffi_init\(\) of runtime "hotffi_python&\Q$dir\E\/hot\?,init,d" failed: 3/,
     'a syntax error: load returns nil and a message');
like(call('reload=1&tag=d'), qr/\Q$dir\E\/hot.py", line 3\n.*SyntaxError: expected ':'$/s,
     'the message has the SyntaxError, where it is');
wait_until(sub { $nginx->error_log_text =~ /SyntaxError: expected ':'/ }, 5,
           'the SyntaxError in the error log');
is(call('reload=1&tag=b'), "v2/b:x\n", 'the v2 runtime still serves');
is(call('tag=e'), "v2/e:x\n", 'sys.modules still has v2 after the failure');

write_version(<<'PY');
VERSION = "v4"


def init(cfg, tq):
    raise RuntimeError("v4 refuses to start")
PY
like(call('reload=1&tag=f'), qr/^load failed: .* failed: 4/,
     'an init that raises: refused');
is(call('tag=g'), "v2/g:x\n", 'sys.modules still has v2 after that too');

write_version(good_version('v5'));
is(call('reload=1&tag=h'), "v5/h:x\n", 'a fixed version loads');
is(call('reload=1&tag=b'), "v2/b:x\n", 'and v2 is still there');

# Swapping versions while requests flow: no call fails, and each
# generation answers calls (more answers after a swap than the 4 clients
# had in flight: at least one was a call to the new generation).
{
    my $clients = start_clients($nginx, 4, '/live');
    wait_until(sub { clients_answered($clients) >= 5 }, 10,
               'gen0 answering the clients');
    for my $gen (1 .. 6) {
        write_version(good_version("g$gen"));
        is($nginx->get('/swap')->{content}, "now gen$gen\n",
           "swap to generation $gen under load");
        my $seen = clients_answered($clients);
        wait_until(sub { clients_answered($clients) >= $seen + 5 }, 10,
                   "generation $gen answering the clients");
    }
    write_version("def broken(:\n");
    like($nginx->get('/swap')->{content},
         qr/^kept gen6: SyntaxError: invalid syntax$/,
         'a broken generation is refused and the current one kept');
    my @answers = stop_clients($clients);
    my @failed = grep { $_->[0] != 200 } @answers;
    is(scalar @failed, 0, 'no call failed across the swaps ('
                          . @answers . ' calls)')
        or diag(explain([ @failed[0 .. ($#failed < 4 ? $#failed : 4)] ]));
    # gen0 is the v5 code of before; gen N runs gN
    my %gens = map {
        $_->[1] =~ m{^(v5|g\d)/gen(\d):live$} && $1 eq ($2 ? "g$2" : 'v5')
            ? ("gen$2" => 1) : ("odd: $_->[1]" => 1)
    } @answers;
    is(join(' ', sort keys %gens), join(' ', map { "gen$_" } 0 .. 6),
       'every answer came from its generation, and each of gen0-gen6 answered');
    like($nginx->get('/live')->{content}, qr{^g6/gen6:live$},
         'the last good generation serves');
}

write_version(good_version('u1'));
is($nginx->get('/unpin')->{content},
   "true u1/unpin:1 true\ntrue u1/unpin:2 true\ntrue u1/unpin:3 true\n",
   'load, unload and close with unpin, three times');

$nginx->quit;
ok(!$nginx->killed, 'nginx quit by itself');
unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
       'error log is clean');
$nginx->stop;

done_testing();
