# resty.hotffi.code with the directory source: an edited file is served by
# the next request (development mode) or within `interval` seconds, without
# an nginx reload and without lua_code_cache off; staged modules see each
# other's new versions; state survives through __migrate; syntax errors,
# errors at load and replaced FFI modules are refused while the old version
# keeps serving; rollback; misuse.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP qw(decode_json);

# Workers run as "nobody" when the tests run as root: the code directory
# must be readable by them.
our $dir = tempdir('hotffi-code-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;

sub put {
    my ($rel, $text) = @_;
    my $path = "$dir/$rel";
    make_path(dirname($path), { mode => 0755 });
    open my $fh, '>', "$path.tmp" or die "cannot write $path: $!";
    print {$fh} $text;
    close $fh or die "cannot write $path: $!";
    chmod 0644, "$path.tmp";
    rename "$path.tmp", $path or die "rename $path: $!";
}

sub http_config {
    my (%o) = @_;
    my $dev = $o{dev} ? 'true' : 'false';
    my $interval = $o{interval} // 2;
    my $poll = $o{poll} // 0.1;
    return <<"CONF";
lua_shared_dict hotffi_code 4m;
init_worker_by_lua_block {
    require("resty.hotffi.code").init_worker{
        dict = "hotffi_code",
        dir = "$dir",
        dev = $dev,
        interval = $interval,
        poll = $poll,
    }
}
CONF
}

my $config = <<'CONF';
location = /t {
    content_by_lua_block {
        require("resty.hotffi.code").handler("app.api")()
    }
}
location = /count {
    content_by_lua_block {
        require("resty.hotffi.code").handler("app.counter", "hit")()
    }
}
location = /admin {
    allow 127.0.0.1;
    deny all;
    content_by_lua_block { require("resty.hotffi.code").admin{ token = false } }
}
CONF

sub api {
    my ($mark, $extra) = @_;
    $extra //= '';
    return <<"LUA";
local util = require "app.util"
$extra
local _M = {}
function _M.handler()
    ngx.say("api $mark ", util.name())
end
return _M
LUA
}

# From version 3 on, util has a function that app.api 3 and later call
# while they load.
sub util {
    my ($mark, $extra) = @_;
    $extra //= '';
    $extra .= "\nfunction _M.only_in_3() return 'ok' end" if $mark >= 3;
    return <<"LUA";
local _M = {}
function _M.name() return "util $mark" end
$extra
return _M
LUA
}

sub counter {
    my ($mark) = @_;
    return <<"LUA";
local _M = { hits = 0 }
function _M.hit()
    _M.hits = _M.hits + 1
    ngx.say("counter $mark ", ngx.worker.pid(), " ", _M.hits)
end
function _M.__migrate(old, from, to)
    _M.hits = old.hits
    _M.from = from
end
return _M
LUA
}

sub admin {
    my ($n) = @_;
    my $res = $n->get('/admin');
    die "admin: $res->{status} $res->{content}" unless $res->{status} == 200;
    return decode_json($res->{content});
}

# True when $count workers report the version that serves $mark... the
# dir source names versions by content, so the tests compare the stamp.
sub converged {
    my ($n, $count) = @_;
    my $s = admin($n);
    my @w = @{ $s->{workers} };
    return @w == $count
        && !grep { !defined $_->{version} || $_->{version} ne $s->{version} } @w;
}

sub bodies {
    my ($n, $path, $times) = @_;
    my %seen;
    for (1 .. $times) {
        my $res = $n->get($path);
        $seen{"$res->{status} $res->{content}"}++;
    }
    return join '', sort keys %seen;
}

put('app/api.lua', api(1));
put('app/util.lua', util(1));
put('app/counter.lua', counter(1));

# ---------------------------------------------------------------------------
# Development mode: every request looks at the files.
SKIP: {
    skip('needs worker processes: not under HOTFFI_TEST_VALGRIND', 1)
        if $ENV{HOTFFI_TEST_VALGRIND};
    my $n = HotffiTest::Nginx->new(name => 'dir dev', workers => 2,
                                   http_config => http_config(dev => 1),
                                   config => $config);
    $n->start;
    is(bodies($n, '/t', 6), "200 api 1 util 1\n", 'version 1 served');

    put('app/util.lua', util(2));
    is(bodies($n, '/t', 6), "200 api 1 util 2\n",
       'an edited file is served by the very next request, no reload: its'
       . ' dependant app.api was reloaded with it');

    # app.api's top-level code calls a function only util 3 has: staging
    # must hand it the staged util, not the running one.
    put('app/util.lua', util(3));
    put('app/api.lua', api(3, 'assert(util.only_in_3() == "ok")'));
    is(bodies($n, '/t', 6), "200 api 3 util 3\n",
       'modules staged together require each other\'s new versions');
    ok(wait_until(sub { converged($n, 2) }, 5, 'both workers at version 3'),
       'both workers report the same version');

    # State survives through __migrate: each worker's counter goes on.
    my %hits;
    for (1 .. 8) {
        my ($pid, $count) = $n->get('/count')->{content} =~ /^counter 1 (\d+) (\d+)$/
            or next;
        $hits{$pid} = $count;
    }
    put('app/counter.lua', counter(2));
    my $continued = 1;
    for (1 .. 8) {
        my ($pid, $count) = $n->get('/count')->{content} =~ /^counter 2 (\d+) (\d+)$/
            or do { $continued = 0; next };
        $continued = 0 if $count != ($hits{$pid} // 0) + 1;
        $hits{$pid} = $count;
    }
    ok($continued, '__migrate carried each worker\'s counter over to the'
       . ' new version') or diag explain \%hits;

    # A syntax error: refused when the source is read, version 3 serves on.
    put('app/util.lua', util(4) . "this is not lua\n");
    is(bodies($n, '/t', 4), "200 api 3 util 3\n", 'syntax error: the old version serves');
    like(admin($n)->{source}{last_refused}, qr/module "app\.util": syntax error: app\.util\@dir-\w+:\d+:/,
         'syntax error: the admin handler shows it');

    # An error at load: refused by the workers.
    put('app/util.lua', util(5, 'error("boom at load")'));
    is(bodies($n, '/t', 4), "200 api 3 util 3\n", 'error at load: the old version serves');
    my $errors = join "\n", map { $_->{error} // '' } @{ admin($n)->{workers} };
    like($errors, qr/module "app\.util": error at load: app\.util\@dir-\w+:\d+: boom at load/,
         'error at load: a worker reports it');
    like($n->error_log_text, qr/\[error\].*code version "dir-\w+" refused: dir "[^"]+", worker \d+, "dir-\w+" -> "dir-\w+" not made, still serving "dir-\w+": module "app\.util": error at load/,
         'error at load: logged');

    # Fixed: served again.
    put('app/util.lua', util(6));
    is(bodies($n, '/t', 4), "200 api 3 util 6\n", 'a fixed file is served');

    # FFI: a module that defines C types loads once, then is pinned.
    put('app/native.lua', <<'LUA');
local ffi = require "ffi"
ffi.cdef[[int hotffi_code_test_abs(int) __asm__("abs");]]
return { abs = function(x) return ffi.C.hotffi_code_test_abs(x) end }
LUA
    # This one hides its cdef from the source scan; the sandboxed ffi that
    # modules get while staging sees the call.
    put('app/sneaky.lua', <<'LUA');
local f = require("ffi")
local define = f["c" .. "def"]
define([[long hotffi_code_test_labs(long) __asm__("labs");]])
return { x = 1 }
LUA
    put('app/api.lua', api(7, 'assert(util.only_in_3() == "ok")'
                              . "\nlocal native = require 'app.native'"
                              . "\nlocal sneaky = require 'app.sneaky'"
                              . "\nassert(native.abs(-7) == 7)"));
    is(bodies($n, '/t', 4), "200 api 7 util 6\n", 'FFI modules load the first time');
    ok(wait_until(sub { converged($n, 2) }, 5, 'both workers at version 7'), 'converged');
    is_deeply([ map { join ',', @{ $_->{pinned} } } @{ admin($n)->{workers} } ],
              [ 'app.native,app.sneaky', 'app.native,app.sneaky' ],
              'both FFI modules are pinned in both workers');

    put('app/native.lua', <<'LUA');
local ffi = require "ffi"
ffi.cdef[[int hotffi_code_test_abs(int) __asm__("abs");]]
return { abs = function(x) return ffi.C.hotffi_code_test_abs(x) + 0 end }
LUA
    is(bodies($n, '/t', 4), "200 api 7 util 6\n", 'replaced FFI module: the old version serves');
    like(admin($n)->{source}{last_refused},
         qr/module "app\.native" uses FFI \(ffi\.cdef\) and cannot be hot-replaced \(its source changed\)/,
         'replaced FFI module (found in the source): refused');

    put('app/native.lua', <<'LUA');
local ffi = require "ffi"
ffi.cdef[[int hotffi_code_test_abs(int) __asm__("abs");]]
return { abs = function(x) return ffi.C.hotffi_code_test_abs(x) end }
LUA
    put('app/sneaky.lua', "local f = require('ffi')\nreturn { x = 2 }\n");
    is(bodies($n, '/t', 4), "200 api 7 util 6\n", 'replaced sneaky FFI module: the old version serves');
    like(admin($n)->{source}{last_refused},
         qr/module "app\.sneaky" uses FFI \(ffi\.cdef\) and cannot be hot-replaced/,
         'replaced FFI module (seen when it ran): refused');

    # A module that did not use FFI, whose new version hides an ffi.cdef:
    # the sandboxed ffi refuses the call while the module is staged.
    put('app/sneaky.lua', <<'LUA');
local f = require("ffi")
local define = f["c" .. "def"]
define([[long hotffi_code_test_labs(long) __asm__("labs");]])
return { x = 1 }
LUA
    put('app/late.lua', "return { late = 1 }\n");
    is(bodies($n, '/t', 4), "200 api 7 util 6\n", 'a new module is loaded');
    put('app/late.lua', <<'LUA');
local f = require("ffi")
f["c" .. "def"]([[long hotffi_code_test_llabs(long) __asm__("llabs");]])
return { late = 2 }
LUA
    is(bodies($n, '/t', 4), "200 api 7 util 6\n", 'FFI in a new version: the old version serves');
    $errors = join "\n", map { $_->{error} // '' } @{ admin($n)->{workers} };
    like($errors, qr/module "app\.late": calls ffi\.cdef while being replaced: a module that uses FFI cannot be hot-replaced/,
         'FFI in a new version (seen when it ran): refused by the workers');
    put('app/late.lua', "return { late = 1 }\n");

    # Rollback: to the version before the current one, which stays until a
    # file changes again.
    put('app/util.lua', util(8));
    is(bodies($n, '/t', 4), "200 api 7 util 8\n", 'version 8 served');
    my $res = $n->post('/admin?action=rollback', '');
    is($res->{status}, 200, 'rollback accepted') or diag $res->{content};
    is(bodies($n, '/t', 6), "200 api 7 util 6\n", 'rolled back to the previous version');
    is($n->get('/admin?action=rollback')->{status}, 405, 'actions need POST');
    put('app/util.lua', util(9));
    is(bodies($n, '/t', 4), "200 api 7 util 9\n", 'an edit after the rollback is served');

    $n->quit;
    my @errors = grep { /\[(?:error|alert|crit|emerg)\]/ } split /^/m, $n->error_log_text;
    my @unexpected = grep { !/refused/ } @errors;
    is(scalar @unexpected, 0, 'dir dev: no error but the refusals')
        or diag @unexpected;
    $n->stop;
}

# ---------------------------------------------------------------------------
# A worker that skipped versions judges FFI use as the others do: a module
# it never loaded, but the others run, is not new to it.  The workers sync
# only when a request comes (poll = 60), and each kept-alive connection
# stays with the worker that accepted it, so the test picks who skips.
SKIP: {
    skip('needs worker processes: not under HOTFFI_TEST_VALGRIND', 1)
        if $ENV{HOTFFI_TEST_VALGRIND};
    local $dir = tempdir('hotffi-code-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chmod 0755, $dir;
    put('app/api.lua', "return { handler = function() ngx.say('api 1') end }\n");
    my $n = HotffiTest::Nginx->new(name => 'dir skip', workers => 2,
                                   http_config => http_config(dev => 1, poll => 60),
                                   config => $config . <<'CONF');
location = /pid { content_by_lua_block { ngx.say(ngx.worker.pid()) } }
CONF
    $n->start;
    my %conn;                 # worker pid -> a kept-alive connection to it
    for (1 .. 200) {
        last if keys %conn == 2;
        my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 10);
        my $res = $http->get('http://127.0.0.1:' . $n->port . '/pid');
        chomp(my $pid = $res->{content});
        $conn{$pid} //= $http if $res->{status} == 200;
    }
    is(scalar keys %conn, 2, 'one connection to each worker');
    my ($x, $y) = @conn{ sort keys %conn };
    my $t = sub {
        my $res = $_[0]->get('http://127.0.0.1:' . $n->port . '/t');
        return "$res->{status} $res->{content}";
    };
    is($t->($x) . $t->($y), "200 api 1\n" x 2, 'both workers at version 1');

    put('app/late.lua', "return { late = 1 }\n");
    put('app/api.lua', "local late = require 'app.late'\n"
        . "return { handler = function() ngx.say('api 2 late ', late.late) end }\n");
    is($t->($x), "200 api 2 late 1\n", 'worker x: version 2 (app.late is new)');

    # A cdef the source scan cannot see, in a module worker x runs.
    put('app/late.lua', "local f = require('ffi')\n"
        . "f['c' .. 'def']('long hotffi_code_test_labs(long) __asm__(\"labs\");')\n"
        . "return { late = 2 }\n");
    is($t->($x), "200 api 2 late 1\n", 'worker x refuses a cdef in a new version of app.late');
    is($t->($y), "200 api 1\n",
       'worker y, which skipped version 2, refuses it too: app.late is not new');
    like(join("\n", map { $_->{error} // '' } @{ admin($n)->{workers} }),
         qr/\A(?:module "app\.late": calls ffi\.cdef while being replaced[^\n]*\n?){2}\z/,
         'both workers give the same reason');

    # A cdef the scan sees, read from the files by worker y first: refused
    # at the source, as worker x would.
    put('app/late.lua', "local ffi = require('ffi')\n"
        . "ffi.cdef('long hotffi_code_test_labs(long) __asm__(\"labs\");')\n"
        . "return { late = 3 }\n");
    is($t->($y), "200 api 1\n", 'worker y refuses a visible cdef in app.late');
    like(admin($n)->{source}{last_refused},
         qr/module "app\.late": the new version uses FFI \(ffi\.cdef\)/,
         'refused at the source with the reason');
    is($t->($x), "200 api 2 late 1\n", 'worker x serves version 2 on');

    put('app/late.lua', "return { late = 4 }\n");
    is($t->($y) . $t->($x), "200 api 2 late 4\n" x 2,
       'a version without FFI is served by both');
    $n->quit;
    my @unexpected = grep { /\[(?:error|alert|crit|emerg)\]/ && !/refused/ }
                     split /^/m, $n->error_log_text;
    is(scalar @unexpected, 0, 'dir skip: no error but the refusals')
        or diag @unexpected;
    $n->stop;
}

# ---------------------------------------------------------------------------
# Production mode: the leader reads the directory every `interval` seconds.
SKIP: {
    skip('needs worker processes: not under HOTFFI_TEST_VALGRIND', 1)
        if $ENV{HOTFFI_TEST_VALGRIND};
    put('app/api.lua', api(10));
    put('app/util.lua', util(10));
    my $n = HotffiTest::Nginx->new(name => 'dir', workers => 2,
                                   http_config => http_config(interval => 0.2),
                                   config => $config);
    $n->start;
    is(bodies($n, '/t', 4), "200 api 10 util 10\n", 'version 10 served');
    put('app/util.lua', util(11));
    ok(wait_until(sub { bodies($n, '/t', 4) eq "200 api 10 util 11\n" }, 5,
                  'util 11 served'), 'an edited file is served within the interval');
    ok(wait_until(sub { converged($n, 2) }, 5, 'both workers at util 11'),
       'both workers converged');
    $n->quit;
    unlike($n->error_log_text, qr/\[(alert|crit|emerg|error)\]/, 'dir: error log is clean');
    $n->stop;
}

put('app/api.lua', api(20));
put('app/util.lua', util(20));
unlink "$dir/app/native.lua", "$dir/app/sneaky.lua", "$dir/app/late.lua";

# the admin handler with a token from the environment (blocks 7-9)
our $token_config = <<'CONF';
location = /admin {
    content_by_lua_block {
        require("resty.hotffi.code").admin{
            token = os.getenv("CODE_ADMIN_TOKEN") }
    }
}
CONF

run_tests();

__DATA__

=== TEST 1: require() and handler() give the current version
--- http_config eval
main::http_config()
--- config
location = /t {
    content_by_lua_block {
        local code = require "resty.hotffi.code"
        ngx.say(code.require("app.util").name())
        code.handler("app.api")()
        local v, wanted = code.current_version()
        ngx.say(v == wanted, " ", v:match("^dir%-%x+$") ~= nil)
    }
}
--- request
GET /t
--- response_body
util 20
api 20 util 20
true true

=== TEST 2: misuse raises errors
--- http_config eval
main::http_config()
--- config
location = /t {
    content_by_lua_block {
        local code = require "resty.hotffi.code"
        ngx.say(pcall(code.require, 42))
        ngx.say(pcall(code.require, "app.nope"))
        ngx.say(pcall(code.handler, "app.api", 7))
        ngx.say(pcall(code.init_worker, {}))
        ngx.say(pcall(code.configure, { dict = "nope", dir = "/x" }))
        ngx.say(pcall(code.configure, { dict = "hotffi_code" }))
        ngx.say(pcall(code.configure, { dict = "hotffi_code",
                                        redis = { port = 1 } }))
        ngx.say(pcall(code.handler("app.util", "nope")))
    }
}
--- request
GET /t
--- response_body_like
^falseresty.hotffi.code.require: a module name expected
falseresty.hotffi.code: module "app.nope" is not in code version "dir-\w+"
falseresty.hotffi.code.handler: bad field name
falseresty.hotffi.code.init_worker: call it in init_worker_by_lua\*
falseresty.hotffi.code.configure: already started
falseresty.hotffi.code.configure: already started
falseresty.hotffi.code.configure: already started
falseresty.hotffi.code: module "app.util" of code version "dir-\w+" has no function "nope"
$

=== TEST 3: a module not in the version is a 500 with the reason logged
--- http_config eval
main::http_config()
--- config
location = /t {
    content_by_lua_block {
        require("resty.hotffi.code").handler("app.missing")()
    }
}
--- request
GET /t
--- error_code: 500
--- error_log
module "app.missing" is not in code version
--- no_error_log
[alert]
[crit]

=== TEST 4: the admin handler only serves content_by_lua, and reports JSON
--- http_config eval
main::http_config()
--- config
location = /admin {
    content_by_lua_block { require("resty.hotffi.code").admin{ token = false } }
}
location = /t {
    rewrite_by_lua_block {
        ngx.say(pcall(require("resty.hotffi.code").admin))
        ngx.exit(200)
    }
}
--- request
GET /t
--- response_body
falseresty.hotffi.code.admin: call it in content_by_lua*

=== TEST 5: bad options are refused with the reason
--- http_config
lua_shared_dict hotffi_code 1m;
init_by_lua_block {
    local code = require "resty.hotffi.code"
    local out = {}
    local function try(o)
        local ok, err = pcall(code.configure, o)
        out[#out + 1] = tostring(ok) .. " " .. tostring(err)
    end
    try(nil)
    try({ dict = "nope", dir = "/x" })
    try({ dict = "hotffi_code" })
    try({ dict = "hotffi_code", dir = "/x", redis = {} })
    try({ dict = "hotffi_code", redis = { port = 1 } })
    try({ dict = "hotffi_code", redis = { port = "x" }, secret = "s" })
    try({ dict = "hotffi_code", redis = {}, secret = "s", dev = true })
    try({ dict = "hotffi_code", redis = {}, secret_file = "/nonexistent" })
    try({ dict = "hotffi_code", dir = "/x", interval = -1 })
    try({ dict = "hotffi_code", dir = "/x", poll = "fast" })
    try({ dict = "hotffi_code", dir = "" })
    try({ dict = "hotffi_code", dir = "/x/" })
    package.loaded.hotffi_code_test = out
}
--- config
location = /t {
    content_by_lua_block {
        ngx.say(table.concat(package.loaded.hotffi_code_test, "\n"))
    }
}
--- request
GET /t
--- response_body
false resty.hotffi.code: an options table expected
false resty.hotffi.code: bad option dict: no lua_shared_dict "nope"
false resty.hotffi.code: give one source: dir or redis
false resty.hotffi.code: give one source: dir or redis
false resty.hotffi.code: the redis source needs a secret (options secret or secret_file)
false resty.hotffi.code: bad option redis: host (string), port, db, timeout (numbers), prefix, path, password (strings)
false resty.hotffi.code: option dev is for the dir source
false resty.hotffi.code: cannot read secret_file: /nonexistent: No such file or directory
false resty.hotffi.code: bad option interval: -1
false resty.hotffi.code: bad option poll: fast
false resty.hotffi.code: bad option dir: a path expected
true true

=== TEST 6: the admin handler with no token refuses to serve, and says what to add
--- http_config eval
main::http_config()
--- config
location = /admin {
    content_by_lua_block {
        require("resty.hotffi.code").admin{
            token = os.getenv("HOTFFI_TEST_NO_SUCH_TOKEN") }
    }
}
--- request
POST /admin?action=rollback
--- error_code: 503
--- response_body_like
^\{"ok":false,"error":"resty.hotffi.code.admin: no token configured, so it serves nobody: .*add \\"env NAME;\\" to the main context of nginx.conf.*token = false serves without authentication"\}$
--- error_log
resty.hotffi.code.admin: no token configured, so it serves nobody
--- no_error_log
[alert]
[crit]
code rolled back

=== TEST 7: the admin handler with a token: none given is a 401
--- http_config eval
main::http_config()
--- env
CODE_ADMIN_TOKEN=t0ken-from-env
--- config eval
$main::token_config
--- request
POST /admin?action=rollback
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer
--- response_body
{"ok":false,"error":"a valid bearer token is required"}
--- no_error_log
code rolled back

=== TEST 8: the admin handler with a token: a wrong one is a 401
--- http_config eval
main::http_config()
--- env
CODE_ADMIN_TOKEN=t0ken-from-env
--- config eval
$main::token_config
--- request
GET /admin
--- more_headers
Authorization: Bearer t0ken-from-env2
--- error_code: 401
--- response_body
{"ok":false,"error":"a valid bearer token is required"}

=== TEST 9: the admin handler with a token: the right one is served
--- http_config eval
main::http_config()
--- env
CODE_ADMIN_TOKEN=t0ken-from-env
--- config eval
$main::token_config
--- request
GET /admin
--- more_headers
Authorization: Bearer t0ken-from-env
--- response_body_like
^\{.*"version":"dir-\w+".*\}$

=== TEST 10: token = false serves without authentication
--- http_config eval
main::http_config()
--- config
location = /admin {
    content_by_lua_block { require("resty.hotffi.code").admin{ token = false } }
}
--- request
GET /admin
--- response_body_like
^\{.*"version":"dir-\w+".*\}$

=== TEST 11: a token that is not a string is misuse
--- http_config eval
main::http_config()
--- config
location = /admin {
    content_by_lua_block { require("resty.hotffi.code").admin{ token = 42 } }
}
--- request
GET /admin
--- error_code: 500
--- error_log
resty.hotffi.code.admin: bad token: a string, or false, expected (got number)
--- no_error_log
[alert]
[crit]

=== TEST 12: an action given twice is a bad request
--- http_config eval
main::http_config()
--- config
location = /admin {
    content_by_lua_block { require("resty.hotffi.code").admin{ token = false } }
}
--- request
POST /admin?action=check&action=rollback
--- error_code: 400
--- response_body
{"ok":false,"error":"action must be given once, with a value"}
--- no_error_log
[alert]
[crit]
code rolled back

=== TEST 13: errors have one shape, and an empty list is a JSON array
--- http_config eval
main::http_config()
--- config
location = /admin {
    content_by_lua_block { require("resty.hotffi.code").admin{ token = false } }
}
--- request
PUT /admin
--- error_code: 405
--- response_body
{"ok":false,"error":"GET, or POST with ?action="}
--- response_headers
Content-Type: application/json
Cache-Control: no-store

=== TEST 14: a worker without FFI modules reports "pinned":[]
--- http_config eval
main::http_config()
--- config
location = /admin {
    content_by_lua_block { require("resty.hotffi.code").admin{ token = false } }
}
--- request
GET /admin
--- response_body_like
"pinned":\[\]
