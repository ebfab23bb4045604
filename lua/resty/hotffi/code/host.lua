-- resty.hotffi.code.host -- the services the shared code modules take from
-- their host: nginx, or the command line (bin/hotffi-bundle).
--
-- The bundle format (resty.hotffi.code.bundle), the directory reader
-- (.dir) and the Redis client (.redis) are one implementation, used by
-- nginx and by bin/hotffi-bundle, a LuaJIT script.  What they need from
-- their host comes from here:
--
--   tcp()     a socket with the cosocket interface they use: settimeouts,
--             connect(host, port) or connect("unix:" .. path), send,
--             receive() (a line, without CR LF) and receive(n), close,
--             setkeepalive, getreusedtimes
--   null      Redis' nil in replies
--   now()     the time in seconds, with ms, up to date
--   sleep(s)
--   md5(s)    hex (nginx only: the directory source's version names)
--
-- Inside nginx they are ngx.*.  On the command line the socket is
-- LuaSocket's (Debian lua-socket), wrapped to the cosocket interface;
-- SHA-256 and HMAC-SHA256 come from libcrypto through FFI in both hosts
-- (resty.hotffi.code.bundle).

local ngx = ngx

local _M = { version = "0.1.0" }

if ngx and ngx.socket then
    local update_time = ngx.update_time
    local ngx_now = ngx.now

    _M.name = "nginx"
    _M.tcp = ngx.socket.tcp
    _M.null = ngx.null
    _M.sleep = ngx.sleep
    _M.md5 = ngx.md5
    function _M.now()
        update_time()
        return ngx_now()
    end
    return _M
end


local socket = require "socket"
local cjson = require "cjson"

local max = math.max
local setmetatable = setmetatable
local sub = string.sub

_M.name = "cli"
_M.null = cjson.null
_M.now = socket.gettime
_M.sleep = socket.sleep

-- LuaSocket's socket as a cosocket.  One timeout for all operations: the
-- largest of the three given, in seconds.
local Sock = {}
Sock.__index = Sock


function Sock:settimeouts(connect_ms, send_ms, read_ms)
    self.timeout = max(connect_ms, send_ms, read_ms) / 1000
    if self.sock then
        self.sock:settimeout(self.timeout)
    end
end


function Sock:connect(host, port)
    local sock, ok, err
    if sub(host, 1, 5) == "unix:" then
        sock = require("socket.unix")()
        sock:settimeout(self.timeout)
        ok, err = sock:connect(sub(host, 6))
    else
        sock = socket.tcp()
        sock:settimeout(self.timeout)
        ok, err = sock:connect(host, port)
    end
    if not ok then
        sock:close()
        return nil, err
    end
    self.sock = sock
    return true
end


function Sock:send(data)
    local n, err = self.sock:send(data)
    if not n then
        return nil, err
    end
    return n
end


-- LuaSocket's "*l" drops the CR before the LF, as receive() of a cosocket.
function Sock:receive(n)
    return self.sock:receive(n or "*l")
end


function Sock:close()
    if self.sock then
        self.sock:close()
        self.sock = nil
    end
    return true
end


-- A command-line run makes few connections: none is kept.
function Sock:setkeepalive()
    return self:close()
end


function Sock:getreusedtimes()
    return 0
end


function _M.tcp()
    return setmetatable({ timeout = 5 }, Sock)
end


return _M
