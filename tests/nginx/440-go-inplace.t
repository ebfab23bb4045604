# In-place reload of a Go runtime built with the SDK (rt:__reload): the ctl
# runtime (sdk/go/internal/ctl) counts "count" calls per instance, hands
# the count over from libffi_retire (hotffi.Wait, hotffi.HandOver) and
# takes it back in libffi_init (hotffi.State).  A Go library is NODELETE
# and one Go runtime per process is all Go supports, so every reload
# starts a new instance of the same library, by cfg: 20 reloads under load
# lose no call and never reset the count; a cfg whose init fails is rolled
# back with the count.  New Go code in place is refused, before it is
# mapped: a new file at the library's path, or another Go library, would
# start a second Go runtime in the process; nginx -s reload starts it.
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

# ---- new Go code in place: refused, before it is mapped
{
    my $lib = deploy_dir('hotffi-go-inplace') . '/libgo_ctl.so';
    deploy_file("$build/libgo_ctl.so", $lib);
    my $config = reload_locations(
        load => 'require("resty.hotffi").load(os.getenv("GO_LIB"), "a",
                                              { name = "gopath" })',
        call => 'rt:q("count")',
        maps => 'libgo_ctl.so');
    $config .= <<'CONF';
location = /load-again {
    content_by_lua_block {
        ngx.say(require("resty.hotffi").load(os.getenv("GO_LIB"), "again"))
    }
}
CONF
    my $go = HotffiTest::Nginx->new(name => 'go refused', config => $config,
                                    env => { GO_LIB => $lib });
    $go->start;

    is_deeply([ body($go, '/count') ], [ 200, 'a 1' ], 'loaded by its path');
    is_deeply([ body($go, '/reload?cfg=b') ], [ 200, 'ok 1 2' ],
              'a reload with the same file in place: a new cfg');
    is_deeply([ body($go, '/count') ], [ 200, 'b 2' ], 'the count goes on');

    # a new build at the path (the same bytes in a new file will do)
    deploy_file("$build/libgo_ctl.so", $lib);
    my $mark = length $go->error_log_text;
    my ($st, $text) = body($go, '/reload');
    is($st, 500, 'a reload into a new file of a Go library: refused');
    like($text, qr/^error: cannot replace a Go library in place: Go runs one runtime per process and never unloads it, and "\Q$lib\E" is a new file since it was loaded; reload with the same library \(a new cfg\) in place, and start new Go code with nginx -s reload$/,
         'it says why, and what works instead');
    is_deeply([ map { "@$_[0..2] $_->[3]{version}" } audit_lines($go, $mark) ],
              [ 'warn reload refused 2->0' ], 'audit: one warning');
    ($st, $text) = body($go, "/reload?lib=$build/libgo_echo.so");
    is($st, 500, 'a reload into another Go library: refused');
    like($text, qr/"\Q$build\E\/libgo_echo\.so" is another library; reload with the same library/,
         'it says so');
    is_deeply([ body($go, '/count') ], [ 200, 'b 3' ],
              'version 2 serves on, with its count');
    like((body($go, '/stats'))[1], qr/^version=2 reloads=1 failures=0 /,
         'nothing was reloaded');
    like((body($go, '/load-again'))[1],
         qr/^nil"\Q$lib\E" is a Go library whose older file is still loaded in this process, and Go runs one runtime per process, never unloaded: its new code starts with nginx -s reload$/,
         'a load of the new file next to the old one is refused too');
    is((body($go, '/maps'))[1], 1, 'one copy of the Go library is mapped');

    $go->reload;
    is_deeply([ body($go, '/count') ], [ 200, 'a 1' ],
              'nginx -s reload starts the new file');
    my (undef, $ino) = file_id($lib);
    ok((grep { $_->[1] eq 'load' && $_->[3]{ino} eq $ino } audit_lines($go)),
       'audit: the new workers loaded the new file');
    unlike($go->error_log_text, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
    $go->stop;
}

done_testing;
