# Self-test of tests/lib/HotffiTest.pm.  Uses plain lua-nginx-module
# features only, so it runs (and must pass) without a hotffi build.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp qw(tempdir);
use HotffiTest;

# The harness itself is under test here, not the hotffi module.
$ENV{HOTFFI_TEST_NO_HOTFFI} = 1;

my $LIB = "$FindBin::Bin/../lib";
my $VALGRIND = $ENV{HOTFFI_TEST_VALGRIND};

my $IMPERATIVE_CONFIG = <<'CONF';
location = /t {
    content_by_lua_block { ngx.say("hello from ", ngx.worker.pid()) }
}
location = /echo {
    content_by_lua_block {
        ngx.req.read_body()
        ngx.print(ngx.req.get_body_data() or "")
    }
}
location = /env {
    content_by_lua_block {
        ngx.say(os.getenv("HOTFFI_HARNESS_VAR"), "|", os.getenv("HOTFFI_TEST_PORT"),
                "|", os.getenv("LD_LIBRARY_PATH"))
    }
}
location = /count {
    content_by_lua_block { ngx.say((ngx.shared.counters:incr("n", 1, 0))) }
}
location = /log-later {
    content_by_lua_block {
        ngx.timer.at(0.3, function() ngx.log(ngx.WARN, "timer fired") end)
        ngx.say("scheduled")
    }
}
CONF

subtest 'imperative API: start, requests, workers, reload, quit' => sub {
    plan skip_all => 'needs a master and two workers' if $VALGRIND;
    my $n = HotffiTest::Nginx->new(
        name        => 'imperative',
        workers     => 2,
        env         => { HOTFFI_HARNESS_VAR => 'from-env' },
        http_config => 'lua_shared_dict counters 1m;',
        config      => $IMPERATIVE_CONFIG,
    );
    ok(eval { $n->start; 1 }, 'start') or return diag($@);
    my $master = $n->pid;
    ok($master, 'master pid known');
    like($n->port, qr/^\d+$/, 'port known');

    my $res = $n->get('/t');
    is($res->{status}, 200, 'GET status');
    like($res->{content}, qr/^hello from \d+\n\z/, 'GET body');

    my @workers;
    wait_until(sub { (@workers = $n->worker_pids) == 2 }, 5, 'two worker processes');
    is(scalar @workers, 2, 'two workers listed');
    ok(!grep({ $_ == $master } @workers), 'the master is not listed as a worker');
    my ($served_by) = $res->{content} =~ /(\d+)/;
    ok(grep({ $_ == $served_by } @workers), 'the request was served by a listed worker');

    my $big = join '', map { chr(65 + $_ % 26) } 1 .. 100_000;
    $res = $n->post('/echo', $big);
    is($res->{status}, 200, 'POST status');
    ok($res->{content} eq $big, 'POST body echoed whole');

    my ($var, $port, $libs) = split /\|/, $n->get('/env')->{content} =~ s/\n\z//r;
    is($var, 'from-env', 'env option reaches the workers');
    is($port, $n->port, 'HOTFFI_TEST_PORT is the port');
    like($libs, qr{^\Q$HotffiTest::REPO\E/build/lib(:|$)}, 'LD_LIBRARY_PATH starts with build/lib');

    my $conf = HotffiTest::_slurp($n->prefix . '/conf/nginx.conf');
    like($conf, qr/^worker_processes 2;$/m, 'config: worker_processes');
    like($conf, qr/^\s*listen 127\.0\.0\.1:\d+;$/m, 'config: listens on 127.0.0.1 only');
    unlike($conf, qr/hotffi_module/, 'config: no hotffi module with HOTFFI_TEST_NO_HOTFFI=1');

    is($n->get('/log-later')->{content}, "scheduled\n", 'timer scheduled');
    ok(wait_until(sub { $n->error_log_text =~ /timer fired/ }, 5, 'the timer log line'),
        'wait_until saw the timer log line');

    my $stats = concurrent_requests($n, 40, 4, '/count');
    is_deeply($stats, { ok => 40, failed => 0, statuses => { 200 => 40 } }, 'concurrent_requests: all ok');
    is($n->get('/count')->{content}, "41\n", 'every concurrent request reached nginx');
    $stats = concurrent_requests($n, 6, 3, '/missing');
    is_deeply($stats, { ok => 0, failed => 6, statuses => { 404 => 6 } }, 'concurrent_requests: failures counted');

    ok(eval { $n->reload; 1 }, 'reload') or diag($@);
    my @new_workers = $n->worker_pids;
    is(scalar @new_workers, 2, 'two workers after reload');
    my %old = map { $_ => 1 } @workers;
    ok(!grep({ $old{$_} } @new_workers), 'all workers replaced');
    is($n->pid, $master, 'same master after reload');
    ($served_by) = $n->get('/t')->{content} =~ /(\d+)/;
    ok(grep({ $_ == $served_by } @new_workers), 'a new worker serves after reload');
    is($n->get('/count')->{content}, "42\n", 'shared dict survives the reload');

    $n->signal('USR1');
    ok(wait_until(sub { $n->error_log_text =~ /reopening logs/ }, 5, 'log reopening'), 'signal USR1 delivered');

    my $elapsed = $n->quit(timeout => 10);
    ok(!$n->killed, 'quit: exited without SIGKILL');
    cmp_ok($elapsed, '<', 10, 'quit: elapsed seconds returned');
    ok(!$n->pid, 'quit: no master pid any more');
    ok(!kill(0, $master), 'quit: master is gone');
    ok(!grep({ kill 0, $_ } @new_workers), 'quit: workers are gone');

    my $prefix = $n->prefix;
    $n->stop;
    ok(!-e $prefix || $ENV{HOTFFI_TEST_KEEP}, 'stop removes the prefix');
};

subtest 'imperative API: a start failure dies with the error log' => sub {
    my $n = HotffiTest::Nginx->new(name => 'broken', config => 'bogus_directive on;');
    ok(!eval { $n->start; 1 }, 'start dies');
    like($@, qr/nginx failed to start/, 'says it failed');
    like($@, qr/unknown directive "bogus_directive"/, 'shows the error log');
    ok(!$n->pid, 'no master left');
    $n->stop;
};

subtest 'imperative API: quit kills an nginx that does not exit in time' => sub {
    # A single-process nginx exits on QUIT without waiting for requests.
    plan skip_all => 'needs a master' if $VALGRIND;
    my $n = HotffiTest::Nginx->new(
        name   => 'stuck',
        config => 'location = /t { content_by_lua_block { ngx.sleep(30) } }',
    );
    ok(eval { $n->start; 1 }, 'start') or return diag($@);
    my $group = $n->pid;
    # The client gives up, but the worker keeps sleeping and so cannot
    # finish a graceful shutdown.
    is($n->get('/t', { timeout => 0.5 })->{status}, 599, 'request timed out');
    my $elapsed = $n->quit(timeout => 1);
    ok($n->killed, 'killed after the timeout');
    cmp_ok($elapsed, '<', $VALGRIND ? 20 : 5, 'quit returned within bounds');
    ok(!kill(0, -$group), 'no process left in the group');
    $n->stop;
};

subtest 'imperative API: an object going out of scope stops nginx' => sub {
    my $master;
    {
        my $n = HotffiTest::Nginx->new(name => 'scoped', config => 'location = /t { return 200; }');
        ok(eval { $n->start; 1 }, 'start') or return diag($@);
        $master = $n->pid;
    }
    ok(!kill(0, $master), 'master gone after DESTROY');
};

# Runs a throw-away test file with the given __DATA__ in a separate perl,
# so that the failures it is meant to produce do not fail this file.
sub run_test_file {
    my ($data, %env) = @_;
    my $dir = tempdir(CLEANUP => 1);
    open my $fh, '>', "$dir/meta.t" or die "meta.t: $!";
    print {$fh} "use strict; use warnings; use lib '$LIB'; use HotffiTest;\n"
        . "run_tests();\n__DATA__\n$data";
    close $fh;
    local @ENV{ keys %env } = values %env;
    my $output = `"$^X" "$dir/meta.t" 2>&1`;
    return ($? >> 8, $output);
}

subtest 'failing blocks are reported with diagnostics' => sub {
    my ($exit, $out) = run_test_file(<<'DATA');
=== TEST 1: wrong body
--- config
location = /t { content_by_lua_block { ngx.say("actual") } }
--- request
GET /t
--- response_body
expected

=== TEST 2: unexpected error
--- config
location = /t { content_by_lua_block { ngx.log(ngx.ERR, "surprise"); ngx.say("ok") } }
--- request
GET /t
--- response_body
ok

=== TEST 3: wrong status
--- config
location = /t { return 404; }
--- request
GET /t

=== TEST 4: missing log line
--- config
location = /t { return 200; }
--- request
GET /t
--- error_log
never logged
--- wait: 0.2
DATA
    isnt($exit, 0, 'non-zero exit');
    like($out, qr/^ok \d+ - TEST 1: wrong body - nginx started$/m, 'start check passes');
    like($out, qr/^not ok \d+ - TEST 1: wrong body - response_body$/m, 'wrong body fails');
    like($out, qr/^not ok \d+ - TEST 2: unexpected error - error.log lacks '\[error\]'$/m,
        'default no_error_log fails on [error]');
    like($out, qr/^# offending lines:\n#.*surprise/m, 'shows the offending log line');
    like($out, qr/^not ok \d+ - TEST 3: wrong status - status code$/m, 'wrong status fails');
    like($out, qr/^# status: 404 Not Found$/m, 'shows the status');
    like($out, qr/^# request: GET \/t$/m, 'shows the request');
    like($out, qr/^not ok \d+ - TEST 4: missing log line - error.log has 'never logged'$/m,
        'missing error_log line fails');
    like($out, qr/^# last 50 lines of error\.log:$/m, 'shows the error log tail');
    like($out, qr/^# prefix: \S+hotffi-test-\w+ /m, 'shows the prefix');
    like($out, qr/Looks like you failed 4 tests/, 'exactly the broken checks fail');
};

subtest 'ONLY restricts the run to marked blocks' => sub {
    my ($exit, $out) = run_test_file(<<'DATA');
=== TEST 1: would fail
--- config
location = /t { return 500; }
--- request
GET /t

=== TEST 2: the only one
--- ONLY
--- config
location = /t { return 204; }
--- request
GET /t
--- error_code: 204
DATA
    is($exit, 0, 'passes') or diag($out);
    unlike($out, qr/TEST 1/, 'the unmarked block did not run');
    like($out, qr/^ok \d+ - TEST 2: the only one - status code$/m, 'the marked block ran');
};

subtest 'a block needing hotffi bails out without a build' => sub {
    my ($exit, $out) = run_test_file(<<'DATA', HOTFFI_MODULE => '/nonexistent/ngx_http_hotffi_module.so');
=== TEST 1: needs the module
--- config
location = /t { content_by_lua_block { require "hotffi" } }
--- request
GET /t
DATA
    isnt($exit, 0, 'non-zero exit');
    like($out, qr/^Bail out!\s+build first: make/m, 'says to build first');
};

subtest 'a misspelt section is an error' => sub {
    my ($exit, $out) = run_test_file(<<'DATA');
=== TEST 1: typo
--- config
location = /t { return 200; }
--- request
GET /t
--- respnse_body
DATA
    isnt($exit, 0, 'non-zero exit');
    like($out, qr/TEST 1: typo: unknown section '--- respnse_body'/, 'names the section');
};

run_tests();

__DATA__

=== TEST 1: content_by_lua_block says hello
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("hello, world")
        }
    }
--- request
GET /t
--- response_body
hello, world
--- response_headers
Content-Type: text/plain
Server: qr/^nginx\b/
!X-Not-There



=== TEST 2: ngx.exit sets the status code
--- config
    location = /t {
        content_by_lua_block { ngx.exit(ngx.HTTP_NOT_FOUND) }
    }
--- request
GET /t
--- error_code: 404
--- response_body_like
<title>404 Not Found</title>



=== TEST 3: ngx.status with a body
--- config
    location = /t {
        content_by_lua_block {
            ngx.status = 201
            ngx.say("created")
        }
    }
--- request
GET /t
--- error_code: 201
--- response_body
created



=== TEST 4: POST body is echoed
--- config
    location = /echo {
        content_by_lua_block {
            ngx.req.read_body()
            ngx.print(ngx.req.get_body_data())
        }
    }
--- request
POST /echo
--- request_body
line one
line two
--- response_body
line one
line two



=== TEST 5: a large POST body arrives whole (eval filter)
--- config
    location = /count {
        content_by_lua_block {
            ngx.req.read_body()
            local body = ngx.req.get_body_data()
            local _, n = body:gsub("0123456789", "")
            ngx.say(#body, " bytes, ", n, " chunks")
        }
    }
--- request
POST /count
--- request_body eval
"0123456789" x 20000
--- response_body
200000 bytes, 20000 chunks



=== TEST 6: response_body_like matches a regex
--- config
    location = /t {
        content_by_lua_block { ngx.say("worker ", ngx.worker.pid(), " at ", ngx.now()) }
    }
--- request
GET /t
--- response_body_like
^worker \d+ at \d+(\.\d+)?$



=== TEST 7: more_headers reach the request
--- config
    location = /t {
        content_by_lua_block {
            ngx.say(ngx.var.http_x_hotffi_one, "|", ngx.var.http_x_hotffi_two)
        }
    }
--- request
GET /t
--- more_headers
X-Hotffi-One: first
X-Hotffi-Two: second value
--- response_body
first|second value



=== TEST 8: expected errors are found in error.log
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.ERR, "something went wrong: ", 42)
            ngx.say("logged")
        }
    }
--- request
GET /t
--- response_body
logged
--- error_log
something went wrong: 42
qr/\[error\] \d+#\d+: \*\d+ \[lua\] content_by_lua\(nginx\.conf:\d+\):\d+: something went wrong/
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 9: a log line written later by a timer is waited for
--- config
    location = /t {
        content_by_lua_block {
            ngx.timer.at(0.5, function() ngx.log(ngx.WARN, "late timer ran") end)
            ngx.say("scheduled")
        }
    }
--- request
GET /t
--- response_body
scheduled
--- error_log
late timer ran
--- wait: 5



=== TEST 10: repeat_each with two workers
--- skip_valgrind: a single process under valgrind
--- workers: 2
--- repeat_each: 5
--- config
    location = /t {
        content_by_lua_block { ngx.say("count=", ngx.worker.count()) }
    }
--- request
GET /t
--- response_body
count=2



=== TEST 11: env section reaches the workers
--- env
HOTFFI_HARNESS_A=alpha
HOTFFI_HARNESS_B=with spaces
--- config
    location = /t {
        content_by_lua_block {
            ngx.say(os.getenv("HOTFFI_HARNESS_A"), "/", os.getenv("HOTFFI_HARNESS_B"),
                    "/", os.getenv("HOTFFI_HARNESS_UNSET") or "unset")
        }
    }
--- request
GET /t
--- response_body
alpha/with spaces/unset



=== TEST 12: main_config and http_config land in their contexts
--- main_config
env HOTFFI_HARNESS_MAIN=set-in-main-config;
--- http_config
    lua_shared_dict harness 1m;
    init_by_lua_block { ngx.shared.harness:set("from", "init_by_lua") }
--- config
    location = /t {
        content_by_lua_block {
            ngx.say(os.getenv("HOTFFI_HARNESS_MAIN"), " ", ngx.shared.harness:get("from"))
        }
    }
--- request
GET /t
--- response_body
set-in-main-config init_by_lua



=== TEST 13: chomp makes a body without trailing newline exact
--- config
    location = /t {
        content_by_lua_block { ngx.print("no newline") }
    }
--- request
GET /t
--- response_body chomp
no newline



=== TEST 14: the request timeout is enforced
--- skip_valgrind: timeouts are stretched tenfold under valgrind
--- timeout: 0.5
--- config
    location = /t {
        content_by_lua_block {
            ngx.sleep(1.5)
            ngx.say("too late")
        }
    }
--- request
GET /t
--- error_code: 599
--- response_body_like
Timed out



=== TEST 15: an empty response body
--- config
    location = /t { return 204; }
--- request
GET /t
--- error_code: 204
--- response_body



=== TEST 16: no_error_log patterns of our own
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.WARN, "only a warning")
            ngx.say("ok")
        }
    }
--- request
GET /t
--- response_body
ok
--- error_log
only a warning
--- no_error_log
[error]
qr/never logged \d+/



=== TEST 17: skip skips a block
--- skip: demonstrates --- skip
--- config
    location = /t { return 500; }
--- request
GET /t
