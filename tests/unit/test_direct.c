/*
 * test_direct.c -- a direct port (src/core/hotffi_direct.h), the way the
 * isolation library serves a helper: the event loop pumps calls to a peer
 * thread and takes its answers, woken through the hub's eventfd.  Calls
 * arrive intact and in order; what does not fit the peer's room stays in
 * the core's queue (so giving it up frees its slot at once) and is sent as
 * answers make room; a call given up at the peer is freed when its answer
 * comes; calls made while others are in flight are sent together when
 * the loop's deferred wake-ups are paid; the unload detaches the port
 * before its data goes.
 *
 * The runtime is rt_direct (its peer stands in for the helper process).
 * No assertion depends on how the threads are scheduled: the room the
 * pump fills is counted on the event loop, and every wait is bounded.
 */

#define _GNU_SOURCE

#include <stdatomic.h>
#include <stdint.h>

#include "unit_helpers.h"
#include "hotffi_direct.h"


#define DIRECT_CALLS  40
#define DIRECT_CAP    2


typedef struct {
    hotffi_hub_t      *hub;
    hotffi_runtime_t  *rt;
    int                threads;
} fixture_t;


/* the peer answers while it is 1 (rt_direct.c) */
static atomic_int  direct_gate = 1;


UNIT_EXPORT int
unit_rt_direct_gate(void)
{
    return atomic_load(&direct_gate);
}


static int
setup(void **state)
{
    char                    path[PATH_MAX], err[256], cfg[16];
    fixture_t              *f;
    hotffi_runtime_opts_t   opts;

    f = calloc(1, sizeof(fixture_t));
    assert_non_null(f);

    f->threads = unit_threads();
    f->hub = unit_hub_create();

    memset(&opts, 0, sizeof(opts));
    opts.max_queue = DIRECT_CALLS;

    (void) snprintf(cfg, sizeof(cfg), "cap=%d", DIRECT_CAP);
    f->rt = unit_load(f->hub, unit_lib(path, sizeof(path), "rt_direct"),
                      cfg, strlen(cfg), &opts, NULL, err, sizeof(err));
    if (f->rt == NULL) {
        fail_msg("load: %s", err);
    }

    atomic_store(&direct_gate, 1);

    *state = f;
    return 0;
}


static int
teardown(void **state)
{
    fixture_t  *f = *state;

    atomic_store(&direct_gate, 1);
    unit_close(f->hub, f->rt);

    /* every task came back, none is left in the hub */
    assert_int_equal(f->hub->tasks.live, 0);
    assert_int_equal(atomic_load(&f->hub->ndirect), 0);

    unit_wait_threads(f->threads);
    hotffi_hub_destroy(f->hub);
    free(f);
    return 0;
}


static hotffi_task_t *
post(fixture_t *f, const char *req, size_t len)
{
    char            err[256];
    hotffi_task_t  *task;

    err[0] = '\0';
    task = hotffi_call_post(f->rt, NULL, req, len, NULL, NULL, err,
                            sizeof(err));
    if (task == NULL) {
        fail_msg("post: %s", err);
    }

    return task;
}


typedef struct {
    hotffi_task_t  **tasks;
    int              n;
} all_t;


static int
all_done(void *data)
{
    int     i;
    all_t  *a = data;

    for (i = 0; i < a->n; i++) {
        if (a->tasks[i] != NULL && !a->tasks[i]->done) {
            return 0;
        }
    }

    return 1;
}


static int
no_live_but(void *data)
{
    fixture_t  *f = data;

    /* the calls still held by the test: none */
    return f->hub->tasks.live == 0;
}


/* many calls, few at the peer at a time: all intact, the queue empties */
static void
test_round_trip(void **state)
{
    int              i;
    char             reqs[DIRECT_CALLS][24];
    size_t           len;
    const char      *rsp;
    all_t            a;
    fixture_t       *f = *state;
    hotffi_task_t   *tasks[DIRECT_CALLS];

    for (i = 0; i < DIRECT_CALLS; i++) {
        (void) snprintf(reqs[i], sizeof(reqs[i]), "call %d", i);
        tasks[i] = post(f, reqs[i], strlen(reqs[i]));
    }

    a.tasks = tasks;
    a.n = DIRECT_CALLS;
    unit_drain_until(f->hub, all_done, &a);

    for (i = 0; i < DIRECT_CALLS; i++) {
        assert_int_equal(hotffi_call_result(tasks[i], &rsp, &len), 0);
        assert_int_equal(len, strlen(reqs[i]));
        assert_memory_equal(rsp, reqs[i], len);
        hotffi_call_finish(tasks[i]);
    }

    assert_int_equal(hotffi_queue_depth(f->rt->queue), 0);
}


/* the peer's room: the rest stays queued, and a give-up there is at once */
static void
test_room_and_give_up(void **state)
{
    int              i;
    size_t           len;
    const char      *rsp;
    all_t            a;
    fixture_t       *f = *state;
    hotffi_task_t   *tasks[5];

    atomic_store(&direct_gate, 0);

    for (i = 0; i < 5; i++) {
        tasks[i] = post(f, "x", 1);
    }

    /* the pump sent DIRECT_CAP, counted on this thread: the others wait */
    assert_int_equal(hotffi_queue_depth(f->rt->queue), 5 - DIRECT_CAP);

    /* a queued call given up leaves the queue and is freed now */
    hotffi_call_abandon(tasks[4]);
    tasks[4] = NULL;
    assert_int_equal(hotffi_queue_depth(f->rt->queue), 5 - DIRECT_CAP - 1);

    /* one at the peer: freed when its answer is taken */
    hotffi_call_abandon(tasks[0]);
    tasks[0] = NULL;

    atomic_store(&direct_gate, 1);

    a.tasks = tasks;
    a.n = 5;
    unit_drain_until(f->hub, all_done, &a);

    for (i = 1; i < 4; i++) {
        assert_int_equal(hotffi_call_result(tasks[i], &rsp, &len), 0);
        assert_int_equal(len, 1);
        hotffi_call_finish(tasks[i]);
    }

    /* the abandoned one's answer came too, and was freed by the drain */
    unit_drain_until(f->hub, no_live_but, f);
}


static int  defers;


static void
count_defer(void)
{
    defers++;
}


/* others in flight: the sends wait for the end of the loop's turn */
static void
test_deferred_batch(void **state)
{
    int              i;
    all_t            a;
    fixture_t       *f = *state;
    hotffi_task_t   *tasks[4];

    f->hub->host.defer = count_defer;
    defers = 0;
    atomic_store(&direct_gate, 0);

    /* alone: sent at once */
    tasks[0] = post(f, "a", 1);
    assert_int_equal(hotffi_queue_depth(f->rt->queue), 0);

    /* not alone: queued, one deferred turn asked for all three */
    for (i = 1; i < 4; i++) {
        tasks[i] = post(f, "b", 1);
    }

    assert_int_equal(hotffi_queue_depth(f->rt->queue), 3);
    assert_int_equal(defers, 1);

    /* the turn's end: as many as the peer's room takes */
    hotffi_hub_flush_wakes(f->hub);
    assert_int_equal(hotffi_queue_depth(f->rt->queue), 4 - DIRECT_CAP);

    atomic_store(&direct_gate, 1);

    a.tasks = tasks;
    a.n = 4;
    unit_drain_until(f->hub, all_done, &a);

    for (i = 0; i < 4; i++) {
        hotffi_call_finish(tasks[i]);
    }

    f->hub->host.defer = NULL;
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_room_and_give_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deferred_batch, setup,
                                        teardown),
    };

    unit_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
