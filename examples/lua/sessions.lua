-- sessions.lua -- a stateful Lua service that reloads in place: it counts
-- hits per key, and its state crosses every rt:__reload{} through
-- retire() -> init(cfg, state) (docs/lua-services.md, "Reload").
--
--   local rt = hotffi.load("hotffi_lua", "/path/examples/lua/sessions?,init")
--   rt:hit("alice")        -- "v1 alice 1", "v1 alice 2", ...
--   rt:__reload{}          -- edit VERSION below first: "v2 alice 3"
--
-- One thread (the default): the counts live in one VM, so every call
-- sees every other's.
local hotffi = require "hotffi"

local VERSION = "v1"

local _M = {}

local hits            -- key -> count: what crosses a reload
local started         -- how many versions this state went through

function _M.init(cfg, state)
    hits = state and state.hits or {}
    started = (state and state.started or 0) + 1
    hotffi.serve(function(req)
        local key = req or "anonymous"
        if key == "" then
            return "a key, please", 1
        end
        hits[key] = (hits[key] or 0) + 1
        return string.format("%s %s %d", VERSION, key, hits[key])
    end)
end

-- called in the old version when a reload replaces it, after its last
-- call; tables, strings, numbers and booleans cross exactly
function _M.retire()
    return { hits = hits, started = started }
end

return _M
