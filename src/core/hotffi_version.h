/*
 * hotffi_version.h -- one version of a runtime: a library, a configuration
 * and a port on the runtime's queue, from libffi_init() until the proof
 * that its threads are gone.
 *
 * DESIGN
 * A runtime (hotffi_runtime.h) keeps its queue and its handle for life; a
 * load starts its first version and every reload starts another.  A
 * version starts on a thread of its own (the init thread): libffi_init()
 * may take seconds (a Python import, a connection pool), and the event
 * loop serves meanwhile; calls queue, as the port opens only once init
 * returned 0.  The init thread then sends the version's START task through
 * the hub, and the runtime goes on from the event loop, as for REAPED
 * below.  Being a thread that ends, it also lets thread-local destructors
 * that init's code registers run (Rust's std does, in thread::spawn):
 * on the event loop's thread, which never ends, they would keep the
 * library mapped for ever.
 *
 * A version ends by being reaped: its port is stopped (or, on unload, the
 * queue drains), then a reaper thread of its own calls libffi_retire() --
 * which may hand back state -- or libffi_fini(), and sends the version's
 * REAPED task through the hub, so that the runtime goes on from the event
 * loop.  A library that exports neither cannot prove its threads gone: its
 * version is never reaped, its port stays allocated for threads that may
 * still poll it, and its library stays open -- unless the runtime was
 * loaded with unpin and is unloaded: then the reaper waits for the kernel
 * to show the threads that served the version gone (hotffi_poller.h), for
 * HOTFFI_UNPIN_GRACE_MS at most, and the version is proved, or kept.
 *
 * A version knows its runtime only through what the runtime lent it at
 * open (hotffi_version_owner_t): the REAPED task's handler, set by the
 * runtime layer, carries the end of a reaping back up.
 */

#ifndef HOTFFI_VERSION_H
#define HOTFFI_VERSION_H


#include <pthread.h>

#include "hotffi_core.h"
#include "hotffi_library.h"
#include "hotffi_list.h"
#include "hotffi_port.h"
#include "hotffi_task.h"


/* what a version borrows from its runtime, which outlives it */
typedef struct {
    hotffi_hub_t            *hub;
    hotffi_queue_t          *queue;
    const char              *name;      /* the runtime's, for messages */
    hotffi_runtime_t        *rt;        /* opaque here: for reaped */
    hotffi_task_handler_pt   started;   /* START's handler (event loop) */
    hotffi_task_handler_pt   reaped;    /* REAPED's handler (event loop) */
    unsigned                 global:1;  /* RTLD_GLOBAL */
    unsigned                 unpin:1;   /* dlclose() once proved gone */
} hotffi_version_owner_t;


struct hotffi_version_s {
    hotffi_port_t       port;        /* the ABI's tq */
    hotffi_version_owner_t  owner;   /* a copy */
    hotffi_library_t    lib;
    char               *lib_name;    /* as given to load or reload */
    char               *cfg;         /* NUL-terminated copy; NULL for nil */
    size_t              cfg_len;
    uint64_t            number;      /* 1 for the first load, then counts */
    hotffi_task_t      *start;       /* v's; in the hub's list from the
                                        init thread's complete() to the
                                        drain */
    pthread_t           starter;     /* joined when START arrives */
    char               *init_cfg;    /* the copy init gets; freed then */
    double              since;       /* when it began to serve, wall clock
                                        seconds; 0: it has not */
    hotffi_task_t      *reaped_task; /* v's; in the hub's list from the
                                        reaper's complete() to the drain */
    pthread_t           reaper;      /* joined when REAPED arrives */
    hotffi_list_t       kept_link;   /* on the runtime's kept list */
    /*
     * The bits share a word: the event loop writes them only before v's
     * reaper starts (final, handover) or after it was joined (proved), or
     * for a version never reaped (kept); the reaper only reads.
     */
    unsigned            proved:1;    /* reaped, and no thread of v runs */
    unsigned            kept:1;      /* never reapable: on the kept list */
    unsigned            final:1;     /* unload: wait for the queue to drain */
    unsigned            handover:1;  /* ask libffi_retire() for state */

    /* written by the init thread, read once START has arrived */
    int                 init_rc;     /* libffi_init()'s */

    /* written by the reaper, read once REAPED has arrived */
    int                 retire_rc;   /* libffi_retire()'s, or the proof's */
    char               *state;       /* malloc()'ed by the runtime, ours */
    size_t              state_len;
};


/*
 * thread: event loop.  Opens lib and copies owner (whose pointers it
 * borrows) and cfg (cfg_len bytes, or nil when cfg is NULL); does not start
 * anything.  Returns NULL with the reason in err.
 */
hotffi_version_t *hotffi_version_open(const hotffi_version_owner_t *owner,
    const char *lib, const char *cfg, size_t cfg_len, char *err,
    size_t errlen);

/*
 * thread: event loop.  A new version with v's library mapping (whatever the
 * file on disk is now) and configuration: a rollback's.
 */
hotffi_version_t *hotffi_version_clone(hotffi_version_t *v, char *err,
    size_t errlen);

/*
 * thread: event loop.  Starts v's init thread, which calls libffi_init() on
 * a fresh port and sends v's START task; state (borrowed until START has
 * arrived, may be NULL) is what hotffi_state() gives it.  HOTFFI_ERROR
 * with err set when no thread could be made: nothing was started.
 */
int hotffi_version_start(hotffi_version_t *v, const char *state,
    size_t state_len, char *err, size_t errlen);

/*
 * thread: event loop, in owner.started.  v's START task arrived: its init
 * thread is joined, and its port opened (HOTFFI_OK) or, when libffi_init()
 * failed, stopped, so that threads it started end (HOTFFI_ERROR, err says
 * why, v->init_rc what it returned).
 */
int hotffi_version_started(hotffi_version_t *v, char *err, size_t errlen);

/* Whether v's library can prove its threads gone (fini or retire). */
int hotffi_version_reapable(hotffi_version_t *v);

/*
 * thread: event loop.  Starts v's reaper; the version's port must be
 * stopped (or, with v->final, the queue).  HOTFFI_ERROR when no thread
 * could be made: v is then never reaped.
 */
int hotffi_version_reap(hotffi_version_t *v);

/*
 * thread: event loop, in owner.reaped.  v's REAPED task arrived: its reaper
 * is joined.
 */
void hotffi_version_reaped(hotffi_version_t *v);

/*
 * thread: event loop.  Closes v's library when the runtime was loaded with
 * unpin, logging when it stays mapped though no other version of the
 * runtime shares it (shared: one does).  Only for a reaped version (or one
 * never started).
 */
void hotffi_version_close(hotffi_version_t *v, int shared);

/* thread: event loop.  Frees v; its library must be closed or pinned. */
void hotffi_version_free(hotffi_version_t *v);


#endif /* HOTFFI_VERSION_H */
