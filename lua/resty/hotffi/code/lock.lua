-- resty.hotffi.code.lock -- a spin lock across workers on a shared dict.
--
-- A critical section across nginx workers: a spin lock on one key of a
-- lua_shared_dict.  Sections are short and never yield, so waiting spins
-- instead of sleeping.

local error = error
local format = string.format
local pcall = pcall

local _M = { version = "0.1.0" }

local KEY = "lock"
local TTL = 1              -- seconds: a worker that died holding it
local SPINS = 100000


-- Runs f(...) holding the lock of lua_shared_dict `dict` (named `name`,
-- for messages) as `owner`; returns what f returns (two values), or nil
-- and a message when the lock could not be taken.  An error in f is
-- raised again, the lock released.
function _M.run(dict, name, owner, f, ...)
    for _ = 1, SPINS do
        local ok, err = dict:add(KEY, owner, TTL)
        if ok then
            local pok, r1, r2 = pcall(f, ...)
            dict:delete(KEY)
            if not pok then
                error(r1, 0)
            end
            return r1, r2
        end
        if err ~= "exists" then
            return nil, format("lua_shared_dict \"%s\": add() failed: %s",
                               name, err)
        end
    end
    return nil, format("lua_shared_dict \"%s\": lock busy", name)
end


return _M
