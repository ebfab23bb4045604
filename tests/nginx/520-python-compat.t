# Python runtimes written for lua-resty-ffi run unmodified: they import no
# hotffi module, get cfg and tq as C addresses, and reach the C ABI by
# dlopen(NULL) through ctypes or cffi, with or without is_global; and Lua
# code written for lua-resty-ffi (ngx.load_ffi, "ffi.echo?,init") drives
# them.  The cffi part runs when Debian's python3-cffi is installed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use File::Path qw(make_path);
use File::Temp qw(tempdir);

# CPython under valgrind needs its own suppressions (see the file)
$ENV{HOTFFI_TEST_VALGRIND_SUPP} //= "$HotffiTest::REPO/loaders/python/valgrind.supp";

BAIL_OUT("build first: make ($HotffiTest::REPO/build/lib/libhotffi_python.so "
         . "does not exist)")
    unless -e "$HotffiTest::REPO/build/lib/libhotffi_python.so";

# A package "ffi" on PYTHONPATH, as in lua-resty-ffi's examples.
our $PY = tempdir('hotffi-py-compat-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $PY;
make_path("$PY/ffi");
chmod 0755, "$PY/ffi";

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', "$PY/$path" or die "cannot write $PY/$path: $!";
    print {$fh} $text;
    close $fh or die "cannot write $PY/$path: $!";
}

write_file('ffi/__init__.py', '');

# the ctypes example, as a module of the package
{
    open my $fh, '<', "$HotffiTest::REPO/examples/python/resty_ffi_echo.py"
        or die "cannot read the example: $!";
    local $/;
    write_file('ffi/ctecho.py', scalar <$fh>);
}

# lua-resty-ffi's own style, with cffi in ABI mode
write_file('ffi/echo.py', <<'PY');
import threading

from cffi import FFI

ffi = FFI()
ffi.cdef("""
void *malloc(size_t size);
void *ngx_http_lua_ffi_task_poll(void *tq);
char *ngx_http_lua_ffi_get_req(void *task, int *len);
void ngx_http_lua_ffi_respond(void *task, int rc, char *rsp, int rsp_len);
""")
C = ffi.dlopen(None)


def poll(tq, prefix):
    n = ffi.new("int *")
    while True:
        task = C.ngx_http_lua_ffi_task_poll(ffi.cast("void *", tq))
        if task == ffi.NULL:
            break
        req = C.ngx_http_lua_ffi_get_req(task, n)
        size = len(prefix) + n[0]
        rsp = ffi.cast("char *", C.malloc(size + 1))
        ffi.memmove(rsp, prefix, len(prefix))
        ffi.memmove(rsp + len(prefix), req, n[0])
        rsp[size] = b"\0"
        C.ngx_http_lua_ffi_respond(task, 0, rsp, size)


def init(cfg, tq):
    prefix = ffi.string(ffi.cast("char *", cfg))
    t = threading.Thread(target=poll, args=(tq, prefix))
    t.daemon = True
    t.start()
    return 0
PY

my $has_cffi = system('/usr/bin/python3', '-c', 'import cffi') == 0;

SKIP: {
    skip 'python3-cffi is not installed (Debian: apt-get install python3-cffi)', 4
        unless $has_cffi;

    my $nginx = HotffiTest::Nginx->new(
        name => 'cffi', env => { PYTHONPATH => $PY },
        config => <<'CONF');
location = /t {
    content_by_lua_block {
        require "resty_ffi"
        local demo = assert(ngx.load_ffi("hotffi_python",
                                         "ffi.echo?,init,cffi> ",
                                         { is_global = true }))
        local ok, res, err = demo:echo("hello")
        ngx.say(ok, " ", res, " ", err)
        ok, res = demo:echo("a\0b")
        ngx.say(ok, " ", #res, " ", res == "cffi> a\0b")
        ngx.say(demo:__unload())
    }
}
CONF
    $nginx->start;
    my $res = $nginx->get('/t');
    is($res->{status}, 200, 'cffi runtime: status');
    is($res->{content}, "true cffi> hello nil\ntrue 9 true\ntrue\n",
       'a cffi runtime in lua-resty-ffi style answers through ngx.load_ffi');
    $nginx->quit;
    ok(!$nginx->killed, 'cffi runtime: nginx quit by itself');
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg|error)\]/,
           'cffi runtime: error log is clean');
    $nginx->stop;
}

run_tests();

__DATA__

=== TEST 1: a ctypes runtime, with and without is_global
--- main_config eval
"env PYTHONPATH=$::PY;"
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local g = assert(hotffi.load("hotffi_python", "ffi.ctecho,init,g> ",
                                     { is_global = true }))
        local l = assert(hotffi.load("hotffi_python", "ffi.ctecho,init,l> "))
        ngx.say(g:echo("hello"))
        ngx.say(l:echo("hello"))
        local ok, res = l:echo("a\0b")
        ngx.say(#res, " ", res == "l> a\0b")
        -- no configuration: cfg is NULL, as in lua-resty-ffi
        local n = assert(hotffi.load("hotffi_python", "ffi.ctecho,init"))
        ngx.say(n:echo("bare"))
    }
}
--- request
GET /t
--- response_body
trueg> hello
truel> hello
6 true
truebare



=== TEST 2: Lua written for lua-resty-ffi: ngx.load_ffi of its loader's name, "?", __unload
--- main_config eval
"env PYTHONPATH=$::PY;"
--- config
location = /t {
    content_by_lua_block {
        require "resty_ffi"
        -- ffi_python3: lua-resty-ffi's name for its Python loader
        local demo = ngx.load_ffi("ffi_python3", "ffi.ctecho?,init,> ",
                                  { is_global = true })
        local ok, res, err = demo:echo("hello")
        ngx.say(ok, " ", res, " ", err)
        ngx.say(ngx.load_ffi("ffi_python3", "ffi.ctecho?,init,> ",
                             { is_global = true }) == demo)
        ngx.say(demo:__unload(), " ", demo.finished)
        ngx.say(demo:echo("late"))
        local again = ngx.load_ffi("ffi_python3", "ffi.ctecho?,init,> ",
                                   { is_global = true })
        ngx.say(again ~= demo, " ", select(2, again:echo("again")))
        -- the same loader, one interpreter, under either name
        local own = ngx.load_ffi("hotffi_python", "ffi.ctecho,init,+ ")
        ngx.say(select(2, own:echo("own")))
    }
}
--- request
GET /t
--- response_body
true > hello nil
true
true true
falsetask queue is finished
true > again
+ own



=== TEST 3: unload joins the thread a lua-resty-ffi runtime's init started
--- main_config eval
"env PYTHONPATH=$::PY;"
--- config
location = /t {
    content_by_lua_block {
        local hotffi = require "resty.hotffi"
        local rt = assert(hotffi.load("hotffi_python", "ffi.ctecho,init,j> "))
        ngx.say(rt:echo("one"))
        local base = hotffi.stats().runtimes - 1
        rt:__unload()
        rt = nil
        local gone = false
        for _ = 1, 500 do
            collectgarbage()
            if hotffi.stats().runtimes == base then
                gone = true
                break
            end
            ngx.sleep(0.01)
        end
        ngx.say(gone)
    }
}
--- request
GET /t
--- response_body
truej> one
true
