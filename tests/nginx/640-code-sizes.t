# resty.hotffi.code: sizes are checked before anything is read.  A bundle
# in Redis larger than max_size is refused from the size Redis announces
# (just above the limit, and tens of MB); so are a current-version record
# of tens of MB (which bin/hotffi-bundle passes over too) and a PUBLISH
# notification of
# tens of MB, which ends the subscription unread (the leader subscribes
# again); a file in the directory source is refused from its size before
# it is read.  Proof that nothing was read: the nginx worker's peak
# resident memory (VmHWM) stays below what reading would have cost.
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

my $MAX    = 1024 * 1024;           # max_size of both instances
my $BIG    = 64 * 1024 * 1024;      # a bundle, a file
my $NOTIFY = 20 * 1024 * 1024;      # a notification: below Redis' 32 MB
                                    # pub/sub output buffer limit
my $SECRET = "sizes-secret-$$";
my $CLI    = $HotffiCode::CLI;

# The peak resident memory of a process, in bytes.
sub peak {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or die "/proc/$pid/status: $!";
    my ($kb) = join('', <$fh>) =~ /^VmHWM:\s+(\d+) kB/m or die "no VmHWM";
    return $kb * 1024;
}

sub status_of {
    my ($n) = @_;
    my $res = $n->get('/admin');
    return $res->{status} == 200 ? decode_json($res->{content}) : {};
}

my $src = tempdir('hotffi-code-src-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $src;
make_path("$src/app", { mode => 0755 });

sub api { HotffiCode::put($src, 'app/api.lua', "return { handler = function() ngx.say('$_[0]') end }\n") }

# A file of $size bytes that takes no disk space (sparse).
sub sparse {
    my ($rel, $size) = @_;
    open my $fh, '>', "$src/$rel" or die "cannot write $src/$rel: $!";
    truncate $fh, $size or die "truncate: $!";
    close $fh;
    chmod 0644, "$src/$rel";
}

# ---------------------------------------------------------------------------
# Redis
{
    my $redis = HotffiRedis->new;
    $redis->start;
    my $port = $redis->port;
    my $n = HotffiTest::Nginx->new(
        name        => 'sizes redis',
        workers     => 1,
        env         => { HOTFFI_CODE_SECRET => $SECRET },
        http_config => HotffiCode::redis_http_config(port => $port,
                                                     max_size => $MAX),
        config      => HotffiCode::locations(),
    );
    $n->start;

    sub publish_v1 {
        my ($v) = @_;
        api($v);
        local $ENV{HOTFFI_CODE_SECRET} = $SECRET;
        my $out = qx{$CLI publish $src --redis ${\ $redis->addr } --version $v 2>&1};
        die "hotffi-bundle publish $v failed: $out" if $?;
    }

    # A bundle of $size bytes made inside Redis (SETRANGE: the test never
    # holds it), current under a valid signed record: only its size is
    # wrong.
    sub big_bundle {
        my ($v, $size) = @_;
        $redis->command('DEL', "hotffi:code:bundle:$v");
        $redis->command('SETRANGE', "hotffi:code:bundle:$v", $size - 1, 'x');
        my $current = $redis->command('GET', 'hotffi:code:current');
        $redis->command('SET', 'hotffi:code:current',
            HotffiCode::sign_record($SECRET, $v,
                HotffiCode::next_sequence($current, $SECRET), 'a' x 64));
        $redis->command('PUBLISH', 'hotffi:code:notify', $v);
    }

    sub refused_r {
        my ($re, $what) = @_;
        ok(wait_until(sub { (status_of($n)->{source}{last_refused} // '') =~ $re },
                      10, $what), $what) or diag(explain(status_of($n)->{source}));
    }

    publish_v1('v1');
    ok(wait_until(sub { ($n->get('/t')->{content} // '') eq "v1\n" }, 10, 'v1 serves'),
       'redis: v1 serves');
    my ($worker) = $n->worker_pids;
    my $base = peak($worker);

    big_bundle('v2', $MAX + 1);
    refused_r(qr/^v2: bundle too large: ${\ ($MAX + 1) } bytes in redis \(max_size $MAX\); not read$/,
              'a bundle one byte above max_size: refused, unread');

    big_bundle('v3', $BIG);
    refused_r(qr/^v3: bundle too large: $BIG bytes in redis \(max_size $MAX\); not read$/,
              'a bundle of 64 MiB: refused, unread');
    cmp_ok(peak($worker) - $base, '<', $BIG / 2,
           'the worker never held it (peak memory grew by less than half of it)');
    is($n->get('/t')->{content}, "v1\n", 'v1 still serves');

    # a current-version record of 64 MiB (it is read up to 4 KiB only)
    $redis->command('SETRANGE', 'hotffi:code:current', $BIG - 1, 'x');
    refused_r(qr/^\?: the current-version record: a value of $BIG bytes, more than 4096: not read$/,
              'a record of 64 MiB: refused, unread');
    cmp_ok(peak($worker) - $base, '<', $BIG / 2, 'and was never held');
    is($n->get('/t')->{content}, "v1\n", 'v1 still serves');

    # a notification of 20 MiB, made inside Redis.  A PUBLISH nobody hears
    # is lost (the leader may be between two subscriptions): it is sent
    # again, once a second, until the leader says it refused one.
    my $sent = 0;
    ok(wait_until(sub {
            if (time - $sent >= 1) {
                $redis->command('EVAL', "redis.call('PUBLISH', KEYS[1],"
                                . " string.rep('x', $NOTIFY)) return 1",
                                1, 'hotffi:code:notify');
                $sent = time;
            }
            $n->error_log_text =~ /subscription: a value of $NOTIFY bytes, more than \d+: not read/
        }, 20, 'the notification refused'), 'a notification of 20 MiB ends the subscription unread');
    cmp_ok(peak($worker) - $base, '<', $NOTIFY / 2, 'and was never held');
    publish_v1('v4');    # the tool does not read the large record either
    ok(wait_until(sub { ($n->get('/t')->{content} // '') eq "v4\n" }, 10, 'v4 serves'),
       'the leader subscribed again: a later version is applied');

    $n->quit;
    ok(!$n->killed, 'redis: nginx quit by itself');
    # Redis is busy for a moment while its own Lua builds the 20 MiB
    # notification: a look at the source meanwhile can time out (and says
    # so as the source being down)
    my @unexpected = grep { !/refused.*still serving|subscription: a value of|workers keep serving|lua tcp socket read timed out/ }
                     grep { /\[(?:error|alert|crit|emerg)\]/ } split /^/m, $n->error_log_text;
    is(scalar @unexpected, 0, 'redis: no other error') or diag @unexpected;
    $n->stop;
    $redis->stop;
}

# ---------------------------------------------------------------------------
# The directory source
{
    unlink glob "$src/app/*";
    api('d1');
    my $n = HotffiTest::Nginx->new(
        name        => 'sizes dir',
        workers     => 1,
        http_config => <<"CONF",
lua_shared_dict hotffi_code 8m;
init_worker_by_lua_block {
    require("resty.hotffi.code").init_worker{
        dict = "hotffi_code",
        dir = "$src",
        interval = 0.2,
        max_size = $MAX,
    }
}
CONF
        config      => HotffiCode::locations(),
    );
    $n->start;
    is($n->get('/t')->{content}, "d1\n", 'dir: d1 serves');
    my ($worker) = $n->worker_pids;
    my $base = peak($worker);

    sparse('app/big.lua', $BIG);
    ok(wait_until(sub { (status_of($n)->{source}{error} // '') =~
                        m{"\Q$src\E/app/big\.lua": $BIG bytes would make the bundle larger than max_size $MAX: not read} },
                  10, 'the big file refused'), 'dir: a file of 64 MiB is refused, unread');
    cmp_ok(peak($worker) - $base, '<', $BIG / 2, 'dir: the worker never held it');
    is($n->get('/t')->{content}, "d1\n", 'dir: d1 still serves');

    unlink "$src/app/big.lua";
    sparse('app/big.lua', $MAX);
    ok(wait_until(sub { (status_of($n)->{source}{error} // '') =~
                        m{"\Q$src\E/app/big\.lua": $MAX bytes would make the bundle larger than max_size $MAX: not read} },
                  10, 'the max_size file refused'),
       'dir: a file of max_size bytes (the bundle would be larger) is refused, unread');

    unlink "$src/app/big.lua";
    api('d2');
    ok(wait_until(sub { ($n->get('/t')->{content} // '') eq "d2\n" }, 10, 'd2 serves'),
       'dir: without it, the next version is applied');

    $n->quit;
    my @unexpected = grep { !/would make the bundle larger than max_size/ }
                     grep { /\[(?:error|alert|crit|emerg)\]/ } split /^/m, $n->error_log_text;
    is(scalar @unexpected, 0, 'dir: no other error') or diag @unexpected;
    $n->stop;
}

done_testing();
