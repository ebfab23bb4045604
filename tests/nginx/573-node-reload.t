# Node.js hot reload without touching nginx: every runtime version has its
# own Environment, so "module?" (any load, in fact) reads the module and
# its dependencies from disk again; a new key runs the new code while older
# runtimes keep theirs; a version that does not compile or whose init
# throws is refused and the others keep serving; swapping versions under
# load (load the new key, then unload the old) loses no call; unload ends
# the version's own handles (an interval, a server) with it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use File::Temp qw(tempdir);

# V8 (its JIT, its platform threads) under valgrind is too slow and noisy
# to say anything about hotffi
plan(skip_all => "the Node.js runtimes are not run under valgrind: V8's "
               . "JIT and platform threads drown it")
    if $ENV{HOTFFI_TEST_VALGRIND};

BAIL_OUT("build first: make ($HotffiTest::REPO/build/lib/libhotffi_node.so "
         . "does not exist)")
    unless -e "$HotffiTest::REPO/build/lib/libhotffi_node.so";

my $dir = tempdir('hotffi-node-reload-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;

sub write_text {
    my ($name, $text) = @_;
    # write and rename, as a deployment would: a load never sees half a file
    open my $fh, '>', "$dir/$name.new" or die "cannot write: $!";
    print {$fh} $text;
    close $fh or die "cannot write: $!";
    rename "$dir/$name.new", "$dir/$name" or die "cannot rename: $!";
}

# hot.js answers "<its tag>/<dep's tag>/<cfg>:<req>"; dep.js is a
# dependency, re-read too.  Each keeps an interval running, which unload
# must end with the version.
sub good_version {
    my ($tag) = @_;
    write_text('dep.js', "exports.TAG = 'd$tag';\n");
    write_text('hot.js', <<"JS");
'use strict';
const hotffi = require('hotffi');
const dep = require('./dep');
exports.init = (cfg, tq) => {
    setInterval(() => {}, 1000);
    hotffi.serve(tq, async (req) => `$tag/\${dep.TAG}/\${cfg}:\${req}`);
    return 0;
};
JS
}

my $config = <<'CONF';
# GET /call?tag=T[&msg=M]: load hot?,init,T and call it
location = /call {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local cfg = os.getenv("HOT_DIR") .. "/hot?,init," .. ngx.var.arg_tag
        local rt, err = hotffi.load("hotffi_node", cfg)
        if not rt then
            ngx.say("load failed: ", err)
            return
        end
        local ok, res, e = rt:x(ngx.var.arg_msg or "x")
        ngx.say(ok and res or ("call failed: " .. tostring(res) .. " "
                               .. tostring(e)))
    }
}

location = /unload {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local cfg = os.getenv("HOT_DIR") .. "/hot?,init," .. ngx.var.arg_tag
        hotffi.load("hotffi_node", cfg):__unload()
        ngx.say("unloaded")
    }
}

# each version under its own key; the new one replaces the current once it
# loaded, then the old one is unloaded (its queued calls are still answered)
location = /live {
    content_by_lua_block {
        local live = package.loaded.live
        local rt = require("resty.hotffi").load("hotffi_node", live.cfg)
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
        local rt, err = hotffi.load("hotffi_node", cfg)
        if not rt then
            ngx.say("kept ", live.cfg:match("gen%d+"), ": ",
                    err:match("[^\n]+$"))
            return
        end
        local old = hotffi.load("hotffi_node", live.cfg)
        live.cfg = cfg
        old:__unload()
        ngx.say("now gen", live.gen)
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
    name => 'node reload', config => $config, http_config => $http_config,
    env => { HOT_DIR => $dir });

sub call {
    my ($query) = @_;
    my $res = $nginx->get("/call?$query");
    is($res->{status}, 200, "GET /call?$query: status 200");
    return $res->{content};
}

good_version('v1');
$nginx->start;

is(call('tag=a'), "v1/dv1/a:x\n", 'v1 loaded');
good_version('v2');
is(call('tag=a'), "v1/dv1/a:x\n", 'the loaded runtime is cached: still v1');
is(call('tag=b'), "v2/dv2/b:x\n", 'a new key reads module and dependency again');
is(call('tag=a'), "v1/dv1/a:x\n", 'v1 keeps its own module and dependency');
is($nginx->get('/unload?tag=a')->{content}, "unloaded\n", 'unload v1');
is(call('tag=a'), "v2/dv2/a:x\n", 'after __unload the same key loads v2');

write_text('hot.js', "exports.init = (cfg, tq) => {\n");
like(call('tag=d'), qr/^load failed: libffi_init\(\) of runtime "hotffi_node&\Q$dir\E\/hot\?,init,d" failed: 3: .*SyntaxError/s,
     'a syntax error: load returns nil and the SyntaxError');
write_text('hot.js', "exports.init = () => { throw new Error('v4 refuses'); };\n");
like(call('tag=f'), qr/^load failed: .* failed: 4: .*Error: v4 refuses/s,
     'an init that throws: refused');
is(call('tag=b'), "v2/dv2/b:x\n", 'v2 still serves');

# Swapping versions while requests flow: no call fails, and each
# generation answers calls.
{
    good_version('g0');
    my $clients = start_clients($nginx, 4, '/live');
    wait_until(sub { clients_answered($clients) >= 5 }, 10,
               'gen0 answering the clients');
    for my $gen (1 .. 5) {
        good_version("g$gen");
        is($nginx->get('/swap')->{content}, "now gen$gen\n",
           "swap to generation $gen under load");
        my $seen = clients_answered($clients);
        wait_until(sub { clients_answered($clients) >= $seen + 5 }, 10,
                   "generation $gen answering the clients");
    }
    write_text('hot.js', "exports.init = (cfg, tq) => {\n");
    like($nginx->get('/swap')->{content}, qr/^kept gen5: /,
         'a broken generation is refused and the current one kept');
    my @answers = stop_clients($clients);
    my @failed = grep { $_->[0] != 200 } @answers;
    is(scalar @failed, 0, 'no call failed across the swaps ('
                          . @answers . ' calls)')
        or diag(explain([ @failed[0 .. ($#failed < 4 ? $#failed : 4)] ]));
    my %gens = map {
        $_->[1] =~ m{^g(\d)/dg\1/gen\1:live$} ? ("gen$1" => 1)
                                               : ("odd: $_->[1]" => 1)
    } @answers;
    is(join(' ', sort keys %gens), join(' ', map { "gen$_" } 0 .. 5),
       'every answer came from its generation, and each of gen0-gen5 answered');
}

$nginx->quit;
ok(!$nginx->killed, 'nginx quit by itself (every version and its '
                    . 'interval ended)');
unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/,
       'no alert in the error log');
$nginx->stop;

done_testing();
