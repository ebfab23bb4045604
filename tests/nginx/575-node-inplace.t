# In-place reload of a Node.js runtime (rt:__reload) edited on disk: the
# loader lets the old version answer what it took, calls its module's
# retire(tq) for the state, ends its Environment; the new version's init
# reads the state with hotffi.state(tq).  A new version that does not
# compile, or whose init throws, is rolled back to the old module's code
# (the source the loader kept, not the broken file), with its count; a
# retire() that throws fails the reload and restarts the old version.
# Under load, ten reloads lose no call and never reset the count.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use HotffiReload;

# V8 (its JIT, its platform threads) under valgrind is too slow and noisy
# to say anything about hotffi
plan(skip_all => "the Node.js runtimes are not run under valgrind: V8's "
               . "JIT and platform threads drown it")
    if $ENV{HOTFFI_TEST_VALGRIND};

BAIL_OUT("build first: make ($HotffiTest::REPO/build/lib/libhotffi_node.so "
         . "does not exist)")
    unless -e "$HotffiTest::REPO/build/lib/libhotffi_node.so";

my $dir = deploy_dir('hotffi-node-inplace', 0755);

sub write_file { deploy_text($_[0], "$dir/counter.js") }

# A counter: every answer is "<tag> <count>"; the count goes to the next
# version through retire() and hotffi.state().  $extra is appended.
sub counter {
    my ($tag, $extra) = @_;
    return <<"JS" . ($extra // '');
'use strict';
const hotffi = require('hotffi');
const TAG = '$tag';
let count = 0;
exports.init = (cfg, tq) => {
    const state = hotffi.state(tq);
    count = state === null ? 0 : Number(state.toString());
    hotffi.serve(tq, async () => {
        count += 1;
        return `\${TAG} \${count}`;
    });
    return 0;
};
exports.retire = (tq) => String(count);
JS
}

my $config = reload_locations(
    load => 'require("resty.hotffi").load("hotffi_node",
                 os.getenv("JS_DIR") .. "/counter?,init,x",
                 { name = "jscount" })',
    reload_args => <<'LUA');
local lib, cfg = nil, ngx.var.arg_cfg
if cfg then
    cfg = os.getenv("JS_DIR") .. "/counter?,init," .. cfg
end
LUA

write_file(counter('v1'));
my $nginx = HotffiTest::Nginx->new(name => 'node inplace', config => $config,
                                   env => { JS_DIR => $dir });
$nginx->start;

reload_story($nginx, tags => [qw(v1 v2)],
             switch => sub { write_file(counter('v2')); return '/reload' },
             fail => sub {
                 write_file("exports.init = (cfg, tq) => {\n");
                 return ('/reload', qr/failed: 3: .*SyntaxError.*/s);
             });
my ($status, $text);

# ---- a new version whose init throws (asynchronously): the same
write_file(counter('bad', <<'JS'));
exports.init = async () => { throw new Error('this version refuses to start'); };
JS
($status, $text) = body($nginx, '/reload');
is($status, 500, 'an init that rejects fails the reload');
like($text, qr/failed: 4: .*Error: this version refuses to start.*; version 3 serves again$/s,
     'with the stack');
is_deeply([ body($nginx, '/count') ], [ 200, 'v2 4' ], 'v2 again, count kept');

# ---- a new cfg the init refuses: rolled back to the old cfg and module
write_file(counter('v3', <<'JS'));
const _init = exports.init;
exports.init = (cfg, tq) => {
    if (cfg === 'fail') {
        throw new RangeError('told to fail by cfg');
    }
    return _init(cfg, tq);
};
JS
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 3 6' ],
          'a good version after two failures (versions 4, 5)');
is_deeply([ body($nginx, '/count') ], [ 200, 'v3 5' ], 'count still going');
($status, $text) = body($nginx, '/reload?cfg=fail');
is($status, 500, 'a refused cfg fails the reload');
like($text, qr/RangeError: told to fail by cfg.*; version 6 serves again$/s,
     'with the stack');
is_deeply([ body($nginx, '/count') ], [ 200, 'v3 6' ],
          'v3 with its old cfg again, count kept');

# ---- a retire() that throws: the reload fails, the old version restarts
# (its code starts again from scratch: the file "hold" says when to throw)
write_file(counter('v4', <<'JS'));
exports.retire = async (tq) => {
    if (require('fs').existsSync(__dirname + '/hold')) {
        throw new Error('cannot hand over yet');
    }
    return String(count);
};
JS
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 6 8' ], 'reload into v4');
is_deeply([ body($nginx, '/count') ], [ 200, 'v4 7' ], 'v4 counts on');
write_file(counter('v5'));
deploy_text('', "$dir/hold");
($status, $text) = body($nginx, '/reload');
unlink "$dir/hold" or die "cannot remove $dir/hold: $!";
is($status, 500, 'a retire() that throws fails the reload');
like($text, qr/^error: libffi_retire\(\) of version 8 failed: 5: .*Error: cannot hand over yet.*; version 8 serves again$/s,
     'the error names the retire, its rc and has its stack');
is_deeply([ body($nginx, '/count') ], [ 200, 'v4 1' ],
          'v4 serves again (not v5 from disk), without state');
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 8 10' ],
          'its second retire() works: into v5');
is_deeply([ body($nginx, '/count') ], [ 200, 'v5 2' ], 'v5 with v4\'s count');

# ---- ten reloads into new code under load, one refused among them
reload_under_load($nginx, reloads => 10, pause => 0.02,
                  before_each => sub {
                      my ($i) = @_;
                      write_file(counter("L$i"));
                      return "L$i";
                  },
                  failed_before => 0,
                  refuse => {
                      at     => 5,
                      before => sub { write_file("exports.init = (\n") },
                      error  => qr/SyntaxError/,
                  },
                  answered_by => 3);

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
$nginx->stop;

done_testing;
