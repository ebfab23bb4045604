# resty.hotffi.metrics: the whole instance's metrics in Prometheus text
# format, read back by a real parser (Debian's python3-prometheus-client,
# tests/lib/python/metrics_parse.py), and every count checked against the
# calls made: ok, runtime errors, timeouts, queue-full refusals, unloaded,
# one failed reload, sandbox stops; the latency histogram adds up; counters
# survive `nginx -s reload`, including what the old workers counted after
# the last scrape; the token is enforced.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use IPC::Open2 qw(open2);
use JSON::PP;
use File::Temp qw(tempdir);

my $PY = '/usr/bin/python3';
my $PARSER = "$HotffiTest::REPO/tests/lib/python/metrics_parse.py";
plan skip_all => 'python3-prometheus-client missing: make setup'
    unless system($PY, '-c', 'import prometheus_client') == 0;

# a code directory for resty.hotffi.code, readable by the workers
my $code = tempdir('hotffi-metrics-code-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $code;
sub put_code {
    my ($text) = @_;
    mkdir "$code/app", 0755;
    open my $fh, '>', "$code/app/api.lua.tmp" or die "write: $!";
    print {$fh} $text;
    close $fh or die "write: $!";
    chmod 0644, "$code/app/api.lua.tmp";
    rename "$code/app/api.lua.tmp", "$code/app/api.lua" or die "rename: $!";
}
put_code("return { v = 1 }\n");

my $http_config = <<"CONF";
lua_shared_dict hotffi_admin 1m;
lua_shared_dict hotffi_code 4m;
init_worker_by_lua_block {
    require("resty.hotffi.code").init_worker{ dict = "hotffi_code",
                                              dir = "$code",
                                              interval = 0.2, poll = 0.05 }
    require("resty.hotffi.admin").init_worker{ dict = "hotffi_admin",
                                               poll = 0.05 }
    local hotffi = require "resty.hotffi"
    assert(hotffi.load("ctl", nil, { name = "main" }))
    -- one thread, one slot: a second call waits, a third is refused
    assert(hotffi.load("ctl", "threads=1", { name = "slow", max_queue = 1 }))
}
CONF

my $config = <<'CONF';
location = /metrics {
    content_by_lua_block {
        require("resty.hotffi.metrics").handler{ token = "s3cret" }
    }
}
# GET /calls?ok=N&err=E&timeout=T: N echoes, E runtime errors, T timeouts
location = /calls {
    content_by_lua_block {
        local rt = require("resty.hotffi").get("main")
        local a = ngx.req.get_uri_args()
        local got = { ok = 0, err = 0, timeout = 0 }
        for _ = 1, tonumber(a.ok or 0) do
            if rt:q("echo:hello") then got.ok = got.ok + 1 end
        end
        for _ = 1, tonumber(a.err or 0) do
            local ok, rc = rt:q("fail:3:bad")
            if not ok and rc == 3 then got.err = got.err + 1 end
        end
        for _ = 1, tonumber(a.timeout or 0) do
            local ok, _, err = rt:q("sleep:300", 0.05)
            if not ok and err == "timeout" then
                got.timeout = got.timeout + 1
            end
        end
        ngx.say(got.ok, " ", got.err, " ", got.timeout)
    }
}
# GET /full?n=K: the slow runtime's one thread and one slot taken, then K
# calls refused; the two taken calls answered
location = /full {
    content_by_lua_block {
        local rt = require("resty.hotffi").get("slow")
        local busy = ngx.thread.spawn(function() return rt:q("sleep:500") end)
        -- the thread took it: the slot is free again
        for _ = 1, 300 do
            local s = rt:__stats()
            if s.inflight == 1 and s.queued == 0 then break end
            ngx.sleep(0.01)
        end
        local waiting = ngx.thread.spawn(function() return rt:q("echo:w") end)
        local full = 0
        for _ = 1, tonumber(ngx.var.arg_n) do
            local ok, _, err = rt:q("echo:x")
            if not ok and err == "queue full" then full = full + 1 end
        end
        local _, a = ngx.thread.wait(busy)
        local _, b = ngx.thread.wait(waiting)
        ngx.say(full, " ", tostring(a), " ", tostring(b))
    }
}
# one failed reload (the new version's init fails: rolled back)
location = /bad-reload {
    content_by_lua_block {
        local rt = require("resty.hotffi").get("main")
        local res, err = rt:__reload{ cfg = "fail-init" }
        ngx.say(res and "reloaded" or "failed")
    }
}
# calls to an unloaded runtime
location = /unloaded {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl", "gone",
                                                { name = "gone" })
        rt:__unload()
        -- what calls to an unloaded runtime do: someone holds it
        package.loaded.gone_runtime = rt
        local n = 0
        for _ = 1, 2 do
            local ok, _, err = rt:q("echo:x")
            if not ok and err:find("unloaded", 1, true) then n = n + 1 end
        end
        ngx.say(n)
    }
}
# sandboxed runs of tenant class "free": 2 ok, 1 instruction stop, 1 error
location = /sandbox {
    content_by_lua_block {
        local sandbox = require "resty.hotffi.sandbox"
        local sb = sandbox.new{ class = "free",
                                limits = { instructions = 10000 } }
        local kinds = {}
        for _, src in ipairs{ "return 1", "return 2", "while true do end",
                              "error('no')" } do
            local ok, _, kind = sb:compile(src):run()
            kinds[#kinds + 1] = ok and "ok" or kind
        end
        ngx.say(table.concat(kinds, " "))
    }
}
CONF

my $nginx = HotffiTest::Nginx->new(name => 'metrics', workers => 2,
                                   listen_options => 'reuseport',
                                   config => $config,
                                   http_config => $http_config);
$nginx->start;

wait_until(sub { my @p = $nginx->worker_pids; @p == 2 }, 10, 'two workers')
    or BAIL_OUT('no two workers');

my %auth = (headers => { Authorization => 'Bearer s3cret' });

# The exposition through the parser: { "sample{labels}" => value } with
# the labels sorted, and the families' types; dies when it does not parse.
sub scrape {
    my $res = $nginx->request('GET', '/metrics', {%auth});
    is($res->{status}, 200, 'scraped') or diag($res->{content});
    like($res->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
         'the text format 0.0.4');
    my $pid = open2(my $out, my $in, $PY, $PARSER);
    print $in $res->{content};
    close $in;
    my $json = do { local $/; <$out> };
    waitpid $pid, 0;
    is($?, 0, 'the parser read it') or diag($res->{content});
    my (%v, %type);
    for my $s (@{ decode_json($json || '[]') }) {
        my ($fam, $type, $name, $labels, $value) = @$s;
        my $l = join ',', map { "$_=$labels->{$_}" } sort keys %$labels;
        $v{"$name\{$l\}"} = $value;
        $type{$fam} = $type;
    }
    return (\%v, \%type, $res->{content});
}

# The sum over the workers of the samples named $name whose labels include
# every pair of %want.
sub total {
    my ($v, $name, %want) = @_;
    my $sum = 0;
    for my $k (keys %$v) {
        my ($n, $l) = $k =~ /^([^{]+)\{(.*)\}$/ or next;
        next unless $n eq $name;
        my %l = map { split /=/, $_, 2 } split /,/, $l;
        next if grep { ($l{$_} // '') ne $want{$_} } keys %want;
        $sum += $v->{$k};
    }
    return $sum;
}

# ---- the token
is($nginx->get('/metrics')->{status}, 401, 'no token: 401');

# ---- before any call: every family there is, parsed, counts at 0
my ($v, $type, $text) = scrape();
is($type->{hotffi_calls}, 'counter', 'hotffi_calls_total is a counter');
is($type->{hotffi_call_duration_seconds}, 'histogram',
   'the latency is a histogram');
is($type->{hotffi_queue_depth}, 'gauge', 'the queue depth is a gauge');
is(total($v, 'hotffi_calls_total'), 0, 'no calls yet');
is(total($v, 'hotffi_scrape_worker_up'), 2, 'both workers reported');
is(total($v, 'hotffi_runtime_version', runtime => 'main'), 2,
   'version 1 of main in each worker');

# ---- calls of every outcome, then exact counts
my @got;
for (1 .. 3) {
    @got = ($nginx->get('/calls?ok=4&err=1&timeout=1')->{content});
    is($got[0], "4 1 1\n", 'calls made');
}
is($nginx->get('/full?n=3')->{content}, "3 true true\n",
   'three calls refused on a full queue, the two others answered');
is($nginx->get('/unloaded')->{content}, "2\n", 'two calls to an unloaded runtime');
is($nginx->get('/bad-reload')->{content}, "failed\n", 'a reload failed');
is($nginx->get('/sandbox')->{content}, "ok ok instructions error\n",
   'sandboxed runs');

($v, $type, $text) = scrape();
my %main = (runtime => 'main');
is(total($v, 'hotffi_calls_total', %main, outcome => 'ok'), 12, '12 ok calls');
is(total($v, 'hotffi_calls_total', %main, outcome => 'error'), 3,
   '3 runtime errors');
is(total($v, 'hotffi_calls_total', %main, outcome => 'timeout'), 3,
   '3 timeouts');
is(total($v, 'hotffi_calls_total', %main, outcome => 'queue_full'), 0,
   'no queue full on main');
is(total($v, 'hotffi_calls_total', runtime => 'slow',
         outcome => 'queue_full'), 3, '3 queue-full refusals on slow');
is(total($v, 'hotffi_calls_total', runtime => 'slow', outcome => 'ok'), 2,
   'and its 2 answered calls');
is(total($v, 'hotffi_calls_total', runtime => 'gone',
         outcome => 'unloaded'), 2, '2 calls refused as unloaded');
is(total($v, 'hotffi_calls_total', outcome => 'abandoned'), 0,
   'none abandoned');
is(total($v, 'hotffi_reloads_total', %main, result => 'failed'), 1,
   'one failed reload');
is(total($v, 'hotffi_reloads_total', %main, result => 'ok'), 0,
   'and no good one');
is(total($v, 'hotffi_payload_bytes_total', %main, direction => 'in'),
   12 * length('echo:hello') + 3 * length('fail:3:bad')
   + 3 * length('sleep:300'), 'request bytes of main');
is(total($v, 'hotffi_payload_bytes_total', %main, direction => 'out'),
   12 * length('hello') + 3 * length('bad'),
   'answer bytes of the answers taken');

# the histogram: one observation per answer taken, buckets cumulative
is(total($v, 'hotffi_call_duration_seconds_count', %main), 15,
   'latency observed for the 15 answers taken');
is(total($v, 'hotffi_call_duration_seconds_bucket', %main, le => '+Inf'), 15,
   'the +Inf bucket holds them all');
ok(total($v, 'hotffi_call_duration_seconds_sum', %main) > 0, 'a sum');
my @w = grep { /^hotffi_call_duration_seconds_bucket\{le=[^,]+,runtime=main,worker=0\}$/ }
        keys %$v;
my @les = sort { $a <=> $b } map { /le=([^,]+)/; $1 eq '+Inf' ? 9e99 : $1 } @w;
is(scalar @les, 20, '20 buckets');
my $prev = 0;
my $monotonic = 1;
for my $le (@les) {
    my $k = 'hotffi_call_duration_seconds_bucket{le='
          . ($le == 9e99 ? '+Inf' : $le) . ',runtime=main,worker=0}';
    $monotonic = 0 if !defined $v->{$k} || $v->{$k} < $prev;
    $prev = $v->{$k} // 0;
}
ok($monotonic, 'buckets are cumulative');

# sandbox
is(total($v, 'hotffi_sandbox_runs_total', class => 'free', outcome => 'ok'),
   2, 'two sandboxed runs ok');
is(total($v, 'hotffi_sandbox_runs_total', class => 'free',
         outcome => 'instructions'), 1, 'one stopped by its instructions');
is(total($v, 'hotffi_sandbox_runs_total', class => 'free',
         outcome => 'error'), 1, 'one error');
ok(total($v, 'hotffi_sandbox_seconds_total', class => 'free') > 0,
   'their time');

# the bridge
my $completions = total($v, 'hotffi_bridge_completions_total');
ok($completions >= 1 && $completions >= total($v, 'hotffi_bridge_wakeups_total'),
   'completions, at least one per wake-up');
ok(exists $v->{'hotffi_bridge_spin_hits_total{worker=0}'}, 'spin hits');

# gauges
is(total($v, 'hotffi_calls_in_flight', %main), 0, 'nothing in flight');
is(total($v, 'hotffi_queue_depth', runtime => 'slow'), 0, 'queues empty');
ok(exists $v->{'hotffi_reload_duration_seconds{runtime=main,worker=0}'}
   || exists $v->{'hotffi_reload_duration_seconds{runtime=main,worker=1}'},
   'the failed reload\'s duration');

# ---- code versions: one running in each worker, a refused one, another
my @info = grep { /^hotffi_code_version_info\{/ } keys %$v;
is(scalar @info, 2, 'each worker runs a code version') or diag(join ' ', @info);
is(total($v, 'hotffi_code_versions_total', result => 'applied'), 2,
   'one applied in each worker');
put_code("return { v = \n");        # a syntax error: refused at the source
wait_until(sub { ($v) = scrape();
                 total($v, 'hotffi_code_versions_total', result => 'refused') >= 1 },
           10, 'the refusal counted');
is(total($v, 'hotffi_code_versions_total', result => 'refused'), 1,
   'one version refused');
put_code("return { v = 2 }\n");
wait_until(sub { ($v) = scrape();
                 total($v, 'hotffi_code_versions_total', result => 'applied') >= 4 },
           10, 'the next version counted');
is(total($v, 'hotffi_code_versions_total', result => 'applied'), 4,
   'and the next version applied in each worker');
@info = grep { /^hotffi_code_version_info\{/ } keys %$v;
is(scalar @info, 2, 'still one running version per worker');

# ---- counters survive nginx -s reload, and so do the calls the old
# workers made after the last scrape (added when they exit)
$nginx->get('/calls?ok=5') for 1 .. 2;
$nginx->reload;
wait_until(sub { my @p = $nginx->worker_pids; @p == 2 }, 10, 'two workers')
    or BAIL_OUT('no two workers after the reload');
($v) = scrape();
is(total($v, 'hotffi_calls_total', %main, outcome => 'ok'), 22,
   '22 ok calls after nginx -s reload');
is(total($v, 'hotffi_calls_total', %main, outcome => 'timeout'), 3,
   'the timeouts too');
is(total($v, 'hotffi_reloads_total', %main, result => 'failed'), 1,
   'and the failed reload');
is(total($v, 'hotffi_calls_in_flight', %main), 0,
   'gauges are the new workers\'');

$nginx->quit;
is_deeply([ grep { /\[(error|crit|alert|emerg)\]/
                   && !/audit: reload failed .* asked to fail/
                   && !/code version .* refused/ }
            split /\n/, $nginx->error_log_text ], [], 'no error in the log');

done_testing();
