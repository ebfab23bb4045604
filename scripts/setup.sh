#!/bin/sh
# Installs the Debian packages hotffi builds, tests and runs with.  Run as
# root (or with sudo available).  Safe to run again.
#
# luajit2 is the OpenResty branch of LuaJIT that libnginx-mod-http-lua
# links: bin/hotffi-bundle runs on it the very Lua modules nginx runs, with
# lua-socket for TCP (nginx's cosockets do not exist outside nginx).
set -eu

PACKAGES="
    build-essential ca-certificates curl perl valgrind
    nginx-core nginx-dev libnginx-mod-http-lua lua-resty-core lua-cjson
    luajit2 libluajit2-5.1-dev lua-socket
    libpcre2-dev libssl-dev zlib1g-dev libcmocka-dev
    golang-go python3 libpython3-dev python3-cffi python3-prometheus-client
    python3-venv
    default-jdk-headless
    redis-server
    wrk gnuplot-nox
    debhelper dpkg-dev lintian pkgconf luarocks lua5.1
    libnode-dev
"

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo sh "$0" "$@"
    fi
    echo "setup: run as root: it installs Debian packages with apt-get" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# Package scripts must not start nginx or Redis as system services: hotffi
# starts its own servers on 127.0.0.1 and stops them.  policy-rc.d is Debian's
# switch for that; ours is removed again whatever happens.
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    own_policy=1
fi
trap '[ -z "$own_policy" ] || rm -f "$policy"' EXIT

# Another apt (an unattended upgrade, a second set-up) may hold dpkg's lock:
# wait for it rather than fail.
apt="apt-get -o DPkg::Lock::Timeout=600"
$apt update -q

# libnode-dev (Node 18, N-API 9) depends, through node-acorn and friends, on
# Debian's `nodejs`.  Where a third-party `nodejs` of another version is
# installed, apt refuses; Debian 12's nodejs is then named with its version
# so apt replaces the third-party one, and we say so.
extra=
node_have=$(dpkg-query -W -f '${Version}' nodejs 2>/dev/null || true)
node_deb=$(apt-cache madison nodejs 2>/dev/null |
           awk -F'|' '$3 ~ /debian/ && $2 ~ /dfsg/ { gsub(/ /, "", $2); print $2; exit }')
case "$node_have" in
    ''|*dfsg*) ;;
    *)  if [ -n "$node_deb" ]; then
            echo "setup: nodejs $node_have is not Debian's; libnode-dev needs" \
                 "Debian's: installing nodejs=$node_deb in its place"
            extra="nodejs=$node_deb"
        fi ;;
esac
# shellcheck disable=SC2086
$apt install -y -q --no-install-recommends --allow-downgrades $PACKAGES $extra
