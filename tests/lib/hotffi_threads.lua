-- hotffi_threads.lua -- for the tests' nginx (tests/lib/HotffiTest.pm puts
-- this folder on lua_package_path): many calls at once from light threads.

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


return _M
