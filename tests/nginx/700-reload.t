# In-place reload of a runtime (rt:__reload): the same handle and queue, the
# old version's state handed to the new one, calls arriving meanwhile
# answered by the new version, a new version that fails to start rolled
# back, and under load: 50 reloads alternating two builds of a library
# replaced on disk, with unpin, lose no call and never reset the count.
# Every load, reload and unload leaves one audit line in error.log.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use HotffiReload;
use Time::HiRes qw(sleep);

my $build = "$HotffiTest::REPO/build/lib";
BAIL_OUT("build first: make ($build/libcounter_b.so does not exist)")
    unless -e "$build/libcounter_b.so";

# The deployment directory: one path whose file is replaced, by rename as
# an installer does, by build a or build b of the counter.
my $lib = deploy_dir('hotffi-reload') . '/libcounter.so';

sub deploy {
    my ($which) = @_;
    deploy_file($which eq 'a' ? "$build/libcounter.so"
                              : "$build/libcounter_b.so", $lib);
}

my $config = reload_locations(
    load => 'require("resty.hotffi").load(os.getenv("COUNTER_LIB"), nil,
                                          { unpin = true, name = "counter" })',
    maps => 'libcounter.so');

deploy('a');
my $nginx = HotffiTest::Nginx->new(name => 'reload', config => $config,
                                   env => { COUNTER_LIB => $lib });
$nginx->start;

# ---- the count goes on across a reload into new code
is_deeply([ body($nginx, '/count') ], [ 200, 'a 1' ], 'first call: build a');
is_deeply([ body($nginx, '/count') ], [ 200, 'a 2' ], 'the count goes up');
my @audit = audit_lines($nginx);
is_deeply([ map { "@$_[0..2]" } @audit ], [ 'notice load ok' ],
          'audit: the first load, one notice line');
my ($dev, $ino) = file_id($lib);
is_deeply([ @{ $audit[0][3] }{qw(runtime version lib dev ino cfg)} ],
          [ 'counter', '0->1', $lib, $dev, $ino, 'nil' ],
          'its runtime name, versions, lib and the file mapped')
    or diag(explain(\@audit));
like($audit[0][3]{mtime}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'its mtime');
is($audit[0][3]{pid}, $audit[0][4], 'the worker pid');
like($audit[0][3]{seconds}, qr/^\d+\.\d{6}$/, 'the seconds it took');
my $mark = length $nginx->error_log_text;
deploy('b');
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 1 2' ],
          'reload from version 1 to 2');
@audit = audit_lines($nginx, $mark);
($dev, $ino) = file_id($lib);
is_deeply([ map { [ "@$_[0..2]", @{ $_->[3] }{qw(version lib ino)} ] } @audit ],
          [ [ 'notice reload ok', '1->2', $lib, $ino ] ],
          'audit: one line, naming the new file');
is_deeply([ body($nginx, '/count') ], [ 200, 'b 3' ],
          'build b answers, with the count build a handed over');
like((body($nginx, '/stats'))[1], qr/^version=2 reloads=1 failures=0 .* last_ok=true$/,
     'stats: version 2, one reload');
is((body($nginx, '/maps'))[1], 1, 'unpin: build a was unmapped');

# ---- without state the new version starts from scratch
is_deeply([ body($nginx, '/reload?state=0') ], [ 200, 'ok 2 3' ],
          'reload without hand-over');
is_deeply([ body($nginx, '/count') ], [ 200, 'b 1' ], 'the count restarted');

# ---- a new version whose init fails: rolled back, with the state
$mark = length $nginx->error_log_text;
my ($status, $text) = body($nginx, '/reload?cfg=fail');
is($status, 500, 'a failing new version fails the reload');
like($text, qr/libffi_init\(\) of runtime "\Q$lib\E&fail" failed: 1: told to fail by its configuration; version 3 serves again/,
     'the error names the init failure, the cfg it tried and the rollback');
@audit = audit_lines($nginx, $mark);
is_deeply([ map { [ "@$_[0..2]", @{ $_->[3] }{qw(version cfg)} ] } @audit ],
          [ [ 'error reload failed', '3->4', '86272b49/4' ] ],
          'audit: one error line, with the version and the cfg tried')
    or diag(explain(\@audit));
like($audit[0][3]{error} // '', qr/told to fail.*version 3 serves again/,
     'and why');
is_deeply([ body($nginx, '/count') ], [ 200, 'b 2' ],
          'the old code serves again, its count handed back');
like((body($nginx, '/stats'))[1], qr/^version=3 reloads=2 failures=1 .* last_ok=false$/,
     'stats: still version 3, one failure');

# ---- a library that does not exist: refused before anything stops
$mark = length $nginx->error_log_text;
($status, $text) = body($nginx, '/reload?lib=/nonexistent/libnope.so');
is($status, 500, 'a missing library fails the reload');
like($text, qr/dlopen\(\) "\/nonexistent\/libnope\.so" failed/, 'with dlopen\'s reason');
@audit = audit_lines($nginx, $mark);
is_deeply([ map { [ "@$_[0..2]", @{ $_->[3] }{qw(version lib dev)} ] } @audit ],
          [ [ 'warn reload refused', '3->0', '/nonexistent/libnope.so', '-' ] ],
          'audit: a warning, naming the library asked for')
    or diag(explain(\@audit));
is_deeply([ body($nginx, '/count') ], [ 200, 'b 3' ], 'nothing changed');

# ---- a task the old version holds is finished by it; calls arriving
# meanwhile wait in the queue for the new version
{
    my $slow = start_clients($nginx, 1, '/count?req=sleep:600');
    sleep 0.2;
    deploy('a');
    my $during = start_clients($nginx, 2, '/count');
    # version 4 was the one that failed to start
    is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 3 5' ],
              'reload while the old version holds a 600 ms task');
    my @slow = stop_clients($slow);
    my @during = stop_clients($during);
    ok(@slow >= 1 && !grep({ $_->[0] != 200 } @slow, @during),
       'the held task and the calls around the reload all succeeded')
        or diag(explain([ @slow, @during ]));
    like($slow[0][1], qr/^b \d+$/, 'the held task was answered by the old code');
    ok((grep { $_->[1] =~ /^a / } @during), 'the new code answered calls');
}

# ---- one reload at a time
{
    my $slow = start_clients($nginx, 1, '/count?req=sleep:800');
    sleep 0.2;
    my $first = start_clients($nginx, 1, '/reload');
    sleep 0.2;
    ($status, $text) = body($nginx, '/reload');
    is($status, 500, 'a second reload while one runs is refused');
    like($text, qr/a reload is in progress/, 'and says why');
    stop_clients($slow);
    my @first = stop_clients($first);
    is($first[0][0], 200, 'the first reload ended well');
}

# ---- an old version that does not retire in time: with retire_timeout the
# new version starts without its state, and the old one, still mapped,
# answers the call it holds later
{
    my $slow = start_clients($nginx, 1, '/count?req=sleep:1500');
    ok(wait_until(sub { +{ stats($nginx) }->{inflight} == 1 }, 5, 'slow call held'),
       'the old version holds a 1.5 s call');
    deploy('b');
    my ($st, $res) = body($nginx, '/reload?retire_timeout=0.3');
    is($st, 200, 'retire_timeout: the reload succeeds');
    like($res, qr/^ok \d+ \d+ overdue$/,
         'it ends while the old version holds its call, and says so');
    is(+{ stats($nginx) }->{inflight}, 1, 'the held call is still in flight');
    is_deeply([ body($nginx, '/count') ], [ 200, 'b 1' ],
              'the new code serves at once, with a fresh count');
    is((body($nginx, '/maps'))[1], 2, 'the old build stays mapped meanwhile');
    my @slow = stop_clients($slow);
    like($slow[0][1] // '', qr/^a \d+$/, 'the held call was answered by the old code');
    ok(!grep({ $_->[0] != 200 } @slow), 'every slow call succeeded')
        or diag(explain(\@slow));
    ok(wait_until(sub { (body($nginx, '/maps'))[1] == 1 }, 10, 'old build unmapped'),
       'the old version was reaped once its call ended');
}

# ---- 50 reloads under load, alternating two builds on disk with unpin
{
    my $r = reload_under_load($nginx, reloads => 50, before_each => sub {
        my $which = $_[0] % 2 ? 'b' : 'a';
        deploy($which);
        return $which;
    });
    is((body($nginx, '/maps'))[1], 1,
       'unpin: one build mapped after 50 reloads');
    is_deeply([ @{ $r->{stats} }{qw(failures failed)} ], [ 1, 0 ],
              'still the one failed reload of before, and no failed call');
}

# one line per reload: 50 under load, and the others above
is(scalar(grep { $_->[1] eq 'reload' } audit_lines($nginx)),
   +{ stats($nginx) }->{reloads} + 1 + 2,
   'audit: a line for every reload: ok, failed, refused (missing, busy)');

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
$mark = length $nginx->error_log_text;
$nginx->quit;
is_deeply([ map { "@$_[0..2]" } audit_lines($nginx, $mark) ],
          [ 'notice unload ok' ], 'audit: nginx -s quit unloads, one line');
$nginx->stop;

done_testing;
