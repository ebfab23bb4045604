#!/usr/bin/perl
# bench/code_reload/run.pl -- how long a pushed code version takes to reach
# every worker of a fleet (resty.hotffi.code with the Redis source).
#
# Starts one Redis and two nginx instances of two workers each on
# 127.0.0.1, keeps them busy with a few clients, publishes N versions
# (bin/hotffi-bundle publish of a bundle packed beforehand; LuaJIT's
# start-up, a few ms, is counted) and, for each, takes the time from the start of the
# publish to the moment the last of the 4 workers applied it (each worker
# records when it did, in its status).  Prints the median and the maximum;
# the target is under one second.  Everything is stopped at the end.
#
#   perl bench/code_reload/run.pl [--versions 20] [--clients 1]
#
# --clients is the number of clients per instance (0: idle servers).
# Exit status: 0, or 1 if a version did not reach every worker in 10 s.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../tests/lib", "$FindBin::Bin/../lib";
use Getopt::Long;
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use JSON::PP qw(decode_json);
use POSIX ();
use Time::HiRes qw(time sleep);
use HotffiTest ();
use HotffiRedis;
use HotffiCode ();
use BenchUtil qw(median);

my %opt = (versions => 20, clients => 1);
GetOptions(\%opt, 'versions=i', 'clients=i') or die "usage: $0 [--versions N] [--clients N]\n";

my $SECRET = "bench-secret-$$";
my $TIMEOUT = 10;
my $WORKERS = 2;

my $redis = HotffiRedis->new;
$redis->start;
my $port = $redis->port;

my $src = tempdir('hotffi-bench-XXXXXX', TMPDIR => 1, CLEANUP => 1);
make_path("$src/app");

sub put {
    my ($rel, $text) = @_;
    open my $fh, '>', "$src/$rel" or die "cannot write $src/$rel: $!";
    print {$fh} $text;
    close $fh or die "cannot write $src/$rel: $!";
}

# A small but not empty application: an entry module and ten helpers.
sub pack_version {
    my ($v) = @_;
    put('app/api.lua', join '', map({ "local h$_ = require 'app.helper$_'\n" } 1 .. 10),
        "local _M = {}\nfunction _M.handler() ngx.say('$v ', h1.n + h10.n) end\n",
        "return _M\n");
    for my $i (1 .. 10) {
        put("app/helper$i.lua", "local _M = { n = $i }\n"
            . "function _M.f(x) return x * $i end\nreturn _M\n");
    }
    my ($out, $rc) = HotffiCode::cli('pack', $src, '-v', $v, '-o', "$src/$v.bundle");
    die "hotffi-bundle pack $v failed: $out" if $rc;
    return "$src/$v.bundle";
}

# Publishes a bundle file with bin/hotffi-bundle.
sub publish {
    my ($file) = @_;
    my ($out, $rc) = HotffiCode::cli('publish', $file, '--redis', $redis->addr);
    die "hotffi-bundle publish failed: $out" if $rc;
}

my %nginx_args = (
    workers     => $WORKERS,
    env         => { HOTFFI_CODE_SECRET => $SECRET },
    log_level   => 'notice',
    http_config => <<"CONF",
lua_shared_dict hotffi_code 8m;
init_worker_by_lua_block {
    require("resty.hotffi.code").init_worker{
        dict = "hotffi_code",
        redis = { port = $port },
        secret = os.getenv("HOTFFI_CODE_SECRET"),
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

sub applied_at {
    my ($n, $v) = @_;
    my $res = $n->get('/admin');
    return unless $res->{status} == 200;
    my @w = @{ decode_json($res->{content})->{workers} };
    return if @w != $WORKERS || grep { ($_->{version} // '') ne $v } @w;
    return map { $_->{applied_at} } @w;
}

sub wait_all {
    my ($servers, $v) = @_;
    my $deadline = time + $TIMEOUT;
    while (time < $deadline) {
        my @t = map { applied_at($_, $v) } @$servers;
        return (sort { $b <=> $a } @t)[0] if @t == $WORKERS * @$servers;
        sleep 0.005;
    }
    return;
}

$ENV{HOTFFI_CODE_SECRET} = $SECRET;
publish(pack_version('v0'));
my @servers = map { HotffiTest::Nginx->new(name => "server $_", %nginx_args) } 1, 2;
$_->start for @servers;
wait_all(\@servers, 'v0') or die "the servers did not load v0\n";

my $stop = "$src/.stop";
my @clients;
for my $n (@servers) {
    for (1 .. $opt{clients}) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            $SIG{$_} = 'DEFAULT' for qw(INT TERM);
            my $deadline = time + 300;
            $n->get('/t') until -e $stop || time > $deadline;
            POSIX::_exit(0);
        }
        push @clients, $pid;
    }
}

my (@latency, $missed);
for my $i (1 .. $opt{versions}) {
    my $v = "v$i";
    my $file = pack_version($v);
    my $t0 = time;
    publish($file);
    my $last = wait_all(\@servers, $v);
    if (defined $last) {
        push @latency, $last - $t0;
    } else {
        $missed++;
        warn "$v did not reach every worker in ${TIMEOUT}s\n";
    }
}

open my $touch, '>', $stop or die "cannot create $stop: $!";
close $touch;
waitpid $_, 0 for @clients;
$_->stop for @servers;
$redis->stop;

@latency = sort { $a <=> $b } @latency;
die "no version reached every worker\n" unless @latency;
printf "code reload: push to all %d workers of %d nginx instances applied"
    . " (%d versions, %d client(s) per instance): median %.0f ms, max %.0f ms"
    . " (target: under 1000 ms)\n",
    $WORKERS * @servers, scalar @servers, scalar @latency, $opt{clients},
    1000 * median(@latency), 1000 * $latency[-1];
exit($missed ? 1 : 0);
