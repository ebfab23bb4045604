-- resty.hotffi.code.redis -- the Redis code source: a small RESP client
-- that fetches the current bundle, publishes, rolls back, listens for
-- notifications and carries the fleet's verdicts.  See docs/code-reload.md
-- for the keys.
--
-- The one implementation of the Redis side, used by nginx (cosockets) and
-- by bin/hotffi-bundle (LuaSocket): the host's services come from
-- resty.hotffi.code.host.  subscribe() is nginx's only (light threads).

local host = require "resty.hotffi.code.host"

local byte = string.byte
local concat = table.concat
local format = string.format
local ipairs = ipairs
local null = host.null
local sleep = host.sleep
local sub = string.sub
local tcp = host.tcp
local tonumber = tonumber
local tostring = tostring
local type = type
local unpack = unpack


local _M = { version = "0.1.0" }

local PLUS, MINUS, COLON, DOLLAR, STAR = byte("+-:$*", 1, 5)
local PING = "*1\r\n$4\r\nPING\r\n"
local PING_INTERVAL = 1     -- seconds; keeps the subscriber's reads short
local EXIT_CHECK = 0.2      -- seconds between looks at ngx.worker.exiting()
local READ_SLACK = 3000     -- ms a subscriber read waits beyond the pings
local SMALL = 4096          -- bytes: the most a reply other than a
                            -- bundle may hold (records, names, OK)
local MAX_ITEMS = 16        -- elements of an array reply (a subscription
                            -- message has 3), unless a command says more
local MAX_HISTORY = 1000    -- versions of the history list read at most
local MAX_FLEET = 256       -- instances whose verdicts are kept at most
local FLEET_TTL = 60        -- seconds an instance's verdict outlives its
                            -- last report
local MAX_VERDICT = 16384   -- bytes of one instance's verdict at most
local POOL_SIZE = 4
local POOL_IDLE = 60000     -- ms

-- Makes ARGV[3] current with the signed record ARGV[2], if the current
-- record is still ARGV[1] (what the caller decided from; "" for none);
-- stores its bundle ARGV[4] again (its key may have been deleted); drops
-- the versions after it in the history and their bundles (or appends it
-- when it is not there); notifies.  Run by nginx's rollback and by
-- bin/hotffi-bundle's.
-- KEYS: current, history.  ARGV: expected record, new record, version,
-- bundle, channel, bundle key prefix.
local ROLLBACK_SCRIPT = [==[
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then
    return redis.error_reply('current changed meanwhile: try again')
end
local hist = redis.call('LRANGE', KEYS[2], 0, -1)
local n = #hist
while n > 0 and hist[n] ~= ARGV[3] do
    n = n - 1
end
if n == 0 then
    redis.call('RPUSH', KEYS[2], ARGV[3])
else
    for i = n + 1, #hist do
        redis.call('DEL', ARGV[6] .. hist[i])
    end
    redis.call('LTRIM', KEYS[2], 0, n - 1)
end
redis.call('SET', ARGV[6] .. ARGV[3], ARGV[4])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[5], ARGV[3])
return ARGV[3]
]==]

_M.ROLLBACK_SCRIPT = ROLLBACK_SCRIPT


function _M.keys(prefix)
    return {
        current = prefix .. ":current",
        history = prefix .. ":history",
        channel = prefix .. ":notify",
        bundle = prefix .. ":bundle:",
        fleet = prefix .. ":fleet",         -- a sorted set: instance ->
                                            -- time of its last verdict
        verdict = prefix .. ":fleet:",      -- <id>: its verdict (JSON)
    }
end

_M.MAX_VERDICT = MAX_VERDICT
_M.FLEET_TTL = FLEET_TTL


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


-- A reply: a string, a number, null, an array; false and the message for
-- an error reply; nil and the socket's error.  A bulk string longer than
-- `max` bytes, or an array of more than `items` (default MAX_ITEMS), is
-- not read: nil, a message and its size, and the connection must be
-- closed (the rest of the reply is still in it).  So nothing Redis holds
-- is read before its size was checked.
local function read_reply(sock, max, items)
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
        if n > max then
            return nil, format("a value of %d bytes, more than %d: not"
                               .. " read", n, max), n
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
        items = items or MAX_ITEMS
        if n > items then
            return nil, format("an array of %d items, more than %d: not"
                               .. " read", n, items), n
        end
        local arr = {}
        for i = 1, n do
            local v, size
            v, err, size = read_reply(sock, max, items)
            if v == nil then
                return nil, err, size
            end
            arr[i] = v
        end
        return arr
    end
    return nil, "bad reply: " .. line
end


-- Sends a command; its reply is read with read_reply(sock, max).
local function command(sock, max, ...)
    local ok, err = sock:send(encode({ ... }))
    if not ok then
        return nil, err
    end
    return read_reply(sock, max)
end


-- The same, for a reply that may be an array of up to `items` elements.
local function command_items(sock, max, items, ...)
    local ok, err = sock:send(encode({ ... }))
    if not ok then
        return nil, err
    end
    return read_reply(sock, max, items)
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
        res, err = command(sock, SMALL, "AUTH", conf.password)
        if not res then
            sock:close()
            return nil, "AUTH failed: " .. (err or "?")
        end
    end
    if conf.db then
        res, err = command(sock, SMALL, "SELECT", conf.db)
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


local function fetch_once(conf, pick, max_size, fresh)
    local sock, err = connect(conf, nil, fresh)
    if not sock then
        return nil, err
    end
    local reused = sock:getreusedtimes() > 0
    local keys = _M.keys(conf.prefix)
    local cur, size
    cur, err, size = command(sock, SMALL, "GET", keys.current)
    if size then
        sock:close()
        return { current = false, refused = "the current-version record: "
                                            .. err }
    end
    if not cur then
        sock:close()
        return nil, "GET failed: " .. (err or "?"), reused and cur == nil
    end
    local res = { current = cur ~= null and cur or nil }
    local version = res.current and pick(res.current)
    if version then
        local text
        text, err, size = command(sock, max_size, "GET",
                                  keys.bundle .. version)
        if size then
            -- refused by the size Redis announced: the bundle is not read
            sock:close()
            res.refused = format("bundle too large: %d bytes in redis"
                                 .. " (max_size %d); not read", size,
                                 max_size)
            return res
        end
        if not text then
            sock:close()
            return nil, "GET failed: " .. (err or "?")
        end
        res.text = text ~= null and text or false
    end
    keepalive(sock)
    return res
end


-- The current-version record (the value of <prefix>:current) and, when
-- pick(record) names a version, its bundle, read only if Redis says it
-- holds at most max_size bytes:
--   { current = record or nil (nothing published) or false (too large),
--     text = string, false (the bundle key is missing) or nil (not
--     picked, or refused), refused = message (too large, not read) }
-- or nil and a message when Redis cannot be reached or answers oddly.
function _M.fetch(conf, pick, max_size)
    local res, err, retry = fetch_once(conf, pick, max_size)
    if not res and retry then
        -- a pooled connection to a Redis that has restarted since
        res, err = fetch_once(conf, pick, max_size, true)
    end
    return res, err
end


-- The current-version record as Redis holds it ("" for none), or nil and
-- a message.
function _M.current(conf)
    local res, err = _M.fetch(conf, function() return nil end, 0)
    if not res then
        return nil, err
    end
    if res.current == false then
        return nil, res.refused
    end
    return res.current or ""
end


-- Makes `version` current on Redis with the signed record `record`,
-- stores its bundle `text` again and notifies every server, provided the
-- current record is still `expected` ("" for none): see ROLLBACK_SCRIPT.
-- Returns the version, or nil and a message.
function _M.rollback(conf, expected, record, version, text)
    local sock, err = connect(conf)
    if not sock then
        return nil, err
    end
    local keys = _M.keys(conf.prefix)
    local res
    res, err = command(sock, SMALL, "EVAL", ROLLBACK_SCRIPT, 2,
                       keys.current, keys.history, expected, record,
                       version, text, keys.channel, keys.bundle)
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


-- Runs f(sock, keys) on a connection of its own to `conf`'s Redis;
-- returns what f returns (it returns nil and a message on failure), the
-- connection closed.  For the tool's commands.
local function with_connection(conf, f)
    local sock, err = connect(conf, nil, true)
    if not sock then
        return nil, err
    end
    local r1, r2, r3 = f(sock, _M.keys(conf.prefix))
    sock:close()
    return r1, r2, r3
end


-- A reply, or nil and "<what> failed: <why>" for an error reply or a
-- failed read.
local function need(what, res, err)
    if not res then
        return nil, what .. " failed: " .. (err or "?")
    end
    return res
end


-- The history list, oldest first (up to MAX_HISTORY versions), or nil and
-- a message.
local function history(sock, keys)
    local res, err = command_items(sock, SMALL, MAX_HISTORY, "LRANGE",
                                   keys.history, 0, -1)
    if res == null then
        return {}
    end
    return need("LRANGE", res, err)
end


-- What bin/hotffi-bundle status shows: { current = the record or nil
-- (nothing published) or false (too large to read), history = {...} },
-- or nil and a message.
function _M.status(conf)
    return with_connection(conf, function(sock, keys)
        local cur, err, size = command(sock, SMALL, "GET", keys.current)
        if size then
            return { current = false, size = size }
        end
        cur, err = need("GET", cur, err)
        if not cur then
            return nil, err
        end
        local hist
        hist, err = history(sock, keys)
        if not hist then
            return nil, err
        end
        return { current = cur ~= null and cur or nil, history = hist }
    end)
end


-- The bundle of `version`, read only if Redis says it holds at most
-- `max_size` bytes: the text, false when the key is missing, or nil and a
-- message.
function _M.bundle(conf, version, max_size)
    return with_connection(conf, function(sock, keys)
        local text, err, size = command(sock, max_size, "GET",
                                        keys.bundle .. version)
        if size then
            return nil, format("the bundle of version %s: %d bytes in"
                               .. " redis, more than %d: not read",
                               version, size, max_size)
        end
        text, err = need("GET", text, err)
        if not text then
            return nil, err
        end
        return text ~= null and text
    end)
end


-- Stores the bundle `text` of `version` and makes it current with the
-- record sign(record Redis holds now, or nil) returns, and notifies, in
-- one transaction, WATCHed: a publish or rollback by someone else
-- meanwhile makes it fail rather than be undone.  Then trims the history
-- to `keep` versions and deletes the bundles of those that left it.
-- Returns the number of nginx instances notified, or nil and a message.
function _M.publish(conf, text, version, sign, keep)
    return with_connection(conf, function(sock, keys)
        local res, err = need("WATCH", command(sock, SMALL, "WATCH",
                                                keys.current))
        if not res then
            return nil, err
        end
        -- a record is short: a longer value is not one, and the sequence
        -- then comes from the time alone
        local cur
        cur, err = need("GETRANGE", command(sock, SMALL, "GETRANGE",
                                            keys.current, 0, SMALL - 1))
        if not cur then
            return nil, err
        end
        local record
        record, err = sign(cur ~= null and cur ~= "" and cur or nil)
        if not record then
            return nil, err
        end
        local cmds = {
            { "MULTI" },
            { "SET", keys.bundle .. version, text },
            { "SET", keys.current, record },
            { "LREM", keys.history, 0, version },
            { "RPUSH", keys.history, version },
            { "PUBLISH", keys.channel, version },
        }
        for _, c in ipairs(cmds) do
            res, err = need(c[1], command(sock, SMALL, unpack(c)))
            if not res then
                return nil, err
            end
        end
        res, err = need("EXEC", command(sock, SMALL, "EXEC"))
        if not res then
            return nil, err
        end
        if res == null then
            return nil, "the current version changed meanwhile: publish"
                        .. " again"
        end
        local listeners = res[5]
        local old
        old, err = need("LRANGE", command_items(sock, SMALL, MAX_HISTORY,
                                                "LRANGE", keys.history, 0,
                                                -(keep + 1)))
        if not old then
            return nil, err
        end
        if old ~= null and #old > 0 then
            res, err = need("LTRIM", command(sock, SMALL, "LTRIM",
                                             keys.history, -keep, -1))
            if not res then
                return nil, err
            end
            for _, v in ipairs(old) do
                command(sock, SMALL, "DEL", keys.bundle .. v)
            end
        end
        return listeners
    end)
end


-- The history list of the tool's rollback, oldest first, or nil and a
-- message.
function _M.history(conf)
    return with_connection(conf, history)
end


-- Stores one instance's verdict (`json`, at most MAX_VERDICT bytes) as
-- `id`, for FLEET_TTL seconds, and drops instances whose verdicts expired,
-- keeping MAX_FLEET at most.  Runs in nginx's leader.  Returns true, or
-- nil and a message.
function _M.put_verdict(conf, id, json)
    local sock, err = connect(conf)
    if not sock then
        return nil, err
    end
    local keys = _M.keys(conf.prefix)
    local t = host.now()
    local cmds = {
        { "SET", keys.verdict .. id, json, "EX", FLEET_TTL },
        { "ZADD", keys.fleet, format("%.3f", t), id },
        { "ZREMRANGEBYSCORE", keys.fleet, "-inf",
          format("(%.3f", t - FLEET_TTL) },
        { "ZREMRANGEBYRANK", keys.fleet, 0, -(MAX_FLEET + 1) },
        { "EXPIRE", keys.fleet, FLEET_TTL },
    }
    for _, c in ipairs(cmds) do
        local res
        res, err = command(sock, SMALL, unpack(c))
        if not res then
            sock:close()
            return nil, c[1] .. " failed: " .. (err or "?")
        end
    end
    keepalive(sock)
    return true
end


-- The verdicts of the instances that reported in the last FLEET_TTL
-- seconds: a list of their JSON texts (newest report first), each read
-- only if at most MAX_VERDICT bytes; or nil and a message.
function _M.verdicts(conf)
    return with_connection(conf, function(sock, keys)
        local ids, err = need("ZREVRANGEBYSCORE", command_items(sock,
            SMALL, MAX_FLEET, "ZREVRANGEBYSCORE", keys.fleet, "+inf",
            format("%.3f", host.now() - FLEET_TTL)))
        if not ids then
            return nil, err
        end
        local out = {}
        for _, id in ipairs(ids ~= null and ids or {}) do
            local text, size
            text, err, size = command(sock, MAX_VERDICT, "GET",
                                      keys.verdict .. id)
            if size then
                return nil, format("the verdict of %s: %s", id, err)
            end
            if type(text) == "string" then
                out[#out + 1] = text
            elseif not text then
                return nil, "GET failed: " .. (err or "?")
            end
        end
        return out
    end)
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
    res, err = command(sock, SMALL, "SUBSCRIBE", keys.channel)
    if not res then
        sock:close()
        return "SUBSCRIBE failed: " .. (err or "?")
    end
    local exiting = handlers.exiting
    local spawn, kill = ngx.thread.spawn, ngx.thread.kill
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
        -- a notification is a version's name: a larger one (anyone who
        -- can PUBLISH can send one) ends this connection unread
        res, err = read_reply(sock, SMALL)
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
