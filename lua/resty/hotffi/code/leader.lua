-- resty.hotffi.code.leader -- worker 0 watches the source, publishes versions.
--
-- The leader (worker 0 of an instance) looks at the source (dir or Redis:
-- polls it, and listens on Redis pub/sub), checks each new version
-- (signature, syntax, FFI rules) and publishes it to the workers through
-- resty.hotffi.code.store; it reports the source's state to
-- resty.hotffi.code.status.  With Redis it also writes the instance's
-- verdicts (what each worker runs, and the versions refused, and why) to
-- Redis, where bin/hotffi-bundle reads them (publish --wait, status
-- --fleet).

local bundle = require "resty.hotffi.code.bundle"
local conf_mod = require "resty.hotffi.code.conf"
local control = require "resty.hotffi.control"
local dir_src = require "resty.hotffi.code.dir"
local loader = require "resty.hotffi.code.loader"
local redis_src = require "resty.hotffi.code.redis"
local status = require "resty.hotffi.code.status"
local store = require "resty.hotffi.code.store"
local worker = require "resty.hotffi.code.worker"
local process = require "ngx.process"

local error = error
local exiting = ngx.worker.exiting
local format = string.format
local io_open = io.open
local ipairs = ipairs
local json = control.json
local log = ngx.log
local lower = string.lower
local min = math.min
local now = ngx.now
local pcall = pcall
local sleep = ngx.sleep
local sub = string.sub
local timer_at = ngx.timer.at
local timer_every = ngx.timer.every
local type = type

local ERR = ngx.ERR
local NOTICE = ngx.NOTICE

local _M = { version = "0.1.0" }

local LOG_AGAIN = 60       -- seconds between error lines of one outage
local MAX_BACKOFF = 1      -- seconds between Redis reconnections at most
local VERDICT_EVERY = 0.5  -- seconds between looks at the workers' reports
local VERDICT_REFRESH = 5  -- seconds: an unchanged verdict is written
                           -- again this often (bin/hotffi-bundle takes an
                           -- instance silent for 15 s as gone)
local MAX_REASON = 512     -- bytes of a refusal's reason in a verdict
local MAX_WORKERS = 64     -- workers listed in a verdict

local conf
local pid

-- the leader's view of the source
local src_error, src_since, src_logged = nil, nil, 0
local src_checked_at
local src_refused = {}     -- version (dir), record (Redis) -> message;
                           -- not fetched again
local src_last_refused     -- "version: message"
local src_refused_version, src_refused_reason, src_refused_at
local src_empty            -- Redis: nothing is published under the prefix
local looking, look_pending, look_force
local instance_id          -- <hostname>:<master pid>, in verdicts
local verdict_sent, verdict_sent_at = nil, 0


local function source_name()
    return conf_mod.source_name(conf)
end


local function report()
    status.report_source{
        kind = conf.redis and "redis" or "dir", name = source_name(),
        checked_by = pid, error = src_error, error_since = src_since,
        checked_at = src_checked_at, last_refused = src_last_refused,
        nothing_published = src_empty,
    }
end


-- Configures the leader's part (every worker can look at the source:
-- the dir source is read by each in init_worker, and check() and
-- rollback work in any worker).
function _M.init(c)
    conf, pid = c, ngx.worker.pid()
end


local function source_up()
    src_checked_at = now()
    if src_error then
        log(NOTICE, source_name(), " is reachable again after ",
            format("%.1f", now() - src_since), " s")
        src_error, src_since = nil, nil
    end
    report()
end


local function source_down(err)
    local t = now()
    if not src_error or t - src_logged >= LOG_AGAIN then
        log(ERR, source_name(), ": ", err, "; workers keep serving code",
            " version \"", worker.version() or "none", "\"")
        src_logged = t
    end
    src_since = src_since or t
    src_error = err
    report()
end


-- `key` is what is not fetched again: the record (Redis) or the version.
local function refuse_at_source(version, err, key)
    src_refused[key or version] = err
    src_last_refused = version .. ": " .. err
    src_refused_version, src_refused_reason, src_refused_at =
        version, err, now()
    worker.record_error(version, err)
    worker.log_refused(version, err, "at the source")
    report()
    worker.report()
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
        err = loader.precheck(b, worker.baseline(store.ran()))
    end
    if err then
        return refuse_at_source(name, err, record)
    end
    local ok
    ok, err = store.publish(b.version, text, rec, record)
    if ok == nil then
        return refuse_at_source(name, err, record)
    end
    if ok then
        src_refused = {}     -- the source has moved on from them
        log(NOTICE, "code version \"", b.version, "\" published from ",
            source_name(), ": ", #b.names, " modules, ", #text, " bytes")
        worker.sync()        -- this worker need not wait for its tick
    end
end


-- Looks at Redis: reads the current-version record (small, bounded) and,
-- only when it is new, valid and not a replay, the bundle it names, whose
-- size Redis announces before it is read.  A notification costs a record
-- read, not a bundle read.
local function look_redis(force)
    local rec, refusal
    local res, err = redis_src.fetch(conf.redis, function(record)
        if not force and (record == store.record()
                          or src_refused[record] ~= nil)
        then
            return nil
        end
        local e, name
        rec, e, name = bundle.parse_record(record, conf.secret)
        if rec then
            e = store.replayed(rec, record)
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
    if src_empty ~= not res.current then
        src_empty = not res.current
        report()
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


local function look_dir()
    local text, version = dir_src.read(conf.dir, ngx.time(), conf.max_size)
    if not text then
        return source_down(version)
    end
    source_up()
    if version == store.current() or version == store.rolled_back_from()
       or src_refused[version]
    then
        return
    end
    accept(text, version)
end


-- Looks at the source; `force` also at versions refused before.  One
-- look at a time per worker; a request for another while one runs makes
-- it run again.
function _M.look(force)
    if looking then
        look_pending = true
        look_force = look_force or force
        return
    end
    looking = true
    repeat
        look_pending = false
        local ok, err = pcall(conf.redis and look_redis or look_dir,
                              force)
        if not ok then
            log(ERR, "looking at ", source_name(), " failed: ", err)
        end
        force, look_force = look_force, false
    until not look_pending
    looking = false
end


-- Looks at the source now, also at what it refused before.
function _M.look_again()
    src_refused = {}
    _M.look(true)
end


local function poll_source(premature)
    if premature then
        return
    end
    _M.look(false)
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
            _M.look(false)       -- whatever was missed while away
        end,
        -- the name it carries is only a hint: the record says what is
        -- current, and an unchanged record costs no bundle read
        message = function()
            _M.look(false)
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


-- Cuts `s` to MAX_REASON bytes.
local function cut(s)
    if type(s) == "string" and #s > MAX_REASON then
        return sub(s, 1, MAX_REASON - 3) .. "..."
    end
    return s
end


-- The instance's verdicts as JSON: what the workers run, what they
-- refused and why (from their reports in the shared dict), and the last
-- version refused at the source.  Bounded: MAX_WORKERS workers, reasons
-- cut to MAX_REASON bytes.  No time that changes by itself, so that an
-- unchanged text means nothing happened.
local function verdict_json()
    local workers = {}
    for _, w in ipairs(status.instance().workers) do
        if #workers >= MAX_WORKERS then
            break
        end
        workers[#workers + 1] = {
            pid = w.pid, id = w.id, version = w.version, wanted = w.wanted,
            error = cut(w.error), applied_at = w.applied_at,
        }
    end
    return json{
        instance = instance_id, source = source_name(),
        version = store.current(), nothing_published = src_empty or false,
        refused = src_refused_version and {
            version = src_refused_version, reason = cut(src_refused_reason),
            at = src_refused_at,
        } or nil,
        workers = control.array(workers),
    }
end


-- Writes the verdicts to Redis when they changed, or every
-- VERDICT_REFRESH seconds.  The time of the report goes with them.  Not
-- while Redis cannot be reached: each failed connect() is a line in
-- error.log, and the looks at the source say it already.
local function send_verdict(premature)
    if premature or src_error then
        return
    end
    local text = verdict_json()
    local t = now()
    if text == verdict_sent and t - verdict_sent_at < VERDICT_REFRESH then
        return
    end
    -- "at" is added to the text outside the comparison
    local full = sub(text, 1, -2) .. format(',"at":%.3f}', t)
    if #full > redis_src.MAX_VERDICT then
        log(ERR, "code verdict of ", #full, " bytes not written to ",
            source_name())
        return
    end
    local ok = redis_src.put_verdict(conf.redis, instance_id, full)
    if ok then
        verdict_sent, verdict_sent_at = text, t
    end
    -- a failure shows as the source's error at the next look
end


-- <hostname>:<pid of the master>: one nginx instance, the same across
-- nginx -s reload.
local function instance_name()
    local f = io_open("/proc/sys/kernel/hostname", "rb")
    local name = f and f:read("*l") or "localhost"
    if f then
        f:close()
    end
    return name .. ":" .. (process.get_master_pid() or ngx.worker.pid())
end


-- Starts the leader's timers: the subscription (Redis), a look at the
-- source every conf.interval seconds, and the verdicts (Redis).  Context:
-- init_worker_by_lua*.
function _M.start()
    local ok, err = true, nil
    if conf.redis then
        instance_id = instance_name()
        ok, err = timer_at(0, subscriber)
        if ok then
            ok, err = timer_at(0, poll_source)
        end
        if ok then
            ok, err = timer_every(VERDICT_EVERY, send_verdict)
        end
    end
    if ok then
        ok, err = timer_every(conf.interval, poll_source)
    end
    if not ok then
        error("resty.hotffi.code: ngx.timer failed: " .. err, 3)
    end
    report()
end


return _M
