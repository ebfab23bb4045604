/*
 * ctl.c -- a runtime the tests steer through its requests, to produce every
 * kind of answer (and non-answer) hotffi must survive:
 *
 *   echo:BYTES      answers BYTES
 *   sleep:MS        answers "slept" after MS ms, or "cancelled" if the
 *                   caller gave up meanwhile (the answer is still sent)
 *   hang            never answers until the runtime is unloaded
 *   fail:RC:TEXT    answers rc RC with TEXT
 *   null            answers rc 0 with no payload
 *   cancelled       answers how many sleeps saw their caller give up
 *   verify:MS:BYTES sleeps MS ms, then checks that BYTES still read
 *                   "abc...zabc..." (the request is the caller's memory,
 *                   read in place, even after the caller gave up)
 *   verified        answers "OK BAD": how many verify requests were intact
 *   cfg             answers the configuration it was loaded with, or <nil>
 *   log:LEVEL:N:TEXT  writes N lines "TEXT I" (I = 1..N) to nginx's error
 *                   log at LEVEL (nginx's) through hotffi_log(), answers
 *                   "logged N"
 *   lognull:TEXT    writes TEXT with tq NULL: a line of no runtime
 *
 * cfg "fail-init" makes libffi_init() return 7 and say why through
 * hotffi_init_error(); cfg "fail-init-silent" returns 7 only; cfg
 * "threads=N" sets the number of polling threads (default 4); cfg
 * "init-sleep=MS" makes libffi_init() sleep MS ms first (a slow start),
 * and "init-sleep=MS,fail-init" then fail as "fail-init" does.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hotffi.h"


#define CTL_MAX_THREADS  16


typedef struct ctl_s  ctl_t;

struct ctl_s {
    void             *tq;
    char             *cfg;           /* copy of the configuration */
    int               nthreads;
    pthread_t         tids[CTL_MAX_THREADS];
    pthread_mutex_t   mtx;           /* guards held and cancelled */
    void            **held;          /* "hang" tasks, answered at the stop */
    int               nheld;
    int               cancelled;
    int               verified[2];   /* intact, damaged; guarded by mtx */
};


static void
ctl_answer(void *task, int rc, const char *text, size_t len)
{
    char  *rsp;

    rsp = malloc(len + 1);
    if (rsp == NULL) {
        ngx_http_lua_ffi_respond(task, 1, NULL, 0);
        return;
    }

    memcpy(rsp, text, len);
    rsp[len] = '\0';
    ngx_http_lua_ffi_respond(task, rc, rsp, (int) len);
}


static void
ctl_sleep_ms(long ms)
{
    struct timespec  ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    (void) nanosleep(&ts, NULL);
}


static void
ctl_sleep(ctl_t *c, void *task, long ms)
{
    int  gave_up;

    ctl_sleep_ms(ms);

    gave_up = hotffi_task_cancelled(task);

    if (gave_up) {
        (void) pthread_mutex_lock(&c->mtx);
        c->cancelled++;
        (void) pthread_mutex_unlock(&c->mtx);
    }

    ctl_answer(task, 0, gave_up ? "cancelled" : "slept",
               gave_up ? 9 : 5);
}


static void
ctl_verify(ctl_t *c, void *task, const char *req, int len)
{
    int          i, bad;
    long         ms;
    char        *end;
    const char  *bytes;

    ms = strtol(req, &end, 10);
    bytes = *end == ':' ? end + 1 : end;
    len -= (int) (bytes - req);

    ctl_sleep_ms(ms);

    /* read only now: the caller may have gone, its string must not */
    for (i = 0, bad = 0; i < len; i++) {
        bad |= bytes[i] != 'a' + i % 26;
    }

    (void) pthread_mutex_lock(&c->mtx);
    c->verified[bad]++;
    (void) pthread_mutex_unlock(&c->mtx);

    ctl_answer(task, 0, bad ? "damaged" : "intact", bad ? 7 : 6);
}


static void
ctl_hold(ctl_t *c, void *task)
{
    void  **held;

    (void) pthread_mutex_lock(&c->mtx);

    held = realloc(c->held, (c->nheld + 1) * sizeof(void *));
    if (held != NULL) {
        c->held = held;
        c->held[c->nheld++] = task;
    }

    (void) pthread_mutex_unlock(&c->mtx);

    if (held == NULL) {
        ngx_http_lua_ffi_respond(task, 1, NULL, 0);
    }
}


static void
ctl_log(ctl_t *c, void *task, const char *req)
{
    int    i, level, n, len;
    char  *end, line[256];

    level = (int) strtol(req, &end, 10);
    n = *end == ':' ? (int) strtol(end + 1, &end, 10) : 0;
    req = *end == ':' ? end + 1 : "";

    for (i = 1; i <= n; i++) {
        len = snprintf(line, sizeof(line), "%s %d", req, i);
        hotffi_log(c->tq, level, line, len);
    }

    len = snprintf(line, sizeof(line), "logged %d", n);
    ctl_answer(task, 0, line, (size_t) len);
}


static void
ctl_handle(ctl_t *c, void *task)
{
    int    len, n;
    char  *req, buf[64];
    char  *colon;

    req = ngx_http_lua_ffi_get_req(task, &len);

    if (req == NULL) {
        /* a call without a request: say what the ABI handed over */
        n = snprintf(buf, sizeof(buf), "NULL, %d", len);
        ctl_answer(task, 0, buf, n);

    } else if (len >= 5 && memcmp(req, "echo:", 5) == 0) {
        ctl_answer(task, 0, req + 5, len - 5);

    } else if (len > 6 && memcmp(req, "sleep:", 6) == 0) {
        ctl_sleep(c, task, strtol(req + 6, NULL, 10));

    } else if (strcmp(req, "hang") == 0) {
        ctl_hold(c, task);

    } else if (len > 5 && memcmp(req, "fail:", 5) == 0) {
        colon = strchr(req + 5, ':');
        ctl_answer(task, (int) strtol(req + 5, NULL, 10),
                   colon ? colon + 1 : "", colon ? strlen(colon + 1) : 0);

    } else if (strcmp(req, "null") == 0) {
        ngx_http_lua_ffi_respond(task, 0, NULL, 0);

    } else if (strcmp(req, "cancelled") == 0) {
        (void) pthread_mutex_lock(&c->mtx);
        n = snprintf(buf, sizeof(buf), "%d", c->cancelled);
        (void) pthread_mutex_unlock(&c->mtx);
        ctl_answer(task, 0, buf, n);

    } else if (len > 7 && memcmp(req, "verify:", 7) == 0) {
        ctl_verify(c, task, req + 7, len - 7);

    } else if (strcmp(req, "verified") == 0) {
        (void) pthread_mutex_lock(&c->mtx);
        n = snprintf(buf, sizeof(buf), "%d %d", c->verified[0],
                     c->verified[1]);
        (void) pthread_mutex_unlock(&c->mtx);
        ctl_answer(task, 0, buf, n);

    } else if (len > 4 && memcmp(req, "log:", 4) == 0) {
        ctl_log(c, task, req + 4);

    } else if (len > 8 && memcmp(req, "lognull:", 8) == 0) {
        /* NUL-terminated: the request has a NUL after it */
        hotffi_log(NULL, HOTFFI_LEVEL_WARN, req + 8, 0);
        ctl_answer(task, 0, "logged 1", 8);

    } else if (strcmp(req, "cfg") == 0) {
        ctl_answer(task, 0, c->cfg ? c->cfg : "<nil>",
                   strlen(c->cfg ? c->cfg : "<nil>"));

    } else {
        ctl_answer(task, 2, "unknown command", 15);
    }
}


/* thread: runtime */
static void *
ctl_loop(void *data)
{
    int     i;
    void   *task;
    ctl_t  *c = data;

    while ((task = ngx_http_lua_ffi_task_poll(c->tq)) != NULL) {
        ctl_handle(c, task);
    }

    /* the stop: whoever took a held task first answers all of them */
    (void) pthread_mutex_lock(&c->mtx);

    for (i = 0; i < c->nheld; i++) {
        ctl_answer(c->held[i], 0, "released", 8);
    }

    c->nheld = 0;
    (void) pthread_mutex_unlock(&c->mtx);

    return NULL;
}


static void
ctl_free(ctl_t *c)
{
    (void) pthread_mutex_destroy(&c->mtx);
    free(c->held);
    free(c->cfg);
    free(c);
}


int
libffi_init(char *cfg, void *tq)
{
    int     i;
    ctl_t  *c;

    if (cfg && strncmp(cfg, "init-sleep=", 11) == 0) {
        ctl_sleep_ms(strtol(cfg + 11, NULL, 10));

        if (strstr(cfg, ",fail-init")) {
            hotffi_init_error(tq, "asked to fail after its sleep");
            return 7;
        }
    }

    if (cfg && strcmp(cfg, "fail-init") == 0) {
        hotffi_init_error(tq, "asked to fail\nby its configuration");
        return 7;
    }

    if (cfg && strcmp(cfg, "fail-init-silent") == 0) {
        return 7;
    }

    c = calloc(1, sizeof(ctl_t));
    if (c == NULL) {
        return 1;
    }

    c->tq = tq;
    c->cfg = cfg ? strdup(cfg) : NULL;
    c->nthreads = 4;
    (void) pthread_mutex_init(&c->mtx, NULL);

    if (cfg && sscanf(cfg, "threads=%d", &c->nthreads) == 1
        && (c->nthreads < 1 || c->nthreads > CTL_MAX_THREADS))
    {
        ctl_free(c);
        return 3;
    }

    for (i = 0; i < c->nthreads; i++) {
        if (pthread_create(&c->tids[i], NULL, ctl_loop, c) != 0) {
            /* hotffi stops the queue on failure: started threads end */
            c->nthreads = i;
            break;
        }
    }

    /* c: ours, kept with the queue until libffi_fini() */
    hotffi_tq_set_data(tq, c);

    return c->nthreads == 0 ? 4 : 0;
}


int
libffi_fini(void *tq)
{
    int     i;
    ctl_t  *c = hotffi_tq_data(tq);

    if (c == NULL) {
        /* libffi_init() failed before it made anything */
        return 0;
    }

    for (i = 0; i < c->nthreads; i++) {
        (void) pthread_join(c->tids[i], NULL);
    }

    ctl_free(c);
    return 0;
}
