# Python runtimes with a virtualenv of their own ("venv=PATH;" in the
# loader's cfg): each version runs in a sub-interpreter whose sys.path is
# that venv's site-packages and the stdlib.  Two venvs made here with
# python3 -m venv hold two versions of one small package: two runtimes of
# one worker each see their own, one without venv sees neither (nor the
# venvs' paths); unload ends the sub-interpreter (its atexit runs, the
# worker's threads and interpreters are back to what they were); an
# in-place reload keeps the count across into a new interpreter that sees
# the package upgraded on disk, and a broken version rolls back to the old
# module in the old interpreter; "module?" loads; bad venv paths fail the
# load with a clear message; a single-phase C extension module is refused
# in a venv runtime (a multi-phase one works), and works without venv.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use HotffiReload;
use Cwd qw(realpath);

# CPython under valgrind needs its own suppressions (see the file)
$ENV{HOTFFI_TEST_VALGRIND_SUPP} //= "$HotffiTest::REPO/loaders/python/valgrind.supp";

BAIL_OUT("build first: make ($HotffiTest::REPO/build/lib/libhotffi_python.so "
         . "does not exist)")
    unless -e "$HotffiTest::REPO/build/lib/libhotffi_python.so";

# the CPython the loader embeds (loaders/python/python.mk)
my $python = '/usr/bin/python3';
my ($pyver, $pyinc) = split ' ', `$python -c 'import sys, sysconfig; print("python%d.%d" % sys.version_info[:2], sysconfig.get_paths()["include"])'`;
plan skip_all => "no venv module: apt install python3-venv (make setup)"
    if system("$python -c 'import venv, ensurepip' 2>/dev/null") != 0;

# workers run as nobody when the tests run as root: they write markers here
my $dir = realpath(deploy_dir('hotffi-py-venv', 0777));
mkdir "$dir/py" or die;
mkdir "$dir/ext" or die;

sub write_file { my ($path, $text) = @_; deploy_text($text, $path) }

# ---- two venvs, each with its own version of "tinypkg" (no network: the
# package is written into site-packages by hand)
for my $v ([a => '1.0'], [b => '2.0']) {
    my ($name, $version) = @$v;
    system($python, '-m', 'venv', '--without-pip', "$dir/venv-$name") == 0
        or BAIL_OUT("python3 -m venv $dir/venv-$name failed");
    my $sp = "$dir/venv-$name/lib/$pyver/site-packages";
    -d $sp or BAIL_OUT("no $sp");
    mkdir "$sp/tinypkg" or die;
    write_file("$sp/tinypkg/__init__.py", "__version__ = \"$version\"\n");
}
my $site_a = "$dir/venv-a/lib/$pyver/site-packages";

# ---- C extension modules: single-phase (PyModule_Create; its init
# writes a file, to tell whether it ran), multi-phase (PyModuleDef_Init),
# and single-phase that references PyModuleDef_Init all the same; in venv
# a and, for the main interpreter, in $dir/ext
write_file("$dir/ext/spmod.c", <<'C');
#include <Python.h>
#include <stdio.h>
static struct PyModuleDef def = { PyModuleDef_HEAD_INIT, "spmod", NULL, -1 };
PyMODINIT_FUNC PyInit_spmod(void) {
    FILE *f = fopen(MARKER, "a");
    if (f != NULL) {
        fputs("init ran\n", f);
        fclose(f);
    }
    PyObject *m = PyModule_Create(&def);
    if (m != NULL && PyModule_AddStringConstant(m, "kind", "single-phase")) {
        Py_CLEAR(m);
    }
    return m;
}
C
write_file("$dir/ext/mpmod.c", <<'C');
#include <Python.h>
static int run(PyObject *m) {
    return PyModule_AddStringConstant(m, "kind", "multi-phase");
}
static PyModuleDef_Slot slots[] = { { Py_mod_exec, (void *) run }, { 0, NULL } };
static struct PyModuleDef def = { PyModuleDef_HEAD_INIT, "mpmod", NULL, 0, NULL, slots };
PyMODINIT_FUNC PyInit_mpmod(void) { return PyModuleDef_Init(&def); }
C
write_file("$dir/ext/mixmod.c", <<'C');
#include <Python.h>
static struct PyModuleDef unused = { PyModuleDef_HEAD_INIT, "unused", NULL, 0 };
static struct PyModuleDef def = { PyModuleDef_HEAD_INIT, "mixmod", NULL, -1 };
PyMODINIT_FUNC PyInit_mixmod(void) {
    (void) PyModuleDef_Init(&unused);
    PyObject *m = PyModule_Create(&def);
    if (m != NULL && PyModule_AddStringConstant(m, "kind", "single-phase")) {
        Py_CLEAR(m);
    }
    return m;
}
C
for my $m (qw(spmod mpmod mixmod)) {
    system('cc', '-shared', '-fPIC', "-I$pyinc",
           "-DMARKER=\"$dir/spmod.inited\"", '-o', "$dir/ext/$m.so",
           "$dir/ext/$m.c") == 0 or BAIL_OUT("cc $m.c failed");
    system('cp', "$dir/ext/$m.so", "$site_a/$m.so") == 0 or die;
}

# ---- the runtime every case loads: answers what its interpreter sees;
# cfg, when given, is a file its interpreter's atexit writes "ended" to
write_file("$dir/py/which.py", <<'PY');
import atexit
import importlib
import sys
import hotffi


def _ended(path):
    with open(path, "a") as f:
        f.write("ended\n")


def version():
    try:
        import tinypkg
    except ImportError:
        return "none"
    return tinypkg.__version__


def handle(req):
    what, _, arg = req.decode().partition(" ")
    if what == "version":
        return version()
    if what == "prefix":
        return sys.prefix
    if what == "path":
        return "\n".join(sys.path)
    if what == "tq":
        return str(TQ)
    if what == "serve":
        try:
            hotffi.serve(int(arg), handle)
        except ValueError as e:
            return "ValueError: " + str(e)
        return "serving"
    if what == "interpreters":
        import _xxsubinterpreters
        return str(len(_xxsubinterpreters.list_all()))
    if what == "import":
        where, _, name = arg.rpartition(" ")
        if where and where not in sys.path:
            sys.path.insert(0, where)
        try:
            return getattr(importlib.import_module(name), "kind", "imported")
        except ImportError as e:
            return "ImportError: " + str(e)
    return "what?"


TQ = 0


def init(cfg, tq):
    global TQ
    TQ = tq
    if str(cfg):
        atexit.register(_ended, str(cfg))
    hotffi.serve(tq, handle, threads=2)
    return 0
PY

# a runtime whose import needs the single-phase module
write_file("$dir/py/usesp.py", <<'PY');
import spmod


def init(cfg, tq):
    return 0
PY

my $config = <<'CONF';
location = /call {
    content_by_lua_block {
        local args = ngx.req.get_uri_args()
        local rt, err = require("resty.hotffi").load("hotffi_python",
                                                     args.cfg)
        if not rt then
            ngx.status = 500
            ngx.say("load failed: ", err)
            return
        end
        local ok, res, e = rt:call(args.req or "version")
        if not ok then
            ngx.status = 500
            ngx.say("failed: ", tostring(res), " ", tostring(e))
            return
        end
        ngx.say(res)
    }
}
location = /compat {
    content_by_lua_block {
        -- lua-resty-ffi's Lua and loader name, with hotffi's venv=
        require "resty_ffi"
        local rt = ngx.load_ffi("ffi_python3", ngx.req.get_uri_args().cfg,
                                { is_global = true })
        local ok, res = rt:call("version")
        ngx.say(ok, " ", res)
        rt:__unload()
    }
}
location = /parallel {
    content_by_lua_block {
        -- n venv runtimes loaded at once (their inits run on n threads),
        -- alternately on venv a and b, each called, then all unloaded
        local args = ngx.req.get_uri_args()
        local n = tonumber(args.n)
        local hotffi = require "resty.hotffi"
        local rts = {}
        local good = require("hotffi_threads").count_true(n, function(i)
            local v = i % 2 == 0 and "a" or "b"
            local rt = hotffi.load("hotffi_python", "venv=" .. args.dir .. "/venv-"
                                   .. v .. ";" .. args.dir
                                   .. "/py/which,init," .. args.dir
                                   .. "/par" .. i .. ".ended")
            if not rt then
                return false
            end
            rts[i] = rt
            local ok, res = rt:call("version")
            -- venv a has had tinypkg 1.1 since the reload case
            return ok and res == (v == "a" and "1.1" or "2.0")
        end)
        for _, rt in pairs(rts) do
            rt:__unload()
        end
        ngx.say(good)
    }
}
location = /unload {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("hotffi_python",
                          ngx.req.get_uri_args().cfg))
        rt:__unload()
        ngx.say("unloaded")
    }
}
location = /status {
    content_by_lua_block {
        local field = ngx.var.arg_field or "Threads"
        for line in io.lines("/proc/" .. ngx.worker.pid() .. "/status") do
            local n = line:match("^" .. field .. ":%s*(%d+)")
            if n then
                ngx.say(n)
            end
        end
    }
}
CONF

# the counter of the reload cases: "<tinypkg version> <count>", the count
# handed over by retire() and hotffi.state()
sub counter {
    my ($tag) = @_;
    return <<"PY";
import atexit
import threading
import hotffi
import tinypkg

TAG = "$tag"
lock = threading.Lock()
count = 0


def _ended(path):
    with open(path, "a") as f:
        f.write(TAG + " ended\\n")


def handle(req):
    global count
    with lock:
        count += 1
        return f"{TAG}\@{tinypkg.__version__} {count}"


def init(cfg, tq):
    global count
    state = hotffi.state(tq)
    count = int(state) if state is not None else 0
    atexit.register(_ended, str(cfg))
    hotffi.serve(tq, handle, threads=2)
    return 0


def retire(tq):
    return str(count)
PY
}

my $counter_cfg = "venv=$dir/venv-a;$dir/py/counter?,init,$dir/counter.ended";
# /count, /reload[?state=0], /stats (tests/lib/HotffiReload.pm)
$config .= reload_locations(
    load => qq{require("resty.hotffi").load("hotffi_python", "$counter_cfg",
                                             { name = "venvcount" })});

write_file("$dir/py/counter.py", counter('v1'));

my $nginx = HotffiTest::Nginx->new(name => 'python venv', config => $config);
$nginx->start;

sub esc { my ($s) = @_; $s =~ s/([^A-Za-z0-9_.\/-])/sprintf('%%%02X', ord $1)/ge; $s }
sub call {
    my ($cfg, $req) = @_;
    return body($nginx, '/call?cfg=' . esc($cfg) . '&req=' . esc($req // 'version'));
}
sub interpreters { (call("$dir/py/which,init,", 'interpreters'))[1] }
sub threads { (body($nginx, '/status'))[1] }
sub rss_kb { (body($nginx, '/status?field=VmRSS'))[1] }
sub slurp { my ($f) = @_; open my $fh, '<', $f or return ''; local $/; <$fh> }

my $cfg_a = "venv=$dir/venv-a;$dir/py/which,init,";
my $cfg_b = "venv=$dir/venv-b;$dir/py/which,init,";
my $cfg_main = "$dir/py/which,init,";
my ($status, $text);

# ---- each runtime sees its own venv's package; one without venv none
is_deeply([ call($cfg_main) ], [ 200, 'none' ],
          'a runtime without venv does not see either venv\'s package');
is_deeply([ call($cfg_a) ], [ 200, '1.0' ], 'venv a: tinypkg 1.0');
is_deeply([ call($cfg_b) ], [ 200, '2.0' ], 'venv b: tinypkg 2.0, same worker');
is_deeply([ call($cfg_a) ], [ 200, '1.0' ], 'venv a still 1.0');
is(interpreters(), 3, 'three interpreters: the main one and one per venv runtime');

my $load = concurrent_requests($nginx, 60, 6, '/call?cfg=' . esc($cfg_b) . '&req=version');
is($load->{ok}, 60, 'calls to a venv runtime from many clients at once all answered');

is_deeply([ call($cfg_a, 'prefix') ], [ 200, "$dir/venv-a" ],
          'sys.prefix is the venv');
($status, $text) = call($cfg_a, 'path');
my @path = split /\n/, $text;
ok((grep { $_ eq $site_a } @path), 'the venv\'s site-packages is on sys.path');
ok(!(grep { /dist-packages/ || index($_, "$dir/venv-b") == 0 } @path),
   'Debian\'s dist-packages and the other venv are not')
    or diag($text);
ok((grep { m{/lib/python3\.\d+$} } @path), 'the stdlib is');
($status, $text) = call($cfg_main, 'path');
ok(!(grep { index($_, "$dir/venv-") == 0 } split /\n/, $text),
   'the main interpreter\'s sys.path has no venv');

my $before = interpreters();
is_deeply([ body($nginx, '/compat?cfg=' . esc("venv=$dir/venv-b;$dir/py/which,init")) ],
          [ 200, 'true 2.0' ],
          'ngx.load_ffi("ffi_python3", "venv=...;which,init") too');
wait_until(sub { interpreters() == $before }, 10,
           'its interpreter to end after its __unload()');

# ---- a runtime serves its own interpreter's queues only
my $tq_main = (call($cfg_main, 'tq'))[1];
is_deeply([ call($cfg_a, "serve $tq_main") ],
          [ 200, 'ValueError: hotffi.serve(): tq is not the queue of a running runtime of this interpreter' ],
          'a venv runtime cannot serve() a runtime of the main interpreter');
is_deeply([ call($cfg_main, 'version') ], [ 200, 'none' ],
          'which its own threads serve on');

# ---- unload ends the sub-interpreter: its atexit runs, threads and
# interpreters are back to what they were
my $threads0 = threads();
my $cfg_c = "venv=$dir/venv-a;$dir/py/which,init,$dir/c.ended";
is_deeply([ call($cfg_c) ], [ 200, '1.0' ], 'a third runtime, venv a again');
is(interpreters(), 4, 'a fourth interpreter');
ok(threads() > $threads0, 'with threads of its own');
is_deeply([ body($nginx, '/unload?cfg=' . esc($cfg_c)) ], [ 200, 'unloaded' ],
          'unloaded');
wait_until(sub { slurp("$dir/c.ended") eq "ended\n" }, 10,
           'the sub-interpreter to end (its atexit)');
wait_until(sub { interpreters() == 3 }, 10, 'three interpreters again');
wait_until(sub { threads() <= $threads0 }, 10,
           "the worker's threads back to $threads0 or fewer")
    or diag("threads: " . threads());
is_deeply([ call($cfg_a) ], [ 200, '1.0' ], 'the other runtimes serve on');
is_deeply([ call($cfg_b) ], [ 200, '2.0' ], 'both');

# ---- in-place reload: the count goes on, in a new interpreter that sees
# the package as it is on disk now
is_deeply([ body($nginx, '/count') ], [ 200, 'v1@1.0 1' ], 'counter v1');
is_deeply([ body($nginx, '/count') ], [ 200, 'v1@1.0 2' ], 'counts');
my $interps = interpreters();
write_file("$site_a/tinypkg/__init__.py", "__version__ = \"1.1\"\n");
write_file("$dir/py/counter.py", counter('v2'));
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 1 2' ], 'reloaded in place');
is_deeply([ body($nginx, '/count') ], [ 200, 'v2@1.1 3' ],
          'new code, the package upgraded in the venv, the count kept');
wait_until(sub { slurp("$dir/counter.ended") eq "v1 ended\n" }, 10,
           'v1\'s interpreter to end after v2 started');
wait_until(sub { interpreters() == $interps }, 10,
           'one interpreter for the runtime, as before');

# a version that does not compile rolls back to the old module, in its
# interpreter, with its count
write_file("$dir/py/counter.py", "def init(cfg, tq)\n    return 0\n");
($status, $text) = body($nginx, '/reload');
is($status, 500, 'a broken version fails the reload');
like($text, qr/SyntaxError: expected ':'.*version 2 serves again$/s,
     'and version 2 serves again');
is_deeply([ body($nginx, '/count') ], [ 200, 'v2@1.1 4' ],
          'v2\'s module, in its interpreter, count kept');
is(slurp("$dir/counter.ended"), "v1 ended\n",
   'v2\'s interpreter was not ended');
wait_until(sub { interpreters() == $interps }, 10,
           'the failed version\'s interpreter to end');

# without state: a new interpreter, the count starts again
write_file("$dir/py/counter.py", counter('v3'));
is_deeply([ body($nginx, '/reload?state=0') ], [ 200, 'ok 2 4' ],
          'reloaded without state');
is_deeply([ body($nginx, '/count') ], [ 200, 'v3@1.1 1' ], 'v3 counts from 1');
# v2's init ran twice in that interpreter (the rollback), and so
# registered its atexit function twice
wait_until(sub { slurp("$dir/counter.ended") eq "v1 ended\nv2 ended\nv2 ended\n" },
           10, 'v2\'s interpreter to end')
    or diag(slurp("$dir/counter.ended"));
wait_until(sub { interpreters() == $interps }, 10,
           'still one interpreter for the runtime');

# under load: every reload a new interpreter, no call lost, a broken
# version among them rolled back
reload_under_load($nginx, reloads => 6, pause => 0.02,
                  before_each => sub {
                      my ($i) = @_;
                      write_file("$dir/py/counter.py", counter("L$i"));
                      return "L$i\@1.1";
                  },
                  refuse => {
                      at     => 3,
                      before => sub { write_file("$dir/py/counter.py",
                                                 "def broken(:\n") },
                      error  => qr/SyntaxError/,
                  },
                  answered_by => 2);
wait_until(sub { interpreters() == $interps }, 10,
           'one interpreter for the runtime after them')
    or diag(interpreters());

# ---- "module?": each load reads the file again, in its own interpreter
write_file("$dir/py/fresh.py", "import hotffi\n\ndef init(cfg, tq):\n"
           . "    hotffi.serve(tq, lambda req: 'f1')\n    return 0\n");
is_deeply([ call("venv=$dir/venv-b;$dir/py/fresh?,init,1") ], [ 200, 'f1' ],
          'fresh? in venv b');
write_file("$dir/py/fresh.py", "import hotffi\n\ndef init(cfg, tq):\n"
           . "    hotffi.serve(tq, lambda req: 'f2')\n    return 0\n");
is_deeply([ call("venv=$dir/venv-b;$dir/py/fresh?,init,2") ], [ 200, 'f2' ],
          'another cfg reads the new file');
is_deeply([ call("venv=$dir/venv-b;$dir/py/fresh?,init,1") ], [ 200, 'f1' ],
          'the first runtime keeps its code');

# ---- bad venvs fail the load, with a clear message
$interps = interpreters();
mkdir "$dir/notavenv";
for my $case (
    [ "venv=$dir/nowhere;$dir/py/which,init,",
      qr/failed: 1: venv "\Q$dir\E\/nowhere": No such file or directory$/,
      'a venv that does not exist' ],
    [ "venv=$dir/notavenv;$dir/py/which,init,",
      qr/failed: 1: venv "\Q$dir\E\/notavenv" has no pyvenv\.cfg: it is not a virtualenv/,
      'a directory that is not a venv' ],
    [ "venv=$dir/py/which.py;$dir/py/which,init,",
      qr/failed: 1: venv "[^"]+" is not a directory$/, 'a file' ],
    [ "venv=$dir/venv-a",
      qr/failed: 1: bad venv in "venv=[^"]*": "venv=\/path\/to\/venv;\[dir\/\]module/,
      'no ";" after the venv' ],
    [ "venv=;which,init,", qr/failed: 1: bad venv/, 'an empty venv' ],
) {
    my ($cfg, $re, $what) = @$case;
    ($status, $text) = call($cfg);
    is($status, 500, "$what fails the load");
    like($text, $re, "$what: the message says why") or diag($text);
}
is(interpreters(), $interps, 'and leaves no interpreter behind');

# ---- single-phase extension modules: refused in a venv runtime
($status, $text) = call($cfg_a, 'import spmod');
like($text, qr/^ImportError: spmod \(\Q$site_a\E\/spmod\.so\) is an extension module with single-phase initialisation, which is not safe in a sub-interpreter: hotffi refuses it in a venv= runtime/,
     'a single-phase extension module is refused in a venv runtime');
ok(!-e "$dir/spmod.inited", 'before its init ran (its file has no '
   . 'PyModuleDef_Init, so it cannot be multi-phase)');
($status, $text) = call($cfg_a, 'import spmod');
like($text, qr/^ImportError: spmod .*single-phase/, 'and refused again');
($status, $text) = call($cfg_a, 'import mixmod');
like($text, qr/^ImportError: mixmod \(\Q$site_a\E\/mixmod\.so\) is an extension module with single-phase initialisation/,
     'one that references PyModuleDef_Init but is single-phase is refused '
     . 'after its init');
($status, $text) = call($cfg_a, 'import mixmod');
like($text, qr/^ImportError: mixmod .*single-phase/,
     'and again (CPython keeps a copy of it)');
is_deeply([ call($cfg_a, 'import mpmod') ], [ 200, 'multi-phase' ],
          'a multi-phase one works');
is_deeply([ call($cfg_a, 'import _ctypes') ], [ 200, 'imported' ],
          'CPython\'s own lib-dynload modules are not refused');
is_deeply([ call($cfg_main, "import $dir/ext spmod") ], [ 200, 'single-phase' ],
          'without venv, the single-phase module works');
is(slurp("$dir/spmod.inited"), "init ran\n", 'its init ran there, once');
($status, $text) = call("venv=$dir/venv-a;$dir/py/usesp,init,");
is($status, 500, 'a venv runtime that imports it fails to load');
like($text, qr/failed: 3: Traceback .*ImportError: spmod .*single-phase initialisation/s,
     'with the ImportError');

# ---- many loads at once, then their unloads: every interpreter ends
$before = interpreters();
is_deeply([ body($nginx, '/parallel?n=8&dir=' . esc($dir)) ], [ 200, 8 ],
          '8 venv runtimes loaded at once, each sees its venv');
wait_until(sub { !grep { slurp("$dir/par$_.ended") ne "ended\n" } 1 .. 8 },
           20, 'each of their interpreters to end');
# (<=: an interpreter of a failed load above may end meanwhile)
wait_until(sub { interpreters() <= $before }, 10, 'no more interpreters than before');

# ---- load and unload cycles: no interpreter, thread or much memory left
# (CPython 3.11 keeps a little of each interpreter it ends)
my ($cycles, $rss0, $interps0) = (30, rss_kb(), interpreters());
$threads0 = threads();
my $served = 0;
for my $i (1 .. $cycles) {
    my $c = "venv=$dir/venv-b;$dir/py/which,init,$dir/cycle$i.ended";
    $served++ if join(' ', call($c)) eq '200 2.0';
    body($nginx, '/unload?cfg=' . esc($c));
}
is($served, $cycles, "$cycles venv runtimes loaded, called and unloaded");
wait_until(sub { !grep { slurp("$dir/cycle$_.ended") ne "ended\n" } 1 .. $cycles },
           20, 'every one of their interpreters to end');
wait_until(sub { interpreters() <= $interps0 }, 10,
           'no more interpreters than before');
wait_until(sub { threads() <= $threads0 }, 10, 'no more threads than before');
my $grown = rss_kb() - $rss0;
diag("$cycles venv load/unload cycles: the worker's RSS grew by $grown KiB");
cmp_ok($grown, '<', $cycles * 1024, 'less than 1 MiB of memory per cycle kept');

# ---- whatever happened, every runtime still serves
is_deeply([ call($cfg_a) ], [ 200, '1.0' ],
          'venv a: 1.0, imported before the upgrade on disk');
is_deeply([ call($cfg_b) ], [ 200, '2.0' ], 'venv b');
is_deeply([ call($cfg_main) ], [ 200, 'none' ], 'no venv');

my $log = $nginx->error_log_text;
unlike($log, qr/\[(alert|crit|emerg)\]|Fatal Python error|not ended/,
       'no alert, no fatal error, no interpreter left running');

# ---- a thread nobody joins keeps the interpreter from ending (CPython
# would abort): it is left as it is, and the error log says so
write_file("$dir/py/leaky.py", <<'PY');
import threading
import hotffi

stop = threading.Event()


def handle(req):
    threading.Thread(target=stop.wait, daemon=True).start()
    return "started"


def init(cfg, tq):
    hotffi.serve(tq, handle)
    return 0
PY
my $cfg_leaky = "venv=$dir/venv-a;$dir/py/leaky,init,";
$interps0 = interpreters();
is_deeply([ call($cfg_leaky) ], [ 200, 'started' ],
          'a handler starts a daemon thread that never ends');
body($nginx, '/unload?cfg=' . esc($cfg_leaky));
wait_until(sub { $nginx->error_log_text =~ /hotffi_python: venv "\Q$dir\E\/venv-a": the sub-interpreter is not ended: 1 thread still runs in it/ },
           10, 'the error log to say the interpreter is not ended');
is(interpreters(), $interps0 + 1, 'that interpreter stays');
is_deeply([ call($cfg_a) ], [ 200, '1.0' ], 'the worker serves on');
unlike($nginx->error_log_text, qr/Fatal Python error|\[(alert|crit|emerg)\]/,
       'no abort');
$nginx->stop;

done_testing;
