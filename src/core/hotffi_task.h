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
 * Tasks are never given back to malloc while their hub lives: a freed task
 * goes onto the hub's free list (event loop only, so no lock) and the next
 * call takes it back, most recently used first.  So a task's address and
 * its slot number stay the same for ever, and a slot is reused only once
 * the runtime is done with its previous request.
 */

#ifndef HOTFFI_TASK_H
#define HOTFFI_TASK_H


#include <stdatomic.h>

#include "hotffi_core.h"


typedef enum {
    HOTFFI_TASK_CALL = 0,
    HOTFFI_TASK_RETIRE        /* a version's threads are gone (see version) */
} hotffi_task_kind_e;


struct hotffi_task_s {
    hotffi_task_t       *next;       /* completion list; locks: hub->mtx */
    hotffi_hub_t        *hub;        /* outlives the task */
    hotffi_runtime_t    *rt;         /* holds a reference on rt */
    hotffi_version_t    *version;    /* RETIRE only: whose reaper is done */

    /* event loop only */
    hotffi_group_t      *group;      /* NULL once finished or abandoned */
    hotffi_task_t       *gprev;
    hotffi_task_t       *gnext;
    void                *waiter;     /* host's wake-up object, hub frees it */
    unsigned             kind:1;
    unsigned             done:1;     /* answered and drained */

    atomic_int           cancelled;  /* event loop writes, runtime reads */

    uint64_t             posted;     /* hotffi_spin_now(), event loop */

    /* written by the runtime before respond() */
    uint64_t             answered;   /* hotffi_spin_now(), in respond() */
    int                  rc;
    char                *rsp;        /* malloc()'ed by the runtime */
    size_t               rsp_len;

    const char          *req;        /* borrowed from the caller, see above;
                                        NULL for a call without one */
    size_t               req_len;
    uint32_t             slot;       /* this task's number in its hub */
};


/*
 * thread: event loop.  req: borrowed until hotffi_task_free(), and
 * req[len] must be a NUL (for runtimes that treat requests as strings);
 * NULL is a call without a request (Lua's nil), which the runtime sees as
 * NULL with length 0, as on lua-resty-ffi.  Returns NULL when out of
 * memory.
 */
hotffi_task_t *hotffi_task_create(hotffi_hub_t *hub, hotffi_runtime_t *rt,
    const char *req, size_t len);

/*
 * thread: event loop.  Frees rsp and the waiter too; drops the rt ref; the
 * task goes back to the hub's free list.
 */
void hotffi_task_free(hotffi_task_t *task);

/* thread: event loop, hub teardown.  Gives the free list back to malloc. */
void hotffi_task_free_list(hotffi_hub_t *hub);


#endif /* HOTFFI_TASK_H */
