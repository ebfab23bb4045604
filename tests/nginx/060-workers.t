# Several workers: each has its own runtimes, and many concurrent requests
# are all answered.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;

my $nginx = HotffiTest::Nginx->new(
    name    => 'workers',
    workers => 2,
    # reuseport spreads connections over both workers
    listen_options => 'reuseport',
    config  => <<'CONF',
location = /t {
    content_by_lua_block {
        local rt = require("resty.hotffi").load("ctl", "threads=2")
        local ok, res = rt:q("echo:" .. ngx.var.arg_n)
        if not ok or res ~= ngx.var.arg_n then
            return ngx.exit(500)
        end
        ngx.say(ngx.worker.pid(), " ", rt:__stats().calls)
    }
}
CONF
);
$nginx->start;

# Sequential requests on fresh connections: each worker's counter must
# count exactly the requests that worker served.
my (%served, %last_count);
for my $n (1 .. 60) {
    my $res = $nginx->get("/t?n=$n");
    is($res->{status}, 200, "request $n answered") or next;
    my ($pid, $calls) = $res->{content} =~ /^(\d+) (\d+)$/;
    $served{$pid}++;
    $last_count{$pid} = $calls;
}
is_deeply(\%last_count, \%served, 'every worker counts only its own calls');
cmp_ok(scalar(keys %served), '==', 2, 'both workers served requests');

my $load = concurrent_requests($nginx, 400, 8, '/t?n=42');
is($load->{ok}, 400, 'all of 400 requests from 8 concurrent clients succeeded')
    or diag explain $load;

$nginx->stop;
unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/, 'error log is clean');

done_testing();
