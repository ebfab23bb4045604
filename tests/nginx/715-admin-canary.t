# resty.hotffi.admin's canary: a reload reaches one worker first, and the
# others only once it succeeded, its probe answered and it stayed up; a
# canary that dies, fails or fails its probe stops the rollout with the
# other worker untouched (same pid, same version, still serving).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use JSON::PP;

my $build = "$HotffiTest::REPO/build/lib";
BAIL_OUT("build first: make ($build/libinitcrash.so does not exist)")
    unless -e "$build/libinitcrash.so";

my $http_config = <<'CONF';
lua_shared_dict hotffi_admin 1m;
init_worker_by_lua_block {
    require("resty.hotffi.admin").init_worker{ dict = "hotffi_admin",
                                               poll = 0.05 }
    local hotffi = require("resty.hotffi")
    assert(hotffi.load(os.getenv("LIBDIR") .. "/libcounter.so", nil,
                       { name = "counter" }))
    assert(hotffi.load(os.getenv("LIBDIR") .. "/libctl.so", "threads=1",
                       { name = "ctl" }))
}
CONF

my $config = <<'CONF';
location = /admin {
    content_by_lua_block {
        require("resty.hotffi.admin").handler{ token = "s3cret" }
    }
}
# GET /count: "<worker pid> <build> <count>"
location = /count {
    content_by_lua_block {
        local ok, res = require("resty.hotffi").get("counter"):count("x")
        ngx.say(ngx.worker.pid(), " ", ok and res or "failed")
    }
}
CONF

my $nginx = HotffiTest::Nginx->new(name => 'canary', workers => 2,
                                   listen_options => 'reuseport',
                                   config => $config,
                                   http_config => $http_config,
                                   env => { LIBDIR => $build });
$nginx->start;

sub admin {
    my ($method, $query) = @_;
    my $res = $nginx->request($method, "/admin$query",
                              { headers => { Authorization => 'Bearer s3cret' } });
    my $body = eval { decode_json($res->{content}) };
    return ($res->{status}, $body, $res->{content});
}

# Each worker's pid and versions of the runtimes, by worker id (undef
# while a worker does not answer).
sub workers {
    my ($st, $body, $raw) = admin('GET', '');
    return undef unless $st == 200;
    return { map { $_->{id} => {
        pid     => $_->{pid},
        counter => $_->{runtimes}{counter}{version},
        ctl     => $_->{runtimes}{ctl}{version},
    } } @{ $body->{workers} } };
}

# The builds answering /count over $n requests: { build => answers }.
sub builds {
    my ($n) = @_;
    my %by;
    for (1 .. $n) {
        my $res = $nginx->get('/count');
        my ($build) = $res->{content} =~ /^\d+ (\w+) \d+$/;
        $by{ $build // "bad: $res->{status} $res->{content}" }++;
    }
    return \%by;
}

wait_until(sub { my @p = $nginx->worker_pids; @p == 2 }, 10, 'two workers')
    or BAIL_OUT('no two workers');
my $before = workers();
is_deeply([ sort keys %$before ], [ 0, 1 ], 'workers 0 and 1 report');

# ---- a new version that dies in libffi_init(): the canary dies with it.
# The canary is never the worker that took the admin request (it must live
# to answer): with two workers, the other one.
my ($st, $body, $raw) = admin('POST',
                              "?runtime=counter&lib=$build/libinitcrash.so");
is($st, 500, 'a canary that died: 500') or diag($raw);
my $c = $body->{canary} // -1;
my $o = 1 - $c;
ok($c == 0 || $c == 1, "worker $c was the canary");
like($body->{error},
     qr/^the canary, worker $c, failed: worker $c \(pid $before->{$c}{pid}\) exited before it answered; pid \d+ serves in its place; the rollout stopped: worker\(s\) $o kept what they run$/,
     'the error says the canary died and the rollout stopped') or diag($raw);
is(scalar @{ $body->{workers} }, 1, 'only the canary reports');

my $after;
wait_until(sub { $after = workers(); $after && keys %$after == 2 }, 10,
           'both workers report again');
isnt($after->{$c}{pid}, $before->{$c}{pid}, 'the canary was respawned');
is($after->{$o}{pid}, $before->{$o}{pid}, 'the other is the same process');
is($after->{$o}{counter}, 1, 'and was not reloaded');
is($after->{$c}{counter}, 1,
   'the respawned worker runs the old library, loaded afresh');
is_deeply(builds(20), { a => 20 }, 'every call is answered by build a');
like($nginx->error_log_text, qr/exited on signal 11/,
     'the master logged the crash');

# Reloads that fail in the canary leave the other worker as it was.
sub untouched {
    my ($body, $raw, $what) = @_;
    my $c = $body->{canary} // -1;
    my $o = 1 - $c;
    my $now = workers();
    is($now->{$o}{pid}, $after->{$o}{pid}, "$what: the other worker is the same process");
    is($now->{$o}{counter}, $after->{$o}{counter}, "$what: its counter was not reloaded");
    is($now->{$o}{ctl}, $after->{$o}{ctl}, "$what: nor its ctl");
    $after = $now;
}

# ---- a new version whose init fails: rolled back in the canary only
($st, $body, $raw) = admin('POST', '?runtime=counter&cfg=fail');
is($st, 500, 'a failing canary: 500') or diag($raw);
like($body->{error}, qr/^the canary, worker \d, failed: .*told to fail.*the rollout stopped: worker\(s\) \d kept what they run$/,
     'the canary failed and rolled back; the rollout stopped') or diag($raw);
untouched($body, $raw, 'a failing init');

# ---- a probe that fails after the canary's reload stops the rollout
($st, $body, $raw) = admin('POST',
                           '?runtime=ctl&cfg=threads=2&probe=any&probe_req=fail:3:broken');
is($st, 500, 'a failing probe: 500') or diag($raw);
like($body->{error}, qr/^the canary, worker \d, failed: the probe rt:any\(\) failed after the reload: .*broken/,
     'the error names the probe and its answer') or diag($raw);
untouched($body, $raw, 'a failing probe');

# ---- a good version: the canary, then the others
($st, $body, $raw) = admin('POST', "?runtime=counter&lib=$build/libcounter_b.so"
                                   . '&probe=count&probe_req=x&settle=0.2');
is($st, 200, 'a good reload: 200') or diag($raw);
$c = $body->{canary} // -1;
is_deeply([ map { [ $_->{id}, $_->{ok} ] } @{ $body->{workers} } ],
          [ [ $c, JSON::PP::true ], [ 1 - $c, JSON::PP::true ] ],
          'the canary first, then the other; both report ok') or diag($raw);
is_deeply(builds(20), { b => 20 }, 'every call is answered by build b');

# ---- canary=0: every worker at once, as before
($st, $body, $raw) = admin('POST', "?runtime=counter&lib=$build/libcounter.so&canary=0");
is($st, 200, 'canary=0: 200') or diag($raw);
ok(!exists $body->{canary}, 'no canary');
is(scalar @{ $body->{workers} }, 2, 'both report');
is_deeply(builds(20), { a => 20 }, 'build a again');

# ---- bad arguments reach no worker
$before = workers();
for my $q ('canary=2', 'canary=', 'settle=0', 'settle=61', 'probe=',
           'probe=__unload') {
    ($st, $body, $raw) = admin('POST', "?runtime=counter&$q");
    is($st, 400, "$q: 400") or diag($raw);
}
$after = workers();
is_deeply([ map { $after->{$_}{counter} } 0, 1 ],
          [ map { $before->{$_}{counter} } 0, 1 ], 'nothing reloaded');

unlike($nginx->error_log_text, qr/\[emerg\]/, 'no emerg in the error log');
$nginx->stop;

done_testing;
