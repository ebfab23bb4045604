package HotffiScenarios;

# Scenarios every runtime language must pass, written once and run by each
# language's test file with its own runtime: many concurrent callers, and
# nginx -s reload and quit with calls in flight.

use strict;
use warnings;
use Exporter 'import';
use Test::More;
use HotffiTest;

our @EXPORT_OK = qw(concurrent_echo reload_and_quit);

my $CLEAN_LOG = qr/\[(alert|crit|emerg|error)\]/;

# Lua checks every language's runtime makes the same way, for blocks
# (--- http_config eval: $HotffiScenarios::LUA) and the tests' own nginx:
#   echo_round_trips(rt)  rt:echo of a string, binary bytes with NULs, an
#                         empty string, 1 MiB and no request at all (the
#                         handler gets an empty one); says what came back
#   gives_up(rt)          a call that times out, then waits until the
#                         ctl runtime counted the cancellation it saw
#   closed(want)          after rt:__unload() and dropping rt: whether
#                         the runtimes came down to want (default 0)
#                         within 5 s
#   unload_answers(load)  load() a ctl runtime with one handler thread,
#                         queue 5 calls, unload: says how many were
#                         answered, the refusal of a later call, the
#                         runtimes left, and a fresh load's answer
our $LUA = <<'LUA';
init_by_lua_block {
    function echo_round_trips(rt)
        ngx.say(rt:echo("hello"))
        local bin = "a\0b\255\0\0z"
        local ok, res = rt:echo(bin)
        ngx.say(ok, " ", res == bin, " ", #res)
        ok, res = rt:echo("")
        ngx.say(ok, " [", res, "]")
        local big = ("0123456789abcdef\0"):rep(61681):sub(1, 1048576)
        ok, res = rt:echo(big)
        ngx.say(ok, " ", #res, " ", res == big)
        ok, res = rt:echo()
        local ok2, res2 = rt:echo(nil)
        ngx.say(ok, " [", res, "] ", ok2, " [", res2, "]")
    end

    function gives_up(rt)
        ngx.say(rt:q("sleep:5000", 0.1))
        local n
        for _ = 1, 200 do
            n = select(2, rt:q("cancelled"))
            if n == "1" then break end
            ngx.sleep(0.01)
        end
        ngx.say("cancelled ", n)
    end

    function closed(want)
        local hotffi = require "resty.hotffi"
        for _ = 1, 500 do
            collectgarbage()
            if hotffi.stats().runtimes == (want or 0) then
                return true
            end
            ngx.sleep(0.01)
        end
        return false
    end

    function unload_answers(load)
        local rt = assert(load())
        local threads = {}
        for i = 1, 5 do
            threads[i] = ngx.thread.spawn(function()
                return rt:q("sleep:50")
            end)
        end
        rt:__unload()
        local slept = 0
        for i = 1, 5 do
            local _, ok, res = ngx.thread.wait(threads[i])
            if ok and res == "slept" then slept = slept + 1 end
        end
        ngx.say(slept)
        ngx.say(rt:q("echo:late"))
        rt = nil
        closed()
        ngx.say("runtimes ", require("resty.hotffi").stats().runtimes)
        -- the key is free again: a fresh runtime of the same library
        ngx.say(assert(load()):q("echo:again"))
    end
}
LUA


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
# end their runtimes and exit by themselves.  The clients run from before
# the reload until the new workers have answered them.
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
    my $clients = start_clients($nginx, 6, '/t');
    wait_until(sub { clients_answered($clients) >= 20 }, 10,
               "$label: the clients under way");
    $nginx->reload;
    my $seen = clients_answered($clients);
    wait_until(sub { clients_answered($clients) >= $seen + 20 }, 10,
               "$label: the new workers answering the clients");
    my @answers = stop_clients($clients);
    my @bad = grep { $_->[0] != 200 || $_->[1] ne 'slept' } @answers;
    is(scalar @bad, 0, "$label: no request failed across a reload ("
                       . @answers . ' requests)')
        or diag(explain([ @bad[0 .. ($#bad < 4 ? $#bad : 4)] ]));
    is($nginx->get('/t')->{content}, "slept\n", "$label: the new workers serve");
    my $elapsed = $nginx->quit(timeout => 15);
    ok(!$nginx->killed, "$label: quit completed by itself (${elapsed}s)");
    unlike($nginx->error_log_text, $CLEAN_LOG, "$label: error log is clean");
    $nginx->stop;
}

1;
