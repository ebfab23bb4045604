/*
 * hotffi_lua_loader.c -- libhotffi_lua.so's runtime ABI: libffi_init()
 * starts a Lua service, libffi_fini() stops it and closes its VMs,
 * libffi_retire() also hands its state to the next version.
 *
 *   hotffi.load("hotffi_lua", "/srv/svc/thumbs?,init,cfg")
 *
 * See hotffi_lua.h for the model and docs/lua-services.md for the use.
 */

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"
#include "hotffi_lua.h"


hotffi_lua_host_t  hotffi_lua_host;

static pthread_once_t  hotffi_lua_host_once = PTHREAD_ONCE_INIT;


/* thread: any, once. */
static void
hotffi_lua_host_lookup(void)
{
    /* RTLD_DEFAULT: hotffi's module is loaded RTLD_GLOBAL */
    *(void **) &hotffi_lua_host.task_cancelled = dlsym(RTLD_DEFAULT,
                                                  "hotffi_task_cancelled");
    *(void **) &hotffi_lua_host.init_error = dlsym(RTLD_DEFAULT,
                                                   "hotffi_init_error");
    *(void **) &hotffi_lua_host.state = dlsym(RTLD_DEFAULT, "hotffi_state");
    *(void **) &hotffi_lua_host.rollback = dlsym(RTLD_DEFAULT,
                                                 "hotffi_rollback");
    *(void **) &hotffi_lua_host.log = dlsym(RTLD_DEFAULT, "hotffi_log");
}


/* thread: any; svc's threads are joined (or never started). */
void
hotffi_lua_svc_free(hotffi_lua_svc_t *svc)
{
    int  i;

    if (svc == NULL) {
        return;
    }

    for (i = 0; i < svc->nvms; i++) {
        hotffi_lua_vm_close(&svc->vms[i]);
    }

    free(svc->vms);
    free(svc->cfg);
    free(svc->path);
    free(svc->arg);
    free(svc->function);
    free(svc->src);
    free(svc);
}


/* thread: the init thread.  Says why init fails, returns rc. */
static int
hotffi_lua_fail(void *tq, int rc, const char *err)
{
    if (hotffi_lua_host.init_error != NULL) {
        hotffi_lua_host.init_error(tq, err);
    }

    return rc;
}


/*
 * thread: hotffi's init thread (every signal blocked, and so on the
 * threads it starts).
 * cfg: borrowed, "module[?][,function[,cfg]]".
 * tq:  borrowed, until libffi_fini() or libffi_retire().
 */
int
libffi_init(char *cfg, void *tq)
{
    int                rc, rollback, reread, i, n;
    char               err[HOTFFI_LUA_ERR_MAX];
    size_t             state_len;
    const char        *state;
    hotffi_lua_svc_t  *svc;

    (void) pthread_once(&hotffi_lua_host_once, hotffi_lua_host_lookup);

    rollback = hotffi_lua_host.rollback ? hotffi_lua_host.rollback(tq) : 0;

    /* a hand-over that failed: the same VMs serve again */
    if (rollback && cfg != NULL && (svc = hotffi_lua_keep_take(cfg))) {
        svc->tq = tq;
        hotffi_tq_set_data(tq, svc);

        if (hotffi_lua_serve_start(svc, err, sizeof(err)) != HOTFFI_LUA_OK)
        {
            return hotffi_lua_fail(tq, HOTFFI_LUA_ENOMEM, err);
        }

        return 0;
    }

    svc = calloc(1, sizeof(hotffi_lua_svc_t));
    if (svc == NULL) {
        return hotffi_lua_fail(tq, HOTFFI_LUA_ENOMEM, "out of memory");
    }

    svc->tq = tq;
    hotffi_tq_set_data(tq, svc);

    if (hotffi_lua_config_parse(svc, cfg, &reread, err, sizeof(err))
        != HOTFFI_LUA_OK)
    {
        return hotffi_lua_fail(tq, HOTFFI_LUA_EBADCFG, err);
    }

    if (hotffi_lua_source_get(svc, reread, rollback, err, sizeof(err))
        != HOTFFI_LUA_OK)
    {
        return hotffi_lua_fail(tq, HOTFFI_LUA_ELOAD, err);
    }

    state = NULL;
    state_len = 0;

    if (hotffi_lua_host.state != NULL) {
        state = hotffi_lua_host.state(tq, &n);
        state_len = state ? (size_t) n : 0;
    }

    /*
     * the first VM's serve() says how many there are: room for the most,
     * so that no VM moves once its functions hold its address (a few
     * dozen bytes each)
     */
    svc->vms = calloc(HOTFFI_LUA_MAX_THREADS, sizeof(hotffi_lua_vm_t));
    if (svc->vms == NULL) {
        return hotffi_lua_fail(tq, HOTFFI_LUA_ENOMEM, "out of memory");
    }

    svc->vms[0].svc = svc;
    svc->vms[0].index = 1;
    svc->nvms = 1;

    rc = hotffi_lua_vm_open(&svc->vms[0], state, state_len, err,
                            sizeof(err));
    if (rc != HOTFFI_LUA_OK) {
        return hotffi_lua_fail(tq, rc, err);
    }

    n = svc->vms[0].threads;

    for (i = 1; i < n; i++) {
        svc->vms[i].svc = svc;
        svc->vms[i].index = i + 1;
        svc->nvms = i + 1;

        rc = hotffi_lua_vm_open(&svc->vms[i], state, state_len, err,
                                sizeof(err));
        if (rc != HOTFFI_LUA_OK) {
            return hotffi_lua_fail(tq, rc, err);
        }
    }

    if (hotffi_lua_serve_start(svc, err, sizeof(err)) != HOTFFI_LUA_OK) {
        return hotffi_lua_fail(tq, HOTFFI_LUA_ENOMEM, err);
    }

    hotffi_lua_source_remember(svc, reread);

    return 0;
}


/*
 * thread: hotffi's reaper; tq is stopped, so every serving thread ends
 * once it answered its call.  Also after a failed libffi_init().
 */
int
libffi_fini(void *tq)
{
    hotffi_lua_svc_t  *svc;

    svc = hotffi_tq_data(tq);
    if (svc == NULL) {
        return 0;
    }

    hotffi_lua_serve_join(svc);
    hotffi_lua_svc_free(svc);

    return 0;
}


/*
 * thread: hotffi's reaper; tq is stopped (calls still queued wait for the
 * next version).  state: malloc()'ed, passes to hotffi.
 */
int
libffi_retire(void *tq, char **state, int *len)
{
    char               err[HOTFFI_LUA_ERR_MAX];
    hotffi_lua_svc_t  *svc;

    *state = NULL;
    *len = 0;

    svc = hotffi_tq_data(tq);
    if (svc == NULL) {
        return 0;
    }

    hotffi_lua_serve_join(svc);

    if (hotffi_lua_keep_retire(svc, state, len, err, sizeof(err))
        != HOTFFI_LUA_OK)
    {
        if (hotffi_lua_host.init_error != NULL) {
            hotffi_lua_host.init_error(tq, err);
        }

        /* the rollback takes it back, VMs and state as they are */
        svc->tq = NULL;
        hotffi_lua_keep_put(svc);
        return HOTFFI_LUA_ERETIRE;
    }

    hotffi_lua_svc_free(svc);

    return 0;
}
