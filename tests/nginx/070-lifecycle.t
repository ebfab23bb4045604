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

# Runs concurrent_requests in a child so that the parent can signal nginx
# meanwhile; the child's exit status is the number of failed requests.
sub load_in_background {
    my ($nginx, $count) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $r = concurrent_requests($nginx, $count, 4, '/t');
        POSIX::_exit($r->{failed} > 255 ? 255 : $r->{failed});
    }
    return $pid;
}

{
    my $nginx = HotffiTest::Nginx->new(name => 'reload', workers => 2,
                                       config => $config,
                                       http_config => $http_config);
    $nginx->start;
    is($nginx->get('/t')->{content}, "slept\n", 'serving before the reload');

    my $client = load_in_background($nginx, 400);
    sleep 0.3;
    ok(eval { $nginx->reload; 1 },
       'HUP replaced the workers while requests were in flight')
        or diag($@);
    sleep 0.3;
    $nginx->reload;
    waitpid $client, 0;
    is($? >> 8, 0, 'no request failed across two reloads under load');

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
