# In-place reload of a runtime (rt:__reload): the same handle and queue, the
# old version's state handed to the new one, calls arriving meanwhile
# answered by the new version, a new version that fails to start rolled
# back, and under load: 50 reloads alternating two builds of a library
# replaced on disk, with unpin, lose no call and never reset the count.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);

my $build = "$HotffiTest::REPO/build/lib";
BAIL_OUT("build first: make ($build/libcounter_b.so does not exist)")
    unless -e "$build/libcounter_b.so";

# The deployment directory: one path whose file is replaced, by rename as
# an installer does, by build a or build b of the counter.
my $dir = tempdir('hotffi-reload-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
my $lib = "$dir/libcounter.so";

sub deploy {
    my ($which) = @_;
    my $from = $which eq 'a' ? "$build/libcounter.so" : "$build/libcounter_b.so";
    copy($from, "$lib.new") or die "copy: $!";
    rename "$lib.new", $lib or die "rename: $!";
}

my $config = <<'CONF';
# GET /count[?req=R]: one call of the counter
location = /count {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load(
            os.getenv("COUNTER_LIB"), nil, { unpin = true, name = "counter" }))
        local ok, res, err = rt:count(ngx.var.arg_req or "x")
        if not ok then
            ngx.status = 500
            ngx.say("failed: ", tostring(res), " ", tostring(err))
            return
        end
        ngx.say(res)
    }
}
# GET /reload[?state=0][&cfg=C][&lib=L]
location = /reload {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load(
            os.getenv("COUNTER_LIB"), nil, { unpin = true, name = "counter" }))
        local res, err = rt:__reload{ state = ngx.var.arg_state ~= "0",
                                      cfg = ngx.var.arg_cfg,
                                      lib = ngx.var.arg_lib }
        if not res then
            ngx.status = 500
            ngx.say("error: ", err)
            return
        end
        ngx.say("ok ", res.from, " ", res.to)
    }
}
location = /stats {
    content_by_lua_block {
        local rt = require("resty.hotffi").get("counter")
        local s = rt:__stats()
        local last = s.last_reload or {}
        ngx.say("version=", s.version, " reloads=", s.reloads,
                " failures=", s.reload_failures, " inflight=", s.inflight,
                " queued=", s.queued, " failed=", s.failed,
                " last_ok=", tostring(last.ok))
    }
}
location = /maps {
    content_by_lua_block {
        local n = 0
        for line in io.lines("/proc/self/maps") do
            if line:find("libcounter.so", 1, true) and line:find("r-xp") then
                n = n + 1
            end
        end
        ngx.say(n)
    }
}
CONF

sub body { my ($nginx, $path) = @_; my $r = $nginx->get($path); chomp(my $b = $r->{content}); return ($r->{status}, $b) }

deploy('a');
my $nginx = HotffiTest::Nginx->new(name => 'reload', config => $config,
                                   env => { COUNTER_LIB => $lib });
$nginx->start;

# ---- the count goes on across a reload into new code
is_deeply([ body($nginx, '/count') ], [ 200, 'a 1' ], 'first call: build a');
is_deeply([ body($nginx, '/count') ], [ 200, 'a 2' ], 'the count goes up');
deploy('b');
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 1 2' ],
          'reload from version 1 to 2');
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
my ($status, $text) = body($nginx, '/reload?cfg=fail');
is($status, 500, 'a failing new version fails the reload');
like($text, qr/libffi_init\(\) of runtime ".*libcounter\.so" failed: 1: told to fail by its configuration; version 3 serves again/,
     'the error names the init failure and the rollback');
is_deeply([ body($nginx, '/count') ], [ 200, 'b 2' ],
          'the old code serves again, its count handed back');
like((body($nginx, '/stats'))[1], qr/^version=3 reloads=2 failures=1 .* last_ok=false$/,
     'stats: still version 3, one failure');

# ---- a library that does not exist: refused before anything stops
($status, $text) = body($nginx, '/reload?lib=/nonexistent/libnope.so');
is($status, 500, 'a missing library fails the reload');
like($text, qr/dlopen\(\) "\/nonexistent\/libnope\.so" failed/, 'with dlopen\'s reason');
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

# ---- 50 reloads under load, alternating two builds on disk with unpin
{
    my ($s0, $b0) = body($nginx, '/count');
    my ($base) = $b0 =~ / (\d+)$/;
    my ($v0) = (body($nginx, '/stats'))[1] =~ /^version=(\d+) reloads=(\d+)/;
    my $r0 = $2;
    my $clients = start_clients($nginx, 4, '/count');
    my ($ok, $prev, $which) = (0, undef, 'a');
    for my $i (1 .. 50) {
        $which = $which eq 'a' ? 'b' : 'a';
        deploy($which);
        my ($st, $tx) = body($nginx, '/reload');
        $ok++ if $st == 200 && $tx =~ /^ok (\d+) (\d+)$/ && $2 == $1 + 1;
        sleep 0.01;
    }
    my @answers = stop_clients($clients);
    is($ok, 50, '50 reloads, each to the next version');
    my @failed = grep { $_->[0] != 200 } @answers;
    is(scalar @failed, 0, 'no call failed across 50 reloads')
        or diag(explain([ @failed[0 .. ($#failed < 4 ? $#failed : 4)] ]));
    my %seen;
    my @counts = map { $_->[1] =~ /^[ab] (\d+)$/ ? $1 : -1 } @answers;
    $seen{$_}++ for @counts;
    my $n = @answers;
    ok($n > 50, "the clients made $n calls meanwhile");
    is(scalar(grep { $seen{$_} > 1 } keys %seen), 0, 'no count was handed out twice');
    my ($min, $max) = (sort { $a <=> $b } @counts)[0, -1];
    is($min, $base + 1, 'the count went on from before the reloads');
    is($max, $base + $n, 'and never restarted: every call counted once');
    ok((grep { /^a / } map { $_->[1] } @answers)
       && (grep { /^b / } map { $_->[1] } @answers),
       'both builds answered');
    is_deeply([ body($nginx, '/count') ], [ 200, "$which " . ($base + $n + 1) ],
              'the last build deployed answers, counting on');
    is((body($nginx, '/maps'))[1], 1, 'unpin: one build mapped after 50 reloads');
    my $v = $v0 + 50;
    my $r = $r0 + 50;
    like((body($nginx, '/stats'))[1],
         qr/^version=$v reloads=$r failures=1 inflight=0 queued=0 failed=0 /,
         'stats after it all: 50 more versions, nothing failed or left');
}

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
$nginx->stop;

done_testing;
