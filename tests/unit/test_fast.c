/*
 * test_fast.c -- the fast path: the task free list, the event loop's spin
 * for an answer (hit, miss, timeout, declined, back-off, the streak), the
 * eventfd it saves, requests read in place, wake-ups deferred to the end of
 * the loop's turn, and the batch poll.
 *
 * The spin windows are set large (HOTFFI_SPIN_US) before the first call
 * reads them, so that a spin whose answer comes is a hit however slow this
 * machine is; no test depends on how long anything takes.
 */

#define _GNU_SOURCE

#include <sched.h>
#include <stdatomic.h>

#include "unit_helpers.h"
#include "hotffi_spin.h"


#define FAST_SPIN_US    "1000000"    /* 1 s, the most: the answer comes first */
#define FAST_TIMEOUT    1000000      /* 1 ms: a spin that must end unanswered */
#define FAST_MAX_QUEUE  64


typedef struct {
    hotffi_hub_t      *hub;
    hotffi_runtime_t  *rt;
    hotffi_queue_t    *q;
    hotffi_port_t     *tq;        /* the serving version's */
    pthread_t          answerer;
    int                answering;
} fixture_t;


/* ---- fixture: rt_idle, with this program as its runtime thread(s) */

static int
setup(void **state)
{
    char                    path[PATH_MAX], err[256];
    fixture_t              *f;
    hotffi_runtime_opts_t   opts;

    f = calloc(1, sizeof(fixture_t));
    assert_non_null(f);

    f->hub = unit_hub_create();

    memset(&opts, 0, sizeof(opts));
    opts.max_queue = FAST_MAX_QUEUE;

    f->rt = unit_load(f->hub, unit_lib(path, sizeof(path),
                                "rt_idle"), NULL, 0, &opts, NULL, err,
                                sizeof(err));
    if (f->rt == NULL) {
        fail_msg("load: %s", err);
    }

    f->q = f->rt->queue;
    f->tq = &f->rt->current->port;

    *state = f;
    return 0;
}


/* The runtime's side, on its own thread: echo until the stop. */
static void *
echo_thread(void *data)
{
    int    len;
    char  *req;
    void  *task;

    while ((task = ngx_http_lua_ffi_task_poll(data)) != NULL) {
        req = ngx_http_lua_ffi_get_req(task, &len);
        ngx_http_lua_ffi_respond(task, 0, unit_dup(req, len), len);
    }

    return NULL;
}


static void
start_echo(fixture_t *f)
{
    assert_int_equal(pthread_create(&f->answerer, NULL, echo_thread, f->tq),
                     0);
    f->answering = 1;
}


/*
 * Every task must be ended: after the stop, this thread polls what is left
 * (tasks given up are answered by poll itself) so that the runtime retires.
 */
static int
teardown(void **state)
{
    void       *task;
    fixture_t  *f = *state;

    hotffi_runtime_unload(f->rt);

    if (f->answering) {
        assert_int_equal(unit_join(f->answerer, UNIT_WAIT_MS), 0);
    }

    if (f->rt->closed) {
        /* the test saw it retire: its queue is gone */
        hotffi_runtime_unref(f->rt);

    } else {
        while ((task = ngx_http_lua_ffi_task_poll(f->tq)) != NULL) {
            ngx_http_lua_ffi_respond(task, 0, NULL, 0);
        }

        unit_close(f->hub, f->rt);
    }

    assert_int_equal(f->hub->tasks.live, 0);
    assert_int_equal(f->hub->callers, 0);

    hotffi_hub_destroy(f->hub);
    free(f);
    return 0;
}


static hotffi_task_t *
post(fixture_t *f, const char *req, unit_waiter_t *w)
{
    char            err[256];
    hotffi_task_t  *task;

    task = hotffi_call_post(f->rt, NULL, req, strlen(req), w, NULL, err,
                            sizeof(err));
    if (task == NULL) {
        fail_msg("post: %s", err);
    }

    return task;
}


/* The runtime's side, on this thread: answers the next task, which must be
 * want, with no payload. */
static void
answer_next(fixture_t *f, hotffi_task_t *want)
{
    void  *task;

    task = ngx_http_lua_ffi_task_poll(f->tq);
    assert_ptr_equal(task, want);
    ngx_http_lua_ffi_respond(task, 0, NULL, 0);
}


/* The event loop's side: waits for the eventfd and drains n answers. */
static void
drain(fixture_t *f, unsigned n)
{
    assert_true(unit_readable(hotffi_hub_fd(f->hub), UNIT_WAIT_MS));
    assert_int_equal(hotffi_hub_drain(f->hub), n);
}


static void
check_answer(hotffi_task_t *task, const char *want)
{
    size_t       len;
    const char  *rsp;

    assert_int_equal(hotffi_call_result(task, &rsp, &len), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(rsp, want, len);
}


/* ---- the free list and requests read in place */

static void
test_free_list_slots(void **state)
{
    fixture_t      *f = *state;
    uint32_t        slot;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t1, *t2;

    t1 = post(f, "a", &w);
    slot = t1->slot;
    answer_next(f, t1);
    drain(f, 1);
    hotffi_call_finish(t1);
    assert_int_equal(f->hub->tasks.live, 0);

    /* the same memory and slot, in a fresh state */
    memset(&w, 0, sizeof(w));
    t2 = post(f, "b", &w);
    assert_ptr_equal(t2, t1);
    assert_int_equal(t2->slot, slot);
    assert_int_equal(f->hub->tasks.slots, 1);
    assert_false(t2->done);
    assert_null(t2->rsp);
    assert_false(hotffi_list_linked(&t2->glink));
    assert_int_equal(atomic_load(&t2->cancelled), 0);
    assert_int_equal(t2->req_len, 1);

    answer_next(f, t2);
    drain(f, 1);
    hotffi_call_finish(t2);
}


/* most recently freed first; a slot is never shared by two live tasks */
static void
test_free_list_lifo(void **state)
{
    fixture_t      *f = *state;
    unit_waiter_t   w[4];
    hotffi_task_t  *t1, *t2, *t3, *t4;

    memset(w, 0, sizeof(w));

    t1 = post(f, "1", &w[0]);
    t2 = post(f, "2", &w[1]);
    answer_next(f, t1);
    answer_next(f, t2);
    drain(f, 2);
    hotffi_call_finish(t1);
    hotffi_call_finish(t2);

    t3 = post(f, "3", &w[2]);
    t4 = post(f, "4", &w[3]);
    assert_ptr_equal(t3, t2);
    assert_ptr_equal(t4, t1);
    assert_int_not_equal(t3->slot, t4->slot);
    assert_int_equal(f->hub->tasks.slots, 2);

    /* given up while queued: it leaves the queue, its slot free at once */
    hotffi_call_abandon(t3);
    assert_int_equal(f->hub->tasks.live, 1);
    answer_next(f, t4);
    drain(f, 1);
    assert_int_equal(f->hub->tasks.live, 1);
    hotffi_call_finish(t4);
    assert_int_equal(f->hub->tasks.live, 0);
}


static void
test_request_in_place(void **state)
{
    fixture_t      *f = *state;
    int             len;
    char            buf[8] = "abc";
    char           *req;
    void           *task;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    t = post(f, buf, &w);

    task = ngx_http_lua_ffi_task_poll(f->tq);
    req = ngx_http_lua_ffi_get_req(task, &len);
    assert_ptr_equal(req, buf);
    assert_int_equal(len, 3);
    assert_int_equal(req[3], '\0');

    ngx_http_lua_ffi_respond(task, 0, NULL, 0);
    drain(f, 1);
    hotffi_call_finish(t);
}


/* ---- the event loop's spin */

static int
woken(void *data)
{
    unit_waiter_t  *w = data;

    return w->woken;
}


static void
test_spin_hit(void **state)
{
    fixture_t      *f = *state;
    int             i, rc;
    char            req[10][32], err[256];
    hotffi_task_t  *t;

    start_echo(f);

    for (i = 0; i < 10; i++) {
        (void) snprintf(req[i], sizeof(req[i]), "spin %d", i);

        /* no waiter: a call answered while spinning never needs one */
        t = hotffi_call_post_spin(f->rt, NULL, req[i], strlen(req[i]),
                                  UINT64_MAX, &rc, err, sizeof(err));
        assert_non_null(t);
        assert_int_equal(rc, HOTFFI_OK);
        assert_true(t->done);
        check_answer(t, req[i]);
        hotffi_call_finish(t);
    }

    assert_int_equal(f->hub->stats.spin_hits, 10);
    assert_int_equal(f->hub->stats.spin_misses, 0);

    /*
     * Every answer was taken by the spinner, even one that came before it
     * began to spin (announced before the push): none wrote the eventfd.
     */
    assert_false(unit_readable(hotffi_hub_fd(f->hub), 0));
}


/* the caller's own timeout ends a spin; the call can then be given up */
static void
test_spin_timeout(void **state)
{
    fixture_t      *f = *state;
    hotffi_task_t  *t;

    t = post(f, "nobody polls", NULL);
    assert_int_equal(hotffi_call_spin(t, FAST_TIMEOUT), HOTFFI_DONE);
    assert_false(t->done);
    assert_int_equal(f->hub->stats.spin_misses, 1);
    assert_int_equal(f->hub->stats.spin_hits, 0);

    hotffi_call_abandon(t);
    assert_int_equal(f->rt->stats.abandoned, 1);

    /* teardown: the runtime still gets it, sees the caller gone, frees it */
}


/* no spin while another caller is inside a call */
static void
test_spin_declined(void **state)
{
    fixture_t      *f = *state;
    unit_waiter_t   w1 = { 0, 0 }, w2 = { 0, 0 };
    hotffi_task_t  *t1, *t2;

    t1 = post(f, "first", &w1);
    t2 = post(f, "second", NULL);
    assert_int_equal(f->hub->callers, 2);

    /* returns at once, though its timeout would allow a long spin */
    assert_int_equal(hotffi_call_spin(t2, UINT64_MAX), HOTFFI_AGAIN);
    assert_int_equal(f->hub->stats.spin_misses, 0);

    /* a caller that did not spin parks with a waiter, as before */
    hotffi_call_wait(t2, &w2);
    answer_next(f, t1);
    answer_next(f, t2);
    drain(f, 2);
    assert_true(w1.woken == 1 && w2.woken == 1);

    /* answered but not resumed still counts: t2 alone may not spin yet */
    hotffi_call_finish(t1);
    assert_int_equal(f->hub->callers, 1);
    hotffi_call_finish(t2);
    assert_int_equal(f->hub->callers, 0);
}


/* a call that had to wake a parked runtime thread is not spun for */
/* Waits until the echo thread parks: it spins for its window (1 s) first. */
static void
wait_parked(fixture_t *f)
{
    int64_t   end;
    uint32_t  parked;

    end = unit_now_ms() + UNIT_WAIT_MS;

    do {
        unit_sleep_ms(10);
        (void) pthread_mutex_lock(&f->q->mtx);
        parked = f->q->pollers;
        (void) pthread_mutex_unlock(&f->q->mtx);
    } while (parked == 0 && unit_now_ms() < end);

    assert_int_equal(parked, 1);
}


static void
test_spin_not_for_parked(void **state)
{
    fixture_t      *f = *state;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    start_echo(f);
    wait_parked(f);

    t = post(f, "wake up", NULL);
    assert_int_equal(t->woke, 1);
    assert_int_equal(hotffi_call_spin(t, UINT64_MAX), HOTFFI_AGAIN);
    assert_int_equal(f->hub->stats.spin_misses, 0);
    assert_int_equal(f->rt->spin.skip, 0);

    hotffi_call_wait(t, &w);
    unit_drain_until(f->hub, woken, &w);
    check_answer(t, "wake up");
    hotffi_call_finish(t);
}


static int  defers;

static void
count_defer(void)
{
    defers++;
}


/*
 * A lone call wakes a parked runtime thread at once; calls made while
 * another is in flight leave it parked until the host flushes, and then
 * share one wake-up.
 */
static void
test_wake_deferred(void **state)
{
    int             i;
    fixture_t      *f = *state;
    unit_waiter_t   w[3] = { { 0, 0 }, { 0, 0 }, { 0, 0 } };
    hotffi_task_t  *t[3];

    f->hub->host.defer = count_defer;
    defers = 0;

    start_echo(f);
    wait_parked(f);

    t[0] = post(f, "alone", &w[0]);
    assert_int_equal(t[0]->woke, 1);
    assert_int_equal(defers, 0);
    unit_drain_until(f->hub, woken, &w[0]);

    /* t[0] is answered, not finished: its caller is still in flight */
    wait_parked(f);

    t[1] = post(f, "one", &w[1]);
    t[2] = post(f, "two", &w[2]);
    assert_int_equal(defers, 1);
    assert_ptr_equal(hotffi_list_first(&f->hub->wakes), &f->q->wake_link);
    assert_int_equal(f->q->owed, 1);

    unit_sleep_ms(50);
    assert_int_equal(hotffi_queue_depth(f->q), 2);

    hotffi_hub_flush_wakes(f->hub);
    assert_true(hotffi_list_empty(&f->hub->wakes));
    assert_int_equal(f->q->owed, 0);

    unit_drain_until(f->hub, woken, &w[2]);
    assert_int_equal(w[1].woken, 1);
    check_answer(t[0], "alone");
    check_answer(t[1], "one");
    check_answer(t[2], "two");

    for (i = 0; i < 3; i++) {
        hotffi_call_finish(t[i]);
    }
}


/* a runtime that missed is not spun for on the next 1, 2, 4 ... calls */
static void
test_spin_backoff(void **state)
{
    fixture_t      *f = *state;
    int             i, rc;
    int             spun[8];
    hotffi_task_t  *t;

    for (i = 0; i < 8; i++) {
        t = post(f, "x", NULL);
        rc = hotffi_call_spin(t, FAST_TIMEOUT);

        /* DONE: spun until the timeout; AGAIN: did not spin at all */
        assert_true(rc == HOTFFI_DONE || rc == HOTFFI_AGAIN);
        spun[i] = rc == HOTFFI_DONE;
        hotffi_call_abandon(t);
    }

    /* spin, skip 1, spin, skip 4, spin: backs off x4 per miss */
    assert_int_equal(spun[0], 1);
    assert_int_equal(spun[1], 0);
    assert_int_equal(spun[2], 1);
    assert_int_equal(spun[3], 0);
    assert_int_equal(spun[4], 0);
    assert_int_equal(spun[5], 0);
    assert_int_equal(spun[6], 0);
    assert_int_equal(spun[7], 1);
    assert_int_equal(f->hub->stats.spin_misses, 3);
    assert_int_equal(f->rt->spin.misses, 3);

    /* a hit resets the back-off */
    f->rt->spin.skip = 0;
    hotffi_spin_record(&f->rt->spin, 1, 0);
    assert_int_equal(f->rt->spin.backoff, 0);
    assert_true(hotffi_spin_want(&f->rt->spin));
}


/* a call made during the back-off and answered in time ends it */
static void
test_spin_recovers(void **state)
{
    fixture_t      *f = *state;
    int             i;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    /* miss, skip 1, miss: now 4 calls without a spin are due */
    for (i = 0; i < 3; i++) {
        t = post(f, "x", NULL);
        (void) hotffi_call_spin(t, FAST_TIMEOUT);
        hotffi_call_abandon(t);
    }

    assert_int_equal(f->rt->spin.misses, 2);
    assert_int_equal(f->rt->spin.skip, 4);

    /* not spun for, answered at once (well within the 1 s window) */
    t = post(f, "quick", NULL);
    assert_int_equal(hotffi_call_spin(t, UINT64_MAX), HOTFFI_AGAIN);
    assert_int_equal(f->rt->spin.skip, 3);
    hotffi_call_wait(t, &w);

    /* the three given up first: poll answers them itself */
    while (ngx_http_lua_ffi_task_poll(f->tq) != t) { /* void */ }
    ngx_http_lua_ffi_respond(t, 0, NULL, 0);
    unit_drain_until(f->hub, woken, &w);

    /* the rest ends; the back-off stays until a spin hits */
    assert_int_equal(f->rt->spin.skip, 0);
    assert_int_equal(f->rt->spin.backoff, 4);
    hotffi_call_finish(t);
}


/* a busy machine: no spin at all, whatever the history */
static void
test_spin_busy_machine(void **state)
{
    fixture_t      *f = *state;
    int             rc;
    hotffi_task_t  *t;

    hotffi_spin_busy_force(1);

    t = post(f, "x", NULL);
    rc = hotffi_call_spin(t, FAST_TIMEOUT);
    hotffi_call_abandon(t);

    hotffi_spin_busy_force(0);

    assert_int_equal(rc, HOTFFI_AGAIN);
    assert_int_equal(f->hub->stats.spin_misses, 0);
    assert_int_equal(f->hub->stats.spin_hits, 0);
    assert_int_equal(f->rt->spin.misses, 0);

    /* quiet again: the next call spins (and misses: nobody answers) */
    t = post(f, "x", NULL);
    rc = hotffi_call_spin(t, FAST_TIMEOUT);
    hotffi_call_abandon(t);
    assert_int_equal(rc, HOTFFI_DONE);
}


/*
 * Each side learns the other's time per KiB of large calls: the event loop
 * the runtime's service (from its poll to its respond()), a runtime thread
 * the event loop's turnaround (from its respond() to the next post).
 */
static void
test_spin_learns_rates(void **state)
{
    fixture_t      *f = *state;
    char           *big, *req;
    size_t          len;
    uint32_t        service;
    const char     *rsp;
    hotffi_task_t  *t;

    big = malloc(300 * 1024);
    req = malloc(300 * 1024 + 1);
    assert_non_null(big);
    assert_non_null(req);
    memset(big, 'b', 300 * 1024);
    memset(req, 'r', 300 * 1024);
    req[300 * 1024] = '\0';

    assert_int_equal(f->rt->service_rate, 0);

    t = post(f, req, NULL);
    assert_ptr_equal(ngx_http_lua_ffi_task_poll(f->tq), t);
    assert_true(t->taken >= t->posted);
    ngx_http_lua_ffi_respond(t, 0, big, 300 * 1024);

    drain(f, 1);
    assert_int_equal(hotffi_call_result(t, &rsp, &len), 0);
    assert_ptr_equal(rsp, big);
    assert_int_equal(len, 300 * 1024);
    hotffi_call_finish(t);

    service = f->rt->service_rate;
    assert_true(service > 0);

    /* the next call comes after the large answer: this thread, which
     * answered it, learns the turnaround as its poll takes the call */
    assert_int_equal(hotffi_spin_turnaround(), 0);
    t = post(f, "small", NULL);
    assert_ptr_equal(ngx_http_lua_ffi_task_poll(f->tq), t);
    assert_true(hotffi_spin_turnaround() > 0);

    /* too small to teach the service rate: not even stamped */
    assert_int_equal(t->taken, 0);

    /* a small call teaches the event loop nothing */
    ngx_http_lua_ffi_respond(t, 0, NULL, 0);
    drain(f, 1);
    hotffi_call_finish(t);
    assert_int_equal(f->rt->service_rate, service);

    free(req);
}


/* calls answered back to back let the event loop run every so often */
static void
test_spin_streak(void **state)
{
    fixture_t      *f = *state;
    int             i, rc;
    hotffi_task_t  *t;

    start_echo(f);

    for (i = 1; i <= 2 * HOTFFI_SPIN_STREAK_MAX; i++) {
        t = post(f, "s", NULL);
        rc = hotffi_call_spin(t, UINT64_MAX);
        assert_int_equal(rc, i % HOTFFI_SPIN_STREAK_MAX == 0
                             ? HOTFFI_OK_YIELD : HOTFFI_OK);
        check_answer(t, "s");
        hotffi_call_finish(t);
    }

    /* a call that does not spin breaks the streak */
    t = post(f, "s", NULL);
    assert_int_equal(f->hub->spin_streak, 0);
    assert_int_equal(hotffi_call_spin(t, UINT64_MAX), HOTFFI_OK);
    assert_int_equal(f->hub->spin_streak, 1);
    hotffi_call_finish(t);
}


typedef struct {
    fixture_t      *f;
    hotffi_task_t  *old;       /* taken already, answered first */
} late_t;


/* answers an older task, then the next one polled */
static void *
late_thread(void *data)
{
    late_t  *l = data;
    void    *task;

    task = ngx_http_lua_ffi_task_poll(l->f->tq);

    /* both answers while the event loop spins */
    while (!atomic_load(&l->f->hub->spinning)) {
        (void) sched_yield();
    }

    ngx_http_lua_ffi_respond(l->old, 0, NULL, 0);
    ngx_http_lua_ffi_respond(task, 0, unit_dup("new", 3), 3);

    return NULL;
}


/*
 * An answer appended while the event loop spins writes no eventfd: the
 * spinner takes it with its own, and none is lost.
 */
static void
test_spin_takes_every_answer(void **state)
{
    fixture_t      *f = *state;
    late_t          l;
    pthread_t       tid;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t1, *t2;

    /* a call given up while the runtime works on it */
    t1 = post(f, "old", &w);
    assert_ptr_equal(hotffi_queue_poll(f->q, f->tq), t1);
    hotffi_call_abandon(t1);

    l.f = f;
    l.old = t1;
    assert_int_equal(pthread_create(&tid, NULL, late_thread, &l), 0);

    t2 = post(f, "new", NULL);
    assert_int_equal(hotffi_call_spin(t2, UINT64_MAX), HOTFFI_OK);
    assert_int_equal(unit_join(tid, UNIT_WAIT_MS), 0);

    check_answer(t2, "new");
    hotffi_call_finish(t2);

    /* t1 was freed by the spinner too, and nothing was announced */
    assert_int_equal(f->hub->tasks.live, 0);
    assert_false(unit_readable(hotffi_hub_fd(f->hub), 0));
    assert_int_equal(hotffi_hub_drain(f->hub), 0);
}


/* ---- the batch poll */

static void
test_batch_fifo(void **state)
{
    fixture_t      *f = *state;
    int             i;
    void           *got[8];
    unit_waiter_t   w[5];
    hotffi_task_t  *t[5];

    memset(w, 0, sizeof(w));

    for (i = 0; i < 5; i++) {
        t[i] = post(f, "b", &w[i]);
    }

    assert_int_equal(hotffi_task_poll_batch(f->tq, got, 3), 3);
    assert_ptr_equal(got[0], t[0]);
    assert_ptr_equal(got[1], t[1]);
    assert_ptr_equal(got[2], t[2]);

    assert_int_equal(hotffi_task_poll_batch(f->tq, got + 3, 8), 2);
    assert_ptr_equal(got[3], t[3]);
    assert_ptr_equal(got[4], t[4]);

    assert_int_equal(hotffi_task_poll_batch(f->tq, got, 0), 0);

    for (i = 0; i < 5; i++) {
        ngx_http_lua_ffi_respond(got[i], 0, NULL, 0);
    }

    drain(f, 5);

    for (i = 0; i < 5; i++) {
        assert_int_equal(w[i].woken, 1);
        hotffi_call_finish(t[i]);
    }
}


static void
test_batch_skips_cancelled(void **state)
{
    fixture_t      *f = *state;
    int             i;
    void           *got[8];
    unit_waiter_t   w[4];
    hotffi_task_t  *t[4];

    memset(w, 0, sizeof(w));

    for (i = 0; i < 4; i++) {
        t[i] = post(f, "c", &w[i]);
    }

    hotffi_call_abandon(t[1]);
    hotffi_call_abandon(t[2]);

    assert_int_equal(hotffi_task_poll_batch(f->tq, got, 8), 2);
    assert_ptr_equal(got[0], t[0]);
    assert_ptr_equal(got[1], t[3]);

    ngx_http_lua_ffi_respond(got[0], 0, NULL, 0);
    ngx_http_lua_ffi_respond(got[1], 0, NULL, 0);

    /* the two given up left the queue at once: only the answers come */
    drain(f, 2);
    hotffi_call_finish(t[0]);
    hotffi_call_finish(t[3]);
}


static void
test_batch_sees_stop(void **state)
{
    fixture_t      *f = *state;
    void           *got[8];
    unit_waiter_t   w1 = { 0, 0 }, w2 = { 0, 0 };
    hotffi_task_t  *t1, *t2;

    t1 = post(f, "1", &w1);
    t2 = post(f, "2", &w2);
    hotffi_runtime_unload(f->rt);

    /* what was queued before the stop first, then 0 for ever */
    assert_int_equal(hotffi_task_poll_batch(f->tq, got, 8), 2);
    assert_ptr_equal(got[0], t1);
    assert_ptr_equal(got[1], t2);
    assert_int_equal(hotffi_task_poll_batch(f->tq, got, 8), 0);
    assert_int_equal(hotffi_task_poll_batch(f->tq, got, 1), 0);
    assert_null(ngx_http_lua_ffi_task_poll(f->tq));

    ngx_http_lua_ffi_respond(t1, 0, NULL, 0);
    ngx_http_lua_ffi_respond(t2, 0, NULL, 0);
    unit_drain_until(f->hub, unit_is_closed, f->rt);
    hotffi_call_finish(t1);
    hotffi_call_finish(t2);
}


/* The runtime's side, on its own thread: batches of echoes until stop. */
static void *
batch_thread(void *data)
{
    int    i, n, len;
    char  *req;
    void  *tasks[4];

    while ((n = hotffi_task_poll_batch(data, tasks, 4)) > 0) {
        for (i = 0; i < n; i++) {
            req = ngx_http_lua_ffi_get_req(tasks[i], &len);
            ngx_http_lua_ffi_respond(tasks[i], 0, unit_dup(req, len), len);
        }
    }

    return NULL;
}


static int
all_woken(void *data)
{
    int             i;
    unit_waiter_t  *w = data;

    for (i = 0; i < 32; i++) {
        if (!w[i].woken) {
            return 0;
        }
    }

    return 1;
}


/* two batch pollers, one spinning and one parked, miss no task */
static void
test_batch_threads(void **state)
{
    fixture_t      *f = *state;
    int             i, round;
    char            req[32][24];
    pthread_t       tid[2];
    unit_waiter_t   w[32];
    hotffi_task_t  *t[32];

    for (i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&tid[i], NULL, batch_thread, f->tq),
                         0);
    }

    for (round = 0; round < 20; round++) {
        memset(w, 0, sizeof(w));

        for (i = 0; i < 32; i++) {
            (void) snprintf(req[i], sizeof(req[i]), "%d.%d", round, i);
            t[i] = post(f, req[i], &w[i]);
        }

        unit_drain_until(f->hub, all_woken, w);

        for (i = 0; i < 32; i++) {
            check_answer(t[i], req[i]);
            hotffi_call_finish(t[i]);
        }
    }

    hotffi_runtime_unload(f->rt);

    for (i = 0; i < 2; i++) {
        assert_int_equal(unit_join(tid[i], UNIT_WAIT_MS), 0);
    }
}


#define FAST_TEST(name)                                                       \
    cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
    const struct CMUnitTest  tests[] = {
        FAST_TEST(test_free_list_slots),
        FAST_TEST(test_free_list_lifo),
        FAST_TEST(test_request_in_place),
        FAST_TEST(test_spin_hit),
        FAST_TEST(test_spin_timeout),
        FAST_TEST(test_spin_declined),
        FAST_TEST(test_spin_not_for_parked),
        FAST_TEST(test_wake_deferred),
        FAST_TEST(test_spin_backoff),
        FAST_TEST(test_spin_recovers),
        FAST_TEST(test_spin_busy_machine),
        FAST_TEST(test_spin_streak),
        FAST_TEST(test_spin_learns_rates),
        FAST_TEST(test_spin_takes_every_answer),
        FAST_TEST(test_batch_fifo),
        FAST_TEST(test_batch_skips_cancelled),
        FAST_TEST(test_batch_sees_stop),
        FAST_TEST(test_batch_threads),
    };

    /* before anything reads them: see the top of this file */
    (void) setenv("HOTFFI_SPIN_US", FAST_SPIN_US, 1);
    (void) setenv("HOTFFI_POLL_SPIN_US", FAST_SPIN_US, 1);

    /* the decisions tested here must not depend on this machine's load */
    hotffi_spin_busy_force(0);

    unit_init();

    return cmocka_run_group_tests_name("fast", tests, NULL, NULL);
}
