/*
 * test_stress.c -- many calls through a real runtime with several threads,
 * this thread being the event loop: random request sizes, callers giving up
 * at random moments (queued, running, answered but not drained, done), whole
 * groups given up, and every answer that is delivered checked byte for byte.
 * Its main target is TSan; under ASan it checks that every task and waiter
 * is freed exactly once.
 *
 * Each call in flight has a slot, which is also its waiter: the host's
 * wake() and release() below check that they come in a legal order.
 *
 * A request is read in place by the runtime, for as long as its task lives,
 * which for a call given up is longer than the slot's waiter.  So request
 * buffers are kept as resty.hotffi keeps Lua strings: by task slot, freed
 * only when that task slot's next call replaces them (see `pins`).  Under
 * TSan, a buffer reused too early shows as a race with the runtime's read.
 * HOTFFI_UNIT_SEED=N replays a run.
 */

#define _GNU_SOURCE

#include "unit_helpers.h"


#define STRESS_CALLS     20000
#define STRESS_SLOTS     256        /* calls in flight at most */
#define STRESS_MAX_LEN   4096
#define STRESS_GROUPS    8
#define STRESS_CFG       "threads=4"


typedef enum {
    SLOT_FREE = 0,
    SLOT_PENDING,       /* posted, not answered */
    SLOT_DONE,          /* woken, waits for this thread to read it */
    SLOT_ENDING,        /* finished or given up after done: release due */
    SLOT_GIVEN_UP       /* given up before the answer: release due */
} slot_state_e;


typedef struct slot_s  slot_t;

struct slot_s {
    slot_state_e     state;
    hotffi_task_t   *task;
    int              group;
    int              woken;
    size_t           len;
    slot_t          *next;           /* free or ready list */
    unsigned char   *req;            /* malloc()'ed, owned by pins */
};


typedef struct {
    slot_t           slots[STRESS_SLOTS];
    slot_t          *free;
    slot_t          *ready;          /* woken by the last drain */
    unsigned char  **pins;           /* task slot -> its request buffer */
    uint32_t         npins;
    hotffi_group_t   groups[STRESS_GROUPS];
    uint64_t         rnd;

    unsigned         posted;
    unsigned         wakes;
    unsigned         releases;
    unsigned         verified;
    unsigned         given_up;       /* before the answer */
    unsigned         given_up_done;  /* after it */
    unsigned         given_up_woken; /* after it, before it was read */
    unsigned         group_ends;
    unsigned         defers;         /* wake-ups the hub deferred */
    int              flush_due;      /* the hub asked for a flush */
    unsigned         errors;
    char             error[256];     /* the first one */
} stress_t;


static stress_t  st;


static uint64_t
rnd(void)
{
    /* xorshift64* */
    st.rnd ^= st.rnd >> 12;
    st.rnd ^= st.rnd << 25;
    st.rnd ^= st.rnd >> 27;
    return st.rnd * 2685821657736338717ULL;
}


/* the host's callbacks report here: an assert would longjmp out of a drain */
static void
stress_error(const char *fmt, ...)
{
    va_list  args;

    if (st.errors++ == 0) {
        va_start(args, fmt);
        (void) vsnprintf(st.error, sizeof(st.error), fmt, args);
        va_end(args);
    }
}


/* ---- the host */

/* thread: event loop */
static void
stress_wake(void *waiter)
{
    slot_t  *s = waiter;

    st.wakes++;

    if (s->state != SLOT_PENDING || s->woken) {
        stress_error("wake of slot %ld in state %d, woken %d",
                     (long) (s - st.slots), s->state, s->woken);
        return;
    }

    s->woken = 1;
    s->state = SLOT_DONE;
    s->next = st.ready;
    st.ready = s;
}


/* thread: event loop.  Flushed where nginx would: after the calls. */
static void
stress_defer(void)
{
    if (st.flush_due) {
        stress_error("defer asked twice before a flush");
    }

    st.flush_due = 1;
    st.defers++;
}


/* thread: event loop */
static void
stress_release(void *waiter)
{
    slot_t  *s = waiter;

    st.releases++;

    /* a waiter goes only once its caller is done with it, and only once */
    if (s->state != SLOT_ENDING && s->state != SLOT_GIVEN_UP) {
        stress_error("release of slot %ld in state %d",
                     (long) (s - st.slots), s->state);
        return;
    }

    s->state = SLOT_FREE;
    s->task = NULL;
    s->next = st.free;
    st.free = s;
}


/* ---- the caller's side */

static void
post(hotffi_runtime_t *rt)
{
    char            err[256];
    size_t          i;
    slot_t         *s;
    uint64_t        r;
    hotffi_task_t  *t;

    s = st.free;
    st.free = s->next;

    s->len = rnd() % (STRESS_MAX_LEN + 1);

    /* + 1: a request has a NUL after its bytes */
    s->req = calloc(1, s->len + 1);
    if (s->req == NULL) {
        fail_msg("out of memory");
    }

    for (i = 0; i < s->len; i += 8) {
        r = rnd();
        memcpy(&s->req[i], &r, s->len - i < 8 ? s->len - i : 8);
    }

    s->group = st.posted % STRESS_GROUPS;
    s->woken = 0;
    s->state = SLOT_PENDING;

    t = hotffi_call_post(rt, &st.groups[s->group], (char *) s->req, s->len,
                         s, NULL, err, sizeof(err));
    if (t == NULL) {
        fail_msg("post %u: %s", st.posted, err);
    }

    /* this task slot's previous call is over: its buffer may go */
    if (t->slot >= st.npins) {
        st.pins = realloc(st.pins, (t->slot + 1) * sizeof(unsigned char *));
        if (st.pins == NULL) {
            fail_msg("out of memory");
        }

        memset(st.pins + st.npins, 0,
               (t->slot + 1 - st.npins) * sizeof(unsigned char *));
        st.npins = t->slot + 1;
    }

    free(st.pins[t->slot]);
    st.pins[t->slot] = s->req;

    s->task = t;
    st.posted++;
}


/* Gives up a call not answered yet, wherever it is. */
static void
give_up(slot_t *s)
{
    hotffi_task_t  *t = s->task;

    s->state = SLOT_GIVEN_UP;
    st.given_up++;
    hotffi_call_abandon(t);
}


/* The end of a "request": every call of its group is given up at once. */
static void
give_up_group(int g)
{
    int      i;
    slot_t  *s;

    for (i = 0; i < STRESS_SLOTS; i++) {
        s = &st.slots[i];

        if (s->group != g) {
            continue;
        }

        if (s->state == SLOT_PENDING) {
            s->state = SLOT_GIVEN_UP;
            st.given_up++;

        } else if (s->state == SLOT_DONE) {
            /* woken but not read yet: given up after its answer */
            s->state = SLOT_ENDING;
            st.given_up_done++;
            st.given_up_woken++;
        }
    }

    st.group_ends++;
    hotffi_group_abandon(&st.groups[g]);
}


/* Reads the answers of the last drain. */
static void
take_answers(void)
{
    int             rc;
    slot_t         *s, *next;
    size_t          rlen;
    const char     *rsp;

    for (s = st.ready, st.ready = NULL; s; s = next) {
        next = s->next;

        if (s->state != SLOT_DONE) {
            /* its group was given up meanwhile */
            continue;
        }

        rc = hotffi_call_result(s->task, &rsp, &rlen);

        if (rc != 0 || rlen != s->len
            || (rlen && memcmp(rsp, s->req, rlen) != 0))
        {
            stress_error("slot %ld: rc %d, %zu bytes for %zu, %s",
                         (long) (s - st.slots), rc, rlen, s->len,
                         rlen == s->len ? "different" : "");
        }

        st.verified++;
        s->state = SLOT_ENDING;

        /* some callers give up only now, which frees the task as well */
        if (rnd() % 16 == 0) {
            st.given_up_done++;
            hotffi_call_abandon(s->task);

        } else {
            hotffi_call_finish(s->task);
        }
    }
}


/* ---- the test */

static void
test_stress(void **state)
{
    int                     i, threads;
    char                    path[PATH_MAX], err[512];
    slot_t                 *s;
    int64_t                 start, progress;
    unsigned                n;
    const char             *e, *seed;
    hotffi_hub_t           *hub;
    hotffi_host_t           host;
    hotffi_runtime_t       *rt;
    hotffi_runtime_opts_t   opts;

    memset(&st, 0, sizeof(st));

    seed = getenv("HOTFFI_UNIT_SEED");
    st.rnd = seed ? strtoull(seed, NULL, 10) : 20241123;
    st.rnd = st.rnd ? st.rnd : 1;
    print_message("seed %llu\n", (unsigned long long) st.rnd);

    for (i = STRESS_SLOTS - 1; i >= 0; i--) {
        st.slots[i].next = st.free;
        st.free = &st.slots[i];
    }

    for (i = 0; i < STRESS_GROUPS; i++) {
        hotffi_group_init(&st.groups[i]);
    }

    threads = unit_threads();

    memset(&host, 0, sizeof(host));
    host.wake = stress_wake;
    host.release = stress_release;
    host.defer = stress_defer;

    hub = hotffi_hub_create(&host, &e);
    if (hub == NULL) {
        fail_msg("hub: %s", e);
    }

    memset(&opts, 0, sizeof(opts));
    opts.max_queue = STRESS_SLOTS;
    opts.unpin = 1;

    rt = unit_load(hub, unit_lib(path, sizeof(path), "rt_echo"),
                             STRESS_CFG, strlen(STRESS_CFG), &opts, NULL, err,
                             sizeof(err));
    if (rt == NULL) {
        fail_msg("load: %s", err);
    }

    start = unit_now_ms();
    progress = start;

    while (st.posted < STRESS_CALLS || hub->tasks.live) {

        /*
         * A waiter is released when its call is given up, but the task may
         * still hold a queue slot: tasks_live, not free slots, bounds what
         * the queue holds, so that it is never full.
         */
        while (st.posted < STRESS_CALLS && st.free
               && hub->tasks.live < STRESS_SLOTS)
        {
            post(rt);
            progress = unit_now_ms();

            /* give up a random call, if that slot has one not answered */
            if (rnd() % 8 == 0) {
                s = &st.slots[rnd() % STRESS_SLOTS];

                if (s->state == SLOT_PENDING) {
                    give_up(s);
                }
            }

            if (rnd() % 1000 == 0) {
                give_up_group(rnd() % STRESS_GROUPS);
            }
        }

        if (st.flush_due) {
            st.flush_due = 0;
            hotffi_hub_flush_wakes(hub);
        }

        (void) unit_readable(hotffi_hub_fd(hub), 1000);

        n = hotffi_hub_drain(hub);
        take_answers();

        if (st.errors) {
            fail_msg("%u errors, the first: %s", st.errors, st.error);
        }

        if (n) {
            progress = unit_now_ms();

        } else if (unit_now_ms() - progress > UNIT_WAIT_MS) {
            fail_msg("stalled: %u posted, %llu tasks live", st.posted,
                     (unsigned long long) hub->tasks.live);
        }
    }

    print_message("%u calls in %lld ms: %u answers checked, %u given up "
                  "before the answer, %u after, %u groups ended, %u "
                  "wake-ups deferred\n",
                  st.posted, (long long) (unit_now_ms() - start),
                  st.verified, st.given_up, st.given_up_done, st.group_ends,
                  st.defers);

    /* every call ended exactly one way, and every waiter went once */
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.posted, STRESS_CALLS);
    assert_int_equal(st.releases, STRESS_CALLS);
    assert_int_equal(st.wakes, st.verified + st.given_up_woken);
    assert_int_equal(st.wakes + st.given_up, STRESS_CALLS);
    assert_null(st.ready);

    for (i = 0; i < STRESS_GROUPS; i++) {
        assert_true(hotffi_list_empty(&st.groups[i].tasks));
    }

    for (i = 0; i < STRESS_SLOTS; i++) {
        assert_int_equal(st.slots[i].state, SLOT_FREE);
    }

    /* the schedule must have exercised each way of ending */
    assert_true(st.given_up > 100);
    assert_true(st.given_up_done > 100);
    assert_true(st.group_ends > 0);

    assert_int_equal(hub->tasks.live, 0);
    assert_int_equal(rt->stats.calls, STRESS_CALLS);
    assert_int_equal(rt->stats.rejected, 0);
    assert_int_equal(rt->stats.inflight, 0);
    assert_int_equal(rt->stats.failed, 0);
    assert_int_equal(rt->stats.abandoned, st.given_up);
    assert_int_equal(rt->stats.ok, st.wakes);

    unit_close(hub, rt);
    assert_true(hotffi_list_empty(&hub->runtimes));

    unit_wait_threads(threads);
    hotffi_hub_destroy(hub);

    while (st.npins) {
        free(st.pins[--st.npins]);
    }

    free(st.pins);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_stress),
    };

    unit_init();

    return cmocka_run_group_tests_name("stress", tests, NULL, NULL);
}
