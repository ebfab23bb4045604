/*
 * hotffi_queue.c -- the bounded request queue (see hotffi_queue.h).
 */

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hotffi_queue.h"
#include "hotffi_port.h"
#include "hotffi_sched.h"
#include "hotffi_spin.h"


#define HOTFFI_QUEUE_FIRST_CAP  64


/* thread: any */
hotffi_queue_t *
hotffi_queue_create(uint32_t max)
{
    hotffi_queue_t  *q;

    q = calloc(1, sizeof(hotffi_queue_t));
    if (q == NULL) {
        return NULL;
    }

    q->max = max;
    hotffi_list_init(&q->wake_link);
    q->cap = max < HOTFFI_QUEUE_FIRST_CAP ? max : HOTFFI_QUEUE_FIRST_CAP;

    q->ring = malloc(q->cap * sizeof(hotffi_task_t *));
    if (q->ring == NULL) {
        goto failed;
    }

    if (pthread_mutex_init(&q->mtx, NULL) != 0) {
        goto failed;
    }

    if (pthread_cond_init(&q->drained, NULL) != 0) {
        (void) pthread_mutex_destroy(&q->mtx);
        goto failed;
    }

    return q;

failed:

    free(q->ring);
    free(q);
    return NULL;
}


/* thread: any */
void
hotffi_queue_destroy(hotffi_queue_t *q)
{
    (void) pthread_cond_destroy(&q->drained);
    (void) pthread_mutex_destroy(&q->mtx);
    free(q->ring);
    free(q);
}


/* locks: q->mtx held.  Doubles the ring, unwrapping it to start at 0. */
static int
hotffi_queue_grow(hotffi_queue_t *q)
{
    uint32_t         cap, first;
    hotffi_task_t  **ring;

    /* 64-bit: max may be up to 2^32 - 1 */
    cap = (uint32_t) ((uint64_t) q->cap * 2 < q->max ? q->cap * 2 : q->max);

    ring = malloc(cap * sizeof(hotffi_task_t *));
    if (ring == NULL) {
        return HOTFFI_ERROR;
    }

    first = q->cap - q->head < q->count ? q->cap - q->head : q->count;
    memcpy(ring, q->ring + q->head, first * sizeof(hotffi_task_t *));
    memcpy(ring + first, q->ring, (q->count - first) * sizeof(hotffi_task_t *));

    free(q->ring);
    q->ring = ring;
    q->cap = cap;
    q->head = 0;

    return HOTFFI_OK;
}


/* thread: event loop */
int
hotffi_queue_push(hotffi_queue_t *q, hotffi_task_t *task)
{
    int  rc, wake;

    wake = 0;

    (void) pthread_mutex_lock(&q->mtx);

    if (q->stopped) {
        rc = HOTFFI_DECLINED;
        goto done;
    }

    if (q->count == q->max) {
        rc = HOTFFI_BUSY;
        goto done;
    }

    if (q->max_inflight && q->outstanding - q->count >= q->max_inflight) {
        rc = HOTFFI_QUEUE_INFLIGHT;
        goto done;
    }

    if (q->count == q->cap && hotffi_queue_grow(q) != HOTFFI_OK) {
        rc = HOTFFI_ERROR;
        goto done;
    }

    q->ring[(q->head + q->count) % q->cap] = task;
    q->count++;
    q->outstanding++;
    atomic_store_explicit(&q->ready, q->count, memory_order_release);
    rc = HOTFFI_OK;

    /* a spinner takes the lock and looks at count once it stops spinning */
    wake = q->pollers
           && q->count > atomic_load_explicit(&q->spinners,
                                              memory_order_acquire);

    if (wake && q->owed < q->pollers) {
        q->owed++;
    }

done:

    (void) pthread_mutex_unlock(&q->mtx);

    return rc == HOTFFI_OK && wake ? HOTFFI_QUEUE_OWED : rc;
}


/* thread: event loop */
void
hotffi_queue_answered(hotffi_queue_t *q)
{
    q->outstanding--;
}


/* thread: event loop */
int
hotffi_queue_cancel(hotffi_queue_t *q, hotffi_task_t *task)
{
    uint32_t  i;

    (void) pthread_mutex_lock(&q->mtx);

    for (i = 0; i < q->count; i++) {
        if (q->ring[(q->head + i) % q->cap] == task) {
            break;
        }
    }

    if (i == q->count) {
        (void) pthread_mutex_unlock(&q->mtx);
        return HOTFFI_DECLINED;
    }

    /* the tasks before it move up one slot: FIFO order stays */
    for ( /* void */ ; i > 0; i--) {
        q->ring[(q->head + i) % q->cap] = q->ring[(q->head + i - 1) % q->cap];
    }

    q->head = (q->head + 1) % q->cap;
    q->count--;
    q->outstanding--;

    atomic_store_explicit(&q->ready, q->count + q->stopped,
                          memory_order_release);

    if (q->stopped && q->count == 0) {
        (void) pthread_cond_broadcast(&q->drained);
    }

    (void) pthread_mutex_unlock(&q->mtx);

    return HOTFFI_OK;
}


/*
 * locks: q->mtx held; returns with it held.  Parks the calling poller until
 * the next hotffi_queue_signal() (or spuriously: callers look again).  The
 * word is read under the lock, so a signal for anything the caller did not
 * see under it changes the word first, and the futex returns at once.  A
 * condition variable would do the same, but glibc's takes the mutex back
 * after the wait as if contended, which costs its unlock a futex call:
 * every park was three system calls, not two (measured, bench/README.md).
 */
static void
hotffi_queue_park(hotffi_queue_t *q)
{
    unsigned  seq;

    seq = atomic_load_explicit(&q->wake_seq, memory_order_relaxed);

    (void) pthread_mutex_unlock(&q->mtx);
    (void) syscall(SYS_futex, &q->wake_seq, FUTEX_WAIT_PRIVATE, seq, NULL,
                   NULL, 0);
    (void) pthread_mutex_lock(&q->mtx);
}


/* thread: any.  Wakes up to n parked pollers. */
static void
hotffi_queue_signal(hotffi_queue_t *q, int n)
{
    (void) atomic_fetch_add_explicit(&q->wake_seq, 1, memory_order_release);
    (void) syscall(SYS_futex, &q->wake_seq, FUTEX_WAKE_PRIVATE, n, NULL,
                   NULL, 0);
}


/*
 * thread: event loop.  Without the lock: a poller counted in pollers by a
 * push read the futex word under the lock before the push could take it,
 * and one that was not saw the task before it could park.  A poller
 * woken while the mutex is held would only block on it again, one more
 * futex call per task (measured).
 */
void
hotffi_queue_wake(hotffi_queue_t *q)
{
    if (q->owed) {
        hotffi_queue_signal(q, (int) q->owed);
        q->owed = 0;
    }
}


/*
 * thread: runtime.  Watches ready without the lock for up to the poll
 * window, one thread at a time (more would only share the same cache line
 * and the CPUs the event loop needs).  Returns with the caller no longer
 * counted in spinners; it must then look at count under the lock.  A
 * thread that may park gets its scheduling policy first (hotffi_sched.h).
 */
static void
hotffi_queue_spin(hotffi_queue_t *q)
{
    int       busy;
    uint64_t  window, start, now, wait, yield;

    if (atomic_load_explicit(&q->ready, memory_order_acquire) != 0) {
        return;
    }

    /* no task: the thread spins, or parks under the policy set here; the
     * load is sampled only when one of the two needs it */
    window = hotffi_spin_poll_for();
    busy = window != 0 || hotffi_sched_batch() ? hotffi_spin_busy() : 1;
    hotffi_sched_poller(hotffi_spin_crowded());

    if (window == 0 || busy) {
        return;
    }

    if (atomic_fetch_add_explicit(&q->spinners, 1, memory_order_acq_rel)
        != 0)
    {
        /* someone else spins: park, and undo the attempt */
        goto done;
    }

    /* missed spins: rest a while (the counter's acq_rel orders q->spin
     * between the spinners that follow each other) */
    if (!hotffi_spin_want(&q->spin)) {
        goto done;
    }

    start = hotffi_spin_now();
    now = start;
    wait = atomic_load_explicit(&q->spin_wait, memory_order_relaxed);
    yield = hotffi_spin_yield_after(wait);

    while (atomic_load_explicit(&q->ready, memory_order_acquire) == 0) {
        now = hotffi_spin_now();

        if (now - start >= window) {
            hotffi_spin_record(&q->spin, 0, now - start);
            goto done;
        }

        hotffi_spin_pause(now - start, yield);
    }

    hotffi_spin_record(&q->spin, 1, now - start);

    /* only the spinner writes it: a plain load and store suffice */
    atomic_store_explicit(&q->spin_wait,
                          hotffi_spin_average(wait, now - start),
                          memory_order_relaxed);

done:

    (void) atomic_fetch_sub_explicit(&q->spinners, 1, memory_order_acq_rel);
}


/* thread: runtime */
hotffi_task_t *
hotffi_queue_poll(hotffi_queue_t *q, hotffi_port_t *port)
{
    hotffi_task_t  *task;

    return hotffi_queue_poll_batch(q, port, &task, 1) ? task : NULL;
}


/* thread: runtime */
uint32_t
hotffi_queue_poll_batch(hotffi_queue_t *q, hotffi_port_t *port,
    hotffi_task_t **tasks, uint32_t max)
{
    uint32_t  n;

    hotffi_queue_spin(q);

    (void) pthread_mutex_lock(&q->mtx);

    q->pollers++;

    while (!port->stopped && (!port->open || (q->count == 0 && !q->stopped)))
    {
        hotffi_queue_park(q);
    }

    q->pollers--;

    if (port->stopped) {
        /*
         * A push that counted this thread among the spinners woke nobody
         * for its task: a spinner of a port stopped meanwhile (a version
         * retiring during a reload) leaves without it, so it passes the
         * wake-up on to a parked poller of the serving port.
         */
        if (q->count && q->pollers) {
            hotffi_queue_signal(q, 1);
        }

        (void) pthread_mutex_unlock(&q->mtx);
        return 0;
    }

    for (n = 0; n < max && q->count; n++) {
        tasks[n] = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }

    atomic_store_explicit(&q->ready, q->count + q->stopped,
                          memory_order_relaxed);

    if (n && q->stopped && q->count == 0) {
        /* the last task queued before the stop: wake the reaper */
        (void) pthread_cond_broadcast(&q->drained);
    }

    (void) pthread_mutex_unlock(&q->mtx);
    return n;
}


/* thread: any, one at a time per port */
uint32_t
hotffi_queue_poll_fit(hotffi_queue_t *q, hotffi_port_t *port,
    hotffi_task_t **tasks, uint32_t max,
    int (*fits)(void *arg, hotffi_task_t *task), void *arg)
{
    uint32_t        n;
    hotffi_task_t  *task;

    (void) pthread_mutex_lock(&q->mtx);

    if (port->stopped || !port->open) {
        (void) pthread_mutex_unlock(&q->mtx);
        return 0;
    }

    for (n = 0; n < max && q->count; n++) {
        task = q->ring[q->head];

        if (!fits(arg, task)) {
            break;
        }

        tasks[n] = task;
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }

    atomic_store_explicit(&q->ready, q->count + q->stopped,
                          memory_order_release);

    if (n && q->stopped && q->count == 0) {
        /* the last task queued before the stop: wake the reaper */
        (void) pthread_cond_broadcast(&q->drained);
    }

    (void) pthread_mutex_unlock(&q->mtx);
    return n;
}


/* thread: any */
void
hotffi_queue_stop(hotffi_queue_t *q)
{
    (void) pthread_mutex_lock(&q->mtx);
    q->stopped = 1;
    atomic_store_explicit(&q->ready, q->count + 1, memory_order_release);
    hotffi_queue_signal(q, INT_MAX);
    (void) pthread_cond_broadcast(&q->drained);
    (void) pthread_mutex_unlock(&q->mtx);
}


/* thread: any */
void
hotffi_queue_stop_port(hotffi_queue_t *q, hotffi_port_t *port)
{
    /*
     * The broadcast takes every poller of port out of the wait at once, so
     * a later push's single signal can only reach a poller that will take
     * its task; and a port never waits again once stopped.
     */
    (void) pthread_mutex_lock(&q->mtx);
    port->stopped = 1;

    if (port->direct != NULL
        && atomic_load_explicit(&q->direct, memory_order_relaxed)
           == port->direct)
    {
        atomic_store_explicit(&q->direct, NULL, memory_order_relaxed);
    }

    hotffi_queue_signal(q, INT_MAX);
    (void) pthread_mutex_unlock(&q->mtx);
}


/* thread: any */
void
hotffi_queue_open_port(hotffi_queue_t *q, hotffi_port_t *port)
{
    (void) pthread_mutex_lock(&q->mtx);
    port->open = 1;

    if (port->direct != NULL && !port->stopped) {
        atomic_store_explicit(&q->direct, port->direct, memory_order_relaxed);
    }

    hotffi_queue_signal(q, INT_MAX);
    (void) pthread_mutex_unlock(&q->mtx);
}


/* thread: event loop */
uint32_t
hotffi_queue_take(hotffi_queue_t *q, hotffi_task_t **tasks, uint32_t max)
{
    uint32_t  n;

    (void) pthread_mutex_lock(&q->mtx);

    for (n = 0; n < max && q->count; n++) {
        tasks[n] = q->ring[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }

    atomic_store_explicit(&q->ready, q->count + q->stopped,
                          memory_order_release);

    if (q->stopped && q->count == 0) {
        (void) pthread_cond_broadcast(&q->drained);
    }

    (void) pthread_mutex_unlock(&q->mtx);

    return n;
}


/* thread: any but the event loop */
void
hotffi_queue_wait_drained(hotffi_queue_t *q)
{
    (void) pthread_mutex_lock(&q->mtx);

    while (!q->stopped || q->count != 0) {
        (void) pthread_cond_wait(&q->drained, &q->mtx);
    }

    (void) pthread_mutex_unlock(&q->mtx);
}


/* thread: any */
uint32_t
hotffi_queue_depth(hotffi_queue_t *q)
{
    uint32_t  n;

    (void) pthread_mutex_lock(&q->mtx);
    n = q->count;
    (void) pthread_mutex_unlock(&q->mtx);

    return n;
}
