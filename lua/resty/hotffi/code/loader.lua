-- resty.hotffi.code.loader -- stage a version's modules, then swap them
-- into package.loaded together.  One instance per worker (module state).
--
-- Staging: every module of the bundle whose source changed (or that
-- required, while it loaded, a module that changed) is compiled and its
-- top-level code run, each with an environment whose `require` resolves
-- modules of the bundle to their staged versions.  Only when all of them
-- loaded, and every __migrate hook ran, are they stored in package.loaded,
-- in one go with no yield in between.  Anything wrong leaves package.loaded
-- as it was.
--
-- Staging runs inside a C call (a string.gsub callback), so a module whose
-- top-level code tries to yield (cosockets, ngx.sleep) fails to load, just
-- as it would inside require(), instead of letting other requests run
-- while a version is half-staged.

local ffi = require "ffi"

local byte = string.byte
local error = error
local find = string.find
local format = string.format
local gsub = string.gsub
local ipairs = ipairs
local loaded = package.loaded
local loadstring = loadstring
local next = next
local pairs = pairs
local pcall = pcall
local rawget = rawget
local rawset = rawset
local require = require
local setfenv = setfenv
local setmetatable = setmetatable
local tostring = tostring
local type = type


local _M = { version = "0.1.0" }

local G = loaded._G
local ENV_MT = { __index = G, __newindex = G }
local LOADING = setmetatable({}, {
    __tostring = function() return "module being loaded" end,
})
local EMPTY = {}

-- The applied version, per worker.
local st = {
    version = nil,   -- its name
    sources = {},    -- module name -> source text
    deps = {},       -- module name -> { name = true }: required while loading
    pinned = {},     -- module name -> how it used FFI ("ffi.cdef", ...)
    pinned_version = {},  -- module name -> the version it was pinned at
    kept_ffi = {},   -- module name -> { source, value, how }: see below
}

local staging        -- the staging context while a version is staged
local envs = {}      -- module name -> its environment (kept across versions)
local ffi_proxies = {}


-- Static detection: the FFI calls that make a module unsafe to unload.
-- Conservative: a match in a comment or a string counts too.
local FFI_PATTERNS = {
    { "ffi%s*%.%s*cdef",          "ffi.cdef" },
    { "%.%s*cdef%s*[%(%[\"']",    "ffi.cdef" },
    { "ffi%s*%.%s*load%s*[%(\"']", "ffi.load" },
    { "ffi%s*%.%s*metatype",      "ffi.metatype" },
    { "%.%s*metatype%s*%(",       "ffi.metatype" },
}

local function scan_ffi(src)
    if not src or not find(src, "ffi", 1, true) then
        return nil
    end
    for _, p in ipairs(FFI_PATTERNS) do
        if find(src, p[1]) then
            return p[2]
        end
    end
    return nil
end

_M.scan_ffi = scan_ffi


local function fail(s, name, msg)
    if not s.err then
        s.err = format("module \"%s\": %s", name, msg)
    end
    error(s.err, 0)
end


-- Dynamic detection: the `ffi` a bundle module gets from its require()
-- reports cdef/load/metatype calls.  A module that replaces another
-- version of itself must not define C types again: that is refused.
local function note_ffi(owner, what)
    local s = staging
    if s and s.staged[owner] == LOADING and s.replaced[owner] then
        fail(s, owner, format("calls %s while being replaced: a module"
                              .. " that uses FFI cannot be hot-replaced",
                              what))
    end
    if s and s.staged[owner] == LOADING then
        s.ffi_used[owner] = s.ffi_used[owner] or what
    elseif not st.pinned[owner] then
        st.pinned[owner] = what          -- an FFI call made at run time
        st.pinned_version[owner] = st.version
    end
end


local function ffi_proxy(owner)
    local p = ffi_proxies[owner]
    if p then
        return p
    end
    p = {}
    for k, v in pairs(ffi) do
        p[k] = v
    end
    for _, fname in ipairs({ "cdef", "load", "metatype" }) do
        local real = ffi[fname]
        local what = "ffi." .. fname
        p[fname] = function(...)
            note_ffi(owner, what)
            return real(...)
        end
    end
    ffi_proxies[owner] = p
    return p
end


local stage_module


-- require() as the bundle's modules see it.
local function resolve(owner, name)
    if name == "ffi" then
        return ffi_proxy(owner)
    end
    local s = staging
    if not s or s.modules[name] == nil then
        return require(name)
    end
    local deps = s.deps[owner]
    if not deps then
        deps = {}
        s.deps[owner] = deps
    end
    deps[name] = true
    local v = s.staged[name]
    if v == LOADING then
        error(format("loop or previous error loading module '%s'", name), 2)
    end
    if v ~= nil then
        return v
    end
    if s.changed[name] then
        return stage_module(s, name)
    end
    v = loaded[name]           -- unchanged: the applied version's
    if v == nil then
        return require(name)
    end
    return v
end


local function env_of(name)
    local env = envs[name]
    if not env then
        -- rawset: a plain assignment would go to _G through __newindex
        env = setmetatable({}, ENV_MT)
        rawset(env, "require", function(mod)
            if type(mod) ~= "string" then
                error("bad argument #1 to 'require' (string expected, got "
                      .. type(mod) .. ")", 2)
            end
            return resolve(name, mod)
        end)
        envs[name] = env
    end
    return env
end


stage_module = function(s, name)
    local src = s.modules[name]
    local kept = st.kept_ffi[name]
    if kept and kept.source == src then
        -- An FFI module that loaded in a version refused for another
        -- reason: its C declarations exist, so it must not run again.
        s.staged[name] = kept.value
        s.ffi_used[name] = kept.how
        return kept.value
    end
    if byte(src, 1) == 27 then
        fail(s, name, "precompiled bytecode is not accepted")
    end
    local chunk, err = loadstring(src, "=" .. name .. "@" .. s.version)
    if not chunk then
        fail(s, name, "syntax error: " .. err)
    end
    setfenv(chunk, env_of(name))
    s.staged[name] = LOADING
    local ok, res = pcall(chunk, name)
    if not ok then
        s.staged[name] = nil
        fail(s, name, "error at load: " .. tostring(res))
    end
    if res == nil then
        res = true
    end
    s.staged[name] = res
    return res
end


-- Which modules must be loaded again: those whose source changed or that
-- are not loaded, and, repeatedly, those that required one of them while
-- they loaded (they hold the old one in an upvalue) or one that is gone.
local function changed_set(modules)
    local changed, gone = {}, {}
    for name, src in pairs(modules) do
        if st.sources[name] ~= src or loaded[name] == nil then
            changed[name] = true
        end
    end
    for name in pairs(st.sources) do
        if modules[name] == nil and not st.pinned[name] then
            gone[name] = true
        end
    end
    repeat
        local grew = false
        for name in pairs(modules) do
            if not changed[name] then
                for dep in pairs(st.deps[name] or EMPTY) do
                    if changed[dep] or gone[dep] then
                        changed[name] = true
                        grew = true
                        break
                    end
                end
            end
        end
    until not grew
    return changed, gone
end


-- The sources the changed modules' new versions replace, name -> source:
-- the one this worker loaded, else the baseline's (the version the fleet
-- ran when this one was made current) if it differs.  Judging against the
-- baseline keeps a worker that skipped versions from loading, as new, a
-- module the other workers already run and so refuse to replace.  A
-- changed module not in it is new.
local function replaced_set(b, changed, base)
    local replaced = {}
    for name in pairs(changed) do
        local src = b.modules[name]
        local old = st.sources[name]
        if not old and base and base.modules[name] ~= src then
            old = base.modules[name]
        end
        replaced[name] = old
    end
    return replaced
end


-- Modules that used FFI may not be loaded again.  A module is never
-- replaced if its running version used FFI, or if its new source does (as
-- far as the source text shows).
local function check_pinned(b, replaced, base)
    for _, name in ipairs(b.names) do
        local src = b.modules[name]
        local old = replaced[name]
        if old then
            local how, at
            if st.sources[name] then
                how, at = st.pinned[name], st.pinned_version[name]
                                           or st.version
            else
                how, at = scan_ffi(old), base.version
            end
            if how then
                local why = old == src
                            and "it depends on a module that changed"
                            or "its source changed"
                return format("module \"%s\" uses FFI (%s) and cannot be"
                              .. " hot-replaced (%s); it stays pinned at"
                              .. " version \"%s\" until nginx reloads",
                              name, how, why, at or "?")
            end
            how = scan_ffi(src)
            if how then
                return format("module \"%s\": the new version uses FFI"
                              .. " (%s); a module that uses FFI cannot"
                              .. " replace a loaded one: reload nginx to"
                              .. " load it", name, how)
            end
        end
    end
    return nil
end


local function stage_all(s)
    for _, name in ipairs(s.names) do
        if s.changed[name] and s.staged[name] == nil then
            stage_module(s, name)
        end
    end
end


local function migrate_all(s)
    for _, name in ipairs(s.names) do
        local new = s.staged[name]
        local old = loaded[name]
        if new ~= nil and st.sources[name] and type(new) == "table"
           and type(rawget(new, "__migrate")) == "function"
        then
            local state = old
            if type(old) == "table" and type(old.__export) == "function" then
                local ok, res = pcall(old.__export, s.version)
                if not ok then
                    fail(s, name, "__export of the old version failed: "
                                  .. tostring(res))
                end
                state = res
            end
            local ok, err = pcall(new.__migrate, state, st.version,
                                  s.version)
            if not ok then
                fail(s, name, "__migrate failed: " .. tostring(err))
            end
        end
    end
end


-- Runs f(s) inside a C function so that nothing in it can yield.
local function run_unyielding(f, s)
    local ok, err = false, "not run"
    gsub("x", "x", function()
        ok, err = pcall(f, s)
    end)
    return ok, err
end


local function commit(s, b, gone)
    for name, value in pairs(s.staged) do
        loaded[name] = value
    end
    for name in pairs(gone) do
        loaded[name] = nil
        st.deps[name] = nil
    end
    local sources = {}
    for name, src in pairs(b.modules) do
        sources[name] = src
    end
    for name in pairs(st.pinned) do
        -- a pinned module left out of the bundle stays loaded
        if sources[name] == nil then
            sources[name] = st.sources[name]
        end
    end
    for name in pairs(s.staged) do
        st.deps[name] = s.deps[name] or {}
        st.kept_ffi[name] = nil
        local how = s.ffi_used[name] or scan_ffi(b.modules[name])
        if how then
            st.pinned[name] = how
            st.pinned_version[name] = b.version
        end
    end
    st.sources = sources
    st.version = b.version
end


-- Applies a parsed bundle (see resty.hotffi.code.bundle).  `base`, if
-- given, is the parsed bundle the fleet ran when this one was made
-- current (see replaced_set).  Returns true and { loaded = n,
-- modules = n }, or nil and a message; on failure nothing changed.
function _M.apply(b, base)
    if staging then
        return nil, "version \"" .. staging.version .. "\" is being applied"
    end
    local changed, gone = changed_set(b.modules)
    local replaced = replaced_set(b, changed, base)
    local err = check_pinned(b, replaced, base)
    if err then
        return nil, err
    end
    local s = {
        version = b.version,
        modules = b.modules,
        names = b.names,
        changed = changed,
        replaced = replaced,
        staged = {},
        deps = {},
        ffi_used = {},
    }
    staging = s
    local ok
    ok, err = run_unyielding(stage_all, s)
    if ok then
        ok, err = run_unyielding(migrate_all, s)
    end
    staging = nil
    if not ok then
        for name, how in pairs(s.ffi_used) do
            local v = s.staged[name]
            if v ~= nil and v ~= LOADING and not st.sources[name] then
                st.kept_ffi[name] = { source = b.modules[name], value = v,
                                      how = how }
            end
        end
        return nil, s.err or tostring(err)
    end
    commit(s, b, gone)
    local n = 0
    for _ in pairs(s.staged) do
        n = n + 1
    end
    return true, { loaded = n, modules = #b.names }
end


-- Checks that can be made without running anything: syntax, bytecode,
-- and the FFI rules against the version this worker runs (and `base`).
-- Returns nil or a message.
function _M.precheck(b, base)
    for _, name in ipairs(b.names) do
        local src = b.modules[name]
        if byte(src, 1) == 27 then
            return format("module \"%s\": precompiled bytecode is not"
                          .. " accepted", name)
        end
        local chunk, err = loadstring(src, "=" .. name .. "@" .. b.version)
        if not chunk then
            return format("module \"%s\": syntax error: %s", name, err)
        end
    end
    return check_pinned(b, replaced_set(b, (changed_set(b.modules)), base),
                        base)
end


function _M.current()
    return st.version
end


function _M.busy()
    return staging ~= nil
end


function _M.has(name)
    return st.sources[name] ~= nil
end


function _M.pinned()
    local out = {}
    for name, how in pairs(st.pinned) do
        out[name] = how
    end
    return out
end


function _M.count()
    local n = 0
    for _ in next, st.sources do
        n = n + 1
    end
    return n
end

return _M
