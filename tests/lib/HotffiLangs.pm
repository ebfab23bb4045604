package HotffiLangs;

# Every runtime language the nginx tests know, described once: which
# libraries its runtimes are, when its tests cannot run, how to load its
# echo and its ctl runtime (the test runtime steered by commands:
# sdk/go/internal/ctl, sdk/rust/ctl), and what its ctl answers where the
# languages differ.  tests/nginx/450-languages.t runs one table of cases for
# each entry; a language joins (Java, Node.js, Lua services...) by adding
# one.  A case runs for a language that has the keys it needs
# (HotffiLangs::has); the others are noted, not failed.
#
# Keys of an entry:
#   name, label       "go", "Go"
#   libs              build/lib/lib<name>.so files its runtimes need
#   skip              a sub: the reason the language's cases cannot run
#                     here (undef: they can), checked before libs
#   valgrind_supp     suppressions nginx needs under valgrind for it
#   echo              a Lua expression loading an echo runtime (rt:echo)
#   ctl               the ctl runtime's library name; it answers
#                     echo:S, fail:RC:MSG, error:MSG, nonsense (rc 3),
#                     null, empty, sleep:MS, cancelled, cfg, and
#                     log:LEVEL:N:TEXT (tests/nginx/460-log.t)
#   ctl_load, ctl_key subs of a ctl cfg (or undef): the Lua expression
#                     that loads that ctl runtime, and the runtime's key
#                     (default: load(ctl, cfg), "ctl&cfg")
#   ctl_abi           its ctl answers abi (hotffi_abi_version())
#   ctl_dict          its ctl answers dict:NAME, the shared dict scenario
#                     of 450-languages.t, through the SDK's wrapper
#   ctl_one           a ctl cfg with one handler at a time
#   errors            [Lua statement, expected line] for the language's
#                     own error cases, after the common ones
#   panic_cfg         the ctl cfg for the panic case (undef: none); the
#                     ctl fails a call with rc 2 and "panic: MSG" for
#                     panic:MSG
#   panic_more        as errors, right after the first panic
#   panic_log         what error.log says about a panic
#   cfg_shown         a cfg the ctl accepts and answers "cfg" with; the
#                     ctl answers "cfg" with nil when loaded without one,
#                     and fails libffi_init() with rc 7 for "fail-init"
#   cfg_more, cfg_log as errors and panic_log, for the configuration case

use strict;
use warnings;
use Exporter 'import';
use HotffiTest;

our @EXPORT_OK = qw(languages has ctl_load ctl_key);

my $BUILD = "$HotffiTest::REPO/build/lib";
my $PYTHON_CTL = "$HotffiTest::REPO/tests/lib/python/hotffi_ctl,init";
my $NODE_CTL = "$HotffiTest::REPO/tests/lib/node/hotffi_ctl,init";
my $LUA_CTL = "$HotffiTest::REPO/tests/lib/lua/hotffi_ctl,init";
my $JAVA_CTL = "classpath=$HotffiTest::REPO/build/java/tests,ctl.Ctl,init";

sub _no_valgrind {
    my ($label) = @_;
    return sub {
        $ENV{HOTFFI_TEST_VALGRIND}
            ? "the $label runtimes are not run under valgrind" : undef;
    };
}

# sdk/rust/rust.mk builds nothing without cargo: say so rather than fail
sub _no_cargo {
    my $cargo = grep { -x "$_/cargo" } split(/:/, $ENV{PATH} // ''),
                                       "$ENV{HOME}/.cargo/bin";
    return $cargo ? undef
                  : 'no cargo (PATH, ~/.cargo/bin): Rust runtimes not built';
}

our @LANGUAGES = (
    {
        name => 'go', label => 'Go',
        libs => [qw(go_echo go_ctl)],
        skip => _no_valgrind('Go'),
        echo => 'require("resty.hotffi").load("go_echo")',
        ctl  => 'go_ctl',
        ctl_abi => 1,
        ctl_dict => 1,
        ctl_one => 'max=1',
        errors => [
            [ 'ngx.say(rt:q("wrap:6:deep"))', 'false6wrapped: deep' ],
        ],
        panic_more => [
            [ 'ngx.say(rt:q("nilptr"))',
              'false2panic: runtime error: invalid memory address or nil '
              . 'pointer dereference' ],
        ],
        panic_log => 'hotffi: handler panic: boom',
        cfg_shown => "a b\tc",
        cfg_more => [
            [ 'ngx.say(hotffi.load("go_ctl", "max=zero"))',
              'nillibffi_init() of runtime "go_ctl&max=zero" failed: 3: '
              . 'max= needs a positive number' ],
        ],
    },
    {
        name => 'rust', label => 'Rust',
        libs => [qw(rust_echo rust_ctl)],
        skip => sub { _no_valgrind('Rust')->() // (-e "$BUILD/librust_ctl.so"
                                                     ? undef : _no_cargo()) },
        echo => 'require("resty.hotffi").load("rust_echo")',
        ctl  => 'rust_ctl',
        ctl_abi => 1,
        ctl_dict => 1,
        ctl_one => 'threads=1',
        errors => [
            [ 'ngx.say(rt:q("fail:x:y"))',
              'false1invalid digit found in string' ],
            [ 'ngx.say(rt:q("drop"))',
              'false3hotffi: task dropped without an answer' ],
        ],
        panic_cfg => 'threads=2',
        panic_log => 'panicked at',
        cfg_shown => 'threads=1',
        cfg_more => [
            [ 'ngx.say(hotffi.load("rust_ctl", "panic-init"))',
              'nillibffi_init() of runtime "rust_ctl&panic-init" failed: 2: '
              . 'panic: asked to panic by its configuration' ],
            [ 'ngx.say(hotffi.load("rust_ctl", "threads=many"))',
              'nillibffi_init() of runtime "rust_ctl&threads=many" failed: '
              . '1: invalid digit found in string' ],
            [ 'local rt, err = hotffi.load("rust_ctl", "\\255") '
              . 'ngx.say(rt, (err:gsub("\\255", "<255>")))',
              'nillibffi_init() of runtime "rust_ctl&<255>" failed: 1: '
              . 'configuration is not UTF-8' ],
            [ 'ngx.say(hotffi.load("rust_echo", "-1"))',
              'nillibffi_init() of runtime "rust_echo&-1" failed: 1: '
              . 'bad thread count "-1"' ],
        ],
        cfg_log => 'asked to panic',
    },
    {
        # the echo example, and the ctl of tests/lib/python/hotffi_ctl.py
        # (no panics: an exception is a traceback, 500-python.t; its
        # configuration is the loader's, 500-python.t too)
        name => 'python', label => 'Python',
        libs => [qw(hotffi_python)],
        skip => sub { undef },
        valgrind_supp => "$HotffiTest::REPO/loaders/python/valgrind.supp",
        echo => 'require("resty.hotffi").load("hotffi_python", "'
                . "$HotffiTest::REPO/examples/python/echo,init,2" . '")',
        ctl  => 'hotffi_python',
        ctl_load => sub {
            'require("resty.hotffi").load("hotffi_python", "'
            . "$PYTHON_CTL," . ($_[0] // '') . '")';
        },
        ctl_key => sub { "hotffi_python&$PYTHON_CTL," . ($_[0] // '') },
        ctl_one => '1',
        ctl_dict => 1,
    },
    {
        # the echo example, and the ctl of tests/lib/node/hotffi_ctl.js
        # (one event loop per version: no threads to count; errors and
        # process.exit() are 570-node.t's).  libnode is not run under
        # valgrind: V8's JIT and its platform threads drown it.
        name => 'node', label => 'Node.js',
        libs => [qw(hotffi_node)],
        skip => _no_valgrind('Node.js'),
        echo => 'require("resty.hotffi").load("hotffi_node", "'
                . "$HotffiTest::REPO/examples/node/echo,init" . '")',
        ctl  => 'hotffi_node',
        ctl_load => sub {
            'require("resty.hotffi").load("hotffi_node", "'
            . "$NODE_CTL," . ($_[0] // '') . '")';
        },
        ctl_key => sub { "hotffi_node&$NODE_CTL," . ($_[0] // '') },
        ctl_one => '1',
    },
    {
        # Lua services (loaders/lua): the ctl of tests/lib/lua/hotffi_ctl.lua
        # (no panics: an error is a traceback, 580-lua-service.t; its
        # configuration is the loader's, 580 too)
        name => 'lua', label => 'Lua service',
        libs => [qw(hotffi_lua)],
        skip => sub { undef },
        echo => 'require("resty.hotffi").load("hotffi_lua", "'
                . "$HotffiTest::REPO/tests/lib/lua/hotffi_ctl,echo,2" . '")',
        ctl  => 'hotffi_lua',
        ctl_load => sub {
            'require("resty.hotffi").load("hotffi_lua", "'
            . "$LUA_CTL," . ($_[0] // '') . '")';
        },
        ctl_key => sub { "hotffi_lua&$LUA_CTL," . ($_[0] // '') },
        ctl_one => '1',
    },
    {
        # the echo example, and the ctl of tests/lib/java/Ctl.java (no
        # panics: an exception is a stack trace, 560-java.t)
        name => 'java', label => 'Java',
        libs => [qw(hotffi_java)],
        skip => _no_valgrind('Java'),
        echo => 'require("resty.hotffi").load("hotffi_java", "'
                . "classpath=$HotffiTest::REPO/build/java/examples,"
                . 'demo.Echo,init,2")',
        ctl  => 'hotffi_java',
        ctl_load => sub {
            'require("resty.hotffi").load("hotffi_java", "'
            . "$JAVA_CTL," . ($_[0] // '') . '")';
        },
        ctl_key => sub { "hotffi_java&$JAVA_CTL," . ($_[0] // '') },
        ctl_one => '1',
    },
);

# The languages, each with its skip reason (undef when its cases run).
# A language that should run but whose libraries are missing stops the
# test run: nobody built it, which must not pass as a skip.
sub languages {
    my @out;
    for my $lang (@LANGUAGES) {
        my $reason = $lang->{skip}->();
        if (!defined $reason) {
            for my $lib (@{ $lang->{libs} }) {
                next if -e "$BUILD/lib$lib.so";
                Test::More::BAIL_OUT("build first: make ($BUILD/lib$lib.so "
                                     . 'does not exist)');
            }
        }
        push @out, { %$lang, skip_reason => $reason };
    }
    return @out;
}

# The Lua expression that loads $lang's ctl runtime with $cfg (or none).
sub ctl_load {
    my ($lang, $cfg) = @_;
    return $lang->{ctl_load}->($cfg) if $lang->{ctl_load};
    return "require(\"resty.hotffi\").load(\"$lang->{ctl}\""
           . (defined $cfg ? ", \"$cfg\"" : '') . ')';
}

# The key of $lang's ctl runtime loaded with $cfg (or none).
sub ctl_key {
    my ($lang, $cfg) = @_;
    return $lang->{ctl_key}->($cfg) if $lang->{ctl_key};
    return defined $cfg ? "$lang->{ctl}&$cfg" : $lang->{ctl};
}

# Whether $lang has every key a case needs.
sub has {
    my ($lang, @keys) = @_;
    return !grep { !defined $lang->{$_} } @keys;
}

1;
