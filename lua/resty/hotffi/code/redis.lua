-- resty.hotffi.code.redis -- the Redis code source: a small RESP client on
-- ngx.socket.tcp that fetches the current bundle, rolls back and listens
-- for notifications.  See docs/code-reload.md for the keys.

local byte = string.byte
local concat = table.concat
local format = string.format
local ipairs = ipairs
local null = ngx.null
local sleep = ngx.sleep
local spawn = ngx.thread.spawn
local kill = ngx.thread.kill
local sub = string.sub
local tcp = ngx.socket.tcp
local tonumber = tonumber
local tostring = tostring
local unpack = unpack


local _M = { version = "0.1.0" }

local PLUS, MINUS, COLON, DOLLAR, STAR = byte("+-:$*", 1, 5)
local PING = "*1\r\n$4\r\nPING\r\n"
local PING_INTERVAL = 1     -- seconds; keeps the subscriber's reads short
local EXIT_CHECK = 0.2      -- seconds between looks at ngx.worker.exiting()
local READ_SLACK = 3000     -- ms a subscriber read waits beyond the pings
local POOL_SIZE = 4
local POOL_IDLE = 60000     -- ms

-- Makes the newest version of the history before the current one, and
-- not in ARGV[3...] (versions that failed to load), current and notifies;
-- drops the versions after it and their bundles.
-- KEYS: current, history.  ARGV: channel, bundle key prefix, skip...
local ROLLBACK_SCRIPT = [==[
local cur = redis.call('GET', KEYS[1])
if not cur then
    return redis.error_reply('nothing published')
end
local skip = {}
for i = 3, #ARGV do
    skip[ARGV[i]] = true
end
local hist = redis.call('LRANGE', KEYS[2], 0, -1)
local n = #hist
while n > 0 and (hist[n] == cur or skip[hist[n]]) do
    n = n - 1
end
if n == 0 then
    return redis.error_reply('no previous version')
end
local prev = hist[n]
if redis.call('EXISTS', ARGV[2] .. prev) == 0 then
    return redis.error_reply('the bundle of version ' .. prev .. ' is gone')
end
for i = n + 1, #hist do
    redis.call('DEL', ARGV[2] .. hist[i])
end
redis.call('LTRIM', KEYS[2], 0, n - 1)
redis.call('SET', KEYS[1], prev)
redis.call('PUBLISH', ARGV[1], prev)
return prev
]==]

_M.ROLLBACK_SCRIPT = ROLLBACK_SCRIPT


function _M.keys(prefix)
    return {
        current = prefix .. ":current",
        history = prefix .. ":history",
        channel = prefix .. ":notify",
        bundle = prefix .. ":bundle:",
    }
end


local function encode(args)
    local out = { "*", #args, "\r\n" }
    for _, a in ipairs(args) do
        a = tostring(a)
        out[#out + 1] = "$"
        out[#out + 1] = #a
        out[#out + 1] = "\r\n"
        out[#out + 1] = a
        out[#out + 1] = "\r\n"
    end
    return concat(out)
end


-- A reply: a string, a number, ngx.null, an array; false and the message
-- for an error reply; nil and the socket's error.
local function read_reply(sock)
    local line, err = sock:receive()
    if not line then
        return nil, err
    end
    local t, rest = byte(line), sub(line, 2)
    if t == PLUS then
        return rest
    elseif t == MINUS then
        return false, rest
    elseif t == COLON then
        return tonumber(rest)
    elseif t == DOLLAR then
        local n = tonumber(rest)
        if not n then
            return nil, "bad reply: " .. line
        end
        if n < 0 then
            return null
        end
        local data
        data, err = sock:receive(n + 2)
        if not data then
            return nil, err
        end
        return sub(data, 1, n)
    elseif t == STAR then
        local n = tonumber(rest)
        if not n then
            return nil, "bad reply: " .. line
        end
        if n < 0 then
            return null
        end
        local arr = {}
        for i = 1, n do
            local v
            v, err = read_reply(sock)
            if v == nil then
                return nil, err
            end
            arr[i] = v
        end
        return arr
    end
    return nil, "bad reply: " .. line
end


local function command(sock, ...)
    local ok, err = sock:send(encode({ ... }))
    if not ok then
        return nil, err
    end
    return read_reply(sock)
end


local function where(conf)
    return conf.path and "unix:" .. conf.path
           or format("%s:%d", conf.host, conf.port)
end

_M.where = where


-- A connection, authenticated and on the right database, or nil and a
-- message.  read_ms overrides the read timeout.
local function connect(conf, read_ms, fresh)
    local sock = tcp()
    local ms = conf.timeout * 1000
    sock:settimeouts(ms, ms, read_ms or ms)
    local pool = where(conf) .. "/" .. (conf.db or 0)
    local ok, err
    local opts = not fresh and { pool = pool } or nil
    if conf.path then
        ok, err = sock:connect("unix:" .. conf.path, opts)
    else
        ok, err = sock:connect(conf.host, conf.port, opts)
    end
    if not ok then
        return nil, "connect() failed: " .. err
    end
    if sock:getreusedtimes() > 0 then
        return sock
    end
    local res
    if conf.password then
        res, err = command(sock, "AUTH", conf.password)
        if not res then
            sock:close()
            return nil, "AUTH failed: " .. (err or "?")
        end
    end
    if conf.db then
        res, err = command(sock, "SELECT", conf.db)
        if not res then
            sock:close()
            return nil, "SELECT failed: " .. (err or "?")
        end
    end
    return sock
end


local function keepalive(sock)
    sock:setkeepalive(POOL_IDLE, POOL_SIZE)
end


local function fetch_once(conf, skip, fresh)
    local sock, err = connect(conf, nil, fresh)
    if not sock then
        return nil, err
    end
    local reused = sock:getreusedtimes() > 0
    local keys = _M.keys(conf.prefix)
    local cur
    cur, err = command(sock, "GET", keys.current)
    if not cur then
        sock:close()
        return nil, "GET failed: " .. (err or "?"), reused and cur == nil
    end
    local res = { current = cur ~= null and cur or nil }
    if res.current and not skip(res.current) then
        local text
        text, err = command(sock, "GET", keys.bundle .. res.current)
        if not text then
            sock:close()
            return nil, "GET failed: " .. (err or "?")
        end
        res.text = text ~= null and text or false
    end
    keepalive(sock)
    return res
end


-- The current version's name and, unless skip(name) is true, its bundle:
--   { current = name or nil (nothing published), text = string, false
--     (the bundle key is missing) or nil (skipped) }
-- or nil and a message when Redis cannot be reached or answers oddly.
function _M.fetch(conf, skip)
    local res, err, retry = fetch_once(conf, skip)
    if not res and retry then
        -- a pooled connection to a Redis that has restarted since
        res, err = fetch_once(conf, skip, true)
    end
    return res, err
end


-- Makes the previous version current on Redis and notifies every
-- server; versions in the list `skip` are passed over.  Returns its name,
-- or nil and a message.
function _M.rollback(conf, skip)
    local sock, err = connect(conf)
    if not sock then
        return nil, err
    end
    local keys = _M.keys(conf.prefix)
    local res
    res, err = command(sock, "EVAL", ROLLBACK_SCRIPT, 2, keys.current,
                       keys.history, keys.channel, keys.bundle,
                       unpack(skip or {}))
    if res == nil then
        sock:close()
        return nil, "EVAL failed: " .. (err or "?")
    end
    keepalive(sock)
    if not res then
        return nil, err
    end
    return res
end


-- One subscription: connects, subscribes to the channel, calls
-- handlers.up() and then handlers.message(payload) for each notification,
-- until the connection fails (returns the message) or handlers.exiting()
-- is true (returns nil).  Runs in a timer.  A light thread pings Redis
-- every second, so reads never wait long: nginx logs each cosocket read
-- timeout as an error, and an exiting worker is not held up.
function _M.subscribe(conf, handlers)
    local sock, err = connect(conf, PING_INTERVAL * 1000 + READ_SLACK, true)
    if not sock then
        return err
    end
    local keys = _M.keys(conf.prefix)
    local res
    res, err = command(sock, "SUBSCRIBE", keys.channel)
    if not res then
        sock:close()
        return "SUBSCRIBE failed: " .. (err or "?")
    end
    local exiting = handlers.exiting
    local pinger = spawn(function()
        while true do
            local waited = 0
            while waited < PING_INTERVAL and not exiting() do
                sleep(EXIT_CHECK)
                waited = waited + EXIT_CHECK
            end
            -- when exiting, the answer to this one wakes the reader up
            local ok, e = sock:send(PING)
            if not ok or exiting() then
                return ok, e
            end
        end
    end)
    handlers.up()
    while true do
        res, err = read_reply(sock)
        if not res then
            err = "subscription: " .. (err or "?")
            break
        end
        if res[1] == "message" and res[2] == keys.channel then
            handlers.message(res[3])
        end
        if exiting() then
            err = nil
            break
        end
    end
    kill(pinger)
    sock:close()
    return err
end


return _M
