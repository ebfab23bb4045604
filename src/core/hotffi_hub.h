/*
 * hotffi_hub.h -- one per host process (per nginx worker): where answered
 * tasks come back, and how the host's event loop learns of them.
 *
 * DESIGN
 * Runtime threads append answered tasks to one FIFO list under mtx.  Only
 * the append that finds the list empty writes the eventfd, so a burst of
 * answers costs one write and one wake-up of the event loop, which takes the
 * whole list at once.  The drain reads the eventfd before it takes the list:
 * an answer appended in between is then either taken now or announced by a
 * fresh write, never lost (at worst one wake-up finds the list empty).
 *
 * While the event loop spins for an answer (hotffi_call_spin()), it sets
 * `spinning` and takes answers itself as `ready` shows them, and appends
 * write no eventfd at all: spinning is read under mtx, and spin_end clears
 * it and takes the list in one critical section, so an answer appended
 * without a write is always taken by the spinner.
 *
 * Calls made while others are in flight wake a parked runtime thread late:
 * the runtime's queue goes on the `wakes` list and the host is asked
 * (defer) to call hotffi_hub_flush_wakes() once its event loop has handled
 * everything that was ready, so that the requests of one loop iteration
 * cost one futex wake per queue (see hotffi_queue_wake()); a direct
 * port's calls are sent there too, in one batch per turn.  A lone call
 * wakes at once: nothing else could share the wake-up, and its latency is
 * the point.  A queue is taken off the list before it is destroyed
 * (hotffi_hub_forget_queue()).
 *
 * The hub knows nothing above it: a drained task goes to its own handler
 * (hotffi_task.h), and the runtimes the hub lists for its host are freed at
 * teardown through free_runtime, which the runtime layer sets.
 *
 * Runtimes' log lines (hotffi_log(), hotffi_logbuf.h) ride the same
 * eventfd: the push that makes hub->log non-empty writes it, and the drain
 * hands the lines to the host's logger before it takes the answers.
 *
 * The host injects how a waiting caller is woken and freed, how a wake-up
 * is deferred, and a logger, so the core needs no nginx or Lua header.
 *
 * Direct ports (hotffi_direct.h) are served by the event loop itself: an
 * isolated runtime's answers wait in a ring, not on `done`.  The hub lists
 * them (directs) and, wherever it takes the list, asks each to take its
 * answers first (take), which complete their tasks onto `done` without an
 * eventfd write (hotffi_hub_complete_local()); the drain then asks each to
 * be woken through the eventfd again (arm), a spin not to (disarm).  The
 * library that attached a direct port detaches it from its own thread;
 * direct_mtx, held around every call into a port, makes the detach wait
 * for a take or pump in progress and every later one skip the port.
 *
 * locks: mtx guards head and tail, and orders spinning; direct_mtx the
 * directs list and each port's data; the atomics are hints read without
 * them; everything else is event loop only.
 */

#ifndef HOTFFI_HUB_H
#define HOTFFI_HUB_H


#include <pthread.h>
#include <stdatomic.h>

#include "hotffi_core.h"
#include "hotffi_list.h"
#include "hotffi_logbuf.h"
#include "hotffi_task.h"


typedef struct {
    /* thread: event loop.  The task is answered: resume its caller. */
    void   (*wake)(void *waiter);
    /* thread: event loop.  The task is gone: free its waiter. */
    void   (*release)(void *waiter);
    /*
     * thread: event loop.  Have hotffi_hub_flush_wakes() called on this
     * thread soon, after the events ready now.  NULL: wake-ups are never
     * deferred.
     */
    void   (*defer)(void);
    /* thread: event loop.  msg is borrowed. */
    void   (*log)(void *log_ctx, int level, const char *msg);
    void    *log_ctx;
    /*
     * thread: event loop.  A runtime's line (hotffi_log()), level nginx's
     * (1 emerg .. 8 debug), line borrowed, len bytes, no NUL.  NULL: the
     * host keeps no runtime lines.
     */
    void   (*line)(void *log_ctx, int level, const char *line, size_t len);
    int      line_level;     /* the most verbose level line writes */
} hotffi_host_t;


/*
 * A direct port's entry points, the runtime library's (static).  Each is
 * called with the hub's direct_mtx held, on the event loop.
 */
typedef struct {
    /*
     * Sends the calls queued for the port (hotffi_direct_poll()); returns
     * 1 when that woke a parked peer (the caller had better not spin for
     * the answer), else 0.
     */
    int       (*pump)(void *data);
    /*
     * Takes the answers waiting (hotffi_direct_respond()) and sends what
     * they made room for; then, with arm, asks to be woken through the
     * hub's eventfd for the next answer, else (a spin watches) not to be.
     * Returns how many tasks it answered.
     */
    unsigned  (*take)(void *data, int arm);
} hotffi_direct_ops_t;


struct hotffi_direct_s {
    hotffi_list_t               link;   /* on hub->directs; locks:
                                           hub->direct_mtx */
    const hotffi_direct_ops_t  *ops;    /* the library's, static */
    void                       *data;   /* the library's; NULL once
                                           detached; locks: direct_mtx */
    hotffi_hub_t               *hub;    /* borrowed: outlives the port */
};


typedef struct {
    uint64_t   wakeups;         /* drains that found work */
    uint64_t   completions;     /* tasks taken by those drains */
    uint64_t   spin_hits;       /* calls answered while the loop spun */
    uint64_t   spin_misses;     /* spins that ended unanswered */
} hotffi_hub_stats_t;


struct hotffi_hub_s {
    pthread_mutex_t      mtx;
    hotffi_list_t        done;       /* answered tasks, oldest first, by
                                        task->link; locks: mtx */
    int                  efd;
    atomic_int           spinning;   /* written by the event loop */
    atomic_int           ready;      /* done is not empty */
    hotffi_logbuf_t      log;        /* runtimes' lines, drained with the
                                        answers; its own lock */

    /* event loop only */
    hotffi_host_t        host;
    hotffi_hub_stats_t   stats;      /* statistics only: never read here */
    uint64_t             callers;    /* calls posted, not yet finished or
                                        given up (the call layer's) */
    hotffi_list_t        calls;      /* those calls, by task->clink (the
                                        call layer's) */
    uint32_t             spin_streak;  /* calls in a row answered while
                                          the loop spun: hotffi_call_spin() */
    hotffi_task_pool_t   tasks;
    hotffi_list_t        runtimes;   /* every runtime not yet freed, by
                                        the runtime layer's link */
    /* set by the runtime layer: frees the runtime of link (teardown) */
    void               (*free_runtime)(hotffi_list_t *link);
    hotffi_list_t        wakes;      /* queues owed a wake-up, or
                                        whose direct port has calls to
                                        send, by q->wake_link */

    pthread_mutex_t      direct_mtx;
    hotffi_list_t        directs;    /* direct ports, by their link;
                                        locks: direct_mtx */
    atomic_uint          ndirect;    /* how many: a hint, so a hub
                                        without any takes no lock */
};


/*
 * thread: event loop.  host is copied.  Returns NULL and a static message in
 * *err on failure.
 */
hotffi_hub_t *hotffi_hub_create(const hotffi_host_t *host, const char **err);

/*
 * thread: event loop, when no runtime thread can reach the hub any more
 * (tests; a worker simply exits).  Frees tasks still on the list.
 */
void hotffi_hub_destroy(hotffi_hub_t *hub);

/* The descriptor that becomes readable when answers are waiting. */
int hotffi_hub_fd(hotffi_hub_t *hub);

/* thread: any.  task: ownership passes to the hub. */
void hotffi_hub_complete(hotffi_hub_t *hub, hotffi_task_t *task);

/*
 * thread: event loop, inside a direct port's take only.  As
 * hotffi_hub_complete(), without the eventfd write: the loop takes the
 * list right after the take.
 */
void hotffi_hub_complete_local(hotffi_hub_t *hub, hotffi_task_t *task);

/*
 * thread: whoever took tasks[0..got-1] from a queue, which are its own now.
 * Stamps those large enough to teach the spin policy taken (their service
 * time starts: hotffi_spin.h), answers
 * those whose caller gave up before they were taken (with
 * HOTFFI_TASK_CANCELLED, to their hub, which frees them), and returns how
 * many live ones it kept, in order, at the start of tasks.
 */
int hotffi_hub_taken(hotffi_task_t **tasks, int got);

/*
 * thread: any.  Lists d (the caller's, valid until removed) or takes it
 * off the list, after which no call reaches d->ops (remove waits for one
 * in progress).  Idempotent.
 */
void hotffi_hub_direct_add(hotffi_hub_t *hub, hotffi_direct_t *d);
void hotffi_hub_direct_remove(hotffi_hub_t *hub, hotffi_direct_t *d);

/*
 * thread: event loop.  d's pump, unless d was removed meanwhile: 1 when
 * it woke a parked peer.
 */
int hotffi_hub_direct_pump(hotffi_hub_t *hub, hotffi_direct_t *d);

/*
 * thread: any.  Wakes the event loop to drain (a log line was pushed on an
 * empty hub->log); wake-ups pending coalesce.
 */
void hotffi_hub_notify(hotffi_hub_t *hub);

/*
 * thread: any.  The process's hub -- the first made and not yet destroyed,
 * the nginx worker's -- or NULL: where lines that name no runtime go.
 */
hotffi_hub_t *hotffi_hub_process(void);

/* thread: event loop.  Handles every answer waiting; returns how many. */
unsigned hotffi_hub_drain(hotffi_hub_t *hub);

/*
 * thread: event loop.  Between begin and end, answers are announced by
 * `ready` only, and taken with hotffi_hub_take() (no eventfd read: nothing
 * was written for them).  end takes what is left.
 */
void hotffi_hub_spin_begin(hotffi_hub_t *hub);
void hotffi_hub_spin_end(hotffi_hub_t *hub);

/* thread: event loop.  Handles the answers waiting, if ready says so. */
unsigned hotffi_hub_take(hotffi_hub_t *hub);

/*
 * thread: event loop.  q (borrowed) owes a wake-up (its push said so):
 * pays it now, or, with other calls in flight and a host that can defer,
 * in hotffi_hub_flush_wakes(), which also has q's direct port, if any,
 * send what is queued.
 */
void hotffi_hub_wake(hotffi_hub_t *hub, hotffi_queue_t *q);

/* thread: event loop.  Pays every deferred wake-up. */
void hotffi_hub_flush_wakes(hotffi_hub_t *hub);

/* thread: event loop.  q is about to be destroyed: it is owed nothing. */
void hotffi_hub_forget_queue(hotffi_hub_t *hub, hotffi_queue_t *q);


/*
 * thread: event loop.  The one way the core wakes a waiter (borrowed; may
 * be NULL) through the host.
 */
static inline void
hotffi_hub_waiter_wake(hotffi_hub_t *hub, void *waiter)
{
    if (waiter && hub->host.wake) {
        hub->host.wake(waiter);
    }
}


/*
 * thread: event loop.  The one way the core frees a waiter through the
 * host: *waiter (owned by the hub; may be NULL) is released and becomes
 * NULL.
 */
static inline void
hotffi_hub_waiter_release(hotffi_hub_t *hub, void **waiter)
{
    if (*waiter && hub->host.release) {
        hub->host.release(*waiter);
    }

    *waiter = NULL;
}

/* thread: event loop.  Formats and passes a line to the host's logger. */
void hotffi_hub_log(hotffi_hub_t *hub, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));


#endif /* HOTFFI_HUB_H */
