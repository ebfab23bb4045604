/*
 * test_reload.c -- in-place reloads through dlopen(): the state handed over,
 * the calls queued meanwhile, a task the old version still holds, rollback
 * when the new version fails to start or the old one fails to retire,
 * runtimes that cannot retire, refusals, unload in the middle of a reload,
 * a library file replaced on disk, and the reload's waiter.
 *
 * Most tests load rt_count, whose answer is the number of calls answered by
 * the versions so far (its state): a count that goes on across a reload is
 * the proof that the state crossed over, and its "tag=" shows which version
 * answered.  Its hooks report libffi_init() (with what hotffi_state() gave
 * it), libffi_retire() and libffi_fini(); a "hold" request blocks a thread
 * of the old version in the hold hook until the test lets it go.
 */

#define _GNU_SOURCE

#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "unit_helpers.h"


/* ---- what the runtimes report */

#define HOOK_MAX  16

typedef struct {
    atomic_int   inits;
    atomic_int   finis;
    atomic_int   retires;
    void        *init_tq[HOOK_MAX];
    char         init_cfg[HOOK_MAX][64];     /* "(nil)" for NULL */
    char         init_state[HOOK_MAX][32];   /* hotffi_state() as a string */
    int          init_state_len[HOOK_MAX];   /* -1 when it gave NULL */
    void        *fini_tq[HOOK_MAX];
    char         fini_rt[HOOK_MAX][16];
    void        *retire_tq[HOOK_MAX];
    int          retire_rc[HOOK_MAX];
} hooks_t;

static hooks_t  hooks;


/* "hold" requests: the runtime thread waits in the hook for the test */
static pthread_mutex_t  hold_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t   hold_cond = PTHREAD_COND_INITIALIZER;
static int              hold_in;         /* threads inside; locks: hold_mtx */
static int              hold_release;    /* locks: hold_mtx */
static void            *hold_tq;         /* locks: hold_mtx */


UNIT_EXPORT void unit_rt_retire_hook(const char *rt, void *tq, int rc);
UNIT_EXPORT void unit_rt_hold_hook(const char *rt, void *tq);


/* thread: event loop, inside libffi_init(), where hotffi_state() is valid */
UNIT_EXPORT void
unit_rt_init_hook(const char *rt, char *cfg, void *tq)
{
    int          i, len;
    const char  *state;

    i = atomic_fetch_add(&hooks.inits, 1);

    if (i >= HOOK_MAX) {
        return;
    }

    hooks.init_tq[i] = tq;
    (void) snprintf(hooks.init_cfg[i], sizeof(hooks.init_cfg[i]), "%s",
                    cfg ? cfg : "(nil)");

    state = hotffi_state(tq, &len);
    hooks.init_state_len[i] = state ? len : -1;

    if (state) {
        (void) snprintf(hooks.init_state[i], sizeof(hooks.init_state[i]),
                        "%.*s", len, state);
    }
}


/* thread: reaper; read after the REAPED task, ordered by the hub's mutex */
UNIT_EXPORT void
unit_rt_fini_hook(const char *rt, void *tq)
{
    int  i;

    i = atomic_fetch_add(&hooks.finis, 1);

    if (i < HOOK_MAX) {
        hooks.fini_tq[i] = tq;
        (void) snprintf(hooks.fini_rt[i], sizeof(hooks.fini_rt[i]), "%s", rt);
    }
}


/* thread: reaper, as above */
UNIT_EXPORT void
unit_rt_retire_hook(const char *rt, void *tq, int rc)
{
    int  i;

    i = atomic_fetch_add(&hooks.retires, 1);

    if (i < HOOK_MAX) {
        hooks.retire_tq[i] = tq;
        hooks.retire_rc[i] = rc;
    }
}


/* thread: runtime */
UNIT_EXPORT void
unit_rt_hold_hook(const char *rt, void *tq)
{
    (void) pthread_mutex_lock(&hold_mtx);

    hold_in++;
    hold_tq = tq;
    (void) pthread_cond_broadcast(&hold_cond);

    while (!hold_release) {
        (void) pthread_cond_wait(&hold_cond, &hold_mtx);
    }

    hold_in--;
    (void) pthread_mutex_unlock(&hold_mtx);
}


/* Waits until n runtime threads hold a task; returns the last one's tq. */
static void *
wait_held(int n)
{
    int              rc;
    void            *tq;
    struct timespec  ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += UNIT_WAIT_MS / 1000;

    (void) pthread_mutex_lock(&hold_mtx);

    rc = 0;

    while (hold_in != n && rc == 0) {
        rc = pthread_cond_timedwait(&hold_cond, &hold_mtx, &ts);
    }

    tq = hold_tq;
    (void) pthread_mutex_unlock(&hold_mtx);

    if (rc != 0) {
        fail_msg("%d threads hold a task, expected %d", hold_in, n);
    }

    return tq;
}


static void
let_go(void)
{
    (void) pthread_mutex_lock(&hold_mtx);
    hold_release = 1;
    (void) pthread_cond_broadcast(&hold_cond);
    (void) pthread_mutex_unlock(&hold_mtx);
}


/* ---- fixture */

typedef struct {
    hotffi_hub_t  *hub;
    int            threads;
    char           err[1024];
    char           count[PATH_MAX];     /* librt_count.so */
    char           echo[PATH_MAX];
} fixture_t;


static int
setup(void **state)
{
    fixture_t  *f;

    f = calloc(1, sizeof(fixture_t));
    assert_non_null(f);

    memset(&hooks, 0, sizeof(hooks));

    (void) pthread_mutex_lock(&hold_mtx);
    hold_in = 0;
    hold_release = 0;
    hold_tq = NULL;
    (void) pthread_mutex_unlock(&hold_mtx);

    (void) unit_lib(f->count, sizeof(f->count), "rt_count");
    (void) unit_lib(f->echo, sizeof(f->echo), "rt_echo");

    f->threads = unit_threads();
    f->hub = unit_hub_create();

    *state = f;
    return 0;
}


static int
teardown(void **state)
{
    fixture_t  *f = *state;

    /* a failed test may have left a thread holding */
    let_go();

    assert_int_equal(f->hub->tasks.live, 0);

    /* no runtime or reaper thread may touch the hub once it is gone */
    unit_wait_threads(f->threads);
    hotffi_hub_destroy(f->hub);

    free(f);
    return 0;
}


/* ---- helpers */

static hotffi_runtime_t *
load(fixture_t *f, const char *lib, const char *cfg, int unpin)
{
    hotffi_runtime_t       *rt;
    hotffi_runtime_opts_t   opts;

    memset(&opts, 0, sizeof(opts));
    opts.unpin = unpin;

    rt = unit_load(f->hub, lib, cfg, cfg ? strlen(cfg) : 0, &opts,
                             NULL, f->err, sizeof(f->err));
    if (rt == NULL) {
        fail_msg("load %s: %s", lib, f->err);
    }

    return rt;
}


/* keep_cfg when cfg is NULL: a reload that changes nothing but the code */
static int
reload(fixture_t *f, hotffi_runtime_t *rt, const char *lib, const char *cfg,
    int handover, unit_waiter_t *w)
{
    f->err[0] = '\0';

    return hotffi_runtime_reload(rt, lib, cfg, cfg ? strlen(cfg) : 0,
                                 cfg == NULL, handover, w, f->err,
                                 sizeof(f->err));
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


/* Checks a done task's answer (rc 0) and finishes it. */
static void
expect(hotffi_task_t *t, const char *want)
{
    size_t       len;
    const char  *rsp;

    assert_int_equal(hotffi_call_result(t, &rsp, &len), 0);

    if (len != strlen(want) || memcmp(rsp, want, len) != 0) {
        fail_msg("answer \"%.*s\", expected \"%s\"", (int) len, rsp, want);
    }

    hotffi_call_finish(t);
}


static int
woken(void *data)
{
    return ((unit_waiter_t *) data)->woken != 0;
}


/* A call from post to finish: its answer must be want. */
static void
call(fixture_t *f, hotffi_runtime_t *rt, const char *req, const char *want)
{
    unit_waiter_t   w = { 0, 0 };
    hotffi_task_t  *t;

    t = post(f, rt, req, &w);
    unit_drain_until(f->hub, woken, &w);
    expect(t, want);
    assert_int_equal(w.released, 1);
}


/*
 * n calls in turn, which rt_count must answer with the counts from, from+1
 * and on: "<tag>:<count>", or the bare count when tag is NULL.
 */
static void
calls(fixture_t *f, hotffi_runtime_t *rt, const char *tag, int from, int n)
{
    int   i;
    char  req[32], want[64];

    for (i = from; i < from + n; i++) {
        (void) snprintf(req, sizeof(req), "call %d", i);

        if (tag) {
            (void) snprintf(want, sizeof(want), "%s:%d", tag, i);

        } else {
            (void) snprintf(want, sizeof(want), "%d", i);
        }

        call(f, rt, req, want);
    }
}


/* A reload of the same library, which must go on in the background. */
static void
reload_begin(fixture_t *f, hotffi_runtime_t *rt, const char *cfg,
    int handover, unit_waiter_t *w)
{
    assert_int_equal(reload(f, rt, NULL, cfg, handover, w), HOTFFI_AGAIN);
}


/* The same, waited out; w is fresh. */
static void
reload_wait(fixture_t *f, hotffi_runtime_t *rt, const char *cfg,
    int handover, unit_waiter_t *w)
{
    reload_begin(f, rt, cfg, handover, w);
    unit_drain_until(f->hub, woken, w);
}


/* A test's end: the reload's waiter forgotten, the runtime retired. */
static void
release_and_close(fixture_t *f, hotffi_runtime_t *rt, unit_waiter_t *w)
{
    hotffi_runtime_reload_release(rt, w);
    unit_close(f->hub, rt);
}


static int
reload_ended(void *data)
{
    hotffi_runtime_t  *rt = data;

    return rt->old == NULL;
}


static int
no_reapers(void *data)
{
    hotffi_runtime_t  *rt = data;

    return rt->reapers == 0;
}


/* Runs the event loop for a while: for checks that nothing happens. */
static void
spin(fixture_t *f, int rounds)
{
    int  i;

    for (i = 0; i < rounds; i++) {
        (void) unit_readable(hotffi_hub_fd(f->hub), 10);
        (void) hotffi_hub_drain(f->hub);
    }
}


/* The waiters of n tasks, all woken: every task answered. */
typedef struct {
    unit_waiter_t  *w;
    int             n;
} waiters_t;


static int
all_woken(void *data)
{
    int         i;
    waiters_t  *ws = data;

    for (i = 0; i < ws->n; i++) {
        if (ws->w[i].woken == 0) {
            return 0;
        }
    }

    return 1;
}


static int
none_inflight(void *data)
{
    hotffi_runtime_t  *rt = data;

    return rt->stats.inflight == 0;
}


/*
 * The answers of n done tasks must be "<tag>:<from>" .. "<tag>:<from+n-1>",
 * each once, in any order: several threads answer.  Finishes them.
 */
static void
expect_counts(hotffi_task_t **t, int n, const char *tag, unsigned long from)
{
    int            i;
    char           buf[64];
    size_t         len;
    uint64_t       seen;
    const char    *rsp;
    unsigned long  v;

    assert_true(n <= 64);
    seen = 0;

    for (i = 0; i < n; i++) {
        assert_int_equal(hotffi_call_result(t[i], &rsp, &len), 0);
        assert_true(len < sizeof(buf));
        memcpy(buf, rsp, len);
        buf[len] = '\0';

        if (strncmp(buf, tag, strlen(tag)) != 0 || buf[strlen(tag)] != ':') {
            fail_msg("answer \"%s\" is not from version \"%s\"", buf, tag);
        }

        v = strtoul(buf + strlen(tag) + 1, NULL, 10);

        if (v < from || v >= from + n || (seen & (1ULL << (v - from)))) {
            fail_msg("answer \"%s\": a count out of %lu..%lu or twice", buf,
                     from, from + n - 1);
        }

        seen |= 1ULL << (v - from);
        hotffi_call_finish(t[i]);
    }
}


/* ---- state hand-over */

/*
 * The new version starts from the count the old one handed back: the
 * count goes on, libffi_retire() ran on version 1's port and libffi_fini()
 * did not (retire replaces it), and the waiter is woken once.
 */
static void
test_handover(void **state)
{
    fixture_t         *f = *state;
    void              *tq1, *tq2;
    unit_waiter_t      w = { 0, 0 };
    hotffi_runtime_t  *rt;

    rt = load(f, f->count, "threads=2", 1);
    tq1 = &rt->current->port;
    assert_int_equal(hotffi_runtime_version(rt), 1);

    calls(f, rt, NULL, 1, 3);

    reload_begin(f, rt, NULL, 1, &w);

    /* nothing serves until the old version has retired */
    assert_int_equal(hotffi_runtime_version(rt), 0);
    assert_int_equal(rt->stats.reloads, 0);
    assert_int_equal(w.woken, 0);

    unit_drain_until(f->hub, woken, &w);

    assert_int_equal(w.woken, 1);
    assert_int_equal(w.released, 0);
    assert_int_equal(rt->stats.reloads, 1);
    assert_int_equal(rt->stats.reload_failures, 0);
    assert_int_equal(hotffi_runtime_version(rt), 2);
    assert_null(rt->old);
    assert_null(rt->next_version);

    assert_true(rt->last_reload.ok);
    assert_int_equal(rt->last_reload.from, 1);
    assert_int_equal(rt->last_reload.to, 2);
    assert_string_equal(rt->last_reload.error, "");
    assert_true(rt->last_reload.seconds >= 0);
    assert_true(rt->last_reload.started > 0);

    tq2 = &rt->current->port;
    assert_true(tq2 != tq1);

    assert_int_equal(atomic_load(&hooks.retires), 1);
    assert_ptr_equal(hooks.retire_tq[0], tq1);
    assert_int_equal(hooks.retire_rc[0], 0);
    assert_int_equal(atomic_load(&hooks.finis), 0);

    assert_int_equal(atomic_load(&hooks.inits), 2);
    assert_int_equal(hooks.init_state_len[0], -1);
    assert_ptr_equal(hooks.init_tq[1], tq2);
    assert_string_equal(hooks.init_cfg[1], "threads=2");
    assert_string_equal(hooks.init_state[1], "3");

    /* version 1's threads and its reaper are joined: two threads, v2's
     * (a joined thread leaves the kernel's list a moment after its join
     * returns: unit_wait_threads()) */
    unit_wait_threads(f->threads + 2);

    calls(f, rt, NULL, 4, 2);

    hotffi_runtime_reload_release(rt, &w);
    assert_int_equal(w.released, 1);

    /* unload: no hand-over asked, so the last version gets libffi_fini() */
    unit_close(f->hub, rt);
    assert_int_equal(atomic_load(&hooks.finis), 1);
    assert_ptr_equal(hooks.fini_tq[0], tq2);
    assert_int_equal(atomic_load(&hooks.retires), 1);
    assert_true(hotffi_list_empty(&f->hub->runtimes));
    assert_int_equal(w.released, 1);
    assert_int_equal(w.woken, 1);
}


/* Without hand-over the old version gets libffi_fini(): no state. */
static void
test_no_handover(void **state)
{
    fixture_t         *f = *state;
    void              *tq1;
    unit_waiter_t      w = { 0, 0 };
    hotffi_runtime_t  *rt;

    rt = load(f, f->count, NULL, 1);
    tq1 = &rt->current->port;

    calls(f, rt, NULL, 1, 2);

    reload_wait(f, rt, NULL, 0, &w);

    assert_true(rt->last_reload.ok);
    assert_int_equal(atomic_load(&hooks.retires), 0);
    assert_int_equal(atomic_load(&hooks.finis), 1);
    assert_ptr_equal(hooks.fini_tq[0], tq1);
    assert_int_equal(hooks.init_state_len[1], -1);

    call(f, rt, "c", "1");

    release_and_close(f, rt, &w);
}


/*
 * Calls posted after the reload began wait in the queue -- the old version
 * stopped polling, the new one starts only on the event loop -- and are
 * answered by the new version, counting on from the state; one of them
 * given up meanwhile is skipped, not answered.
 */
static void
test_calls_during_reload(void **state)
{
    fixture_t         *f = *state;
    int                i, n;
    char               req[16];
    waiters_t          ws;
    unit_waiter_t      w = { 0, 0 }, cw[10], gone = { 0, 0 };
    hotffi_task_t     *t[10], *abandoned = NULL;
    hotffi_runtime_t  *rt;

    memset(cw, 0, sizeof(cw));

    rt = load(f, f->count, "threads=2,tag=v1", 1);

    calls(f, rt, "v1", 1, 2);

    reload_begin(f, rt, "threads=3,tag=v2", 1, &w);

    /* nine calls and, fourth in the queue, one whose caller gives up */
    for (i = 0, n = 0; i < 10; i++) {
        (void) snprintf(req, sizeof(req), "req %d", i);

        if (i != 3) {
            t[n] = post(f, rt, req, &cw[n]);
            n++;
            continue;
        }

        abandoned = post(f, rt, req, &gone);
        assert_non_null(abandoned);
    }

    /* its caller gives up: the waiter goes, and the task leaves the queue */
    hotffi_call_abandon(abandoned);
    assert_int_equal(gone.released, 1);

    /* no drain has run, so nothing can have started to take them */
    assert_int_equal(hotffi_queue_depth(rt->queue), 9);
    assert_int_equal(rt->stats.calls, 12);
    assert_int_equal(rt->stats.inflight, 9);
    assert_null(rt->current);

    unit_drain_until(f->hub, woken, &w);
    assert_int_equal(hotffi_runtime_version(rt), 2);

    ws.w = cw;
    ws.n = n;
    unit_drain_until(f->hub, all_woken, &ws);
    unit_drain_until(f->hub, none_inflight, rt);

    /* version 2 answered them all, from the count version 1 left */
    expect_counts(t, n, "v2", 3);
    assert_int_equal(gone.woken, 0);
    assert_int_equal(gone.released, 1);
    assert_int_equal(rt->stats.abandoned, 1);
    assert_int_equal(rt->stats.ok, 2 + 9);
    assert_int_equal(hotffi_queue_depth(rt->queue), 0);

    call(f, rt, "c", "v2:12");

    release_and_close(f, rt, &w);
}


/*
 * Version 1 (two threads of rt_count) holds task th, a reload to version 2
 * has begun, and task tx waits in the queue for whichever version serves.
 */
typedef struct {
    hotffi_runtime_t  *rt;
    void              *tq1;
    unit_waiter_t      w;     /* the reload's */
    unit_waiter_t      wh;
    unit_waiter_t      wx;
    hotffi_task_t     *th;
    hotffi_task_t     *tx;
} held_reload_t;


static void
held_reload_begin(fixture_t *f, held_reload_t *h)
{
    memset(h, 0, sizeof(held_reload_t));

    h->rt = load(f, f->count, "threads=2,tag=v1", 1);
    h->tq1 = &h->rt->current->port;

    call(f, h->rt, "a", "v1:1");

    h->th = post(f, h->rt, "hold", &h->wh);
    assert_ptr_equal(wait_held(1), h->tq1);

    reload_begin(f, h->rt, "threads=1,tag=v2", 1, &h->w);
    h->tx = post(f, h->rt, "x", &h->wx);
}


/*
 * A task version 1 already took when the reload began: the reload waits
 * for its answer (libffi_retire() joins the thread that holds it), version
 * 1 answers it, and only then does version 2 start, with a count that
 * includes it.
 */
static void
test_held_task(void **state)
{
    fixture_t      *f = *state;
    held_reload_t   h;

    held_reload_begin(f, &h);

    /* held: however long the event loop runs, the reload cannot end */
    spin(f, 20);

    assert_int_equal(h.w.woken, 0);
    assert_non_null(h.rt->old);
    assert_int_equal(hotffi_runtime_version(h.rt), 0);
    assert_int_equal(atomic_load(&hooks.retires), 0);
    assert_int_equal(atomic_load(&hooks.inits), 1);
    assert_int_equal(h.wh.woken, 0);
    assert_int_equal(h.wx.woken, 0);
    assert_int_equal(hotffi_queue_depth(h.rt->queue), 1);

    let_go();
    unit_drain_until(f->hub, woken, &h.w);

    /* the held answer came back before the REAPED that ended the reload */
    assert_int_equal(h.wh.woken, 1);
    expect(h.th, "v1:2");

    unit_drain_until(f->hub, woken, &h.wx);
    expect(h.tx, "v2:3");

    assert_int_equal(atomic_load(&hooks.retires), 1);
    assert_ptr_equal(hooks.retire_tq[0], h.tq1);
    assert_string_equal(hooks.init_state[1], "2");

    release_and_close(f, h.rt, &h.w);
}


/*
 * The same held task, but the reload is declared overdue: version 2 starts
 * at once, without state, and serves while version 1 still holds its call;
 * version 1 answers it later and is reaped then.
 */
static void
test_overdue(void **state)
{
    fixture_t      *f = *state;
    held_reload_t   h;

    held_reload_begin(f, &h);

    assert_int_equal(hotffi_runtime_reload_overdue(h.rt), HOTFFI_OK);

    /* version 2's init runs: no reload waits for an old version */
    assert_int_equal(hotffi_runtime_reload_overdue(h.rt), HOTFFI_DECLINED);
    unit_drain_until(f->hub, woken, &h.w);
    assert_int_equal(h.w.woken, 1);
    assert_null(h.rt->old);
    assert_int_equal(hotffi_runtime_version(h.rt), 2);
    assert_int_equal(h.rt->last_reload.ok, 1);
    assert_int_equal(h.rt->last_reload.overdue, 1);
    assert_int_equal(h.rt->reapers, 1);

    /* no reload waits for an old version any more */
    assert_int_equal(hotffi_runtime_reload_overdue(h.rt), HOTFFI_DECLINED);

    /* no state: version 2 counts from 1 while version 1 still holds */
    unit_drain_until(f->hub, woken, &h.wx);
    expect(h.tx, "v2:1");
    assert_int_equal(hooks.init_state_len[1], -1);
    assert_int_equal(h.wh.woken, 0);
    assert_int_equal(atomic_load(&hooks.retires), 0);

    let_go();
    unit_drain_until(f->hub, woken, &h.wh);
    expect(h.th, "v1:2");
    unit_drain_until(f->hub, no_reapers, h.rt);
    assert_int_equal(atomic_load(&hooks.retires), 1);
    assert_ptr_equal(hooks.retire_tq[0], h.tq1);

    call(f, h.rt, "y", "v2:2");

    release_and_close(f, h.rt, &h.w);
}


/* ---- rollback */

/*
 * The new version's libffi_init() fails: a clone of version 1 starts again
 * with the state version 1 handed over, the error says both, and the
 * threads the failed version started are joined by its libffi_fini().
 */
static void
test_rollback_init_fails(void **state)
{
    fixture_t         *f = *state;
    void              *tq1, *tq_failed;
    unit_waiter_t      w = { 0, 0 };
    hotffi_runtime_t  *rt;

    rt = load(f, f->count, "threads=2,tag=v1", 1);
    tq1 = &rt->current->port;

    calls(f, rt, "v1", 1, 2);

    reload_wait(f, rt, "threads=3,fail", 1, &w);

    assert_int_equal(rt->stats.reload_failures, 1);
    assert_int_equal(rt->stats.reloads, 0);
    assert_false(rt->last_reload.ok);
    assert_int_equal(rt->last_reload.from, 1);
    /* the version it tried, while version 1 serves again */
    assert_int_equal(rt->last_reload.to, 2);
    assert_int_equal(hotffi_runtime_version(rt), 1);
    assert_non_null(strstr(rt->last_reload.error, "libffi_init()"));
    assert_non_null(strstr(rt->last_reload.error, "&threads=3,fail\""));
    assert_non_null(strstr(rt->last_reload.error, "failed: 5: told to fail"));
    assert_non_null(strstr(rt->last_reload.error,
                           "; version 1 serves again"));
    /* one line, the audit trail's, says so */
    assert_int_equal(unit_host_state.audits, 2);
    assert_non_null(strstr(unit_host_state.audit, "audit: reload failed "));
    assert_non_null(strstr(unit_host_state.audit, " version=1->2 "));
    assert_non_null(strstr(unit_host_state.audit, "told to fail"));

    /* the clone: version 1 again, on a port of its own */
    assert_int_equal(hotffi_runtime_version(rt), 1);
    assert_int_equal(rt->versions, 2);
    assert_int_equal(atomic_load(&hooks.inits), 3);
    tq_failed = hooks.init_tq[1];
    assert_string_equal(hooks.init_cfg[1], "threads=3,fail");
    assert_string_equal(hooks.init_state[1], "2");
    assert_string_equal(hooks.init_cfg[2], "threads=2,tag=v1");
    assert_string_equal(hooks.init_state[2], "2");
    assert_ptr_equal(hooks.init_tq[2], &rt->current->port);
    assert_int_equal(atomic_load(&hooks.retires), 1);
    assert_ptr_equal(hooks.retire_tq[0], tq1);

    /* the failed version is reaped on its own: its three threads go */
    unit_drain_until(f->hub, no_reapers, rt);
    assert_int_equal(atomic_load(&hooks.finis), 1);
    assert_ptr_equal(hooks.fini_tq[0], tq_failed);
    unit_wait_threads(f->threads + 2);

    call(f, rt, "c", "v1:3");

    hotffi_runtime_reload_release(rt, &w);
    assert_int_equal(w.released, 1);

    unit_close(f->hub, rt);
    assert_int_equal(atomic_load(&hooks.finis), 2);
}


/*
 * libffi_retire() fails: the new version never starts, version 1 starts
 * again without state (the state the failing retire handed back anyway is
 * discarded), and the error names the rc.
 */
static void
test_rollback_retire_fails(void **state)
{
    fixture_t         *f = *state;
    unit_waiter_t      w = { 0, 0 };
    hotffi_runtime_t  *rt;

    rt = load(f, f->count, "threads=2,retire=fail,tag=v1", 1);

    calls(f, rt, "v1", 1, 3);

    reload_wait(f, rt, NULL, 1, &w);

    assert_false(rt->last_reload.ok);
    assert_string_equal(rt->last_reload.error, "libffi_retire() of version "
                        "1 failed: 7; version 1 serves again");
    assert_int_equal(rt->stats.reload_failures, 1);
    assert_int_equal(rt->stats.reloads, 0);
    assert_int_equal(hotffi_runtime_version(rt), 1);
    assert_int_equal(rt->last_reload.to, 2);

    assert_int_equal(atomic_load(&hooks.retires), 1);
    assert_int_equal(hooks.retire_rc[0], 7);

    /* version 2 was never started; the clone started without state */
    assert_int_equal(atomic_load(&hooks.inits), 2);
    assert_string_equal(hooks.init_cfg[1], "threads=2,retire=fail,tag=v1");
    assert_int_equal(hooks.init_state_len[1], -1);
    unit_wait_threads(f->threads + 2);

    call(f, rt, "d", "v1:1");

    release_and_close(f, rt, &w);
    assert_int_equal(atomic_load(&hooks.finis), 1);
}


/* ---- runtimes that cannot retire */

/*
 * rt_nofini has neither libffi_fini() nor libffi_retire(): nothing to wait
 * for, so the reload ends at once (the waiter is not taken: the caller
 * keeps it), its old thread ends at the stop on its own, and version 1
 * is kept on the runtime's list.
 */
static void
test_no_fini_reload(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX];
    unit_waiter_t      w = { 0, 0 };
    hotffi_version_t  *v1;
    hotffi_runtime_t  *rt;

    /* pinned: an unpinned one's last version would be proved at unload */
    rt = load(f, unit_lib(path, sizeof(path), "rt_nofini"), NULL, 0);
    call(f, rt, "hello", "hello");
    assert_true(hotffi_list_empty(&rt->kept));
    v1 = rt->current;

    /* nothing to reap: only version 2's init is waited for */
    assert_int_equal(reload(f, rt, NULL, NULL, 1, &w), HOTFFI_AGAIN);
    unit_drain_until(f->hub, woken, &w);
    assert_int_equal(w.released, 0);
    hotffi_runtime_reload_release(rt, &w);
    assert_int_equal(w.released, 1);
    assert_int_equal(rt->stats.reloads, 1);
    assert_true(rt->last_reload.ok);
    assert_int_equal(rt->last_reload.from, 1);
    assert_int_equal(rt->last_reload.to, 2);
    assert_int_equal(hotffi_runtime_version(rt), 2);
    assert_null(rt->old);
    assert_false(hotffi_list_empty(&rt->kept));
    assert_int_equal(hooks.init_state_len[1], -1);

    call(f, rt, "again", "again");

    /* version 1's detached thread saw the stop: one thread, version 2's */
    unit_wait_threads(f->threads + 1);
    call(f, rt, "more", "more");

    /*
     * Version 1 stays allocated for threads that might still poll its
     * port: kept on the runtime's list, which hotffi_hub_destroy() frees
     * (LeakSanitizer would report it otherwise).
     */
    assert_true(v1 != rt->current);
    assert_ptr_equal(hotffi_list_first(&rt->kept), &v1->kept_link);
    assert_true(v1->kept);

    hotffi_runtime_unload(rt);
    unit_wait_threads(f->threads);
    assert_false(rt->closed);

    /*
     * Through the queue's mutex, the last thing the detached thread took:
     * the teardown frees version 2 after its thread's last poll.
     */
    assert_int_equal(hotffi_queue_depth(rt->queue), 0);
    hotffi_runtime_unref(rt);
}


/* ---- refusals */

static void
test_refusals(void **state)
{
    fixture_t         *f = *state;
    char               path[PATH_MAX];
    unit_waiter_t      w = { 0, 0 }, w1 = { 0, 0 };
    hotffi_runtime_t  *rt;

    rt = load(f, f->count, NULL, 1);
    call(f, rt, "a", "1");

    /* a missing library: an error, and nothing changed */
    assert_int_equal(reload(f, rt, unit_lib(path, sizeof(path),
                                            "rt_missing"), NULL, 1, &w),
                     HOTFFI_ERROR);
    assert_non_null(strstr(f->err, "cannot open shared object file"));

    /* a library without libffi_init(): the same */
    assert_int_equal(reload(f, rt, unit_lib(path, sizeof(path),
                                            "rt_noinit"), NULL, 1, &w),
                     HOTFFI_ERROR);
    assert_non_null(strstr(f->err, "libffi_init"));

    assert_int_equal(hotffi_runtime_version(rt), 1);
    assert_int_equal(rt->versions, 1);
    assert_null(rt->old);
    assert_int_equal(rt->stats.reloads + rt->stats.reload_failures, 0);
    assert_int_equal(atomic_load(&hooks.retires), 0);
    assert_int_equal(w.woken + w.released, 0);
    assert_string_equal(rt->current->lib_name, f->count);
    call(f, rt, "b", "2");

    /* one reload at a time: the second is refused, the first goes on */
    assert_int_equal(reload(f, rt, NULL, NULL, 1, &w1), HOTFFI_AGAIN);
    assert_int_equal(reload(f, rt, NULL, NULL, 1, &w), HOTFFI_BUSY);
    assert_non_null(strstr(f->err, "in progress"));
    assert_int_equal(rt->versions, 2);
    assert_int_equal(w.woken + w.released, 0);

    unit_drain_until(f->hub, woken, &w1);
    assert_int_equal(hotffi_runtime_version(rt), 2);
    assert_int_equal(rt->stats.reloads, 1);
    call(f, rt, "c", "3");

    hotffi_runtime_reload_release(rt, &w1);

    /* unloaded, retiring or retired: refused */
    hotffi_runtime_unload(rt);
    assert_int_equal(reload(f, rt, NULL, NULL, 1, &w), HOTFFI_DECLINED);
    assert_non_null(strstr(f->err, "is unloaded"));

    unit_drain_until(f->hub, unit_is_closed, rt);
    assert_int_equal(reload(f, rt, NULL, NULL, 1, &w), HOTFFI_DECLINED);
    assert_int_equal(rt->versions, 2);
    assert_int_equal(w.woken + w.released, 0);

    hotffi_runtime_unref(rt);
    assert_true(hotffi_list_empty(&f->hub->runtimes));
    assert_int_equal(w1.released, 1);
}


/* ---- unload during a reload */

/*
 * The reload goes on: version 2 starts, answers what was queued before the
 * unload, and is the last version; then the runtime retires, and the
 * waiter goes with the runtime.
 */
static void
test_unload_during_reload(void **state)
{
    fixture_t         *f = *state;
    int                i;
    char               err[256];
    waiters_t          ws;
    unit_waiter_t      w = { 0, 0 }, cw[5], late = { 0, 0 };
    hotffi_task_t     *t[5];
    hotffi_runtime_t  *rt;

    memset(cw, 0, sizeof(cw));

    rt = load(f, f->count, "threads=2,tag=v1", 1);
    call(f, rt, "a", "v1:1");

    reload_begin(f, rt, "threads=2,tag=v2", 1, &w);

    for (i = 0; i < 5; i++) {
        t[i] = post(f, rt, "q", &cw[i]);
    }

    hotffi_runtime_unload(rt);
    assert_non_null(rt->old);

    assert_null(hotffi_call_post(rt, NULL, "late", 4, &late, NULL, err,
                                 sizeof(err)));
    assert_non_null(strstr(err, "unloaded"));
    assert_int_equal(late.woken + late.released, 0);

    unit_drain_until(f->hub, unit_is_closed, rt);

    assert_int_equal(w.woken, 1);
    assert_true(rt->last_reload.ok);
    assert_int_equal(rt->last_reload.to, 2);
    assert_int_equal(rt->stats.reloads, 1);
    assert_null(rt->queue);
    assert_null(rt->current);

    /* version 1 retired with hand-over, version 2 was the final one */
    assert_int_equal(atomic_load(&hooks.retires), 1);
    assert_int_equal(atomic_load(&hooks.finis), 1);
    assert_ptr_equal(hooks.fini_tq[0], hooks.init_tq[1]);

    ws.w = cw;
    ws.n = 5;
    assert_true(all_woken(&ws));
    expect_counts(t, 5, "v2", 2);

    /* the caller's reference is the last: the waiter goes with it */
    assert_int_equal(w.released, 0);
    hotffi_runtime_unref(rt);
    assert_true(hotffi_list_empty(&f->hub->runtimes));
    assert_int_equal(w.released, 1);
}


/* The same while the new version fails: the clone is the final version. */
static void
test_unload_during_failing_reload(void **state)
{
    fixture_t         *f = *state;
    unit_waiter_t      w = { 0, 0 };
    hotffi_runtime_t  *rt;

    rt = load(f, f->count, "threads=2", 1);
    call(f, rt, "a", "1");

    reload_begin(f, rt, "fail", 1, &w);
    hotffi_runtime_unload(rt);

    unit_drain_until(f->hub, unit_is_closed, rt);

    assert_int_equal(w.woken, 1);
    assert_false(rt->last_reload.ok);
    assert_non_null(strstr(rt->last_reload.error, "serves again"));
    assert_int_equal(atomic_load(&hooks.inits), 3);
    assert_int_equal(atomic_load(&hooks.retires), 1);

    /* the failed version and the clone both got libffi_fini() */
    assert_int_equal(atomic_load(&hooks.finis), 2);

    hotffi_runtime_unref(rt);
    assert_true(hotffi_list_empty(&f->hub->runtimes));
    assert_int_equal(w.released, 1);
}


/* ---- a library replaced on disk */

/* Copies src to dir/name through a temporary file renamed over it. */
static void
replace_file(const char *src, const char *dir, const char *name,
    struct stat *st)
{
    int      in, out;
    char     tmp[PATH_MAX], dst[PATH_MAX], buf[65536];
    ssize_t  n;

    (void) snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
    (void) snprintf(dst, sizeof(dst), "%s/%s", dir, name);

    in = open(src, O_RDONLY | O_CLOEXEC);
    assert_true(in != -1);
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    assert_true(out != -1);

    while ((n = read(in, buf, sizeof(buf))) > 0) {
        assert_int_equal(write(out, buf, n), n);
    }

    assert_int_equal(n, 0);
    (void) close(in);
    assert_int_equal(close(out), 0);

    /* a new inode at the same path, as an install or a deploy does */
    assert_int_equal(rename(tmp, dst), 0);
    assert_int_equal(stat(dst, st), 0);
}


/* 1 when the file st describes is mapped into this process */
static int
file_mapped(const struct stat *st)
{
    int             found;
    char           *line;
    FILE           *maps;
    size_t          size;
    unsigned long   maj, min, ino;

    maps = fopen("/proc/self/maps", "re");
    assert_non_null(maps);

    found = 0;
    line = NULL;
    size = 0;

    while (!found && getline(&line, &size, maps) != -1) {
        found = sscanf(line, "%*x-%*x %*s %*s %lx:%lx %lu", &maj, &min,
                       &ino) == 3
                && maj == major(st->st_dev) && min == minor(st->st_dev)
                && ino == st->st_ino;
    }

    free(line);
    (void) fclose(maps);

    return found;
}


/*
 * With unpin, a reload by the same path maps the file there now (rt_echo
 * renamed over rt_count), and the old file is unmapped once its version
 * retired; and back again (rt_count over rt_echo, which cannot hand over
 * state).  Then a broken build (rt_fail) at the path: the rollback must run
 * the old mapping, not the file on disk.
 */
static void
test_replaced_file(void **state)
{
    fixture_t         *f = *state;
    char               dir[] = "/tmp/hotffi-unit-XXXXXX";
    char               path[PATH_MAX], lib[PATH_MAX];
    struct stat        st_count, st_echo, st_count2, st_fail;
    unit_waiter_t      w = { 0, 0 };
    hotffi_runtime_t  *rt;

    assert_non_null(mkdtemp(dir));
    (void) snprintf(path, sizeof(path), "%s/libswap.so", dir);

    replace_file(f->count, dir, "libswap.so", &st_count);
    rt = load(f, path, "threads=1", 1);
    calls(f, rt, NULL, 1, 2);
    assert_true(file_mapped(&st_count));

    /* a new build at the path */
    replace_file(f->echo, dir, "libswap.so", &st_echo);
    assert_false(file_mapped(&st_echo));

    assert_int_equal(reload(f, rt, path, NULL, 1, &w), HOTFFI_AGAIN);
    assert_true(file_mapped(&st_echo));
    unit_drain_until(f->hub, woken, &w);

    assert_true(rt->last_reload.ok);
    assert_string_equal(rt->current->lib_name, path);
    call(f, rt, "ping", "ping");

    assert_false(file_mapped(&st_count));
    assert_true(file_mapped(&st_echo));
    assert_int_equal(unit_host_state.logs, 0);

    /* and back: rt_echo has no libffi_retire(), so the count starts anew */
    replace_file(f->count, dir, "libswap.so", &st_count2);
    assert_int_equal(reload(f, rt, path, NULL, 1, &w), HOTFFI_AGAIN);
    unit_drain_until(f->hub, reload_ended, rt);

    assert_true(rt->last_reload.ok);
    assert_int_equal(hotffi_runtime_version(rt), 3);
    calls(f, rt, NULL, 1, 2);

    assert_false(file_mapped(&st_echo));
    assert_true(file_mapped(&st_count2));
    assert_int_equal(unit_host_state.logs, 0);

    /* a build whose init fails: the old code, still mapped, serves again */
    replace_file(unit_lib(lib, sizeof(lib), "rt_fail"), dir, "libswap.so",
                 &st_fail);
    assert_int_equal(reload(f, rt, path, NULL, 1, &w), HOTFFI_AGAIN);
    unit_drain_until(f->hub, reload_ended, rt);

    assert_false(rt->last_reload.ok);
    assert_non_null(strstr(rt->last_reload.error, "failed: 1; version 3 "
                           "serves again"));
    assert_int_equal(hotffi_runtime_version(rt), 3);
    call(f, rt, "e", "3");

    unit_drain_until(f->hub, no_reapers, rt);
    assert_false(file_mapped(&st_fail));
    assert_true(file_mapped(&st_count2));

    release_and_close(f, rt, &w);
    assert_false(file_mapped(&st_count2));

    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}


/* ---- the reload's waiter */

/*
 * Released exactly once whatever happens: by the caller's forget, before
 * or after the end (a second forget does nothing); by the next reload when
 * its caller never forgot it; with the runtime when nobody did.
 */
static void
test_waiter_released_once(void **state)
{
    fixture_t         *f = *state;
    unit_waiter_t      w1 = { 0, 0 }, w2 = { 0, 0 }, w3 = { 0, 0 };
    unit_waiter_t      w4 = { 0, 0 };
    hotffi_runtime_t  *rt;

    rt = load(f, f->count, NULL, 1);

    /* forgotten before the end: released now, never woken */
    assert_int_equal(reload(f, rt, NULL, NULL, 1, &w1), HOTFFI_AGAIN);
    hotffi_runtime_reload_release(rt, &w1);
    assert_int_equal(w1.released, 1);
    assert_int_equal(w1.woken, 0);

    unit_drain_until(f->hub, reload_ended, rt);
    assert_true(rt->last_reload.ok);
    hotffi_runtime_reload_release(rt, &w1);
    assert_int_equal(w1.released, 1);
    assert_int_equal(w1.woken, 0);

    /* woken, never forgotten: the next reload releases it */
    assert_int_equal(reload(f, rt, NULL, NULL, 1, &w2), HOTFFI_AGAIN);
    unit_drain_until(f->hub, woken, &w2);
    assert_int_equal(w2.released, 0);

    assert_int_equal(reload(f, rt, NULL, NULL, 1, &w3), HOTFFI_AGAIN);
    assert_int_equal(w2.released, 1);
    assert_int_equal(w3.woken + w3.released, 0);

    unit_drain_until(f->hub, woken, &w3);
    hotffi_runtime_reload_release(rt, &w3);
    assert_int_equal(w3.released, 1);
    assert_int_equal(w3.woken, 1);

    /* woken, never forgotten, and the runtime goes: it goes with it */
    assert_int_equal(reload(f, rt, NULL, NULL, 1, &w4), HOTFFI_AGAIN);
    unit_drain_until(f->hub, woken, &w4);
    assert_int_equal(hotffi_runtime_version(rt), 5);
    unit_close(f->hub, rt);
    assert_true(hotffi_list_empty(&f->hub->runtimes));

    assert_int_equal(w1.woken, 0);
    assert_int_equal(w1.released, 1);
    assert_int_equal(w2.woken, 1);
    assert_int_equal(w2.released, 1);
    assert_int_equal(w3.woken, 1);
    assert_int_equal(w3.released, 1);
    assert_int_equal(w4.woken, 1);
    assert_int_equal(w4.released, 1);

    call(f, load(f, f->count, NULL, 1), "x", "1");
    unit_close(f->hub, unit_first_runtime(f->hub));
}


/* ---- bugs found by these tests, fixed */


static int
one_reaper(void *data)
{
    hotffi_runtime_t  *rt = data;

    return rt->reapers == 1;
}


/*
 * Caller A's reload ended and woke A, but A has not resumed (and called
 * forget) before caller B starts the next reload, as two admin requests in
 * one nginx worker can.  A's forget must not release B's waiter: B must
 * still be woken when its reload ends.
 */
static void
test_fixed_stale_forget_releases_next_waiter(void **state)
{
    fixture_t         *f = *state;
    unit_waiter_t      a = { 0, 0 }, b = { 0, 0 };
    hotffi_runtime_t  *rt;

    rt = load(f, f->count, NULL, 1);

    assert_int_equal(reload(f, rt, NULL, NULL, 1, &a), HOTFFI_AGAIN);
    unit_drain_until(f->hub, woken, &a);

    assert_int_equal(reload(f, rt, NULL, NULL, 1, &b), HOTFFI_AGAIN);
    assert_int_equal(a.released, 1);

    /* A resumes now and forgets, as lua/resty/hotffi.lua's reload() does */
    hotffi_runtime_reload_release(rt, &a);
    assert_int_equal(a.released, 1);

    unit_drain_until(f->hub, reload_ended, rt);
    hotffi_runtime_reload_release(rt, &b);
    unit_close(f->hub, rt);

    /* checked once everything is cleaned up, so that a failure is clean */
    assert_int_equal(a.woken, 1);
    assert_int_equal(b.woken, 1);
    assert_int_equal(b.released, 1);
}


/*
 * A version whose libffi_init() failed is reaped while the next reload
 * runs (no version serves): closing its library, which the other versions
 * still share, must not log that the library "stays mapped".
 */
static void
test_fixed_spurious_stays_mapped_warning(void **state)
{
    fixture_t         *f = *state;
    char               last[512];
    unsigned           logs;
    unit_waiter_t      a = { 0, 0 }, b = { 0, 0 }, wh = { 0, 0 };
    hotffi_task_t     *th;
    hotffi_runtime_t  *rt;

    rt = load(f, f->count, "threads=2", 1);

    assert_int_equal(reload(f, rt, NULL, "fail", 1, &a), HOTFFI_AGAIN);
    unit_drain_until(f->hub, woken, &a);
    assert_int_equal(unit_host_state.logs, 0);
    assert_non_null(strstr(unit_host_state.audit, "audit: reload failed "
                           "runtime=\""));

    /* the clone holds a task, so reload b stays in progress */
    th = post(f, rt, "hold", &wh);
    (void) wait_held(1);
    assert_int_equal(reload(f, rt, NULL, NULL, 1, &b), HOTFFI_AGAIN);

    /* the failed version's REAPED arrives while rt->current is NULL */
    unit_drain_until(f->hub, one_reaper, rt);
    assert_int_equal(atomic_load(&hooks.finis), 1);

    let_go();
    unit_drain_until(f->hub, woken, &b);
    unit_drain_until(f->hub, woken, &wh);
    expect(th, "1");

    logs = unit_host_state.logs;
    (void) snprintf(last, sizeof(last), "%s", unit_host_state.log);

    hotffi_runtime_reload_release(rt, &b);
    unit_close(f->hub, rt);

    /* no line but the audit trail's: no warning that a library stays */
    if (logs != 0) {
        fail_msg("logged: %s", last);
    }
}


/*
 * Calls queued during a reload whose new version fails to start must be
 * answered by the version that serves again, not by the failed one: its
 * threads poll from the moment libffi_init() starts them, and its port is
 * stopped only after libffi_init() returned.  The count shows it: answers
 * from the failed version, and numbers the rollback then gives out again.
 */
static void
test_fixed_failed_version_answers_calls(void **state)
{
    fixture_t         *f = *state;
    int                i, bad;
    size_t             len;
    waiters_t          ws;
    const char        *rsp;
    unit_waiter_t      w = { 0, 0 }, cw[40];
    hotffi_task_t     *t[40];
    hotffi_runtime_t  *rt;

    memset(cw, 0, sizeof(cw));

    rt = load(f, f->count, "tag=v1", 1);
    call(f, rt, "a", "v1:1");

    reload_begin(f, rt, "threads=16,tag=bad,fail", 1, &w);

    for (i = 0; i < 40; i++) {
        t[i] = post(f, rt, "q", &cw[i]);
    }

    unit_drain_until(f->hub, woken, &w);
    assert_false(rt->last_reload.ok);

    ws.w = cw;
    ws.n = 40;
    unit_drain_until(f->hub, all_woken, &ws);
    unit_drain_until(f->hub, no_reapers, rt);

    for (i = 0, bad = 0; i < 40; i++) {
        assert_int_equal(hotffi_call_result(t[i], &rsp, &len), 0);
        bad += len >= 4 && memcmp(rsp, "bad:", 4) == 0;
        hotffi_call_finish(t[i]);
    }

    release_and_close(f, rt, &w);

    if (bad) {
        fail_msg("%d of 40 calls answered by the version that failed", bad);
    }
}


#define RELOAD_TEST(name)                                                     \
    cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
    const struct CMUnitTest  tests[] = {
        RELOAD_TEST(test_handover),
        RELOAD_TEST(test_no_handover),
        RELOAD_TEST(test_calls_during_reload),
        RELOAD_TEST(test_held_task),
        RELOAD_TEST(test_overdue),
        RELOAD_TEST(test_rollback_init_fails),
        RELOAD_TEST(test_rollback_retire_fails),
        RELOAD_TEST(test_no_fini_reload),
        RELOAD_TEST(test_refusals),
        RELOAD_TEST(test_unload_during_reload),
        RELOAD_TEST(test_unload_during_failing_reload),
        RELOAD_TEST(test_replaced_file),
        RELOAD_TEST(test_waiter_released_once),
        RELOAD_TEST(test_fixed_stale_forget_releases_next_waiter),
        RELOAD_TEST(test_fixed_spurious_stays_mapped_warning),
        RELOAD_TEST(test_fixed_failed_version_answers_calls),
    };

    unit_init();

    return cmocka_run_group_tests_name("reload", tests, NULL, NULL);
}
