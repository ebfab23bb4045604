-- resty_ffi -- lua-resty-ffi compatibility: `require "resty_ffi"` defines
-- ngx.load_ffi(lib, cfg, opts) on top of resty.hotffi, with lua-resty-ffi's
-- result shapes (docs/api.md, "Coming from lua-resty-ffi").

local hotffi = require "resty.hotffi"

local error = error
local tostring = tostring


-- lua-resty-ffi's own words for the failures it has
local words = {
    unloaded = "task queue is finished",
    full = "post failed, queue full",
}


local load = hotffi.faces(
    -- the bridge's failures: false and the message, as lua-resty-ffi
    function(msg, why)
        return false, words[why] or msg
    end,
    {
        -- lua-resty-ffi's flag, true once the runtime is unloaded (by
        -- __unload(), an admin or a failed reload alike)
        finished = function(rt)
            return rt:__stats().unloaded
        end,
    })


-- nil and libffi_init()'s rc when it fails; a library that cannot be
-- opened raises, as lua-resty-ffi's ffi.load() does.
local function load_ffi(lib, cfg, opts)
    local rt, err, init_rc = load(3, lib, cfg, opts)
    if rt then
        return rt
    end
    if init_rc and init_rc ~= 0 then
        return nil, init_rc
    end
    if init_rc == 0 then
        error(tostring(err), 2)
    end
    return nil, err
end


ngx.load_ffi = load_ffi

return { load_ffi = load_ffi, version = hotffi.version }
