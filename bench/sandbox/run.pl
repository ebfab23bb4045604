#!/usr/bin/perl
# bench/sandbox/run.pl -- run bench/sandbox.lua in a throw-away nginx and
# print its report.  Usage: perl bench/sandbox/run.pl [query], e.g.
#   perl bench/sandbox/run.pl                  # full run, text table
#   perl bench/sandbox/run.pl 'quick=1'        # smoke run
#   perl bench/sandbox/run.pl 'format=json'    # the report as JSON
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../../tests/lib";
require HotffiTest;     # the nginx launcher only, no test plan

my $query = shift // '';
my $repo = do { no warnings "once"; $HotffiTest::REPO };
my $nginx = HotffiTest::Nginx->new(
    name   => 'sandbox bench',
    config => "location = /bench { content_by_lua_file $repo/bench/sandbox.lua; }",
);
$nginx->start;
my $res = $nginx->get("/bench?$query", { timeout => 900 });
my $ok = $res->{status} == 200;
print $ok ? $res->{content}
          : "bench failed: $res->{status} $res->{reason}\n$res->{content}\n"
            . $nginx->error_log_text;
$nginx->stop;
exit($ok ? 0 : 1);
