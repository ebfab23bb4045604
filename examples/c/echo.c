/*
 * echo.c -- the smallest useful runtime: one thread answers every request
 * with its own bytes.  Load it as hotffi.load("echo").
 */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"


/* thread: runtime */
static void *
echo_loop(void *tq)
{
    int    len;
    char  *req, *rsp;
    void  *task;

    while ((task = ngx_http_lua_ffi_task_poll(tq)) != NULL) {
        req = ngx_http_lua_ffi_get_req(task, &len);

        /* one spare byte: an empty answer must be "" (rsp_len 0 means
         * NUL-terminated), not NULL, which Lua would see as nil */
        rsp = malloc(len + 1);
        if (rsp == NULL) {
            ngx_http_lua_ffi_respond(task, 1, NULL, 0);
            continue;
        }

        if (len) {
            /* req is NULL for a call without a request */
            memcpy(rsp, req, len);
        }

        rsp[len] = '\0';

        /* rsp: ownership passes to hotffi */
        ngx_http_lua_ffi_respond(task, 0, rsp, len);
    }

    return NULL;
}


/* thread: event loop */
int
libffi_init(char *cfg, void *tq)
{
    pthread_t  *tid;

    tid = malloc(sizeof(pthread_t));
    if (tid == NULL) {
        return 1;
    }

    if (pthread_create(tid, NULL, echo_loop, tq) != 0) {
        free(tid);
        return 2;
    }

    /* tid: ours, kept with the queue until libffi_fini() */
    hotffi_tq_set_data(tq, tid);

    return 0;
}


/*
 * thread: hotffi reaper; the stop has been delivered, so the join ends.
 * Also called after a failed libffi_init(): then tid may be NULL.
 */
int
libffi_fini(void *tq)
{
    pthread_t  *tid = hotffi_tq_data(tq);

    if (tid == NULL) {
        return 0;
    }

    (void) pthread_join(*tid, NULL);
    free(tid);

    return 0;
}
