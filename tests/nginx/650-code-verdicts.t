# resty.hotffi.code with the Redis source: the fleet's verdict reaches the
# publisher, and error.log keeps an audit trail.  Before the first publish
# a request fails with a message that names the key and the command that
# publishes (which, run, works).  `hotffi-bundle publish --wait` exits 0
# once every instance applied the version, and 1 with the reason when the
# leader refuses it (a secret the fleet does not accept) or a worker does
# (an error at load), or when no instance answers in time; `status
# --fleet` shows which instance and worker runs or refused what.  Each
# applied or refused version is one line per worker in error.log, with the
# source's key, the worker's pid and the versions from and to.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use HotffiRedis;
use HotffiCode;
use File::Path qw(make_path);
use File::Temp qw(tempdir);

plan(skip_all => 'needs worker processes: not under HOTFFI_TEST_VALGRIND')
    if $ENV{HOTFFI_TEST_VALGRIND};

my $SECRET = "verdict-secret-$$";

my $redis = HotffiRedis->new;
$redis->start;
my $port = $redis->port;
my $addr = $redis->addr;

my $src = tempdir('hotffi-code-src-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $src;
make_path("$src/app", { mode => 0755 });

sub write_version {
    my ($v, %o) = @_;
    HotffiCode::put($src, 'app/api.lua', "local u = require 'app.util'\n"
                    . "return { handler = function() ngx.say(u.v) end }\n");
    HotffiCode::put($src, 'app/util.lua', $o{util} // "return { v = '$v' }\n");
}

# bin/hotffi-bundle with the secret (or $o{secret}); output and status.
sub cli {
    my ($o, @args) = @_;
    local $ENV{HOTFFI_CODE_SECRET} = $o->{secret} // $SECRET;
    return HotffiCode::cli(@args);
}

my $n = HotffiTest::Nginx->new(
    name        => 'verdicts',
    workers     => 2,
    env         => { HOTFFI_CODE_SECRET => $SECRET },
    http_config => HotffiCode::redis_http_config(port => $port, wait => 0.5),
    config      => HotffiCode::locations(),
);

sub admin  { HotffiCode::admin_status($n) }
sub all_at { HotffiCode::all_at($n, $_[0], 2) }

# The audit lines of version $v in error.log: { pid => [ lines ] }.
sub audit {
    my ($v) = @_;
    my %by;
    for (split /^/m, $n->error_log_text) {
        next unless /code version "\Q$v\E" (?:applied|refused)/;
        my ($pid) = /, worker (\d+), / or next;
        push @{ $by{$pid} }, $_;
    }
    return \%by;
}

$n->start;

# ---- nothing published yet: the request fails, saying how to publish
ok(wait_until(sub { admin()->{source}{nothing_published} }, 10, 'the leader looked'),
   'the admin status says nothing is published');
ok(wait_until(sub { @{ admin()->{workers} || [] } == 2 }, 10, 'two workers report'),
   'two workers');
my @pids = sort map { $_->{pid} } @{ admin()->{workers} };
is($n->get('/t')->{status}, 500, 'nothing published: the request fails after wait');
my ($cmd) = $n->error_log_text =~
    /no code version loaded yet: nothing is published under redis 127\.0\.0\.1:$port "hotffi:code" \(no key "hotffi:code:current"\); publish a version with: (HOTFFI_CODE_SECRET=<the secret> bin\/hotffi-bundle publish DIR --redis 127\.0\.0\.1:$port --prefix hotffi:code)/;
ok(defined $cmd, 'nothing published: the error names the key and the command')
    or diag($n->error_log_text);

# the command, as given, publishes
write_version('v1');
(my $run = $cmd // '') =~ s/^HOTFFI_CODE_SECRET=<the secret> bin\/hotffi-bundle //;
my @args = split ' ', $run;
s/^DIR$/$src/ for @args;
my ($out, $rc) = cli({}, @args, '--version', 'v1', '--wait=20');
is($rc, 0, 'the command of the message publishes; --wait: every instance applied')
    or diag($out);
like($out, qr/^published version v1 .* 1 nginx instance\(s\) notified$/m, 'publish says so');
like($out, qr/^  [^:]+:\d+: applied v1 \(2 worker\(s\)\)$/m, '--wait: the instance applied it');
like($out, qr/^every nginx instance \(1\) applied v1$/m, '--wait: every instance applied it');
ok(all_at('v1'), 'both workers run v1');
is($n->get('/t')->{content}, "v1\n", 'v1 serves');

# ---- a secret the fleet does not accept: refused at the source
write_version('v2');
($out, $rc) = cli({ secret => 'not-the-secret' }, 'publish', $src, '--redis', $addr,
                  '--version', 'v2', '--wait=20');
is($rc, 1, 'publish --wait with another secret: exit 1');
like($out, qr/^  [^:]+:\d+: v2 refused at the source: bad signature of the current-version record \(forged, or signed with another secret\)$/m,
     '--wait: which instance refused it, and why') or diag($out);
like($out, qr/^hotffi-bundle: version v2 refused by 1 of 1 nginx instance\(s\)$/m,
     '--wait: the summary');
is($n->get('/t')->{content}, "v1\n", 'v1 still serves');

($out, $rc) = cli({}, 'status', '--fleet', '--redis', $addr);
is($rc, 0, 'status --fleet');
like($out, qr/^current: v2 \(sequence \d+\)$/m, 'status: redis names v2 current');
like($out, qr/^fleet: 1 nginx instance\(s\) reported/m, 'status --fleet: one instance');
like($out, qr/^  [^:]+:\d+, redis 127\.0\.0\.1:$port "hotffi:code", reported [\d.]+ s ago: version v1$/m,
     'status --fleet: the instance runs v1') or diag($out);
like($out, qr/^    worker $pids[0] \(#\d\): runs v1$/m, 'status --fleet: a worker');
like($out, qr/^    worker $pids[1] \(#\d\): runs v1$/m, 'status --fleet: the other');
like($out, qr/^    source: last refused v2: bad signature of the current-version record/m,
     'status --fleet: the refusal at the source, and why');

# ---- an error at load: every worker refuses it
write_version('v3', util => "error('not today')\n");
($out, $rc) = cli({}, 'publish', $src, '--redis', $addr, '--version', 'v3', '--wait=20');
is($rc, 1, 'publish --wait of a version the workers refuse: exit 1');
# the first refusal decides: the other worker may not have tried yet
like($out, qr/^  [^:]+:\d+: v3 worker (?:$pids[0]|$pids[1]) refused it: module "app\.util": error at load: app\.util\@v3:1: not today$/m,
     '--wait: a worker refused it, and why') or diag($out);
my $fleet = '';
ok(wait_until(sub {
    ($fleet) = cli({}, 'status', '--fleet', '--redis', $addr);
    my @refused = $fleet =~ /^    worker (?:$pids[0]|$pids[1]) \(#\d\): runs v1, refused v3: module "app\.util": error at load: app\.util\@v3:1: not today$/mg;
    @refused == 2;
}, 10, 'both refusals in the fleet status'), 'status --fleet: each worker refused v3, and why')
    or diag($fleet);
is($n->get('/t')->{content}, "v1\n", 'v1 still serves');

write_version('v4');
($out, $rc) = cli({}, 'publish', $src, '--redis', $addr, '--version', 'v4', '--wait');
is($rc, 0, 'publish --wait (default time) of a good version') or diag($out);

# ---- no instance watches this prefix: no verdict, exit 1 in time
($out, $rc) = cli({}, 'publish', $src, '--redis', $addr, '--prefix', 'nobody:listens',
                  '--version', 'v5', '--wait=1');
is($rc, 1, 'publish --wait where no nginx listens: exit 1');
like($out, qr/^hotffi-bundle: timed out after 1 s: no nginx instance gave a verdict on v5 \(0 notified\)$/m,
     'and says so') or diag($out);

# ---- the verdicts in redis are bounded and expire
my @ids = @{ $redis->command('ZRANGE', 'hotffi:code:fleet', 0, -1) };
is(scalar @ids, 1, 'one instance in the fleet set');
my $ttl = $redis->command('TTL', "hotffi:code:fleet:$ids[0]");
ok($ttl > 0 && $ttl <= 60, "its verdict expires (ttl $ttl s)");
cmp_ok(length($redis->command('GET', "hotffi:code:fleet:$ids[0]")), '<=', 16384,
       'and is at most 16 KiB');

# ---- the audit trail: one line per worker for each version applied or
# refused, with the key, the pid and the versions from and to
my $key = qr/redis 127\.0\.0\.1:$port "hotffi:code"/;
for my $pid (@pids) {
    my $v1 = audit('v1')->{$pid} || [];
    is(scalar @$v1, 1, "v1: one line of worker $pid");
    like($v1->[0] // '', qr/\[notice\] $pid#\d+: .*code version "v1" applied: $key, worker $pid, "none" -> "v1", 2 of 2 modules loaded in [\d.]+ ms/,
         "v1: applied, with key, pid, from and to");
    my $v3 = audit('v3')->{$pid} || [];
    is(scalar @$v3, 1, "v3: one line of worker $pid");
    like($v3->[0] // '', qr/\[error\] $pid#\d+: .*code version "v3" refused: $key, worker $pid, "v1" -> "v3" not made, still serving "v1": module "app\.util": error at load: app\.util\@v3:1: not today/,
         'v3: refused, with key, pid, from, to and the reason');
    my $v4 = audit('v4')->{$pid} || [];
    is(scalar @$v4, 1, "v4: one line of worker $pid");
    like($v4->[0] // '', qr/\[notice\].*code version "v4" applied: $key, worker $pid, "v1" -> "v4"/,
         'v4: applied, from v1');
}
my $v2 = audit('v2');
is(scalar(map { @$_ } values %$v2), 1, 'v2: one line, by the leader');
like(join('', map { @$_ } values %$v2),
     qr/\[error\].*code version "v2" refused at the source: $key, worker \d+, "v1" -> "v2" not made, still serving "v1": bad signature of the current-version record/,
     'v2: refused at the source, with the reason');

$n->quit;
ok(!$n->killed, 'nginx quit by itself');
my @errors = grep { /\[(?:error|alert|crit|emerg)\]/ } split /^/m, $n->error_log_text;
my @unexpected = grep { !/refused.*still serving|no code version loaded yet/ } @errors;
is(scalar @unexpected, 0, 'no error but the refusals') or diag @unexpected;
$n->stop;
$redis->stop;

done_testing();
