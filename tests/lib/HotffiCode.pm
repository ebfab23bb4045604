package HotffiCode;

# What the Redis-source tests of resty.hotffi.code (6xx) share: the nginx
# configuration of an instance that serves module app.api at /t and the
# admin handler at /admin, writing a module file, running bin/hotffi-bundle,
# and forging a current-version record with the one implementation of the
# format (resty.hotffi.code.bundle, run by luajit).  Core Perl only.
#
#   HotffiTest::Nginx->new(
#       http_config => HotffiCode::redis_http_config(port => $redis->port,
#                                                    max_size => 1048576),
#       config      => HotffiCode::locations(token => 'os.getenv("T")'),
#       env         => { HOTFFI_CODE_SECRET => $secret, T => $token }, ...);
#   HotffiCode::put($dir, 'app/api.lua', $source);
#   my ($out, $rc) = HotffiCode::cli('publish', $dir, '--redis', $addr);
#   HotffiCode::sign_record($secret, $version, $sequence, $bundle_mac);
#   HotffiCode::next_sequence($current_record, $secret);

use strict;
use warnings;

use Cwd qw(abs_path);
use JSON::PP ();
use File::Basename qw(dirname);

our $REPO = abs_path(dirname(__FILE__) . '/../..');
our $CLI  = "$REPO/bin/hotffi-bundle";

# Runs @cmd (no shell) with %$env in the environment; returns its output
# (standard output and error) and its exit status.
sub run {
    my ($env, @cmd) = @_;
    local @ENV{ keys %$env } = values %$env;
    my $pid = open my $fh, '-|' // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec { $cmd[0] } @cmd or exit 127;
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($out, $? >> 8);
}

# Runs bin/hotffi-bundle with @args; returns its output and exit status.
sub cli {
    my (@args) = @_;
    return run({}, $CLI, @args);
}

# Runs Lua code with the repository's modules under luajit, with %env in
# the environment; returns what it writes, dies if it fails.
sub lua {
    my ($code, %env) = @_;
    my ($out, $rc) = run(\%env, 'luajit',
                         '-e', "package.path = '$REPO/lua/?.lua;' .. package.path",
                         '-e', $code);
    die "luajit failed: $out" if $rc;
    return $out;
}

# A current-version record of $version, signed with $secret.
sub sign_record {
    my ($secret, $version, $sequence, $mac) = @_;
    return lua('io.write(assert(require("resty.hotffi.code.bundle").sign_record('
               . 'os.getenv("S"), os.getenv("V"), tonumber(os.getenv("Q")),'
               . ' os.getenv("M"))))',
               S => $secret, V => $version, Q => $sequence, M => $mac);
}

# The sequence the tool gives a new record after $current (a record, or
# undef).
sub next_sequence {
    my ($current, $secret) = @_;
    return lua('local host = require "resty.hotffi.code.host"'
               . ' local c = os.getenv("C")'
               . ' io.write(string.format("%d", require("resty.hotffi.code.bundle")'
               . '.next_sequence(host.now() * 1000, c ~= "" and c or nil,'
               . ' os.getenv("S"))))',
               C => $current // '', S => $secret);
}

# The http{} part: the shared dict and init_worker with the Redis source
# on 127.0.0.1:<port>, the secret from $HOTFFI_CODE_SECRET, the leader's
# fallback look every 0.5 s, and any other option given (Lua values).
sub redis_http_config {
    my (%o) = @_;
    my $port = delete $o{port} or die "redis_http_config: port => expected\n";
    my $more = join '', map { "        $_ = $o{$_},\n" } sort keys %o;
    return <<"CONF";
lua_shared_dict hotffi_code 8m;
init_worker_by_lua_block {
    require("resty.hotffi.code").init_worker{
        dict = "hotffi_code",
        redis = { port = $port },
        secret = os.getenv("HOTFFI_CODE_SECRET"),
        interval = 0.5,
$more    }
}
CONF
}

# The server{} part: /t serves app.api's handler, /admin the admin
# handler with `token` (a Lua expression; default false).
sub locations {
    my (%o) = @_;
    my $token = $o{token} // 'false';
    return <<"CONF";
location = /t {
    content_by_lua_block {
        require("resty.hotffi.code").handler("app.api")()
    }
}
location = /admin {
    allow 127.0.0.1;
    deny all;
    content_by_lua_block {
        require("resty.hotffi.code").admin{ token = $token }
    }
}
CONF
}

# The admin handler's status of nginx $n (decoded; {} unless it answered
# 200), asked with the request options %$opt (headers).
sub admin_status {
    my ($n, $opt) = @_;
    my $res = $n->request('GET', '/admin', $opt // {});
    return $res->{status} == 200 ? JSON::PP::decode_json($res->{content}) : {};
}

# True when $n reports $count workers, all running version $v.
sub all_at {
    my ($n, $v, $count, $opt) = @_;
    my @w = @{ admin_status($n, $opt)->{workers} || [] };
    return @w == $count && !grep { ($_->{version} // '') ne $v } @w;
}

# Writes $root/$rel readable by the workers (they may run as nobody), by
# rename, so that a reader never sees half a file.
sub put {
    my ($root, $rel, $text) = @_;
    open my $fh, '>', "$root/$rel.tmp" or die "cannot write $root/$rel: $!";
    print {$fh} $text;
    close $fh or die "cannot write $root/$rel: $!";
    chmod 0644, "$root/$rel.tmp";
    rename "$root/$rel.tmp", "$root/$rel" or die "rename $root/$rel: $!";
}

1;
