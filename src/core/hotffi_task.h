/*
 * hotffi_task.h -- one call in flight: the request, the answer, and who owns
 * the task at each moment.
 *
 * DESIGN
 * A task is created on the event loop by hotffi_call_post() and carries its
 * request bytes in the same allocation.  Ownership then moves with the task:
 *
 *   event loop --push--> request queue --poll--> runtime thread
 *        ^                                            |
 *        +------- hub drain <-- completion list <--respond
 *
 * The runtime may read req and must write rc/rsp before respond(); the hub's
 * mutex orders those writes before the event loop reads them.  `cancelled`
 * is the only field both sides touch concurrently, so it is atomic.  All
 * other fields belong to the event loop.
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

    /* written by the runtime before respond() */
    int                  rc;
    char                *rsp;        /* malloc()'ed by the runtime */
    size_t               rsp_len;

    size_t               req_len;
    char                 req[];      /* NUL-terminated for the runtime's sake */
};


/* thread: event loop.  Copies req; returns NULL when out of memory. */
hotffi_task_t *hotffi_task_create(hotffi_hub_t *hub, hotffi_runtime_t *rt,
    const char *req, size_t len);

/* thread: event loop.  Frees rsp and the waiter too; drops the rt ref. */
void hotffi_task_free(hotffi_task_t *task);


#endif /* HOTFFI_TASK_H */
