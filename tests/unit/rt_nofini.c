/*
 * rt_nofini.c -- a runtime without libffi_fini(), as lua-resty-ffi runtimes
 * are: one detached thread answers every request with its bytes and ends at
 * the stop.  hotffi cannot know when that thread has left the library, so
 * such a runtime never retires and its library is never closed.
 */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"
#include "unit_rt.h"


/* thread: runtime */
static void *
nofini_loop(void *tq)
{
    int    len;
    char  *req;
    void  *task;

    while ((task = ngx_http_lua_ffi_task_poll(tq)) != NULL) {
        req = ngx_http_lua_ffi_get_req(task, &len);
        ngx_http_lua_ffi_respond(task, 0, strndup(req, len), 0);
    }

    return NULL;
}


/* thread: event loop */
int
libffi_init(char *cfg, void *tq)
{
    pthread_t       tid;
    pthread_attr_t  attr;

    UNIT_RT_INIT("rt_nofini", cfg, tq);

    if (pthread_attr_init(&attr) != 0) {
        return 1;
    }

    (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);

    if (pthread_create(&tid, &attr, nofini_loop, tq) != 0) {
        (void) pthread_attr_destroy(&attr);
        return 2;
    }

    (void) pthread_attr_destroy(&attr);
    return 0;
}
