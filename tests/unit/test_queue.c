/*
 * test_queue.c -- the bounded request queue: order, growth, limits, the stop
 * and the threads blocked on it.
 *
 * The queue never looks inside a task, so the tasks here are addresses in a
 * byte array: T(i) is task number i, and a poll can be checked by number.
 */

#define _GNU_SOURCE

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "unit_helpers.h"


#define UNIT_SLOTS  4096

static char  slots[UNIT_SLOTS];

#define T(i)     ((hotffi_task_t *) &slots[(i) % UNIT_SLOTS])
#define NUM(t)   ((long) ((char *) (t) - slots))


/* ---- helpers */

/* the port of the tests that need only one; open, never stopped */
static hotffi_port_t  port0 = { .open = 1 };


static hotffi_task_t *
qpoll(hotffi_queue_t *q)
{
    return hotffi_queue_poll(q, &port0);
}


/*
 * A push as the event loop makes it, with the wake-up it owes paid now:
 * HOTFFI_OK when queued, owed a wake-up or not.
 */
static int
push(hotffi_queue_t *q, hotffi_task_t *task)
{
    int  rc;

    rc = hotffi_queue_push(q, task);
    hotffi_queue_wake(q);

    return rc == HOTFFI_QUEUE_OWED ? HOTFFI_OK : rc;
}


/* Pushes tasks number from .. to-1, each must be accepted. */
static void
push_range(hotffi_queue_t *q, uint32_t from, uint32_t to)
{
    uint32_t  i;

    for (i = from; i < to; i++) {
        assert_int_equal(push(q, T(i)), HOTFFI_OK);
    }
}


/* Polls tasks, which must come as number from .. to-1, in that order. */
static void
poll_range(hotffi_queue_t *q, uint32_t from, uint32_t to)
{
    uint32_t  i;

    for (i = from; i < to; i++) {
        assert_int_equal(NUM(qpoll(q)), i % UNIT_SLOTS);
    }
}


static uint32_t
pollers(hotffi_queue_t *q)
{
    uint32_t  n;

    (void) pthread_mutex_lock(&q->mtx);
    n = q->pollers;
    (void) pthread_mutex_unlock(&q->mtx);

    return n;
}


/*
 * Waits until n threads sleep in poll: pollers is raised under the mutex
 * just before the wait, so once it is seen, those threads have read the
 * futex word they park on.
 */
static void
wait_pollers(hotffi_queue_t *q, uint32_t n)
{
    int64_t  end;

    end = unit_now_ms() + UNIT_WAIT_MS;

    while (pollers(q) != n) {
        if (unit_now_ms() > end) {
            fail_msg("%u threads in poll, expected %u", pollers(q), n);
        }

        unit_sleep_ms(1);
    }
}


static void *
poll_thread(void *q)
{
    return qpoll(q);
}


typedef struct {
    hotffi_queue_t  *q;
    atomic_int       returned;
} drain_waiter_t;


static void *
wait_drained_thread(void *data)
{
    drain_waiter_t  *dw = data;

    hotffi_queue_wait_drained(dw->q);
    atomic_store(&dw->returned, 1);

    return NULL;
}


/* A thread waiting for q's drain; dw->returned says when it is over. */
static pthread_t
drain_waiter_start(drain_waiter_t *dw, hotffi_queue_t *q)
{
    pthread_t  tid;

    dw->q = q;
    atomic_init(&dw->returned, 0);
    assert_int_equal(pthread_create(&tid, NULL, wait_drained_thread, dw), 0);

    return tid;
}


/* ---- tests */

static void
test_fifo(void **state)
{
    hotffi_queue_t  *q;

    q = hotffi_queue_create(16);
    assert_non_null(q);
    assert_int_equal(hotffi_queue_depth(q), 0);

    push_range(q, 0, 10);
    assert_int_equal(hotffi_queue_depth(q), 10);

    poll_range(q, 0, 4);
    assert_int_equal(hotffi_queue_depth(q), 6);

    /* later pushes queue behind the ones still waiting */
    push_range(q, 10, 13);
    assert_int_equal(hotffi_queue_depth(q), 9);
    poll_range(q, 4, 13);
    assert_int_equal(hotffi_queue_depth(q), 0);

    hotffi_queue_destroy(q);
}


/*
 * Growth copies a wrapped ring into a bigger one: the head is moved away
 * from slot 0 before each growth, so that the part of the ring behind the
 * end and the part before it must both be copied, in order.
 */
static void
test_growth_with_wraparound(void **state)
{
    hotffi_queue_t  *q;

    q = hotffi_queue_create(200);
    assert_non_null(q);
    assert_int_equal(q->cap, 64);

    /* fill the first 64 slots, free 40 at the front, refill: head at 40 */
    push_range(q, 0, 64);
    poll_range(q, 0, 40);
    push_range(q, 64, 104);
    assert_int_equal(q->cap, 64);
    assert_int_equal(q->head, 40);
    assert_int_equal(hotffi_queue_depth(q), 64);

    /* the 65th task doubles the ring */
    push_range(q, 104, 105);
    assert_int_equal(q->cap, 128);
    assert_int_equal(hotffi_queue_depth(q), 65);

    /* wrap the bigger ring too before it grows to max (not to 256) */
    poll_range(q, 40, 90);
    push_range(q, 105, 218);
    assert_int_equal(q->cap, 128);
    assert_int_equal(hotffi_queue_depth(q), 128);
    assert_true(q->head + q->count > q->cap);

    push_range(q, 218, 219);
    assert_int_equal(q->cap, 200);
    assert_int_equal(hotffi_queue_depth(q), 129);

    /* and wrap the ring at max */
    poll_range(q, 90, 150);
    push_range(q, 219, 350);
    assert_int_equal(hotffi_queue_depth(q), 200);
    assert_true(q->head + q->count > q->cap);

    /* full at max: refused, and nothing of the queue is disturbed */
    assert_int_equal(push(q, T(999)), HOTFFI_BUSY);
    assert_int_equal(q->cap, 200);
    assert_int_equal(hotffi_queue_depth(q), 200);

    poll_range(q, 150, 350);
    assert_int_equal(hotffi_queue_depth(q), 0);

    hotffi_queue_destroy(q);
}


/*
 * Random pushes and polls against a model (a counter pair: the queue is
 * FIFO, so it must hand out exactly the numbers pushed, in order), through
 * several growths and wraps, for a max that is not a power of two.
 */
static void
test_random_against_model(void **state)
{
    int              i;
    uint32_t         next_push, next_poll, busy, r;
    hotffi_queue_t  *q;

    q = hotffi_queue_create(1000);
    assert_non_null(q);

    next_push = 0;
    next_poll = 0;
    busy = 0;
    r = 12345;

    for (i = 0; i < 20000; i++) {
        r = r * 1103515245 + 12345;

        /* pushes a little more often than polls, to reach max */
        if ((r >> 16) % 100 < 55) {
            if (next_push - next_poll == 1000) {
                assert_int_equal(push(q, T(next_push)),
                                 HOTFFI_BUSY);
                busy++;

            } else {
                assert_int_equal(push(q, T(next_push)),
                                 HOTFFI_OK);
                next_push++;
            }

        } else if (next_poll != next_push) {
            assert_int_equal(NUM(qpoll(q)),
                             next_poll % UNIT_SLOTS);
            next_poll++;
        }

        assert_int_equal(hotffi_queue_depth(q), next_push - next_poll);
        assert_true(q->cap <= 1000);
    }

    /* the schedule did reach max, so every growth happened */
    assert_true(busy > 0);
    assert_int_equal(q->cap, 1000);

    poll_range(q, next_poll, next_push);
    hotffi_queue_destroy(q);
}


/* max below the first allocation: the ring is max, and it wraps */
static void
test_small_max(void **state)
{
    hotffi_queue_t  *q;

    q = hotffi_queue_create(3);
    assert_non_null(q);
    assert_int_equal(q->cap, 3);

    push_range(q, 0, 3);
    assert_int_equal(push(q, T(99)), HOTFFI_BUSY);
    assert_int_equal(hotffi_queue_depth(q), 3);

    /* one slot freed at the front: the next push goes to slot 0 */
    poll_range(q, 0, 1);
    push_range(q, 3, 4);
    assert_int_equal(push(q, T(99)), HOTFFI_BUSY);

    poll_range(q, 1, 4);
    assert_int_equal(hotffi_queue_depth(q), 0);

    hotffi_queue_destroy(q);

    /* the smallest queue */
    q = hotffi_queue_create(1);
    assert_non_null(q);
    push_range(q, 0, 1);
    assert_int_equal(push(q, T(1)), HOTFFI_BUSY);
    poll_range(q, 0, 1);
    push_range(q, 1, 2);
    poll_range(q, 1, 2);
    hotffi_queue_destroy(q);
}


static void
test_push_after_stop_declined(void **state)
{
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);

    push_range(q, 0, 2);
    hotffi_queue_stop(q);

    assert_int_equal(push(q, T(2)), HOTFFI_DECLINED);
    assert_int_equal(hotffi_queue_depth(q), 2);

    /* stop is idempotent, and a full stopped queue declines, not busy */
    hotffi_queue_stop(q);
    assert_int_equal(push(q, T(3)), HOTFFI_DECLINED);

    poll_range(q, 0, 2);
    assert_null(qpoll(q));

    hotffi_queue_destroy(q);
}


static void
test_stop_hands_out_queued_then_null(void **state)
{
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);

    push_range(q, 0, 3);
    hotffi_queue_stop(q);
    assert_int_equal(hotffi_queue_depth(q), 3);

    /* a stop is not a task at the end: what was queued still comes first */
    poll_range(q, 0, 3);

    /* then NULL, and NULL for ever: each polling thread must see it */
    assert_null(qpoll(q));
    assert_null(qpoll(q));
    assert_null(qpoll(q));
    assert_int_equal(hotffi_queue_depth(q), 0);

    hotffi_queue_destroy(q);
}


/* A stop on a full queue: a NULL task appended could not have fit. */
static void
test_stop_on_full_queue(void **state)
{
    hotffi_queue_t  *q;

    q = hotffi_queue_create(2);
    assert_non_null(q);

    push_range(q, 0, 2);
    assert_int_equal(push(q, T(2)), HOTFFI_BUSY);

    hotffi_queue_stop(q);
    poll_range(q, 0, 2);
    assert_null(qpoll(q));

    hotffi_queue_destroy(q);
}


static void
test_blocked_pollers_get_pushed_tasks(void **state)
{
    int              i;
    long             got[4], sum;
    pthread_t        tids[4];
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);

    for (i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&tids[i], NULL, poll_thread, q), 0);
    }

    wait_pollers(q, 4);

    /* each push wakes a sleeping poller; each task goes to exactly one */
    push_range(q, 1, 5);

    sum = 0;

    for (i = 0; i < 4; i++) {
        got[i] = NUM(unit_join(tids[i], UNIT_WAIT_MS));
        assert_in_range(got[i], 1, 4);
        sum += 1L << got[i];
    }

    assert_int_equal(sum, (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4));
    assert_int_equal(hotffi_queue_depth(q), 0);
    assert_int_equal(pollers(q), 0);

    hotffi_queue_destroy(q);
}


static void
test_stop_wakes_every_blocked_poller(void **state)
{
    int              i;
    pthread_t        tids[4];
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);

    for (i = 0; i < 4; i++) {
        assert_int_equal(pthread_create(&tids[i], NULL, poll_thread, q), 0);
    }

    wait_pollers(q, 4);
    hotffi_queue_stop(q);

    for (i = 0; i < 4; i++) {
        assert_null(unit_join(tids[i], UNIT_WAIT_MS));
    }

    /* and a thread that polls only now does not block either */
    assert_int_equal(pthread_create(&tids[0], NULL, poll_thread, q), 0);
    assert_null(unit_join(tids[0], UNIT_WAIT_MS));

    hotffi_queue_destroy(q);
}


static void
test_wait_drained_after_last_task_taken(void **state)
{
    pthread_t        tid;
    drain_waiter_t   dw;
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);

    push_range(q, 0, 3);
    hotffi_queue_stop(q);

    tid = drain_waiter_start(&dw, q);

    /* stopped but not empty: it must keep waiting (checked for a while) */
    unit_sleep_ms(30);
    assert_int_equal(atomic_load(&dw.returned), 0);

    poll_range(q, 0, 2);
    unit_sleep_ms(30);
    assert_int_equal(atomic_load(&dw.returned), 0);

    /* the last task is taken: that poll wakes it */
    poll_range(q, 2, 3);
    (void) unit_join(tid, UNIT_WAIT_MS);
    assert_int_equal(atomic_load(&dw.returned), 1);

    hotffi_queue_destroy(q);
}


static void
test_wait_drained_empty(void **state)
{
    pthread_t        tid;
    drain_waiter_t   dw;
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);

    /* empty but not stopped: a push may still come, so it waits */
    tid = drain_waiter_start(&dw, q);
    unit_sleep_ms(30);
    assert_int_equal(atomic_load(&dw.returned), 0);

    /* the stop of an empty queue is the end of the wait */
    hotffi_queue_stop(q);
    (void) unit_join(tid, UNIT_WAIT_MS);
    assert_int_equal(atomic_load(&dw.returned), 1);

    /* already stopped and empty: returns at once */
    hotffi_queue_wait_drained(q);

    hotffi_queue_destroy(q);
}


/*
 * A thread waiting for the drain of a queue not yet stopped sleeps on the
 * same condition variable as the pollers.  A push signals one sleeper: when
 * that is the drain waiter (it went to sleep first), the signal must still
 * reach a poller, or a task waits in the queue next to a sleeping poller.
 */
static void
test_wait_drained_does_not_steal_a_push(void **state)
{
    pthread_t        drainer, poller;
    drain_waiter_t   dw;
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);

    drainer = drain_waiter_start(&dw, q);

    /* the drain waiter must be the older sleeper: give it time to sleep */
    unit_sleep_ms(50);

    assert_int_equal(pthread_create(&poller, NULL, poll_thread, q), 0);
    wait_pollers(q, 1);

    push_range(q, 7, 8);
    assert_int_equal(NUM(unit_join(poller, UNIT_WAIT_MS)), 7);

    assert_int_equal(atomic_load(&dw.returned), 0);
    hotffi_queue_stop(q);
    (void) unit_join(drainer, UNIT_WAIT_MS);

    hotffi_queue_destroy(q);
}


/* ---- ports: the versions of a runtime polling one queue */

typedef struct {
    hotffi_queue_t  *q;
    hotffi_port_t   *port;
} port_poller_t;


static void *
port_poll_thread(void *data)
{
    port_poller_t  *pp = data;

    return hotffi_queue_poll(pp->q, pp->port);
}


/* An open port of q, zeroed, and a poller's view of it. */
static void
port_init(hotffi_port_t *port, port_poller_t *pp, hotffi_queue_t *q)
{
    memset(port, 0, sizeof(hotffi_port_t));
    port->queue = q;
    port->open = 1;

    pp->q = q;
    pp->port = port;
}


/*
 * A stopped port's poll returns NULL at once, for ever, though tasks are
 * queued: they stay, in order, for another port.  Pushes are still taken.
 */
static void
test_stopped_port_leaves_tasks(void **state)
{
    pthread_t        tid;
    hotffi_port_t    old, cur;
    port_poller_t    pp_old, pp_cur;
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);
    port_init(&old, &pp_old, q);
    port_init(&cur, &pp_cur, q);

    push_range(q, 0, 5);
    assert_int_equal(NUM(hotffi_queue_poll(q, &old)), 0);

    hotffi_queue_stop_port(q, &old);
    hotffi_queue_stop_port(q, &old);

    /* in a thread: a poll that blocked would fail the join, not hang */
    assert_int_equal(pthread_create(&tid, NULL, port_poll_thread, &pp_old),
                     0);
    assert_null(unit_join(tid, UNIT_WAIT_MS));
    assert_null(hotffi_queue_poll(q, &old));
    assert_int_equal(hotffi_queue_depth(q), 4);

    /* the queue itself is not stopped */
    push_range(q, 5, 7);

    assert_int_equal(NUM(hotffi_queue_poll(q, &cur)), 1);
    assert_null(hotffi_queue_poll(q, &old));
    assert_int_equal(NUM(hotffi_queue_poll(q, &cur)), 2);
    assert_int_equal(NUM(hotffi_queue_poll(q, &cur)), 3);
    assert_int_equal(NUM(hotffi_queue_poll(q, &cur)), 4);
    assert_int_equal(NUM(hotffi_queue_poll(q, &cur)), 5);
    assert_int_equal(NUM(hotffi_queue_poll(q, &cur)), 6);
    assert_int_equal(hotffi_queue_depth(q), 0);

    /* the unload stops every port once empty: cur's poll ends too */
    hotffi_queue_stop(q);
    assert_null(hotffi_queue_poll(q, &cur));

    hotffi_queue_destroy(q);
}


/*
 * A poller of the old port sleeping in poll is woken by stop_port and gets
 * NULL; the poller of the other port sleeps on and gets the next push.
 */
static void
test_stop_port_wakes_its_poller(void **state)
{
    pthread_t        t_old, t_cur;
    hotffi_port_t    old, cur;
    port_poller_t    pp_old, pp_cur;
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);
    port_init(&old, &pp_old, q);
    port_init(&cur, &pp_cur, q);

    assert_int_equal(pthread_create(&t_old, NULL, port_poll_thread, &pp_old),
                     0);
    assert_int_equal(pthread_create(&t_cur, NULL, port_poll_thread, &pp_cur),
                     0);
    wait_pollers(q, 2);

    hotffi_queue_stop_port(q, &old);
    assert_null(unit_join(t_old, UNIT_WAIT_MS));

    /* the broadcast woke cur's poller too: it must have gone back to sleep */
    wait_pollers(q, 1);

    push_range(q, 9, 10);
    assert_int_equal(NUM(unit_join(t_cur, UNIT_WAIT_MS)), 9);
    assert_int_equal(hotffi_queue_depth(q), 0);

    hotffi_queue_destroy(q);
}


/*
 * A push that finds a thread spinning wakes nobody: the spinner takes the
 * task.  If that spinner's port was stopped meanwhile (a version retiring
 * while its thread spun), it leaves without the task and must pass the
 * wake-up on to the live port's parked poller.  The spin itself is
 * simulated: spinners is raised around the push as hotffi_queue_spin()
 * raises it, then the stopped port's thread polls with the task ready.
 */
static void
test_stopped_spinner_passes_the_wake_on(void **state)
{
    pthread_t        t_cur;
    hotffi_port_t    old, cur;
    port_poller_t    pp_old, pp_cur;
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);
    port_init(&old, &pp_old, q);
    port_init(&cur, &pp_cur, q);

    /* stopped first: no broadcast may be on its way to the live poller */
    hotffi_queue_stop_port(q, &old);

    assert_int_equal(pthread_create(&t_cur, NULL, port_poll_thread, &pp_cur),
                     0);
    wait_pollers(q, 1);

    atomic_fetch_add(&q->spinners, 1);
    /* queued, and no wake-up owed: the spinner will look */
    assert_int_equal(hotffi_queue_push(q, T(7)), HOTFFI_OK);
    atomic_fetch_sub(&q->spinners, 1);

    /* the old port's spinner looks, as every spinner does, and leaves */
    assert_null(hotffi_queue_poll(q, &old));

    assert_int_equal(NUM(unit_join(t_cur, UNIT_WAIT_MS)), 7);
    assert_int_equal(hotffi_queue_depth(q), 0);

    hotffi_queue_destroy(q);
}


/*
 * A push signals one sleeper.  Here the sleepers are two pollers of a port
 * being stopped while the push happens and one poller of the live port:
 * whichever the signal wakes, the task must be taken exactly once, by the
 * live port's poller unless an old poller took it before its stop -- never
 * left in the queue next to a sleeping live poller.
 */
typedef struct {
    hotffi_queue_t  *q;
    hotffi_port_t   *port;
    atomic_int       go;
} stopper_t;


static void *
stop_port_thread(void *data)
{
    stopper_t  *s = data;

    while (atomic_load(&s->go) == 0) {
        /* spin: start together with the push */
    }

    hotffi_queue_stop_port(s->q, s->port);

    return NULL;
}


static void
test_push_while_port_stops(void **state)
{
    int              i, k, by_old, by_cur;
    void            *got;
    pthread_t        t_old[2], t_cur, t_stop;
    stopper_t        stopper;
    hotffi_port_t    old, cur;
    port_poller_t    pp_old, pp_cur;
    hotffi_queue_t  *q;

    by_old = 0;
    by_cur = 0;

    q = hotffi_queue_create(8);
    assert_non_null(q);

    for (i = 0; i < 300; i++) {
        port_init(&old, &pp_old, q);
        port_init(&cur, &pp_cur, q);

        stopper.q = q;
        stopper.port = &old;
        atomic_init(&stopper.go, 0);

        for (k = 0; k < 2; k++) {
            assert_int_equal(pthread_create(&t_old[k], NULL,
                                            port_poll_thread, &pp_old), 0);
        }

        assert_int_equal(pthread_create(&t_cur, NULL, port_poll_thread,
                                        &pp_cur), 0);
        wait_pollers(q, 3);

        assert_int_equal(pthread_create(&t_stop, NULL, stop_port_thread,
                                        &stopper), 0);

        atomic_store(&stopper.go, 1);
        push_range(q, i + 1, i + 2);

        (void) unit_join(t_stop, UNIT_WAIT_MS);

        got = NULL;

        for (k = 0; k < 2; k++) {
            void  *t = unit_join(t_old[k], UNIT_WAIT_MS);

            if (t) {
                assert_null(got);
                got = t;
                by_old++;
            }
        }

        if (got) {
            /* an old poller took it before the stop: cur still sleeps */
            hotffi_queue_stop_port(q, &cur);
            assert_null(unit_join(t_cur, UNIT_WAIT_MS));

        } else {
            got = unit_join(t_cur, UNIT_WAIT_MS);
            by_cur++;
        }

        assert_int_equal(NUM(got), i + 1);
        assert_int_equal(hotffi_queue_depth(q), 0);
        assert_int_equal(pollers(q), 0);
    }

    /* the live port's poller got it at least sometimes: the race ran */
    assert_int_equal(by_old + by_cur, 300);
    assert_true(by_cur > 0);

    hotffi_queue_destroy(q);
}


/* n zeroed tasks, where a test needs real ones; free each with free(). */
static void
new_tasks(hotffi_task_t **tasks, int n)
{
    int  i;

    for (i = 0; i < n; i++) {
        tasks[i] = calloc(1, sizeof(hotffi_task_t));
        assert_non_null(tasks[i]);
    }
}


/*
 * take: the queued tasks, oldest first, at most max at a time, across a
 * wrapped ring; the queue is empty after them.
 */
static void
test_take(void **state)
{
    int              i;
    hotffi_task_t   *tasks[12], *got[12];
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);

    new_tasks(tasks, 12);

    /* nothing queued: none */
    assert_int_equal(hotffi_queue_take(q, got, 12), 0);

    /* wrap the ring: head at 5 of 8 */
    for (i = 0; i < 5; i++) {
        assert_int_equal(push(q, tasks[i]), HOTFFI_OK);
        assert_ptr_equal(qpoll(q), tasks[i]);
    }

    for (i = 5; i < 12; i++) {
        assert_int_equal(push(q, tasks[i]), HOTFFI_OK);
    }

    assert_true(q->head + q->count > q->cap);

    /* oldest first, at most max at a time */
    assert_int_equal(hotffi_queue_take(q, got, 4), 4);
    assert_int_equal(hotffi_queue_take(q, got + 4, 8), 3);

    for (i = 5; i < 12; i++) {
        assert_ptr_equal(got[i - 5], tasks[i]);
    }

    assert_int_equal(hotffi_queue_depth(q), 0);
    assert_int_equal(hotffi_queue_take(q, got, 12), 0);

    /* still a working queue */
    assert_int_equal(push(q, tasks[0]), HOTFFI_OK);
    assert_ptr_equal(qpoll(q), tasks[0]);

    for (i = 0; i < 12; i++) {
        free(tasks[i]);
    }

    hotffi_queue_destroy(q);
}


/* take on a stopped queue empties it: that ends a drain wait. */
static void
test_take_wakes_drain_waiter(void **state)
{
    int              i;
    pthread_t        tid;
    drain_waiter_t   dw;
    hotffi_task_t   *tasks[3], *got[8];
    hotffi_queue_t  *q;

    q = hotffi_queue_create(8);
    assert_non_null(q);

    new_tasks(tasks, 3);

    for (i = 0; i < 3; i++) {
        assert_int_equal(push(q, tasks[i]), HOTFFI_OK);
    }

    hotffi_queue_stop(q);

    tid = drain_waiter_start(&dw, q);

    /* stopped, not empty: it waits (checked for a while) */
    unit_sleep_ms(30);
    assert_int_equal(atomic_load(&dw.returned), 0);

    assert_int_equal(hotffi_queue_take(q, got, 8), 3);
    (void) unit_join(tid, UNIT_WAIT_MS);
    assert_int_equal(atomic_load(&dw.returned), 1);

    for (i = 0; i < 3; i++) {
        assert_ptr_equal(got[i], tasks[i]);
        free(tasks[i]);
    }

    assert_null(qpoll(q));

    hotffi_queue_destroy(q);
}


/* polls a task that comes while it waits, then says its policy */
static void *
poll_policy_thread(void *q)
{
    assert_int_equal(NUM(qpoll(q)), 7);

    return (void *) (intptr_t) sched_getscheduler(0);
}


/* as poll_policy_thread(), from a thread its runtime made SCHED_IDLE */
static void *
idle_poll_policy_thread(void *q)
{
    struct sched_param  param = { .sched_priority = 0 };

    assert_int_equal(sched_setscheduler(0, SCHED_IDLE, &param), 0);

    return poll_policy_thread(q);
}


/* the policy a new thread had after a poll that waited, crowded or not */
static int
policy_after_wait(void *(*thread)(void *), int crowded)
{
    pthread_t        tid;
    hotffi_queue_t  *q;
    int              policy;

    hotffi_spin_busy_force(crowded);

    q = hotffi_queue_create(8);
    assert_non_null(q);

    assert_int_equal(pthread_create(&tid, NULL, thread, q), 0);
    wait_pollers(q, 1);
    assert_int_equal(push(q, T(7)), HOTFFI_OK);
    policy = (int) (intptr_t) unit_join(tid, UNIT_WAIT_MS);

    hotffi_queue_destroy(q);
    hotffi_spin_busy_force(-1);

    return policy;
}


/* by default: main() keeps the caller's HOTFFI_POLL_BATCH out */
static void
test_waiting_poller_does_not_preempt_the_loop(void **state)
{
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER);

    /* SCHED_BATCH; the test's own thread: untouched */
    assert_int_equal(policy_after_wait(poll_policy_thread, 0), SCHED_BATCH);
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER);

    /* crowded with other work: a woken poller may preempt it */
    assert_int_equal(policy_after_wait(poll_policy_thread, 1), SCHED_OTHER);

    /* a policy the runtime chose stays */
    assert_int_equal(policy_after_wait(idle_poll_policy_thread, 0),
                     SCHED_IDLE);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_growth_with_wraparound),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_small_max),
        cmocka_unit_test(test_push_after_stop_declined),
        cmocka_unit_test(test_stop_hands_out_queued_then_null),
        cmocka_unit_test(test_stop_on_full_queue),
        cmocka_unit_test(test_blocked_pollers_get_pushed_tasks),
        cmocka_unit_test(test_stop_wakes_every_blocked_poller),
        cmocka_unit_test(test_wait_drained_after_last_task_taken),
        cmocka_unit_test(test_wait_drained_empty),
        cmocka_unit_test(test_wait_drained_does_not_steal_a_push),
        cmocka_unit_test(test_stopped_port_leaves_tasks),
        cmocka_unit_test(test_stop_port_wakes_its_poller),
        cmocka_unit_test(test_stopped_spinner_passes_the_wake_on),
        cmocka_unit_test(test_push_while_port_stops),
        cmocka_unit_test(test_take),
        cmocka_unit_test(test_take_wakes_drain_waiter),
        cmocka_unit_test(test_waiting_poller_does_not_preempt_the_loop),
    };

    /* read once, at the first poll that waits: docs/api.md */
    (void) unsetenv("HOTFFI_POLL_BATCH");
    unit_init();

    return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
