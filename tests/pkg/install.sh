#!/bin/sh
# tests/pkg/install.sh DEB_DIR -- the Debian packages on this machine: they
# install next to Debian's nginx (replacing nothing), enable the module like
# Debian's own, and serve C, Go, Rust (where cargo exists), Python, Node.js,
# Lua and Java runtimes from the installed files alone, and a C one isolated
# in the installed helper program; then they are purged and the machine is
# as it was.
#
# Nothing of the checkout is on any path nginx sees: the configuration is
# written here into a temporary prefix, the module and the Lua library are
# the installed ones, and the only files taken from the checkout are
# examples/c/template.c, compiled with `pkg-config --cflags hotffi`; the
# other runtimes are this script's own (a C one answering its pid): Go and Rust built on the SDKs
# libhotffi-dev installs, Java compiled against the installed hotffi.jar,
# and each loader loaded by its short name.  Needs root (dpkg).  Run by
# `make test-pkg` after `make deb`.
set -eu

deb_dir=$(cd "${1:?usage: install.sh DEB_DIR}" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
pkgs="libnginx-mod-http-hotffi libhotffi-dev libhotffi-python libhotffi-node
      libhotffi-lua libhotffi-java"
enabled=/etc/nginx/modules-enabled/60-mod-http-hotffi.conf

fail() {
    echo "not ok - $*" >&2
    if [ -n "${tmp:-}" ] && [ -s "$tmp/logs/error.log" ]; then
        echo "# nginx's error.log:" >&2
        sed 's/^/# /' "$tmp/logs/error.log" >&2
    fi
    exit 1
}

ok() {
    echo "ok - $*"
}

if [ "$(id -u)" -ne 0 ]; then
    echo "1..0 # SKIP installing packages needs root"
    exit 0
fi

# never take over an installation somebody made: the purge would undo it
for p in $pkgs; do
    if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q installed; then
        fail "$p is installed already: purge it first (dpkg --purge $p)"
    fi
done

tmp=$(mktemp -d /tmp/hotffi-pkg.XXXXXX)
# the workers run as nobody: they read the runtimes here
chmod 755 "$tmp"
nginx_pid=

cleanup() {
    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid" 2>/dev/null || true
        i=0
        while kill -0 "$nginx_pid" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
    fi
    # shellcheck disable=SC2086
    dpkg --purge $pkgs >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# Debian's own configuration checks before, so that a failure after is ours
system_conf_ok=
if nginx -t -q >/dev/null 2>&1; then
    system_conf_ok=1
fi

debs=
for p in $pkgs; do
    debs="$debs $deb_dir/${p}_*.deb"
done
# shellcheck disable=SC2086
dpkg -i $debs >"$tmp/dpkg.log" 2>&1 \
    || { cat "$tmp/dpkg.log" >&2; fail "dpkg -i"; }
# shellcheck disable=SC2086
ok "dpkg -i installs the packages:" $pkgs

[ "$(readlink "$enabled")" = \
  /usr/share/nginx/modules-available/mod-http-hotffi.conf ] \
    || fail "$enabled does not link to modules-available"
ok "the module is enabled in /etc/nginx/modules-enabled, after the Lua module"

if [ -n "$system_conf_ok" ]; then
    nginx -t -q 2>"$tmp/nginx-t.log" \
        || fail "nginx -t of Debian's configuration with the module enabled"
    ok "nginx -t of Debian's own configuration loads the module"
fi

dpkg-query -W -f '${Depends}\n' libnginx-mod-http-hotffi \
    | grep -q 'nginx-abi-' || fail "no nginx-abi dependency"
ok "the module depends on the nginx ABI it was built for"

# each loader depends on the runtime library it links; the Java one on the
# JRE whose libjvm.so its run path names, which no shlibs file gives
jvm=$(readelf -d /usr/lib/*/libhotffi_java.so \
      | sed -n 's/.*runpath: \[\(.*\)\]/\1/p')
if [ -z "$jvm" ] || [ ! -f "$jvm/libjvm.so" ]; then
    fail "libhotffi_java.so's run path \"$jvm\" has no libjvm.so"
fi
jre=$(dpkg-query -S "$jvm/libjvm.so" | cut -d: -f1)
for dep in libhotffi-node:libnode libhotffi-lua:libluajit \
           "libhotffi-java:$jre"; do
    dpkg-query -W -f '${Depends}\n' "${dep%%:*}" | grep -q "${dep#*:}" \
        || fail "${dep%%:*} does not depend on ${dep#*:}"
done
ok "the loaders depend on libnode, libluajit and $jre (libjvm.so)"

# a C runtime built against the installed header alone
cp "$root/examples/c/template.c" "$tmp/"
(cd "$tmp" && cc $(pkg-config --cflags --libs hotffi) -O2 -fPIC -shared \
    -Wall -Wextra -Werror -o libtemplate.so template.c) \
    || fail "template.c does not build with pkg-config --cflags hotffi"
ok "template.c builds with \$(pkg-config --cflags --libs hotffi)"

# a C runtime that answers the pid of the process it runs in: the worker's
# in process, the helper's isolated
cat > "$tmp/pid.c" <<'EOF'
/* pid.c -- answers each call with the pid of the process it runs in */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <hotffi.h>

static pthread_t  thread;

static void *
pid_loop(void *tq)
{
    int    n;
    char  *rsp;
    void  *task;

    while ((task = ngx_http_lua_ffi_task_poll(tq)) != NULL) {
        rsp = malloc(24);
        n = (rsp != NULL) ? snprintf(rsp, 24, "%ld", (long) getpid()) : 0;
        ngx_http_lua_ffi_respond(task, rsp == NULL, rsp, n);
    }

    return NULL;
}

int
libffi_init(char *cfg, void *tq)
{
    return pthread_create(&thread, NULL, pid_loop, tq) != 0;
}

int
libffi_fini(void *tq)
{
    (void) pthread_join(thread, NULL);
    return 0;
}
EOF
(cd "$tmp" && cc $(pkg-config --cflags --libs hotffi) -O2 -fPIC -shared \
    -Wall -Wextra -Werror -Wno-unused-parameter -o libpid.so pid.c) \
    || fail "pid.c does not build with pkg-config --cflags hotffi"

# a Go runtime on the installed SDK, as docs/packaging.md tells a Go user
mkdir -p "$tmp/go"
cat > "$tmp/go/go.mod" <<'EOF'
module example.com/pkgtest

go 1.19

require hotffi/sdk/go v0.0.0

replace hotffi/sdk/go => /usr/share/gocode/src/hotffi/sdk/go
EOF
cat > "$tmp/go/main.go" <<'EOF'
package main

import "C"

import (
	"unsafe"

	"hotffi/sdk/go/hotffi"
)

//export libffi_init
func libffi_init(cfg *C.char, tq unsafe.Pointer) C.int {
	hotffi.Start(tq, &hotffi.Server{
		Handler: func(req []byte) ([]byte, error) {
			return append([]byte("go "), req...), nil
		},
	})
	return 0
}

//export libffi_fini
func libffi_fini(tq unsafe.Pointer) C.int {
	hotffi.Wait(tq)
	return 0
}

func main() {}
EOF
(cd "$tmp/go" && GOCACHE="$tmp/go/cache" GOPATH="$tmp/go/path" GOPROXY=off \
    GOFLAGS="-mod=mod -buildvcs=false" \
    go build -buildmode=c-shared -o ../libgo_pkgtest.so .) \
    || fail "a Go runtime does not build on /usr/share/gocode"
ok "a Go runtime builds on the SDK in /usr/share/gocode"

# a Rust runtime on the installed SDK, through the directory registry,
# where a cargo exists (Debian 12's is too old for the SDK's tests to
# rely on: docs/rust.md)
cargo=$(command -v cargo || true)
[ -n "$cargo" ] || [ ! -x "$HOME/.cargo/bin/cargo" ] \
    || cargo=$HOME/.cargo/bin/cargo
if [ -n "$cargo" ]; then
    mkdir -p "$tmp/rs/.cargo"
    cat > "$tmp/rs/Cargo.toml" <<'EOF'
[package]
name = "rs_pkgtest"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]
path = "lib.rs"

[dependencies]
hotffi = "0.1"
EOF
    cat > "$tmp/rs/.cargo/config.toml" <<'EOF'
[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "/usr/share/cargo/registry"
EOF
    cat > "$tmp/rs/lib.rs" <<'EOF'
use hotffi::{Error, Runtime};

fn init(_cfg: Option<&str>, rt: &mut Runtime) -> Result<(), Error> {
    rt.serve(1, |req| Ok([b"rs ".to_vec(), req.to_vec()].concat()))
}

hotffi::export_runtime!(init);
EOF
    (cd "$tmp/rs" && PATH="$(dirname "$cargo"):$PATH" \
        CARGO_TARGET_DIR="$tmp/rs/target" \
        "$cargo" build --offline --release -q) \
        || fail "a Rust runtime does not build on /usr/share/cargo/registry"
    cp "$tmp/rs/target/release/librs_pkgtest.so" "$tmp/"
    ok "a Rust runtime builds on the SDK in /usr/share/cargo/registry"
else
    echo "ok - # SKIP no cargo: the Rust SDK is not built"
fi

mkdir -p "$tmp/py" "$tmp/logs"
cat > "$tmp/py/pkgtest.py" <<'EOF'
import hotffi


def init(cfg, tq):
    hotffi.serve(tq, lambda req: b"py " + req, threads=1)
    return 0
EOF

mkdir -p "$tmp/node" "$tmp/lua" "$tmp/java/src/pkgtest" "$tmp/java/classes"
cat > "$tmp/node/pkgtest.js" <<'EOF'
'use strict';
const hotffi = require('hotffi');

exports.init = (cfg, tq) => {
    hotffi.serve(tq, (req) => 'js ' + req.toString());
    return 0;
};
EOF

cat > "$tmp/lua/pkgtest.lua" <<'EOF'
local hotffi = require "hotffi"

return {
    init = function(cfg)
        hotffi.serve(function(req) return "lua " .. (req or "") end)
    end,
}
EOF

# a Java runtime compiled against the SDK jar the package installs; the
# loader finds that jar itself (no HOTFFI_JAVA_SDK, no CLASSPATH)
cat > "$tmp/java/src/pkgtest/Echo.java" <<'EOF'
package pkgtest;

import io.hotffi.Hotffi;
import java.nio.charset.StandardCharsets;

public final class Echo {
    private Echo() {
    }

    public static int init(String cfg, long tq) {
        Hotffi.serve(tq, req -> ("java " + new String(req,
            StandardCharsets.UTF_8)).getBytes(StandardCharsets.UTF_8), 1);
        return 0;
    }
}
EOF
javac --release 17 -cp /usr/share/java/hotffi.jar -d "$tmp/java/classes" \
    "$tmp/java/src/pkgtest/Echo.java" \
    || fail "a Java runtime does not compile against /usr/share/java/hotffi.jar"
ok "a Java runtime compiles against /usr/share/java/hotffi.jar"

port=$(python3 -c 'import socket; s = socket.socket(); \
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cat > "$tmp/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
load_module /usr/lib/nginx/modules/ngx_http_hotffi_module.so;

worker_processes 1;
error_log $tmp/logs/error.log info;
pid $tmp/logs/nginx.pid;

events {
    worker_connections 64;
}

http {
    access_log off;
    client_body_temp_path $tmp/body;
    # no lua_package_path: resty.hotffi is found in Debian's default one

    server {
        listen 127.0.0.1:$port;

        location = /c {
            content_by_lua_block {
                local rt = assert(require("resty.hotffi").load(
                    "$tmp/libtemplate.so", "2"))
                local ok, res, err = rt:greet(ngx.var.arg_msg, 10)
                ngx.say(tostring(ok), " ", tostring(res), " ", tostring(err))
            }
        }

        # in place: template.c's libffi_retire() hands its count over
        location = /c-reload {
            content_by_lua_block {
                local rt = assert(require("resty.hotffi").load(
                    "$tmp/libtemplate.so", "2"))
                local res, err = rt:__reload()
                ngx.say(res and tostring(res.ok) or "nil", " ", tostring(err))
            }
        }

        # the same runtime in process and isolated (another cfg: another
        # runtime), each answering its pid, next to the worker's
        location = /pid {
            content_by_lua_block {
                local iso = ngx.var.arg_isolate == "1"
                local rt = assert(require("resty.hotffi").load(
                    "$tmp/libpid.so", iso and "isolated" or "in process",
                    { isolate = iso }))
                local ok, res, err = rt:pid("", 10)
                ngx.say(tostring(ok), " ", tostring(res), " ", tostring(err),
                        " ", ngx.worker.pid())
            }
        }

        location = /go {
            content_by_lua_block {
                local rt = assert(require("resty.hotffi").load(
                    "$tmp/libgo_pkgtest.so"))
                local ok, res, err = rt:greet(ngx.var.arg_msg, 10)
                ngx.say(tostring(ok), " ", tostring(res), " ", tostring(err))
            }
        }

        location = /rs {
            content_by_lua_block {
                local rt = assert(require("resty.hotffi").load(
                    "$tmp/librs_pkgtest.so"))
                local ok, res, err = rt:greet(ngx.var.arg_msg, 10)
                ngx.say(tostring(ok), " ", tostring(res), " ", tostring(err))
            }
        }

        location = /py {
            content_by_lua_block {
                -- by short name: the loader is in the linker's path
                local rt = assert(require("resty.hotffi").load(
                    "hotffi_python", "$tmp/py/pkgtest,init"))
                local ok, res, err = rt:greet(ngx.var.arg_msg, 10)
                ngx.say(tostring(ok), " ", tostring(res), " ", tostring(err))
            }
        }

        # the loaders below by short name too; Node.js and the JVM start
        # on the first load (init_timeout: 60 s), and their first call is
        # given as long on a busy machine
        location = /js {
            content_by_lua_block {
                local rt = assert(require("resty.hotffi").load(
                    "hotffi_node", "$tmp/node/pkgtest,init"))
                local ok, res, err = rt:greet(ngx.var.arg_msg, 60)
                ngx.say(tostring(ok), " ", tostring(res), " ", tostring(err))
            }
        }

        location = /lua {
            content_by_lua_block {
                local rt = assert(require("resty.hotffi").load(
                    "hotffi_lua", "$tmp/lua/pkgtest,init"))
                local ok, res, err = rt:greet(ngx.var.arg_msg, 10)
                ngx.say(tostring(ok), " ", tostring(res), " ", tostring(err))
            }
        }

        location = /java {
            content_by_lua_block {
                local rt = assert(require("resty.hotffi").load(
                    "hotffi_java",
                    "classpath=$tmp/java/classes,pkgtest.Echo,init"))
                local ok, res, err = rt:greet(ngx.var.arg_msg, 60)
                ngx.say(tostring(ok), " ", tostring(res), " ", tostring(err))
            }
        }
    }
}
EOF

if grep -q "$root" "$tmp/nginx.conf"; then
    fail "the configuration names the checkout"
fi

nginx -p "$tmp" -c "$tmp/nginx.conf" -g 'daemon on; master_process on;' \
    || { cat "$tmp/logs/error.log" >&2; fail "nginx does not start"; }

i=0
while [ ! -s "$tmp/logs/nginx.pid" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
nginx_pid=$(cat "$tmp/logs/nginx.pid") || fail "nginx wrote no pid file"
ok "nginx starts with the installed module and Lua library"

get() {
    curl -sS --max-time 90 "http://127.0.0.1:$port$1"
}

body=$(get '/c?msg=hello') || fail "GET /c"
[ "$body" = "true 1 hello nil" ] || fail "GET /c answered \"$body\""
body=$(get '/c?msg=again') || fail "GET /c"
[ "$body" = "true 2 again nil" ] || fail "GET /c answered \"$body\""
ok "the C runtime answers"

body=$(get '/c-reload') || fail "GET /c-reload"
[ "$body" = "true nil" ] || fail "GET /c-reload answered \"$body\""
body=$(get '/c?msg=after') || fail "GET /c"
[ "$body" = "true 3 after nil" ] || fail "after the reload /c answered \"$body\""
ok "the C runtime reloads in place, its count handed over"

body=$(get '/pid') || fail "GET /pid"
# shellcheck disable=SC2086
set -- $body
[ "$1 $3" = "true nil" ] && [ "$2" = "$4" ] \
    || fail "GET /pid answered \"$body\", not the worker's pid"
ok "the C runtime in process answers the worker's pid"

# isolated: the runtime runs in the installed helper, whose parent (the
# nanny, docs/isolation.md) is the worker's child
helper=/usr/libexec/hotffi/hotffi-isolated
body=$(get '/pid?isolate=1') || fail "GET /pid?isolate=1"
# shellcheck disable=SC2086
set -- $body
[ "$1 $3" = "true nil" ] && [ "$2" != "$4" ] \
    || fail "GET /pid?isolate=1 answered \"$body\", not another pid"
exe=$(readlink "/proc/$2/exe") \
    || fail "the isolated runtime's process $2 is gone"
[ "$exe" = "$helper" ] || fail "the isolated runtime runs in $exe, not $helper"
nanny=$(awk '{ print $4 }' "/proc/$2/stat")
[ "$(awk '{ print $4 }' "/proc/$nanny/stat")" = "$4" ] \
    || fail "the helper $2 is not under the worker $4"
body=$(get '/pid?isolate=1') || fail "GET /pid?isolate=1"
[ "${body%% *}" = true ] || fail "GET /pid?isolate=1 answered \"$body\""
ok "the C runtime isolated answers from $helper, under the worker"

body=$(get '/go?msg=hello') || fail "GET /go"
[ "$body" = "true go hello nil" ] || fail "GET /go answered \"$body\""
ok "the Go runtime answers"

if [ -n "$cargo" ]; then
    body=$(get '/rs?msg=hello') || fail "GET /rs"
    [ "$body" = "true rs hello nil" ] || fail "GET /rs answered \"$body\""
    ok "the Rust runtime answers"
fi

body=$(get '/py?msg=hello') || fail "GET /py"
[ "$body" = "true py hello nil" ] || fail "GET /py answered \"$body\""
ok "the Python runtime answers, loaded by short name"

for lang in js:Node.js lua:Lua java:Java; do
    l=${lang%%:*}
    body=$(get "/$l?msg=hello") || fail "GET /$l"
    [ "$body" = "true $l hello nil" ] || fail "GET /$l answered \"$body\""
    ok "the ${lang#*:} runtime answers, loaded by short name"
done

if grep -E '\[(alert|crit|emerg|error)\]' "$tmp/logs/error.log" >&2; then
    fail "errors in nginx's log"
fi
ok "no error in nginx's log"

kill -QUIT "$nginx_pid"
i=0
while kill -0 "$nginx_pid" 2>/dev/null && [ $i -lt 200 ]; do
    sleep 0.1
    i=$((i + 1))
done
kill -0 "$nginx_pid" 2>/dev/null && fail "nginx does not quit"
nginx_pid=

# shellcheck disable=SC2086
dpkg --purge $pkgs >"$tmp/dpkg.log" 2>&1 \
    || { cat "$tmp/dpkg.log" >&2; fail "dpkg --purge"; }
for p in $pkgs; do
    if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q installed; then
        fail "$p is still installed"
    fi
done
for f in "$enabled" /usr/lib/nginx/modules/ngx_http_hotffi_module.so \
         /usr/lib/*/libhotffi_isolate.so /usr/libexec/hotffi \
         /usr/share/lua/5.1/resty/hotffi.lua /usr/include/hotffi.h \
         /usr/lib/*/libhotffi_node.so /usr/lib/*/libhotffi_lua.so \
         /usr/lib/*/libhotffi_java.so /usr/lib/*/libffi_java.so \
         /usr/share/java/hotffi.jar; do
    if [ -e "$f" ] || [ -L "$f" ]; then
        fail "$f is left after the purge"
    fi
done
ok "dpkg --purge leaves nothing behind"
