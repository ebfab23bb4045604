#!/bin/sh
# The checks a tool can make of the house style -- 80 columns, no tabs, no
# trailing white space, a purpose comment atop every C file, the core's
# layers pointing down, no path of the machine committed -- and cppcheck's
# warnings, over the C and Lua this project writes.
set -eu
cd "$(dirname "$0")/.."

c_files=$(git ls-files -- '*.c' '*.h' '*.cc' '*.hh')
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

# Layers point down (the DESIGN block of src/core/hotffi_core.h): a core
# file includes its own header and those of the layers below its own only.
# The order, bottom first, is written here once.
core_layers="core list metrics err zonelock env elf library sched spin poller port queue \
task logbuf hub direct version audit runtime call abi"

# shellcheck disable=SC2086
perl -e '
    my @layers = split " ", shift @ARGV;
    my %rank;
    @rank{@layers} = (0 .. $#layers);
    my $bad = 0;

    for my $f (@ARGV) {
        my ($unit) = $f =~ m{hotffi_(\w+)\.[ch]$} or next;

        if (!exists $rank{$unit}) {
            print "$f: hotffi_$unit is in no layer (scripts/lint.sh)\n";
            $bad = 1;
            next;
        }

        open(my $fh, "<", $f) or die "$f: $!\n";

        while (<$fh>) {
            next unless /^\s*#\s*include\s+"hotffi_(\w+)\.h"/;
            my $h = $1;
            next if $h eq $unit;

            if (!exists $rank{$h} || $rank{$h} >= $rank{$unit}) {
                print "$f:$.: includes hotffi_$h.h, but layer \"$h\" is ",
                      "not below \"$unit\" (bottom first: @layers)\n";
                $bad = 1;
            }
        }
    }

    exit $bad;
' "$core_layers" src/core/*.c src/core/*.h >&2 || complain "the core's layers"

# Nothing committed names a directory of the machine it was written on:
# tests and docs reach the tree through its root variable.
if git grep -nI -e '/work/' -e '/root/' -e '/home/' -- . ':!scripts/lint.sh' >&2
then
    complain "a path of this machine is committed"
fi

# shellcheck disable=SC2086
cppcheck --quiet --enable=warning,portability,performance --error-exitcode=1 \
    --inline-suppr -Iinclude -Isrc/core $c_files || complain "cppcheck"

[ $status -eq 0 ] && echo "lint: ok"
exit $status
