-- resty.hotffi.code.rollback -- make the previous code version current.
--
-- Makes the previous version current: in this instance (dir source), or for
-- every server of the fleet with a current-version record signed into Redis.

local bundle = require "resty.hotffi.code.bundle"
local conf_mod = require "resty.hotffi.code.conf"
local host = require "resty.hotffi.code.host"
local leader = require "resty.hotffi.code.leader"
local redis_src = require "resty.hotffi.code.redis"
local store = require "resty.hotffi.code.store"
local worker = require "resty.hotffi.code.worker"

local format = string.format
local log = ngx.log

local NOTICE = ngx.NOTICE

local _M = { version = "0.1.0" }


-- Signs a record that makes the version before the current one current
-- on Redis, for every server of the fleet.  The version is taken from
-- this instance's own history (versions it accepted), passing over
-- versions a worker refused, and its bundle from this instance's shared
-- dict, which Redis gets again: writers of Redis cannot choose it.
local function roll_back_redis(conf)
    local v = store.previous()
    local text = store.text(v)
    if not text then
        return nil, "no previous version"
    end
    local b, err = bundle.parse(text, conf.secret, { max_size = #text })
    if not b then
        return nil, format("version \"%s\": %s", v, err)
    end
    -- the record is swapped only if Redis still holds the one read here
    local expected
    expected, err = redis_src.current(conf.redis)
    if not expected then
        return nil, err
    end
    -- a sequence above everything seen: now in ms (so that a record
    -- replayed into Redis cannot hold it down), the record Redis holds,
    -- and the highest this instance accepted
    local seq = bundle.next_sequence(host.now() * 1000, expected,
                                     conf.secret, store.high_sequence())
    local record
    record, err = bundle.sign_record(conf.secret, v, seq, b.mac)
    if not record then
        return nil, err
    end
    local prev
    prev, err = redis_src.rollback(conf.redis, expected, record, v, text)
    if not prev then
        return nil, err
    end
    log(NOTICE, "code rolled back to version \"", prev, "\" on ",
        conf_mod.source_name(conf), " (sequence ", seq, ")")
    leader.look(false)     -- the notification may come later
    worker.sync()
    return prev
end


-- Makes the previous version current (configuration `conf`); returns its
-- name, or nil and a message.  Context: Redis source: where cosockets
-- work; dir source: any.
function _M.run(conf)
    if conf.redis then
        return roll_back_redis(conf)
    end
    local prev, err = store.roll_back()
    if prev then
        log(NOTICE, "code rolled back to version \"", prev, "\"")
        worker.sync()
    end
    return prev, err
end


return _M
