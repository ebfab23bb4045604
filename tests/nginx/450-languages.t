# What every runtime language must do, written once and run for each
# language of tests/lib/HotffiLangs.pm (Go, Rust, and Python where its
# loader offers the same case: the echo example and
# tests/lib/python/hotffi_ctl.py): echo round trips, with and without a
# request; errors with their rc; panics; a caller giving up; configuration
# and a failing libffi_init(); unload; many callers at once; nginx reload
# and quit under load.  The in-place reload story is
# HotffiReload::reload_story(), told by 430, 440 and 530.  What only one language does stays in its own file
# (400-go.t, 410-rust.t, 500-python.t...).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use HotffiScenarios;
use HotffiLangs;

# One "=== " block in the __DATA__ format of HotffiTest.pm.
sub block {
    my ($title, @sections) = @_;
    my $text = "=== $title\n";
    while (my ($name, $value) = splice @sections, 0, 2) {
        next unless defined $value;
        $text .= "--- $name\n$value\n";
    }
    return "$text\n";
}

sub lines { return join '', map { "$_\n" } @_ }

# The Lua statements and the expected lines of [statement, line] pairs.
sub statements { return join "\n", map { "        $_->[0]" } @{ $_[0] // [] } }
sub answers    { return map { $_->[1] } @{ $_[0] // [] } }

sub ctl { return HotffiLangs::ctl_load(@_) }

sub location {
    my ($lua) = @_;
    return "location = /t {\n    content_by_lua_block {\n$lua\n    }\n}";
}

# Each case: the keys it needs, and the block it makes for a language.
my @CASES = (
    [ ['echo'] => sub {
        my ($l) = @_;
        block("$l->{label}: echo: strings, NUL bytes, empty, 1 MiB, no request",
            http_config => $HotffiScenarios::LUA,
            config => location("        echo_round_trips(assert($l->{echo}))"),
            request => 'GET /t',
            response_body => lines('truehello', 'true true 7', 'true []',
                                   'true 1048576 true', 'true [] true []'));
    } ],
    [ ['echo'] => sub {
        my ($l) = @_;
        block("$l->{label}: a binary request body round-trips through the echo",
            config => location(<<"LUA"),
        ngx.req.read_body()
        local rt = assert($l->{echo})
        local ok, res = rt:echo(ngx.req.get_body_data())
        ngx.print(res)
LUA
            request => 'POST /t',
            'request_body eval' => q{join '', map { chr($_ % 256) } 0 .. 300000},
            'response_body eval' => q{join '', map { chr($_ % 256) } 0 .. 300000});
    } ],
    [ ['ctl'] => sub {
        my ($l) = @_;
        my $rt = ctl($l);
        block("$l->{label}: errors fail the call with their rc and message",
            config => location(<<"LUA" . statements($l->{errors})),
        local rt = assert($rt)
        ngx.say(rt:q("fail:5:bad input"))
        ngx.say(rt:q("error:plain"))
        ngx.say(rt:q("nonsense"))
        ngx.say(rt:q("null"))
        local ok, res = rt:q("empty")
        ngx.say(ok, " [", res, "]")
        -- no request: the handler sees an empty one, no command
        ngx.say(rt:q())
@{[ $l->{ctl_abi} ? '        ngx.say(rt:q("abi"))' : '' ]}
LUA
            request => 'GET /t',
            response_body => lines('false5bad input', 'false1plain',
                                   'false3unknown command', 'truenil',
                                   'true []', 'false3unknown command',
                                   $l->{ctl_abi} ? 'true2' : (),
                                   answers($l->{errors})));
    } ],
    [ [qw(ctl panic_log)] => sub {
        my ($l) = @_;
        my $rt = ctl($l, $l->{panic_cfg});
        my $more = statements($l->{panic_more});
        block("$l->{label}: a panicking handler fails its call; the runtime goes on serving",
            config => location(<<"LUA"),
        local rt = assert($rt)
        ngx.say(rt:q("panic:boom"))
$more
        local threads = {}
        for i = 1, 20 do
            threads[i] = ngx.thread.spawn(function()
                return rt:q(i % 2 == 0 and "panic:again" or "echo:" .. i)
            end)
        end
        local panics, echoes = 0, 0
        for i = 1, 20 do
            local _, ok, res, err = ngx.thread.wait(threads[i])
            if not ok and res == 2 and err == "panic: again" then
                panics = panics + 1
            elseif ok and res == tostring(i) then
                echoes = echoes + 1
            end
        end
        ngx.say(panics, " ", echoes)
        ngx.say(rt:q("echo:still here"))
LUA
            request => 'GET /t',
            response_body => lines('false2panic: boom',
                                   answers($l->{panic_more}), '10 10',
                                   'truestill here'),
            error_log => $l->{panic_log});
    } ],
    [ ['ctl'] => sub {
        my ($l) = @_;
        block("$l->{label}: a caller that gives up cancels the handler",
            http_config => $HotffiScenarios::LUA,
            config => location('        gives_up(assert(' . ctl($l) . '))'),
            request => 'GET /t',
            response_body => lines('falseniltimeout', 'cancelled 1'));
    } ],
    [ [qw(ctl cfg_shown)] => sub {
        my ($l) = @_;
        my $shown = $l->{cfg_shown} =~ s/\t/\\t/gr;
        block("$l->{label}: configuration, and a failing libffi_init() with its reason",
            config => location(<<"LUA" . statements($l->{cfg_more})),
        local hotffi = require "resty.hotffi"
        ngx.say(select(2, assert(hotffi.load("$l->{ctl}")):q("cfg")))
        ngx.say(select(2, assert(hotffi.load("$l->{ctl}", "$shown")):q("cfg")))
        ngx.say(hotffi.load("$l->{ctl}", "fail-init"))
LUA
            request => 'GET /t',
            response_body => lines('<nil>', $l->{cfg_shown},
                "nillibffi_init() of runtime \"$l->{ctl}&fail-init\" failed: "
                . '7: asked to fail by its configuration',
                answers($l->{cfg_more})),
            error_log => $l->{cfg_log});
    } ],
    [ [qw(ctl ctl_one)] => sub {
        my ($l) = @_;
        block("$l->{label}: unload: queued calls are answered, later ones refused, the runtime retires",
            http_config => $HotffiScenarios::LUA,
            config => location(<<"LUA"),
        unload_answers(function()
            return @{[ ctl($l, $l->{ctl_one}) ]}
        end)
LUA
            request => 'GET /t',
            response_body => lines('5',
                'falsenilruntime "' . HotffiLangs::ctl_key($l, $l->{ctl_one})
                . '" is unloaded',
                'runtimes 0', 'trueagain'));
    } ],
    [ [qw(ctl ctl_dict)] => sub {
        my ($l) = @_;
        block("$l->{label}: shared dicts: the SDK reads and writes what Lua sees, types, flags, expiry, add/replace/incr/ttl",
            http_config => 'lua_shared_dict d 1m;',
            config => location(<<"LUA"),
        local rt = assert(@{[ ctl($l) ]})
        local d = ngx.shared.d
        d:set("s", "hello", 0, 7)
        d:set("n", 3.25)
        d:set("t", true)
        d:set("f", false, 0, 1)
        d:set("old", "gone", 0.05)
        ngx.sleep(0.2)
        local ok, res = rt:q("dict:d")
        ngx.say(ok, " ", res)
        ngx.say(d:get("rs"), " ", select(2, d:get("rs")), " ", d:get("rn"),
                " ", tostring(d:get("rb")), " ", d:get("new"), " ",
                d:get("c"), " ", tostring(d:get("n")), " ",
                tostring(d:get("absent")))
LUA
            request => 'GET /t',
            response_body => lines('true nope=missing stale=gone/0/true '
                . 's=hello/7 n=3.25/0 t=true/0 f=false/1 none=nil/0 '
                . 'old=nil/0 add-s=false add-new=true '
                . 'replace-absent=false replace-new=true incr-c=12 '
                . 'incr-c=11.5 incr-absent=notfound ttl-e=ok ttl-rs=0 '
                . 'ttl-absent=none',
                'from-rt 9 -12.5 false y 11.5 nil nil'));
    } ],
);

for my $lang (HotffiLangs::languages()) {
    subtest $lang->{label} => sub {
        plan(skip_all => $lang->{skip_reason}) if $lang->{skip_reason};
        local $ENV{HOTFFI_TEST_VALGRIND_SUPP} =
            $ENV{HOTFFI_TEST_VALGRIND_SUPP} // $lang->{valgrind_supp};

        my $blocks = '';
        for my $case (@CASES) {
            my ($needs, $make) = @$case;
            if (HotffiLangs::has($lang, @$needs)) {
                $blocks .= $make->($lang);
            } else {
                note("$lang->{label}: no @$needs, a case left out");
            }
        }
        run_blocks($blocks);

        # many callers at once over two workers; nginx reload and quit
        # under load (workers: not under valgrind's one process)
        if ($ENV{HOTFFI_TEST_VALGRIND}) {
            note("$lang->{label}: the scenarios need worker processes");
        } else {
            HotffiScenarios::concurrent_echo($lang->{name}, $lang->{echo})
                if HotffiLangs::has($lang, 'echo');
            HotffiScenarios::reload_and_quit($lang->{name}, ctl($lang))
                if HotffiLangs::has($lang, 'ctl');
        }
        done_testing();
    };
}

done_testing();
