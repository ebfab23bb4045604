/*
 * rt_direct.c -- a test runtime whose port is direct
 * (src/core/hotffi_direct.h), served the way the isolation library serves
 * its helper: the event loop's pump hands each task to a peer thread (the
 * helper) through an inbox of at most "cap=N" tasks (cfg; the ring's room:
 * the rest stays queued in the core), the peer answers into an outbox and
 * writes the hub's eventfd only when the event loop armed for it, and the
 * event loop's take answers the tasks with hotffi_direct_respond().  The
 * peer holds its answers while the program's unit_rt_direct_gate() says 0.
 * libffi_fini() joins the peer, then detaches.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

#include "hotffi.h"
#include "unit_rt.h"
#include "hotffi_direct.h"


#define DIRECT_MAX  64


typedef struct {
    void             *task;
    char             *rsp;
    int               len;
} direct_item_t;


typedef struct {
    void             *tq;
    int               efd;          /* the hub's, borrowed */
    int               cap;

    pthread_mutex_t   mtx;
    pthread_cond_t    cond;
    direct_item_t     inbox[DIRECT_MAX];    /* under mtx */
    int               nin;
    direct_item_t     outbox[DIRECT_MAX];   /* under mtx */
    int               nout;
    int               stop;
    atomic_int        armed;        /* the event loop waits for a write */

    int               held;         /* event loop only: at the peer */
    pthread_t         peer;
} direct_t;


/* thread: peer */
static void *
direct_peer(void *arg)
{
    int             len;
    char           *req;
    direct_t       *d = arg;
    direct_item_t   it;

    (void) pthread_mutex_lock(&d->mtx);

    for ( ;; ) {
        while (!d->stop && (d->nin == 0
               || (unit_rt_direct_gate && !unit_rt_direct_gate())))
        {
            struct timespec  ts;

            /* the gate is the program's: look at it again soon */
            (void) clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 2000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }

            (void) pthread_cond_timedwait(&d->cond, &d->mtx, &ts);
        }

        if (d->nin == 0) {
            break;
        }

        it = d->inbox[0];
        memmove(&d->inbox[0], &d->inbox[1], --d->nin * sizeof(it));

        /* the request is the core's, read-only, valid until answered */
        req = ngx_http_lua_ffi_get_req(it.task, &len);
        it.rsp = malloc((size_t) len + 1);
        if (it.rsp != NULL) {
            memcpy(it.rsp, req, (size_t) len);
            it.rsp[len] = '\0';
        }
        it.len = len;

        d->outbox[d->nout++] = it;

        /* as the helper's put: a write only when the loop armed */
        if (atomic_exchange(&d->armed, 0)) {
            (void) eventfd_write(d->efd, 1);
        }
    }

    (void) pthread_mutex_unlock(&d->mtx);
    return NULL;
}


/* thread: the pump's; locks: the core's queue lock */
static int
direct_fits(void *arg, int len)
{
    int  *room = arg;

    (void) len;

    if (*room == 0) {
        return 0;
    }

    (*room)--;
    return 1;
}


/* thread: event loop */
static int
direct_pump(void *data)
{
    int        n, k, room;
    void      *tasks[DIRECT_MAX];
    direct_t  *d = data;

    room = d->cap - d->held;
    n = hotffi_direct_poll(d->tq, tasks, DIRECT_MAX, direct_fits, &room);

    if (n == 0) {
        return 0;
    }

    (void) pthread_mutex_lock(&d->mtx);

    for (k = 0; k < n; k++) {
        d->inbox[d->nin].task = tasks[k];
        d->nin++;
    }

    (void) pthread_cond_signal(&d->cond);
    (void) pthread_mutex_unlock(&d->mtx);

    d->held += n;
    return 0;
}


/* thread: event loop */
static unsigned
direct_take(void *data, int arm)
{
    int             k, n;
    unsigned        total;
    direct_t       *d = data;
    direct_item_t   out[DIRECT_MAX];

    total = 0;

    for ( ;; ) {
        (void) pthread_mutex_lock(&d->mtx);
        n = d->nout;
        memcpy(out, d->outbox, (size_t) n * sizeof(out[0]));
        d->nout = 0;

        if (n == 0) {
            /* nothing: arm (a write for the next), or not while spun */
            atomic_store(&d->armed, arm);
        }

        (void) pthread_mutex_unlock(&d->mtx);

        for (k = 0; k < n; k++) {
            hotffi_direct_respond(out[k].task, 0, out[k].rsp, out[k].len);
        }

        d->held -= n;
        total += (unsigned) n;

        if (n == 0) {
            break;
        }
    }

    if (total) {
        (void) direct_pump(d);
    }

    return total;
}


static const hotffi_direct_ops_t  direct_ops = { direct_pump, direct_take };


/* thread: init */
int
libffi_init(char *cfg, void *tq)
{
    direct_t  *d;

    UNIT_RT_INIT("rt_direct", cfg, tq);

    d = calloc(1, sizeof(direct_t));
    if (d == NULL) {
        return 1;
    }

    d->tq = tq;
    d->cap = 2;

    if (cfg && strncmp(cfg, "cap=", 4) == 0) {
        d->cap = atoi(cfg + 4);
    }

    if (d->cap < 1 || d->cap > DIRECT_MAX) {
        free(d);
        return 2;
    }

    (void) pthread_mutex_init(&d->mtx, NULL);
    (void) pthread_cond_init(&d->cond, NULL);
    atomic_init(&d->armed, 1);

    d->efd = hotffi_direct_attach(tq, &direct_ops, d);
    if (d->efd == -1) {
        free(d);
        return 3;
    }

    if (pthread_create(&d->peer, NULL, direct_peer, d) != 0) {
        hotffi_direct_detach(tq);
        free(d);
        return 4;
    }

    hotffi_tq_set_data(tq, d);
    return 0;
}


/* thread: reaper.  The queue is drained (an unload). */
int
libffi_fini(void *tq)
{
    direct_t  *d = hotffi_tq_data(tq);

    (void) pthread_mutex_lock(&d->mtx);
    d->stop = 1;
    (void) pthread_cond_signal(&d->cond);
    (void) pthread_mutex_unlock(&d->mtx);
    (void) pthread_join(d->peer, NULL);

    /* from here the event loop never calls us: d may go */
    hotffi_direct_detach(tq);

    /* answers nobody took (their callers are gone): hotffi frees them */
    for (int k = 0; k < d->nout; k++) {
        ngx_http_lua_ffi_respond(d->outbox[k].task, 0, d->outbox[k].rsp,
                                 d->outbox[k].len);
    }

    (void) pthread_mutex_destroy(&d->mtx);
    (void) pthread_cond_destroy(&d->cond);
    free(d);

    UNIT_RT_FINI("rt_direct", tq);
    return 0;
}
