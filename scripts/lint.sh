#!/bin/sh
# The checks a tool can make of the house style (../shared/STYLE.md) and
# cppcheck's warnings, over the C and Lua this project writes.
set -eu
cd "$(dirname "$0")/.."

c_files=$(git ls-files -- '*.c' '*.h')
lua_files=$(git ls-files -- '*.lua')
status=0

complain() {
    echo "lint: $1" >&2
    status=1
}

for f in $c_files $lua_files; do
    awk -v f="$f" 'length > 80 { printf "%s:%d: longer than 80 columns\n", f, FNR; bad = 1 }
                   /\t/        { printf "%s:%d: tab\n", f, FNR; bad = 1 }
                   /[ \t]+$/   { printf "%s:%d: trailing white space\n", f, FNR; bad = 1 }
                   END { exit bad }' "$f" || complain "$f breaks the format"
done

for f in $c_files; do
    # every file opens with a comment saying what it is for
    head -n 1 "$f" | grep -q '^/\*' || complain "$f: no purpose comment on line 1"
done

# shellcheck disable=SC2086
cppcheck --quiet --enable=warning,portability,performance --error-exitcode=1 \
    --inline-suppr -Iinclude -Isrc/core $c_files || complain "cppcheck"

[ $status -eq 0 ] && echo "lint: ok"
exit $status
