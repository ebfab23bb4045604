-- resty.hotffi.control -- what the control plane's HTTP handlers share.
--
-- Who may ask (one bearer-token scheme), how their query arguments are
-- read (numbers checked before they reach anything) and how they answer
-- (JSON by cjson; an error is its status code and {"ok":false,
-- "error":"..."}).  Used by resty.hotffi.admin's handler and
-- resty.hotffi.code's admin handler; see docs/reload.md and
-- docs/code-reload.md.
--
-- The token is checked on every request, not when nginx starts: the
-- handlers are called per request with their options, so a token that is
-- missing (os.getenv() of a variable nginx does not pass to its workers)
-- is found by the first request, which is refused with 503 and a message
-- that says what to add; error.log says it too.  Nothing is ever served
-- without authentication unless the configuration says so with
-- token = false.

local bit = require "bit"
local cjson = require "cjson.safe"

local bor = bit.bor
local bxor = bit.bxor
local byte = string.byte
local error = error
local exit = ngx.exit
local find = string.find
local format = string.format
local gsub = string.gsub
local log = ngx.log
local next = next
local pairs = pairs
local random = math.random
local setmetatable = setmetatable
local getmetatable = getmetatable
local sha1_bin = ngx.sha1_bin
local tonumber = tonumber
local tostring = tostring
local type = type

local ERR = ngx.ERR


local _M = { version = "0.1.0" }

local ARRAY = {}    -- metatable of a table to encode as a JSON array

-- Debian's lua-cjson (2.1.0) encodes an empty table as {}: an empty
-- array goes out as this string, and its JSON text is replaced by [].
local EMPTY = format("\1hotffi-empty-array-%d-%d", ngx.worker.pid(),
                     random(1e9))
local EMPTY_JSON = gsub('"\\u0001' .. EMPTY:sub(2) .. '"', "%p", "%%%0")


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
function _M.authorize(opts, who, level)
    level = level or 3
    if opts ~= nil and type(opts) ~= "table" then
        error(who .. ": an options table expected", level)
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
                     who, type(token)), level)
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


-- Marks table t as a JSON array (also when it is empty); returns t.
function _M.array(t)
    return setmetatable(t, ARRAY)
end


local function prepare(v)
    if type(v) ~= "table" then
        return v
    end
    if getmetatable(v) == ARRAY and next(v) == nil then
        return EMPTY
    end
    local out = {}
    for k, x in pairs(v) do
        out[k] = prepare(x)
    end
    return out
end


-- v as JSON text (cjson); tables marked by array() are arrays, also
-- when empty.  Returns the text, or nil and a message.
function _M.json(v)
    local text, err = cjson.encode(prepare(v))
    if not text then
        return nil, err
    end
    return (gsub(text, EMPTY_JSON, "[]"))
end


-- JSON text as a Lua value, or nil (also for nil).
function _M.decode(text)
    return text and cjson.decode(text) or nil
end


-- Answers the request with `status` and `body` as JSON, and ends it.
-- The one convention of the control plane's answers: an error is its
-- HTTP status code with {"ok":false,"error":"..."} (see fail()).
-- Context: content_by_lua*.
function _M.answer(status, body)
    local text, err = _M.json(body)
    if not text then
        return _M.fail(500, "cannot encode the answer: " .. err)
    end
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    ngx.say(text)
    return exit(status)
end


-- Answers an error: `status` and {"ok":false,"error":msg}, always in
-- that order (clients and tests may compare the text).  Context:
-- content_by_lua*.
function _M.fail(status, msg)
    local text = cjson.encode(tostring(msg))
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Cache-Control"] = "no-store"
    ngx.say('{"ok":false,"error":', text, '}')
    return exit(status)
end


-- authorize(), answered: returns true when the request may go on; else
-- it answered the refusal (401 or 503) and returns nil.  Misuse raises
-- an error at the handler's caller.  Context: content_by_lua*.
function _M.guard(opts, who)
    local ok, status, why = _M.authorize(opts, who, 4)
    if not ok then
        _M.fail(status, why)
        return nil
    end
    return true
end


return _M
