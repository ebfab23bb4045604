# Callers that vanish mid-call -- client gone, light thread killed, request
# ended by ngx.exit -- leave no task behind and never crash the worker.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep);

my $nginx = HotffiTest::Nginx->new(
    name   => 'abort',
    config => <<'CONF',
location = /hold {
    lua_check_client_abort on;
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl")
        ngx.say(rt:q("sleep:400"))
    }
}
location = /hold-unchecked {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl")
        ngx.say(rt:q("sleep:300"))
    }
}
location = /kill {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl")
        local th = ngx.thread.spawn(function() return rt:q("sleep:200") end)
        ngx.sleep(0.01)
        ngx.say(ngx.thread.kill(th))
    }
}
location = /exit {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl")
        ngx.thread.spawn(function() return rt:q("sleep:200") end)
        ngx.sleep(0.01)
        ngx.exit(204)
    }
}
location = /state {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("ctl")
        local _, cancelled = rt:q("cancelled")
        -- this very call is live while it runs; count the others
        ngx.say(hotffi.stats().tasks_live, " ", cancelled, " ", ngx.worker.pid())
    }
}
CONF
);
$nginx->start;

sub state {
    my $res = $nginx->get('/state');
    return $res->{content} =~ /^(\d+) (\d+) (\d+)$/ ? ($1, $2, $3) : ();
}

# The hub is up and the baseline is clean before anything is aborted.
my (undef, undef, $pid) = state();
ok($pid, 'worker answers /state');

sub abandon_request {
    my ($path) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $nginx->port)
        or die "connect: $!";
    print {$sock} "GET $path HTTP/1.1\r\nHost: localhost\r\n\r\n";
    sleep 0.1;
    close $sock;
}

sub settles_at {
    my ($cancelled, $what) = @_;
    my @s;
    my $settled = HotffiTest::_poll(sub {
        @s = state();
        return @s && $s[0] == 0 && $s[1] == $cancelled;
    }, HotffiTest::_scaled(10));
    ok($settled, "$what: tasks freed, the runtime saw $cancelled "
                 . 'caller(s) go')
        or diag("last /state: live tasks, cancellations, pid: @s");
}

abandon_request('/hold');
settles_at(1, 'client gone with lua_check_client_abort on');

abandon_request('/hold-unchecked');
settles_at(1, 'client gone, request finished its call anyway');

is($nginx->get('/kill')->{content}, "1\n", 'ngx.thread.kill of a waiting thread');
settles_at(2, 'killed light thread');

is($nginx->get('/exit')->{status}, 204, 'ngx.exit with a thread waiting');
settles_at(3, 'ngx.exit');

# Many vanishing clients at once.
abandon_request('/hold') for 1 .. 20;
settles_at(23, 'twenty clients gone');

my (undef, undef, $pid_after) = state();
is($pid_after, $pid, 'the same worker served throughout: no crash');

$nginx->stop;
unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');

done_testing();
