-- hash.lua -- a CPU-heavy Lua service: SHA-256 (libcrypto) and CRC-32
-- (zlib) of request bodies through LuaJIT's FFI, on threads of its own,
-- never on nginx's event loop (docs/lua-services.md).
--
--   local rt = hotffi.load("hotffi_lua", "/path/examples/lua/hash,init,4")
--   local ok, hex = rt:sum(body)           -- "sha256 <hex>"
--   local ok, hex = rt:sum("crc32:" .. body)
--
-- cfg: how many threads (VMs) hash at once, default 2.
local ffi = require "ffi"
local hotffi = require "hotffi"

ffi.cdef [[
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
unsigned long crc32(unsigned long crc, const unsigned char *buf,
                    unsigned int len);
]]

-- Debian's runtime libraries (libssl3 and zlib1g, which nginx needs)
local crypto = ffi.load("crypto.so.3")
local z = ffi.load("z")

local _M = {}

local md = ffi.new("unsigned char[32]")

local function hex(buf, n)
    local out = {}
    for i = 0, n - 1 do
        out[#out + 1] = string.format("%02x", buf[i])
    end
    return table.concat(out)
end

local function handle(req)
    req = req or ""
    if req:sub(1, 6) == "crc32:" then
        local body = req:sub(7)
        return string.format("crc32 %08x", tonumber(z.crc32(0, body, #body)))
    end
    crypto.SHA256(req, #req, md)
    return "sha256 " .. hex(md, 32)
end

function _M.init(cfg)
    hotffi.log(hotffi.INFO, "hash service starting, ", jit.version)
    hotffi.serve(handle, { threads = tonumber(cfg) or 2 })
end

return _M
