# In-place reload of a Go runtime built with the SDK (rt:__reload): the ctl
# runtime (sdk/go/internal/ctl) counts "count" calls per instance, hands
# the count over from libffi_retire (hotffi.Wait, hotffi.HandOver) and
# takes it back in libffi_init (hotffi.State).  A Go library is NODELETE
# and one Go runtime per process is all Go supports, so every reload
# starts a new instance of the same library, by cfg: 20 reloads under load
# lose no call and never reset the count; a cfg whose init fails is rolled
# back with the count.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use Time::HiRes qw(sleep);

plan(skip_all => 'the Go runtime is not run under valgrind')
    if $ENV{HOTFFI_TEST_VALGRIND};

my $build = "$HotffiTest::REPO/build/lib";
BAIL_OUT("build first: make ($build/libgo_ctl.so does not exist)")
    unless -e "$build/libgo_ctl.so";

{
    my $syms = `nm -D --defined-only $build/libgo_ctl.so`;
    is(join(' ', sort map { (split)[2] } grep { / T libffi_/ } split /\n/, $syms),
       'libffi_fini libffi_init libffi_retire',
       'go_ctl exports libffi_retire next to libffi_init and libffi_fini');
}

my $config = <<'CONF';
location = /count {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("go_ctl", "a",
                                                       { name = "gocount" }))
        local ok, res, err = rt:q("count")
        if not ok then
            ngx.status = 500
            ngx.say("failed: ", tostring(res), " ", tostring(err))
            return
        end
        ngx.say(res)
    }
}
# GET /reload[?state=0][&cfg=C]
location = /reload {
    content_by_lua_block {
        local rt = require("resty.hotffi").get("gocount")
        local res, err = rt:__reload{ state = ngx.var.arg_state ~= "0",
                                      cfg = ngx.var.arg_cfg }
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
        local st = require("resty.hotffi").get("gocount"):__stats()
        ngx.say(st.version, " ", st.reloads, " ", st.reload_failures)
    }
}
CONF

sub body {
    my ($nginx, $path) = @_;
    my $r = $nginx->get($path);
    chomp(my $b = $r->{content});
    return ($r->{status}, $b);
}

my $nginx = HotffiTest::Nginx->new(name => 'go inplace', config => $config);
$nginx->start;

is_deeply([ body($nginx, '/count') ], [ 200, 'a 1' ], 'first call');
is_deeply([ body($nginx, '/count') ], [ 200, 'a 2' ], 'the count goes up');
is_deeply([ body($nginx, '/reload?cfg=b') ], [ 200, 'ok 1 2' ],
          'reload into a new instance with cfg b');
is_deeply([ body($nginx, '/count') ], [ 200, 'b 3' ],
          'cfg b answers, with the count handed over');
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 2 3' ],
          'reload keeping the cfg');
is_deeply([ body($nginx, '/count') ], [ 200, 'b 4' ], 'count kept again');

# without hand-over hotffi calls libffi_fini: the new instance starts at 0
is_deeply([ body($nginx, '/reload?state=0&cfg=a') ], [ 200, 'ok 3 4' ],
          'reload without hand-over');
is_deeply([ body($nginx, '/count') ], [ 200, 'a 1' ], 'the count restarted');
is_deeply([ body($nginx, '/count') ], [ 200, 'a 2' ], 'and goes up');

my ($status, $text) = body($nginx, '/reload?cfg=fail-init');
is($status, 500, 'a cfg whose init fails fails the reload');
like($text, qr/failed: 7: asked to fail by its configuration; version 4 serves again$/,
     'with init\'s own message; the old version serves again');
is_deeply([ body($nginx, '/count') ], [ 200, 'a 3' ],
          'the old cfg again, its count handed back');
is_deeply([ body($nginx, '/stats') ], [ 200, '4 3 1' ],
          'version 4 serves: three reloads, one failure');

# ---- 20 reloads under load, alternating cfgs, a refused one among them
{
    my ($s0, $b0) = body($nginx, '/count');
    my ($base) = $b0 =~ / (\d+)$/;
    my $clients = start_clients($nginx, 4, '/count');
    # version 5 was the one that failed: the first goes from 4 to 6
    my ($ok, $refused, $prev, $cfg) = (0, 0, 4, 'a');
    for my $i (1 .. 20) {
        if ($i == 10) {
            my ($st, $tx) = body($nginx, '/reload?cfg=fail-init');
            $refused++
                if $st == 500 && $tx =~ /version $prev serves again$/;
        }
        $cfg = $cfg eq 'a' ? 'b' : 'a';
        my ($st, $tx) = body($nginx, "/reload?cfg=$cfg");
        if ($st == 200 && $tx =~ /^ok (\d+) (\d+)$/ && $1 == $prev
            && $2 > $1)
        {
            $ok++;
            $prev = $2;
        }
        sleep 0.01;
    }
    my @answers = stop_clients($clients);
    is($ok, 20, '20 reloads, each from the version the last one started');
    is($refused, 1, 'and a refused cfg among them was rolled back');
    my @failed = grep { $_->[0] != 200 } @answers;
    is(scalar @failed, 0, 'no call failed across 20 reloads')
        or diag(explain([ @failed[0 .. ($#failed < 4 ? $#failed : 4)] ]));
    my $n = @answers;
    ok($n > 20, "the clients made $n calls meanwhile");
    my %seen;
    my @counts = map { $_->[1] =~ /^[ab] (\d+)$/ ? $1 : -1 } @answers;
    $seen{$_}++ for @counts;
    is(scalar(grep { $seen{$_} > 1 } keys %seen), 0,
       'no count was handed out twice');
    my ($min, $max) = (sort { $a <=> $b } @counts)[0, -1];
    is($min, $base + 1, 'the count went on from before the reloads');
    is($max, $base + $n, 'and never restarted: every call counted once');
    ok((grep { /^a / } map { $_->[1] } @answers)
       && (grep { /^b / } map { $_->[1] } @answers),
       'instances of both cfgs answered');
    is_deeply([ body($nginx, '/count') ], [ 200, "$cfg " . ($base + $n + 1) ],
              'the last cfg answers, counting on');
    is_deeply([ body($nginx, '/stats') ], [ 200, "$prev 23 2" ],
              "version $prev serves: 23 reloads, 2 failures");
}

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
$nginx->stop;

done_testing;
