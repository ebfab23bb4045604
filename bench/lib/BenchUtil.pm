package BenchUtil;

# What the bench scripts share: the median of repetitions, running wrk
# and reading its report, and results free of this machine's paths
# (bench/run.pl, bench/reload/run.pl, bench/code_reload/run.pl).

use strict;
use warnings;
use Exporter 'import';

our @EXPORT_OK = qw(median wrk_command wrk_parse relative_paths);


# The median of the defined values, or undef when there are none.
sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return undef unless @v;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}


# A copy of $data (nested hashes, arrays and strings) with every
# "$root/" in its strings removed: results name files relative to the
# checkout, so that they compare across machines and say nothing about
# where the checkout lived.
sub relative_paths {
    my ($data, $root) = @_;
    my $prefix = $root =~ s{/*\z}{/}r;
    my $walk;
    $walk = sub {
        my ($v) = @_;
        return { map { $_ => $walk->($v->{$_}) } keys %$v } if ref $v eq 'HASH';
        return [ map { $walk->($_) } @$v ] if ref $v eq 'ARRAY';
        return $v if ref $v || !defined $v;
        return $v =~ s{\Q$prefix\E}{}gr;
    };
    my $copy = $walk->($data);
    undef $walk;   # the closure refers to itself
    return $copy;
}


# One wrk thread, $connections connections for $seconds, the latency
# distribution on (p50, p99), a 10 s request timeout.
sub wrk_command {
    my ($connections, $seconds, $url) = @_;
    return ('wrk', '-t1', "-c$connections", "-d${seconds}s", '--latency',
            '--timeout', '10s', $url);
}


sub _to_us {
    my ($v, $unit) = @_;
    return $v * { us => 1, ms => 1e3, s => 1e6 }->{$unit};
}


# wrk's report -> { rps, requests, p50, p99, max (in us), non2xx (a count), errors
# (wrk's socket errors line, or undef) }; a figure wrk did not print is
# undef.
sub wrk_parse {
    my ($text) = @_;
    my %r;
    ($r{rps}) = $text =~ /^Requests\/sec:\s+([\d.]+)/m;
    $r{rps} += 0 if defined $r{rps};
    ($r{requests}) = $text =~ /^\s+(\d+) requests in /m;
    for my $p (50, 99) {
        my ($v, $u) = $text =~ /^\s+$p%\s+([\d.]+)(us|ms|s)\s*$/m;
        $r{"p$p"} = defined $v ? _to_us($v, $u) : undef;
    }
    my ($mv, $mu) = $text =~ /^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/m;
    $r{max} = defined $mv ? _to_us($mv, $mu) : undef;
    ($r{non2xx}) = $text =~ /Non-2xx or 3xx responses:\s+(\d+)/;
    $r{non2xx} //= 0;
    ($r{errors}) = $text =~ /Socket errors:\s+(.*)$/m;
    return \%r;
}

1;
