-- resty.hotffi.isolate -- the isolate option of resty.hotffi's load(): the
-- runtime's library runs in a helper process (docs/isolation.md).

local error = error
local floor = math.floor
local max = math.max
local min = math.min
local find = string.find
local pairs = pairs
local tostring = tostring
local type = type


local _M = { version = "0.1.0" }


-- the worker's side of isolation, loaded by the core as the runtime
_M.lib = "hotffi_isolate"


-- option -> key of src/isolate/hotffi_iso_conf.h, and its scale
local NUMBERS = {
    memory = { "memory", 1 },               -- bytes
    cpu = { "cpu", 1 },                     -- seconds
    files = { "files", 1 },
    ring = { "ring", 1 },                   -- bytes
    stuck_timeout = { "stuck_ms", 1000 },   -- seconds
    restarts = { "restarts", 1 },
    restart_window = { "window_ms", 1000 }, -- seconds
    max_inflight = { "inflight", 1 },
}


local function line_safe(v, what, level)
    if find(v, "\n", 1, true) then
        error("bad " .. what .. ": no newline allowed with isolate", level + 1)
    end
    return v
end


-- Checks the isolate option (true, false, nil or a table of the above and
-- helper); raises misuse at level.  Returns the table to keep, or nil when
-- the runtime is not isolated.
function _M.check(opt, level)
    if opt == nil or opt == false then
        return nil
    end
    if opt == true then
        return {}
    end
    if type(opt) ~= "table" then
        error("bad option isolate: boolean or table expected, got "
              .. type(opt), level + 1)
    end

    for k, v in pairs(opt) do
        if k == "helper" then
            if type(v) ~= "string" or v == "" then
                error("bad option isolate.helper: non-empty string expected",
                      level + 1)
            end
            line_safe(v, "option isolate.helper", level + 1)

        elseif NUMBERS[k] then
            if type(v) ~= "number" or v < 0 or v >= 2 ^ 53 then
                error("bad option isolate." .. k .. ": number from 0 "
                      .. "expected, got " .. tostring(v), level + 1)
            end

        else
            error("bad option isolate." .. tostring(k) .. ": unknown",
                  level + 1)
        end
    end
    return opt
end


-- The library and cfg the core loads in place of lib and cfg: the worker's
-- side of isolation, with lib, cfg and the options opt (from check()) in
-- its cfg.  name: the runtime's, for its messages; init_timeout: the
-- seconds the load (or reload) waits for libffi_init(), after which the
-- helper still in it is killed too.
function _M.wrap(lib, cfg, name, opt, init_timeout, level)
    local out = {
        "lib=", line_safe(lib, "library", level), "\n",
        "name=", line_safe(name, "runtime name", level), "\n",
        "init_ms=", max(1, floor(min(init_timeout, 2 ^ 31) * 1000)), "\n",
    }

    for k, v in pairs(opt) do
        if k == "helper" then
            out[#out + 1] = "helper=" .. v .. "\n"
        else
            local spec = NUMBERS[k]
            out[#out + 1] = spec[1] .. "=" .. floor(v * spec[2]) .. "\n"
        end
    end

    if cfg ~= nil then
        out[#out + 1] = "cfg=" .. cfg
    end

    return _M.lib, table.concat(out)
end


-- A load's error names the runtime by the key the core saw (wrapped, from
-- wrap()): name it by the user's key instead.
function _M.unwrap_error(msg, wrapped, key)
    local from, to = find(msg, wrapped, 1, true)
    if not from then
        return msg
    end
    return msg:sub(1, from - 1) .. key .. msg:sub(to + 1)
end


return _M
