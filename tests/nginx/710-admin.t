# resty.hotffi.admin: one HTTP request reloads a runtime in every nginx
# worker and answers with each worker's result; a worker started later
# (respawned after a crash, or by nginx -s reload) loads what the others
# run; the token is enforced; a failing new version is rolled back
# everywhere and reported per worker; a runtime no worker has is a 404;
# GET says which file and cfg serve, since when.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use JSON::PP;
use HotffiReload qw(file_id);

my $build = "$HotffiTest::REPO/build/lib";
BAIL_OUT("build first: make ($build/libcounter_b.so does not exist)")
    unless -e "$build/libcounter_b.so";

my $dir = tempdir('hotffi-admin-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
copy("$build/libcounter.so", "$dir/libcounter.so") or die "copy: $!";

my $http_config = <<'CONF';
lua_shared_dict hotffi_admin 1m;
init_worker_by_lua_block {
    require("resty.hotffi.admin").init_worker{ dict = "hotffi_admin",
                                               poll = 0.05 }
    assert(require("resty.hotffi").load(os.getenv("COUNTER_LIB"), nil,
                                        { unpin = true, name = "counter" }))
    -- unnamed: its name is "<lib>&threads=1", which a URL must encode
    assert(require("resty.hotffi").load(os.getenv("COUNTER_LIB"),
                                        "threads=1"))
}
CONF

my $config = <<'CONF';
location = /admin {
    allow 127.0.0.1;
    deny all;
    content_by_lua_block {
        require("resty.hotffi.admin").handler{ token = "s3cret" }
    }
}
# the mistake of issue 13: a variable nginx does not pass to its workers
location = /admin-unset {
    content_by_lua_block {
        require("resty.hotffi.admin").handler{
            token = os.getenv("HOTFFI_TEST_NO_SUCH_TOKEN") }
    }
}
location = /admin-env {
    content_by_lua_block {
        require("resty.hotffi.admin").handler{
            token = os.getenv("ADMIN_TOKEN") }
    }
}
location = /admin-open {
    content_by_lua_block {
        require("resty.hotffi.admin").handler{ token = false }
    }
}
# GET /count: "<worker pid> <build> <count>"
location = /count {
    content_by_lua_block {
        local rt = require("resty.hotffi").get("counter")
        local ok, res = rt:count("x")
        ngx.say(ngx.worker.pid(), " ", ok and res or "failed")
    }
}
CONF

my $nginx = HotffiTest::Nginx->new(name => 'admin', workers => 2,
                                   listen_options => 'reuseport',
                                   config => $config,
                                   http_config => $http_config,
                                   env => { COUNTER_LIB => "$dir/libcounter.so",
                                            ADMIN_TOKEN => 'from-env' });
$nginx->start;

my %auth = (headers => { Authorization => 'Bearer s3cret' });

sub admin {
    my ($method, $query) = @_;
    my $res = $nginx->request($method, "/admin$query", {%auth});
    my $body = eval { decode_json($res->{content}) };
    return ($res->{status}, $body, $res->{content});
}

# Builds answering /count, per worker pid, over $n requests; an answer
# not of that form counts as build "bad: <status> <body>".
sub builds {
    my ($n) = @_;
    my %by;
    for (1 .. $n) {
        my $res = $nginx->get('/count');
        my ($pid, $build) = $res->{content} =~ /^(\d+) (failed|\w+ \d+)$/
            or $by{0}{"bad: $res->{status} $res->{content}"}++, next;
        $by{$pid}{ $build =~ s/ \d+$//r }++;
    }
    return \%by;
}

my @pids;
wait_until(sub { @pids = sort $nginx->worker_pids; @pids == 2 }, 10,
           'two workers') or BAIL_OUT('no two workers');

# ---- the token
is($nginx->get('/admin')->{status}, 401, 'no token: 401');
for my $wrong ('nope', 's3cre', 's3cret2', 'S3CRET') {
    is($nginx->request('GET', '/admin',
                       { headers => { Authorization => "Bearer $wrong" } })->{status},
       401, "a wrong token ($wrong): 401");
}


# ---- no token configured: refused, and the message says what to add
my $res = $nginx->post('/admin-unset?runtime=counter', '');
is($res->{status}, 503, 'no token configured: 503, not a reload');
like($res->{content}, qr/no token configured, so it serves nobody: .*add \\"env NAME;\\" to the main context of nginx\.conf.*token = false serves without authentication/,
     'and says what to add');
like($nginx->error_log_text, qr/\[error\].*resty\.hotffi\.admin\.handler: no token configured/,
     'and logs it');
is($nginx->get('/admin-unset')->{status}, 503, 'GET too: 503');

# ---- a token read with os.getenv() and "env NAME;"; token = false
is($nginx->get('/admin-env')->{status}, 401, 'token from the environment: 401 without it');
is($nginx->request('GET', '/admin-env',
                   { headers => { Authorization => 'Bearer from-env' } })->{status},
   200, 'token from the environment: 200 with it');
is($nginx->get('/admin-open')->{status}, 200, 'token = false: served without one');

# ---- status of every worker
my ($st, $body, $raw) = admin('GET', '');
is($st, 200, 'status answered') or diag($raw);
is_deeply([ sort map { $_->{pid} } @{ $body->{workers} } ], \@pids,
          'one entry per worker, with its pid');
is_deeply([ map { $_->{runtimes}{counter}{version} } @{ $body->{workers} } ],
          [ 1, 1 ], 'each runs version 1 of the counter');
my ($dev, $ino) = file_id("$dir/libcounter.so");
my $mtime = (stat "$dir/libcounter.so")[9];
is_deeply([ map { [ @{ $_->{runtimes}{counter} }{qw(lib dev ino mtime cfg)} ] }
            @{ $body->{workers} } ],
          [ ([ "$dir/libcounter.so", $dev, $ino, $mtime, undef ]) x 2 ],
          'GET: the lib, the file mapped and its mtime; no cfg (nil)')
    or diag($raw);
my @since = map { $_->{runtimes}{counter}{since} } @{ $body->{workers} };
ok(!grep({ !defined $_ || $_ < $^T - 60 || $_ > time + 1 } @since),
   'and since when it serves') or diag(explain(\@since));
my %threads1 = %{ $body->{workers}[0]{runtimes}{"$dir/libcounter.so&threads=1"}
                  // {} };
is_deeply([ @threads1{qw(cfg cfg_len cfg_crc32)} ],
          [ 'threads=1', 9, '1611c2b6' ],
          'a cfg is shown, with its length and the CRC-32 the audit uses')
    or diag($raw);

# ---- one request reloads every worker, into a new file at the same path
copy("$build/libcounter_b.so", "$dir/libcounter.so.new") or die "copy: $!";
rename "$dir/libcounter.so.new", "$dir/libcounter.so" or die "rename: $!";
($st, $body, $raw) = admin('POST', '?runtime=counter');
is($st, 200, 'reload in every worker: 200') or diag($raw);
ok($body->{ok}, 'reported ok');
is_deeply([ sort map { $_->{pid} } @{ $body->{workers} } ], \@pids,
          'the reply lists both workers');
is_deeply([ map { [ $_->{ok}, $_->{from}, $_->{to} ] } @{ $body->{workers} } ],
          [ [ JSON::PP::true, 1, 2 ], [ JSON::PP::true, 1, 2 ] ],
          'each went from version 1 to 2');
ok(!grep({ !defined $_->{seconds} } @{ $body->{workers} }),
   'each says how long it took');
($st, $body, $raw) = admin('GET', '');
my ($dev2, $ino2) = file_id("$dir/libcounter.so");
is_deeply([ map { $_->{runtimes}{counter}{ino} } @{ $body->{workers} } ],
          [ $ino2, $ino2 ], 'GET: the new file serves, by its inode');
ok(!grep({ $_->{runtimes}{counter}{since} < $since[0] } @{ $body->{workers} }),
   'since the reload');
my $by = builds(40);
is_deeply([ sort map { keys %$_ } values %$by ], [ ('b') x keys %$by ],
          'every answer comes from build b') or diag(explain($by));

# ---- a failing new version, everywhere at once (canary=0): rolled back
# everywhere, reported per worker (the canary's way: 715-admin-canary.t)
($st, $body, $raw) = admin('POST', '?runtime=counter&cfg=fail&canary=0');
is($st, 500, 'a reload failing in the workers: 500');
ok(!$body->{ok}, 'reported not ok');
is(scalar(grep { !$_->{ok} && $_->{error} =~ /"\Q$dir\E\/libcounter\.so&fail" failed: 1: told to fail.*version 2 serves again/ }
          @{ $body->{workers} }), 2,
   'both workers failed and rolled back, and name the cfg tried')
    or diag($raw);
is_deeply([ map { [ $_->{from}, $_->{to}, $_->{version} ] } @{ $body->{workers} } ],
          [ [ 2, 3, 2 ], [ 2, 3, 2 ] ],
          'each reports the version it tried (3), and that 2 still serves');
$by = builds(20);
is_deeply([ sort map { keys %$_ } values %$by ], [ ('b') x keys %$by ],
          'calls still succeed, on build b') or diag(explain($by));

# ---- bad requests
($st, $body) = admin('POST', '');
is($st, 400, 'no runtime named: 400');
($st, $body) = admin('POST', '?runtime=counter&retire_timeout=soon');
is($st, 400, 'a bad retire_timeout: 400');
is($body->{error}, 'retire_timeout must be a number of seconds greater than 0 and at most 3600 (given "soon")',
   'and says why');
ok(defined $body->{ok} && !$body->{ok}, 'an error says "ok":false');
# numbers are checked before anything reaches a worker: no reload happens
for my $case (['timeout', 'nan'], ['timeout', 'NaN'], ['timeout', 'inf'],
              ['timeout', '-inf'], ['timeout', '-1'], ['timeout', '0'],
              ['timeout', '1e999'], ['timeout', '1e3'], ['timeout', '0x10'],
              ['timeout', '99999999999'], ['timeout', ''], ['timeout', 'abc'],
              ['retire_timeout', 'nan'], ['retire_timeout', 'inf'],
              ['retire_timeout', '-0.5'], ['retire_timeout', '3601']) {
    my ($k, $v) = @$case;
    ($st, $body, $raw) = admin('POST', "?runtime=counter&$k=$v");
    is($st, 400, "$k=$v: 400");
    is($body->{error}, "$k must be a number of seconds greater than 0 and at most 3600 (given \"$v\")",
       "$k=$v: says why") or diag($raw);
}
($st, $body) = admin('POST', '?runtime=counter&timeout=1&timeout=2');
is($st, 400, 'timeout given twice: 400');
($st, $body) = admin('GET', '');
is_deeply([ map { $_->{runtimes}{counter}{version} } @{ $body->{workers} } ],
          [ 2, 2 ], 'none of them reloaded anything');
($st, $body, $raw) = admin('POST', '?runtime=counter&timeout=5&retire_timeout=0.5');
is($st, 200, 'good numbers: the reload happens') or diag($raw);
is_deeply([ map { [ $_->{from}, $_->{to} ] } @{ $body->{workers} } ],
          [ [ 2, 4 ], [ 2, 4 ] ],
          'from version 2 in each worker, to 4: 3 was the failed one');

# ---- a runtime no worker has: 404, and what they have
($st, $body, $raw) = admin('POST', '?runtime=nope');
is($st, 404, 'a runtime no worker loaded: 404') or diag($raw);
ok(defined $body->{ok} && !$body->{ok}, 'not ok');
like($body->{error} // '', qr/^no worker has loaded runtime "nope": nothing was reloaded; loaded: "\Q$dir\E\/libcounter\.so&threads=1", "counter" \(URL-encode the name: "&" is %26/,
     'it says so, lists the names loaded, and how to encode one')
    or diag($raw);
# "&" unencoded cuts the name short: the 404 shows the name meant
($st, $body, $raw) = admin('POST', "?runtime=$dir/libcounter.so&threads=1");
is($st, 404, 'a name with "&" not URL-encoded: 404');
(my $encoded = "$dir/libcounter.so&threads=1") =~ s/([&=+\/])/sprintf('%%%02X', ord $1)/ge;
($st, $body, $raw) = admin('POST', "?runtime=$encoded");
is($st, 200, 'URL-encoded: reloaded') or diag($raw);
is_deeply([ map { $_->{to} } @{ $body->{workers} } ], [ 2, 2 ],
          'in every worker');

# ---- a reload that changes the library is remembered for new workers
($st, $body, $raw) = admin('POST', "?runtime=counter&lib=$build/libcounter.so");
is($st, 200, 'reload to another library path') or diag($raw);
$by = builds(20);
ok(!grep({ !$_->{a} || keys(%$_) != 1 } values %$by), 'build a answers')
    or diag(explain($by));

kill 'KILL', $pids[0];
my @new;
wait_until(sub {
    @new = $nginx->worker_pids;
    @new == 2 && !grep { $_ == $pids[0] } @new
}, 10, 'the master to respawn the killed worker');
my ($respawned) = grep { $_ != $pids[1] } @new;
($st, $body) = admin('GET', '');
my ($entry) = grep { $_->{pid} == $respawned } @{ $body->{workers} };
is($entry->{runtimes}{counter}{version}, 1,
   'the respawned worker loaded the runtime afresh');
$by = builds(40);
is_deeply([ keys %{ $by->{$respawned} || { none => 1 } } ], [ 'a' ],
          'and runs the library the reload chose, not the configured one')
    or diag(explain($by));

$nginx->reload;
$by = builds(40);
is_deeply([ sort map { keys %$_ } values %$by ], [ ('a') x keys %$by ],
          'after nginx -s reload too');

unlike($nginx->error_log_text, qr/\[(crit|emerg)\]/, 'no crit in the error log');
$nginx->stop;

done_testing;
