/*
 * hotffi_runtime.h -- a loaded runtime: the handle Lua holds, its request
 * queue, its counters, and its versions (hotffi_version.h) from the first
 * load, through in-place reloads, to the moment its memory can go.
 *
 * DESIGN
 * The handle and the queue stay for the runtime's whole life; only the
 * version serving the queue changes.  A load opens the library and starts
 * its libffi_init() on a thread (hotffi_version.h): the runtime exists at
 * once and calls to it queue, while the event loop serves others; when
 * init returns, the port opens, or -- init failed -- the runtime is
 * unloaded and the calls queued meanwhile fail with init's error.  The
 * host waits for the start on a waiter (a coroutine that can wait), or
 * blocks in hotffi_runtime_wait() where it cannot.  A reload opens the new
 * library first
 * (a missing file or symbol changes nothing), then stops the old version's
 * port -- calls keep queueing -- and reaps it: its libffi_retire() hands
 * back state.  Back on the event loop the new version starts on the same
 * queue with that state; if its libffi_init() fails, a clone of the old
 * version starts with the same state instead (rollback) and the reload
 * reports the error.  If even that fails, no version can serve: the runtime
 * is unloaded and its queued calls fail at once.
 *
 * A runtime is freed only when nothing can reach it: the host's handle is
 * released, no task refers to it, and it has retired -- unloaded, its queue
 * drained and every version it ever ran proved gone.  A version without
 * libffi_fini() or libffi_retire() proves nothing: such a runtime never
 * retires, and its queue stays allocated (small once empty) for threads
 * that may still poll it.
 *
 * Everything here runs on the event loop; reapers only send REAPED tasks.
 */

#ifndef HOTFFI_RUNTIME_H
#define HOTFFI_RUNTIME_H


#include "hotffi_core.h"
#include "hotffi_err.h"
#include "hotffi_list.h"
#include "hotffi_metrics.h"
#include "hotffi_spin.h"


typedef struct {
    const char *name;          /* for messages, borrowed; NULL: "lib&cfg" */
    uint32_t   max_queue;      /* tasks waiting at most; 0 means 65536 */
    uint32_t   max_inflight;   /* tasks taken by the runtime and not yet
                                  answered, at most; 0 means 65536 */
    unsigned   global:1;       /* RTLD_GLOBAL */
    unsigned   unpin:1;        /* dlclose() once reaped */
} hotffi_runtime_opts_t;


typedef struct {
    uint64_t   calls;          /* accepted by the queue */
    uint64_t   ok;             /* answered with rc 0 */
    uint64_t   failed;         /* answered with another rc */
    uint64_t   abandoned;      /* given up by the caller before the answer */
    uint64_t   rejected;       /* refused: queue full, unloaded, no version */
    uint64_t   full;           /* of which: max_queue calls waiting */
    uint64_t   inflight_full;  /* of which: max_inflight calls taken */
    uint64_t   timeouts;       /* given up at the caller's timeout (counted
                                  in abandoned too) */
    uint64_t   dropped;        /* accepted, never answered by the runtime:
                                  no version left to serve them, or the
                                  host gave them up (a worker's exit) */
    uint64_t   inflight;       /* accepted, not yet answered */
    uint64_t   reloads;        /* reloads that started the new version */
    uint64_t   reload_failures;
} hotffi_runtime_stats_t;


/* the last reload that ended */
typedef struct {
    int        ok;
    uint64_t   from;           /* version numbers */
    uint64_t   to;             /* the version it started, or tried to:
                                  when it failed, from serves again */
    double     started;        /* wall clock, seconds since the epoch */
    double     seconds;        /* how long it took */
    int        overdue;        /* the old version had not retired */
    char       error[HOTFFI_ERR_MAX];  /* why it failed; "" when ok */
} hotffi_reload_result_t;


struct hotffi_runtime_s {
    hotffi_hub_t            *hub;
    hotffi_list_t            link;      /* on hub->runtimes */
    char                    *name;      /* the host's name for it, or
                                           "lib&cfg" or "lib": messages */
    hotffi_queue_t          *queue;     /* NULL once closed */
    hotffi_version_t        *current;   /* serving; NULL while starting or
                                           reloading */
    hotffi_version_t        *starting;  /* whose init thread runs: the
                                           load's, the reload's next one or
                                           its rollback */
    hotffi_list_t            kept;      /* versions that proved nothing,
                                           kept for threads that may poll,
                                           by v->kept_link, newest first */

    /* a reload in progress: old retires, then next starts */
    hotffi_version_t        *old;
    hotffi_version_t        *next_version;
    void                    *waiter;    /* the host's, woken when it (or
                                           the load's start) ends */
    double                   reload_started;   /* monotonic seconds */
    double                   reload_wall;
    double                   load_started;     /* monotonic seconds */

    /* what the last reload tried, for its report and audit line */
    uint64_t                 tried_number;
    char                    *tried_lib;
    char                    *tried_cfg;       /* NUL-terminated; NULL: nil */
    size_t                   tried_cfg_len;

    uint64_t                 versions;  /* numbers handed out */
    unsigned                 reapers;   /* versions being reaped */
    unsigned                 refs;
    unsigned                 global:1;
    unsigned                 unpin:1;
    unsigned                 unloaded:1;
    unsigned                 closed:1;
    unsigned                 reloaded:1;   /* a reload ended: last_reload
                                              is valid */
    hotffi_runtime_stats_t   stats;
    hotffi_metrics_t         metrics;  /* the call layer's, for scrapes */
    hotffi_reload_result_t   last_reload;  /* valid once reloaded */
    char                     why[HOTFFI_ERR_MAX];  /* a reload's failure
                                                      while it rolls back */

    /* the load's start: HOTFFI_AGAIN while init runs, then HOTFFI_OK or
       HOTFFI_ERROR with libffi_init()'s rc and the error */
    int                      start_rc;
    int                      init_rc;
    char                     start_error[HOTFFI_ERR_MAX];
    hotffi_spin_t            spin;     /* the event loop's, for its calls */
    uint32_t                 service_rate;  /* the runtime's ns per KiB of
                                               request, learned (see
                                               hotffi_spin.h) */

    /* the last warning (hotffi_runtime_warn()): when, and the counts then */
    uint64_t                 warned_at;   /* hotffi_spin_now() */
    hotffi_runtime_stats_t   warned;
};


/*
 * Every load, reload and unload, and every refusal of one, writes one
 * line to the audit trail (hotffi_audit.h).
 *
 * thread: event loop.  Opens lib, makes a queue and starts libffi_init() on
 * the init thread with a NUL-terminated copy of cfg (NULL when cfg is
 * NULL).  Returns the runtime with one reference for the caller, starting:
 * calls queue until init returns, and waiter (may be NULL; the hub owns it
 * from now on, see hotffi_runtime_reload_release()) is woken then; read
 * the outcome with hotffi_runtime_started().  NULL with the reason in err
 * when the library could not be opened or no thread made: the caller
 * keeps waiter.
 */
hotffi_runtime_t *hotffi_runtime_load_start(hotffi_hub_t *hub,
    const char *lib, const char *cfg, size_t cfg_len,
    const hotffi_runtime_opts_t *opts, void *waiter, char *err,
    size_t errlen);

/*
 * thread: event loop.  The outcome of rt's start: HOTFFI_AGAIN while init
 * runs, HOTFFI_OK once it serves, HOTFFI_ERROR when init failed (rt is
 * unloaded), with the reason in err and, in *init_rc (when not NULL), what
 * libffi_init() returned.
 */
int hotffi_runtime_started(hotffi_runtime_t *rt, int *init_rc, char *err,
    size_t errlen);

/*
 * thread: event loop, which it blocks: for a host that cannot wait
 * otherwise (nginx's init_worker_by_lua*).  Handles the hub's answers until
 * rt's start or reload has ended (HOTFFI_OK), for timeout_ns at most (0:
 * no limit; HOTFFI_AGAIN when it had not ended by then).
 */
int hotffi_runtime_wait(hotffi_runtime_t *rt, uint64_t timeout_ns);

/*
 * thread: event loop.  Stops the queue: tasks already queued are still
 * handed out, then every poll returns NULL.  Idempotent.
 */
void hotffi_runtime_unload(hotffi_runtime_t *rt);

/*
 * thread: event loop.  Replaces the serving version in place.  lib NULL
 * keeps the library path, cfg NULL with keep_cfg keeps the configuration
 * (otherwise cfg is the new one, NULL meaning nil); handover asks the old
 * version's libffi_retire() for state.  Returns
 *   HOTFFI_OK       it ended already (see rt->last_reload);
 *   HOTFFI_AGAIN    it goes on: waiter (the hub owns it from now on) is
 *                   woken through the host when it ends;
 *   HOTFFI_DECLINED the runtime is unloaded, HOTFFI_BUSY another reload
 *                   runs or the load's init does, HOTFFI_ERROR the new
 *                   library could not be opened: nothing changed, err says
 *                   why.
 */
int hotffi_runtime_reload(hotffi_runtime_t *rt, const char *lib,
    const char *cfg, size_t cfg_len, int keep_cfg, int handover,
    void *waiter, char *err, size_t errlen);

/*
 * thread: event loop.  The caller of a reload or a load's start stopped
 * waiting: frees waiter, unless a later reload already replaced (and
 * released) it.
 */
void hotffi_runtime_reload_release(hotffi_runtime_t *rt, void *waiter);

/*
 * thread: event loop.  The old version of the reload in progress took too
 * long to retire (a call it holds never ends, say): the next version starts
 * now, without state, and the old one is reaped whenever it retires; both
 * run meanwhile.  HOTFFI_OK when the next version is starting (the reload's
 * waiter is woken when it ends, rt->last_reload with overdue set),
 * HOTFFI_DECLINED when no reload waits for an old version.
 */
int hotffi_runtime_reload_overdue(hotffi_runtime_t *rt);

/*
 * thread: event loop.  Calls were refused, timed out or dropped (the
 * counters say so already): logs how many since the last such line, at
 * most once a second per runtime, so that an overload costs a line a
 * second, not one per call.  The first one logs at once; the ones that
 * follow within the second are in the next line, or only in the counters
 * when nothing follows.
 */
void hotffi_runtime_warn(hotffi_runtime_t *rt);

/* thread: event loop.  The serving version's number, 0 when none. */
uint64_t hotffi_runtime_version(hotffi_runtime_t *rt);

/* thread: event loop */
void hotffi_runtime_ref(hotffi_runtime_t *rt);
void hotffi_runtime_unref(hotffi_runtime_t *rt);

/* thread: event loop.  The runtime of a link on hub->runtimes. */
static inline hotffi_runtime_t *
hotffi_runtime_of(hotffi_list_t *link)
{
    return hotffi_list_data(link, hotffi_runtime_t, link);
}


#endif /* HOTFFI_RUNTIME_H */
