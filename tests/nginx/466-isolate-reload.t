# In-place reload of isolated runtimes (docs/isolation.md, "Restart
# policy"): the same story as in process (tests/lib/HotffiReload.pm), the
# state crossing from the retiring helper to the next one.  A Python
# counter edited on disk: its count goes on, a version that does not
# compile rolls back with its count.  The C counter: 20 reloads between
# two builds under load, no call failed, every count handed out once.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use HotffiReload;

my $build = "$HotffiTest::REPO/build/lib";
BAIL_OUT("build first: make ($build/hotffi-isolated does not exist)")
    unless -e "$build/hotffi-isolated" && -e "$build/libhotffi_python.so";

my $dir = deploy_dir('hotffi-iso-reload', 0777);
my $lib = "$dir/libcounter.so";

sub counter_py {
    my ($tag) = @_;
    deploy_text(<<"PY", "$dir/counter.py");
import threading
import hotffi

lock = threading.Lock()
count = 0


def handle(req):
    global count
    with lock:
        count += 1
        return "$tag %d" % count


def init(cfg, tq):
    global count
    state = hotffi.state(tq)
    count = int(state) if state is not None else 0
    hotffi.serve(tq, handle, threads=2)
    return 0


def retire(tq):
    return str(count)
PY
}

sub deploy { deploy_file("$build/libcounter" . ($_[0] eq 'a' ? '' : '_b') . '.so', $lib) }

# /count and /reload for the Python runtime; /c/count and /c/reload for
# the C one (reload_locations() gives one set per server)
my $py = reload_locations(
    load => 'require("resty.hotffi").load("hotffi_python",
                 os.getenv("PY_DIR") .. "/counter?,init,",
                 { name = "pycount", isolate = true })');
my $c = reload_locations(
    load => 'require("resty.hotffi").load(os.getenv("COUNTER_LIB"), nil,
                 { name = "ccount", isolate = true })');

counter_py('v1');
deploy('a');
my %env = (PY_DIR => $dir, COUNTER_LIB => $lib);

# ---- Python, isolated: the story every language tells
{
    my $nginx = HotffiTest::Nginx->new(name => 'isolated python reload',
                                       config => $py, env => \%env);
    $nginx->start;
    reload_story($nginx, tags => [qw(v1 v2)],
                 switch => sub { counter_py('v2'); return '/reload' },
                 # a rollback starts the old module in a new process, from
                 # disk: the new version fails by its cfg, not by a file
                 # that would break the old one too (docs/isolation.md)
                 fail => sub {
                     return ('/reload?cfg=' . "$dir/nosuch?,init,",
                             qr/No module named 'nosuch'/);
                 });
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/,
           'python: no alert in the error log');
    $nginx->stop;
}

# ---- C, isolated: reloads under load lose nothing
{
    my $nginx = HotffiTest::Nginx->new(name => 'isolated c reload',
                                       config => $c, env => \%env);
    $nginx->start;
    my $r = reload_under_load($nginx, reloads => 20, before_each => sub {
        my $which = $_[0] % 2 ? 'b' : 'a';
        deploy($which);
        return $which;
    });
    is($r->{stats}{failed}, 0, 'c: no failed call');
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/,
           'c: no alert in the error log');
    $nginx->stop;
}

done_testing;
