# Runtimes writing to nginx's error log (hotffi_log(), docs/api.md), told
# once and run for C and every language of tests/lib/HotffiLangs.pm with a
# ctl runtime: each ctl answers "log:LEVEL:N:TEXT" by writing N lines
# "TEXT I" at LEVEL through its SDK.
#
#   - a line carries the runtime's name and version, at its level; a line
#     below the error_log level is not written, nor even copied: a flood
#     of them drops nothing;
#   - lines from many runtime threads at once arrive intact, each once;
#   - after the log file is moved and `nginx -s reopen` (USR1), later lines
#     land in the new file and none in the old one;
#   - a flood is bounded: lines written + the drops reported = lines sent;
#   - lines still buffered when a worker exits are written by its exit.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use HotffiLangs;

plan(skip_all => 'reopen and the flood need a master and its workers')
    if $ENV{HOTFFI_TEST_VALGRIND};

my @RUNTIMES = (
    { label => 'C', load => 'require("resty.hotffi").load("ctl")',
      key => 'ctl' },
    map {
        my $l = $_;
        HotffiLangs::has($l, 'ctl')
            ? { label => $l->{label}, skip => $l->{skip_reason},
                load => HotffiLangs::ctl_load($l),
                key => HotffiLangs::ctl_key($l) }
            : ()
    } HotffiLangs::languages()
);

my $SENT_FLOOD = 20000;

# /log?c=CMD calls the ctl with CMD; /flood?c=CMD starts one call, a
# flood, then keeps the event loop busy for a second (a blocking poll()),
# so that nothing drains while the runtime writes: the buffer must
# overflow, unless the lines are filtered out before they are copied.
sub config {
    my ($rt) = @_;
    return <<"CONF";
location = /log {
    content_by_lua_block {
        local rt = assert($rt->{load})
        ngx.say(rt:q(ngx.var.arg_c))
    }
}
location = /many {
    content_by_lua_block {
        local rt = assert($rt->{load})
        local threads = {}
        for t = 1, 8 do
            threads[t] = ngx.thread.spawn(function()
                return rt:q("log:5:50:many-" .. t)
            end)
        end
        for t = 1, 8 do
            local _, ok, res = ngx.thread.wait(threads[t])
            ngx.say(ok, res)
        end
    }
}
location = /flood {
    content_by_lua_block {
        local ffi = require "ffi"
        pcall(ffi.cdef, "int poll(void *fds, unsigned long n, int ms);")
        local rt = assert($rt->{load})
        local th = ngx.thread.spawn(function()
            return rt:q(ngx.var.arg_c)
        end)
        ffi.C.poll(nil, 0, 1000)
        local _, ok, res = ngx.thread.wait(th)
        ngx.say(ok, res)
    }
}
CONF
}

sub count_matches {
    my ($text, $re) = @_;
    my $n = () = $text =~ /$re/g;
    return $n;
}

for my $rt (@RUNTIMES) {
    subtest $rt->{label} => sub {
        plan(skip_all => $rt->{skip}) if $rt->{skip};

        my $nginx = HotffiTest::Nginx->new(config => config($rt),
                                           log_level => 'notice');
        $nginx->start;
        my $log = "@{[ $nginx->prefix ]}/logs/error.log";
        my $name = quotemeta(qq{hotffi: runtime "$rt->{key}" v1: });

        # levels: info is below notice, warn and error are kept, at theirs
        for my $c ('log:7:1:hidden-info', 'log:5:1:seen-warn',
                   'log:4:1:seen-err')
        {
            is($nginx->get("/log?c=$c")->{content}, "truelogged 1\n", $c);
        }
        wait_until(sub { HotffiTest::_slurp($log) =~ /seen-err 1$/m }, 10,
                   'the error line');
        my $text = HotffiTest::_slurp($log);
        like($text, qr/\[warn\] \d+#\d+: ${name}seen-warn 1$/m,
             'a warn line with the runtime name and version');
        like($text, qr/\[error\] \d+#\d+: ${name}seen-err 1$/m,
             'an error line at its level');
        # lines leave in order: info would have been written before warn
        unlike($text, qr/hidden-info/, 'an info line is not written');

        # many runtime threads at once: 400 lines fit the buffer whole
        is($nginx->get('/many')->{content}, "truelogged 50\n" x 8,
           'eight calls logging at once');
        wait_until(sub {
            count_matches(HotffiTest::_slurp($log), qr/ many-\d+ \d+$/m) >= 400
        }, 10, 'the lines of the eight calls');
        $text = HotffiTest::_slurp($log);
        my %seen;
        $seen{"$1 $2"}++ while $text =~ /^.*\[warn\].*${name}many-(\d+) (\d+)$/mg;
        is(scalar(keys %seen), 400, 'each of the 400 lines intact');
        is(scalar(grep { $_ != 1 } values %seen), 0, 'and written once');

        # reopen: the old file is renamed, nginx -s reopen; wait for the
        # worker's own "reopening logs" (written to the old file, before
        # it reopens): a request sent after it is served after the reopen
        rename($log, "$log.old") or die "rename $log: $!";
        $nginx->signal('USR1');
        my $master = $nginx->pid;
        wait_until(sub {
            HotffiTest::_slurp("$log.old")
                =~ /\[notice\] (?!$master#)\d+#\d+: reopening logs/
        }, 10, 'the worker reopening its logs');
        is($nginx->get('/log?c=log:5:3:after')->{content}, "truelogged 3\n",
           'lines after the reopen');
        wait_until(sub {
            count_matches(HotffiTest::_slurp($log), qr/${name}after \d$/m) == 3
        }, 10, 'the three lines in the new file');
        unlike(HotffiTest::_slurp("$log.old"), qr/after \d/,
               'none in the old file');

        # a flood below the level is filtered before the buffer: nothing
        # dropped, and a line after it is written (in order, so after
        # where a drop report would be)
        is($nginx->get("/flood?c=log:7:$SENT_FLOOD:quiet",
                       { timeout => 60 })->{content},
           "truelogged $SENT_FLOOD\n", 'a flood of info lines');
        $nginx->get('/log?c=log:5:1:after-quiet');
        wait_until(sub { HotffiTest::_slurp($log) =~ /after-quiet 1$/m }, 10,
                   'the line after the info flood');
        unlike(HotffiTest::_slurp($log), qr/: quiet \d|lines dropped/,
               'no info line, none dropped: filtered before the buffer');

        # the flood: one call of 20000 lines while the loop is blocked
        is($nginx->get("/flood?c=log:4:$SENT_FLOOD:flood",
                       { timeout => 60 })->{content},
           "truelogged $SENT_FLOOD\n", 'the flood was sent');
        my ($lines, $dropped);
        my $tally = sub {
            $text = HotffiTest::_slurp($log);
            $lines = count_matches($text, qr/${name}flood \d+$/m);
            $dropped = 0;
            $dropped += $1 while $text
                =~ /\[warn\] \d+#\d+: hotffi: (\d+) runtime log lines dropped: the buffer was full$/mg;
            return $lines + $dropped >= $SENT_FLOOD;
        };
        wait_until($tally, 30, 'every flood line written or counted');
        is($lines + $dropped, $SENT_FLOOD,
           "lines written ($lines) + dropped reported ($dropped) = sent");
        ok($dropped > 0, 'the flood overflowed the buffer');

        # a line of no runtime (C only: tq NULL)
        if ($rt->{label} eq 'C') {
            $nginx->get('/log?c=lognull:nobody-here');
            wait_until(sub {
                HotffiTest::_slurp($log) =~ /\[warn\] \d+#\d+: hotffi: nobody-here$/m
            }, 10, 'a line with tq NULL, no runtime named');
        }

        $text = HotffiTest::_slurp("$log.old") . HotffiTest::_slurp($log);
        unlike($text, qr/\[(alert|crit|emerg)\]/, 'nothing worse logged');
        $nginx->stop;
        done_testing();
    };
}

# Lines still in the buffer when a worker exits are written by its exit
# (the last drain, in exit_process), not lost: the event loop pushes them
# itself (hotffi_log() through the FFI, so they are surely buffered: no
# runtime thread races the exit), then sends its own worker SIGTERM; the
# worker checks for it before it waits for events again, so nothing but
# the exit can drain them.
subtest 'lines buffered at worker exit reach error.log' => sub {
    my $nginx = HotffiTest::Nginx->new(
        name => 'log-exit', config => <<'CONF');
location = /bye {
    content_by_lua_block {
        local ffi = require "ffi"
        pcall(ffi.cdef, [[
            void hotffi_log(void *tq, int level, const char *msg, int len);
            int kill(int pid, int sig);
        ]])
        assert(require("resty.hotffi").load("ctl"))
        for i = 1, 50 do
            ffi.C.hotffi_log(nil, 5, "exit-buffered " .. i, 0)
        end
        ngx.say(ngx.worker.pid())
        ngx.eof()
        ffi.C.kill(ngx.worker.pid(), 15)
    }
}
CONF
    $nginx->start;
    my $pid = $nginx->get('/bye')->{content};
    chomp $pid;
    like($pid, qr/^\d+$/, 'the worker answered before it left');
    my $log = "$nginx->{prefix}/logs/error.log";
    wait_until(sub { HotffiTest::_slurp($log) =~ /^.* $pid#\d+: exit$/m },
               10, 'the worker to exit');
    my $text = HotffiTest::_slurp($log);
    my @lines = $text =~ /^.* $pid#\d+: hotffi: exit-buffered (\d+)$/mg;
    is_deeply(\@lines, [1 .. 50], 'all 50 lines, in order');
    like($text, qr/signal 15 \(SIGTERM\) received.*exiting\n.*exit-buffered 1\n.*exit-buffered 50\n.* $pid#\d+: exit$/ms,
         'written after the signal, before the worker exited') or diag($text);
    $nginx->stop;
    done_testing();
};

done_testing();
