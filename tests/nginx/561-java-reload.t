# The Java loader's lifecycle: "Class?" re-reading a changed class under
# load with no failed call, old class loaders collected over many reloads,
# the worker answering while its JVM starts, JVM options with quoted
# spaces, nginx's signals kept off the runtime's threads, and `nginx -s
# reload` / `nginx -s quit` with a running JVM (no JVM crash log).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use File::Temp qw(tempdir);
use POSIX ();

if ($ENV{HOTFFI_TEST_VALGRIND}) {
    Test::More::plan(skip_all => 'the JVM is not run under valgrind '
                     . '(its JIT and signals defeat it)');
}
BAIL_OUT("build first: make ($HotffiTest::REPO/build/lib/libhotffi_java.so "
         . 'does not exist)')
    unless -e "$HotffiTest::REPO/build/lib/libhotffi_java.so";

my $JAR = "$HotffiTest::REPO/build/lib/hotffi.jar";
my $DIR = tempdir('hotffi-java-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0777, $DIR;
mkdir "$DIR/classes";
mkdir "$DIR/gate";
chmod 0777, "$DIR/classes", "$DIR/gate";

sub javac {
    my ($dir, $file, $text) = @_;
    open my $fh, '>', "$DIR/$file" or die "$DIR/$file: $!";
    print {$fh} $text;
    close $fh or die "$DIR/$file: $!";
    system('javac', '-nowarn', '-cp', $JAR, '-d', "$DIR/$dir", "$DIR/$file")
        == 0 or die "javac $file failed";
    system('chmod', '-R', 'a+rX', "$DIR/$dir");
}

# live.App answers its version; "classes" the JVM's class counts after a
# full collection; "prop" a system property; "sigblk" the blocked signals
# of the serving thread
sub app {
    my ($version) = @_;
    return <<"JAVA";
package live;

import io.hotffi.Hotffi;
import java.lang.management.ClassLoadingMXBean;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;

public final class App {
    static byte[] b(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    public static int init(String cfg, long tq) {
        Hotffi.serve(tq, req -> {
            String r = new String(req, StandardCharsets.UTF_8);
            if (r.equals("classes")) {
                System.gc();
                ClassLoadingMXBean c = ManagementFactory.getClassLoadingMXBean();
                return b(c.getLoadedClassCount() + " "
                         + c.getUnloadedClassCount());
            }
            if (r.equals("prop")) {
                return b(String.valueOf(System.getProperty("hotffi.test")));
            }
            if (r.equals("sigblk")) {
                for (String l : Files.readAllLines(
                         Paths.get("/proc/thread-self/status"))) {
                    if (l.startsWith("SigBlk:")) {
                        return b(l.substring(7).trim());
                    }
                }
            }
            return b("$version");
        }, 2);
        return 0;
    }
}
JAVA
}

javac('classes', 'App.java', app('v1'));

# the JVM's system class loader: its constructor runs while the JVM
# starts, and waits there until the test says go
javac('gate', 'Gate.java', <<"JAVA");
package gate;

import java.nio.file.Files;
import java.nio.file.Paths;

public final class Gate extends ClassLoader {
    public Gate(ClassLoader parent) throws Exception {
        super(parent);
        Files.write(Paths.get("$DIR/gate/waiting"), new byte[0]);
        for (int i = 0; i < 60000 && !Files.exists(Paths.get("$DIR/gate/go")); i++) {
            Thread.sleep(10);
        }
    }
}
JAVA

my $HTTP_CONFIG = <<"CONF";
init_by_lua_block {
    package.loaded.app = function()
        return assert(require("resty.hotffi").load("hotffi_java",
            "classpath=$DIR/classes,live.App?,init"))
    end
}
CONF

my $CONFIG = <<'CONF';
location = /t {
    content_by_lua_block {
        local ok, res = require("app")():x("version")
        if not ok then
            ngx.log(ngx.ERR, "call failed: ", res)
            return ngx.exit(500)
        end
        ngx.say(res)
    }
}
location = /x {
    content_by_lua_block {
        local ok, res = require("app")():x(ngx.var.arg_q)
        ngx.say(ok, " ", res)
    }
}
location = /reload {
    content_by_lua_block {
        local res, err = require("app")():__reload{}
        ngx.say(res and "reloaded" or err)
    }
}
location = /cycles {
    content_by_lua_block {
        local rt = require("app")()
        for i = 1, tonumber(ngx.var.arg_n) do
            local res, err = rt:__reload{}
            if not res then
                ngx.say(err)
                return
            end
        end
        ngx.say("done")
    }
}
location = /ping {
    return 200 "pong\n";
}
CONF

# "Class?" under load: a changed class, reloaded in place, serves the next
# calls, and no call fails meanwhile
{
    my $nginx = HotffiTest::Nginx->new(
        name => 'java class? reload under load',
        env => { HOTFFI_JAVA_OPTS => "-Xmx64m -XX:ErrorFile=$DIR/hs_err_%p.log "
                                     . q{'-Dhotffi.test=a b' -Dx="c d"} },
        http_config => $HTTP_CONFIG, config => $CONFIG);
    $nginx->start;
    is($nginx->get('/t')->{content}, "v1\n", 'v1 serves');
    is($nginx->get('/x?q=prop')->{content}, "true a b\n",
       'HOTFFI_JAVA_OPTS: quoted spaces stay in one option');

    my ($mask) = $nginx->get('/x?q=sigblk')->{content} =~ /^true (\w+)$/m;
    my $blocked = do { no warnings 'portable'; hex($mask // 0) };
    my @nginx_signals = (1, 2, 3, 10, 14, 15, 17, 28, 29);
    is(scalar(grep { !($blocked & (1 << ($_ - 1))) } @nginx_signals), 0,
       "nginx's signals are blocked on the serve threads")
        or diag(sprintf('SigBlk %x', $blocked));

    my $run = start_clients($nginx, 4, '/t');
    wait_until(sub { clients_answered($run) >= 20 }, 30, 'load under way');
    javac('classes', 'App.java', app('v2'));
    is($nginx->get('/reload')->{content}, "reloaded\n", 'reloaded in place');
    is($nginx->get('/t')->{content}, "v2\n", 'the changed class serves');
    my $seen = clients_answered($run);
    wait_until(sub { clients_answered($run) >= $seen + 20 }, 30,
               'load after the reload');
    my @answers = stop_clients($run);
    my @bad = grep { $_->[0] != 200 || $_->[1] !~ /^v[12]$/ } @answers;
    is(scalar(@bad), 0, scalar(@answers) . ' calls under reload, none failed')
        or diag(explain(\@bad));
    ok((grep { $_->[1] eq 'v2' } @answers), 'the clients saw v2');

    # a changed class that fails to start: the reload rolls back to the
    # class that ran before (kept, not read from disk again)
    javac('classes', 'App.java', <<'JAVA');
package live;

public final class App {
    public static int init(String cfg, long tq) {
        throw new IllegalStateException("broken build");
    }
}
JAVA
    like($nginx->get('/reload')->{content},
         qr/IllegalStateException: broken build.*serves again/s,
         'a failing new class: the reload fails and rolls back');
    is($nginx->get('/t')->{content}, "v2\n", 'the class before serves again');
    javac('classes', 'App.java', app('v3'));
    is($nginx->get('/reload')->{content}, "reloaded\n", 'a fixed class');
    is($nginx->get('/t')->{content}, "v3\n", 'the fixed class serves');

    # many reloads: the old loaders go, so the classes loaded stay bounded
    my ($loaded0) = $nginx->get('/x?q=classes')->{content} =~ /^true (\d+)/m;
    is($nginx->get('/cycles?n=150')->{content}, "done\n", '150 reloads');
    my ($loaded1, $unloaded) =
        $nginx->get('/x?q=classes')->{content} =~ /^true (\d+) (\d+)$/m;
    cmp_ok($unloaded, '>=', 100, "old versions' classes were unloaded "
                                 . "($unloaded)");
    cmp_ok($loaded1 - $loaded0, '<', 100,
           "classes loaded stay bounded ($loaded0 -> $loaded1)");

    # nginx -s reload: new workers, each with a new JVM; the old exit
    ok($nginx->reload, 'nginx -s reload with a running JVM');
    is($nginx->get('/t')->{content}, "v3\n", 'a new worker serves');
    ok($nginx->quit, 'nginx -s quit with a running JVM: workers exit');
    my @crash = glob "$DIR/hs_err_*.log";
    is(scalar(@crash), 0, 'no JVM crash log') or diag(`cat @crash`);
    unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/,
           'error log is clean');
    $nginx->stop;
}

# The worker answers other requests while its JVM starts: the JVM's
# system class loader holds the start until the test has had its answer.
{
    my $nginx = HotffiTest::Nginx->new(
        name => 'java start off the event loop',
        env => { HOTFFI_JAVA_OPTS => '-Djava.system.class.loader=gate.Gate',
                 CLASSPATH => "$DIR/gate" },
        http_config => $HTTP_CONFIG, config => $CONFIG);
    $nginx->start;

    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        close $r;
        my $res = eval { $nginx->get('/t', { timeout => 120 }) };
        print {$w} $res ? "$res->{status} $res->{content}" : "failed: $@";
        close $w;
        POSIX::_exit(0);
    }
    close $w;

    ok(wait_until(sub { -e "$DIR/gate/waiting" }, 60, 'the JVM starting'),
       'the JVM is starting');
    my $ping = $nginx->get('/ping');
    is("$ping->{status} $ping->{content}", "200 pong\n",
       'the worker answers while its JVM starts');
    open my $go, '>', "$DIR/gate/go" or die "$DIR/gate/go: $!";
    close $go;
    my $got = do { local $/; <$r> };
    waitpid($pid, 0);
    is($got, "200 v3\n", 'the load that waited for the JVM is answered');
    $nginx->stop;
}

done_testing();
