#!/usr/bin/perl
# bench/reload/run.pl -- what an in-place reload costs the calls around it.
#
# One nginx worker serves /count, one call of the counter runtime
# (examples/c/counter.c) per request, under wrk.  Each repetition runs wrk
# twice for the same time: once with nothing else happening (outside), once
# while this script deploys the other build of the library (rename over the
# path) and reloads it (rt:__reload with state, unpin) every --every
# seconds (during).  Reported: p50, p99 and max latency of both, the ratio
# of the p99s (the blip), how long reloads took (from rt:__reload's own
# figure), and any failed request -- there must be none.  Everything runs
# on 127.0.0.1 and is stopped at the end.
#
#   perl bench/reload/run.pl [--seconds 4] [--reps 3] [--every 0.1]
#                            [--connections 16]
#
# Exit status: 0, or 1 if a request or a reload failed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../tests/lib", "$FindBin::Bin/../lib";
use Getopt::Long;
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);
use HotffiTest ();
use BenchUtil qw(median wrk_command wrk_parse relative_paths);

my %opt = (seconds => 4, reps => 3, every => 0.1, connections => 16);
GetOptions(\%opt, 'seconds=f', 'reps=i', 'every=f', 'connections=i')
    or die "usage: $0 [--seconds S] [--reps N] [--every S] [--connections N]\n";

my $build = "$HotffiTest::REPO/build/lib";
die "build first: make\n" unless -e "$build/libcounter_b.so";

my $dir = tempdir('hotffi-bench-reload-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
my $lib = "$dir/libcounter.so";
my $deployed = 'a';

sub deploy {
    my ($which) = @_;
    my $from = $which eq 'a' ? "$build/libcounter.so" : "$build/libcounter_b.so";
    copy($from, "$lib.new") or die "copy: $!";
    rename "$lib.new", $lib or die "rename: $!";
    $deployed = $which;
}

my $config = <<'CONF';
location = /count {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load(
            os.getenv("COUNTER_LIB"), nil, { unpin = true, name = "counter" }))
        local ok, res = rt:count("x")
        if not ok then
            return ngx.exit(500)
        end
        ngx.print(res)
    }
}
location = /reload {
    content_by_lua_block {
        local rt = require("resty.hotffi").get("counter")
        local res, err = rt:__reload()
        if not res then
            ngx.status = 500
            return ngx.say(err)
        end
        ngx.print(res.seconds)
    }
}
CONF

deploy('a');
my $nginx = HotffiTest::Nginx->new(name => 'bench-reload', config => $config,
                                   log_level => 'warn',
                                   env => { COUNTER_LIB => $lib });
$nginx->start;
my @errors;

sub start_wrk {
    my ($out) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $out or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT;
        exec(wrk_command($opt{connections}, $opt{seconds},
                         'http://127.0.0.1:' . $nginx->port . '/count'))
            or POSIX::_exit(127);
    }
    return $pid;
}

sub wrk_result {
    my ($pid, $out) = @_;
    waitpid $pid, 0;
    my $text = HotffiTest::_slurp($out);
    my $r = wrk_parse($text);
    push @errors, "wrk: $r->{non2xx} non-2xx answers" if $r->{non2xx};
    push @errors, "wrk: socket errors: $r->{errors}" if $r->{errors};
    push @errors, "wrk failed: $text"
        unless defined $r->{rps} && defined $r->{p99};
    return $r;
}

my $out = $nginx->prefix . '/logs/wrk.out';
my (@outside, @during, @reload_s, $reloads);

# warm up: the first load, the JIT, the connections
wrk_result(start_wrk($out), $out);

for my $rep (1 .. $opt{reps}) {
    push @outside, wrk_result(start_wrk($out), $out);

    my $pid = start_wrk($out);
    my $end = time + $opt{seconds} - 0.2;
    while (time < $end) {
        deploy($deployed eq 'a' ? 'b' : 'a');
        my $res = $nginx->get('/reload');
        if ($res->{status} == 200) {
            push @reload_s, $res->{content};
            $reloads++;
        } else {
            push @errors, "reload failed: $res->{content}";
        }
        sleep $opt{every};
    }
    push @during, wrk_result($pid, $out);
    printf STDERR "reload bench rep %d: p99 outside %.0f us, during %.0f us\n",
        $rep, $outside[-1]{p99} // -1, $during[-1]{p99} // -1;
}

$nginx->stop;

my %sum;
for my $set ([outside => \@outside], [during => \@during]) {
    my ($name, $runs) = @$set;
    $sum{$name} = { map { my $k = $_; ($k => median(map { $_->{$k} } @$runs)) }
                    qw(rps p50 p99 max) };
}
my @ratios = map { $outside[$_]{p99} && $during[$_]{p99}
                   ? $during[$_]{p99} / $outside[$_]{p99} : undef } 0 .. $#during;
my $ratio = median(@ratios);
my @rs = sort { $a <=> $b } @reload_s;

print "\nIn-place reload under load: wrk -t1 -c$opt{connections} "
    . "-d$opt{seconds}s on one worker, one counter call per request;\n"
    . "during: a reload (other build renamed over the path, state handed "
    . "over, unpin) every $opt{every} s; medians of $opt{reps} repetitions\n";
printf "  %-10s %10s %10s %10s %10s\n", '', 'req/s', 'p50 us', 'p99 us', 'max us';
for my $name (qw(outside during)) {
    printf "  %-10s %10.0f %10.0f %10.0f %10.0f\n", $name,
        map { $sum{$name}{$_} // -1 } qw(rps p50 p99 max);
}
printf "  p99 during / outside: %.2f\n", $ratio // -1;
printf "  %d reloads, each %.2f ms median, %.2f ms max (rt:__reload's own figure)\n",
    $reloads // 0, (median(@rs) // 0) * 1e3, ($rs[-1] // 0) * 1e3;
print "  failed requests or reloads: ", (@errors ? scalar @errors : 'none'), "\n";
print "  $_\n" for @errors[0 .. ($#errors < 9 ? $#errors : 9)];

my $results = $ENV{BENCH_RESULTS} || "$HotffiTest::REPO/bench/results";
if (-d $results) {
    my $json = JSON::PP->new->canonical->pretty;
    # a quick run's figures mean nothing: keep them apart
    my $file = $ENV{BENCH_QUICK} ? 'reload-quick.json' : 'reload.json';
    open my $fh, '>', "$results/$file" or die "cannot write: $!";
    # paths (in error messages) relative to the checkout
    print {$fh} $json->encode(relative_paths({
        options => \%opt, outside => \@outside, during => \@during,
        summary => \%sum, p99_ratio => $ratio, reloads => $reloads,
        reload_seconds => \@reload_s, errors => \@errors,
    }, $HotffiTest::REPO));
    close $fh;
}

exit(@errors ? 1 : 0);
