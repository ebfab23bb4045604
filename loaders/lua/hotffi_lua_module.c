/*
 * hotffi_lua_module.c -- the `hotffi` module inside a Lua service:
 *
 *   hotffi.serve(handler[, {threads = n, budget = instructions}])
 *                                 (a budget turns the VM's JIT off)
 *   hotffi.log(level, ...)        hotffi.ERR, WARN, NOTICE, INFO, DEBUG
 *   hotffi.sleep(seconds)         blocks this VM's thread only
 *   hotffi.cancelled()            the current call's caller gave up
 *   hotffi.shared(name)           a lua_shared_dict (hotffi_lua_shdict.c)
 *
 * Every function's upvalue 1 is its VM (a light userdata, borrowed: the
 * VM outlives its state).
 */

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <luajit.h>

#include "hotffi.h"
#include "hotffi_lua.h"


#define hotffi_lua_self(L)  \
    ((hotffi_lua_vm_t *) lua_touserdata(L, lua_upvalueindex(1)))


/* thread: the init thread, inside init. */
static int
hotffi_lua_serve(lua_State *L)
{
    lua_Number        n;
    hotffi_lua_vm_t  *vm;

    vm = hotffi_lua_self(L);

    luaL_checktype(L, 1, LUA_TFUNCTION);

    if (vm->served) {
        return luaL_error(L, "hotffi.serve() was called already");
    }

    vm->threads = 1;
    vm->budget = 0;

    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);

        lua_getfield(L, 2, "threads");
        if (!lua_isnil(L, -1)) {
            n = luaL_checknumber(L, -1);
            if (n != floor(n) || n < 1 || n > HOTFFI_LUA_MAX_THREADS) {
                return luaL_error(L, "threads must be an integer from 1 to "
                                  "%d", HOTFFI_LUA_MAX_THREADS);
            }

            vm->threads = (int) n;
        }

        lua_getfield(L, 2, "budget");
        if (!lua_isnil(L, -1)) {
            n = luaL_checknumber(L, -1);
            if (n != floor(n) || n < 1 || n > 1e15) {
                return luaL_error(L, "budget must be a positive integer "
                                  "(instructions per call)");
            }

            vm->budget = (long) n;

            /*
             * LuaJIT checks no hook in compiled code: a VM with a budget
             * runs interpreted (docs/lua-services.md, "Limits")
             */
            (void) luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE
                                        | LUAJIT_MODE_FLUSH);
            (void) luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE
                                        | LUAJIT_MODE_OFF);
        }

        lua_pop(L, 2);
    }

    lua_pushvalue(L, 1);
    vm->handler = luaL_ref(L, LUA_REGISTRYINDEX);
    vm->served = 1;

    return 0;
}


/* thread: the VM's.  hotffi.log(level, ...): the values, tostring()'ed */
static int
hotffi_lua_log(lua_State *L)
{
    int               level, i, n;
    size_t            len;
    const char       *msg;
    hotffi_lua_vm_t  *vm;

    vm = hotffi_lua_self(L);
    level = (int) luaL_checkinteger(L, 1);
    n = lua_gettop(L);

    lua_getglobal(L, "tostring");

    for (i = 2; i <= n; i++) {
        lua_pushvalue(L, n + 1);
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        if (!lua_isstring(L, -1)) {
            return luaL_error(L, "tostring() must return a string");
        }
    }

    lua_concat(L, n - 1);
    msg = lua_tolstring(L, -1, &len);

    if (hotffi_lua_host.log != NULL && len > 0) {
        hotffi_lua_host.log(vm->svc->tq, level, msg, (int) len);
    }

    return 0;
}


/* thread: the VM's */
static int
hotffi_lua_sleep(lua_State *L)
{
    lua_Number       s;
    struct timespec  ts;

    s = luaL_checknumber(L, 1);
    if (!(s >= 0 && s < 1e9)) {
        return luaL_error(L, "bad number of seconds");
    }

    ts.tv_sec = (time_t) s;
    ts.tv_nsec = (long) ((s - (lua_Number) ts.tv_sec) * 1e9);

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        /* again, for what is left */
    }

    return 0;
}


/* thread: the VM's.  false outside a call. */
static int
hotffi_lua_cancelled(lua_State *L)
{
    hotffi_lua_vm_t  *vm;

    vm = hotffi_lua_self(L);

    lua_pushboolean(L, vm->task != NULL
                       && hotffi_lua_host.task_cancelled != NULL
                       && hotffi_lua_host.task_cancelled(vm->task));
    return 1;
}


static const struct {
    const char     *name;
    lua_CFunction   f;
} hotffi_lua_funcs[] = {
    { "serve", hotffi_lua_serve },
    { "log", hotffi_lua_log },
    { "sleep", hotffi_lua_sleep },
    { "cancelled", hotffi_lua_cancelled },
    { "shared", hotffi_lua_shdict_open },
};


static const struct {
    const char  *name;
    int          level;
} hotffi_lua_levels[] = {
    { "EMERG", HOTFFI_LEVEL_EMERG }, { "ALERT", HOTFFI_LEVEL_ALERT },
    { "CRIT", HOTFFI_LEVEL_CRIT }, { "ERR", HOTFFI_LEVEL_ERR },
    { "WARN", HOTFFI_LEVEL_WARN }, { "NOTICE", HOTFFI_LEVEL_NOTICE },
    { "INFO", HOTFFI_LEVEL_INFO }, { "DEBUG", HOTFFI_LEVEL_DEBUG },
};


/*
 * thread: the init thread (require "hotffi").  Also makes the task table
 * handlers receive, kept in the registry as "hotffi.task":
 * task.cancelled() is hotffi.cancelled().
 */
int
hotffi_lua_module_open(lua_State *L)
{
    size_t  i;

    lua_newtable(L);

    for (i = 0; i < sizeof(hotffi_lua_funcs) / sizeof(hotffi_lua_funcs[0]);
         i++)
    {
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_pushcclosure(L, hotffi_lua_funcs[i].f, 1);
        lua_setfield(L, -2, hotffi_lua_funcs[i].name);
    }

    for (i = 0; i < sizeof(hotffi_lua_levels) / sizeof(hotffi_lua_levels[0]);
         i++)
    {
        lua_pushinteger(L, hotffi_lua_levels[i].level);
        lua_setfield(L, -2, hotffi_lua_levels[i].name);
    }

    lua_newtable(L);
    lua_getfield(L, -2, "cancelled");
    lua_setfield(L, -2, "cancelled");
    lua_setfield(L, LUA_REGISTRYINDEX, "hotffi.task");

    return 1;
}
