-- resty.hotffi.code -- hot reload of Lua code in running nginx workers,
-- from a directory or, for a whole fleet, from Redis.  See
-- docs/code-reload.md.
--
-- How a version travels:
--
--   source (dir, Redis) --leader--> lua_shared_dict --each worker--> VM
--
-- One worker per nginx instance, the leader (worker 0), watches the
-- source: it reads the directory every `interval` seconds, or listens on
-- Redis pub/sub and asks Redis every `interval` seconds as a fallback.  A
-- new version is checked (signature, syntax, FFI rules) and stored in the
-- shared dict with a new stamp.  Every worker compares the stamp with the
-- version it runs every `poll` seconds and before each request it serves
-- through handler()/require(), and applies a new version atomically (see
-- resty.hotffi.code.loader).  Workers never talk to the source, so a
-- version reaches them from the dict in any phase, without I/O.

local bundle = require "resty.hotffi.code.bundle"
local control = require "resty.hotffi.control"
local dir_src = require "resty.hotffi.code.dir"
local loader = require "resty.hotffi.code.loader"
local redis_src = require "resty.hotffi.code.redis"

local ngx = ngx
local concat = table.concat
local error = error
local exiting = ngx.worker.exiting
local floor = math.floor
local format = string.format
local getmetatable = getmetatable
local get_phase = ngx.get_phase
local gsub = string.gsub
local lower = string.lower
local io_open = io.open
local ipairs = ipairs
local loaded = package.loaded
local log = ngx.log
local match = string.match
local min = math.min
local now = ngx.now
local null = ngx.null
local pairs = pairs
local pcall = pcall
local remove = table.remove
local setmetatable = setmetatable
local sleep = ngx.sleep
local sort = table.sort
local sub = string.sub
local timer_at = ngx.timer.at
local timer_every = ngx.timer.every
local tonumber = tonumber
local tostring = tostring
local type = type
local update_time = ngx.update_time
local worker_id = ngx.worker.id
local worker_pid = ngx.worker.pid

local ERR = ngx.ERR
local NOTICE = ngx.NOTICE
local WARN = ngx.WARN


local _M = { version = "0.1.0" }

-- lua_shared_dict keys
local K_STAMP = "v"        -- "<serial> <version> <ran>": what every worker
                           -- runs, and K_RAN when it was made current
local K_RAN = "ran"        -- the version a worker applied last
local K_SERIAL = "serial"
local K_BUNDLE = "b:"      -- b:<version>: the bundle's text
local K_HISTORY = "h"      -- versions published, oldest first
local K_PIN = "pin"        -- dir source: the content rolled back from
local K_SOURCE = "src"     -- the source's state, written by the leader
local K_WORKER = "w:"      -- w:<pid>: one worker's state
local K_BAD = "bad:"       -- bad:<version>: a worker refused it (why)
local K_LOCK = "lock"
local K_SEQ = "seq"        -- Redis source: the highest record sequence
                           -- accepted (replays below it are refused)
local K_RECORD = "rec"     -- Redis source: the record accepted last

local STATUS_EVERY = 1     -- seconds between a worker's status updates
local STATUS_TTL = 10      -- a worker's status outlives it this long
local LOG_AGAIN = 60       -- seconds between error lines of one outage
local BAD_TTL = 86400
local LOCK_TTL = 1
local LOCK_SPINS = 100000
local MAX_BACKOFF = 1      -- seconds between Redis reconnections at most

local DEFAULTS = {
    interval = 2,
    poll = 0.1,
    wait = 3,
    history = 5,
    max_size = bundle.DEFAULT_MAX_SIZE,
}

local YIELDABLE = {
    rewrite = true, access = true, content = true, timer = true,
}

local ARRAY = {}           -- metatable: encode this table as a JSON array


local conf                 -- the configuration (see configure)
local dict                 -- ngx.shared[conf.dict]
local pid

-- this worker's state
local applied_stamp        -- the stamp it applied, nil before the first
local applied_version
local applied_at
local refused_stamp        -- the stamp it refused last, so as not to retry
local cur_error            -- why the wanted version is not running
local last_error, last_error_version, last_error_at
local status_at = 0

-- the leader's view of the source
local src_error, src_since, src_logged = nil, nil, 0
local src_checked_at
local src_refused = {}     -- version (dir), record (Redis) -> message;
                           -- not fetched again
local src_last_refused     -- "version: message"
local checking, check_pending, check_force


local function array(t)
    return setmetatable(t, ARRAY)
end


local function stamp_version(stamp)
    return stamp and match(stamp, "^%d+ (%S+)")
end


local function stamp_ran(stamp)
    local ran = stamp and match(stamp, "^%d+ %S+ (%S+)$")
    return ran ~= "-" and ran or nil
end


local function source_name()
    if conf.redis then
        return format("redis %s \"%s\"", redis_src.where(conf.redis),
                      conf.redis.prefix)
    end
    return format("dir \"%s\"", conf.dir)
end


-- Tab-separated records in the dict (no JSON library needed).
local function encode_fields(fields, n)
    local out = {}
    for i = 1, n do
        local v = fields[i]
        out[i] = v == nil and "" or gsub(tostring(v), "[\t\r\n]", " ")
    end
    return concat(out, "\t")
end


local function decode_fields(s)
    local out, i = {}, 1
    for field in (s .. "\t"):gmatch("([^\t]*)\t") do
        out[i] = field ~= "" and field or nil
        i = i + 1
    end
    return out
end


-- A critical section over the shared dict, across workers.  Sections are
-- short and never yield.
local function locked(f, ...)
    for _ = 1, LOCK_SPINS do
        local ok, err = dict:add(K_LOCK, pid, LOCK_TTL)
        if ok then
            local pok, r1, r2 = pcall(f, ...)
            dict:delete(K_LOCK)
            if not pok then
                error(r1, 0)
            end
            return r1, r2
        end
        if err ~= "exists" then
            return nil, format("lua_shared_dict \"%s\": add() failed: %s",
                               conf.dict, err)
        end
    end
    return nil, format("lua_shared_dict \"%s\": lock busy", conf.dict)
end


local function history()
    local out = {}
    for v in (dict:get(K_HISTORY) or ""):gmatch("%S+") do
        out[#out + 1] = v
    end
    return out
end


local function set_stamp(version)
    local serial = dict:incr(K_SERIAL, 1, 0)
    dict:set(K_STAMP, format("%d %s %s", serial, version,
                             dict:get(K_RAN) or "-"))
end


-- A stored version, parsed, or nil.
local function stored_bundle(version)
    local text = version and dict:get(K_BUNDLE .. version)
    return text and bundle.parse(text, nil, { trusted = true,
                                              max_size = #text }) or nil
end


-- What a worker that runs some version compares a new one against, for
-- the modules it has not loaded itself: the version workers ran when the
-- new one was made current (K_RAN then).  So a worker that skipped
-- versions judges a module's FFI use as the workers that did not skip
-- them do (see resty.hotffi.code.loader).  A worker with no version loads
-- everything fresh.
local function baseline(ran)
    if not applied_version or ran == nil then
        return nil
    end
    return stored_bundle(ran)
end


-- Why a current-version record of the Redis source must not be
-- accepted, or nil: its sequence is below the highest accepted (a
-- replay), or equal to it in another record.
local function replayed(rec, record)
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


-- Stores a checked bundle and makes it current; with the Redis source,
-- `rec` is its current-version record (text `record`), checked against
-- replays again here, under the lock, and remembered.  Returns true,
-- false if it was current already, or nil and a message.  Call it locked.
local function publish_locked(version, text, rec, record)
    local key = K_BUNDLE .. version
    if rec then
        local err = replayed(rec, record)
        if err then
            return nil, err
        end
    end
    local current = stamp_version(dict:get(K_STAMP)) == version
                    and dict:get(key) == text
    if not current then
        if dict:get(key) ~= text then
            dict:delete(K_BAD .. version)  -- new content under an old name
        end
        local ok, err = dict:safe_set(key, text)
        if not ok then
            return nil, format("lua_shared_dict \"%s\": cannot store"
                               .. " version \"%s\" (%d bytes): %s",
                               conf.dict, version, #text, err)
        end
        -- with Redis, a version published again is a rollback to it: the
        -- versions after it go, as they went from Redis' history
        local hist, kept, after = history(), {}, false
        for _, v in ipairs(hist) do
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
        dict:delete(K_PIN)
        set_stamp(version)
    end
    if rec then
        dict:set(K_SEQ, rec.sequence)
        dict:set(K_RECORD, record)
    end
    return not current
end


local function write_status()
    local pinned = {}
    for name in pairs(loader.pinned()) do
        pinned[#pinned + 1] = name
    end
    sort(pinned)
    local stamp = dict:get(K_STAMP)
    dict:set(K_WORKER .. pid, encode_fields({
        worker_id() or 0, applied_version, stamp_version(stamp),
        cur_error, last_error, last_error_version, last_error_at,
        applied_at, now(), loader.count(), concat(pinned, ","),
    }, 11), STATUS_TTL)
    status_at = now()
end

local WORKER_FIELDS = {
    "id", "version", "wanted", "error", "last_error", "last_error_version",
    "last_error_at", "applied_at", "updated_at", "modules", "pinned",
}
local NUMERIC = {
    id = true, last_error_at = true, applied_at = true, updated_at = true,
    modules = true, checked_by = true, error_since = true,
    checked_at = true,
}


-- A status record from the dict (see encode_fields) as a table for the
-- admin's JSON: field `names[i]` holds the i-th value, a number where
-- NUMERIC says so, null where it was empty.
local function decode_record(text, names)
    local f = decode_fields(text)
    local r = {}
    for i, k in ipairs(names) do
        local v = f[i]
        if NUMERIC[k] then
            v = tonumber(v)
        end
        r[k] = v == nil and null or v
    end
    return r
end


local function write_source_status()
    dict:set(K_SOURCE, encode_fields({
        conf.redis and "redis" or "dir", source_name(), pid, src_error,
        src_since, src_checked_at, src_last_refused,
    }, 7))
end

local SOURCE_FIELDS = {
    "kind", "name", "checked_by", "error", "error_since", "checked_at",
    "last_refused",
}


local function record_error(version, err)
    last_error, last_error_version, last_error_at = err, version, now()
end


-- Applies one version from the dict, made current while version `ran`
-- was what workers ran.  Returns true, or nil and a message.
local function try_apply(version, ran)
    local text = dict:get(K_BUNDLE .. version)
    if not text then
        return nil, format("version \"%s\" is not in lua_shared_dict"
                           .. " \"%s\"", version, conf.dict)
    end
    local b, err = bundle.parse(text, nil, { trusted = true,
                                             max_size = #text })
    if not b then
        return nil, err
    end
    if b.version ~= version then
        return nil, format("the bundle stored as \"%s\" says version"
                           .. " \"%s\"", version, b.version)
    end
    update_time()
    local t0 = now()
    local ok, info = loader.apply(b, baseline(ran))
    if not ok then
        return nil, info
    end
    update_time()
    local from = applied_version
    applied_version, applied_at = version, now()
    dict:set(K_RAN, version)
    log(NOTICE, "code version \"", version, "\" applied (was \"",
        from or "none", "\"): ", info.loaded, " of ", info.modules,
        " modules loaded in ", format("%.1f", (now() - t0) * 1000), " ms")
    return true
end


local function apply_stamp(stamp)
    local version = stamp_version(stamp)
    local ok, err = try_apply(version, stamp_ran(stamp))
    if ok then
        applied_stamp, refused_stamp, cur_error = stamp, nil, nil
    else
        refused_stamp, cur_error = stamp, err
        record_error(version, err)
        dict:set(K_BAD .. version, err, BAD_TTL)
        log(ERR, "code version \"", version, "\" refused, still serving \"",
            applied_version or "none", "\": ", err)
    end
    write_status()
    return ok, err
end


-- Brings this worker to the version of the stamp; cheap when it is there.
local function sync()
    local stamp = dict:get(K_STAMP)
    if stamp == nil or stamp == applied_stamp or stamp == refused_stamp
       or loader.busy()
    then
        return
    end
    apply_stamp(stamp)
end


local function source_up()
    src_checked_at = now()
    if src_error then
        log(NOTICE, source_name(), " is reachable again after ",
            format("%.1f", now() - src_since), " s")
        src_error, src_since = nil, nil
    end
    write_source_status()
end


local function source_down(err)
    local t = now()
    if not src_error or t - src_logged >= LOG_AGAIN then
        log(ERR, source_name(), ": ", err, "; workers keep serving code",
            " version \"", applied_version or "none", "\"")
        src_logged = t
    end
    src_since = src_since or t
    src_error = err
    write_source_status()
end


-- `key` is what is not fetched again: the record (Redis) or the version.
local function refuse_at_source(version, err, key)
    src_refused[key or version] = err
    src_last_refused = version .. ": " .. err
    record_error(version, err)
    log(ERR, "code version \"", version, "\" from ", source_name(),
        " refused, still serving \"", applied_version or "none", "\": ",
        err)
    write_source_status()
    write_status()
end


-- Checks a bundle from the source and publishes it to the workers; with
-- Redis, `rec` is the checked current-version record (text `record`).
local function accept(text, name, rec, record)
    local b, err = bundle.parse(text, conf.secret, {
        trusted = not conf.secret, max_size = conf.max_size,
    })
    if b and b.version ~= name then
        err = format("the bundle says version \"%s\", the source names it"
                     .. " \"%s\"", b.version, name)
    end
    if b and not err and rec and lower(b.mac) ~= lower(rec.bundle_mac) then
        err = "the current-version record names another bundle of this"
              .. " version (another signature)"
    end
    if b and not err then
        err = loader.precheck(b, baseline(dict:get(K_RAN)))
    end
    if err then
        return refuse_at_source(name, err, record)
    end
    local ok
    ok, err = locked(publish_locked, b.version, text, rec, record)
    if ok == nil then
        return refuse_at_source(name, err, record)
    end
    if ok then
        src_refused = {}     -- the source has moved on from them
        log(NOTICE, "code version \"", b.version, "\" published from ",
            source_name(), ": ", #b.names, " modules, ", #text, " bytes")
        sync()               -- this worker need not wait for its tick
    end
end


-- Looks at Redis: reads the current-version record (small, bounded) and,
-- only when it is new, valid and not a replay, the bundle it names, whose
-- size Redis announces before it is read.  A notification costs a record
-- read, not a bundle read.
local function check_redis(force)
    local rec, refusal
    local res, err = redis_src.fetch(conf.redis, function(record)
        if not force and (record == dict:get(K_RECORD)
                          or src_refused[record] ~= nil)
        then
            return nil
        end
        local e, name
        rec, e, name = bundle.parse_record(record, conf.secret)
        if rec then
            e = replayed(rec, record)
            name = rec.version
        end
        if e then
            refusal = { name or "?", e }
            return nil
        end
        return rec.version
    end, conf.max_size)
    if not res then
        return source_down(err)
    end
    source_up()
    if res.current == false then
        -- not read, so known by its size only
        if force or not src_refused[res.refused] then
            refuse_at_source("?", res.refused, res.refused)
        end
        return
    end
    if not res.current then
        return
    end
    if refusal then
        return refuse_at_source(refusal[1], refusal[2], res.current)
    end
    if res.refused then
        return refuse_at_source(rec.version, res.refused, res.current)
    end
    if res.text == nil then
        return
    end
    if res.text == false then
        return refuse_at_source(rec.version, "its bundle is missing from"
                                             .. " redis", res.current)
    end
    accept(res.text, rec.version, rec, res.current)
end


local function check_dir()
    local text, version = dir_src.read(conf.dir, ngx.time(), conf.max_size)
    if not text then
        return source_down(version)
    end
    source_up()
    if version == stamp_version(dict:get(K_STAMP))
       or version == dict:get(K_PIN) or src_refused[version]
    then
        return
    end
    accept(text, version)
end


-- One look at the source at a time per worker; a request for another
-- while one runs makes it run again.
local function check_source(force)
    if checking then
        check_pending = true
        check_force = check_force or force
        return
    end
    checking = true
    repeat
        check_pending = false
        local ok, err = pcall(conf.redis and check_redis or check_dir,
                              force)
        if not ok then
            log(ERR, "checking ", source_name(), " failed: ", err)
        end
        force, check_force = check_force, false
    until not check_pending
    checking = false
end


local function tick(premature)
    if premature then
        dict:delete(K_WORKER .. pid)
        return
    end
    local ok, err = pcall(sync)
    if not ok then
        log(ERR, "code sync failed: ", err)
    end
    if now() - status_at >= STATUS_EVERY then
        write_status()
    end
end


local function poll_source(premature)
    if premature then
        return
    end
    check_source(false)
end


local function subscriber(premature)
    if premature then
        return
    end
    local backoff = 0.1
    local handlers = {
        exiting = exiting,
        up = function()
            backoff = 0.1
            source_up()
            check_source(false)   -- whatever was missed while away
        end,
        -- the name it carries is only a hint: the record says what is
        -- current, and an unchanged record costs no bundle read
        message = function()
            check_source(false)
        end,
    }
    while not exiting() do
        local err = redis_src.subscribe(conf.redis, handlers)
        if exiting() then
            break
        end
        source_down(err or "subscription ended")
        sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)
    end
end


local function wait_first(level)
    if YIELDABLE[get_phase()] then
        local deadline = now() + conf.wait
        while not applied_version and now() < deadline do
            sleep(0.01)
            sync()
        end
    end
    if not applied_version then
        error("resty.hotffi.code: no code version loaded yet"
              .. (cur_error and ": " .. cur_error or ""), level + 1)
    end
end


local function current(name, level)
    if not dict then
        error("resty.hotffi.code: not started: call init_worker() in"
              .. " init_worker_by_lua*", level + 1)
    end
    if conf.dev then
        check_source(false)
    end
    sync()
    if not applied_version then
        wait_first(level + 1)
    end
    if not loader.has(name) then
        error(format("resty.hotffi.code: module \"%s\" is not in code"
                     .. " version \"%s\"", name, applied_version),
              level + 1)
    end
    return loaded[name]
end


-- Configuration -----------------------------------------------------------

local function number_opt(opts, key, positive)
    local v = opts[key]
    if v == nil then
        return DEFAULTS[key]
    end
    if type(v) ~= "number" or v ~= v or (positive and v <= 0) then
        error(format("resty.hotffi.code: bad option %s: %s", key,
                     tostring(v)), 3)
    end
    return v
end


local function read_secret(path)
    local f, err = io_open(path, "rb")
    if not f then
        error("resty.hotffi.code: cannot read secret_file: " .. err, 3)
    end
    local s = f:read("*a") or ""
    f:close()
    return (gsub(s, "%s+$", ""))
end


local function redis_conf(r)
    if type(r) ~= "table" then
        error("resty.hotffi.code: bad option redis: a table expected", 3)
    end
    local c = {
        host = r.host or "127.0.0.1",
        port = r.port or 6379,
        path = r.path,
        password = r.password,
        db = r.db,
        prefix = r.prefix or "hotffi:code",
        timeout = r.timeout or 1,
    }
    if type(c.host) ~= "string" or type(c.port) ~= "number"
       or type(c.prefix) ~= "string" or c.prefix == ""
       or type(c.timeout) ~= "number" or c.timeout <= 0
       or c.path ~= nil and type(c.path) ~= "string"
       or c.password ~= nil and type(c.password) ~= "string"
       or c.db ~= nil and type(c.db) ~= "number"
    then
        error("resty.hotffi.code: bad option redis: host (string), port,"
              .. " db, timeout (numbers), prefix, path, password (strings)",
              3)
    end
    return c
end


-- Checks and stores the options; see docs/code-reload.md.  Any phase; in
-- init_by_lua* it runs as the master's user, who may read secret_file.
function _M.configure(opts)
    if dict then
        error("resty.hotffi.code.configure: already started", 2)
    end
    if type(opts) ~= "table" then
        error("resty.hotffi.code: an options table expected", 2)
    end
    if type(opts.dict) ~= "string" or not ngx.shared[opts.dict] then
        error(format("resty.hotffi.code: bad option dict: no"
                     .. " lua_shared_dict \"%s\"", tostring(opts.dict)), 2)
    end
    if (opts.dir == nil) == (opts.redis == nil) then
        error("resty.hotffi.code: give one source: dir or redis", 2)
    end
    local c = {
        dict = opts.dict,
        dev = opts.dev and true or false,
        interval = number_opt(opts, "interval", true),
        poll = number_opt(opts, "poll", true),
        wait = number_opt(opts, "wait"),
        history = number_opt(opts, "history", true),
        max_size = number_opt(opts, "max_size", true),
    }
    c.history = floor(c.history) >= 2 and floor(c.history) or 2
    if opts.dir ~= nil then
        if type(opts.dir) ~= "string" or opts.dir == "" then
            error("resty.hotffi.code: bad option dir: a path expected", 2)
        end
        c.dir = gsub(opts.dir, "(.)/+$", "%1")
    else
        c.redis = redis_conf(opts.redis)
        if c.dev then
            error("resty.hotffi.code: option dev is for the dir source", 2)
        end
        local secret = opts.secret
        if opts.secret_file ~= nil then
            secret = read_secret(opts.secret_file)
        end
        if type(secret) ~= "string" or secret == "" then
            error("resty.hotffi.code: the redis source needs a secret"
                  .. " (options secret or secret_file)", 2)
        end
        c.secret = secret
    end
    conf = c
    return true
end


-- Starts this worker: applies the current version and starts the timers.
-- Context: init_worker_by_lua*.
function _M.init_worker(opts)
    if get_phase() ~= "init_worker" then
        error("resty.hotffi.code.init_worker: call it in"
              .. " init_worker_by_lua*", 2)
    end
    if dict then
        error("resty.hotffi.code.init_worker: already started", 2)
    end
    if opts ~= nil then
        _M.configure(opts)
    elseif not conf then
        error("resty.hotffi.code.init_worker: no options, and configure()"
              .. " was not called", 2)
    end
    dict = ngx.shared[conf.dict]
    pid = worker_pid()
    local leader = (worker_id() or 0) == 0
    if conf.dir then
        check_source(false)      -- files can be read here
    end
    local stamp = dict:get(K_STAMP)
    if stamp then
        apply_stamp(stamp)
        -- a new worker that cannot load the current version serves the
        -- newest older one it can
        local hist = history()
        for i = #hist, 1, -1 do
            if applied_version then
                break
            end
            if hist[i] ~= stamp_version(stamp) and try_apply(hist[i]) then
                log(WARN, "code version \"", hist[i], "\" served instead")
            end
        end
    end
    write_status()
    local ok, err = timer_every(conf.poll, tick)
    if not ok then
        error("resty.hotffi.code: ngx.timer.every() failed: " .. err, 2)
    end
    if leader then
        if conf.redis then
            ok, err = timer_at(0, subscriber)
            if ok then
                ok, err = timer_at(0, poll_source)
            end
        end
        if ok then
            ok, err = timer_every(conf.interval, poll_source)
        end
        if not ok then
            error("resty.hotffi.code: ngx.timer failed: " .. err, 2)
        end
        write_source_status()
    end
    return true
end


-- Using the code ----------------------------------------------------------

-- The current version of module `name` of the bundle.  Context: wherever
-- the module may be used; it waits for a first version (up to `wait`
-- seconds) only where ngx.sleep works.
function _M.require(name)
    if type(name) ~= "string" then
        error("resty.hotffi.code.require: a module name expected", 2)
    end
    local m = current(name, 2)    -- not a tail call: keeps error levels
    return m
end


local handlers = {}

-- A function that calls the current version of module `name` (a function,
-- or a table's field `field`, default "handler") with its arguments.
function _M.handler(name, field)
    if type(name) ~= "string" then
        error("resty.hotffi.code.handler: a module name expected", 2)
    end
    if field ~= nil and type(field) ~= "string" then
        error("resty.hotffi.code.handler: bad field name", 2)
    end
    local key = field and name .. "\0" .. field or name
    local h = handlers[key]
    if h then
        return h
    end
    local fname = field or "handler"
    h = function(...)
        local m = current(name, 2)
        if type(m) == "function" then
            return m(...)
        end
        local f = type(m) == "table" and m[fname]
        if not f then
            error(format("resty.hotffi.code: module \"%s\" of code version"
                         .. " \"%s\" has no function \"%s\"", name,
                         applied_version, fname), 2)
        end
        return f(...)
    end
    handlers[key] = h
    return h
end


-- The version this worker runs, and the one it should run.
function _M.current_version()
    return applied_version, dict and stamp_version(dict:get(K_STAMP))
end


-- Administration ----------------------------------------------------------

-- The whole instance's state, from the shared dict.
function _M.status()
    if not dict then
        return nil, "not started"
    end
    local out = {
        version = stamp_version(dict:get(K_STAMP)) or null,
        history = array(history()),
        rolled_back_from = dict:get(K_PIN) or null,
        workers = array({}),
    }
    local src = dict:get(K_SOURCE)
    if src then
        out.source = decode_record(src, SOURCE_FIELDS)
    end
    for _, key in ipairs(dict:get_keys(0)) do
        if sub(key, 1, #K_WORKER) == K_WORKER then
            local text = dict:get(key)
            if text then
                local w = decode_record(text, WORKER_FIELDS)
                w.pid = tonumber(sub(key, #K_WORKER + 1))
                local pins = array({})
                if w.pinned ~= null then
                    for n in w.pinned:gmatch("[^,]+") do
                        pins[#pins + 1] = n
                    end
                end
                w.pinned = pins
                out.workers[#out.workers + 1] = w
            end
        end
    end
    sort(out.workers, function(a, b)
        if a.id ~= b.id then
            return a.id < b.id
        end
        return a.pid < b.pid
    end)
    return out
end


-- Signs a record that makes the version before the current one current
-- on Redis, for every server of the fleet.  The version is taken from
-- this instance's own history (versions it accepted), passing over
-- versions a worker refused, and its bundle from this instance's shared
-- dict, which Redis gets again: writers of Redis cannot choose it.
local function rollback_redis()
    local hist = history()
    local from = stamp_version(dict:get(K_STAMP))
    while hist[1] and (hist[#hist] == from
                       or dict:get(K_BAD .. hist[#hist]))
    do
        remove(hist)
    end
    local v = hist[#hist]
    local text = v and dict:get(K_BUNDLE .. v)
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
    update_time()
    local seq = floor(now() * 1000)
    local rec = bundle.parse_record(expected, conf.secret)
    local high = dict:get(K_SEQ) or 0
    if rec and rec.sequence > high then
        high = rec.sequence
    end
    if seq <= high then
        seq = high + 1
    end
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
        source_name(), " (sequence ", seq, ")")
    check_source(false)     -- the notification may come later
    sync()
    return prev
end


-- Makes the previous version current: on Redis for every server of the
-- fleet (context: where cosockets work), or in this nginx for the dir
-- source until a file changes.  Returns its name, or nil and a message.
function _M.rollback()
    if not dict then
        return nil, "not started"
    end
    if conf.redis then
        return rollback_redis()
    end
    local prev, err = locked(function()
        local hist = history()
        local from = remove(hist)
        while hist[1] and dict:get(K_BAD .. hist[#hist]) do
            remove(hist)        -- workers refused it: pass over it
        end
        local v = hist[#hist]
        if not v then
            return nil, "no previous version"
        end
        if not dict:get(K_BUNDLE .. v) then
            return nil, format("version \"%s\" is no longer in the"
                               .. " shared dict", v)
        end
        local keep = {}
        for _, x in ipairs(hist) do
            keep[x] = true
        end
        for _, x in ipairs(history()) do
            if not keep[x] then
                dict:delete(K_BUNDLE .. x)
            end
        end
        dict:set(K_HISTORY, concat(hist, " "))
        dict:set(K_PIN, from)
        set_stamp(v)
        return v
    end)
    if prev then
        log(NOTICE, "code rolled back to version \"", prev, "\"")
        sync()
    end
    return prev, err
end


-- Looks at the source now.  Context: where cosockets work (Redis).
function _M.check()
    if not dict then
        return nil, "not started"
    end
    src_refused = {}
    check_source(true)
    sync()
    return true
end


-- A small JSON encoder: lua-cjson cannot tell an empty array.
local JSON_ESC = {
    ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
    ["\t"] = "\\t",
}

local function json(v, out)
    local t = type(v)
    if v == nil or v == null then
        out[#out + 1] = "null"
    elseif t == "boolean" then
        out[#out + 1] = tostring(v)
    elseif t == "number" then
        out[#out + 1] = v == floor(v) and v < 2 ^ 53 and v > -2 ^ 53
                        and format("%d", v) or format("%.3f", v)
    elseif t == "string" then
        out[#out + 1] = '"' .. gsub(v, '[%c"\\]', function(c)
            return JSON_ESC[c] or format("\\u%04x", c:byte())
        end) .. '"'
    elseif t == "table" and getmetatable(v) == ARRAY then
        out[#out + 1] = "["
        for i, x in ipairs(v) do
            if i > 1 then
                out[#out + 1] = ","
            end
            json(x, out)
        end
        out[#out + 1] = "]"
    elseif t == "table" then
        local keys = {}
        for k in pairs(v) do
            keys[#keys + 1] = tostring(k)
        end
        sort(keys)
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
            if i > 1 then
                out[#out + 1] = ","
            end
            json(k, out)
            out[#out + 1] = ":"
            json(v[k], out)
        end
        out[#out + 1] = "}"
    else
        json(tostring(v), out)
    end
    return out
end

_M.json = function(v) return concat(json(v, {})) end


local function reply(status, body)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    ngx.say(_M.json(body))
end


-- The admin handler.  Context: content_by_lua*.
--   GET            the status of the instance and of each worker
--   POST ?action=rollback   make the previous version current
--   POST ?action=check      look at the source now
-- opts.token (required): requests need "Authorization: Bearer <token>";
-- false serves without authentication; nil (a token os.getenv() did not
-- find) answers 503 and says what to add -- the scheme of
-- resty.hotffi.admin (resty.hotffi.control).  Also allow 127.0.0.1 only.
function _M.admin(opts)
    if get_phase() ~= "content" then
        error("resty.hotffi.code.admin: call it in content_by_lua*", 2)
    end
    local ok, status, why = control.authorize(opts, "resty.hotffi.code.admin")
    if not ok then
        return reply(status, { error = why })
    end
    local method = ngx.req.get_method()
    local action = ngx.req.get_uri_args().action
    if action ~= nil and type(action) ~= "string" then
        return reply(400, { error = "action must be given once, with a"
                                    .. " value" })
    end
    if action == nil then
        if method ~= "GET" and method ~= "HEAD" then
            return reply(405, { error = "GET, or POST with ?action=" })
        end
        local st, err = _M.status()
        if not st then
            return reply(503, { error = err })
        end
        return reply(200, st)
    end
    if method ~= "POST" then
        return reply(405, { error = "actions need POST" })
    end
    if action == "rollback" then
        local v, err = _M.rollback()
        if not v then
            return reply(409, { ok = false, error = err })
        end
        return reply(200, { ok = true, version = v })
    elseif action == "check" then
        local ok, err = _M.check()
        if not ok then
            return reply(503, { ok = false, error = err })
        end
        return reply(200, { ok = true, status = _M.status() })
    end
    return reply(400, { error = "unknown action: " .. tostring(action) })
end


return _M
