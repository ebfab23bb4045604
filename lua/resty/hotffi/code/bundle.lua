-- resty.hotffi.code.bundle -- the bundle format: build, parse, sign and
-- verify a versioned set of Lua modules.  See docs/code-reload.md.
--
--     HOTFFI-BUNDLE 1\n
--     signature hmac-sha256 <64 hex digits>\n     (or "signature none")
--     version <version>\n                          <- the signed payload
--     created <unix seconds>\n                        starts here and runs
--     module <name> <length in bytes>\n               to the end
--     <the module's source: exactly that many bytes>\n
--     ... more modules, sorted by name ...
--     end\n
--
-- The Redis source names the current version with a signed record (one
-- line, the value of <prefix>:current):
--
--     HOTFFI-CURRENT 1 <version> <sequence> <bundle mac> <record mac>
--
-- <bundle mac> is the 64 hex digits of the bundle's signature line, which
-- binds the record to one bundle's exact bytes; <sequence> is a decimal
-- integer that grows with every publish and rollback; <record mac> is the
-- HMAC-SHA256, in hex, of everything before it (" " excluded).  The fleet
-- refuses a record whose sequence is below the highest it accepted: an
-- older record written back to Redis (a replay) cannot make an older
-- version current again; only a new record, signed with the secret, can.

local ffi = require "ffi"
local bit = require "bit"

local bor = bit.bor
local bxor = bit.bxor
local byte = string.byte
local char = string.char
local concat = table.concat
local error = error
local ipairs = ipairs
local ffi_cast = ffi.cast
local ffi_new = ffi.new
local ffi_str = ffi.string
local find = string.find
local floor = math.floor
local format = string.format
local gmatch = string.gmatch
local gsub = string.gsub
local match = string.match
local pcall = pcall
local sort = table.sort
local sub = string.sub
local tonumber = tonumber
local tostring = tostring
local type = type


local _M = { version = "0.1.0" }

local MAGIC = "HOTFFI-BUNDLE 1\n"
local SIG_PREFIX = "signature hmac-sha256 "
local UNSIGNED = "signature none"
local MAX_VERSION_LEN = 64
local RECORD_MAGIC = "HOTFFI-CURRENT 1 "
local MAX_SEQUENCE_DIGITS = 15  -- below 2^53: exact as a Lua number

_M.MAGIC = MAGIC
_M.DEFAULT_MAX_SIZE = 16 * 1024 * 1024
-- the longest a record can be; what the reader reads of <prefix>:current
_M.MAX_RECORD_SIZE = #RECORD_MAGIC + MAX_VERSION_LEN + MAX_SEQUENCE_DIGITS
                     + 64 + 64 + 3

-- Names a bundle may not replace: the VM's own libraries and hotffi itself.
local RESERVED = {
    _G = true, bit = true, coroutine = true, debug = true, ffi = true,
    io = true, jit = true, math = true, os = true, package = true,
    string = true, table = true, ["table.new"] = true,
    ["table.clear"] = true,
}


-- HMAC-SHA256 and SHA-256 from OpenSSL's libcrypto.  nginx links it
-- already, so the symbols are usually in the process; otherwise (and in
-- bin/hotffi-bundle, a LuaJIT script) the library is loaded.
-- The declarations carry private names (redirected with __asm__) so that
-- they cannot clash with another module's cdef of the same functions.
local crypto
do
    local decls = {
        "const void *hotffi_code_evp_sha256(void) __asm__(\"EVP_sha256\");",
        "unsigned char *hotffi_code_hmac(const void *md, const void *key,"
        .. " int key_len, const unsigned char *d, size_t n,"
        .. " unsigned char *out, unsigned int *out_len)"
        .. " __asm__(\"HMAC\");",
        "unsigned char *hotffi_code_sha256(const unsigned char *d, size_t n,"
        .. " unsigned char *md) __asm__(\"SHA256\");",
    }
    for _, decl in ipairs(decls) do
        pcall(ffi.cdef, decl)   -- already declared by an earlier load
    end
    local function usable(lib)
        return pcall(function()
            return lib.hotffi_code_hmac and lib.hotffi_code_evp_sha256
                   and lib.hotffi_code_sha256
        end)
    end
    if usable(ffi.C) then
        crypto = ffi.C
    else
        for _, name in ipairs({ "libcrypto.so.3", "crypto" }) do
            local ok, lib = pcall(ffi.load, name)
            if ok and usable(lib) then
                crypto = lib
                break
            end
        end
    end
end

local mac_buf = ffi_new("unsigned char[64]")
local mac_len = ffi_new("unsigned int[1]")


-- The raw 32-byte HMAC-SHA256 of len bytes of data from offset (1-based),
-- or nil and a message.  The payload is hashed in place, without a copy.
local function hmac_sha256(key, data, offset, len)
    if not crypto then
        return nil, "libcrypto (HMAC) is not available"
    end
    local p = ffi_cast("const unsigned char *", data) + (offset - 1)
    local md = crypto.hotffi_code_evp_sha256()
    if crypto.hotffi_code_hmac(md, key, #key, p, len, mac_buf, mac_len)
       == nil
    then
        return nil, "HMAC() failed"
    end
    return ffi_str(mac_buf, mac_len[0])
end


local function to_hex(s)
    return (gsub(s, ".", function(c) return format("%02x", byte(c)) end))
end


local function from_hex(s)
    return (gsub(s, "%x%x", function(h) return char(tonumber(h, 16)) end))
end


-- Constant-time comparison of two strings of the same length.
local function same(a, b)
    if #a ~= #b then
        return false
    end
    local diff = 0
    for i = 1, #a do
        diff = bor(diff, bxor(byte(a, i), byte(b, i)))
    end
    return diff == 0
end


function _M.hmac_hex(key, data)
    if type(key) ~= "string" or type(data) ~= "string" then
        error("bad argument: key and data must be strings", 2)
    end
    local mac, err = hmac_sha256(key, data, 1, #data)
    if not mac then
        return nil, err
    end
    return to_hex(mac)
end


-- The SHA-256 of `data`, in hex, or nil and a message.
function _M.sha256_hex(data)
    if not crypto then
        return nil, "libcrypto (SHA256) is not available"
    end
    crypto.hotffi_code_sha256(data, #data, mac_buf)
    return to_hex(ffi_str(mac_buf, 32))
end


function _M.valid_version(v)
    return type(v) == "string" and #v <= MAX_VERSION_LEN
           and find(v, "^[%w][%w%.%-_+:]*$") ~= nil
end


-- A module name: dot-separated parts of letters, digits, "_" and "-".
function _M.valid_name(name)
    if type(name) ~= "string" or #name == 0 or #name > 200 then
        return false
    end
    for part in gmatch(name .. ".", "([^.]*)%.") do
        if not find(part, "^[%w_%-]+$") then
            return false
        end
    end
    return true
end


function _M.reserved(name)
    return RESERVED[name] or name == "resty.hotffi"
           or sub(name, 1, 13) == "resty.hotffi."
end


-- The module part of a payload, from a list of { name, source } sorted by
-- name; also what a directory's content hash is computed from.
function _M.encode_modules(list)
    local out = {}
    for i, m in ipairs(list) do
        out[i] = format("module %s %d\n%s\n", m[1], #m[2], m[2])
    end
    return concat(out)
end


-- A bundle of the modules `list` ({ name, source }, sorted here by name):
-- signed with `secret` (what bin/hotffi-bundle packs), or unsigned without
-- one (the directory source's form in the shared dict).  Returns the text,
-- or nil and a message.
function _M.build(version, list, created, secret)
    if not _M.valid_version(version) then
        error("bad version: " .. tostring(version), 2)
    end
    if secret ~= nil and (type(secret) ~= "string" or secret == "") then
        error("bad secret", 2)
    end
    sort(list, function(a, b) return a[1] < b[1] end)
    local payload = concat({
        "version ", version, "\n",
        "created ", format("%d", created or 0), "\n",
        _M.encode_modules(list),
        "end\n",
    })
    if not secret then
        return MAGIC .. UNSIGNED .. "\n" .. payload
    end
    local mac, err = _M.hmac_hex(secret, payload)
    if not mac then
        return nil, err
    end
    return MAGIC .. SIG_PREFIX .. mac .. "\n" .. payload
end


-- Parses and checks a bundle.  With a secret the HMAC-SHA256 signature
-- must match; without one the bundle must come from a trusted place (the
-- shared dict) and opts.trusted must say so.  Returns
--   { version =, created =, modules = { name = source }, names = {...},
--     size = }
-- or nil and a message.
function _M.parse(blob, secret, opts)
    opts = opts or {}
    if type(blob) ~= "string" then
        return nil, "not a bundle (" .. type(blob) .. ")"
    end
    local max_size = opts.max_size or _M.DEFAULT_MAX_SIZE
    if #blob > max_size then
        return nil, format("bundle too large: %d bytes (max_size %d)",
                           #blob, max_size)
    end
    if sub(blob, 1, #MAGIC) ~= MAGIC then
        return nil, "not a hotffi bundle (bad magic)"
    end
    local eol = find(blob, "\n", #MAGIC + 1, true)
    if not eol then
        return nil, "truncated bundle: no signature line"
    end
    local sig_line = sub(blob, #MAGIC + 1, eol - 1)
    local pos = eol + 1            -- the payload starts here

    if secret then
        if sig_line == UNSIGNED then
            return nil, "unsigned bundle"
        end
        local hex = sub(sig_line, 1, #SIG_PREFIX) == SIG_PREFIX
                    and match(sig_line, "^%x+$", #SIG_PREFIX + 1)
        if not hex or #hex ~= 64 then
            return nil, "malformed signature line"
        end
        local mac, err = hmac_sha256(secret, blob, pos, #blob - pos + 1)
        if not mac then
            return nil, err
        end
        if not same(mac, from_hex(hex)) then
            return nil, "bad signature (corrupted, or signed with another"
                        .. " secret)"
        end
    elseif not opts.trusted then
        error("parse: a secret is required for untrusted bundles", 2)
    end

    local version, created
    local e = find(blob, "\n", pos, true)
    version = e and match(sub(blob, pos, e - 1), "^version (.+)$")
    if not _M.valid_version(version) then
        return nil, "malformed bundle: bad version line"
    end
    pos = e + 1
    e = find(blob, "\n", pos, true)
    created = e and match(sub(blob, pos, e - 1), "^created (%d+)$")
    if not created then
        return nil, "malformed bundle: bad created line"
    end
    pos = e + 1

    local modules, names = {}, {}
    while true do
        e = find(blob, "\n", pos, true)
        if not e then
            return nil, "malformed bundle: no end line"
        end
        local line = sub(blob, pos, e - 1)
        if line == "end" then
            if e ~= #blob then
                return nil, "malformed bundle: data after the end line"
            end
            break
        end
        local name, len = match(line, "^module (%S+) (%d+)$")
        len = tonumber(len)
        if not name then
            return nil, "malformed bundle: bad module line"
        end
        if not _M.valid_name(name) then
            return nil, format("bad module name \"%s\"", name)
        end
        if _M.reserved(name) then
            return nil, format("module name \"%s\" is reserved", name)
        end
        if modules[name] then
            return nil, format("module \"%s\" appears twice", name)
        end
        local stop = e + len
        if stop + 1 > #blob or byte(blob, stop + 1) ~= 10 then
            return nil, format("malformed bundle: module \"%s\" truncated",
                               name)
        end
        modules[name] = sub(blob, e + 1, stop)
        names[#names + 1] = name
        pos = stop + 2
    end
    sort(names)
    return {
        version = version,
        created = tonumber(created),
        modules = modules,
        names = names,
        size = #blob,
        mac = match(sig_line, "^signature hmac%-sha256 (%x+)$"),
    }
end


-- The current-version record (see the top of this file) for `version`,
-- whose bundle's signature is `bundle_mac` (hex), with `sequence`.
function _M.sign_record(secret, version, sequence, bundle_mac)
    if type(secret) ~= "string" or secret == ""
       or not _M.valid_version(version)
       or type(sequence) ~= "number" or sequence < 0
       or sequence >= 10 ^ MAX_SEQUENCE_DIGITS
       or sequence ~= floor(sequence)
       or type(bundle_mac) ~= "string" or not find(bundle_mac, "^%x+$")
       or #bundle_mac ~= 64
    then
        error("sign_record: bad arguments", 2)
    end
    local text = format("%s%s %d %s", RECORD_MAGIC, version, sequence,
                        bundle_mac)
    local mac, err = _M.hmac_hex(secret, text)
    if not mac then
        return nil, err
    end
    return text .. " " .. mac
end


-- A sequence for a new record: above `high` (the highest this caller knows
-- of, or nil), above the sequence of the record `current` when it verifies
-- with `secret`, and at least `now_ms`, the time in ms, so that an older
-- record written back to Redis cannot hold it below what the fleet
-- accepted.  What publish and rollback sign, in nginx and in the tool.
function _M.next_sequence(now_ms, current, secret, high)
    local seq = floor(now_ms)
    local rec = current and _M.parse_record(current, secret)
    if rec and (not high or rec.sequence > high) then
        high = rec.sequence
    end
    if high and seq <= high then
        seq = high + 1
    end
    return seq
end


-- Checks a current-version record.  Returns { version =, sequence =,
-- bundle_mac = }, or nil, a message and (when it could be read) the
-- version it names.
function _M.parse_record(text, secret)
    if type(text) ~= "string" then
        return nil, "not a current-version record (" .. type(text) .. ")"
    end
    if sub(text, 1, #RECORD_MAGIC) ~= RECORD_MAGIC then
        local legacy = _M.valid_version(text) and text or nil
        return nil, legacy
               and "the current version is named without a signed record"
                   .. " (published by an older bin/hotffi-bundle?): publish"
                   .. " it again with this one"
               or "not a current-version record", legacy
    end
    local version, seq, bundle_mac, mac = match(text,
        "^(%S+) (%d+) (%x+) (%x+)$", #RECORD_MAGIC + 1)
    if not version or not _M.valid_version(version)
       or #seq > MAX_SEQUENCE_DIGITS or #bundle_mac ~= 64 or #mac ~= 64
    then
        return nil, "malformed current-version record"
    end
    local body = #text - 65
    local want, err = hmac_sha256(secret, text, 1, body)
    if not want then
        return nil, err, version
    end
    if not same(want, from_hex(mac)) then
        return nil, "bad signature of the current-version record"
                    .. " (forged, or signed with another secret)", version
    end
    return { version = version, sequence = tonumber(seq),
             bundle_mac = bundle_mac }
end


return _M
