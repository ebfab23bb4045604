-- resty.hotffi.control -- what the control plane's HTTP handlers share:
-- who may ask (one bearer-token scheme) and how their query arguments are
-- read (numbers checked before they reach anything).  Used by
-- resty.hotffi.admin's handler and resty.hotffi.code's admin handler; see
-- docs/reload.md and docs/code-reload.md.
--
-- The token is checked on every request, not when nginx starts: the
-- handlers are called per request with their options, so a token that is
-- missing (os.getenv() of a variable nginx does not pass to its workers)
-- is found by the first request, which is refused with 503 and a message
-- that says what to add; error.log says it too.  Nothing is ever served
-- without authentication unless the configuration says so with
-- token = false.

local bit = require "bit"

local bor = bit.bor
local bxor = bit.bxor
local byte = string.byte
local error = error
local find = string.find
local format = string.format
local log = ngx.log
local sha1_bin = ngx.sha1_bin
local tonumber = tonumber
local tostring = tostring
local type = type

local ERR = ngx.ERR


local _M = { version = "0.1.0" }


-- Constant-time comparison of two 20-byte digests: how long it takes
-- says nothing about where they differ.  The tokens themselves are not
-- compared, so their lengths do not show either.
local function same_digest(a, b)
    local diff = 0
    for i = 1, 20 do
        diff = bor(diff, bxor(byte(a, i), byte(b, i)))
    end
    return diff == 0
end


local function bearer()
    local h = ngx.req.get_headers()["Authorization"]
    if type(h) == "string" then
        return h:match("^Bearer%s+(%S+)%s*$")
    end
end


-- Whether the request may use the handler `who` (its name, for messages)
-- given options `opts` (a table or nil) whose `token` is:
--   a non-empty string  requests need "Authorization: Bearer <token>"
--   false               no authentication: the operator said so
--   nil or ""           refused (503): the token is missing, most often
--                       os.getenv() of a variable nginx does not pass on
-- Returns true, or nil, an HTTP status and a message for the client.
-- Other options or tokens are misuse and raise an error (at the
-- handler's caller).
function _M.authorize(opts, who)
    if opts ~= nil and type(opts) ~= "table" then
        error(who .. ": an options table expected", 3)
    end
    local token = opts and opts.token
    if token == false then
        return true
    end
    if token == nil or token == "" then
        local msg = format("%s: no token configured, so it serves nobody:"
                           .. " give token = \"...\"; with"
                           .. " token = os.getenv(\"NAME\") add \"env"
                           .. " NAME;\" to the main context of nginx.conf"
                           .. " (nginx clears the environment of its"
                           .. " workers); token = false serves without"
                           .. " authentication", who)
        log(ERR, msg)
        return nil, 503, msg
    end
    if type(token) ~= "string" then
        error(format("%s: bad token: a string, or false, expected (got %s)",
                     who, type(token)), 3)
    end
    local given = bearer()
    if given == nil or not same_digest(sha1_bin(given), sha1_bin(token))
    then
        ngx.header["WWW-Authenticate"] = "Bearer"
        return nil, 401, "a valid bearer token is required"
    end
    return true
end


-- Query argument `name` of `args` as a number of seconds, or `default`
-- when it is absent.  Only plain decimals are read ("2", "0.5"): no sign,
-- exponent, hex, "nan" or "inf", which tonumber() would take.  The value
-- must lie in (0, max].  Returns the number, or nil and the reason.
function _M.seconds_arg(args, name, default, max)
    local v = args[name]
    if v == nil then
        return default
    end
    local why = format("%s must be a number of seconds greater than 0 and"
                       .. " at most %s", name, tostring(max))
    if type(v) ~= "string" then
        return nil, why .. " (given "
                    .. (type(v) == "table" and "more than once" or "empty")
                    .. ")"
    end
    local n = (#v <= 32 and (find(v, "^%d+%.?%d*$")
                             or find(v, "^%.%d+$")))
              and tonumber(v)
    if not n or n <= 0 or n > max then
        return nil, why .. " (given \"" .. v:sub(1, 32) .. "\")"
    end
    return n
end


return _M
