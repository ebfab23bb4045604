/*
 * hotffi_lua_serve.c -- the serving threads of a Lua service: one per VM,
 * each taking a task at a time from the queue and answering it with its
 * VM's handler.
 *
 * handler(req, task) gets the request as a string (nil for a call without
 * one) and returns body[, rc]: rc 0 (or none) answers body (a string, a
 * number, or nil for no payload); another rc fails the call with it.  An
 * error fails the call with rc 2 and the message and Lua traceback; the
 * VM goes on serving.  With serve{budget = n}, a call that runs more than
 * about n VM instructions fails the same way (such a VM runs with its JIT
 * off: LuaJIT checks no hook in compiled code).
 */

#define _GNU_SOURCE  /* pthread_setname_np() */

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "hotffi.h"
#include "hotffi_lua.h"


typedef struct {
    hotffi_lua_vm_t  *vm;
    int               rc;
    char             *rsp;       /* malloc()'ed; passes to hotffi */
    size_t            len;
} hotffi_lua_call_t;


/* thread: the VM's.  The budget ran out. */
static void
hotffi_lua_budget_hook(lua_State *L, lua_Debug *ar)
{
    (void) ar;
    (void) luaL_error(L, "instruction budget exceeded");
}


/* thread: the VM's.  protected (lua_cpcall()): one call of the handler. */
static int
hotffi_lua_call(lua_State *L)
{
    int                 len, rc;
    char               *req;
    size_t              n;
    const char         *s;
    hotffi_lua_vm_t    *vm;
    hotffi_lua_call_t  *c;

    c = lua_touserdata(L, 1);
    vm = c->vm;
    lua_settop(L, 0);

    lua_pushcfunction(L, hotffi_lua_traceback);                  /* 1 */
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->handler);

    req = ngx_http_lua_ffi_get_req(vm->task, &len);
    if (req != NULL) {
        lua_pushlstring(L, req, (size_t) len);

    } else {
        lua_pushnil(L);
    }

    lua_getfield(L, LUA_REGISTRYINDEX, "hotffi.task");

    if (vm->budget > 0) {
        (void) lua_sethook(L, hotffi_lua_budget_hook, LUA_MASKCOUNT,
                           (int) (vm->budget > 0x7fffffff ? 0x7fffffff
                                                          : vm->budget));
    }

    rc = lua_pcall(L, 2, 2, 1);

    if (vm->budget > 0) {
        (void) lua_sethook(L, NULL, 0, 0);
    }

    if (rc != 0) {
        c->rc = HOTFFI_LUA_EHANDLER;
        s = lua_tolstring(L, -1, &n);

    } else if (lua_isnil(L, 2) || lua_isnumber(L, 2)) {
        c->rc = (int) lua_tointeger(L, 3);
        s = lua_isnil(L, 2) ? NULL : lua_tolstring(L, 2, &n);

    } else if (lua_type(L, 2) == LUA_TSTRING) {
        if (!lua_isnil(L, 3) && !lua_isnumber(L, 3)) {
            c->rc = HOTFFI_LUA_EHANDLER;
            s = lua_pushfstring(L, "the handler returned a %s as rc: "
                                "a number expected", luaL_typename(L, 3));
            n = strlen(s);

        } else {
            c->rc = (int) lua_tointeger(L, 3);
            s = lua_tolstring(L, 2, &n);
        }

    } else {
        c->rc = HOTFFI_LUA_EHANDLER;
        s = lua_pushfstring(L, "the handler returned a %s: a string, a "
                            "number or nil expected", luaL_typename(L, 2));
        n = strlen(s);
    }

    if (s != NULL) {
        if (n >= 0x7fffffff) {
            c->rc = HOTFFI_LUA_EHANDLER;
            s = "the handler's answer is 2 GiB or more";
            n = strlen(s);
        }

        c->rsp = malloc(n + 1);
        if (c->rsp == NULL) {
            return luaL_error(L, "out of memory");
        }

        memcpy(c->rsp, s, n + 1);
        c->len = n;
    }

    lua_settop(L, 0);

    return 0;
}


/* thread: a serving thread of its own, until poll() says stop. */
static void *
hotffi_lua_serve_loop(void *data)
{
    hotffi_lua_vm_t    *vm;
    hotffi_lua_call_t   c;

    vm = data;

    for ( ;; ) {
        vm->task = ngx_http_lua_ffi_task_poll(vm->svc->tq);
        if (vm->task == NULL) {
            break;
        }

        c.vm = vm;
        c.rc = 0;
        c.rsp = NULL;
        c.len = 0;

        if (lua_cpcall(vm->L, hotffi_lua_call, &c) != 0) {
            free(c.rsp);
            lua_settop(vm->L, 0);
            c.rc = HOTFFI_LUA_ENOMEM;
            c.rsp = strdup("out of memory");
            c.len = 0;
        }

        /* an empty answer: "" with len 0 is a NUL-terminated empty string */
        ngx_http_lua_ffi_respond(vm->task, c.rc, c.rsp, (int) c.len);
        vm->task = NULL;
    }

    return NULL;
}


/*
 * thread: the init thread (or a revival's).  Starts a thread per VM; on
 * failure the ones started are left for hotffi_lua_serve_join(), which
 * libffi_fini() calls once hotffi stopped the queue.
 */
int
hotffi_lua_serve_start(hotffi_lua_svc_t *svc, char *err, size_t errlen)
{
    int               i, rc;
    char              name[16];
    hotffi_lua_vm_t  *vm;

    for (i = 0; i < svc->nvms; i++) {
        vm = &svc->vms[i];

        rc = pthread_create(&vm->tid, NULL, hotffi_lua_serve_loop, vm);
        if (rc != 0) {
            (void) snprintf(err, errlen, "pthread_create() failed: %s",
                            strerror(rc));
            return HOTFFI_LUA_ERROR;
        }

        vm->started = 1;
        (void) snprintf(name, sizeof(name), "hotffi-lua/%d", vm->index);
        (void) pthread_setname_np(vm->tid, name);
    }

    return HOTFFI_LUA_OK;
}


/* thread: hotffi's reaper; the queue is stopped. */
void
hotffi_lua_serve_join(hotffi_lua_svc_t *svc)
{
    int  i;

    for (i = 0; i < svc->nvms; i++) {
        if (svc->vms[i].started) {
            (void) pthread_join(svc->vms[i].tid, NULL);
            svc->vms[i].started = 0;
        }
    }
}
