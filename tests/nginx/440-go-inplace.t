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

# the story every language tells (tests/lib/HotffiReload.pm), by cfg
reload_story($nginx, tags => [qw(a b)],
             switch => sub { return '/reload?cfg=b' },
             fail => sub {
                 return ('/reload?cfg=fail-init',
                         qr/failed: 7: asked to fail by its configuration/);
             });

# (version 4 failed: the next reload goes from 3 to 5)
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 3 5' ],
          'reload keeping the cfg');
is_deeply([ body($nginx, '/count') ], [ 200, 'b 4' ], 'count kept again');

# without hand-over hotffi calls libffi_fini: the new instance starts at 0
is_deeply([ body($nginx, '/reload?state=0&cfg=a') ], [ 200, 'ok 5 6' ],
          'reload without hand-over into another cfg');
is_deeply([ body($nginx, '/count') ], [ 200, 'a 1' ],
          'the count restarted, in cfg a');
like((body($nginx, '/stats'))[1], qr/^version=6 reloads=4 failures=1 /,
     'version 6 serves: four reloads, one failure');

# ---- 20 reloads under load, alternating cfgs, a refused one among them
reload_under_load($nginx, reloads => 20,
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
