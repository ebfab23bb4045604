# In-place reload of a Rust runtime built with the SDK (rt:__reload): the
# counter example (examples/rust/counter) hands its count over with
# Runtime::on_retire and takes it back with Runtime::state.  Two builds of
# the library are renamed in turn over one file, with unpin: 20 reloads
# under load lose no call and never reset the count; a new version whose
# init fails is rolled back with its count.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);

plan(skip_all => 'the Rust runtimes are not run under valgrind')
    if $ENV{HOTFFI_TEST_VALGRIND};

my $build = "$HotffiTest::REPO/build/lib";
for my $name (qw(rust_counter_a rust_counter_b)) {
    next if -e "$build/lib$name.so";
    my $cargo = grep { -x "$_/cargo" } split(/:/, $ENV{PATH} // ''),
                                       "$ENV{HOME}/.cargo/bin";
    plan(skip_all => 'no cargo (PATH, ~/.cargo/bin): Rust runtimes not built')
        unless $cargo;
    BAIL_OUT("build first: make ($build/lib$name.so does not exist)");
}

{
    my $syms = `nm -D --defined-only $build/librust_counter_a.so`;
    is(join(' ', sort map { (split)[2] } grep { / T / } split /\n/, $syms),
       'libffi_fini libffi_init libffi_retire',
       'export_runtime!(init, retire) exports libffi_retire too');
}

my $dir = tempdir('hotffi-rust-inplace-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
my $lib = "$dir/libcounter.so";

sub deploy {
    my ($which) = @_;
    copy("$build/librust_counter_$which.so", "$lib.new") or die "copy: $!";
    rename "$lib.new", $lib or die "rename: $!";
}

my $config = <<'CONF';
location = /count {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load(
            os.getenv("COUNTER_LIB"), nil, { unpin = true, name = "rcount" }))
        local ok, res, err = rt:count("x")
        if not ok then
            ngx.status = 500
            ngx.say("failed: ", tostring(res), " ", tostring(err))
            return
        end
        ngx.say(res)
    }
}
# GET /reload[?state=0][&cfg=C]
location = /reload {
    content_by_lua_block {
        local rt = require("resty.hotffi").get("rcount")
        local res, err = rt:__reload{ state = ngx.var.arg_state ~= "0",
                                      cfg = ngx.var.arg_cfg }
        if not res then
            ngx.status = 500
            ngx.say("error: ", err)
            return
        end
        ngx.say("ok ", res.from, " ", res.to)
    }
}
location = /maps {
    content_by_lua_block {
        local n = 0
        for line in io.lines("/proc/self/maps") do
            if line:find("libcounter.so", 1, true) and line:find("r-xp") then
                n = n + 1
            end
        end
        ngx.say(n)
    }
}
CONF

sub body {
    my ($nginx, $path) = @_;
    my $r = $nginx->get($path);
    chomp(my $b = $r->{content});
    return ($r->{status}, $b);
}

deploy('a');
my $nginx = HotffiTest::Nginx->new(name => 'rust inplace', config => $config,
                                   env => { COUNTER_LIB => $lib });
$nginx->start;

is_deeply([ body($nginx, '/count') ], [ 200, 'A 1' ], 'first call: build A');
is_deeply([ body($nginx, '/count') ], [ 200, 'A 2' ], 'the count goes up');
deploy('b');
is_deeply([ body($nginx, '/reload') ], [ 200, 'ok 1 2' ], 'reload into B');
is_deeply([ body($nginx, '/count') ], [ 200, 'B 3' ],
          'build B answers, with the count A handed over');
is((body($nginx, '/maps'))[1], 1, 'unpin: build A was unmapped');

is_deeply([ body($nginx, '/reload?state=0') ], [ 200, 'ok 2 3' ],
          'reload without hand-over');
is_deeply([ body($nginx, '/count') ], [ 200, 'B 1' ], 'the count restarted');

my ($status, $text) = body($nginx, '/reload?cfg=fail');
is($status, 500, 'a new version whose init fails fails the reload');
like($text, qr/failed: 7: told to fail by its configuration; version 3 serves again$/,
     'with init\'s own message');
is_deeply([ body($nginx, '/count') ], [ 200, 'B 2' ],
          'the old version serves again, its count handed back');

# ---- 20 reloads under load, alternating the two builds on disk
{
    my ($s0, $b0) = body($nginx, '/count');
    my ($base) = $b0 =~ / (\d+)$/;
    my $clients = start_clients($nginx, 4, '/count');
    # version 4 was the one that failed: the first goes from 3 to 5
    my ($ok, $which, $prev) = (0, 'b', 3);
    for my $i (1 .. 20) {
        $which = $which eq 'a' ? 'b' : 'a';
        deploy($which);
        my ($st, $tx) = body($nginx, '/reload');
        if ($st == 200 && $tx =~ /^ok (\d+) (\d+)$/ && $1 == $prev
            && $2 > $1)
        {
            $ok++;
            $prev = $2;
        }
        sleep 0.01;
    }
    my @answers = stop_clients($clients);
    is($ok, 20, '20 reloads, each from the version the last one started');
    my @failed = grep { $_->[0] != 200 } @answers;
    is(scalar @failed, 0, 'no call failed across 20 reloads')
        or diag(explain([ @failed[0 .. ($#failed < 4 ? $#failed : 4)] ]));
    my $n = @answers;
    ok($n > 20, "the clients made $n calls meanwhile");
    my %seen;
    my @counts = map { $_->[1] =~ /^[AB] (\d+)$/ ? $1 : -1 } @answers;
    $seen{$_}++ for @counts;
    is(scalar(grep { $seen{$_} > 1 } keys %seen), 0, 'no count was handed out twice');
    my ($min, $max) = (sort { $a <=> $b } @counts)[0, -1];
    is($min, $base + 1, 'the count went on from before the reloads');
    is($max, $base + $n, 'and never restarted: every call counted once');
    ok((grep { /^A / } map { $_->[1] } @answers)
       && (grep { /^B / } map { $_->[1] } @answers), 'both builds answered');
    is_deeply([ body($nginx, '/count') ],
              [ 200, uc($which) . ' ' . ($base + $n + 1) ],
              'the last build deployed answers, counting on');
    is((body($nginx, '/maps'))[1], 1, 'unpin: one build mapped after 20 reloads');
}

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
$nginx->stop;

done_testing;
