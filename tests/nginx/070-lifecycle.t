# nginx -s reload and quit with runtimes loaded and calls in flight: no
# failed request, no hang, nothing left behind.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use POSIX ();
use Time::HiRes qw(sleep);

my $config = <<'CONF';
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl", "threads=4")
        local ok, res = rt:q("sleep:5")
        if not ok then
            return ngx.exit(500)
        end
        ngx.say(res)
    }
}
location = /hang {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl", "threads=1",
                                                { timeout = 1 })
        ngx.say(rt:q("hang"))
    }
}
CONF

my $http_config = <<'CONF';
init_worker_by_lua_block {
    assert(require("resty.hotffi").load("echo"))
    assert(require("resty.hotffi").load("digest", "sha256 4"))
}
CONF

{
    my $nginx = HotffiTest::Nginx->new(name => 'reload', workers => 2,
                                       config => $config,
                                       http_config => $http_config);
    $nginx->start;
    is($nginx->get('/t')->{content}, "slept\n", 'serving before the reload');

    # The clients run from before the first reload until the workers of
    # the second have answered them: both reloads happen under load.
    my $clients = start_clients($nginx, 4, '/t');
    wait_until(sub { clients_answered($clients) >= 20 }, 10,
               'the clients under way');
    for my $round (1, 2) {
        ok(eval { $nginx->reload; 1 },
           "HUP $round replaced the workers while requests were in flight")
            or diag($@);
        my $seen = clients_answered($clients);
        wait_until(sub { clients_answered($clients) >= $seen + 20 }, 10,
                   "the workers of reload $round answering");
    }
    my @answers = stop_clients($clients);
    my @bad = grep { $_->[0] != 200 || $_->[1] ne 'slept' } @answers;
    is(scalar @bad, 0, 'no request failed across two reloads under load ('
                       . @answers . ' requests)')
        or diag(explain([ @bad[0 .. ($#bad < 4 ? $#bad : 4)] ]));

    is($nginx->get('/t')->{content}, "slept\n", 'new workers serve');
    my $elapsed = $nginx->quit(timeout => 15);
    ok(!$nginx->killed, "quit completed by itself (${elapsed}s)");
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
           'error log is clean');
    $nginx->stop;
}

{
    # A call to a runtime that never answers is in flight during the quit:
    # the worker waits for the request, whose call times out, then exits.
    my $nginx = HotffiTest::Nginx->new(name => 'quit', config => $config);
    $nginx->start;
    pipe(my $reader, my $writer) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        close $reader;
        my $res = $nginx->get('/hang', { timeout => 20 });
        print {$writer} "$res->{status} $res->{content}";
        close $writer;    # _exit does not flush
        POSIX::_exit(0);
    }
    close $writer;
    sleep 0.3;
    my $elapsed = $nginx->quit(timeout => 15);
    ok(!$nginx->killed, "quit with a hung call in flight completed (${elapsed}s)");
    my $answer = do { local $/; <$reader> };
    waitpid $pid, 0;
    is($answer, "200 falseniltimeout\n", 'the in-flight call ended by its timeout');
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
           'error log is clean');
    $nginx->stop;
}

done_testing();
