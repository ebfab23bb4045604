-- hotffi_threads.lua -- for the tests' nginx (tests/lib/HotffiTest.pm puts
-- this folder on lua_package_path): many calls at once from light threads,
-- and a bounded wait for a condition, so that no test relies on a thread
-- having been scheduled within a bare sleep.

local spawn = ngx.thread.spawn
local wait = ngx.thread.wait

local _M = {}


-- Runs fn(i) for i = 1 .. n, each in a light thread of its own, all at
-- once; returns how many of them returned true.
function _M.count_true(n, fn)
    local threads = {}
    for i = 1, n do
        threads[i] = spawn(fn, i)
    end
    local good = 0
    for i = 1, n do
        local _, ok = wait(threads[i])
        if ok == true then
            good = good + 1
        end
    end
    return good
end


-- Polls cond() every 10 ms until it returns true (then true) or seconds
-- (default 5) have passed (then false).  For states another thread must
-- reach first: e.g. a runtime thread has taken a call, when
-- rt:__stats().queued is 0 (wait_for(function() return
-- rt:__stats().queued == 0 end)).
function _M.wait_for(cond, seconds)
    local deadline = ngx.now() + (seconds or 5)
    while true do
        if cond() then
            return true
        end
        ngx.update_time()
        if ngx.now() >= deadline then
            return false
        end
        ngx.sleep(0.01)
    end
end


return _M
