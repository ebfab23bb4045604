package HotffiReload;

# Helpers for the in-place reload tests (rt:__reload), written once for
# every runtime language: the nginx locations they share (/count, /reload,
# /stats, /maps), a deployment by rename, and N reloads under load with the
# checks every such test makes.  Core Perl only, like HotffiTest.pm.

use strict;
use warnings;
use Exporter 'import';
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use Test::More;
use Time::HiRes ();
use HotffiTest;

our @EXPORT = qw(reload_locations body stats deploy_dir deploy_file
                 deploy_text exported_functions reload_story
                 reload_under_load audit_lines file_id);

# How many answers a failure shows.
my $DIAG_MAX = 5;


# The config text of the locations a reload test talks to.  $opt{load} is
# a Lua expression that loads the runtime (or finds it loaded, by name):
#   GET /count[?req=R]   one call, $opt{call} (default rt:count(R or "x")),
#                        answered "<tag> <count>", or 500 "failed: ..."
#   GET /reload[?state=0][&cfg=C][&lib=L][&retire_timeout=S]
#                        rt:__reload, answered "ok <from> <to>[ overdue]", or 500
#                        "error: <why>"; $opt{reload_args}, Lua code that
#                        sets the locals lib and cfg, replaces the plain
#                        use of L and C
#   GET /stats           "version=V reloads=R failures=F inflight=I
#                        queued=Q failed=X ok=K last_ok=B" (see stats())
#   GET /maps            with $opt{maps}: how many executable mappings of
#                        a file of that name the worker has (unpin)
sub reload_locations {
    my (%opt) = @_;
    my $load = $opt{load} // die "reload_locations: no load\n";
    my $call = $opt{call} // 'rt:count(ngx.var.arg_req or "x")';
    my $args = $opt{reload_args}
        // 'local lib, cfg = ngx.var.arg_lib, ngx.var.arg_cfg';
    $args =~ s/\n+\z//;
    $args =~ s/^(?=.)/        /mg;
    my $config = <<"CONF";
location = /count {
    content_by_lua_block {
        local rt = assert($load)
        local ok, res, err = $call
        if not ok then
            ngx.status = 500
            ngx.say("failed: ", tostring(res), " ", tostring(err))
            return
        end
        ngx.say(res)
    }
}
location = /reload {
    content_by_lua_block {
        local rt = assert($load)
$args
        local res, err = rt:__reload{
            state = ngx.var.arg_state ~= "0", lib = lib, cfg = cfg,
            retire_timeout = tonumber(ngx.var.arg_retire_timeout),
        }
        if not res then
            ngx.status = 500
            ngx.say("error: ", err)
            return
        end
        ngx.say("ok ", res.from, " ", res.to, res.overdue and " overdue" or "")
    }
}
location = /stats {
    content_by_lua_block {
        local s = assert($load):__stats()
        local last = s.last_reload or {}
        ngx.say("version=", s.version, " reloads=", s.reloads,
                " failures=", s.reload_failures, " inflight=", s.inflight,
                " queued=", s.queued, " failed=", s.failed, " ok=", s.ok,
                " last_ok=", tostring(last.ok))
    }
}
CONF
    $config .= <<"CONF" if defined $opt{maps};
location = /maps {
    content_by_lua_block {
        local n = 0
        for line in io.lines("/proc/self/maps") do
            if line:find("$opt{maps}", 1, true) and line:find("r-xp") then
                n = n + 1
            end
        end
        ngx.say(n)
    }
}
CONF
    return $config;
}


# GET $path: its status and its body without the last newline.
sub body {
    my ($nginx, $path) = @_;
    my $r = $nginx->get($path);
    chomp(my $b = $r->{content});
    return ($r->{status}, $b);
}


# /stats as a hash (version, reloads, failures, inflight, queued, failed,
# ok, last_ok); empty if it did not answer in that form.
sub stats {
    my ($nginx) = @_;
    my ($status, $text) = body($nginx, '/stats');
    return () unless $status == 200;
    return map { split /=/, $_, 2 } split / /, $text;
}


# The audit lines of $nginx's error.log (docs/reload.md#the-audit-trail)
# written since byte $from, as [level, event, result, {field => value},
# pid of the line's prefix].
sub audit_lines {
    my ($nginx, $from) = @_;
    my @lines;
    for (split /\n/, substr($nginx->error_log_text, $from // 0)) {
        my ($level, $pid, $event, $result, $rest) =
            /\[(\w+)\] (\d+)#\d+: (?:\*\d+ )?hotffi: audit: (\S+) (\S+) (.*?)(?:, client: .*)?$/
            or next;
        # error="..." is last and runs to the end: it may quote names
        my $error = $rest =~ s/ error="(.*)"$//s ? $1 : undef;
        my %f = $rest =~ /(\w+)=("[^"]*"|\S+)/g;
        s/^"(.*)"$/$1/s for values %f;
        $f{error} = $error if defined $error;
        push @lines, [ $level, $event, $result, \%f, $pid ];
    }
    return @lines;
}


# dev=major:minor ino=N of a file, as the audit line writes them
sub file_id {
    my @st = stat $_[0] or die "stat $_[0]: $!";
    my $d = $st[0];
    return (sprintf('%d:%d', ($d >> 8 & 0xfff) | ($d >> 32 & ~0xfff),
                    ($d & 0xff) | ($d >> 12 & ~0xff)), $st[1]);
}


# A directory to deploy into, removed at exit; $mode (default 0755) lets
# the workers reach it when the tests run as root.
sub deploy_dir {
    my ($name, $mode) = @_;
    my $dir = tempdir("$name-XXXXXX", TMPDIR => 1, CLEANUP => 1);
    chmod $mode // 0755, $dir;
    return $dir;
}


# Puts a copy of $from, or $text, at $path as an installer does: written
# beside it, then renamed over it, so that a load never sees half a file.
sub deploy_file {
    my ($from, $path) = @_;
    copy($from, "$path.new") or die "copy $from: $!";
    rename "$path.new", $path or die "rename to $path: $!";
}

sub deploy_text {
    my ($text, $path) = @_;
    open my $fh, '>', "$path.new" or die "cannot write $path.new: $!";
    print {$fh} $text;
    close $fh or die "cannot write $path.new: $!";
    rename "$path.new", $path or die "cannot rename to $path: $!";
}


# The functions a shared library exports, sorted.
sub exported_functions {
    my ($so) = @_;
    my $syms = `nm -D --defined-only $so`;
    die "nm -D $so failed\n" if $?;
    return sort map { (split)[2] } grep { / T / } split /\n/, $syms;
}


# The story every in-place reload test tells first, whatever the
# language, on a fresh nginx whose /count answers "<tag> <count>" (version
# 1 serving, tag $opt{tags}[0]): the count goes up; a reload into the
# second build (tag $opt{tags}[1]; $opt{switch}->() deploys it and returns
# its reload path) hands the count over; a reload without state restarts
# it; a reload into a version whose init fails ($opt{fail}->() prepares
# it and returns its path and a regex of init's message) rolls back to
# version 3 with its count.  $opt{after_handover}->(): the language's own
# checks right after the hand-over.  Ends with version 3 serving, version
# 4 failed, the count at 3.
sub reload_story {
    my ($nginx, %opt) = @_;
    my ($first, $second) = @{ $opt{tags} };
    is_deeply([ body($nginx, '/count') ], [ 200, "$first 1" ],
              "first call: $first");
    is_deeply([ body($nginx, '/count') ], [ 200, "$first 2" ],
              'the count goes up');
    is_deeply([ body($nginx, $opt{switch}->()) ], [ 200, 'ok 1 2' ],
              "reload into $second");
    is_deeply([ body($nginx, '/count') ], [ 200, "$second 3" ],
              "$second answers, with the count $first handed over");
    $opt{after_handover}->() if $opt{after_handover};
    is_deeply([ body($nginx, '/reload?state=0') ], [ 200, 'ok 2 3' ],
              'reload without hand-over');
    is_deeply([ body($nginx, '/count') ], [ 200, "$second 1" ],
              'the count restarted');
    is_deeply([ body($nginx, '/count') ], [ 200, "$second 2" ],
              'and goes up');
    my ($path, $error) = $opt{fail}->();
    my ($status, $text) = body($nginx, $path);
    is($status, 500, 'a new version whose init fails fails the reload');
    like($text, qr/$error; version 3 serves again$/s,
         'with init\'s own message; version 3 serves again');
    is_deeply([ body($nginx, '/count') ], [ 200, "$second 3" ],
              'the old version serves again, its count handed back');
}


# N reloads while K clients call /count, then the checks every reload
# test makes; returns { answers => [[status, body], ...], base, n, stats }
# for the test's own checks.  Options:
#   reloads       N (required)
#   clients       K (default 4)
#   before_each   sub ($i): deploys the i-th new version, returns its tag
#                 (what its answers start with) and the path of its
#                 reload (default /reload)
#   refuse        { at => $i, before => sub, path => '/reload',
#                   error => qr// }: before the i-th reload, one that must
#                 fail with that error and roll back
#   failed_before versions that failed reloads took since the last reload
#                 that worked (default 0): the first reload skips them
#   answered_by   at least this many of the tags answered (default: all)
#   pause         seconds between reloads (default 0.01)
# Checked: every reload went from the version the last one started to the
# next number (each followed by a call of the loop's own), no call
# failed, every answer is "<tag> <count>" of the
# version before or a deployed one, every count was handed out once and
# they go on from before (base+1 .. base+n), the last version answers,
# counting on, and the stats say N more reloads, no call lost or failed.
sub reload_under_load {
    my ($nginx, %opt) = @_;
    my $reloads = $opt{reloads} // die "reload_under_load: no reloads\n";
    my $refuse = $opt{refuse};
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    my ($tag, $base) = (body($nginx, '/count'))[1] =~ /^(\S+) (\d+)$/
        or die "reload_under_load: /count does not answer \"<tag> <n>\"\n";
    my %before = stats($nginx);
    my %tags = ($tag => 1);
    my ($prev, $next) = ($before{version},
                         $before{version} + 1 + ($opt{failed_before} // 0));
    my ($ok, $refused, @bad) = (0, 0);
    my @own;

    my $clients = start_clients($nginx, $opt{clients} // 4, '/count');
    for my $i (1 .. $reloads) {
        if ($refuse && $i == $refuse->{at}) {
            $refuse->{before}->() if $refuse->{before};
            my ($st, $tx) = body($nginx, $refuse->{path} // '/reload');
            if ($st == 500 && $tx =~ $refuse->{error}
                && $tx =~ /; version $prev serves again$/)
            {
                $refused++;
            } else {
                push @bad, "refused $i: $st $tx";
            }
            $next++;
        }
        ($tag, my $path) = $opt{before_each}->($i);
        $tags{$tag} = 1;
        my ($st, $tx) = body($nginx, $path // '/reload');
        if ($st == 200 && $tx eq "ok $prev $next") {
            $ok++;
        } else {
            push @bad, "reload $i: $st $tx (expected ok $prev $next)";
        }
        ($prev, $next) = ($tx =~ /^ok \d+ (\d+)$/ ? $1 : $prev, $next + 1);
        # one call of our own: every version deployed answers at least
        # once by construction, not by the clients' timing
        push @own, [ body($nginx, '/count') ];
        Time::HiRes::sleep($opt{pause} // 0.01);
    }
    my @answers = (stop_clients($clients), @own);
    my %after = stats($nginx);

    is($ok, $reloads, "$reloads reloads under load, each from the version "
                      . 'the last one started to the next')
        or diag(explain(\@bad));
    is($refused, 1, 'and a refused one among them was rolled back')
        if $refuse;
    my @failed = grep { $_->[0] != 200 } @answers;
    is(scalar @failed, 0, "no call failed across $reloads reloads")
        or diag(explain([ @failed[0 .. _last(@failed)] ]));
    my $n = @answers;
    ok($n > $reloads, "the clients made $n calls meanwhile");

    my @odd = grep { $_->[1] !~ /^(\S+) \d+$/ || !$tags{$1} } @answers;
    is(scalar @odd, 0, 'every answer is "<tag> <count>" of a version '
                       . 'deployed')
        or diag(explain([ @odd[0 .. _last(@odd)] ]));
    my (%seen, %answered);
    for (@answers) {
        my ($t, $c) = $_->[1] =~ /^(\S+) (\d+)$/ or next;
        $seen{$c}++;
        $answered{$t} = 1;
    }
    is(scalar(grep { $seen{$_} > 1 } keys %seen), 0,
       'no count was handed out twice');
    my ($min, $max) = (sort { $a <=> $b } keys %seen)[0, -1];
    is($min, $base + 1, 'the count went on from before the reloads');
    is($max, $base + $n, 'and never restarted: every call counted once');
    my $want = $opt{answered_by} // keys %tags;
    ok(keys %answered >= $want,
       ($opt{answered_by} ? "at least $want versions answered: "
                          : 'every version deployed answered: ')
       . join(' ', sort keys %answered));

    is_deeply([ body($nginx, '/count') ], [ 200, "$tag " . ($base + $n + 1) ],
              'the last version deployed answers, counting on');
    my @keys = qw(version reloads failures inflight queued failed ok);
    is_deeply({ map { $_ => $after{$_} } @keys },
              { version  => $prev,
                reloads  => $before{reloads} + $reloads,
                failures => $before{failures} + ($refuse ? 1 : 0),
                inflight => 0,
                queued   => 0,
                failed   => $before{failed},
                ok       => $before{ok} + $n },
              "stats after: $reloads more reloads, each call answered once, "
              . 'none failed or left');

    return { answers => \@answers, base => $base, n => $n,
             stats => \%after };
}


sub _last { return $#_ < $DIAG_MAX - 1 ? $#_ : $DIAG_MAX - 1 }


1;
