-- resty.hotffi.code.store -- the code versions held in the shared dict.
--
-- The versions of one nginx instance in its lua_shared_dict: the stamp of
-- the current version, bundles, history, refused versions and the Redis
-- source's replay guard.
--
-- The stamp says what every worker runs: the current command of
-- resty.hotffi.bus, {op = "apply", version = V, ran = R}, numbered; R is
-- the version workers ran when V was made current (what a worker that
-- skipped versions compares V against; see resty.hotffi.code.worker).
-- Workers follow it: a new number is a new stamp, also for a version
-- made current again.  Changes that read before they write are made
-- under resty.hotffi.code.lock.

local bus = require "resty.hotffi.bus"
local bundle = require "resty.hotffi.code.bundle"
local lock = require "resty.hotffi.code.lock"

local concat = table.concat
local format = string.format
local ipairs = ipairs
local command_of = bus.command_of
local remove = table.remove

local _M = { version = "0.1.0" }

-- lua_shared_dict keys
local K_RAN = "ran"        -- the version a worker applied last
local K_BUNDLE = "b:"      -- b:<version>: the bundle's text
local K_HISTORY = "h"      -- versions published, oldest first
local K_ROLLED_BACK_FROM = "rolled_back_from"
                           -- dir source: the version rolled back from
local K_REFUSED = "refused:"
                           -- refused:<version>: a worker refused it (why)
local K_SEQ = "seq"        -- Redis source: the highest record sequence
                           -- accepted (replays below it are refused)
local K_RECORD = "rec"     -- Redis source: the record accepted last

local REFUSED_TTL = 86400

local conf, dict, pid
local commands             -- the bus over the dict: the stamp


-- Starts the store over ngx.shared[c.dict] for configuration c.
function _M.init(c)
    conf, dict, pid = c, ngx.shared[c.dict], ngx.worker.pid()
    commands = bus.new(dict, "resty.hotffi.code")
end


-- The stamp as stored (a string: compare it to see a new one), or nil
-- before a first version.
function _M.stamp()
    return commands:current()
end


-- The version of stamp `stamp`, and the version workers ran when it was
-- made current (nil if none).
function _M.stamp_version(stamp)
    local cmd = command_of(stamp)
    return cmd and cmd.version
end


function _M.stamp_ran(stamp)
    local cmd = command_of(stamp)
    return cmd and cmd.ran
end


-- The current version's name, or nil.
function _M.current()
    return _M.stamp_version(commands:current())
end


-- The versions published, oldest first (a new table).
function _M.history()
    local out = {}
    for v in (dict:get(K_HISTORY) or ""):gmatch("%S+") do
        out[#out + 1] = v
    end
    return out
end


-- The bundle text of a stored version, or nil.
function _M.text(version)
    return version and dict:get(K_BUNDLE .. version)
end


-- A stored version, parsed, or nil.
function _M.bundle(version)
    local text = _M.text(version)
    return text and bundle.parse(text, nil, { trusted = true,
                                              max_size = #text }) or nil
end


-- The version a worker applied last (what workers run), or nil.
function _M.ran()
    return dict:get(K_RAN)
end


function _M.set_ran(version)
    dict:set(K_RAN, version)
end


-- The version the dir source was rolled back from, or nil.
function _M.rolled_back_from()
    return dict:get(K_ROLLED_BACK_FROM)
end


-- Remembers that a worker refused `version`, and why.
function _M.refuse(version, err)
    dict:set(K_REFUSED .. version, err, REFUSED_TTL)
end


function _M.refused(version)
    return dict:get(K_REFUSED .. version)
end


-- The Redis source's record accepted last, and the highest sequence.
function _M.record()
    return dict:get(K_RECORD)
end


function _M.high_sequence()
    return dict:get(K_SEQ)
end


local function set_stamp(version)
    return commands:set_current{ op = "apply", version = version,
                                 ran = dict:get(K_RAN) }
end


-- Why a current-version record of the Redis source must not be
-- accepted, or nil: its sequence is below the highest accepted (a
-- replay), or equal to it in another record.
function _M.replayed(rec, record)
    local high = dict:get(K_SEQ)
    if not high or rec.sequence > high
       or rec.sequence == high and record == dict:get(K_RECORD)
    then
        return nil
    end
    if rec.sequence == high then
        return format("replayed record: sequence %d was accepted already"
                      .. " for another record", rec.sequence)
    end
    return format("replayed record: sequence %d is older than %d, the"
                  .. " newest this instance accepted (an older record"
                  .. " written back to redis?); only a rollback signed with"
                  .. " the secret goes back", rec.sequence, high)
end


local function publish_locked(version, text, rec, record)
    local key = K_BUNDLE .. version
    if rec then
        local err = _M.replayed(rec, record)
        if err then
            return nil, err
        end
    end
    local current = _M.current() == version and dict:get(key) == text
    if not current then
        if dict:get(key) ~= text then
            dict:delete(K_REFUSED .. version) -- new content, old name
        end
        local ok, err = dict:safe_set(key, text)
        if not ok then
            return nil, format("lua_shared_dict \"%s\": cannot store"
                               .. " version \"%s\" (%d bytes): %s",
                               conf.dict, version, #text, err)
        end
        -- with Redis, a version published again is a rollback to it: the
        -- versions after it go, as they went from Redis' history
        local kept, after = {}, false
        for _, v in ipairs(_M.history()) do
            if v == version then
                after = rec ~= nil
            elseif after then
                dict:delete(K_BUNDLE .. v)
            else
                kept[#kept + 1] = v
            end
        end
        kept[#kept + 1] = version
        while #kept > conf.history do
            dict:delete(K_BUNDLE .. remove(kept, 1))
        end
        dict:set(K_HISTORY, concat(kept, " "))
        dict:delete(K_ROLLED_BACK_FROM)
        local serial, err2 = set_stamp(version)
        if not serial then
            return nil, err2
        end
    end
    if rec then
        dict:set(K_SEQ, rec.sequence)
        dict:set(K_RECORD, record)
    end
    return not current
end


-- Stores a checked bundle and makes it current; with the Redis source,
-- `rec` is its current-version record (text `record`), checked against
-- replays again here, under the lock, and remembered.  Returns true,
-- false if it was current already, or nil and a message.
function _M.publish(version, text, rec, record)
    return lock.run(dict, conf.dict, pid, publish_locked, version, text,
                    rec, record)
end


-- The version to roll back to: the newest of the history before the
-- current one that no worker refused.  Returns it and the history up to
-- it, or nil.
function _M.previous()
    local hist = _M.history()
    local from = _M.current()
    while hist[1] and (hist[#hist] == from or _M.refused(hist[#hist])) do
        remove(hist)
    end
    return hist[#hist], hist
end


local function roll_back_locked()
    local from = _M.current()
    local v, hist = _M.previous()
    if not v then
        return nil, "no previous version"
    end
    if not dict:get(K_BUNDLE .. v) then
        return nil, format("version \"%s\" is no longer in the shared"
                           .. " dict", v)
    end
    local keep = {}
    for _, x in ipairs(hist) do
        keep[x] = true
    end
    for _, x in ipairs(_M.history()) do
        if not keep[x] then
            dict:delete(K_BUNDLE .. x)
        end
    end
    dict:set(K_HISTORY, concat(hist, " "))
    dict:set(K_ROLLED_BACK_FROM, from)
    local serial, err = set_stamp(v)
    if not serial then
        return nil, err
    end
    return v
end


-- Makes the previous version current in this instance (the dir source):
-- the versions after it leave the history.  Returns it, or nil and a
-- message.
function _M.roll_back()
    return lock.run(dict, conf.dict, pid, roll_back_locked)
end


return _M
