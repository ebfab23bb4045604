# resty.hotffi.code with the Redis source: what is refused, with which
# error, while the old version keeps serving -- a syntax error, an error at
# load, a bad signature, an unsigned, corrupted or garbled bundle, a
# replaced FFI module, a missing bundle, a bundle stored under another
# version's name -- and Redis going away and coming back.  Then rollback
# through the admin handler, which passes over versions that failed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use HotffiRedis;
use HotffiCode;
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use JSON::PP qw(decode_json);
use Time::HiRes qw(sleep);

plan(skip_all => 'needs worker processes: not under HOTFFI_TEST_VALGRIND')
    if $ENV{HOTFFI_TEST_VALGRIND};

my $SECRET = "refused-secret-$$";
my $CLI    = $HotffiCode::CLI;

my $redis = HotffiRedis->new;
$redis->start;
my $port = $redis->port;

my $src = tempdir('hotffi-code-src-XXXXXX', TMPDIR => 1, CLEANUP => 1);
make_path("$src/app");

sub put {
    my ($rel, $text) = @_;
    open my $fh, '>', "$src/$rel" or die "cannot write $src/$rel: $!";
    print {$fh} $text;
    close $fh or die "cannot write $src/$rel: $!";
}

my $NATIVE = <<'LUA';
local ffi = require "ffi"
ffi.cdef[[int hotffi_code_test_abs(int) __asm__("abs");]]
return { abs = function(x) return ffi.C.hotffi_code_test_abs(x) end }
LUA

sub write_version {
    my ($v, %o) = @_;
    put('app/api.lua', $o{api} // <<"LUA");
local util = require "app.util"
local native = require "app.native"
local _M = {}
function _M.handler()
    ngx.say("$v ", util.same("$v") and native.abs(-1) == 1 and "ok" or "BAD")
end
return _M
LUA
    put('app/util.lua', $o{util} // <<"LUA");
local _M = {}
function _M.same(v) return v == "$v" end
return _M
LUA
    put('app/native.lua', $o{native} // $NATIVE);
}

sub publish {
    my ($v, %o) = @_;
    write_version($v, %o);
    local $ENV{HOTFFI_CODE_SECRET} = $o{secret} // $SECRET;
    my $out = qx{$CLI publish $src --redis ${\ $redis->addr } --version $v 2>&1};
    die "hotffi-bundle publish $v failed: $out" if $?;
}

# Stores any text as version $v's bundle, makes it current with a record
# signed with the secret (naming the bundle's signature, if it has one)
# and notifies, as a confused publisher could: what is refused then is the
# bundle itself.
sub publish_raw {
    my ($v, $text, %o) = @_;
    $redis->command('SET', "hotffi:code:bundle:$v", $text) unless $o{no_bundle};
    my ($mac) = $text =~ /^signature hmac-sha256 ([0-9a-f]{64})$/m;
    my $current = $redis->command('GET', 'hotffi:code:current');
    $redis->command('SET', 'hotffi:code:current',
                    HotffiCode::sign_record($SECRET, $v,
                        HotffiCode::next_sequence($current, $SECRET),
                        $mac // '0' x 64));
    $redis->command('RPUSH', 'hotffi:code:history', $v);
    $redis->command('PUBLISH', 'hotffi:code:notify', $v);
}

# The bundle the tool packs of $src as version $v, signed with the secret.
sub packed {
    my ($v) = @_;
    local $ENV{HOTFFI_CODE_SECRET} = $SECRET;
    my ($out, $rc) = HotffiCode::cli('pack', $src, '-v', $v);
    die "hotffi-bundle pack $v failed: $out" if $rc;
    return $out;
}

my $n = HotffiTest::Nginx->new(
    name        => 'refused',
    workers     => 2,
    env         => { HOTFFI_CODE_SECRET => $SECRET },
    http_config => <<"CONF",
lua_shared_dict hotffi_code 8m;
init_worker_by_lua_block {
    require("resty.hotffi.code").init_worker{
        dict = "hotffi_code",
        redis = { port = $port },
        secret = os.getenv("HOTFFI_CODE_SECRET"),
        interval = 0.5,
        wait = 0.5,
    }
}
CONF
    config      => <<'CONF',
location = /t {
    content_by_lua_block {
        require("resty.hotffi.code").handler("app.api")()
    }
}
location = /admin {
    allow 127.0.0.1;
    deny all;
    content_by_lua_block { require("resty.hotffi.code").admin{ token = false } }
}
CONF
);

sub admin {
    my $res = $n->get('/admin');
    return $res->{status} == 200 ? decode_json($res->{content}) : {};
}

sub serves {
    my ($v, $what) = @_;
    my %seen;
    $seen{ $n->get('/t')->{content} }++ for 1 .. 6;
    is(join('', keys %seen), "$v ok\n", "$what: $v still serves");
}

sub all_at {
    my ($v) = @_;
    my @w = @{ admin()->{workers} || [] };
    return @w == 2 && !grep { ($_->{version} // '') ne $v } @w;
}

# A refusal at the source (the leader checks before any worker sees it).
sub refused_at_source {
    my ($v, $re, $what) = @_;
    ok(wait_until(sub { (admin()->{source}{last_refused} // '') =~ /^\Q$v\E: $re/ },
                  5, "$what refused"), "$what: refused with the reason");
    like($n->error_log_text,
         qr/\[error\].*code version "\Q$v\E" refused at the source: redis 127\.0\.0\.1:\d+ "hotffi:code", worker \d+, "v1" -> "\Q$v\E" not made, still serving "v1": $re/,
         "$what: logged");
    serves('v1', $what);
}

# Nothing published yet: handler() waits `wait` seconds, then fails.
$n->start;
my $first = $n->get('/t');
is($first->{status}, 500, 'nothing published yet: the request fails');
like($n->error_log_text, qr/\[error\].*resty\.hotffi\.code: no code version loaded yet/,
     'nothing published yet: logged');

publish('v1');
ok(wait_until(sub { all_at('v1') }, 10, 'v1 applied'), 'every worker runs v1');
serves('v1', 'start');

publish('v2', api => "local x = = 1\n");
refused_at_source('v2', qr/module "app\.api": syntax error: app\.api\@v2:1: unexpected symbol near '='/,
                  'syntax error');

publish('v3', util => "error('not today')\n");
ok(wait_until(sub {
    my @w = @{ admin()->{workers} || [] };
    @w == 2 && !grep { ($_->{error} // '') !~ /module "app\.util": error at load: app\.util\@v3:1: not today/
                       || $_->{version} ne 'v1' || $_->{wanted} ne 'v3' } @w;
}, 5, 'both workers refuse v3'), 'error at load: refused by every worker with the reason');
like($n->error_log_text, qr/\[error\].*code version "v3" refused: redis 127\.0\.0\.1:\d+ "hotffi:code", worker \d+, "v1" -> "v3" not made, still serving "v1": module "app\.util": error at load/,
     'error at load: logged');
serves('v1', 'error at load');

publish('v4', secret => 'not-the-secret');
refused_at_source('v4', qr/bad signature/, 'wrong secret');

write_version('v5');
my $signed = packed('v5');
(my $unsigned = $signed) =~ s/^signature hmac-sha256 \w+$/signature none/m;
publish_raw('v5', $unsigned);
refused_at_source('v5', qr/unsigned bundle/, 'unsigned bundle');

write_version('v6');
$signed = packed('v6');
(my $corrupted = $signed) =~ s/ok/OK/;
publish_raw('v6', $corrupted);
refused_at_source('v6', qr/bad signature/, 'corrupted bundle');

publish_raw('v7', "GET / HTTP/1.0\r\n\r\n");
refused_at_source('v7', qr/not a hotffi bundle \(bad magic\)/, 'garbage');

publish_raw('v8', '', no_bundle => 1);
refused_at_source('v8', qr/its bundle is missing from redis/, 'missing bundle');

write_version('v9');
$signed = packed('v9');
publish_raw('v10', $signed);
refused_at_source('v10', qr/the bundle says version "v9", the source names it "v10"/,
                  'a bundle stored under another name');

publish('v11', native => $NATIVE . "-- changed\n");
refused_at_source('v11', qr/module "app\.native" uses FFI \(ffi\.cdef\) and cannot be hot-replaced \(its source changed\); it stays pinned at version "v1" until nginx reloads/,
                  'replaced FFI module');

publish('v12');
ok(wait_until(sub { all_at('v12') }, 5, 'v12 applied'), 'a good version after the refusals is applied');
serves('v12', 'recovery');
is_deeply([ map { $_->{error} } @{ admin()->{workers} } ], [ undef, undef ],
          'the workers report no current error');
is_deeply([ map { @{ $_->{pinned} } } @{ admin()->{workers} } ], [ 'app.native', 'app.native' ],
          'the FFI module is pinned in both workers');

# ---------------------------------------------------------------------------
# Redis goes away: the workers keep serving; a new Redis on the same port
# is found again.
$redis->stop;
ok(wait_until(sub { defined admin()->{source}{error} }, 5, 'the source error'),
   'redis down: the admin handler reports it');
like(admin()->{source}{error}, qr/connect\(\) failed|closed|subscription|refused/,
     'redis down: with the reason');
my $failed = 0;
for (1 .. 20) {
    $failed++ if $n->get('/t')->{content} ne "v12 ok\n";
    sleep 0.05;
}
is($failed, 0, 'redis down: every request is served by v12');
like($n->error_log_text, qr/\[error\].*redis 127\.0\.0\.1:$port "hotffi:code": .*; workers keep serving code version "v12"/,
     'redis down: logged');

$redis = HotffiRedis->new(port => $port);
$redis->start;
publish('v13');
ok(wait_until(sub { all_at('v13') }, 10, 'v13 applied'),
   'redis back: a version published to the new redis is applied');
serves('v13', 'redis back');
like($n->error_log_text, qr/\[notice\].*redis 127\.0\.0\.1:$port "hotffi:code" is reachable again/,
     'redis back: logged');
ok(!defined admin()->{source}{error}, 'redis back: no source error');

# ---------------------------------------------------------------------------
# Rollback through the admin handler.
# The new Redis never held v12, but this instance ran it: a rollback goes
# back to what the instance accepted (Redis writers cannot choose it), and
# Redis gets its bundle again.
my $res = $n->post('/admin?action=rollback', '');
is($res->{status}, 200, 'rollback to a version the new redis never had')
    or diag $res->{content};
is(decode_json($res->{content})->{version}, 'v12', 'to v12, which this instance ran');
ok(wait_until(sub { all_at('v12') }, 5, 'v12 applied'), 'every worker back at v12');
ok(defined $redis->command('GET', 'hotffi:code:bundle:v12'), 'redis has its bundle again');
publish('v13');
ok(wait_until(sub { all_at('v13') }, 5, 'v13 applied'), 'v13 published again');

publish('v14', util => "error('bad again')\n");
ok(wait_until(sub { grep { ($_->{error} // '') =~ /bad again/ } @{ admin()->{workers} || [] } },
              5, 'v14 refused'), 'v14 refused by the workers');
publish('v15');
ok(wait_until(sub { all_at('v15') }, 5, 'v15 applied'), 'v15 applied');
$res = $n->post('/admin?action=rollback', '');
is($res->{status}, 200, 'rollback') or diag $res->{content};
is(decode_json($res->{content})->{version}, 'v13', 'rollback passes over v14, which failed');
ok(wait_until(sub { all_at('v13') }, 5, 'v13 applied'), 'every worker back at v13');
serves('v13', 'rollback');
like($redis->command('GET', 'hotffi:code:current'), qr/^HOTFFI-CURRENT 1 v13 \d+ [0-9a-f]{64} [0-9a-f]{64}$/,
     'redis names v13 current, in a signed record');
is_deeply($redis->command('LRANGE', 'hotffi:code:history', 0, -1), ['v12', 'v13'],
          'the history lost v14 and v15');
is($redis->command('EXISTS', 'hotffi:code:bundle:v15'), 0, 'and their bundles');

$res = $n->post('/admin?action=check', '');
is($res->{status}, 200, 'action=check');
is($n->post('/admin?action=nope', '')->{status}, 400, 'unknown action');

$n->quit;
ok(!$n->killed, 'nginx quit by itself');
my @errors = grep { /\[(?:error|alert|crit|emerg)\]/ } split /^/m, $n->error_log_text;
my @unexpected = grep { !/refused|workers keep serving|connect\(\) failed|no code version loaded yet/ } @errors;
is(scalar @unexpected, 0, 'no error but the refusals and redis being down')
    or diag @unexpected;
$n->stop;
$redis->stop;

done_testing();
