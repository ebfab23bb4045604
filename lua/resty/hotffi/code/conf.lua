-- resty.hotffi.code.conf -- resty.hotffi.code's options, checked once.
--
-- The options of resty.hotffi.code, checked once (see docs/code-reload.md),
-- and the source's name for messages.

local bundle = require "resty.hotffi.code.bundle"
local redis_src = require "resty.hotffi.code.redis"

local error = error
local floor = math.floor
local format = string.format
local gsub = string.gsub
local io_open = io.open
local tostring = tostring
local type = type

local _M = { version = "0.1.0" }

local DEFAULTS = {
    interval = 2,
    poll = 0.1,
    wait = 3,
    history = 5,
    max_size = bundle.DEFAULT_MAX_SIZE,
}


-- Error levels below: 1 the function raising, ... up to the caller of
-- resty.hotffi.code.configure (which calls check()).

local function number_opt(opts, key, positive)
    local v = opts[key]
    if v == nil then
        return DEFAULTS[key]
    end
    if type(v) ~= "number" or v ~= v or (positive and v <= 0) then
        error(format("resty.hotffi.code: bad option %s: %s", key,
                     tostring(v)), 4)
    end
    return v
end


local function read_secret(path)
    local f, err = io_open(path, "rb")
    if not f then
        error("resty.hotffi.code: cannot read secret_file: " .. err, 4)
    end
    local s = f:read("*a") or ""
    f:close()
    return (gsub(s, "%s+$", ""))
end


local function redis_conf(r)
    if type(r) ~= "table" then
        error("resty.hotffi.code: bad option redis: a table expected", 4)
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
              4)
    end
    return c
end


-- The checked configuration of options `opts`; misuse raises an error at
-- the caller of the function that calls check().
function _M.check(opts)
    if type(opts) ~= "table" then
        error("resty.hotffi.code: an options table expected", 3)
    end
    if type(opts.dict) ~= "string" or not ngx.shared[opts.dict] then
        error(format("resty.hotffi.code: bad option dict: no"
                     .. " lua_shared_dict \"%s\"", tostring(opts.dict)), 3)
    end
    if (opts.dir == nil) == (opts.redis == nil) then
        error("resty.hotffi.code: give one source: dir or redis", 3)
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
            error("resty.hotffi.code: bad option dir: a path expected", 3)
        end
        c.dir = gsub(opts.dir, "(.)/+$", "%1")
    else
        c.redis = redis_conf(opts.redis)
        if c.dev then
            error("resty.hotffi.code: option dev is for the dir source", 3)
        end
        local secret = opts.secret
        if opts.secret_file ~= nil then
            secret = read_secret(opts.secret_file)
        end
        if type(secret) ~= "string" or secret == "" then
            error("resty.hotffi.code: the redis source needs a secret"
                  .. " (options secret or secret_file)", 3)
        end
        c.secret = secret
    end
    return c
end


-- The source of configuration `c`, for messages: redis <where> "<prefix>"
-- or dir "<path>".
function _M.source_name(c)
    if c.redis then
        return format("redis %s \"%s\"", redis_src.where(c.redis),
                      c.redis.prefix)
    end
    return format("dir \"%s\"", c.dir)
end


-- The command that publishes a directory to the Redis source of `c`.
function _M.publish_command(c)
    local r = c.redis
    return format("HOTFFI_CODE_SECRET=<the secret> bin/hotffi-bundle"
                  .. " publish DIR --redis %s --prefix %s%s",
                  redis_src.where(r), r.prefix,
                  r.db and " --db " .. r.db or "")
end


return _M
