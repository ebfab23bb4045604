/*
 * rt_count.c -- a test runtime that counts, for the in-place reload tests:
 * N threads answer every request with the number of calls answered so far
 * by this version and by every version before it that handed its count
 * over through libffi_retire() (the count is the state).
 *
 * cfg is a comma-separated list:
 *   threads=N    polling threads, 1 to 16 (default 1);
 *   tag=S        answers "S:n" instead of "n", so that a test can tell
 *                which version answered;
 *   fail         libffi_init() starts its threads, then fails with rc 5
 *                and the message "told to fail";
 *   retire=fail  libffi_retire() joins its threads, hands back a state all
 *                the same (hotffi must discard it) and returns 7.
 *
 * A request "hold" makes its thread call the test's hold hook, which
 * blocks until the test lets it go: a version then holds a task for as
 * long as the test wants, whatever the timing.  Both libffi_retire() and
 * libffi_fini() join the threads, so neither returns before that task is
 * answered.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"
#include "unit_rt.h"


#define COUNT_MAX_THREADS  16


/*
 * The hooks only this runtime calls, weak like unit_rt.h's: unit_rt.h is
 * shared by every runtime and program, these concern test_reload.c alone.
 */

/* thread: reaper.  Last thing libffi_retire() does; rc is what it returns. */
void unit_rt_retire_hook(const char *rt, void *tq, int rc)
    __attribute__((weak));

/* thread: runtime.  Called for a "hold" request; returns when released. */
void unit_rt_hold_hook(const char *rt, void *tq) __attribute__((weak));


typedef struct {
    void             *tq;
    pthread_mutex_t   mtx;
    unsigned long     count;        /* locks: mtx */
    char              tag[32];
    unsigned          fail:1;
    unsigned          retire_fails:1;
    int               nthreads;
    pthread_t         tids[COUNT_MAX_THREADS];
} count_t;


/* thread: runtime */
static void *
count_loop(void *data)
{
    int             len, n;
    char           *req, *rsp;
    void           *task;
    count_t        *c = data;
    unsigned long   count;

    while ((task = ngx_http_lua_ffi_task_poll(c->tq)) != NULL) {
        req = ngx_http_lua_ffi_get_req(task, &len);

        if (len == 4 && memcmp(req, "hold", 4) == 0 && unit_rt_hold_hook) {
            unit_rt_hold_hook("rt_count", c->tq);
        }

        /* counted when answered: a held call counts once it is let go */
        (void) pthread_mutex_lock(&c->mtx);
        count = ++c->count;
        (void) pthread_mutex_unlock(&c->mtx);

        rsp = malloc(64);
        if (rsp == NULL) {
            ngx_http_lua_ffi_respond(task, 2, NULL, 0);
            continue;
        }

        if (c->tag[0]) {
            n = snprintf(rsp, 64, "%s:%lu", c->tag, count);

        } else {
            n = snprintf(rsp, 64, "%lu", count);
        }

        ngx_http_lua_ffi_respond(task, 0, rsp, n);
    }

    return NULL;
}


/* thread: event loop.  0, or -1 for a token this runtime does not know. */
static int
count_parse(count_t *c, char *cfg)
{
    char  *tok, *save;

    for (tok = strtok_r(cfg, ",", &save);
         tok;
         tok = strtok_r(NULL, ",", &save))
    {
        if (strncmp(tok, "threads=", 8) == 0) {
            c->nthreads = atoi(tok + 8);

        } else if (strncmp(tok, "tag=", 4) == 0) {
            (void) snprintf(c->tag, sizeof(c->tag), "%s", tok + 4);

        } else if (strcmp(tok, "fail") == 0) {
            c->fail = 1;

        } else if (strcmp(tok, "retire=fail") == 0) {
            c->retire_fails = 1;

        } else {
            return -1;
        }
    }

    return 0;
}


/*
 * The count the previous version handed over: hotffi_state() is only
 * valid here, inside libffi_init(), and is not NUL-terminated.
 */
static unsigned long
count_state(void *tq)
{
    int          len;
    char         buf[32];
    const char  *state;

    state = hotffi_state(tq, &len);

    if (state == NULL || len <= 0 || len >= (int) sizeof(buf)) {
        return 0;
    }

    memcpy(buf, state, len);
    buf[len] = '\0';

    return strtoul(buf, NULL, 10);
}


/* thread: event loop */
int
libffi_init(char *cfg, void *tq)
{
    int       i, n;
    count_t  *c;

    UNIT_RT_INIT("rt_count", cfg, tq);

    c = calloc(1, sizeof(count_t));
    if (c == NULL) {
        return 1;
    }

    c->tq = tq;
    c->nthreads = 1;

    /* hotffi hands over a copy that is ours until we return */
    if ((cfg && count_parse(c, cfg) != 0)
        || c->nthreads < 1 || c->nthreads > COUNT_MAX_THREADS)
    {
        free(c);
        return 3;
    }

    if (pthread_mutex_init(&c->mtx, NULL) != 0) {
        free(c);
        return 1;
    }

    c->count = count_state(tq);

    /* before the threads: libffi_fini() finds them through it */
    hotffi_tq_set_data(tq, c);

    n = c->nthreads;

    for (i = 0; i < n; i++) {
        if (pthread_create(&c->tids[i], NULL, count_loop, c) != 0) {
            break;
        }
    }

    /* threads already started end with the stop that follows a failure */
    c->nthreads = i;

    if (c->fail) {
        hotffi_init_error(tq, "told to fail");
        return 5;
    }

    return i == n ? 0 : 2;
}


/* thread: hotffi reaper.  Joins c's threads, then frees c. */
static unsigned long
count_end(count_t *c)
{
    int            i;
    unsigned long  count;

    for (i = 0; i < c->nthreads; i++) {
        (void) pthread_join(c->tids[i], NULL);
    }

    count = c->count;
    (void) pthread_mutex_destroy(&c->mtx);
    free(c);

    return count;
}


/* thread: hotffi reaper; tq is stopped, so the joins end */
int
libffi_retire(void *tq, char **state, int *len)
{
    int            rc;
    char           buf[32];
    count_t       *c;
    unsigned long  count;

    c = hotffi_tq_data(tq);
    rc = 0;

    if (c) {
        rc = c->retire_fails ? 7 : 0;
        count = count_end(c);

        *len = snprintf(buf, sizeof(buf), "%lu", count);
        *state = malloc(*len);

        if (*state == NULL) {
            rc = 1;

        } else {
            memcpy(*state, buf, *len);
        }
    }

    if (unit_rt_retire_hook) {
        unit_rt_retire_hook("rt_count", tq, rc);
    }

    return rc;
}


/* thread: hotffi reaper; also after a failed libffi_init() */
int
libffi_fini(void *tq)
{
    count_t  *c;

    c = hotffi_tq_data(tq);

    if (c) {
        (void) count_end(c);
    }

    UNIT_RT_FINI("rt_count", tq);

    return 0;
}
