/*
 * hotffi_lua_keep.c -- what a Lua service hands to its next version, and
 * the services kept after a hand-over failed.
 *
 * DESIGN
 * retire(): the module's function of that name, called in the first VM
 * once every serving thread has answered its call and stopped; what it
 * returns (nil for nothing) is serialised with LuaJIT's string.buffer
 * (tables, strings, numbers, booleans, nil exactly; a table reached twice
 * arrives as two copies, and a cycle is refused, "too deep") and
 * becomes the next version's init(cfg, state).  A retire() that raises, or
 * returns what cannot cross (a function, a cdata, a userdata, a thread),
 * fails the reload: the service, VMs and all, is kept here under its cfg,
 * and the rollback (libffi_init() of the same cfg, hotffi_rollback() 1)
 * takes it back and starts its threads again: its state is as it was.
 *
 * locks: hotffi_lua_keep_mtx guards the list.  A kept service's VMs have
 * no thread; the one that takes it owns it.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "hotffi.h"
#include "hotffi_lua.h"


typedef struct hotffi_lua_kept_s  hotffi_lua_kept_t;

struct hotffi_lua_kept_s {
    hotffi_lua_svc_t   *svc;     /* ours while kept */
    hotffi_lua_kept_t  *next;
};


static pthread_mutex_t     hotffi_lua_keep_mtx = PTHREAD_MUTEX_INITIALIZER;
static hotffi_lua_kept_t  *hotffi_lua_kept;      /* mtx */


/* thread: the first VM's last owner.  protected (lua_cpcall()). */
static int
hotffi_lua_keep_call(lua_State *L)
{
    hotffi_lua_vm_t  *vm;

    vm = lua_touserdata(L, 1);
    lua_settop(L, 0);

    lua_pushcfunction(L, hotffi_lua_traceback);                  /* 1 */
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->module);
    lua_getfield(L, 2, "retire");                                /* 3 */

    if (lua_isnil(L, 3)) {
        return 0;                                                /* none */
    }

    if (lua_pcall(L, 0, 1, 1) != 0) {
        return lua_error(L);
    }

    if (lua_isnil(L, -1)) {
        return 0;
    }

    /* string.buffer.encode(value) */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "string.buffer");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, -3);

    if (lua_pcall(L, 1, 1, 0) != 0) {
        return luaL_error(L, "the state retire() returned cannot cross to "
                          "the next version: %s (tables, strings, numbers "
                          "and booleans can)", lua_tostring(L, -1));
    }

    /* lua_cpcall() drops what its function returns */
    lua_setfield(L, LUA_REGISTRYINDEX, "hotffi.retired");

    return 0;
}


/*
 * thread: hotffi's reaper; svc's threads are joined.  The state in *state
 * (malloc()'ed: passes to hotffi) or NULL; HOTFFI_LUA_ERROR with err.
 */
int
hotffi_lua_keep_retire(hotffi_lua_svc_t *svc, char **state, int *len,
    char *err, size_t errlen)
{
    char         *s;
    size_t        n;
    lua_State    *L;
    const char   *blob;

    *state = NULL;
    *len = 0;

    L = svc->vms[0].L;
    lua_settop(L, 0);

    if (lua_cpcall(L, hotffi_lua_keep_call, &svc->vms[0]) != 0) {
        (void) snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, 0);
        return HOTFFI_LUA_ERROR;
    }

    lua_settop(L, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, "hotffi.retired");

    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_settop(L, 0);
        return HOTFFI_LUA_OK;
    }

    blob = lua_tolstring(L, -1, &n);

    if (n + HOTFFI_LUA_STATE_MAGIC_LEN >= 0x7fffffff) {
        (void) snprintf(err, errlen, "the state retire() returned is 2 GiB "
                        "or more");
        lua_settop(L, 0);
        return HOTFFI_LUA_ERROR;
    }

    s = malloc(HOTFFI_LUA_STATE_MAGIC_LEN + n);
    if (s == NULL) {
        (void) snprintf(err, errlen, "out of memory");
        lua_settop(L, 0);
        return HOTFFI_LUA_ERROR;
    }

    memcpy(s, HOTFFI_LUA_STATE_MAGIC, HOTFFI_LUA_STATE_MAGIC_LEN);
    memcpy(s + HOTFFI_LUA_STATE_MAGIC_LEN, blob, n);
    lua_settop(L, 0);

    *state = s;
    *len = (int) (HOTFFI_LUA_STATE_MAGIC_LEN + n);

    return HOTFFI_LUA_OK;
}


/* thread: hotffi's reaper.  svc: ownership passes to the list. */
void
hotffi_lua_keep_put(hotffi_lua_svc_t *svc)
{
    hotffi_lua_kept_t  *k, *old, **prev;

    k = malloc(sizeof(hotffi_lua_kept_t));
    if (k == NULL) {
        hotffi_lua_svc_free(svc);
        return;
    }

    k->svc = svc;

    (void) pthread_mutex_lock(&hotffi_lua_keep_mtx);

    /* one per cfg: an older one (its rollback never came) goes */
    old = NULL;
    for (prev = &hotffi_lua_kept; *prev != NULL; prev = &(*prev)->next) {
        if (strcmp((*prev)->svc->cfg, svc->cfg) == 0) {
            old = *prev;
            *prev = old->next;
            break;
        }
    }

    k->next = hotffi_lua_kept;
    hotffi_lua_kept = k;

    (void) pthread_mutex_unlock(&hotffi_lua_keep_mtx);

    if (old != NULL) {
        hotffi_lua_svc_free(old->svc);
        free(old);
    }
}


/* thread: the init thread.  The kept service of cfg (ours now), or NULL. */
hotffi_lua_svc_t *
hotffi_lua_keep_take(const char *cfg)
{
    hotffi_lua_kept_t   *k, **prev;
    hotffi_lua_svc_t    *svc;

    svc = NULL;

    (void) pthread_mutex_lock(&hotffi_lua_keep_mtx);

    for (prev = &hotffi_lua_kept; (k = *prev) != NULL; prev = &k->next) {
        if (strcmp(k->svc->cfg, cfg) == 0) {
            *prev = k->next;
            svc = k->svc;
            free(k);
            break;
        }
    }

    (void) pthread_mutex_unlock(&hotffi_lua_keep_mtx);

    return svc;
}
