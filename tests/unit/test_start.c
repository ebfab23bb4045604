/*
 * test_start.c -- libffi_init() on the init thread: a runtime whose init
 * has not returned queues its calls while the event loop serves another
 * runtime; its calls are answered once init returns, or fail with init's
 * error when it fails; a wait with a limit ends at it, and a runtime given
 * up meanwhile goes once init returns.
 *
 * rt_echo is loaded with "gate" in its configuration: its init hook (this
 * program's) then waits until the test opens the gate, the way a slow
 * libffi_init() would sleep.
 */

#define _GNU_SOURCE

#include "unit_helpers.h"


/* ---- the gate init waits at */

static pthread_mutex_t  gate_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t   gate_cond = PTHREAD_COND_INITIALIZER;
static int              gate_open;      /* locks: gate_mtx */
static int              gate_waiting;   /* locks: gate_mtx */


/* thread: init */
UNIT_EXPORT void
unit_rt_init_hook(const char *rt, char *cfg, void *tq)
{
    if (cfg == NULL || strstr(cfg, "gate") == NULL) {
        return;
    }

    (void) pthread_mutex_lock(&gate_mtx);
    gate_waiting++;

    while (!gate_open) {
        (void) pthread_cond_wait(&gate_cond, &gate_mtx);
    }

    gate_waiting--;
    (void) pthread_mutex_unlock(&gate_mtx);
}


static void
gate_set(int open)
{
    (void) pthread_mutex_lock(&gate_mtx);
    gate_open = open;
    (void) pthread_cond_broadcast(&gate_cond);
    (void) pthread_mutex_unlock(&gate_mtx);
}


/* the init thread is at the gate */
static void
gate_reached(void)
{
    int      n;
    int64_t  end;

    end = unit_now_ms() + UNIT_WAIT_MS;

    do {
        (void) pthread_mutex_lock(&gate_mtx);
        n = gate_waiting;
        (void) pthread_mutex_unlock(&gate_mtx);

        if (unit_now_ms() > end) {
            fail_msg("libffi_init() never reached the gate");
        }

        unit_sleep_ms(1);
    } while (n == 0);
}


/* ---- fixture */

typedef struct {
    hotffi_hub_t  *hub;
    int            threads;
    char           lib[PATH_MAX];
    char           err[HOTFFI_ERR_MAX];
} fixture_t;


static int
setup(void **state)
{
    fixture_t  *f;

    f = calloc(1, sizeof(fixture_t));
    assert_non_null(f);

    gate_set(0);
    f->threads = unit_threads();
    f->hub = unit_hub_create();
    (void) unit_lib(f->lib, sizeof(f->lib), "rt_echo");

    *state = f;
    return 0;
}


static int
teardown(void **state)
{
    fixture_t  *f = *state;

    assert_int_equal(f->hub->tasks.live, 0);
    unit_wait_threads(f->threads);
    hotffi_hub_destroy(f->hub);
    free(f);
    return 0;
}


static int
woken(void *data)
{
    return ((unit_waiter_t *) data)->woken != 0;
}


static hotffi_runtime_t *
start(fixture_t *f, const char *cfg, unit_waiter_t *w)
{
    hotffi_runtime_t       *rt;
    hotffi_runtime_opts_t   opts;

    memset(&opts, 0, sizeof(opts));

    rt = hotffi_runtime_load_start(f->hub, f->lib, cfg, strlen(cfg), &opts,
                                   w, f->err, sizeof(f->err));
    if (rt == NULL) {
        fail_msg("load_start: %s", f->err);
    }

    return rt;
}


static hotffi_task_t *
post(fixture_t *f, hotffi_runtime_t *rt, const char *req, unit_waiter_t *w)
{
    hotffi_task_t  *t;

    t = hotffi_call_post(rt, NULL, req, strlen(req), w, NULL, f->err,
                         sizeof(f->err));
    if (t == NULL) {
        fail_msg("post: %s", f->err);
    }

    return t;
}


/* ---- tests */

/*
 * While one runtime's init waits at the gate, another loads and answers;
 * the first one's call waits in its queue, and is answered once init
 * returned.
 */
static void
test_serves_meanwhile(void **state)
{
    fixture_t          *f = *state;
    size_t              len;
    const char         *rsp;
    unit_waiter_t       ws = { 0, 0 }, w1 = { 0, 0 }, w2 = { 0, 0 };
    hotffi_task_t      *t1, *t2;
    hotffi_runtime_t   *slow, *fast;
    hotffi_runtime_opts_t  opts;

    slow = start(f, "threads=1,gate", &ws);
    gate_reached();
    assert_int_equal(hotffi_runtime_started(slow, NULL, f->err,
                                            sizeof(f->err)), HOTFFI_AGAIN);
    assert_int_equal(hotffi_runtime_version(slow), 0);
    t1 = post(f, slow, "queued", &w1);

    /* a reload waits for the start */
    assert_int_equal(hotffi_runtime_reload(slow, NULL, NULL, 0, 1, 1, &w2,
                                           f->err, sizeof(f->err)),
                     HOTFFI_BUSY);
    assert_non_null(strstr(f->err, "is starting"));

    memset(&opts, 0, sizeof(opts));
    fast = unit_load(f->hub, f->lib, "threads=1", 9, &opts, NULL,
                               f->err, sizeof(f->err));
    assert_non_null(fast);
    t2 = post(f, fast, "fast", &w2);
    unit_drain_until(f->hub, woken, &w2);
    assert_int_equal(hotffi_call_result(t2, &rsp, &len), 0);
    assert_memory_equal(rsp, "fast", 4);
    hotffi_call_finish(t2);

    /* the slow one is still in its init, its call still queued */
    assert_int_equal(ws.woken, 0);
    assert_int_equal(w1.woken, 0);
    assert_int_equal(hotffi_queue_depth(slow->queue), 1);

    gate_set(1);
    unit_drain_until(f->hub, woken, &ws);
    assert_int_equal(hotffi_runtime_started(slow, NULL, f->err,
                                            sizeof(f->err)), HOTFFI_OK);
    assert_int_equal(hotffi_runtime_version(slow), 1);

    unit_drain_until(f->hub, woken, &w1);
    assert_int_equal(hotffi_call_result(t1, &rsp, &len), 0);
    assert_memory_equal(rsp, "queued", 6);
    hotffi_call_finish(t1);

    hotffi_runtime_reload_release(slow, &ws);
    assert_int_equal(ws.released, 1);

    unit_close(f->hub, slow);
    unit_close(f->hub, fast);
}


/* init fails after a call was queued: the call fails with init's error */
static void
test_init_fails(void **state)
{
    fixture_t         *f = *state;
    int                init_rc;
    size_t             len;
    const char        *rsp;
    unit_waiter_t      ws = { 0, 0 }, w1 = { 0, 0 };
    hotffi_task_t     *t1;
    hotffi_runtime_t  *rt;

    /* more threads than rt_echo allows: its init returns 3 */
    rt = start(f, "threads=99,gate", &ws);
    t1 = post(f, rt, "queued", &w1);

    gate_set(1);
    unit_drain_until(f->hub, woken, &ws);
    assert_int_equal(hotffi_runtime_started(rt, &init_rc, f->err,
                                            sizeof(f->err)), HOTFFI_ERROR);
    assert_int_equal(init_rc, 3);
    assert_non_null(strstr(f->err, "libffi_init() of runtime"));
    assert_true(rt->unloaded);

    unit_drain_until(f->hub, woken, &w1);
    assert_int_equal(hotffi_call_result(t1, &rsp, &len),
                     HOTFFI_TASK_UNSERVED);
    assert_non_null(strstr(rsp, "failed: 3"));
    hotffi_call_finish(t1);

    /* a failed start refuses calls, as an unloaded runtime does */
    assert_null(hotffi_call_post(rt, NULL, "x", 1, NULL, NULL, f->err,
                                 sizeof(f->err)));

    hotffi_runtime_reload_release(rt, &ws);
    unit_drain_until(f->hub, unit_is_closed, rt);
    hotffi_runtime_unref(rt);
}


/*
 * A start waited for with a limit, the way a host that cannot yield does:
 * the wait ends at the limit; the caller gives up (unloads), and the
 * runtime goes once init returns.
 */
static void
test_wait_limit(void **state)
{
    fixture_t         *f = *state;
    unit_waiter_t      ws = { 0, 0 };
    hotffi_runtime_t  *rt;

    rt = start(f, "threads=1,gate", &ws);
    assert_int_equal(hotffi_runtime_wait(rt, 20 * 1000 * 1000),
                     HOTFFI_AGAIN);
    assert_int_equal(hotffi_runtime_started(rt, NULL, f->err,
                                            sizeof(f->err)), HOTFFI_AGAIN);
    hotffi_runtime_reload_release(rt, &ws);
    hotffi_runtime_unload(rt);
    hotffi_runtime_unref(rt);
    assert_false(hotffi_list_empty(&f->hub->runtimes));

    gate_set(1);
    unit_drain_until(f->hub, unit_no_runtimes, f->hub);
    assert_int_equal(ws.released, 1);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test_setup_teardown(test_serves_meanwhile, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_init_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_limit, setup, teardown),
    };

    unit_init();

    return cmocka_run_group_tests(tests, NULL, NULL);
}
