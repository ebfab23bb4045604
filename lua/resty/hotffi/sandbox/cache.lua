-- resty.hotffi.sandbox.cache -- per-tenant cache of compiled scripts (the
-- object sandbox.new_cache returns): one live version per key; a new
-- version replaces it once it compiles; a version that failed to compile
-- is remembered so it is not recompiled on every request.

local lrucache = require "resty.lrucache"

local error = error
local setmetatable = setmetatable
local tostring = tostring
local type = type


local _M = {}

local cache_mt = {}
cache_mt.__index = cache_mt


-- A cache of at most `size` keys over `sandbox`; the caller has checked
-- both (resty.hotffi.sandbox's new_cache).
function _M.new(sandbox, size)
    local lru, err = lrucache.new(size)
    if not lru then
        return nil, err
    end
    return setmetatable({ sandbox = sandbox, lru = lru }, cache_mt)
end


local function check_key(key, version)
    if type(key) ~= "string" then
        error("bad argument #1 (string key expected, got " .. type(key)
              .. ")", 3)
    end
    local tv = type(version)
    if tv ~= "string" and tv ~= "number" then
        error("bad argument #2 (string or number version expected, got "
              .. tv .. ")", 3)
    end
end


-- The live script of `key` and its version (or nil); with `version`,
-- only when that version is the live one.
function cache_mt:get(key, version)
    local entry = self.lru:get(key)
    if not entry or not entry.script then
        return nil
    end
    if version ~= nil and entry.version ~= version then
        return nil
    end
    return entry.script, entry.version
end


local function compile_into(self, key, version, source, entry)
    local script, err = self.sandbox:compile(source, key)
    if not script then
        entry = entry or {}
        entry.failed_version, entry.failed_err = version, err
        self.lru:set(key, entry)
        return nil, err
    end
    self.lru:set(key, { version = version, script = script })
    return script
end


-- The compiled script for (key, version); compiles `source` (a string,
-- or a function(key, version) returning source or nil, err) when that
-- version is not cached yet.
function cache_mt:fetch(key, version, source)
    check_key(key, version)
    local entry = self.lru:get(key)
    if entry then
        if entry.version == version and entry.script then
            return entry.script
        end
        if entry.failed_version == version then
            return nil, entry.failed_err
        end
    end
    local ts = type(source)
    if ts == "function" then
        local src, err = source(key, version)
        if type(src) ~= "string" then
            return nil, err or "no source for \"" .. key .. "\" version "
                               .. tostring(version)
        end
        source = src
    elseif ts ~= "string" then
        error("bad argument #3 to 'fetch' (string or function expected, got "
              .. ts .. ")", 2)
    end
    return compile_into(self, key, version, source, entry)
end


-- Compiles and installs `source` as `version` of `key`, even if cached.
function cache_mt:set(key, version, source)
    check_key(key, version)
    if type(source) ~= "string" then
        error("bad argument #3 to 'set' (string expected, got "
              .. type(source) .. ")", 2)
    end
    return compile_into(self, key, version, source, self.lru:get(key))
end


function cache_mt:delete(key)
    self.lru:delete(key)
end


function cache_mt:flush_all()
    self.lru:flush_all()
end


return _M
