/*
 * test_call.c -- a call from post to finish through the hub: the answer and
 * how it is delivered, giving up at every stage, groups, refusals, and the
 * eventfd that wakes the event loop.
 *
 * The runtime is rt_idle, loaded the real way but without threads: this
 * program plays the runtime thread too (ngx_http_lua_ffi_task_poll() and
 * respond() on its own thread), so each step happens in the order a test
 * chooses and no step needs a thread.  It must only poll when a task it
 * expects is queued or the queue is stopped: poll blocks otherwise.
 */

#define _GNU_SOURCE

#include <stdint.h>

#include "unit_helpers.h"


typedef struct {
    hotffi_hub_t      *hub;
    hotffi_runtime_t  *rt;
    hotffi_port_t     *tq;
    int                threads;
} fixture_t;


#define CALL_MAX_QUEUE  4


/* ---- fixture */

static int
setup(void **state)
{
    char                    path[PATH_MAX], err[256];
    fixture_t              *f;
    hotffi_runtime_opts_t   opts;

    f = calloc(1, sizeof(fixture_t));
    assert_non_null(f);

    f->threads = unit_threads();
    f->hub = unit_hub_create();

    memset(&opts, 0, sizeof(opts));
    opts.max_queue = CALL_MAX_QUEUE;

    f->rt = unit_load(f->hub, unit_lib(path, sizeof(path), "rt_idle"),
                                NULL, 0, &opts, NULL, err, sizeof(err));
    if (f->rt == NULL) {
        fail_msg("load: %s", err);
    }

    f->tq = &f->rt->current->port;

    /* the caller's reference and the one retiring drops */
    assert_int_equal(f->rt->refs, 2);

    *state = f;
    return 0;
}


/* Every test must have ended each of its tasks: the checks here prove it. */
static int
teardown(void **state)
{
    fixture_t  *f = *state;

    if (f->rt) {
        unit_close(f->hub, f->rt);
    }

    assert_int_equal(f->hub->tasks.live, 0);
    assert_true(hotffi_list_empty(&f->hub->runtimes));

    /* the reaper is gone: nothing can reach the hub any more */
    unit_wait_threads(f->threads);
    hotffi_hub_destroy(f->hub);

    free(f);
    return 0;
}


/* ---- helpers */

static hotffi_task_t *
post(fixture_t *f, hotffi_group_t *g, const char *req, size_t len,
    unit_waiter_t *w)
{
    char            err[256];
    hotffi_task_t  *task;

    err[0] = '\0';
    task = hotffi_call_post(f->rt, g, req, len, w, NULL, err, sizeof(err));

    if (task == NULL) {
        fail_msg("post: %s", err);
    }

    return task;
}


/* The runtime's side: takes the next task, which must be `want`. */
static void *
take(fixture_t *f, hotffi_task_t *want)
{
    void  *task;

    task = ngx_http_lua_ffi_task_poll(f->tq);
    assert_ptr_equal(task, want);

    return task;
}


/* The runtime's side: answers with a malloc()'ed copy of n bytes. */
static void
answer(void *task, int rc, const char *bytes, size_t n, int rsp_len)
{
    ngx_http_lua_ffi_respond(task, rc, bytes ? unit_dup(bytes, n) : NULL,
                             rsp_len);
}


static int
readable_now(fixture_t *f)
{
    return unit_readable(hotffi_hub_fd(f->hub), 0);
}


/* ---- tests */

static void
test_abi_version(void **state)
{
    assert_int_equal(hotffi_abi_version(), HOTFFI_ABI_VERSION);
}


static void
test_round_trip(void **state)
{
    fixture_t      *f = *state;
    int             len;
    char           *req;
    void           *task;
    size_t          rlen;
    const char     *rsp;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    /* a request with a NUL inside: lengths, not strings */
    t = post(f, NULL, "hello\0world", 11, &w);

    assert_int_equal(f->hub->tasks.live, 1);
    assert_int_equal(f->rt->stats.calls, 1);
    assert_int_equal(f->rt->stats.inflight, 1);
    assert_int_equal(f->rt->refs, 3);
    assert_int_equal(hotffi_queue_depth(f->rt->queue), 1);

    task = take(f, t);
    assert_int_equal(hotffi_task_cancelled(task), 0);

    req = ngx_http_lua_ffi_get_req(task, &len);
    assert_int_equal(len, 11);
    assert_memory_equal(req, "hello\0world", 11);
    assert_int_equal(req[11], '\0');

    /* nothing answered yet: the event loop has nothing to wake for */
    assert_false(readable_now(f));

    answer(task, 0, "ab\0cd", 5, 5);

    assert_true(readable_now(f));
    assert_int_equal(w.woken, 0);

    assert_int_equal(hotffi_hub_drain(f->hub), 1);

    assert_false(readable_now(f));
    assert_int_equal(w.woken, 1);
    assert_int_equal(unit_host_state.wakes, 1);
    assert_int_equal(w.released, 0);
    assert_true(t->done);
    assert_int_equal(f->rt->stats.ok, 1);
    assert_int_equal(f->rt->stats.inflight, 0);

    assert_int_equal(hotffi_call_result(t, &rsp, &rlen), 0);
    assert_int_equal(rlen, 5);
    assert_memory_equal(rsp, "ab\0cd", 5);

    /* a drain with nothing waiting wakes nobody again */
    assert_int_equal(hotffi_hub_drain(f->hub), 0);
    assert_int_equal(w.woken, 1);

    hotffi_call_finish(t);

    assert_int_equal(w.released, 1);
    assert_int_equal(unit_host_state.releases, 1);
    assert_int_equal(f->hub->tasks.live, 0);
    assert_int_equal(f->rt->refs, 2);
}


static void
test_empty_request(void **state)
{
    fixture_t      *f = *state;
    int             len;
    char           *req;
    void           *task;
    size_t          rlen;
    const char     *rsp;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    t = post(f, NULL, "", 0, &w);
    task = take(f, t);

    /* never NULL, even when empty */
    len = -1;
    req = ngx_http_lua_ffi_get_req(task, &len);
    assert_non_null(req);
    assert_int_equal(len, 0);
    assert_int_equal(req[0], '\0');

    /* "" with length 0: an empty string, not nil */
    answer(task, 0, "", 1, 0);
    assert_int_equal(hotffi_hub_drain(f->hub), 1);
    assert_int_equal(w.woken, 1);

    assert_int_equal(hotffi_call_result(t, &rsp, &rlen), 0);
    assert_non_null(rsp);
    assert_int_equal(rlen, 0);
    assert_string_equal(rsp, "");

    hotffi_call_finish(t);
    assert_int_equal(w.released, 1);
}


/* The length rules of respond(): given, NUL-terminated, none. */
static void
test_answer_lengths(void **state)
{
    fixture_t      *f = *state;
    int             i;
    size_t          rlen;
    const char     *rsp;
    unit_waiter_t   w[4];
    hotffi_task_t  *t[4];

    memset(w, 0, sizeof(w));

    for (i = 0; i < 4; i++) {
        t[i] = post(f, NULL, "x", 1, &w[i]);
    }

    /* 0 with a payload: NUL-terminated */
    answer(take(f, t[0]), 0, "xyz\0tail", 8, 0);
    /* below 0 too */
    answer(take(f, t[1]), 0, "hello", 6, -1);
    /* NULL whatever the length: no payload */
    answer(take(f, t[2]), 0, NULL, 0, 5);
    /* a length shorter than the buffer: only that much */
    answer(take(f, t[3]), 0, "abcdef", 6, 2);

    /* four answers, one drain */
    assert_int_equal(hotffi_hub_drain(f->hub), 4);

    assert_int_equal(hotffi_call_result(t[0], &rsp, &rlen), 0);
    assert_int_equal(rlen, 3);
    assert_memory_equal(rsp, "xyz", 3);

    assert_int_equal(hotffi_call_result(t[1], &rsp, &rlen), 0);
    assert_int_equal(rlen, 5);
    assert_memory_equal(rsp, "hello", 5);

    assert_int_equal(hotffi_call_result(t[2], &rsp, &rlen), 0);
    assert_null(rsp);
    assert_int_equal(rlen, 0);

    assert_int_equal(hotffi_call_result(t[3], &rsp, &rlen), 0);
    assert_int_equal(rlen, 2);
    assert_memory_equal(rsp, "ab", 2);

    for (i = 0; i < 4; i++) {
        assert_int_equal(w[i].woken, 1);
        hotffi_call_finish(t[i]);
        assert_int_equal(w[i].released, 1);
    }
}


static void
test_failed_answer(void **state)
{
    fixture_t      *f = *state;
    size_t          rlen;
    const char     *rsp;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    t = post(f, NULL, "req", 3, &w);
    answer(take(f, t), 42, "bad input", 10, 0);

    assert_int_equal(hotffi_hub_drain(f->hub), 1);
    assert_int_equal(w.woken, 1);

    /* a failure is still an answer: woken, with its rc and text */
    assert_int_equal(hotffi_call_result(t, &rsp, &rlen), 42);
    assert_int_equal(rlen, 9);
    assert_memory_equal(rsp, "bad input", 9);
    assert_int_equal(f->rt->stats.failed, 1);
    assert_int_equal(f->rt->stats.ok, 0);

    hotffi_call_finish(t);
}


/* A caller without a waiter (fire and forget): nobody to wake or release. */
static void
test_no_waiter(void **state)
{
    fixture_t      *f = *state;
    hotffi_task_t  *t;

    t = post(f, NULL, "a", 1, NULL);
    answer(take(f, t), 0, "b", 2, 0);

    assert_int_equal(hotffi_hub_drain(f->hub), 1);
    assert_true(t->done);
    assert_int_equal(unit_host_state.wakes, 0);

    hotffi_call_finish(t);
    assert_int_equal(unit_host_state.releases, 0);
    assert_int_equal(f->hub->tasks.live, 0);
}


/*
 * The caller gives up while the runtime works on the task: the runtime can
 * see it, the waiter is released at once (the answer may never come), the
 * answer is still required and is freed at the drain, unseen.
 */
static void
test_abandon_before_answer(void **state)
{
    fixture_t      *f = *state;
    void           *task;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    t = post(f, NULL, "slow", 4, &w);
    task = take(f, t);
    assert_int_equal(hotffi_task_cancelled(task), 0);

    hotffi_call_abandon(t);

    assert_int_equal(hotffi_task_cancelled(task), 1);
    assert_int_equal(f->rt->stats.abandoned, 1);

    /* the waiter goes now; the task stays: the runtime owns it */
    assert_int_equal(w.released, 1);
    assert_int_equal(f->hub->tasks.live, 1);

    answer(task, 0, "too late", 9, 0);
    assert_true(readable_now(f));
    assert_int_equal(hotffi_hub_drain(f->hub), 1);

    /* freed with its answer; the caller is neither woken nor released
     * again */
    assert_int_equal(w.woken, 0);
    assert_int_equal(w.released, 1);
    assert_int_equal(unit_host_state.releases, 1);
    assert_int_equal(f->hub->tasks.live, 0);
    assert_int_equal(f->rt->stats.inflight, 0);
    assert_int_equal(f->rt->stats.ok, 0);
    assert_int_equal(f->rt->refs, 2);
}


/*
 * Given up while still queued: it leaves the queue at once, its slot free
 * before any poll, and the runtime never sees it.
 */
static void
test_abandon_queued(void **state)
{
    fixture_t      *f = *state;
    void           *task;
    unit_waiter_t   w1 = { 0, 0 }, w2 = { 0, 0 };
    hotffi_task_t  *t1, *t2;

    t1 = post(f, NULL, "one", 3, &w1);
    t2 = post(f, NULL, "two", 3, &w2);

    hotffi_call_abandon(t1);
    assert_int_equal(w1.released, 1);
    assert_int_equal(hotffi_queue_depth(f->rt->queue), 1);
    assert_int_equal(f->hub->tasks.live, 1);
    assert_int_equal(f->rt->stats.inflight, 1);

    /* poll hands out the next one; nothing comes back for the first */
    task = take(f, t2);
    assert_false(readable_now(f));
    assert_int_equal(w1.woken, 0);
    assert_int_equal(unit_host_state.releases, 1);

    answer(task, 0, "2", 2, 0);
    assert_int_equal(hotffi_hub_drain(f->hub), 1);
    assert_int_equal(w2.woken, 1);
    hotffi_call_finish(t2);

    assert_int_equal(f->hub->tasks.live, 0);
    assert_int_equal(f->rt->stats.abandoned, 1);
    assert_int_equal(f->rt->stats.ok, 1);
    assert_int_equal(f->rt->stats.inflight, 0);
}


/* The only task queued is given up, then the runtime unloaded: poll skips
 * it and returns the stop at once. */
static void
test_abandon_queued_then_stop(void **state)
{
    fixture_t      *f = *state;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    t = post(f, NULL, "one", 3, &w);
    hotffi_call_abandon(t);
    hotffi_runtime_unload(f->rt);

    assert_null(ngx_http_lua_ffi_task_poll(f->tq));

    /* the REAPED task may come back in the same drain: drain until then */
    unit_drain_until(f->hub, unit_is_closed, f->rt);
    assert_int_equal(w.woken, 0);
    assert_int_equal(w.released, 1);
    assert_int_equal(f->hub->tasks.live, 0);
}


/* Given up after its answer was drained: nothing to wait for, freed now. */
static void
test_abandon_after_done(void **state)
{
    fixture_t      *f = *state;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    t = post(f, NULL, "q", 1, &w);
    answer(take(f, t), 0, "a", 2, 0);
    assert_int_equal(hotffi_hub_drain(f->hub), 1);
    assert_int_equal(w.woken, 1);

    hotffi_call_abandon(t);

    assert_int_equal(w.released, 1);
    assert_int_equal(f->hub->tasks.live, 0);
    /* it was answered, so it does not count as abandoned */
    assert_int_equal(f->rt->stats.abandoned, 0);
    assert_false(readable_now(f));
}


/*
 * The end of a request gives up its tasks in every stage at once: answered
 * and drained, taken by the runtime, still queued.  Tasks of the group
 * finished earlier, and tasks of no group, are not touched.
 */
static void
test_group_abandon(void **state)
{
    fixture_t       *f = *state;
    int              i;
    void            *t2_task, *t4_task;
    unit_waiter_t    w[5];
    hotffi_task_t   *t[5];
    hotffi_group_t   g;

    memset(w, 0, sizeof(w));
    hotffi_group_init(&g);

    t[0] = post(f, &g, "0", 1, &w[0]);
    t[1] = post(f, &g, "1", 1, &w[1]);
    t[2] = post(f, &g, "2", 1, &w[2]);
    t[3] = post(f, &g, "3", 1, &w[3]);

    /* t0: answered and finished, from the tail of the group's list */
    answer(take(f, t[0]), 0, "r0", 3, 0);
    /* t1: answered and drained, not finished */
    answer(take(f, t[1]), 0, "r1", 3, 0);
    assert_int_equal(hotffi_hub_drain(f->hub), 2);
    hotffi_call_finish(t[0]);

    /* t2: taken by the runtime; t3 stays queued behind t4 of no group */
    t2_task = take(f, t[2]);
    t[4] = post(f, NULL, "4", 1, &w[4]);

    hotffi_group_abandon(&g);

    assert_true(hotffi_list_empty(&g.tasks));
    /* t1 was done, t3 still queued: freed at once; t2 waits for its
       answer */
    assert_int_equal(f->hub->tasks.live, 2);
    assert_int_equal(w[1].released, 1);
    assert_int_equal(hotffi_task_cancelled(t2_task), 1);
    assert_int_equal(w[2].released, 1);        /* the runtime has it */
    assert_int_equal(w[3].released, 1);        /* still queued */
    assert_int_equal(w[4].released, 0);
    assert_int_equal(f->rt->stats.abandoned, 2);

    /* t3 left the queue: poll hands out t4 */
    t4_task = take(f, t[4]);
    assert_int_equal(hotffi_task_cancelled(t4_task), 0);

    answer(t2_task, 0, "r2", 3, 0);
    answer(t4_task, 0, "r4", 3, 0);

    assert_int_equal(hotffi_hub_drain(f->hub), 2);

    for (i = 0; i < 4; i++) {
        assert_int_equal(w[i].released, 1);
    }

    assert_int_equal(w[4].released, 0);

    assert_int_equal(w[0].woken, 1);
    assert_int_equal(w[1].woken, 1);
    assert_int_equal(w[2].woken, 0);
    assert_int_equal(w[3].woken, 0);
    assert_int_equal(w[4].woken, 1);
    assert_int_equal(f->hub->tasks.live, 1);

    hotffi_call_finish(t[4]);

    /* an empty group gives up nothing */
    hotffi_group_abandon(&g);
    assert_int_equal(f->hub->tasks.live, 0);
    assert_int_equal(unit_host_state.releases, 5);
}


/* Finishing tasks of a group in any order keeps its list sound. */
static void
test_group_finish_order(void **state)
{
    fixture_t       *f = *state;
    int              i;
    unit_waiter_t    w[4];
    hotffi_task_t   *t[4];
    hotffi_group_t   g;

    memset(w, 0, sizeof(w));
    hotffi_group_init(&g);

    for (i = 0; i < 4; i++) {
        t[i] = post(f, &g, "x", 1, &w[i]);
    }

    for (i = 0; i < 4; i++) {
        answer(take(f, t[i]), 0, "y", 2, 0);
    }

    assert_int_equal(hotffi_hub_drain(f->hub), 4);

    /* the list is newest first: remove its middle, tail, head, last */
    hotffi_call_finish(t[2]);
    hotffi_call_finish(t[0]);
    hotffi_call_finish(t[3]);
    assert_ptr_equal(hotffi_list_first(&g.tasks), &t[1]->glink);
    assert_ptr_equal(t[1]->glink.prev, &g.tasks);
    assert_ptr_equal(t[1]->glink.next, &g.tasks);
    hotffi_call_finish(t[1]);
    assert_true(hotffi_list_empty(&g.tasks));

    hotffi_group_abandon(&g);
    assert_int_equal(f->hub->tasks.live, 0);
}


static void
test_queue_full(void **state)
{
    fixture_t      *f = *state;
    int             i, why;
    char            err[256];
    unit_waiter_t   w[CALL_MAX_QUEUE + 1];
    hotffi_task_t  *t[CALL_MAX_QUEUE], *over;

    memset(w, 0, sizeof(w));

    for (i = 0; i < CALL_MAX_QUEUE; i++) {
        t[i] = post(f, NULL, "x", 1, &w[i]);
    }

    err[0] = '\0';
    why = 0;
    over = hotffi_call_post(f->rt, NULL, "x", 1, &w[CALL_MAX_QUEUE], &why,
                            err, sizeof(err));

    assert_null(over);
    assert_int_equal(why, HOTFFI_BUSY);
    assert_string_equal(err, "queue full");
    assert_int_equal(f->rt->stats.rejected, 1);
    assert_int_equal(f->rt->stats.calls, CALL_MAX_QUEUE);
    assert_int_equal(f->hub->tasks.live, CALL_MAX_QUEUE);

    /* operators must see it: one warning, counted */
    assert_int_equal(f->rt->stats.full, 1);
    assert_int_equal(unit_host_state.logs, 1);
    assert_int_equal(unit_host_state.log_level, HOTFFI_LOG_WARN);
    assert_non_null(strstr(unit_host_state.log, "1 calls refused (queue "
                                                "full: 1,"));

    /* another at once is counted, not logged: a line a second at most */
    assert_null(hotffi_call_post(f->rt, NULL, "x", 1, NULL, &why, err,
                                 sizeof(err)));
    assert_int_equal(f->rt->stats.full, 2);
    assert_int_equal(unit_host_state.logs, 1);

    /* the waiter stays the caller's on failure: the hub never saw it */
    assert_int_equal(w[CALL_MAX_QUEUE].released, 0);

    for (i = 0; i < CALL_MAX_QUEUE; i++) {
        answer(take(f, t[i]), 0, "y", 2, 0);
    }

    assert_int_equal(hotffi_hub_drain(f->hub), CALL_MAX_QUEUE);

    for (i = 0; i < CALL_MAX_QUEUE; i++) {
        assert_int_equal(w[i].woken, 1);
        hotffi_call_finish(t[i]);
    }

    /* room again */
    t[0] = post(f, NULL, "x", 1, &w[0]);
    answer(take(f, t[0]), 0, "y", 2, 0);
    assert_int_equal(hotffi_hub_drain(f->hub), 1);
    hotffi_call_finish(t[0]);
}


/*
 * max_inflight: calls the runtime took and has not answered, whether their
 * callers wait or not, refuse the next call like a full queue; an answer
 * makes room.
 */
static void
test_inflight_limit(void **state)
{
    fixture_t      *f = *state;
    int             why;
    char            err[256];
    void           *task1, *task2;
    unit_waiter_t   w1 = { 0, 0 }, w2 = { 0, 0 }, w3 = { 0, 0 };
    hotffi_task_t  *t1, *t2, *t3;

    /* no runtime thread sees the queue: rt_idle has none */
    f->rt->queue->max_inflight = 2;

    t1 = post(f, NULL, "1", 1, &w1);
    t2 = post(f, NULL, "2", 1, &w2);

    /* queued, not taken: the limit is on what the runtime holds */
    t3 = post(f, NULL, "3", 1, &w3);
    task1 = take(f, t1);
    task2 = take(f, t2);

    /* t3 still queued, two taken: a fourth is refused */
    why = 0;
    assert_null(hotffi_call_post(f->rt, NULL, "4", 1, NULL, &why, err,
                                 sizeof(err)));
    assert_int_equal(why, HOTFFI_BUSY);
    assert_non_null(strstr(err, "queue full: 2 calls taken and not "
                                "answered (max_inflight)"));
    assert_int_equal(f->rt->stats.inflight_full, 1);
    assert_int_equal(f->rt->stats.rejected, 1);

    /* a caller that gives up does not free what the runtime holds */
    hotffi_call_timeout(t1);
    assert_int_equal(f->rt->stats.timeouts, 1);
    assert_int_equal(f->rt->stats.abandoned, 1);
    assert_null(hotffi_call_post(f->rt, NULL, "4", 1, NULL, &why, err,
                                 sizeof(err)));

    /* its answer does */
    answer(task1, 0, "1", 1, 1);
    assert_int_equal(hotffi_hub_drain(f->hub), 1);
    answer(take(f, t3), 0, "3", 1, 1);
    answer(task2, 0, "2", 1, 1);
    assert_int_equal(hotffi_hub_drain(f->hub), 2);
    hotffi_call_finish(t2);
    hotffi_call_finish(t3);

    t1 = post(f, NULL, "5", 1, &w1);
    answer(take(f, t1), 0, "5", 1, 1);
    assert_int_equal(hotffi_hub_drain(f->hub), 1);
    hotffi_call_finish(t1);
    assert_int_equal(f->rt->queue->outstanding, 0);
}


/*
 * The host gives every waiting call up (a worker's exit): each caller is
 * woken and reads the reason, even when the answer comes meanwhile, and
 * finishing gives the task up; each counts as dropped.
 */
static void
test_give_up_all(void **state)
{
    fixture_t      *f = *state;
    void           *task;
    size_t          len;
    const char     *rsp;
    unit_waiter_t   w1 = { 0, 0 }, w2 = { 0, 0 };
    hotffi_task_t  *t1, *t2;

    t1 = post(f, NULL, "taken", 5, &w1);
    t2 = post(f, NULL, "queued", 6, &w2);
    task = take(f, t1);

    assert_int_equal(hotffi_call_give_up_all(f->hub), 2);
    assert_int_equal(w1.woken, 1);
    assert_int_equal(w2.woken, 1);
    assert_int_equal(f->rt->stats.dropped, 2);

    /* once is enough */
    assert_int_equal(hotffi_call_give_up_all(f->hub), 0);

    /* the taken one is answered before its caller resumes */
    answer(task, 0, "late", 4, 4);
    assert_int_equal(hotffi_hub_drain(f->hub), 1);

    assert_int_equal(hotffi_call_result(t1, &rsp, &len),
                     HOTFFI_TASK_UNSERVED);
    assert_string_equal(rsp, HOTFFI_CALL_GONE);
    hotffi_call_finish(t1);

    assert_int_equal(hotffi_call_result(t2, &rsp, &len),
                     HOTFFI_TASK_UNSERVED);
    assert_int_equal(len, strlen(HOTFFI_CALL_GONE));
    hotffi_call_finish(t2);

    /* the queued one left the queue with its caller */
    assert_int_equal(hotffi_queue_depth(f->rt->queue), 0);
    assert_int_equal(f->hub->tasks.live, 0);
    assert_int_equal(f->hub->callers, 0);
    assert_true(hotffi_list_empty(&f->hub->calls));
}


/*
 * An unload stops the queue: new calls are refused, calls queued before it
 * are still handed out and answered, then the runtime gets the stop.
 */
static void
test_call_after_unload(void **state)
{
    int             why;
    fixture_t      *f = *state;
    char            err[256];
    unit_waiter_t   w1 = { 0, 0 }, w2 = { 0, 0 };
    hotffi_task_t  *t1, *t2;

    t1 = post(f, NULL, "before", 6, &w1);

    hotffi_runtime_unload(f->rt);
    hotffi_runtime_unload(f->rt);

    err[0] = '\0';
    why = 0;
    t2 = hotffi_call_post(f->rt, NULL, "after", 5, &w2, &why, err,
                          sizeof(err));

    assert_null(t2);
    assert_int_equal(why, HOTFFI_DECLINED);
    assert_non_null(strstr(err, "unloaded"));
    assert_int_equal(f->rt->stats.rejected, 1);
    assert_int_equal(w2.released, 0);

    answer(take(f, t1), 0, "ok", 3, 0);
    assert_null(ngx_http_lua_ffi_task_poll(f->tq));
    assert_null(ngx_http_lua_ffi_task_poll(f->tq));

    /*
     * The answer is delivered even if it comes back after the REAPED task:
     * the task's reference keeps the runtime.  (Here the runtime thread is
     * this one, which libffi_fini() does not join, so either order occurs.)
     */
    unit_drain_until(f->hub, unit_is_closed, f->rt);
    assert_int_equal(w1.woken, 1);
    hotffi_call_finish(t1);
}


/* The ABI gives the runtime an int length: longer requests are refused,
 * before anything is allocated or copied (the buffer is far shorter). */
static void
test_request_too_large(void **state)
{
    fixture_t      *f = *state;
    char            err[256], small[8];
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    memset(small, 'x', sizeof(small));

    err[0] = '\0';
    t = hotffi_call_post(f->rt, NULL, small, (size_t) INT_MAX + 1, &w, NULL,
                         err, sizeof(err));

    assert_null(t);
    assert_non_null(strstr(err, "too large"));
    assert_int_equal(f->hub->tasks.live, 0);
    assert_int_equal(f->rt->stats.calls, 0);
    assert_int_equal(hotffi_queue_depth(f->rt->queue), 0);

    t = hotffi_call_post(f->rt, NULL, small, SIZE_MAX, &w, NULL, err,
                         sizeof(err));
    assert_null(t);
}


/*
 * A burst of answers costs one eventfd write and one drain; the fd is
 * readable while answers wait and not after the drain.
 */
static void
test_eventfd_burst(void **state)
{
    fixture_t      *f = *state;
    int             i;
    ssize_t         n;
    uint64_t        count, wakeups, completions;
    unit_waiter_t   w[CALL_MAX_QUEUE];
    hotffi_task_t  *t[CALL_MAX_QUEUE];

    memset(w, 0, sizeof(w));

    for (i = 0; i < CALL_MAX_QUEUE; i++) {
        t[i] = post(f, NULL, "x", 1, &w[i]);
    }

    assert_false(readable_now(f));

    for (i = 0; i < CALL_MAX_QUEUE; i++) {
        answer(take(f, t[i]), 0, "y", 2, 0);
        assert_true(readable_now(f));
    }

    /* only the answer that found the list empty wrote: the counter is 1 */
    n = read(hotffi_hub_fd(f->hub), &count, sizeof(count));
    assert_int_equal(n, sizeof(count));
    assert_int_equal(count, 1);
    assert_false(readable_now(f));

    /* the drain takes the list, not the counter: all answers still come */
    wakeups = f->hub->stats.wakeups;
    completions = f->hub->stats.completions;

    assert_int_equal(hotffi_hub_drain(f->hub), CALL_MAX_QUEUE);
    assert_int_equal(f->hub->stats.wakeups, wakeups + 1);
    assert_int_equal(f->hub->stats.completions, completions
                     + CALL_MAX_QUEUE);
    assert_int_equal(unit_host_state.wakes, CALL_MAX_QUEUE);

    /* an empty drain is not counted as a wake-up */
    assert_int_equal(hotffi_hub_drain(f->hub), 0);
    assert_int_equal(f->hub->stats.wakeups, wakeups + 1);

    for (i = 0; i < CALL_MAX_QUEUE; i++) {
        hotffi_call_finish(t[i]);
    }

    /* the next answer after a drain writes again */
    t[0] = post(f, NULL, "x", 1, &w[0]);
    answer(take(f, t[0]), 0, "y", 2, 0);
    assert_true(readable_now(f));
    assert_int_equal(hotffi_hub_drain(f->hub), 1);
    assert_false(readable_now(f));
    assert_int_equal(f->hub->stats.wakeups, wakeups + 2);
    hotffi_call_finish(t[0]);
}


/* A task's reference keeps the runtime: unloaded and unreferenced by its
 * caller, it is freed when its last task is. */
static void
test_task_holds_runtime(void **state)
{
    fixture_t      *f = *state;
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    t = post(f, NULL, "x", 1, &w);
    assert_int_equal(f->rt->refs, 3);

    answer(take(f, t), 0, "y", 2, 0);

    hotffi_runtime_unload(f->rt);
    unit_drain_until(f->hub, unit_is_closed, f->rt);
    assert_int_equal(w.woken, 1);

    /* retired and the caller's reference gone: only the task holds it */
    hotffi_runtime_unref(f->rt);
    assert_int_equal(f->rt->refs, 1);
    assert_ptr_equal(unit_first_runtime(f->hub), f->rt);

    hotffi_call_finish(t);
    assert_true(hotffi_list_empty(&f->hub->runtimes));

    /* freed: the teardown has nothing to retire */
    f->rt = NULL;
    f->tq = NULL;
}


#define CALL_TEST(name)                                                       \
    cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_abi_version),
        CALL_TEST(test_round_trip),
        CALL_TEST(test_empty_request),
        CALL_TEST(test_answer_lengths),
        CALL_TEST(test_failed_answer),
        CALL_TEST(test_no_waiter),
        CALL_TEST(test_abandon_before_answer),
        CALL_TEST(test_abandon_queued),
        CALL_TEST(test_abandon_queued_then_stop),
        CALL_TEST(test_abandon_after_done),
        CALL_TEST(test_group_abandon),
        CALL_TEST(test_group_finish_order),
        CALL_TEST(test_queue_full),
        CALL_TEST(test_inflight_limit),
        CALL_TEST(test_give_up_all),
        CALL_TEST(test_call_after_unload),
        CALL_TEST(test_request_too_large),
        CALL_TEST(test_eventfd_burst),
        CALL_TEST(test_task_holds_runtime),
    };

    unit_init();

    return cmocka_run_group_tests_name("call", tests, NULL, NULL);
}
