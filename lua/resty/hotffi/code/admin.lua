-- resty.hotffi.code.admin -- the code admin handler's requests.
--
-- The code-reload admin handler's requests: the status, rollback and check
-- actions, answered by resty.hotffi.control (see docs/code-reload.md, "The
-- admin handler").

local control = require "resty.hotffi.control"

local answer = control.answer
local fail = control.fail
local tostring = tostring
local type = type

local _M = { version = "0.1.0" }


-- Serves the request that resty.hotffi.code.admin() authorized, with
-- `code` the public module (status, rollback, check).
function _M.serve(code)
    local method = ngx.req.get_method()
    local action = ngx.req.get_uri_args().action
    if action ~= nil and type(action) ~= "string" then
        return fail(400, "action must be given once, with a value")
    end
    if action == nil then
        if method ~= "GET" and method ~= "HEAD" then
            return fail(405, "GET, or POST with ?action=")
        end
        local st, err = code.status()
        if not st then
            return fail(503, err)
        end
        return answer(200, st)
    end
    if method ~= "POST" then
        return fail(405, "actions need POST")
    end
    if action == "rollback" then
        local v, err = code.rollback()
        if not v then
            return fail(409, err)
        end
        return answer(200, { ok = true, version = v })
    elseif action == "check" then
        local ok, err = code.check()
        if not ok then
            return fail(503, err)
        end
        return answer(200, { ok = true, status = code.status() })
    end
    return fail(400, "unknown action: " .. tostring(action))
end


return _M
