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
use HotffiReload;

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

is(join(' ', exported_functions("$build/librust_counter_a.so")),
   'libffi_fini libffi_init libffi_retire',
   'export_runtime!(init, retire) exports libffi_retire too');

my $lib = deploy_dir('hotffi-rust-inplace') . '/libcounter.so';

sub deploy {
    my ($which) = @_;
    deploy_file("$build/librust_counter_$which.so", $lib);
}

my $config = reload_locations(
    load => 'require("resty.hotffi").load(os.getenv("COUNTER_LIB"), nil,
                                          { unpin = true, name = "rcount" })',
    maps => 'libcounter.so');

deploy('a');
my $nginx = HotffiTest::Nginx->new(name => 'rust inplace', config => $config,
                                   env => { COUNTER_LIB => $lib });
$nginx->start;

# the story every language tells (tests/lib/HotffiReload.pm), by file
reload_story($nginx, tags => [qw(A B)],
             switch => sub { deploy('b'); return '/reload' },
             after_handover => sub {
                 is((body($nginx, '/maps'))[1], 1,
                    'unpin: build A was unmapped');
             },
             fail => sub {
                 return ('/reload?cfg=fail',
                         qr/failed: 7: told to fail by its configuration/);
             });

# ---- 20 reloads under load, alternating the two builds on disk
# (version 4 failed: the first goes from 3 to 5)
reload_under_load($nginx, reloads => 20, failed_before => 1,
                  before_each => sub {
                      my $which = $_[0] % 2 ? 'a' : 'b';
                      deploy($which);
                      return uc $which;
                  });
is((body($nginx, '/maps'))[1], 1, 'unpin: one build mapped after 20 reloads');

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
$nginx->stop;

done_testing;
