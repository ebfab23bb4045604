-- hotffi_burn.lua -- the CPU-heavy work of bench/run.pl's "cpu" case,
-- done either on nginx's event loop (work(), from hotffi_bench.lua) or in
-- a Lua service (init(), loaded with libhotffi_lua.so): the same Lua both
-- ways.
local _M = {}

-- about a few milliseconds of integer work; returns a checksum
function _M.work(n)
    local x = 0
    for i = 1, n do
        x = (x * 31 + i) % 1000003
    end
    return x
end

function _M.init()
    local hotffi = require "hotffi"
    hotffi.serve(function(req)
        return tostring(_M.work(tonumber(req)))
    end, { threads = 1 })
end

return _M
