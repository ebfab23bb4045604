-- hotffi_ctl.lua -- the ctl runtime of the tests as a Lua service
-- (loaders/lua), for the cases every language runs
-- (tests/lib/HotffiLangs.pm, tests/nginx/450-languages.t):
--
--   echo:S          answers S
--   fail:RC:MSG     fails with rc RC and payload MSG
--   error:MSG       fails with rc 1 and payload MSG
--   null            answers nothing (nil)
--   empty           answers ""
--   sleep:MS        answers "slept" after MS ms, or "cancelled" as soon as
--                   its caller gave up
--   cancelled       how many sleeps saw their caller give up
--   cfg             the configuration
--   log:LEVEL:N:TEXT  writes N lines "TEXT I" at LEVEL with hotffi.log
--   anything else   fails with rc 3, "unknown command"
--
-- An echo too: "hotffi_ctl,echo,THREADS".
--
-- The configuration is the number of threads (VMs) serving calls, default
-- 1: with more, each VM counts its own cancellations.
local hotffi = require "hotffi"

local _M = {}

function _M.init(cfg)
    local seen = 0

    local function sleep(task, ms)
        local left = ms / 1000
        while left > 0 do
            if task.cancelled() then
                seen = seen + 1
                return "cancelled"
            end
            hotffi.sleep(math.min(0.005, left))
            left = left - 0.005
        end
        return "slept"
    end

    hotffi.serve(function(req, task)
        req = req or ""
        local cmd, arg = req:match("^([^:]*):?(.*)$")
        if cmd == "echo" then
            return arg
        elseif cmd == "fail" then
            local rc, msg = arg:match("^([^:]*):?(.*)$")
            return msg, tonumber(rc)
        elseif cmd == "error" then
            return arg, 1
        elseif cmd == "null" then
            return nil
        elseif cmd == "empty" then
            return ""
        elseif cmd == "sleep" then
            return sleep(task, tonumber(arg))
        elseif cmd == "cancelled" then
            return tostring(seen)
        elseif cmd == "cfg" then
            return cfg
        elseif cmd == "log" then
            local level, n, text = arg:match("^(%d+):(%d+):(.*)$")
            for i = 1, tonumber(n) do
                hotffi.log(tonumber(level), text, " ", i)
            end
            return "logged " .. n
        end
        return "unknown command", 3
    end, { threads = tonumber(cfg) or 1 })
end

-- the echo of the common cases: "hotffi_ctl,echo,THREADS"; no request
-- answers "", as the other languages' echoes do
function _M.echo(cfg)
    hotffi.serve(function(req) return req or "" end,
                 { threads = tonumber(cfg) or 1 })
end

return _M
