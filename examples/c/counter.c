/*
 * counter.c -- a runtime with state that survives in-place reloads: it
 * counts the calls it answered and hands the count to the next version
 * through libffi_retire() and hotffi_state().  Every answer is
 * "<build> <count>", so a client sees both which code answered and that the
 * count went on.  Built twice, as libcounter.so (build "a") and
 * libcounter_b.so (build "b"), for reload demos and tests.
 *
 * cfg: "threads=N" (default 2); "fail" makes libffi_init() fail, to see a
 * reload roll back.  A request "sleep:MS" is answered after MS ms, to see a
 * reload wait for the tasks the old version already took.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hotffi.h"


#ifndef COUNTER_BUILD
#define COUNTER_BUILD  "a"
#endif

#define COUNTER_MAX_THREADS  16


typedef struct {
    void                *tq;
    int                  nthreads;
    pthread_t            tids[COUNTER_MAX_THREADS];
    atomic_ullong        count;
} counter_t;


static void
counter_sleep_ms(long ms)
{
    struct timespec  ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000;
    (void) nanosleep(&ts, NULL);
}


/* thread: runtime */
static void *
counter_loop(void *data)
{
    int                  len;
    char                *req, *rsp;
    void                *task;
    counter_t           *c = data;
    unsigned long long   n;

    while ((task = ngx_http_lua_ffi_task_poll(c->tq)) != NULL) {
        req = ngx_http_lua_ffi_get_req(task, &len);

        if (len > 6 && strncmp(req, "sleep:", 6) == 0) {
            counter_sleep_ms(atol(req + 6));
        }

        n = atomic_fetch_add(&c->count, 1) + 1;

        rsp = malloc(64);
        if (rsp == NULL) {
            ngx_http_lua_ffi_respond(task, 1, NULL, 0);
            continue;
        }

        len = snprintf(rsp, 64, "%s %llu", COUNTER_BUILD, n);

        /* rsp: ownership passes to hotffi */
        ngx_http_lua_ffi_respond(task, 0, rsp, len);
    }

    return NULL;
}


/* thread: event loop */
int
libffi_init(char *cfg, void *tq)
{
    int          i, n, len;
    counter_t   *c;
    const char  *state;

    n = 2;

    if (cfg && strcmp(cfg, "fail") == 0) {
        hotffi_init_error(tq, "told to fail by its configuration");
        return 1;
    }

    if (cfg && strncmp(cfg, "threads=", 8) == 0) {
        n = atoi(cfg + 8);
    }

    if (n < 1 || n > COUNTER_MAX_THREADS) {
        hotffi_init_error(tq, "threads must be 1 to 16");
        return 2;
    }

    c = calloc(1, sizeof(counter_t));
    if (c == NULL) {
        return 3;
    }

    c->tq = tq;

    /* the previous version's count, if a reload handed it over */
    state = hotffi_state(tq, &len);
    atomic_init(&c->count, state ? strtoull(state, NULL, 10) : 0);

    for (i = 0; i < n; i++) {
        if (pthread_create(&c->tids[i], NULL, counter_loop, c) != 0) {
            break;
        }
    }

    /* c: ours, kept with tq until libffi_fini() or libffi_retire() */
    c->nthreads = i;
    hotffi_tq_set_data(tq, c);

    /* threads already started end with the stop that follows a failure */
    return i == n ? 0 : 4;
}


/*
 * thread: hotffi reaper; tq is stopped, so the joins end.  Also after a
 * failed libffi_init(), which may not have got as far as setting c.
 */
static unsigned long long
counter_stop(void *tq)
{
    int                  i;
    counter_t           *c = hotffi_tq_data(tq);
    unsigned long long   n;

    if (c == NULL) {
        return 0;
    }

    for (i = 0; i < c->nthreads; i++) {
        (void) pthread_join(c->tids[i], NULL);
    }

    n = atomic_load(&c->count);
    free(c);

    return n;
}


int
libffi_fini(void *tq)
{
    (void) counter_stop(tq);
    return 0;
}


/* thread: hotffi reaper.  *state: malloc()'ed, hotffi's once returned. */
int
libffi_retire(void *tq, char **state, int *len)
{
    char  *s;

    s = malloc(32);
    if (s == NULL) {
        (void) counter_stop(tq);
        return 1;
    }

    *len = snprintf(s, 32, "%llu", counter_stop(tq));
    *state = s;

    return 0;
}
