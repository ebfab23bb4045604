-- echo.lua -- the smallest Lua service: answers each request with its own
-- bytes ("" for a call without one).  bench/run.pl measures it next to
-- the C echo ("Lua service echo").
--
--   hotffi.load("hotffi_lua", "/path/examples/lua/echo,init,THREADS")
local hotffi = require "hotffi"

return {
    init = function(cfg)
        hotffi.serve(function(req) return req or "" end,
                     { threads = tonumber(cfg) or 1 })
    end,
}
