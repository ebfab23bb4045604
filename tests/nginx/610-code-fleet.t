# resty.hotffi.code with the Redis source, for a fleet: one Redis, two
# nginx instances ("servers") of two workers each.  20 versions are pushed
# with bin/hotffi-bundle while clients keep both instances busy: no request
# fails, every response names the version that served it (and its two
# modules agree), and after each push every worker of both instances
# reports the new version.  A HUP reload keeps the version.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use HotffiRedis;
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use JSON::PP qw(decode_json);
use POSIX ();
use Time::HiRes qw(time sleep);

plan(skip_all => 'needs worker processes: not under HOTFFI_TEST_VALGRIND')
    if $ENV{HOTFFI_TEST_VALGRIND};

my $VERSIONS = 20;
my $SECRET   = "fleet-secret-$$";
my $CLI      = "$HotffiTest::REPO/bin/hotffi-bundle";

my $redis = HotffiRedis->new;
$redis->start;

my $src = tempdir('hotffi-code-src-XXXXXX', TMPDIR => 1, CLEANUP => 1);
make_path("$src/app");

sub put {
    my ($rel, $text) = @_;
    open my $fh, '>', "$src/$rel" or die "cannot write $src/$rel: $!";
    print {$fh} $text;
    close $fh or die "cannot write $src/$rel: $!";
}

# app.api prints its version and asks app.util, which must be of the same
# version: a response that mixes two versions says so.
sub write_version {
    my ($v) = @_;
    put('app/api.lua', <<"LUA");
local util = require "app.util"
local _M = {}
function _M.handler()
    ngx.say("$v ", util.same("$v") and "ok" or "MIXED")
end
return _M
LUA
    put('app/util.lua', <<"LUA");
local _M = {}
function _M.same(v) return v == "$v" end
return _M
LUA
}

sub publish {
    my ($v) = @_;
    write_version($v);
    local $ENV{HOTFFI_CODE_SECRET} = $SECRET;
    my $out = qx{$CLI publish $src --redis ${\ $redis->addr } --version $v 2>&1};
    die "hotffi-bundle publish $v failed: $out" if $?;
    return $out;
}

my $port = $redis->port;
my %nginx_args = (
    workers     => 2,
    env         => { HOTFFI_CODE_SECRET => $SECRET },
    http_config => <<"CONF",
lua_shared_dict hotffi_code 8m;
init_worker_by_lua_block {
    require("resty.hotffi.code").init_worker{
        dict = "hotffi_code",
        redis = { host = "127.0.0.1", port = $port },
        secret = os.getenv("HOTFFI_CODE_SECRET"),
        interval = 1,
    }
}
CONF
    config => <<'CONF',
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
    my ($n) = @_;
    my $res = $n->get('/admin');
    return $res->{status} == 200 ? decode_json($res->{content}) : undef;
}

# The workers of $n if all of them run $v, else nothing.
sub workers_at {
    my ($n, $v) = @_;
    my $s = admin($n) or return;
    my @w = @{ $s->{workers} };
    return if @w != 2 || grep { ($_->{version} // '') ne $v } @w;
    return @w;
}

# Clients that keep an instance busy until $stop exists; each reports one
# line per request through a pipe.
my $stop = "$src/.stop";
sub start_client {
    my ($n) = @_;
    pipe(my $reader, my $writer) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw(INT TERM);
        close $reader;
        my $deadline = time + 120;
        for (1 .. 20_000) {
            last if -e $stop || time > $deadline;
            my $res = $n->get('/t', { timeout => 10 });
            my ($line) = split /\n/, $res->{content};
            print {$writer} "$res->{status} ", $line // '', "\n";
        }
        close $writer;
        POSIX::_exit(0);
    }
    close $writer;
    return { pid => $pid, fh => $reader };
}

sub finish_client {
    my ($c) = @_;
    my @lines = readline $c->{fh};
    close $c->{fh};
    waitpid $c->{pid}, 0;
    chomp @lines;
    return @lines;
}

publish('v0');
my @servers = map { HotffiTest::Nginx->new(name => "server $_", %nginx_args) } 1, 2;
$_->start for @servers;
for my $n (@servers) {
    ok(wait_until(sub { workers_at($n, 'v0') }, 10, $n->name . ' at v0'),
       $n->name . ': every worker runs v0');
    is($n->get('/t')->{content}, "v0 ok\n", $n->name . ': v0 serves');
}

my @clients = map { start_client($_), start_client($_) } @servers;
sleep 0.3;

my @latency;
for my $i (1 .. $VERSIONS) {
    my $v = "v$i";
    my $t0 = time;
    publish($v);
    my @all;
    my $done = wait_until(sub {
        my @a = workers_at($servers[0], $v) or return 0;
        my @b = workers_at($servers[1], $v) or return 0;
        @all = (@a, @b);
    }, 10, "all 4 workers at $v");
    ok($done, "$v: every worker of both servers reports it");
    my ($last) = sort { $b <=> $a } map { $_->{applied_at} } @all;
    push @latency, $last - $t0 if $done;
}

open my $touch, '>', $stop or die "cannot create $stop: $!";
close $touch;
my @lines = map { finish_client($_) } @clients;
my @bad = grep { !/^200 v\d+ ok$/ } @lines;
cmp_ok(scalar @lines, '>', 100, scalar(@lines) . ' requests during the pushes');
is(scalar @bad, 0, 'no request failed or mixed versions while versions were pushed')
    or diag explain [ @bad[0 .. ($#bad < 9 ? $#bad : 9)] ];
my %seen = map { /^200 (v\d+)/ ? ($1 => 1) : () } @lines;
cmp_ok(scalar keys %seen, '>=', 5, 'the clients saw ' . scalar(keys %seen)
       . ' different versions');

@latency = sort { $a <=> $b } @latency;
if (@latency) {
    diag(sprintf 'push (hotffi-bundle publish, incl. luajit start-up) to all'
         . ' 4 workers applied: median %.0f ms, max %.0f ms',
         1000 * $latency[$#latency / 2], 1000 * $latency[-1]);
}

for my $n (@servers) {
    is($n->get('/t')->{content}, "v$VERSIONS ok\n", $n->name . ": v$VERSIONS serves");
}

# A HUP reload: the new workers start with the version in the shared dict.
$servers[0]->reload;
ok(wait_until(sub { workers_at($servers[0], "v$VERSIONS") }, 10, 'new workers'),
   'after a HUP reload the new workers run the last version');
is($servers[0]->get('/t')->{content}, "v$VERSIONS ok\n", 'and serve it');

# hotffi-bundle rollback: every server goes back to the previous version.
{
    local $ENV{HOTFFI_CODE_SECRET} = $SECRET;
    my $out = qx{$CLI rollback --redis ${\ $redis->addr } 2>&1};
    is($out, 'rolled back to version v' . ($VERSIONS - 1) . "\n", 'hotffi-bundle rollback');
}
my $prev = 'v' . ($VERSIONS - 1);
for my $n (@servers) {
    ok(wait_until(sub { workers_at($n, $prev) }, 10, $n->name . " at $prev"),
       $n->name . ": every worker went back to $prev");
}

for my $n (@servers) {
    $n->quit;
    ok(!$n->killed, $n->name . ' quit by itself');
    unlike($n->error_log_text, qr/\[(alert|crit|emerg|error)\]/, $n->name . ': error log is clean')
        or diag(join '', grep { /\[(alert|crit|emerg|error)\]/ } split /^/m, $n->error_log_text);
    $n->stop;
}
$redis->stop;

done_testing();
