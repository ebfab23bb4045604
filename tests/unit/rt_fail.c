/*
 * rt_fail.c -- a test runtime whose libffi_init() starts a polling thread and
 * then fails with the rc of cfg "rc=N" (default 1): the thread must get NULL
 * from the stopped queue, and libffi_fini() must still be called to join it.
 */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"
#include "unit_rt.h"


typedef struct fail_s  fail_t;

struct fail_s {
    void       *tq;
    pthread_t   tid;
    fail_t     *next;
};


static pthread_mutex_t  fail_mtx = PTHREAD_MUTEX_INITIALIZER;
static fail_t          *fail_all;


/* thread: runtime.  Answers anything with rc 5; ends at the stop. */
static void *
fail_loop(void *tq)
{
    void  *task;

    while ((task = ngx_http_lua_ffi_task_poll(tq)) != NULL) {
        ngx_http_lua_ffi_respond(task, 5, NULL, 0);
    }

    return NULL;
}


/* thread: event loop */
int
libffi_init(char *cfg, void *tq)
{
    int      rc;
    fail_t  *f;

    UNIT_RT_INIT("rt_fail", cfg, tq);

    rc = 1;

    if (cfg && strncmp(cfg, "rc=", 3) == 0) {
        rc = atoi(cfg + 3);
    }

    f = calloc(1, sizeof(fail_t));
    if (f == NULL) {
        return rc;
    }

    f->tq = tq;

    if (pthread_create(&f->tid, NULL, fail_loop, tq) != 0) {
        free(f);
        return rc;
    }

    (void) pthread_mutex_lock(&fail_mtx);
    f->next = fail_all;
    fail_all = f;
    (void) pthread_mutex_unlock(&fail_mtx);

    return rc;
}


/* thread: hotffi reaper */
int
libffi_fini(void *tq)
{
    fail_t  *f, **pf;

    (void) pthread_mutex_lock(&fail_mtx);

    for (pf = &fail_all; *pf && (*pf)->tq != tq; pf = &(*pf)->next) {
        /* void */
    }

    f = *pf;
    if (f) {
        *pf = f->next;
    }

    (void) pthread_mutex_unlock(&fail_mtx);

    if (f) {
        (void) pthread_join(f->tid, NULL);
        free(f);
    }

    UNIT_RT_FINI("rt_fail", tq);

    return f ? 0 : 1;
}
