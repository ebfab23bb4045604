# A runtime that misbehaves costs only its own calls: a libffi_init() that
# takes 3 s does not stall the worker; a runtime that takes calls and never
# answers holds at most max_inflight of them; calls whose caller gave up
# free their queue slots at once; refusals and timeouts are counted and
# logged once a second at most; a worker that exits gives its hung calls up
# after a grace, not after their timeout.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep time);


# Runs GET $path in a child; returns a function that waits for its answer
# ("status body") and reaps the child.
sub get_in_background {
    my ($nginx, $path, $timeout) = @_;
    pipe(my $reader, my $writer) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        close $reader;
        my $res = $nginx->get($path, { timeout => $timeout });
        print {$writer} "$res->{status} $res->{content}";
        close $writer;    # _exit does not flush
        POSIX::_exit(0);
    }
    close $writer;
    return sub {
        my $answer = do { local $/; <$reader> };
        waitpid $pid, 0;
        return $answer // '';
    };
}


{
    # One worker: before init ran on a thread of its own, /fast could only
    # be answered once the 3 s init had returned.
    my $nginx = HotffiTest::Nginx->new(name => 'slow-init', workers => 1,
                                       http_config => 'lua_shared_dict d 1m;',
                                       config => <<'CONF');
location = /slow {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        ngx.shared.d:set("loading", true)
        local rt, err = hotffi.load("ctl", "init-sleep=3000")
        ngx.shared.d:set("loaded", true)
        ngx.say(rt and select(2, rt:q("echo:served")) or err)
    }
}
location = /slow-fail {
    content_by_lua_block {
        require "resty_ffi"
        -- lua-resty-ffi's shape: nil and libffi_init()'s rc
        local rt, rc = ngx.load_ffi("ctl", "init-sleep=1000,fail-init")
        ngx.say(tostring(rt), " ", rc)
    }
}
location = /fast {
    content_by_lua_block {
        ngx.say("loading ", ngx.shared.d:get("loading"), " loaded ",
                ngx.shared.d:get("loaded"))
    }
}
CONF
    $nginx->start;
    my $slow = get_in_background($nginx, '/slow', 30);
    ok(wait_until(sub { $nginx->get('/fast')->{content} =~ /loading true/ },
                  10), 'the slow load has begun');
    is($nginx->get('/fast')->{content}, "loading true loaded nil\n",
       'another location answered while libffi_init() still ran');
    is($slow->(), "200 served\n", 'the slow runtime serves once started');

    # two loads of one failing runtime at once: one start, one outcome
    my $one = get_in_background($nginx, '/slow-fail', 30);
    my $two = get_in_background($nginx, '/slow-fail', 30);
    my $fail = "200 nil 7\n";
    is($one->(), $fail, 'a failed init fails the load');
    is($two->(), $fail, 'a load meanwhile of the same runtime fails alike');
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
           'error log is clean');
    $nginx->stop;
}

{
    my $nginx = HotffiTest::Nginx->new(name => 'limits', workers => 1,
                                       config => <<'CONF');
location = /inflight {
    content_by_lua_block {
        require "resty_ffi"
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl", "threads=2",
                               { max_inflight = 4, timeout = 0.3 })
        local compat = ngx.load_ffi("ctl", "threads=2")
        local threads = {}
        for i = 1, 4 do
            threads[i] = ngx.thread.spawn(function() return rt:q("hang") end)
        end
        -- the runtime took all four (and will never answer them)
        for _ = 1, 500 do
            local s = rt:__stats()
            if s.inflight - s.queued == 4 then break end
            ngx.sleep(0.01)
        end
        ngx.say(rt:q("echo:fifth"))
        ngx.say(compat:q("echo:fifth"))
        for i = 1, 4 do
            ngx.say(select(2, ngx.thread.wait(threads[i])))
        end
        -- their callers gave up, the runtime still holds them
        ngx.say(rt:q("echo:sixth"))
        local s = rt:__stats()
        ngx.say("timeouts ", s.timeouts, " inflight_full ", s.inflight_full,
                " rejected ", s.rejected)
        -- the caller's view: every call has one outcome, refusals included
        local m = rt:__metrics()
        ngx.say("outcomes: timeout ", m.timeout, " queue_full ",
                m.queue_full, " ok ", m.ok)
        rt:__unload()
    }
}
location = /gave-up {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl", "threads=1,gave-up", { max_queue = 2 })
        -- the runtime's one thread is busy for 3 s
        local busy = ngx.thread.spawn(function() return rt:q("sleep:3000") end)
        for _ = 1, 500 do
            if rt:__stats().queued == 0 then break end
            ngx.sleep(0.01)
        end
        local a = ngx.thread.spawn(function() return rt:q("echo:a", 0.2) end)
        local b = ngx.thread.spawn(function() return rt:q("echo:b", 0.2) end)
        ngx.say(select(4, ngx.thread.wait(a)), " ",
                select(4, ngx.thread.wait(b)))
        -- their slots are free while the thread still sleeps
        local s = rt:__stats()
        ngx.say("queued ", s.queued, " timeouts ", s.timeouts)
        local c = ngx.thread.spawn(function() return rt:q("echo:c") end)
        ngx.say(select(2, ngx.thread.wait(busy)))
        ngx.say(select(2, ngx.thread.wait(c)))
    }
}
location = /overload {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl", "threads=1,overload", { max_queue = 1 })
        local busy = ngx.thread.spawn(function() return rt:q("sleep:6000") end)
        for _ = 1, 500 do
            if rt:__stats().queued == 0 then break end
            ngx.sleep(0.01)
        end
        local queued = ngx.thread.spawn(function() return rt:q("echo:q") end)
        ngx.update_time()
        local started = ngx.now()
        local refused = 0
        -- 20 rounds of 100 refusals, 0.1 s apart: over 2 s or more
        for _ = 1, 20 do
            for _ = 1, 100 do
                local ok, _, err = rt:q("echo:x")
                if not ok and err == "queue full" then
                    refused = refused + 1
                end
            end
            ngx.sleep(0.1)
        end
        ngx.update_time()
        local s = rt:__stats()
        ngx.say(refused, " ", s.full, " ", s.rejected, " ",
                ngx.now() - started)
        ngx.thread.wait(busy)
        ngx.thread.wait(queued)
    }
}
CONF
    $nginx->start;
    is($nginx->get('/inflight')->{content}, <<'WANT', 'max_inflight: the runtime holds four, the fifth fails fast');
falsenilqueue full: 4 calls taken and not answered (max_inflight)
falsepost failed, queue full
falseniltimeout
falseniltimeout
falseniltimeout
falseniltimeout
falsenilqueue full: 4 calls taken and not answered (max_inflight)
timeouts 4 inflight_full 3 rejected 3
outcomes: timeout 4 queue_full 3 ok 0
WANT
    is($nginx->get('/gave-up')->{content}, <<'WANT', 'a caller that gave up frees its queue slot at once');
timeout timeout
queued 0 timeouts 2
trueslept
truec
WANT

    my $offset = length $nginx->error_log_text;
    my $res = $nginx->get('/overload', { timeout => 30 });
    my ($refused, $full, $rejected, $elapsed) = split ' ', $res->{content};
    is($refused, 2000, 'every call of the overload was refused');
    is($full, $refused, 'each refusal counted as queue full');
    is($rejected, $refused, 'and as rejected');
    my @lines = substr($nginx->error_log_text, $offset)
                =~ /calls refused \(queue full: (\d+),/g;
    ok(@lines >= 1, 'the overload was logged');
    ok(@lines <= int($elapsed) + 2,
       scalar(@lines) . " warning lines in ${elapsed} s: one a second at most");
    my $sum = 0;
    $sum += $_ for @lines;
    ok($sum <= $refused && $sum >= $lines[0],
       "the lines count $sum of the $refused refusals, none twice");
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
           'error log is clean');
    $nginx->stop;
}

{
    # A call that hangs (timeout 60 s) while the worker quits: given up
    # after the grace (1 s here), the worker exits long before 60 s.
    my $nginx = HotffiTest::Nginx->new(name => 'quit-grace', workers => 1,
                                       env => { HOTFFI_SHUTDOWN_GRACE_MS => 1000 },
                                       config => <<'CONF');
location = /hang {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl", "threads=1")
        ngx.say(rt:q("hang"))
    }
}
location = /held {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl", "threads=1")
        ngx.say(rt:__stats().inflight)
    }
}
CONF
    $nginx->start;
    my $hung = get_in_background($nginx, '/hang', 60);
    ok(wait_until(sub { $nginx->get('/held')->{content} eq "1\n" }, 10),
       'the call hangs in the runtime');
    my $elapsed = $nginx->quit(timeout => 30);
    ok(!$nginx->killed, "quit with a hung call completed (${elapsed}s)");
    ok($elapsed < 30, 'within the grace, not the call\'s 60 s timeout');
    is($hung->(), "200 false-101call given up: the worker is exiting\n",
       'the hung call failed with the reason');
    like($nginx->error_log_text, qr/worker exiting: 1 calls still waiting given up/,
         'the worker said so');
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
           'error log is clean');
    $nginx->stop;
}

done_testing();
