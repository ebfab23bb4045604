/*
 * rt_nofini.c -- a runtime without libffi_fini(), as lua-resty-ffi runtimes
 * are: one detached thread answers every request with its bytes and ends at
 * the stop.  The library cannot tell hotffi when that thread has left it;
 * with unpin, the kernel can (hotffi_poller.h).  cfg "linger=MS": the
 * thread stays MS ms after the stop before it ends.
 */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hotffi.h"
#include "unit_rt.h"


/* what libffi_init() hands its thread, which frees it */
typedef struct {
    void  *tq;
    long   linger_ms;
} nofini_t;


/* thread: runtime */
static void *
nofini_loop(void *data)
{
    int              len;
    char            *req;
    void            *task;
    nofini_t        *n = data;
    struct timespec  linger;

    while ((task = ngx_http_lua_ffi_task_poll(n->tq)) != NULL) {
        req = ngx_http_lua_ffi_get_req(task, &len);
        ngx_http_lua_ffi_respond(task, 0, strndup(req ? req : "", len), 0);
    }

    linger.tv_sec = n->linger_ms / 1000;
    linger.tv_nsec = n->linger_ms % 1000 * 1000000;
    free(n);

    (void) nanosleep(&linger, NULL);

    return NULL;
}


/* thread: event loop */
int
libffi_init(char *cfg, void *tq)
{
    int             rc;
    nofini_t       *n;
    pthread_t       tid;
    pthread_attr_t  attr;

    UNIT_RT_INIT("rt_nofini", cfg, tq);

    n = malloc(sizeof(nofini_t));
    if (n == NULL || pthread_attr_init(&attr) != 0) {
        free(n);
        return 1;
    }

    n->tq = tq;
    n->linger_ms = (cfg && strncmp(cfg, "linger=", 7) == 0)
                   ? atol(cfg + 7) : 0;

    (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, nofini_loop, n);
    (void) pthread_attr_destroy(&attr);

    if (rc != 0) {
        free(n);
        return 2;
    }

    return 0;
}
