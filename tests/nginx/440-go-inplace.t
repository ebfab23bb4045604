# In-place reload of a Go runtime built with the SDK (rt:__reload): the ctl
# runtime (sdk/go/internal/ctl) counts "count" calls per instance, hands
# the count over from libffi_retire (hotffi.Wait, hotffi.HandOver) and
# takes it back in libffi_init (hotffi.State).  A Go library is NODELETE
# and one Go runtime per process is all Go supports, so every reload
# starts a new instance of the same library, by cfg: 20 reloads under load
# lose no call and never reset the count; a cfg whose init fails is rolled
# back with the count.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use HotffiReload;

plan(skip_all => 'the Go runtime is not run under valgrind')
    if $ENV{HOTFFI_TEST_VALGRIND};

my $build = "$HotffiTest::REPO/build/lib";
BAIL_OUT("build first: make ($build/libgo_ctl.so does not exist)")
    unless -e "$build/libgo_ctl.so";

is(join(' ', grep { /^libffi_/ } exported_functions("$build/libgo_ctl.so")),
   'libffi_fini libffi_init libffi_retire',
   'go_ctl exports libffi_retire next to libffi_init and libffi_fini');

my $config = reload_locations(
    load => 'require("resty.hotffi").load("go_ctl", "a", { name = "gocount" })',
    call => 'rt:q("count")');

my $nginx = HotffiTest::Nginx->new(name => 'go inplace', config => $config);
$nginx->start;

is_deeply([ body($nginx, '/count') ], [ 200, 'a 1' ], 'first call');
is_deeply([ body($nginx, '/count') ], [ 200, 'a 2' ], 'the count goes up');
is_deeply([ body($nginx, '/reload?cfg=b') ], [ 200, 'ok 1 2' ],
          'reload into a new instance with cfg b');
is_deeply([ body($nginx, '/count') ], [ 200, 'b 3' ],
          'cfg b answers, with the count handed over');
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 2 3' ],
          'reload keeping the cfg');
is_deeply([ body($nginx, '/count') ], [ 200, 'b 4' ], 'count kept again');

# without hand-over hotffi calls libffi_fini: the new instance starts at 0
is_deeply([ body($nginx, '/reload?state=0&cfg=a') ], [ 200, 'ok 3 4' ],
          'reload without hand-over');
is_deeply([ body($nginx, '/count') ], [ 200, 'a 1' ], 'the count restarted');
is_deeply([ body($nginx, '/count') ], [ 200, 'a 2' ], 'and goes up');

my ($status, $text) = body($nginx, '/reload?cfg=fail-init');
is($status, 500, 'a cfg whose init fails fails the reload');
like($text, qr/failed: 7: asked to fail by its configuration; version 4 serves again$/,
     'with init\'s own message; the old version serves again');
is_deeply([ body($nginx, '/count') ], [ 200, 'a 3' ],
          'the old cfg again, its count handed back');
like((body($nginx, '/stats'))[1], qr/^version=4 reloads=3 failures=1 /,
     'version 4 serves: three reloads, one failure');

# ---- 20 reloads under load, alternating cfgs, a refused one among them
# (version 5 failed: the first goes from 4 to 6)
reload_under_load($nginx, reloads => 20, failed_before => 1,
                  before_each => sub {
                      my $cfg = $_[0] % 2 ? 'b' : 'a';
                      return ($cfg, "/reload?cfg=$cfg");
                  },
                  refuse => {
                      at    => 10,
                      path  => '/reload?cfg=fail-init',
                      error => qr/failed: 7: asked to fail by its config/,
                  });

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
$nginx->stop;

done_testing;
