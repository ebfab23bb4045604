/*
 * hotffi_queue.h -- the bounded request queue a runtime polls (the `tq` of
 * the ABI).
 *
 * DESIGN
 * A ring of task pointers under one mutex, after nginx's ngx_thread_pool.c:
 * the event loop pushes without ever blocking (a full queue fails the call at
 * once), runtime threads block in poll on a futex word.  FIFO.
 *
 * Stopping replaces lua-resty-ffi's NULL task: once stopped, no push is
 * accepted, poll keeps handing out what was queued before the stop, and then
 * returns NULL to every caller, for ever.  Unlike a NULL task appended to the
 * ring, the stop can never fail on a full queue and reaches every polling
 * thread.
 *
 * A runtime's versions poll through ports (hotffi_port.h): stopping a port
 * ends only its pollers, the tasks queued stay for the next port.
 *
 * The ring grows on demand up to max, so a runtime loaded with the default
 * max_queue of 65536 does not cost 512 KiB until it is that busy.
 *
 * max bounds the tasks waiting; max_inflight bounds those taken by the
 * runtime and not yet handed back to the event loop (outstanding - count):
 * a runtime that takes calls and never answers holds at most that many.
 * A task whose caller gave up leaves the ring at once
 * (hotffi_queue_cancel()), so its slot is free at the timeout, not when
 * the runtime polls again; callers mostly give up in the order they
 * posted (one timeout for all), so the task is found near the head, and
 * the ring closes the gap by moving the few before it.
 *
 * locks: mtx guards every field but the atomics (ready, spinners,
 * spin_wait, wake_seq) and the event loop's own (owed, wake_link).  Pollers
 * park on the futex word wake_seq, which a push's wake-up and a stop bump
 * before they wake them (not a condition variable: glibc's relock after its
 * wait costs a futex call at every unlock that follows); a drain waiter
 * waits on drained, so that a push's wake-up can never be taken by it
 * instead of a poller.
 *
 * Spin before parking (hotffi_spin.h): a poller first watches `ready` for
 * up to HOTFFI_POLL_SPIN_US without the lock, counted in `spinners`.  Every
 * thread counted there takes the lock and looks at count afterwards (one
 * whose port was stopped meanwhile passes the wake-up on), so a push owes
 * a parked poller a wake-up only for the tasks beyond the spinners: a
 * runtime that keeps up with its callers costs no futex call either side.
 *
 * A push does not signal: it counts the wake-ups it owes (at most one per
 * parked poller), and hotffi_queue_wake() pays them, at once for a lone
 * call or, for calls made while others are in flight, once the event loop
 * has handled everything that was ready (hotffi_hub.h): a burst of calls
 * then costs one futex wake, not one per call.
 *
 * A direct port (hotffi_direct.h) has no threads polling: while it is
 * open, `direct` names it, and the caller of a push hands the task on
 * itself; the port takes tasks with hotffi_queue_poll_fit(), which never
 * blocks and leaves those that do not fit where they are.
 */

#ifndef HOTFFI_QUEUE_H
#define HOTFFI_QUEUE_H


#include <pthread.h>
#include <stdatomic.h>

#include "hotffi_core.h"
#include "hotffi_list.h"
#include "hotffi_spin.h"


struct hotffi_queue_s {
    pthread_mutex_t   mtx;
    pthread_cond_t    drained;
    hotffi_task_t   **ring;
    uint32_t          cap;        /* slots allocated */
    uint32_t          max;        /* slots allowed */
    uint32_t          max_inflight;  /* outstanding - count allowed; set
                                        before any thread sees q */
    uint32_t          head;       /* oldest task */
    uint32_t          count;
    uint32_t          pollers;    /* threads parked in poll */
    unsigned          stopped:1;

    atomic_uint       ready;      /* count + stopped, for the spinners */
    atomic_uint       wake_seq;   /* the pollers' futex word: bumped by
                                     every wake-up */
    atomic_uint       spinners;   /* threads spinning in poll */
    atomic_ullong     spin_wait;  /* a hit's wait, ns, see hotffi_spin.h */
    hotffi_spin_t     spin;       /* the back-off of missed poll spins:
                                     only the one thread counted in
                                     spinners touches it */
    _Atomic(hotffi_direct_t *) direct;  /* the open direct port, or NULL;
                                           written under mtx */

    /* event loop only */
    uint32_t          outstanding;  /* pushed, not yet answered (or
                                       cancelled out of the ring) */
    uint32_t          owed;       /* wake-ups owed to parked pollers */
    hotffi_list_t     wake_link;  /* on hub->wakes: a wake-up deferred */
};


/* hotffi_queue_push(): queued, and a parked poller is owed a wake-up */
#define HOTFFI_QUEUE_OWED      1
/* hotffi_queue_push(): refused, the runtime holds max_inflight tasks */
#define HOTFFI_QUEUE_INFLIGHT  -10


/* thread: any.  max >= 1.  Returns NULL when out of memory. */
hotffi_queue_t *hotffi_queue_create(uint32_t max);

/* thread: any, once no thread can reach q any more. */
void hotffi_queue_destroy(hotffi_queue_t *q);

/*
 * thread: event loop.  Never blocks.  Queued: HOTFFI_OK when a spinning
 * poller (or none at all) will see the task, HOTFFI_QUEUE_OWED when a
 * parked poller is owed a wake-up, which is not paid yet (see
 * hotffi_queue_wake()).  Refused: HOTFFI_BUSY when full,
 * HOTFFI_QUEUE_INFLIGHT when the runtime holds max_inflight tasks,
 * HOTFFI_DECLINED when stopped, HOTFFI_ERROR when the ring could not grow.
 * task: ownership passes to the queue when queued only; each queued task
 * must come back through hotffi_queue_answered() or hotffi_queue_cancel().
 */
int hotffi_queue_push(hotffi_queue_t *q, hotffi_task_t *task);

/* thread: event loop.  A pushed task is back (answered, skipped, failed). */
void hotffi_queue_answered(hotffi_queue_t *q);

/*
 * thread: event loop.  Takes task out of the ring if no poll took it yet:
 * HOTFFI_OK, and task is the caller's again (it counts as back); otherwise
 * HOTFFI_DECLINED, and task stays where it is.
 */
int hotffi_queue_cancel(hotffi_queue_t *q, hotffi_task_t *task);

/* thread: event loop.  Wakes the parked pollers that pushes owe a wake-up. */
void hotffi_queue_wake(hotffi_queue_t *q);

/*
 * thread: runtime.  Blocks; NULL once port is stopped, or once the queue is
 * stopped and empty.
 */
hotffi_task_t *hotffi_queue_poll(hotffi_queue_t *q, hotffi_port_t *port);

/*
 * thread: runtime.  Blocks like poll, then takes up to max (>= 1) tasks in
 * FIFO order into tasks; returns how many, 0 when poll would return NULL.
 */
uint32_t hotffi_queue_poll_batch(hotffi_queue_t *q, hotffi_port_t *port,
    hotffi_task_t **tasks, uint32_t max);

/*
 * thread: any; one at a time per port.  Never blocks.  As poll_batch, but
 * returns 0 at once when nothing may be taken now, and takes a task only
 * when fits(arg, task) says 1, in FIFO order: the first that does not fit
 * stops the take.  fits runs under q->mtx and may only look at the task.
 */
uint32_t hotffi_queue_poll_fit(hotffi_queue_t *q, hotffi_port_t *port,
    hotffi_task_t **tasks, uint32_t max,
    int (*fits)(void *arg, hotffi_task_t *task), void *arg);

/* thread: any.  Idempotent. */
void hotffi_queue_stop(hotffi_queue_t *q);

/* thread: any.  Ends port's pollers only; idempotent. */
void hotffi_queue_stop_port(hotffi_queue_t *q, hotffi_port_t *port);

/* thread: any.  Lets port's pollers take tasks (see hotffi_port.h). */
void hotffi_queue_open_port(hotffi_queue_t *q, hotffi_port_t *port);

/*
 * thread: event loop.  Never blocks.  Takes up to max queued tasks into
 * tasks, oldest first, and returns how many: for failing them when no
 * version is left to serve them.  Taking the last task of a stopped queue
 * ends hotffi_queue_wait_drained().
 */
uint32_t hotffi_queue_take(hotffi_queue_t *q, hotffi_task_t **tasks,
    uint32_t max);

/* thread: any but the event loop.  Blocks until stopped and empty. */
void hotffi_queue_wait_drained(hotffi_queue_t *q);

/* thread: any.  Tasks waiting to be polled. */
uint32_t hotffi_queue_depth(hotffi_queue_t *q);


#endif /* HOTFFI_QUEUE_H */
