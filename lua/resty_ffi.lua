-- resty_ffi -- lua-resty-ffi compatibility: `require "resty_ffi"` defines
-- ngx.load_ffi(lib, cfg, opts) on top of resty.hotffi.

local hotffi = require "resty.hotffi"

ngx.load_ffi = hotffi.load

return { load_ffi = hotffi.load, version = hotffi.version }
