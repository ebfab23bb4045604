# The Lua service examples (examples/lua): hash.lua's SHA-256 and CRC-32
# through LuaJIT's FFI agree with Perl's; sessions.lua, edited on disk and
# reloaded in place, keeps every key's count.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use HotffiTest;
use Test::More;
use HotffiReload qw(body deploy_dir deploy_file deploy_text);
use Digest::SHA qw(sha256_hex);
use File::Copy qw(copy);

my $LIB = "$HotffiTest::REPO/build/lib/libhotffi_lua.so";
BAIL_OUT("build first: make ($LIB does not exist)") unless -e $LIB;

my $ex = "$HotffiTest::REPO/examples/lua";
my $dir = deploy_dir('hotffi-lua-examples', 0777);
deploy_file("$ex/sessions.lua", "$dir/sessions.lua");

my $config = <<'CONF';
location = /hash {
    client_body_buffer_size 1m;
    client_max_body_size 1m;
    content_by_lua_block {
        ngx.req.read_body()
        local rt = assert(require("resty.hotffi").load("hotffi_lua",
            os.getenv("EX_DIR") .. "/hash,init,2"))
        local body = ngx.req.get_body_data() or ""
        local _, sha = rt:sum(body)
        local _, crc = rt:sum("crc32:" .. body)
        ngx.say(sha, "\n", crc)
    }
}
location = /hit {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("hotffi_lua",
            os.getenv("LUA_DIR") .. "/sessions?,init"))
        ngx.say(select(2, rt:hit(ngx.var.arg_key)))
    }
}
location = /reload {
    content_by_lua_block {
        local rt = assert(require("resty.hotffi").load("hotffi_lua",
            os.getenv("LUA_DIR") .. "/sessions?,init"))
        local res, err = rt:__reload{}
        ngx.say(res and ("ok " .. res.from .. " " .. res.to) or err)
    }
}
CONF

my $nginx = HotffiTest::Nginx->new(name => 'lua examples', config => $config,
                                   env => { EX_DIR => $ex, LUA_DIR => $dir });
$nginx->start;

my $body = join '', map { chr(($_ * 7) % 256) } 0 .. 100000;
my $r = $nginx->request('POST', '/hash', { body => $body });
my $crc = 0xffffffff;
{
    # CRC-32 (zlib's) in Perl, bit by bit: the check must not be the code
    for my $c (unpack 'C*', $body) {
        $crc ^= $c;
        $crc = ($crc >> 1) ^ (0xedb88320 & -($crc & 1)) for 1 .. 8;
    }
    $crc ^= 0xffffffff;
}
is($r->{content}, "sha256 " . sha256_hex($body) . "\n"
                  . sprintf("crc32 %08x\n", $crc),
   'hash.lua: SHA-256 and CRC-32 of 100001 bytes, as Perl computes them');

is((body($nginx, '/hit?key=alice'))[1], 'v1 alice 1', 'sessions: alice');
is((body($nginx, '/hit?key=alice'))[1], 'v1 alice 2', 'alice again');
is((body($nginx, '/hit?key=bob'))[1], 'v1 bob 1', 'bob');
my $v2 = do { local (@ARGV, $/) = "$ex/sessions.lua"; <> };
$v2 =~ s/local VERSION = "v1"/local VERSION = "v2"/ or die "no VERSION";
deploy_text($v2, "$dir/sessions.lua");
is((body($nginx, '/reload'))[1], 'ok 1 2', 'edited on disk, reloaded in place');
is((body($nginx, '/hit?key=alice'))[1], 'v2 alice 3', 'v2 counts alice on');
is((body($nginx, '/hit?key=bob'))[1], 'v2 bob 2', 'and bob');

unlike($nginx->error_log_text, qr/\[(alert|crit|emerg)\]/,
       'no alert in the error log');
$nginx->stop;

done_testing;
