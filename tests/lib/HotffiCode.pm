package HotffiCode;

# What the Redis-source tests of resty.hotffi.code (630, 640) share: the
# nginx configuration of an instance that serves module app.api at /t and
# the admin handler at /admin, and writing a module file.  Core Perl only.
#
#   HotffiTest::Nginx->new(
#       http_config => HotffiCode::redis_http_config(port => $redis->port,
#                                                    max_size => 1048576),
#       config      => HotffiCode::locations(token => 'os.getenv("T")'),
#       env         => { HOTFFI_CODE_SECRET => $secret, T => $token }, ...);
#   HotffiCode::put($dir, 'app/api.lua', $source);

use strict;
use warnings;

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
