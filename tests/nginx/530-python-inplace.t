# In-place reload of a Python runtime (rt:__reload) edited on disk: the
# loader's libffi_retire() joins the old version's threads and calls its
# module's retire(tq); the new version's init reads that with
# hotffi.state(tq).  Under load, ten reloads into new code lose no call and
# never reset the count; a new version that does not compile or whose init
# raises is rolled back to the old module (not to the broken file), with
# its count, and so is one reloaded without state or into another library
# that fails (the loader knows the rollback from hotffi_rollback()); a
# retire() that raises fails the reload with its traceback and restarts the
# old version.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use HotffiReload;

# CPython under valgrind needs its own suppressions (see the file)
$ENV{HOTFFI_TEST_VALGRIND_SUPP} //= "$HotffiTest::REPO/loaders/python/valgrind.supp";

BAIL_OUT("build first: make ($HotffiTest::REPO/build/lib/libhotffi_python.so "
         . "does not exist)")
    unless -e "$HotffiTest::REPO/build/lib/libhotffi_python.so";

my $dir = deploy_dir('hotffi-py-inplace', 0777);

# write and rename, as a deployment would: a load never sees half a file
sub write_file { deploy_text($_[0], "$dir/counter.py") }

# A counter: every answer is "<tag> <count>"; the count goes to the next
# version through retire() and hotffi.state().  $extra is appended, to
# make a version that misbehaves.
sub counter {
    my ($tag, $extra) = @_;
    return <<"PY" . ($extra // '');
import threading
import hotffi

TAG = "$tag"
lock = threading.Lock()
count = 0


def handle(req):
    global count
    with lock:
        count += 1
        return f"{TAG} {count}"


def init(cfg, tq):
    global count
    state = hotffi.state(tq)
    count = int(state) if state is not None else 0
    hotffi.serve(tq, handle, threads=2)
    return 0


def retire(tq):
    return str(count)
PY
}

# /reload?cfg=C replaces the cfg part of counter?,init,x; &lib=1 reloads
# into the C counter with cfg C instead
my $reload_args = <<'LUA';
local lib, cfg = nil, ngx.var.arg_cfg
if ngx.var.arg_lib then
    lib = os.getenv("COUNTER_LIB")
elseif cfg then
    cfg = os.getenv("PY_DIR") .. "/counter?,init," .. cfg
end
LUA

my $config = reload_locations(
    load => 'require("resty.hotffi").load("hotffi_python",
                 os.getenv("PY_DIR") .. "/counter?,init,x",
                 { name = "pycount" })',
    reload_args => $reload_args) . <<'CONF';
location = /outside {
    content_by_lua_block {
        local rt, err = require("resty.hotffi").load("hotffi_python",
            os.getenv("PY_DIR") .. "/outside,init,")
        if not rt then
            ngx.say("load failed: ", err)
            return
        end
        local ok, res = rt:x("")
        ngx.say(res)
    }
}
CONF

write_file(counter('v1'));
my $nginx = HotffiTest::Nginx->new(name => 'python inplace', config => $config,
                                   env => { PY_DIR => $dir,
                                            COUNTER_LIB => "$HotffiTest::REPO/build/lib/libcounter.so" });
$nginx->start;

# ---- the story every language tells (tests/lib/HotffiReload.pm): the
# count goes on into the code edited on disk (a reload with the same cfg
# re-reads the "?" module); a new version that does not compile rolls
# back to the old module, not to the broken file
reload_story($nginx, tags => [qw(v1 v2)],
             switch => sub { write_file(counter('v2')); return '/reload' },
             fail => sub {
                 write_file("import hotffi\n\ndef init(cfg, tq)\n    return 0\n");
                 return ('/reload', qr/failed: 3: Traceback .*counter\.py", line 3\n.*SyntaxError: expected ':'/s);
             });
my ($status, $text);

# ---- a new version whose init raises: the same
write_file(counter('bad', <<'PY'));


def init(cfg, tq):
    raise RuntimeError("this version refuses to start")
PY
($status, $text) = body($nginx, '/reload');
is($status, 500, 'an init that raises fails the reload');
like($text, qr/failed: 4: Traceback .*RuntimeError: this version refuses to start; version 3 serves again$/s,
     'with the traceback');
is_deeply([ body($nginx, '/count') ], [ 200, 'v2 4' ], 'v2 again, count kept');

# ---- a new cfg the init refuses: rolled back to the old cfg and module
write_file(counter('v3', <<'PY'));


_init = init


def init(cfg, tq):
    if cfg == "fail":
        raise ValueError("told to fail by cfg")
    return _init(cfg, tq)
PY
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 3 6' ],
          'a good version after two failures (versions 4, 5)');
is_deeply([ body($nginx, '/count') ], [ 200, 'v3 5' ], 'count still going');
($status, $text) = body($nginx, '/reload?cfg=fail');
is($status, 500, 'a refused cfg fails the reload');
like($text, qr/ValueError: told to fail by cfg; version 6 serves again$/,
     'with the traceback');
is_deeply([ body($nginx, '/count') ], [ 200, 'v3 6' ],
          'v3 with its old cfg again, count kept');

# ---- hotffi.state() outside init
{
    open my $fh, '>', "$dir/outside.py" or die;
    print {$fh} <<'PY';
import hotffi


def init(cfg, tq):
    def later(req):
        try:
            hotffi.state(tq)
        except RuntimeError as e:
            return str(e)
        return "no error"
    hotffi.serve(tq, later)
    return 0 if hotffi.state(tq) is None else 9
PY
    close $fh;
    is_deeply([ body($nginx, '/outside') ],
              [ 200, 'hotffi.state(tq) only works while init(cfg, tq) runs, with its tq' ],
              'hotffi.state(): None in a first init, RuntimeError after it');
}

# ---- a retire() that raises: the reload fails, the old version restarts
write_file(counter('v4', <<'PY'));


tries = 0


def retire(tq):
    global tries
    tries += 1
    if tries == 1:
        raise ValueError("cannot hand over yet")
    return str(count)
PY
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 6 8' ], 'reload into v4');
is_deeply([ body($nginx, '/count') ], [ 200, 'v4 7' ], 'v4 counts on');
write_file(counter('v5'));
($status, $text) = body($nginx, '/reload');
is($status, 500, 'a retire() that raises fails the reload');
like($text, qr/^error: libffi_retire\(\) of version 8 failed: 5: Traceback \(most recent call last\):\n.*counter\.py", line \d+, in retire\n(?:.*\n)?ValueError: cannot hand over yet; version 8 serves again$/s,
     'the error names the retire, its rc and ends with its traceback');
wait_until(sub { $nginx->error_log_text =~ /failed to retire, the reload rolls back: Traceback.*ValueError: cannot hand over yet/s },
           5, 'the traceback is in the error log too');
is_deeply([ body($nginx, '/count') ], [ 200, 'v4 1' ],
          'v4 serves again (not v5 from disk), without state');
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 8 10' ],
          'its second retire() works: into v5');
is_deeply([ body($nginx, '/count') ], [ 200, 'v5 2' ], 'v5 with v4\'s count');

# ---- without state: the rollback still restarts the module, not the file
write_file("def broken(:\n");
($status, $text) = body($nginx, '/reload?state=0');
is($status, 500, 'a broken file fails a reload without state');
like($text, qr/SyntaxError: .*; version 10 serves again$/s,
     'and the old version serves again');
is_deeply([ body($nginx, '/count') ], [ 200, 'v5 1' ],
          'v5\'s module restarted (the broken file was not read again), '
          . 'from no state');
is_deeply([ body($nginx, '/count') ], [ 200, 'v5 2' ],
          'the runtime was not unloaded: it counts on');

# ---- another library that fails: back to the Python module, with state
($status, $text) = body($nginx, '/reload?lib=1&cfg=fail');
is($status, 500, 'a C library whose init fails fails the reload');
like($text, qr/failed: 1: told to fail by its configuration; version 10 serves again$/,
     'with its init error');
is_deeply([ body($nginx, '/count') ], [ 200, 'v5 3' ],
          'v5\'s module again (the file is still broken), count kept');

# ---- ten reloads into new code under load, one failure among them
reload_under_load($nginx, reloads => 10, pause => 0.02,
                  # versions 11 and 12 failed: the first goes from 10 to 13
                  failed_before => 2,
                  before_each => sub {
                      my ($i) = @_;
                      write_file(counter("L$i"));
                      return "L$i";
                  },
                  refuse => {
                      at     => 5,
                      before => sub { write_file("def broken(:\n") },
                      error  => qr/SyntaxError/,
                  },
                  answered_by => 3);

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
$nginx->stop;

done_testing;
