# resty.hotffi.code with the Redis source: the current version is named by
# a signed record with a sequence, so that someone who can write to Redis
# but does not know the secret cannot turn the fleet back.  A bundle packed
# to a file by bin/hotffi-bundle is accepted; an older record written back
# (a replay), also of a version whose keys were deleted and restored, is
# refused with the reason, also after a HUP reload and on action=check; a
# rollback signed by the tool, naming its target, is accepted; a legacy
# unsigned name and a forged record are refused.  What nginx signs on a
# rollback, the tool reads (status, verify) and publishes after.
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

plan(skip_all => 'needs worker processes: not under HOTFFI_TEST_VALGRIND')
    if $ENV{HOTFFI_TEST_VALGRIND};

my $SECRET = "replay-secret-$$";
my $TOKEN  = "replay-token-$$";
my $CLI    = $HotffiCode::CLI;

my $redis = HotffiRedis->new;
$redis->start;
my $port = $redis->port;
my $addr = $redis->addr;

my $src = tempdir('hotffi-code-src-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $src;
make_path("$src/app", { mode => 0755 });

sub write_version {
    my ($v) = @_;
    HotffiCode::put($src, 'app/api.lua',
                    "return { handler = function() ngx.say('$v') end }\n");
}

# Runs bin/hotffi-bundle with the secret (unless $secret is ''); returns
# its output and exit status.
sub cli {
    my ($args, $secret) = @_;
    local $ENV{HOTFFI_CODE_SECRET} = $secret // $SECRET;
    delete $ENV{HOTFFI_CODE_SECRET} if defined $secret && $secret eq '';
    my $out = qx{$CLI $args --redis $addr 2>&1};
    return ($out, $? >> 8);
}

sub publish {
    my ($v) = @_;
    write_version($v);
    my ($out, $rc) = cli("publish $src --version $v");
    die "hotffi-bundle publish $v failed: $out" if $rc;
}

my $n = HotffiTest::Nginx->new(
    name        => 'replay',
    workers     => 2,
    env         => { HOTFFI_CODE_SECRET => $SECRET, CODE_ADMIN_TOKEN => $TOKEN },
    http_config => HotffiCode::redis_http_config(port => $port),
    config      => HotffiCode::locations(token => 'os.getenv("CODE_ADMIN_TOKEN")'),
);

my %auth = (headers => { Authorization => "Bearer $TOKEN" });

sub admin  { HotffiCode::admin_status($n, {%auth}) }
sub all_at { HotffiCode::all_at($n, $_[0], 2, {%auth}) }

sub serves {
    my ($v, $what) = @_;
    my %seen;
    $seen{ $n->get('/t')->{content} }++ for 1 .. 6;
    is(join('', keys %seen), "$v\n", "$what: $v serves");
}

# Writes a record and a bundle back into Redis and notifies, as someone
# who can write to Redis but has no secret can.
sub replay {
    my ($v, $record, $bundle) = @_;
    $redis->command('SET', "hotffi:code:bundle:$v", $bundle) if defined $bundle;
    $redis->command('SET', 'hotffi:code:current', $record);
    $redis->command('PUBLISH', 'hotffi:code:notify', $v);
}

sub refused {
    my ($v, $re, $what) = @_;
    ok(wait_until(sub { (admin()->{source}{last_refused} // '') =~ /^\Q$v\E: $re/ },
                  5, "$what refused"), "$what: refused with the reason")
        or diag(explain(admin()->{source}));
}

$n->start;

# ---- a bundle packed to a file by the tool, then published as it is
write_version('v1');
my $file = "$src/../v1.bundle";
my ($out, $rc) = cli("pack $src -v v1 -o $file");
is($rc, 0, 'hotffi-bundle pack') or diag($out);
($out, $rc) = cli("publish $file");
is($rc, 0, 'hotffi-bundle publish FILE') or diag($out);
ok(wait_until(sub { all_at('v1') }, 10, 'v1 applied'), 'the packed bundle is accepted');
serves('v1', 'packed');
my $record1 = $redis->command('GET', 'hotffi:code:current');
like($record1, qr/^HOTFFI-CURRENT 1 v1 (\d+) [0-9a-f]{64} [0-9a-f]{64}$/,
     'redis names it with a signed record');

publish('v2');
ok(wait_until(sub { all_at('v2') }, 5, 'v2 applied'), 'v2 applied');
my $record2 = $redis->command('GET', 'hotffi:code:current');
my $bundle2 = $redis->command('GET', 'hotffi:code:bundle:v2');

# ---- the older record written back: refused, v2 keeps serving
replay('v1', $record1);
refused('v1', qr/replayed record: sequence \d+ is older than \d+, the newest this instance accepted .*only a rollback signed with the secret goes back/,
        'v1 replayed');
like($n->error_log_text,
     qr/\[error\].*code version "v1" refused at the source: redis .* still serving "v2": replayed record/,
     'v1 replayed: logged');
serves('v2', 'v1 replayed');

publish('v3');
ok(wait_until(sub { all_at('v3') }, 5, 'v3 applied'), 'v3 applied');
my $record3 = $redis->command('GET', 'hotffi:code:current');

# ---- a version whose keys were deleted, written back with its old record
$redis->command('DEL', 'hotffi:code:bundle:v2');
$redis->command('LREM', 'hotffi:code:history', 0, 'v2');
replay('v2', $record2, $bundle2);
refused('v2', qr/replayed record: sequence \d+ is older than \d+/, 'deleted v2 restored');
serves('v3', 'deleted v2 restored');
my $res = $n->request('POST', '/admin?action=check', {%auth});
is($res->{status}, 200, 'action=check');
serves('v3', 'action=check looks again, and refuses again');

# ---- the legacy form (a bare name) and a forged record
replay('v2', 'v2');
refused('v2', qr/the current version is named without a signed record \(published by an older bin\/hotffi-bundle\?\): publish it again with this one/,
        'a bare version name');
my ($mac2) = $record2 =~ / ([0-9a-f]{64}) [0-9a-f]{64}$/;
replay('v2', HotffiCode::sign_record('not-the-secret', 'v2', 9e14, $mac2));
refused('v2', qr/bad signature of the current-version record/, 'a forged record');
serves('v3', 'forged');

# ---- the explicit, signed rollback: the tool names the target
my $before = $redis->command('GET', 'hotffi:code:current');
($out, $rc) = cli('rollback --to v1', '');
isnt($rc, 0, 'rollback without the secret fails');
like($out, qr/no secret/, 'and says so');
is($redis->command('GET', 'hotffi:code:current'), $before, 'and changes nothing');
($out, $rc) = cli('rollback --to v1');
is($rc, 0, 'hotffi-bundle rollback --to v1') or diag($out);
like($out, qr/rolled back to version v1/, 'says so');
ok(wait_until(sub { all_at('v1') }, 5, 'v1 applied'), 'the signed rollback is accepted');
serves('v1', 'signed rollback');
my ($seq1) = $record1 =~ /^HOTFFI-CURRENT 1 v1 (\d+) /;
my ($seq_back) = $redis->command('GET', 'hotffi:code:current') =~ /^HOTFFI-CURRENT 1 v1 (\d+) /;
cmp_ok($seq_back, '>', $seq1, 'with a new, higher sequence than v1 had');

# ---- the memory of the highest sequence survives a HUP reload
$n->reload;
ok(wait_until(sub { all_at('v1') }, 5, 'v1 after the reload'), 'v1 after a HUP reload');
replay('v3', $record3);
refused('v3', qr/replayed record: sequence \d+ is older than \d+/, 'v3 replayed after a HUP reload');
serves('v1', 'v3 replayed after a HUP reload');

# ---- rollback through the admin handler: nginx signs the record
publish('v4');
ok(wait_until(sub { all_at('v4') }, 5, 'v4 applied'), 'v4 applied');
$res = $n->request('POST', '/admin?action=rollback', {%auth});
is($res->{status}, 200, 'admin rollback') or diag($res->{content});
is(decode_json($res->{content})->{version}, 'v1', 'to v1, the version before');
ok(wait_until(sub { all_at('v1') }, 5, 'v1 applied'), 'every worker back at v1');
like($redis->command('GET', 'hotffi:code:current'), qr/^HOTFFI-CURRENT 1 v1 \d+ /,
     'redis names v1 current');

# ---- what nginx signed and stored, the tool reads: status and verify
my ($seq_admin) = $redis->command('GET', 'hotffi:code:current') =~ /^HOTFFI-CURRENT 1 v1 (\d+) /;
($out, $rc) = cli('status');
is($rc, 0, 'hotffi-bundle status after the admin rollback') or diag($out);
like($out, qr/^current: v1 \(sequence $seq_admin\)$/m, 'the tool reads the record nginx signed');
my $stored = "$src/../stored.bundle";
open my $fh, '>', $stored or die "cannot write $stored: $!";
print {$fh} $redis->command('GET', 'hotffi:code:bundle:v1');
close $fh;
($out, $rc) = cli("verify $stored");
is($rc, 0, 'hotffi-bundle verify of the bundle nginx stored again') or diag($out);
like($out, qr/^version v1, created .* UTC\n  app\.api +\d+ bytes$/m, 'and lists its module');
publish('v5');
ok(wait_until(sub { all_at('v5') }, 5, 'v5 applied'),
   'a publish of the tool after the admin rollback is accepted');

$n->quit;
ok(!$n->killed, 'nginx quit by itself');
my @errors = grep { /\[(?:error|alert|crit|emerg)\]/ } split /^/m, $n->error_log_text;
my @unexpected = grep { !/refused.*still serving/ } @errors;
is(scalar @unexpected, 0, 'no error but the refusals') or diag @unexpected;
$n->stop;
$redis->stop;

done_testing();
