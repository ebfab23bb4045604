package HotffiScenarios;

# Scenarios every runtime language must pass, written once and run by each
# language's test file with its own runtime: many concurrent callers, and
# nginx -s reload and quit with calls in flight.

use strict;
use warnings;
use Exporter 'import';
use POSIX ();
use Test::More;
use Time::HiRes ();
use HotffiTest;

our @EXPORT_OK = qw(concurrent_echo reload_and_quit);

my $CLEAN_LOG = qr/\[(alert|crit|emerg|error)\]/;


# 400 requests from 8 clients over 2 workers, each request 10 light threads
# calling $load (a Lua expression giving the runtime) with its own payload:
# every call answered with its own bytes.
sub concurrent_echo {
    my ($label, $load) = @_;
    my $nginx = HotffiTest::Nginx->new(name => "$label concurrent",
                                       workers => 2, config => <<CONF);
location = /t {
    content_by_lua_block {
        local rt = assert($load)
        local threads = {}
        for i = 1, 10 do
            threads[i] = ngx.thread.spawn(function()
                local req = ngx.var.request_id .. ":" .. i
                local ok, res = rt:echo(req)
                return ok and res == req
            end)
        end
        for i = 1, 10 do
            local _, good = ngx.thread.wait(threads[i])
            if not good then
                return ngx.exit(500)
            end
        end
        ngx.say("ok")
    }
}
CONF
    $nginx->start;
    my $r = concurrent_requests($nginx, 400, 8, '/t');
    is($r->{ok}, 400,
       "$label: 400 requests of 10 calls each, 8 clients: all answered")
        or diag(explain($r));
    unlike($nginx->error_log_text, $CLEAN_LOG, "$label: error log is clean");
    $nginx->stop;
}


# A ctl-style runtime ($load answers "sleep:MS" with "slept") under load
# while nginx reloads, then a quit: no failed request, and the old workers
# end their runtimes and exit by themselves.
sub reload_and_quit {
    my ($label, $load) = @_;
    my $nginx = HotffiTest::Nginx->new(name => "$label reload and quit",
                                       workers => 2, config => <<CONF);
location = /t {
    content_by_lua_block {
        local rt = assert($load)
        local ok, res = rt:q("sleep:20")
        if not ok then
            return ngx.exit(500)
        end
        ngx.say(res)
    }
}
CONF
    $nginx->start;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $r = concurrent_requests($nginx, 300, 6, '/t');
        POSIX::_exit($r->{failed} > 255 ? 255 : $r->{failed});
    }
    Time::HiRes::sleep(0.3);
    $nginx->reload;
    waitpid $pid, 0;
    is($? >> 8, 0, "$label: no request failed across a reload");
    is($nginx->get('/t')->{content}, "slept\n", "$label: the new workers serve");
    my $elapsed = $nginx->quit(timeout => 15);
    ok(!$nginx->killed, "$label: quit completed by itself (${elapsed}s)");
    unlike($nginx->error_log_text, $CLEAN_LOG, "$label: error log is clean");
    $nginx->stop;
}

1;
