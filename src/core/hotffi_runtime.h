/*
 * hotffi_runtime.h -- a loaded runtime: its library, its request queue, its
 * counters, and its life from libffi_init() to the moment its memory can go.
 *
 * DESIGN
 * A runtime is freed only when nothing can reach it: the host's handle is
 * released, no task refers to it, and it has retired.  Retiring needs proof
 * that the library's threads are gone, which only libffi_fini() gives: after
 * unload a reaper thread waits until every queued task was handed out, calls
 * libffi_fini() and sends a RETIRE task through the hub, so that the queue
 * is freed and the library closed on the event loop.  Without libffi_fini()
 * a runtime never retires: its queue stays allocated (it is small once
 * empty) for threads that may still poll it, and its library stays open.
 *
 * Everything here runs on the event loop except the reaper.
 */

#ifndef HOTFFI_RUNTIME_H
#define HOTFFI_RUNTIME_H


#include <pthread.h>

#include "hotffi_core.h"
#include "hotffi_library.h"
#include "hotffi_spin.h"


typedef struct {
    uint32_t   max_queue;      /* tasks waiting at most; 0 means 65536 */
    unsigned   global:1;       /* RTLD_GLOBAL */
    unsigned   unpin:1;        /* dlclose() once retired */
} hotffi_runtime_opts_t;


typedef struct {
    uint64_t   calls;          /* accepted by the queue */
    uint64_t   ok;             /* answered with rc 0 */
    uint64_t   failed;         /* answered with another rc */
    uint64_t   abandoned;      /* given up by the caller before the answer */
    uint64_t   rejected;       /* refused: queue full or unloaded */
    uint64_t   inflight;       /* accepted, not yet answered */
} hotffi_runtime_stats_t;


struct hotffi_runtime_s {
    hotffi_hub_t            *hub;
    hotffi_runtime_t        *prev;     /* hub->runtimes */
    hotffi_runtime_t        *next;
    char                    *name;     /* "lib&cfg" or "lib", for messages */
    hotffi_library_t         lib;
    hotffi_queue_t          *queue;    /* the ABI's tq; NULL once retired */
    hotffi_task_t           *retire;   /* sent by the reaper */
    pthread_t                reaper;   /* joined when RETIRE arrives */
    unsigned                 refs;
    unsigned                 unpin:1;
    unsigned                 unloaded:1;
    unsigned                 retired:1;
    hotffi_runtime_stats_t   stats;
    hotffi_spin_t            spin;     /* the event loop's, for its calls */
};


/*
 * thread: event loop.  Opens lib, makes a queue and calls libffi_init() with
 * a NUL-terminated copy of cfg (NULL when cfg is NULL).  Returns the runtime
 * with one reference for the caller, or NULL with the reason in err.
 */
hotffi_runtime_t *hotffi_runtime_load(hotffi_hub_t *hub, const char *lib,
    const char *cfg, size_t cfg_len, const hotffi_runtime_opts_t *opts,
    char *err, size_t errlen);

/*
 * thread: event loop.  Stops the queue: tasks already queued are still
 * handed out, then every poll returns NULL.  Idempotent.
 */
void hotffi_runtime_unload(hotffi_runtime_t *rt);

/* thread: event loop */
void hotffi_runtime_ref(hotffi_runtime_t *rt);
void hotffi_runtime_unref(hotffi_runtime_t *rt);

/* thread: event loop.  The hub drained rt's RETIRE task. */
void hotffi_runtime_retired(hotffi_task_t *retire);

/*
 * thread: event loop.  Frees rt whatever its state: only for tearing a hub
 * down once no runtime thread can run (tests).
 */
void hotffi_runtime_forget(hotffi_runtime_t *rt);


#endif /* HOTFFI_RUNTIME_H */
