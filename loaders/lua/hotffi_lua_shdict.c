/*
 * hotffi_lua_shdict.c -- hotffi.shared(name) inside a Lua service: the
 * lua_shared_dict zones of nginx.conf through hotffi_shdict_*() (api.md,
 * "Shared dicts"), with ngx.shared.DICT's meaning, so what a service
 * writes the workers read and the other way round:
 *
 *   local d = hotffi.shared("cache")      -- nil, err without that zone
 *   d:get(key)                            -- value, flags (nil: none)
 *   d:set(key, value[, exptime[, flags]]) -- true, forcible | nil, err
 *   d:add(...), d:replace(...)            -- the same; nil, "exists"...
 *   d:delete(key)
 *   d:incr(key, by[, init[, init_ttl]])   -- n | nil, err
 *
 * Values: nil, booleans, numbers, strings, as ngx.shared.DICT.  The host
 * functions are looked up once (dlsym()); on a host without them
 * hotffi.shared() answers nil, "no shared dicts on this host".
 */

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "hotffi.h"
#include "hotffi_lua.h"


#define HOTFFI_LUA_SHDICT_MT  "hotffi.shared"


typedef struct {
    void  *(*find)(const char *name);
    int    (*get)(void *dict, const char *key, size_t key_len, int stale,
               hotffi_shdict_value_t *value, char *err, size_t err_len);
    int    (*store)(void *dict, int op, const char *key, size_t key_len,
               const hotffi_shdict_value_t *value, double exptime,
               int *forcible, char *err, size_t err_len);
    int    (*incr)(void *dict, const char *key, size_t key_len, double by,
               double *value, int has_init, double init, double init_ttl,
               int *forcible, char *err, size_t err_len);
} hotffi_lua_shdict_host_t;


static hotffi_lua_shdict_host_t  hotffi_lua_shdict_host;
static pthread_once_t            hotffi_lua_shdict_once = PTHREAD_ONCE_INIT;


/* thread: any, once */
static void
hotffi_lua_shdict_lookup(void)
{
    *(void **) &hotffi_lua_shdict_host.find = dlsym(RTLD_DEFAULT,
                                                    "hotffi_shdict");
    *(void **) &hotffi_lua_shdict_host.get = dlsym(RTLD_DEFAULT,
                                                   "hotffi_shdict_get");
    *(void **) &hotffi_lua_shdict_host.store = dlsym(RTLD_DEFAULT,
                                                     "hotffi_shdict_store");
    *(void **) &hotffi_lua_shdict_host.incr = dlsym(RTLD_DEFAULT,
                                                    "hotffi_shdict_incr");
}


/* thread: the VM's.  The zone of the userdata at 1 (the worker's for
 * ever: hotffi_shdict()'s handle is good for the worker's life) */
static void *
hotffi_lua_shdict_self(lua_State *L)
{
    return *(void **) luaL_checkudata(L, 1, HOTFFI_LUA_SHDICT_MT);
}


/* thread: the VM's */
static int
hotffi_lua_shdict_get(lua_State *L)
{
    int                     rc;
    char                    err[256];
    void                   *d;
    size_t                  klen;
    const char             *key;
    hotffi_shdict_value_t   v;

    d = hotffi_lua_shdict_self(L);
    key = luaL_checklstring(L, 2, &klen);
    memset(&v, 0, sizeof(v));

    rc = hotffi_lua_shdict_host.get(d, key, klen, 0, &v, err, sizeof(err));
    if (rc != HOTFFI_SHDICT_OK) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }

    switch (v.type) {
    case HOTFFI_SHDICT_BOOLEAN:
        lua_pushboolean(L, v.number != 0);
        break;
    case HOTFFI_SHDICT_NUMBER:
        lua_pushnumber(L, v.number);
        break;
    case HOTFFI_SHDICT_STRING:
        /* v.str: malloc()'ed by hotffi, ours to free */
        lua_pushlstring(L, v.str, v.len);
        free(v.str);
        break;
    default:
        lua_pushnil(L);
        return 1;
    }

    if (v.flags == 0) {
        return 1;
    }

    lua_pushinteger(L, (lua_Integer) v.flags);
    return 2;
}


/* thread: the VM's.  set, add, replace (op: upvalue 1), delete */
static int
hotffi_lua_shdict_store(lua_State *L)
{
    int                     rc, op, forcible;
    char                    err[256];
    void                   *d;
    size_t                  klen;
    const char             *key;
    hotffi_shdict_value_t   v;

    d = hotffi_lua_shdict_self(L);
    key = luaL_checklstring(L, 2, &klen);
    op = (int) lua_tointeger(L, lua_upvalueindex(1));
    memset(&v, 0, sizeof(v));

    switch (lua_type(L, 3)) {
    case LUA_TNIL:
    case LUA_TNONE:
        v.type = HOTFFI_SHDICT_NIL;
        break;
    case LUA_TBOOLEAN:
        v.type = HOTFFI_SHDICT_BOOLEAN;
        v.number = lua_toboolean(L, 3);
        break;
    case LUA_TNUMBER:
        v.type = HOTFFI_SHDICT_NUMBER;
        v.number = lua_tonumber(L, 3);
        break;
    case LUA_TSTRING:
        v.type = HOTFFI_SHDICT_STRING;
        /* borrowed from the Lua string for the call */
        v.str = (char *) lua_tolstring(L, 3, &v.len);
        break;
    default:
        return luaL_error(L, "bad value type: %s", luaL_typename(L, 3));
    }

    v.flags = (unsigned int) luaL_optinteger(L, 5, 0);
    forcible = 0;

    rc = hotffi_lua_shdict_host.store(d, op, key, klen, &v,
                                      luaL_optnumber(L, 4, 0), &forcible,
                                      err, sizeof(err));
    if (rc != HOTFFI_SHDICT_OK) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }

    lua_pushboolean(L, 1);
    lua_pushboolean(L, forcible);
    return 2;
}


/* thread: the VM's */
static int
hotffi_lua_shdict_delete(lua_State *L)
{
    lua_settop(L, 2);
    lua_pushnil(L);
    return hotffi_lua_shdict_store(L);
}


/* thread: the VM's */
static int
hotffi_lua_shdict_incr(lua_State *L)
{
    int          rc, has_init, forcible;
    char         err[256];
    void        *d;
    double       n;
    size_t       klen;
    const char  *key;

    d = hotffi_lua_shdict_self(L);
    key = luaL_checklstring(L, 2, &klen);
    has_init = !lua_isnoneornil(L, 4);
    forcible = 0;

    rc = hotffi_lua_shdict_host.incr(d, key, klen, luaL_checknumber(L, 3),
                                     &n, has_init, luaL_optnumber(L, 4, 0),
                                     luaL_optnumber(L, 5, 0), &forcible,
                                     err, sizeof(err));
    if (rc != HOTFFI_SHDICT_OK) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }

    lua_pushnumber(L, n);
    return 1;
}


/* thread: the VM's.  hotffi.shared(name) */
int
hotffi_lua_shdict_open(lua_State *L)
{
    void        *d, **ud;
    const char  *name;

    name = luaL_checkstring(L, 1);

    (void) pthread_once(&hotffi_lua_shdict_once, hotffi_lua_shdict_lookup);

    if (hotffi_lua_shdict_host.find == NULL
        || hotffi_lua_shdict_host.get == NULL
        || hotffi_lua_shdict_host.store == NULL
        || hotffi_lua_shdict_host.incr == NULL)
    {
        lua_pushnil(L);
        lua_pushliteral(L, "no shared dicts on this host");
        return 2;
    }

    d = hotffi_lua_shdict_host.find(name);
    if (d == NULL) {
        lua_pushnil(L);
        lua_pushfstring(L, "no lua_shared_dict \"%s\"", name);
        return 2;
    }

    ud = lua_newuserdata(L, sizeof(void *));
    *ud = d;

    if (luaL_newmetatable(L, HOTFFI_LUA_SHDICT_MT)) {
        lua_newtable(L);

        lua_pushcfunction(L, hotffi_lua_shdict_get);
        lua_setfield(L, -2, "get");
        lua_pushinteger(L, HOTFFI_SHDICT_SET);
        lua_pushcclosure(L, hotffi_lua_shdict_store, 1);
        lua_setfield(L, -2, "set");
        lua_pushinteger(L, HOTFFI_SHDICT_ADD);
        lua_pushcclosure(L, hotffi_lua_shdict_store, 1);
        lua_setfield(L, -2, "add");
        lua_pushinteger(L, HOTFFI_SHDICT_REPLACE);
        lua_pushcclosure(L, hotffi_lua_shdict_store, 1);
        lua_setfield(L, -2, "replace");
        lua_pushinteger(L, HOTFFI_SHDICT_SET);
        lua_pushcclosure(L, hotffi_lua_shdict_delete, 1);
        lua_setfield(L, -2, "delete");
        lua_pushcfunction(L, hotffi_lua_shdict_incr);
        lua_setfield(L, -2, "incr");

        lua_setfield(L, -2, "__index");
    }

    lua_setmetatable(L, -2);

    return 1;
}
