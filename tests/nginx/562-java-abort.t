# Callers of a Java runtime that go away mid-call -- the client gone, the
# light thread killed -- and the Java side seeing it: Task.cancelled()
# turns true and the handler answers early (the ctl's sleep counts it).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use IO::Socket::INET;

if ($ENV{HOTFFI_TEST_VALGRIND}) {
    Test::More::plan(skip_all => 'the JVM is not run under valgrind '
                     . '(its JIT and signals defeat it)');
}
BAIL_OUT("build first: make ($HotffiTest::REPO/build/lib/libhotffi_java.so "
         . 'does not exist)')
    unless -e "$HotffiTest::REPO/build/lib/libhotffi_java.so";

my $CTL = "classpath=$HotffiTest::REPO/build/java/tests,ctl.Ctl,init,4";

my $nginx = HotffiTest::Nginx->new(
    name   => 'java abort',
    config => <<"CONF",
location = /hold {
    lua_check_client_abort on;
    content_by_lua_block {
        local rt = require("resty.hotffi").load("hotffi_java", "$CTL")
        ngx.say(rt:q("sleep:600000"))
    }
}
location = /kill {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("hotffi_java", "$CTL")
        local th = ngx.thread.spawn(function() return rt:q("sleep:600000") end)
        -- the call is in Java's hands before the thread goes
        while select(2, rt:q("sleeping")) == "0" do
            ngx.sleep(0.005)
        end
        ngx.say(ngx.thread.kill(th))
    }
}
location = /state {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = hotffi.load("hotffi_java", "$CTL")
        local _, cancelled = rt:q("cancelled")
        local _, sleeping = rt:q("sleeping")
        ngx.say(hotffi.stats().tasks_live, " ", cancelled, " ", sleeping)
    }
}
CONF
);
$nginx->start;

sub state {
    my $res = $nginx->get('/state');
    return $res->{content} =~ /^(\d+) (\d+) (\d+)$/ ? ($1, $2, $3) : ();
}

sub settles_at {
    my ($cancelled, $what) = @_;
    my @s;
    my $ok = wait_until(sub { @s = state(); @s && $s[0] == 0
                                            && $s[1] == $cancelled },
                        60, $what);
    ok($ok, "$what: the Java side saw $cancelled caller(s) go")
        or diag("last /state: live tasks, cancellations: @s");
}

is_deeply([state()], [0, 0, 0], 'the runtime is up, nothing cancelled');

# the client goes while its call sleeps in Java
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                 PeerPort => $nginx->port)
    or die "connect: $!";
print {$sock} "GET /hold HTTP/1.1\r\nHost: localhost\r\n\r\n";
wait_until(sub { (state())[2] == 1 }, 60, 'the held call in Java');
close $sock;
settles_at(1, 'client gone');

is($nginx->get('/kill')->{content}, "1\n", 'ngx.thread.kill of a waiting thread');
settles_at(2, 'killed light thread');

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
       'error log is clean');
$nginx->stop;

done_testing();
