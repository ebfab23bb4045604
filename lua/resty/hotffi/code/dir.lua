-- resty.hotffi.code.dir -- read a directory of Lua files into a bundle.
--
-- DIR/app/api.lua is module "app.api", DIR/app/init.lua is module "app".
-- Names starting with "." are skipped; symbolic links are followed.

local ffi = require "ffi"
local bundle = require "resty.hotffi.code.bundle"
local host = require "resty.hotffi.code.host"

local C = ffi.C
local byte = string.byte
local ffi_errno = ffi.errno
local ffi_str = ffi.string
local format = string.format
local gsub = string.gsub
local io_open = io.open
local ipairs = ipairs
local pcall = pcall
local sort = table.sort
local sub = string.sub


local _M = { version = "0.1.0" }

local MAX_DEPTH = 16
local MAX_FILES = 10000
local DOT = byte(".")
-- bytes of a bundle besides the sources: its first lines and end line,
-- and each module's line ("module <name> <length>\n", length at most 20
-- digits) and the newline after its source
local HEADER = #bundle.MAGIC + #"signature none\n" + #"version \n" + 64
               + #"created \n" + 20 + #"end\n"
local MODULE_LINE = #"module  \n" + 20 + 1
local DT_UNKNOWN, DT_DIR, DT_REG, DT_LNK = 0, 4, 8, 10

-- glibc's struct dirent on 64-bit Linux (readdir64's on 32-bit).  The
-- functions carry private names so that they cannot clash with another
-- module's declarations of them.
do
    local readdir = ffi.abi("64bit") and "readdir" or "readdir64"
    local decls = {
        "typedef struct { uint64_t ino; int64_t off; unsigned short reclen;"
        .. " unsigned char type; char name[256]; } hotffi_code_dirent_t;",
        "void *hotffi_code_opendir(const char *name) __asm__(\"opendir\");",
        "hotffi_code_dirent_t *hotffi_code_readdir(void *dir) __asm__(\""
        .. readdir .. "\");",
        "int hotffi_code_closedir(void *dir) __asm__(\"closedir\");",
        "char *hotffi_code_strerror(int errnum) __asm__(\"strerror\");",
    }
    for _, decl in ipairs(decls) do
        pcall(ffi.cdef, decl)   -- already declared by an earlier load
    end
end


local function errstr()
    return ffi_str(C.hotffi_code_strerror(ffi_errno()))
end


-- The entries of a directory: { { name, type }, ... }, or nil and a
-- message.
local function list(path)
    local d = C.hotffi_code_opendir(path)
    if d == nil then
        return nil, format("opendir() \"%s\" failed: %s", path, errstr())
    end
    local out = {}
    while true do
        local e = C.hotffi_code_readdir(d)
        if e == nil then
            break
        end
        if e.name[0] ~= DOT then
            out[#out + 1] = { ffi_str(e.name), e.type }
        end
    end
    C.hotffi_code_closedir(d)
    sort(out, function(a, b) return a[1] < b[1] end)
    return out
end


local function is_dir(path)
    local d = C.hotffi_code_opendir(path)
    if d == nil then
        return false
    end
    C.hotffi_code_closedir(d)
    return true
end


-- A file's content, if it holds at most `room` bytes: its size is taken
-- (a seek to its end) before anything is read, and no more than that
-- size is read even if it grows meanwhile.  Or nil and a message.
local function read_file(path, room, max_size)
    local f, err = io_open(path, "rb")
    if not f then
        return nil, err
    end
    local size
    size, err = f:seek("end")
    if not size then
        f:close()
        return nil, format("seek \"%s\" failed: %s", path, err)
    end
    if size > room then
        f:close()
        return nil, format("\"%s\": %d bytes would make the bundle larger"
                           .. " than max_size %d: not read", path, size,
                           max_size)
    end
    f:seek("set")
    local data = size == 0 and "" or f:read(size)
    f:close()
    if not data then
        return nil, format("read \"%s\" failed", path)
    end
    return data
end


local function module_name(rel)
    local name = gsub(sub(rel, 1, -5), "/", ".")
    if name ~= "init" and sub(name, -5) == ".init" then
        name = sub(name, 1, -6)
    end
    return name
end


-- found: { { name, source }, ... }; where: name -> path; budget: { used
-- = bytes of the bundle so far, max = max_size }.
local function walk(root, rel, depth, found, where, budget)
    if depth > MAX_DEPTH then
        return nil, format("\"%s\": deeper than %d levels (a link loop?)",
                           root .. "/" .. rel, MAX_DEPTH)
    end
    local path = rel == "" and root or root .. "/" .. rel
    local entries, err = list(path)
    if not entries then
        return nil, err
    end
    for _, e in ipairs(entries) do
        local name, typ = e[1], e[2]
        local r = rel == "" and name or rel .. "/" .. name
        local full = root .. "/" .. r
        local dir = typ == DT_DIR
                    or (typ == DT_UNKNOWN or typ == DT_LNK) and is_dir(full)
        if dir then
            local ok
            ok, err = walk(root, r, depth + 1, found, where, budget)
            if not ok then
                return nil, err
            end
        elseif sub(name, -4) == ".lua" and #name > 4
               and (typ == DT_REG or typ == DT_LNK or typ == DT_UNKNOWN)
        then
            local mod = module_name(r)
            if not bundle.valid_name(mod) then
                return nil, format("\"%s\": not a valid module name", full)
            end
            if bundle.reserved(mod) then
                return nil, format("\"%s\": module name \"%s\" is reserved",
                                   full, mod)
            end
            if where[mod] then
                return nil, format("module \"%s\" found twice: \"%s\" and"
                                   .. " \"%s\"", mod, where[mod], full)
            end
            if #found >= MAX_FILES then
                return nil, format("more than %d modules under \"%s\"",
                                   MAX_FILES, root)
            end
            -- the module's line, then its source and a newline
            local line = #mod + MODULE_LINE
            local src
            src, err = read_file(full, budget.max - budget.used - line,
                                 budget.max)
            if not src then
                return nil, err
            end
            budget.used = budget.used + line + #src
            where[mod] = full
            found[#found + 1] = { mod, src }
        end
    end
    return true
end


-- The modules under DIR: { { name, source }, ... } sorted by name, or nil
-- and a message.  A file that would make the bundle larger than max_size
-- bytes is refused before it is read.  Also what bin/hotffi-bundle packs.
function _M.modules(root, max_size)
    local found, where = {}, {}
    local budget = { used = HEADER, max = max_size or bundle.DEFAULT_MAX_SIZE }
    local ok, err = walk(root, "", 1, found, where, budget)
    if not ok then
        return nil, err
    end
    if #found == 0 then
        return nil, format("no .lua files under \"%s\"", root)
    end
    sort(found, function(a, b) return a[1] < b[1] end)
    return found
end


-- Reads DIR (nginx).  Returns the bundle's text (unsigned), its version
-- ("dir-" and 12 hex digits of the content's MD5) and the number of
-- modules; or nil and a message.
function _M.read(root, created, max_size)
    local found, err = _M.modules(root, max_size)
    if not found then
        return nil, err
    end
    local version = "dir-" .. sub(host.md5(bundle.encode_modules(found)), 1,
                                  12)
    return bundle.build(version, found, created), version, #found
end


return _M
