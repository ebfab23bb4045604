/*
 * hotffi_lua_vm.c -- one VM of a Lua service: a LuaJIT state of its own
 * with the standard libraries, ffi, jit and the `hotffi` module, that ran
 * the service's code and its init function.
 *
 * The module's chunk returns a table (its functions: init, retire, ...);
 * a chunk that returns nothing is looked up in the globals instead.  init
 * receives (cfg, state): the cfg string (or nil) and the state the
 * previous version's retire() returned (or nil), decoded afresh for every
 * VM; it must call hotffi.serve(handler[, {threads = n}]).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "hotffi_lua.h"


/* how many VMs are open in this process (tests: every one closed) */
static size_t  hotffi_lua_vms;


/* thread: any.  Exported for the tests (ffi.load()): VMs alive. */
__attribute__((visibility("default"))) size_t
hotffi_lua_vms_alive(void)
{
    return __atomic_load_n(&hotffi_lua_vms, __ATOMIC_RELAXED);
}


/* thread: the VM's.  The message handler: the error and a traceback. */
int
hotffi_lua_traceback(lua_State *L)
{
    const char  *msg;

    msg = lua_tostring(L, 1);

    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1)) {
            msg = lua_tostring(L, -1);

        } else {
            msg = lua_pushfstring(L, "(error object is a %s value)",
                                  luaL_typename(L, 1));
        }
    }

    luaL_traceback(L, L, msg, 1);

    return 1;
}


/* thread: the init thread.  protected: runs in lua_cpcall(). */
static int
hotffi_lua_vm_boot(lua_State *L)
{
    char             *slash;
    hotffi_lua_vm_t  *vm;

    vm = lua_touserdata(L, 1);
    lua_settop(L, 0);

    luaL_openlibs(L);

    /* require "hotffi" */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushlightuserdata(L, vm);
    lua_pushcclosure(L, hotffi_lua_module_open, 1);
    lua_setfield(L, -2, "hotffi");
    lua_pop(L, 1);

    /* the module's siblings first: require "thumbs.util" */
    slash = strrchr(vm->svc->path, '/');
    if (slash != NULL) {
        lua_pushlstring(L, vm->svc->path, slash - vm->svc->path + 1);
        lua_pushliteral(L, "?.lua;");
        lua_getfield(L, -3, "path");
        lua_concat(L, 3);
        lua_setfield(L, -2, "path");
    }

    lua_pop(L, 1);

    return 0;
}


/*
 * thread: the init thread.  Opens vm->L, runs the code and init.  state:
 * borrowed, the previous version's (or NULL).  On failure the VM is
 * closed again and err says why; the return is an rc for libffi_init().
 */
int
hotffi_lua_vm_open(hotffi_lua_vm_t *vm, const char *state, size_t state_len,
    char *err, size_t errlen)
{
    int                rc;
    char               chunk[512];
    lua_State         *L;
    hotffi_lua_svc_t  *svc;

    svc = vm->svc;
    vm->handler = LUA_NOREF;
    vm->module = LUA_NOREF;

    L = luaL_newstate();
    if (L == NULL) {
        (void) snprintf(err, errlen, "luaL_newstate() failed: out of memory");
        return HOTFFI_LUA_ENOMEM;
    }

    vm->L = L;
    (void) __atomic_add_fetch(&hotffi_lua_vms, 1, __ATOMIC_RELAXED);

    if (lua_cpcall(L, hotffi_lua_vm_boot, vm) != 0) {
        (void) snprintf(err, errlen, "cannot start a VM: %s",
                        lua_tostring(L, -1));
        rc = HOTFFI_LUA_ENOMEM;
        goto failed;
    }

    lua_settop(L, 0);
    lua_pushcfunction(L, hotffi_lua_traceback);                  /* 1 */

    (void) snprintf(chunk, sizeof(chunk), "@%s", svc->path);

    if (luaL_loadbuffer(L, svc->src, svc->src_len, chunk) != 0) {
        (void) snprintf(err, errlen, "%s", lua_tostring(L, -1));
        rc = HOTFFI_LUA_ELOAD;
        goto failed;
    }

    if (lua_pcall(L, 0, 1, 1) != 0) {
        (void) snprintf(err, errlen, "%s", lua_tostring(L, -1));
        rc = HOTFFI_LUA_ELOAD;
        goto failed;
    }

    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_pushvalue(L, LUA_GLOBALSINDEX);
    }

    lua_pushvalue(L, -1);
    vm->module = luaL_ref(L, LUA_REGISTRYINDEX);                 /* 2 */

    lua_getfield(L, 2, svc->function);

    if (!lua_isfunction(L, -1)) {
        (void) snprintf(err, errlen, "%s: no function \"%s\" (a %s)",
                        svc->path, svc->function, luaL_typename(L, -1));
        rc = HOTFFI_LUA_EINIT;
        goto failed;
    }

    if (svc->arg != NULL) {
        lua_pushstring(L, svc->arg);

    } else {
        lua_pushnil(L);
    }

    if (state != NULL && state_len >= HOTFFI_LUA_STATE_MAGIC_LEN
        && memcmp(state, HOTFFI_LUA_STATE_MAGIC, HOTFFI_LUA_STATE_MAGIC_LEN)
           == 0)
    {
        /* string.buffer.decode(blob) */
        lua_getglobal(L, "require");
        lua_pushliteral(L, "string.buffer");
        if (lua_pcall(L, 1, 1, 1) != 0) {
            (void) snprintf(err, errlen, "%s", lua_tostring(L, -1));
            rc = HOTFFI_LUA_EINIT;
            goto failed;
        }

        lua_getfield(L, -1, "decode");
        lua_remove(L, -2);
        lua_pushlstring(L, state + HOTFFI_LUA_STATE_MAGIC_LEN,
                        state_len - HOTFFI_LUA_STATE_MAGIC_LEN);

        if (lua_pcall(L, 1, 1, 1) != 0) {
            (void) snprintf(err, errlen, "the state handed over cannot be "
                            "decoded: %s", lua_tostring(L, -1));
            rc = HOTFFI_LUA_EINIT;
            goto failed;
        }

    } else if (state != NULL) {
        /* another loader's state: its bytes */
        lua_pushlstring(L, state, state_len);

    } else {
        lua_pushnil(L);
    }

    if (lua_pcall(L, 2, 0, 1) != 0) {
        (void) snprintf(err, errlen, "%s", lua_tostring(L, -1));
        rc = HOTFFI_LUA_EINIT;
        goto failed;
    }

    if (!vm->served) {
        (void) snprintf(err, errlen, "%s: %s() did not call hotffi.serve()",
                        svc->path, svc->function);
        rc = HOTFFI_LUA_EINIT;
        goto failed;
    }

    lua_settop(L, 0);

    return HOTFFI_LUA_OK;

failed:

    hotffi_lua_vm_close(vm);
    return rc;
}


/* thread: the VM's last owner; its serving thread was joined. */
void
hotffi_lua_vm_close(hotffi_lua_vm_t *vm)
{
    if (vm->L == NULL) {
        return;
    }

    lua_close(vm->L);
    vm->L = NULL;
    vm->served = 0;
    (void) __atomic_sub_fetch(&hotffi_lua_vms, 1, __ATOMIC_RELAXED);
}
