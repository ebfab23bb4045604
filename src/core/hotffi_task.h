/*
 * hotffi_task.h -- one call in flight: the request, the answer, and who owns
 * the task at each moment.
 *
 * DESIGN
 * A task is created on the event loop by hotffi_call_post().  It does not
 * copy the request: req points at the caller's bytes, which the caller keeps
 * valid and unchanged until the task is freed (resty.hotffi keeps the Lua
 * string referenced by the task's slot, see lua/resty/hotffi.lua).
 * Ownership then moves with the task:
 *
 *   event loop --push--> request queue --poll--> runtime thread
 *        ^                                            |
 *        +------- hub drain <-- completion list <--respond
 *
 * The runtime may read req and must write rc/rsp before respond(); the hub's
 * mutex orders those writes before the event loop reads them.  `cancelled`
 * is the only field both sides touch concurrently, so it is atomic.  All
 * other fields belong to the event loop.
 *
 * A finished task carries its own completion handler, set by whoever made
 * it (the call layer for a call, the runtime layer for a version's REAPED
 * task), as nginx's thread pool tasks carry task->event.handler: the hub
 * drains the completion list and calls task->handler, and so depends on
 * nothing above it.
 *
 * Tasks are never given back to malloc while their pool lives: a freed task
 * goes onto the pool's free list (event loop only, so no lock) and the next
 * call takes it back, most recently used first.  So a task's address and
 * its slot number stay the same for ever, and a slot is reused only once
 * the runtime is done with its previous request.  This layer knows no rt
 * and no waiter: the call layer takes and drops those (hotffi_call.c).
 */

#ifndef HOTFFI_TASK_H
#define HOTFFI_TASK_H


#include <stdatomic.h>

#include "hotffi_core.h"
#include "hotffi_list.h"


/*
 * thread: event loop.  What becomes of a task the hub drained; task: the
 * handler's from then on.
 */
typedef void (*hotffi_task_handler_pt)(hotffi_task_t *task);


/* the tasks of one hub (hub->tasks); event loop only */
typedef struct {
    hotffi_list_t        free;       /* freed tasks, most recent first */
    uint32_t             slots;      /* tasks ever allocated */
    uint64_t             live;       /* statistics only: taken, not freed */
} hotffi_task_pool_t;


struct hotffi_task_s {
    /* the hub's completion list (locks: hub->mtx), or the pool's free list
       (event loop only): never both at once */
    hotffi_list_t        link;
    hotffi_task_handler_pt  handler; /* set by the task's maker */
    void                *data;       /* the handler's: REAPED's version */
    hotffi_hub_t        *hub;        /* outlives the task */
    hotffi_runtime_t    *rt;         /* a call's: the call layer holds a
                                        reference on it */

    /* event loop only */
    hotffi_list_t        glink;      /* its group's list; unlinked in none */
    hotffi_list_t        clink;      /* hub->calls while a caller waits */
    void                *waiter;     /* host's wake-up object, hub frees it */
    unsigned             done:1;     /* answered and drained */
    unsigned             gone:1;     /* given up by the host for its
                                        caller (hotffi_call_give_up_all()) */
    unsigned             woke:1;     /* its push owed a parked runtime
                                        thread a wake-up (HOTFFI_QUEUE_OWED):
                                        the answer comes late, see
                                        hotffi_call_spin() */
    unsigned             resting:1;  /* posted while its runtime rested
                                        from missed spins */

    atomic_int           cancelled;  /* event loop writes, runtime reads */

    uint64_t             posted;     /* hotffi_spin_now(), event loop:
                                        the start of its latency */

    /* written by the runtime: when its poll took the task, before respond() */
    uint64_t             taken;      /* hotffi_spin_now(); 0 if not taken,
                                        or too small to teach a rate */
    uint64_t             answered;   /* hotffi_spin_now(), in respond() */
    int                  rc;
    char                *rsp;        /* malloc()'ed by the runtime */
    size_t               rsp_len;

    const char          *req;        /* borrowed from the caller, see above;
                                        NULL for a call without one */
    size_t               req_len;
    uint32_t             slot;       /* this task's number in its hub */
};


/* thread: event loop */
void hotffi_task_pool_init(hotffi_task_pool_t *pool);

/*
 * thread: event loop.  A task of hub for rt (both borrowed, stored), from
 * pool, with handler.  req: borrowed until hotffi_task_free(), and
 * req[len] must be a NUL (for runtimes that treat requests as strings);
 * NULL is a call without a request (Lua's nil), which the runtime sees as
 * NULL with length 0, as on lua-resty-ffi.  Returns NULL when out of
 * memory.
 */
hotffi_task_t *hotffi_task_create(hotffi_task_pool_t *pool,
    hotffi_hub_t *hub, hotffi_runtime_t *rt, hotffi_task_handler_pt handler,
    const char *req, size_t len);

/*
 * thread: event loop.  Frees rsp; the task goes back to pool's free list.
 * Its waiter and its rt reference must be gone already.
 */
void hotffi_task_free(hotffi_task_pool_t *pool, hotffi_task_t *task);

/*
 * thread: whoever answers task (a runtime thread, or the event loop for a
 * direct port).  Records the answer: rc, rsp (ownership passes to the
 * task; NULL is no answer), its length (<= 0: strlen(rsp), lua-resty-ffi's
 * convention) and when it came, for the spin policy.  The caller then
 * hands the task to its hub.
 */
void hotffi_task_answer(hotffi_task_t *task, int rc, char *rsp,
    int rsp_len);

/* thread: event loop, hub teardown.  Gives the free list back to malloc. */
void hotffi_task_pool_free(hotffi_task_pool_t *pool);


#endif /* HOTFFI_TASK_H */
