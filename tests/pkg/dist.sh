#!/bin/sh
# tests/pkg/dist.sh DIST_DIR -- what `make dist-lua` made for LuaRocks and
# opm holds lua/ exactly: the tarball's lib/, the rockspec's modules and
# what `luarocks make` installs are each the same list of files as lua/,
# with the same bytes, and the library's version is the one in VERSION.
# Run by `make test-pkg`; needs luarocks (make setup).
set -eu

dist=$(cd "${1:?usage: dist.sh DIST_DIR}" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
version=$(cat "$root/VERSION")
pkg=lua-resty-hotffi-$version
tmp=$(mktemp -d /tmp/hotffi-dist.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "not ok - $*" >&2
    exit 1
}

ok() {
    echo "ok - $*"
}

# the same files, one per line, sorted, under a directory
list() {
    (cd "$1" && find . -type f -name '*.lua' | sed 's|^\./||' | LC_ALL=C sort)
}

list "$root/lua" > "$tmp/want"
[ -s "$tmp/want" ] || fail "no Lua file in lua/"

# the library says the version VERSION says (opm takes it from there)
lua5.1 - "$root/lua/resty/hotffi.lua" "$version" <<'EOF' \
    || fail "lua/resty/hotffi.lua's version is not VERSION's $version"
local src = assert(io.open(arg[1])):read("*a")
local v = src:match('local _M = { version = "([^"]+)" }')
if v ~= arg[2] then
    io.stderr:write("resty.hotffi says ", tostring(v), "\n")
    os.exit(1)
end
EOF
ok "resty.hotffi's version is $version, as in VERSION"

# the tarball: opm's layout, lib/ is lua/
mkdir "$tmp/tar"
tar -xzf "$dist/$pkg.tar.gz" -C "$tmp/tar" || fail "cannot unpack $pkg.tar.gz"
list "$tmp/tar/$pkg/lib" > "$tmp/got"
diff -u "$tmp/want" "$tmp/got" >&2 || fail "the tarball's lib/ is not lua/"
diff -r "$root/lua" "$tmp/tar/$pkg/lib" >&2 \
    || fail "the tarball's files differ from lua/'s"
[ -f "$tmp/tar/$pkg/dist.ini" ] || fail "no dist.ini in the tarball"
grep -q '^main_module = lib/resty/hotffi.lua$' "$tmp/tar/$pkg/dist.ini" \
    || fail "dist.ini's main_module is not lib/resty/hotffi.lua"
ok "the tarball's lib/ holds exactly lua/'s files"

# the rockspec: one module per file of lua/, named after its path
rockspec=$dist/$pkg-1.rockspec
lua5.1 - "$rockspec" > "$tmp/got" <<'EOF' \
    || fail "the rockspec's modules are not named after their files"
local env = {}
local f = assert(loadfile(arg[1]))
setfenv(f, env)()
local files = {}
for name, file in pairs(env.build.modules) do
    local want = "lib/" .. name:gsub("%.", "/") .. ".lua"
    if file ~= want then
        io.stderr:write(name, " is ", file, ", not ", want, "\n")
        os.exit(1)
    end
    files[#files + 1] = file:sub(5)
end
table.sort(files)
print(table.concat(files, "\n"))
EOF
diff -u "$tmp/want" "$tmp/got" >&2 || fail "the rockspec's modules are not lua/"
ok "the rockspec lists exactly lua/'s files"

luarocks lint "$rockspec" >&2 || fail "luarocks lint $rockspec"
ok "luarocks lint accepts the rockspec"

# what a LuaRocks user gets: luarocks make in the unpacked tarball
(cd "$tmp/tar/$pkg" && luarocks make --tree "$tmp/tree" "$rockspec") \
    > "$tmp/luarocks.log" 2>&1 \
    || { cat "$tmp/luarocks.log" >&2; fail "luarocks make"; }
list "$tmp/tree/share/lua/5.1" > "$tmp/got"
diff -u "$tmp/want" "$tmp/got" >&2 || fail "luarocks installs other files"
diff -r "$root/lua" "$tmp/tree/share/lua/5.1" >&2 \
    || fail "luarocks installs other bytes"
ok "luarocks make installs exactly lua/'s files"
