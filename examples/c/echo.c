/*
 * echo.c -- the smallest useful runtime: one thread answers every request
 * with its own bytes.  Load it as hotffi.load("echo").
 */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"


typedef struct echo_s  echo_t;

struct echo_s {
    void       *tq;
    pthread_t   tid;
    echo_t     *next;
};


/* every instance of this library in the process, for libffi_fini() */
static pthread_mutex_t  echo_mtx = PTHREAD_MUTEX_INITIALIZER;
static echo_t          *echo_all;


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

        memcpy(rsp, req, len);
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
    echo_t  *e;

    e = calloc(1, sizeof(echo_t));
    if (e == NULL) {
        return 1;
    }

    e->tq = tq;

    if (pthread_create(&e->tid, NULL, echo_loop, tq) != 0) {
        free(e);
        return 2;
    }

    (void) pthread_mutex_lock(&echo_mtx);
    e->next = echo_all;
    echo_all = e;
    (void) pthread_mutex_unlock(&echo_mtx);

    return 0;
}


/* thread: hotffi reaper; the stop has been delivered, so the join ends */
int
libffi_fini(void *tq)
{
    echo_t  *e, **pe;

    (void) pthread_mutex_lock(&echo_mtx);

    for (pe = &echo_all; *pe && (*pe)->tq != tq; pe = &(*pe)->next) {
        /* void */
    }

    e = *pe;
    if (e) {
        *pe = e->next;
    }

    (void) pthread_mutex_unlock(&echo_mtx);

    if (e == NULL) {
        return 1;
    }

    (void) pthread_join(e->tid, NULL);
    free(e);

    return 0;
}
