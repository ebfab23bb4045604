#!/bin/sh
# The demo: starts nginx with examples/nginx.conf on a free 127.0.0.1 port,
# calls each location, shows the answers and stops nginx again.
# With --foreground, nginx keeps running until Ctrl-C instead.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
nginx=${HOTFFI_NGINX:-/usr/sbin/nginx}
prefix=$(mktemp -d "${TMPDIR:-/tmp}/hotffi-demo.XXXXXX")
port=$(perl -MIO::Socket::INET -e \
    'print IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0")->sockport')

mkdir -p "$prefix/logs" "$prefix/conf" "$prefix/lib"
# the counter is deployed to a path of its own, to be replaced and reloaded;
# workers (user nobody when run as root) must be able to read it
cp "$root/build/lib/libcounter.so" "$prefix/lib/libcounter.so"
chmod 755 "$prefix" "$prefix/lib"
# a virtualenv of the demo's own, with a package the system does not have,
# for the Python runtime of /py/greet
python3 -m venv --without-pip "$prefix/venv"
site=$(echo "$prefix"/venv/lib/python3*/site-packages)
mkdir -p "$site/greeting"
echo '__version__ = "2.0"' > "$site/greeting/__init__.py"
chmod -R a+rX "$prefix/venv"
sed -e "s|@ROOT@|$root|g" -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" \
    "$root/examples/nginx.conf" > "$prefix/conf/nginx.conf"

# the admin handler's bearer token (nginx.conf passes it on with "env")
HOTFFI_ADMIN_TOKEN=${HOTFFI_ADMIN_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
export HOTFFI_ADMIN_TOKEN

# the runtimes are found by short name ("echo" -> libecho.so) through it
export LD_LIBRARY_PATH="$root/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

if [ "${1:-}" = "--foreground" ]; then
    echo "hotffi demo on http://127.0.0.1:$port/ (echo, js, py/greet," \
         "lua/hash, java, digest, limit, count, hotffi, stats);" \
         "Ctrl-C stops it"
    echo "admin: curl -H 'Authorization: Bearer $HOTFFI_ADMIN_TOKEN'" \
         "http://127.0.0.1:$port/hotffi"
    exec "$nginx" -p "$prefix/" -c conf/nginx.conf -e logs/error.log
fi

"$nginx" -p "$prefix/" -c conf/nginx.conf -e logs/error.log &
pid=$!
trap 'kill -QUIT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$prefix"' EXIT

url="http://127.0.0.1:$port"
tries=0
until curl -s -o /dev/null "$url/stats"; do
    tries=$((tries + 1))
    if [ $tries -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
        echo "demo: nginx did not start:" >&2
        cat "$prefix/logs/error.log" >&2
        exit 1
    fi
    sleep 0.05
done

show() {
    printf '$ %s\n' "$*"
    curl -s --max-time 10 "$@"
}

show "$url/echo?msg=hello"
# a Node.js runtime (libhotffi_node.so, examples/node/echo.js)
js=$(curl -s --max-time 15 "$url/js?msg=hello-from-node")
printf '$ %s\n%s\n' "$url/js?msg=hello-from-node" "$js"
if [ "$js" != "hello-from-node" ]; then
    echo "demo: the Node.js runtime did not answer" >&2
    exit 1
fi
show --data-binary 'hello, hotffi' "$url/digest"
printf '%s' 'hello, hotffi' | sha256sum | sed 's/ .*/  (sha256sum, for comparison)/'
show "$url/stats"

# a rate limit shared by Lua and a runtime: hits alternate between them,
# one budget of 5 per key; the sixth, whoever serves it, is refused
for by in lua runtime lua runtime lua; do
    show "$url/limit?key=alice&by=$by"
done
sixth=$(curl -s --max-time 10 -w ' %{http_code}' "$url/limit?key=alice&by=runtime")
printf '$ %s\n%s\n' "$url/limit?key=alice&by=runtime" "$sixth"
case $sixth in
    "runtime limited 6/5"*" 429") ;;
    *) echo "demo: the runtime did not see Lua's hits on the shared limit" >&2
       exit 1 ;;
esac
# a Lua service (examples/lua/hash.lua): SHA-256 through LuaJIT's FFI
lua_hash=$(curl -s --max-time 10 --data-binary 'hello, hotffi' "$url/lua/hash")
printf '$ %s\n%s\n' "curl --data-binary 'hello, hotffi' $url/lua/hash" \
    "$lua_hash"
want=$(printf '%s' 'hello, hotffi' | sha256sum | sed 's/ .*//')
if [ "$lua_hash" != "sha256 $want" ]; then
    echo "demo: the Lua service's hash is not sha256sum's" >&2
    exit 1
fi
# a Python runtime in its own sub-interpreter, with the demo's virtualenv
# (examples/python/greet.py); it logs each call into nginx's error log
py=$(curl -s --max-time 15 "$url/py/greet?msg=hello-from-a-venv")
printf '$ %s
%s
' "$url/py/greet?msg=hello-from-a-venv" "$py"
if [ "$py" != "greeting 2.0: hello-from-a-venv" ]; then
    echo "demo: the Python runtime did not see its virtualenv" >&2
    exit 1
fi
printf '$ %s
' "grep 'greeting 2.0 greets' logs/error.log"
tries=0
until grep "greeting 2.0 greets 'hello-from-a-venv'" "$prefix/logs/error.log"
do
    tries=$((tries + 1))
    if [ $tries -gt 100 ]; then
        echo "demo: the Python runtime's log line is not in error.log" >&2
        exit 1
    fi
    sleep 0.05
done
# a Java runtime (the worker's JVM starts on its first call)
java=$(curl -s --max-time 60 "$url/java?msg=hello-from-java")
printf '$ %s\n%s\n' "$url/java?msg=hello-from-java" "$java"
if [ "$java" != "hello-from-java" ]; then
    echo "demo: the Java runtime did not answer" >&2
    exit 1
fi

# in-place reload: deploy build b over the library, reload every worker
show "$url/count"
show "$url/count"
cp "$root/build/lib/libcounter_b.so" "$prefix/lib/libcounter.so.new"
mv "$prefix/lib/libcounter.so.new" "$prefix/lib/libcounter.so"
show -X POST -H "Authorization: Bearer $HOTFFI_ADMIN_TOKEN" \
    "$url/hotffi?runtime=counter"
after=$(curl -s --max-time 10 "$url/count")
printf '$ %s\n%s\n' "$url/count" "$after"
case $after in
    "b "*) ;;
    *) echo "demo: the reload did not switch the counter to build b" >&2
       exit 1 ;;
esac

# the audit trail: one line per worker for the reload, in error.log
printf '$ %s\n' "grep 'hotffi: audit: reload' logs/error.log"
if ! grep 'hotffi: audit: reload ok runtime="counter"' \
        "$prefix/logs/error.log"; then
    echo "demo: no audit line for the reload in error.log" >&2
    exit 1
fi

# the metrics endpoint, for Prometheus: a few of its lines
printf '$ %s\n' "curl -H 'Authorization: Bearer ...' $url/metrics | grep ..."
metrics=$(curl -s --max-time 10 \
    -H "Authorization: Bearer $HOTFFI_ADMIN_TOKEN" "$url/metrics")
printf '%s\n' "$metrics" |
    grep -E '^hotffi_(calls_total\{.*outcome="ok"|reloads_total|runtime_version)\{?' |
    grep 'runtime="counter"'
case $metrics in
    *'hotffi_reloads_total{runtime="counter",worker="0",result="ok"} 1'*) ;;
    *) echo "demo: /metrics does not count the counter's reload" >&2
       exit 1 ;;
esac

if grep -E '\[(alert|crit|emerg|error)\]' "$prefix/logs/error.log"; then
    echo "demo: errors in the nginx log (above)" >&2
    exit 1
fi
echo "demo: ok"
