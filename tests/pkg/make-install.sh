#!/bin/sh
# tests/pkg/make-install.sh -- `make install` into a DESTDIR puts each file
# where docs/packaging.md says, the installed Java loader and isolation
# library name the installed jar and helper, the .pc file gives the
# installed header, and `make uninstall` takes every file away again.  Run
# by `make test-pkg`.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/hotffi-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest
prefix=/opt/hotffi

fail() {
    echo "not ok - $*" >&2
    exit 1
}

ok() {
    echo "ok - $*"
}

make -C "$root" -s install DESTDIR="$dest" PREFIX="$prefix" >"$tmp/log" 2>&1 \
    || { cat "$tmp/log" >&2; fail "make install"; }

# every file, and only these
(cd "$root/lua" && find . -name '*.lua' | sed "s|^\.|$prefix/share/lua/5.1|") \
    > "$tmp/want"
version=$(cat "$root/VERSION")
rust=$(sed -n 's/^version *= *"\(.*\)"/\1/p' \
       "$root/sdk/rust/hotffi/Cargo.toml" | head -n 1)
for f in "$root"/sdk/rust/hotffi/src/*.rs; do
    echo "$prefix/share/cargo/registry/hotffi-$rust/src/${f##*/}"
done >> "$tmp/want"
for f in "$root"/sdk/go/hotffi/*.go; do
    echo "$prefix/share/gocode/src/hotffi/sdk/go/hotffi/${f##*/}"
done >> "$tmp/want"
cat >> "$tmp/want" <<LIST
$prefix/lib/nginx/modules/ngx_http_hotffi_module.so
$prefix/lib/libhotffi_isolate.so
$prefix/libexec/hotffi/hotffi-isolated
$prefix/include/hotffi.h
$prefix/share/pkgconfig/hotffi.pc
$prefix/lib/libhotffi_python.so
$prefix/lib/libffi_python3.so
$prefix/lib/libhotffi_node.so
$prefix/lib/libhotffi_lua.so
$prefix/lib/libhotffi_java.so
$prefix/lib/libffi_java.so
$prefix/share/java/hotffi-$version.jar
$prefix/share/java/hotffi.jar
$prefix/share/gocode/src/hotffi/sdk/go/go.mod
$prefix/share/cargo/registry/hotffi-$rust/Cargo.toml
$prefix/share/cargo/registry/hotffi-$rust/.cargo-checksum.json
LIST
LC_ALL=C sort -o "$tmp/want" "$tmp/want"
(cd "$dest" && find . ! -type d | sed 's|^\.||' | LC_ALL=C sort) > "$tmp/got"
diff -u "$tmp/want" "$tmp/got" >&2 || fail "make install installs other files"
ok "make install puts each file in its place under PREFIX and DESTDIR"

# the aliases and the jar's plain name are links, relative, to the files
for link in lib/libffi_python3.so:libhotffi_python.so \
            lib/libffi_java.so:libhotffi_java.so \
            share/java/hotffi.jar:hotffi-$version.jar; do
    [ "$(readlink "$dest$prefix/${link%%:*}")" = "${link#*:}" ] \
        || fail "$prefix/${link%%:*} is not a link to ${link#*:}"
done
ok "the loaders' lua-resty-ffi names and hotffi.jar are links"

# the installed Java loader finds the installed jar, not the checkout's
# (its constant strings; the debug info names the build directory)
readelf -p .rodata "$dest$prefix/lib/libhotffi_java.so" > "$tmp/rodata"
grep -q "  $prefix/share/java/hotffi.jar\$" "$tmp/rodata" \
    || fail "libhotffi_java.so does not name $prefix/share/java/hotffi.jar"
if grep -q "$root" "$tmp/rodata"; then
    fail "the installed libhotffi_java.so names the checkout"
fi
ok "the installed Java loader looks for the SDK in $prefix/share/java"

# the installed isolation library starts the installed helper, not the
# checkout's (the build tree's finds build/lib/hotffi-isolated next to it)
helper=$prefix/libexec/hotffi/hotffi-isolated
[ -x "$dest$helper" ] || fail "$helper is not executable"
readelf -p .rodata "$dest$prefix/lib/libhotffi_isolate.so" > "$tmp/rodata"
grep -q "  $helper\$" "$tmp/rodata" \
    || fail "libhotffi_isolate.so does not name $helper"
if grep -q "$root" "$tmp/rodata"; then
    fail "the installed libhotffi_isolate.so names the checkout"
fi
readelf -p .rodata "$root/build/lib/libhotffi_isolate.so" > "$tmp/rodata"
if grep -q "$helper" "$tmp/rodata"; then
    fail "the build tree's libhotffi_isolate.so names $helper"
fi
ok "the installed isolation library starts $helper"

cflags=$(PKG_CONFIG_SYSROOT_DIR="$dest" \
         PKG_CONFIG_LIBDIR="$dest$prefix/share/pkgconfig" \
         pkg-config --cflags hotffi) || fail "pkg-config --cflags hotffi"
case " $cflags " in
    *" -I$dest$prefix/include "*) ;;
    *) fail "pkg-config --cflags hotffi says \"$cflags\"" ;;
esac
ok "hotffi.pc names the installed header's directory"

make -C "$root" -s uninstall DESTDIR="$dest" PREFIX="$prefix" >"$tmp/log" 2>&1 \
    || { cat "$tmp/log" >&2; fail "make uninstall"; }
left=$(cd "$dest" && find . ! -type d)
[ -z "$left" ] || fail "make uninstall leaves $left"
ok "make uninstall takes every file away"
