/*
 * rt_echo.c -- a test runtime: N threads (cfg "threads=N", default 1) answer
 * every request with its own bytes, rc 0.  A task whose caller already gave
 * up is answered at once with rc 1 and no payload, so that the stress test
 * has runtime threads read the cancel flag while the event loop writes it.
 * libffi_fini() joins the threads.
 */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"
#include "unit_rt.h"


#define ECHO_MAX_THREADS  16


typedef struct echo_s  echo_t;

struct echo_s {
    void       *tq;
    int         nthreads;
    pthread_t   tids[ECHO_MAX_THREADS];
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

        if (hotffi_task_cancelled(task)) {
            ngx_http_lua_ffi_respond(task, 1, NULL, 0);
            continue;
        }

        req = ngx_http_lua_ffi_get_req(task, &len);

        /* a spare byte: an empty answer is "" with length 0, not NULL */
        rsp = malloc(len + 1);
        if (rsp == NULL) {
            ngx_http_lua_ffi_respond(task, 2, NULL, 0);
            continue;
        }

        memcpy(rsp, req, len);
        rsp[len] = '\0';

        ngx_http_lua_ffi_respond(task, 0, rsp, len);
    }

    return NULL;
}


/* thread: event loop */
int
libffi_init(char *cfg, void *tq)
{
    int      i, n;
    echo_t  *e;

    UNIT_RT_INIT("rt_echo", cfg, tq);

    n = 1;

    if (cfg && strncmp(cfg, "threads=", 8) == 0) {
        n = atoi(cfg + 8);
    }

    if (n < 1 || n > ECHO_MAX_THREADS) {
        return 3;
    }

    e = calloc(1, sizeof(echo_t));
    if (e == NULL) {
        return 1;
    }

    e->tq = tq;

    for (i = 0; i < n; i++) {
        if (pthread_create(&e->tids[i], NULL, echo_loop, tq) != 0) {
            break;
        }
    }

    /* threads already started end with the stop that follows a failure */
    e->nthreads = i;

    (void) pthread_mutex_lock(&echo_mtx);
    e->next = echo_all;
    echo_all = e;
    (void) pthread_mutex_unlock(&echo_mtx);

    return i == n ? 0 : 2;
}


/* thread: hotffi reaper; the stop has been delivered, so the joins end */
int
libffi_fini(void *tq)
{
    int      i;
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

    for (i = 0; i < e->nthreads; i++) {
        (void) pthread_join(e->tids[i], NULL);
    }

    free(e);

    UNIT_RT_FINI("rt_echo", tq);

    return 0;
}
