/*
 * ratelimit.c -- a runtime that shares a rate-limit counter with Lua: the
 * requests a runtime serves and the ones Lua serves draw on one budget per
 * key, kept in a lua_shared_dict that both sides increment
 * (hotffi_shdict_incr() here, ngx.shared.DICT:incr() in Lua), in every
 * worker.  examples/nginx.conf's /limit shows it.
 *
 *   lua_shared_dict ratelimit 1m;
 *   hotffi.load("ratelimit", "ratelimit 5 60")     -- dict, limit, window
 *   rt:hit("alice") -> "ok 3/5" or "limited 6/5"
 *
 * Lua does the same with ngx.shared.ratelimit:incr("alice", 1, 0, 60): the
 * first hit of a window creates the key with a 60 s expiry, so the budget
 * comes back when it expires.  The increments are atomic across workers
 * and threads (docs/api.md, "Shared dicts"): however the hits are split
 * between Lua and runtime threads, exactly `limit` of them are "ok" per
 * window.
 *
 * hotffi's own functions are weak symbols: the library still loads on
 * a host without them (lua-resty-ffi), where libffi_init() fails with a
 * reason instead.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"


#pragma weak hotffi_shdict
#pragma weak hotffi_shdict_incr
#pragma weak hotffi_init_error
#pragma weak hotffi_tq_set_data
#pragma weak hotffi_tq_data

#define RATELIMIT_THREADS  2


typedef struct {
    void       *tq;
    void       *dict;     /* hotffi's zone handle, good for the worker's life */
    double      limit;
    double      window;   /* seconds */
    pthread_t   tids[RATELIMIT_THREADS];
} ratelimit_t;


/* thread: runtime */
static void
ratelimit_hit(ratelimit_t *rl, void *task)
{
    int     len, n;
    char   *key, *rsp, err[64];
    double  count;

    key = ngx_http_lua_ffi_get_req(task, &len);   /* borrowed from task */

    if (len <= 0) {
        ngx_http_lua_ffi_respond(task, 1, NULL, 0);
        return;
    }

    /* one atomic step: a new key starts at 0 and expires after window */
    if (hotffi_shdict_incr(rl->dict, key, (size_t) len, 1, &count, 1, 0,
                           rl->window, NULL, err, sizeof(err))
        != HOTFFI_SHDICT_OK)
    {
        rsp = strdup(err);
        ngx_http_lua_ffi_respond(task, 2, rsp, rsp ? (int) strlen(rsp) : 0);
        return;
    }

    rsp = malloc(64);
    if (rsp == NULL) {
        ngx_http_lua_ffi_respond(task, 1, NULL, 0);
        return;
    }

    n = snprintf(rsp, 64, "%s %.0f/%.0f",
                 count <= rl->limit ? "ok" : "limited", count, rl->limit);

    /* rsp: ownership passes to hotffi */
    ngx_http_lua_ffi_respond(task, 0, rsp, n);
}


/* thread: runtime */
static void *
ratelimit_loop(void *data)
{
    void         *task;
    ratelimit_t  *rl = data;

    while ((task = ngx_http_lua_ffi_task_poll(rl->tq)) != NULL) {
        ratelimit_hit(rl, task);
    }

    return NULL;
}


static int
ratelimit_fail(void *tq, const char *why, int rc)
{
    if (hotffi_init_error) {
        hotffi_init_error(tq, why);
    }

    return rc;
}


/* thread: hotffi's init thread.  cfg: "DICT LIMIT WINDOW", borrowed. */
int
libffi_init(char *cfg, void *tq)
{
    int           i;
    char          name[128];
    ratelimit_t  *rl;

    if (hotffi_shdict == NULL || hotffi_shdict_incr == NULL
        || hotffi_tq_set_data == NULL)
    {
        return ratelimit_fail(tq, "this host has no shared dicts for "
                              "runtimes (hotffi_shdict)", 2);
    }

    rl = calloc(1, sizeof(ratelimit_t));
    if (rl == NULL) {
        return 1;
    }

    if (cfg == NULL
        || sscanf(cfg, "%127s %lf %lf", name, &rl->limit, &rl->window) != 3
        || !(rl->limit >= 1) || !(rl->window > 0))
    {
        free(rl);
        return ratelimit_fail(tq, "cfg: \"DICT LIMIT WINDOW\" expected, "
                              "e.g. \"ratelimit 5 60\"", 3);
    }

    rl->dict = hotffi_shdict(name);
    if (rl->dict == NULL) {
        free(rl);
        return ratelimit_fail(tq, "no such lua_shared_dict", 4);
    }

    rl->tq = tq;
    hotffi_tq_set_data(tq, rl);

    for (i = 0; i < RATELIMIT_THREADS; i++) {
        if (pthread_create(&rl->tids[i], NULL, ratelimit_loop, rl) != 0) {
            /* the threads started end at the stop; fini joins them */
            return ratelimit_fail(tq, "pthread_create failed", 5);
        }
    }

    return 0;
}


/* thread: a hotffi reaper thread, after the stop. */
int
libffi_fini(void *tq)
{
    int           i;
    ratelimit_t  *rl = hotffi_tq_data ? hotffi_tq_data(tq) : NULL;

    if (rl == NULL) {
        return 0;
    }

    for (i = 0; i < RATELIMIT_THREADS; i++) {
        if (rl->tids[i]) {
            pthread_join(rl->tids[i], NULL);
        }
    }

    free(rl);
    return 0;
}
