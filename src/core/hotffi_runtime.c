/*
 * hotffi_runtime.c -- loading, reloading, unloading and retiring runtimes
 * (see hotffi_runtime.h).
 */

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hotffi_runtime.h"
#include "hotffi_audit.h"
#include "hotffi_hub.h"
#include "hotffi_queue.h"
#include "hotffi_spin.h"
#include "hotffi_task.h"
#include "hotffi_version.h"
#include "hotffi.h"


#define HOTFFI_DEFAULT_MAX_QUEUE     65536
#define HOTFFI_DEFAULT_MAX_INFLIGHT  65536
#define HOTFFI_WARN_EVERY_NS         1000000000
#define HOTFFI_NAME_MAX           256


static void hotffi_runtime_reap_final(hotffi_runtime_t *rt,
    hotffi_version_t *v);
static int hotffi_runtime_end_version(hotffi_runtime_t *rt,
    hotffi_version_t *v);
static void hotffi_runtime_keep(hotffi_runtime_t *rt, hotffi_version_t *v);
static void hotffi_runtime_started_handler(hotffi_task_t *start);
static void hotffi_runtime_reaped(hotffi_task_t *reaped);
static void hotffi_runtime_free_listed(hotffi_list_t *link);


/* thread: any */
static double
hotffi_clock(clockid_t id)
{
    struct timespec  ts;

    (void) clock_gettime(id, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


/* thread: event loop */
static char *
hotffi_runtime_name(const char *given, const char *lib, const char *cfg,
    size_t cfg_len)
{
    char    *name;
    size_t   n;

    name = malloc(HOTFFI_NAME_MAX);
    if (name == NULL) {
        return NULL;
    }

    if (given) {
        (void) snprintf(name, HOTFFI_NAME_MAX, "%s", given);
        return name;
    }

    /* the key resty.hotffi caches the runtime under */
    if (cfg == NULL) {
        (void) snprintf(name, HOTFFI_NAME_MAX, "%s", lib);
        return name;
    }

    n = cfg_len < HOTFFI_NAME_MAX ? cfg_len : HOTFFI_NAME_MAX;
    (void) snprintf(name, HOTFFI_NAME_MAX, "%s&%.*s", lib, (int) n, cfg);
    return name;
}


/* thread: event loop.  Lists rt in its hub, which frees it at teardown. */
static void
hotffi_runtime_link(hotffi_runtime_t *rt)
{
    rt->hub->free_runtime = hotffi_runtime_free_listed;
    hotffi_list_insert_head(&rt->hub->runtimes, &rt->link);
}


/* thread: event loop.  What rt lends the versions it runs. */
static void
hotffi_runtime_owner(hotffi_runtime_t *rt, hotffi_version_owner_t *owner)
{
    owner->hub = rt->hub;
    owner->queue = rt->queue;
    owner->name = rt->name;
    owner->rt = rt;
    owner->started = hotffi_runtime_started_handler;
    owner->reaped = hotffi_runtime_reaped;
    owner->global = rt->global;
    owner->unpin = rt->unpin;
}


/*
 * thread: event loop.  The audit line of an event of rt about version v
 * (hotffi_audit.h): "ok" at level notice, "refused" (nothing changed) a
 * warning, "failed" an error, "overdue" (ok, but both versions run for a
 * while) a warning.  Without v, the reload's tried lib and cfg are named.
 */
static void
hotffi_runtime_audit(hotffi_runtime_t *rt, const char *event,
    const char *result, uint64_t from, uint64_t to, const hotffi_version_t *v,
    double seconds, const char *error)
{
    int              level;
    hotffi_audit_t   a;

    memset(&a, 0, sizeof(a));
    a.event = event;
    a.result = result;
    a.name = rt->name;
    a.from = from;
    a.to = to;
    a.v = v;
    a.lib = rt->tried_lib;
    a.cfg = rt->tried_cfg;
    a.cfg_len = rt->tried_cfg_len;
    a.seconds = seconds;
    a.error = error;

    level = result[0] == 'o' && result[1] == 'k' ? HOTFFI_LOG_NOTICE
            : result[0] == 'f' ? HOTFFI_LOG_ERR : HOTFFI_LOG_WARN;

    hotffi_audit_log(rt->hub, level, &a);
}


/*
 * thread: event loop.  Notes what a reload tries (for its audit line and
 * report, which may come after the tried version was freed).
 */
static void
hotffi_runtime_note_tried(hotffi_runtime_t *rt, const hotffi_version_t *v)
{
    free(rt->tried_lib);
    free(rt->tried_cfg);
    rt->tried_number = v->number;
    rt->tried_lib = strdup(v->lib_name);
    rt->tried_cfg = v->cfg ? malloc(v->cfg_len + 1) : NULL;
    rt->tried_cfg_len = rt->tried_cfg ? v->cfg_len : 0;

    if (rt->tried_cfg) {
        memcpy(rt->tried_cfg, v->cfg, v->cfg_len);
        rt->tried_cfg[v->cfg_len] = '\0';
    }
}


/* thread: event loop */
static void
hotffi_runtime_free(hotffi_runtime_t *rt)
{
    hotffi_list_remove(&rt->link);
    hotffi_hub_waiter_release(rt->hub, &rt->waiter);
    free(rt->tried_lib);
    free(rt->tried_cfg);
    free(rt->name);
    free(rt);
}


/* thread: event loop */
hotffi_runtime_t *
hotffi_runtime_load_start(hotffi_hub_t *hub, const char *lib,
    const char *cfg, size_t cfg_len, const hotffi_runtime_opts_t *opts,
    void *waiter, char *err, size_t errlen)
{
    uint32_t                 max;
    hotffi_audit_t           a;
    hotffi_version_t        *v;
    hotffi_runtime_t        *rt;
    hotffi_version_owner_t   owner;

    rt = calloc(1, sizeof(hotffi_runtime_t));
    if (rt == NULL) {
        (void) snprintf(err, errlen, "out of memory");
        return NULL;
    }

    rt->hub = hub;
    rt->global = opts->global;
    rt->unpin = opts->unpin;
    rt->refs = 1;
    rt->start_rc = HOTFFI_AGAIN;
    rt->load_started = hotffi_clock(CLOCK_MONOTONIC);
    hotffi_list_init(&rt->link);
    hotffi_list_init(&rt->kept);

    max = opts->max_queue ? opts->max_queue : HOTFFI_DEFAULT_MAX_QUEUE;

    rt->name = hotffi_runtime_name(opts->name, lib, cfg, cfg_len);
    rt->queue = hotffi_queue_create(max);

    if (rt->name == NULL || rt->queue == NULL) {
        (void) snprintf(err, errlen, "out of memory");
        goto failed;
    }

    /* before any thread sees the queue */
    rt->queue->max_inflight = opts->max_inflight ? opts->max_inflight
                                                 : HOTFFI_DEFAULT_MAX_INFLIGHT;

    hotffi_runtime_owner(rt, &owner);

    v = hotffi_version_open(&owner, lib, cfg, cfg_len, err, errlen);
    if (v == NULL) {
        goto failed;
    }

    if (hotffi_version_start(v, NULL, 0, err, errlen) != HOTFFI_OK) {
        /* never started: nothing of it runs */
        hotffi_version_close(v, 0);
        hotffi_version_free(v);
        goto failed;
    }

    v->number = ++rt->versions;
    rt->starting = v;
    rt->waiter = waiter;

    hotffi_runtime_link(rt);

    /* the reference that retiring drops */
    rt->refs++;

    return rt;

failed:

    /* no version was made: the line says what was asked for */
    memset(&a, 0, sizeof(a));
    a.event = "load";
    a.result = "refused";
    a.name = rt->name ? rt->name : (opts->name ? opts->name : lib);
    a.to = 1;
    a.lib = lib;
    a.cfg = cfg;
    a.cfg_len = cfg_len;
    a.seconds = hotffi_clock(CLOCK_MONOTONIC) - rt->load_started;
    a.error = err;
    hotffi_audit_log(hub, HOTFFI_LOG_WARN, &a);

    if (rt->queue) {
        hotffi_queue_destroy(rt->queue);
    }

    free(rt->name);
    free(rt);
    return NULL;
}


/* thread: event loop */
int
hotffi_runtime_started(hotffi_runtime_t *rt, int *init_rc, char *err,
    size_t errlen)
{
    if (init_rc) {
        *init_rc = rt->start_rc == HOTFFI_ERROR ? rt->init_rc : 0;
    }

    if (rt->start_rc == HOTFFI_ERROR) {
        (void) snprintf(err, errlen, "%s", rt->start_error);
    }

    return rt->start_rc;
}


/* thread: event loop */
int
hotffi_runtime_wait(hotffi_runtime_t *rt, uint64_t timeout_ns)
{
    int            ms;
    uint64_t       now, end;
    struct pollfd  pfd;

    end = timeout_ns ? hotffi_spin_now() + timeout_ns : UINT64_MAX;

    pfd.fd = hotffi_hub_fd(rt->hub);
    pfd.events = POLLIN;

    /* the caller's reference keeps rt while the drains run */
    while (rt->starting || rt->old) {
        now = hotffi_spin_now();

        if (now >= end) {
            return HOTFFI_AGAIN;
        }

        /* whole milliseconds, rounded up, a second at most at a time */
        ms = end - now > 1000000000 ? 1000
             : (int) ((end - now + 999999) / 1000000);

        if (poll(&pfd, 1, ms) == -1 && errno != EINTR) {
            return HOTFFI_AGAIN;
        }

        (void) hotffi_hub_drain(rt->hub);
    }

    return HOTFFI_OK;
}


/*
 * thread: event loop.  Fails every queued task: no version is left to take
 * them.  Each goes back through the hub, to its own handler.
 */
static void
hotffi_runtime_fail_queued(hotffi_runtime_t *rt, const char *why)
{
    uint32_t        i, n;
    hotffi_task_t  *tasks[64];

    while ((n = hotffi_queue_take(rt->queue, tasks, 64)) != 0) {
        rt->stats.dropped += n;
        hotffi_runtime_warn(rt);

        for (i = 0; i < n; i++) {
            tasks[i]->rc = HOTFFI_TASK_UNSERVED;
            tasks[i]->rsp = strdup(why);
            tasks[i]->rsp_len = tasks[i]->rsp ? strlen(tasks[i]->rsp) : 0;
            hotffi_hub_complete(rt->hub, tasks[i]);
        }
    }
}


/*
 * thread: event loop.
 * Frees the queue once rt is unloaded and every version it ran is proved
 * gone.  Threads of a version that proved nothing may poll for ever: then
 * the queue stays, and so does rt.
 */
static void
hotffi_runtime_try_close(hotffi_runtime_t *rt)
{
    if (!rt->unloaded || rt->closed || !hotffi_list_empty(&rt->kept)
        || rt->reapers || rt->current || rt->old || rt->starting)
    {
        return;
    }

    rt->closed = 1;
    hotffi_hub_forget_queue(rt->hub, rt->queue);
    hotffi_queue_destroy(rt->queue);
    rt->queue = NULL;
    hotffi_runtime_unref(rt);
}


/* thread: event loop */
void
hotffi_runtime_unload(hotffi_runtime_t *rt)
{
    hotffi_version_t  *v;

    if (rt->unloaded) {
        return;
    }

    rt->unloaded = 1;
    hotffi_queue_stop(rt->queue);

    /* a load whose version never served was reported as refused */
    v = rt->current ? rt->current : rt->old;

    if (v && v->since != 0) {
        hotffi_runtime_audit(rt, "unload", "ok", v->number, 0, v, -1, NULL);
    }

    /*
     * A reload in progress goes on, and its end reaps what it started; so
     * does a load's start (hotffi_runtime_started_handler()).
     */
    if (rt->old == NULL && rt->starting == NULL) {
        hotffi_runtime_reap_final(rt, rt->current);
    }
}


/*
 * thread: event loop.
 * The last version of an unloaded runtime: reaped once the queue drains.
 */
static void
hotffi_runtime_reap_final(hotffi_runtime_t *rt, hotffi_version_t *v)
{
    if (v == NULL) {
        hotffi_runtime_fail_queued(rt, "runtime unloaded");
        hotffi_runtime_try_close(rt);
        return;
    }

    v->final = 1;
    hotffi_runtime_end_version(rt, v);
}


/*
 * thread: event loop.
 * A version that stopped serving: reap it, or keep it for ever when its
 * threads cannot be proved gone.  1 when a reaper runs (its REAPED comes
 * back through the hub), 0 when v was kept.
 */
static int
hotffi_runtime_end_version(hotffi_runtime_t *rt, hotffi_version_t *v)
{
    if (hotffi_version_reapable(v) && hotffi_version_reap(v) == HOTFFI_OK) {
        rt->reapers++;
        return 1;
    }

    hotffi_runtime_keep(rt, v);

    return 0;
}


/*
 * thread: event loop.
 * v's threads may poll for ever: its port and library stay.
 */
static void
hotffi_runtime_keep(hotffi_runtime_t *rt, hotffi_version_t *v)
{
    v->kept = 1;
    hotffi_list_insert_head(&rt->kept, &v->kept_link);

    if (rt->current == v) {
        rt->current = NULL;
    }
}


/*
 * thread: event loop.  The reload from rt->old ended; it tried the version
 * hotffi_runtime_note_tried() noted (serving now if ok).
 */
static void
hotffi_runtime_reload_done(hotffi_runtime_t *rt, int ok, const char *error)
{
    hotffi_reload_result_t  *last = &rt->last_reload;

    if (ok) {
        rt->stats.reloads++;
        rt->current->since = hotffi_clock(CLOCK_REALTIME);

    } else {
        rt->stats.reload_failures++;

        if (rt->current) {
            /* the rollback serves from now */
            rt->current->since = hotffi_clock(CLOCK_REALTIME);
        }
    }

    rt->reloaded = 1;
    last->ok = ok;
    last->from = rt->old->number;
    last->to = rt->tried_number;
    last->started = rt->reload_wall;
    last->seconds = hotffi_clock(CLOCK_MONOTONIC) - rt->reload_started;
    hotffi_err_tail(last->error, sizeof(last->error), error, strlen(error));

    hotffi_runtime_audit(rt, "reload", !ok ? "failed"
                                       : last->overdue ? "overdue" : "ok",
                         last->from, last->to, ok ? rt->current : NULL,
                         last->seconds, error);

    hotffi_hub_waiter_wake(rt->hub, rt->waiter);
}


/* thread: event loop.  Whether another version of rt has v's library open. */
static int
hotffi_runtime_shared(hotffi_runtime_t *rt, hotffi_version_t *v)
{
    int                i;
    hotffi_list_t     *link;
    hotffi_version_t  *other, *live[4];

    live[0] = rt->current;
    live[1] = rt->old;
    live[2] = rt->next_version;
    live[3] = rt->starting;

    for (i = 0; i < 4; i++) {
        if (live[i] && live[i] != v && live[i]->lib.handle == v->lib.handle) {
            return 1;
        }
    }

    for (link = hotffi_list_first(&rt->kept); link != &rt->kept;
         link = link->next)
    {
        other = hotffi_list_data(link, hotffi_version_t, kept_link);

        if (other != v && other->lib.handle == v->lib.handle) {
            return 1;
        }
    }

    return 0;
}


/* thread: event loop.  v is done with: its library closes, if unpin. */
static void
hotffi_runtime_drop_version(hotffi_runtime_t *rt, hotffi_version_t *v)
{
    hotffi_version_close(v, hotffi_runtime_shared(rt, v));
    hotffi_version_free(v);
}


/*
 * thread: event loop.  The reload has ended, well or not: the old version
 * goes (an overdue one is closed when its REAPED comes, as any other's).
 */
static void
hotffi_runtime_reload_end(hotffi_runtime_t *rt)
{
    hotffi_version_t  *old = rt->old;

    /*
     * rt->old and rt->next_version stay set until here, so that closing
     * one version's library knows the others still share it.
     */
    if (old->proved && !old->kept) {
        hotffi_runtime_drop_version(rt, old);
    }

    rt->old = NULL;
    rt->next_version = NULL;

    if (rt->unloaded) {
        hotffi_runtime_reap_final(rt, rt->current);
    }
}


/* thread: event loop.  Neither the next version nor the old one serves. */
static void
hotffi_runtime_reload_unload(hotffi_runtime_t *rt, const char *err)
{
    char  msg[HOTFFI_ERR_MAX];

    hotffi_err_format(msg, sizeof(msg), "%s; rolling back: %s; the runtime "
                      "is unloaded", rt->why, err);
    rt->unloaded = 1;
    hotffi_queue_stop(rt->queue);
    hotffi_runtime_fail_queued(rt, msg);
    hotffi_runtime_reload_done(rt, 0, msg);
    hotffi_runtime_reload_end(rt);
}


/* thread: event loop.  The state the reload's versions start with. */
static const char *
hotffi_runtime_reload_state(hotffi_runtime_t *rt, size_t *len)
{
    /* an overdue old version's reaper may still write it */
    if (rt->last_reload.overdue) {
        *len = 0;
        return NULL;
    }

    *len = rt->old->state_len;
    return rt->old->state;
}


static void hotffi_runtime_reload_started(hotffi_runtime_t *rt,
    hotffi_version_t *v, int rc, int ran, const char *err);


/*
 * thread: event loop.  Starts v, the reload's next version or its
 * rollback; its START comes back to hotffi_runtime_reload_started().
 */
static void
hotffi_runtime_reload_start(hotffi_runtime_t *rt, hotffi_version_t *v)
{
    char         err[HOTFFI_ERR_MAX];
    size_t       len;
    const char  *state;

    state = hotffi_runtime_reload_state(rt, &len);

    if (hotffi_version_start(v, state, len, err, sizeof(err)) == HOTFFI_OK) {
        rt->starting = v;
        return;
    }

    hotffi_runtime_reload_started(rt, v, HOTFFI_ERROR, 0, err);
}


/* thread: event loop.  The next version failed: the old one serves again. */
static void
hotffi_runtime_rollback(hotffi_runtime_t *rt)
{
    char               err[HOTFFI_ERR_MAX];
    hotffi_version_t  *back;

    /* same mapping, same configuration, same state */
    back = hotffi_version_clone(rt->old, err, sizeof(err));
    if (back == NULL) {
        hotffi_runtime_reload_unload(rt, err);
        return;
    }

    hotffi_runtime_reload_start(rt, back);
}


/*
 * thread: event loop.  v (the reload's next version, or its rollback) has
 * started (rc HOTFFI_OK), or not: its libffi_init() failed (ran), or it
 * could not be started at all.
 */
static void
hotffi_runtime_reload_started(hotffi_runtime_t *rt, hotffi_version_t *v,
    int rc, int ran, const char *err)
{
    int   is_next;
    char  msg[HOTFFI_ERR_MAX];

    is_next = v == rt->next_version;

    if (rc == HOTFFI_OK) {
        rt->current = v;

        if (is_next) {
            hotffi_runtime_reload_done(rt, 1, "");

        } else {
            hotffi_err_format(msg, sizeof(msg), "%s; version %llu serves "
                              "again", rt->why,
                              (unsigned long long) rt->old->number);
            hotffi_runtime_reload_done(rt, 0, msg);
        }

        hotffi_runtime_reload_end(rt);
        return;
    }

    /* threads the failed version started see its port stopped */
    if (ran) {
        hotffi_runtime_end_version(rt, v);

    } else {
        hotffi_runtime_drop_version(rt, v);

        if (is_next) {
            rt->next_version = NULL;
        }
    }

    if (is_next) {
        hotffi_err_tail(rt->why, sizeof(rt->why), err, strlen(err));
        hotffi_runtime_rollback(rt);
        return;
    }

    hotffi_runtime_reload_unload(rt, err);
}


/*
 * thread: event loop.
 * The old version is proved gone (or, without the means to prove it, was
 * only stopped): start the next one with its state, or roll back.
 * overdue: it is still being reaped (hotffi_runtime_reload_overdue()), so
 * the next one starts without state.
 */
static void
hotffi_runtime_reload_finish(hotffi_runtime_t *rt, int overdue)
{
    hotffi_version_t  *old;

    old = rt->old;
    rt->why[0] = '\0';
    rt->last_reload.overdue = overdue;

    if (!overdue && old->retire_rc != 0) {
        hotffi_err_format(rt->why, sizeof(rt->why), "libffi_retire() of "
                          "version %llu failed: %d%s%s",
                          (unsigned long long) old->number, old->retire_rc,
                          old->port.init_error ? ": " : "",
                          old->port.init_error ? old->port.init_error : "");
        hotffi_runtime_drop_version(rt, rt->next_version);
        rt->next_version = NULL;
        hotffi_runtime_rollback(rt);
        return;
    }

    hotffi_runtime_reload_start(rt, rt->next_version);
}


/*
 * thread: event loop.  The audit line of a reload refused before a version
 * was made: lib and cfg say what it asked for.
 */
static void
hotffi_runtime_reload_refused(hotffi_runtime_t *rt, const char *lib,
    const char *cfg, size_t cfg_len, const char *error)
{
    hotffi_audit_t  a;

    memset(&a, 0, sizeof(a));
    a.event = "reload";
    a.result = "refused";
    a.name = rt->name;
    a.from = rt->current->number;
    a.lib = lib;
    a.cfg = cfg;
    a.cfg_len = cfg_len;
    a.seconds = -1;
    a.error = error;
    hotffi_audit_log(rt->hub, HOTFFI_LOG_WARN, &a);
}


/* thread: event loop */
int
hotffi_runtime_reload(hotffi_runtime_t *rt, const char *lib,
    const char *cfg, size_t cfg_len, int keep_cfg, int handover,
    void *waiter, char *err, size_t errlen)
{
    hotffi_version_t        *cur, *next;
    hotffi_version_owner_t   owner;

    if (rt->unloaded) {
        (void) snprintf(err, errlen, "runtime \"%s\" is unloaded", rt->name);
        hotffi_runtime_audit(rt, "reload", "refused", 0, 0, NULL, -1, err);
        return HOTFFI_DECLINED;
    }

    if (rt->old) {
        (void) snprintf(err, errlen, "runtime \"%s\": a reload is in "
                        "progress", rt->name);
        hotffi_runtime_audit(rt, "reload", "refused", rt->old->number,
                             rt->tried_number, NULL, -1, err);
        return HOTFFI_BUSY;
    }

    if (rt->starting) {
        (void) snprintf(err, errlen, "runtime \"%s\" is starting: its "
                        "libffi_init() has not returned yet", rt->name);
        hotffi_runtime_audit(rt, "reload", "refused", 0, 0, rt->starting, -1,
                             err);
        return HOTFFI_BUSY;
    }

    cur = rt->current;

    if (keep_cfg) {
        cfg = cur->cfg;
        cfg_len = cur->cfg_len;
    }

    hotffi_runtime_owner(rt, &owner);

    lib = lib ? lib : cur->lib_name;
    next = NULL;

    if (hotffi_library_replaceable(&cur->lib, lib, err, errlen) == HOTFFI_OK) {
        next = hotffi_version_open(&owner, lib, cfg, cfg_len, err, errlen);
    }

    if (next == NULL) {
        hotffi_runtime_reload_refused(rt, lib, cfg, cfg_len, err);
        return HOTFFI_ERROR;
    }

    next->number = ++rt->versions;
    hotffi_runtime_note_tried(rt, next);

    hotffi_hub_waiter_release(rt->hub, &rt->waiter);
    rt->reload_started = hotffi_clock(CLOCK_MONOTONIC);
    rt->reload_wall = hotffi_clock(CLOCK_REALTIME);

    rt->current = NULL;
    rt->old = cur;
    rt->next_version = next;

    /* from here calls queue up until the next version polls */
    hotffi_queue_stop_port(rt->queue, &cur->port);

    cur->handover = handover && cur->lib.retire != NULL;

    if (hotffi_runtime_end_version(rt, cur)) {
        rt->waiter = waiter;
        return HOTFFI_AGAIN;
    }

    /* nothing to wait for: its threads see the stop and end on their own */
    hotffi_runtime_reload_finish(rt, 0);

    if (rt->old == NULL) {
        /* it ended already: the next version could not even start */
        return HOTFFI_OK;
    }

    rt->waiter = waiter;
    return HOTFFI_AGAIN;
}


/* thread: event loop */
int
hotffi_runtime_reload_overdue(hotffi_runtime_t *rt)
{
    /* starting: the old version is gone, the next one's init runs */
    if (rt->old == NULL || rt->starting) {
        return HOTFFI_DECLINED;
    }

    /* the reload's audit line says "overdue" */
    hotffi_runtime_reload_finish(rt, 1);

    return HOTFFI_OK;
}


/* thread: event loop */
void
hotffi_runtime_reload_release(hotffi_runtime_t *rt, void *waiter)
{
    if (rt->waiter == waiter) {
        hotffi_hub_waiter_release(rt->hub, &rt->waiter);
    }
}


/* thread: event loop */
void
hotffi_runtime_warn(hotffi_runtime_t *rt)
{
    uint64_t                 now;
    hotffi_runtime_stats_t  *s = &rt->stats, *w = &rt->warned;

    now = hotffi_spin_now();

    if (rt->warned_at && now - rt->warned_at < HOTFFI_WARN_EVERY_NS) {
        return;
    }

    hotffi_hub_log(rt->hub, HOTFFI_LOG_WARN, "runtime \"%s\": %llu calls "
                   "refused (queue full: %llu, max_inflight: %llu), %llu "
                   "timed out, %llu dropped since the last such line "
                   "(max_queue %u, max_inflight %u)", rt->name,
                   (unsigned long long) (s->full + s->inflight_full
                                         - w->full - w->inflight_full),
                   (unsigned long long) (s->full - w->full),
                   (unsigned long long) (s->inflight_full - w->inflight_full),
                   (unsigned long long) (s->timeouts - w->timeouts),
                   (unsigned long long) (s->dropped - w->dropped),
                   rt->queue ? rt->queue->max : 0,
                   rt->queue ? rt->queue->max_inflight : 0);

    rt->warned_at = now;
    *w = *s;
}


/* thread: event loop */
uint64_t
hotffi_runtime_version(hotffi_runtime_t *rt)
{
    return rt->current ? rt->current->number : 0;
}


/*
 * thread: event loop.  The handler of every version's START task (set by
 * hotffi_runtime_owner()): v's libffi_init() has returned.
 */
static void
hotffi_runtime_started_handler(hotffi_task_t *start)
{
    int                rc;
    char               err[HOTFFI_ERR_MAX];
    hotffi_version_t  *v = start->data;
    hotffi_runtime_t  *rt = v->owner.rt;

    rc = hotffi_version_started(v, err, sizeof(err));
    rt->starting = NULL;

    if (rt->old) {
        hotffi_runtime_reload_started(rt, v, rc, 1, err);
        return;
    }

    /* a load's */
    rt->start_rc = rc;

    if (rc == HOTFFI_OK) {
        v->since = hotffi_clock(CLOCK_REALTIME);
        hotffi_runtime_audit(rt, "load", "ok", 0, v->number, v,
                             hotffi_clock(CLOCK_MONOTONIC) - rt->load_started,
                             NULL);

    } else {
        hotffi_runtime_audit(rt, "load", "refused", 0, v->number, v,
                             hotffi_clock(CLOCK_MONOTONIC) - rt->load_started,
                             err);
        rt->init_rc = v->init_rc;
        hotffi_err_tail(rt->start_error, sizeof(rt->start_error), err,
                        strlen(err));

        /* no version serves: what was queued meanwhile fails as init did */
        rt->unloaded = 1;
        hotffi_queue_stop(rt->queue);
        hotffi_runtime_fail_queued(rt, err);
    }

    /* the unloaded (the load failed, or its caller gave up) are reaped */
    rt->current = v;

    if (rt->unloaded) {
        hotffi_runtime_reap_final(rt, v);
    }

    hotffi_hub_waiter_wake(rt->hub, rt->waiter);
}


/*
 * thread: event loop.  The handler of every version's REAPED task (set by
 * hotffi_runtime_owner()): v's reaper is done.
 */
static void
hotffi_runtime_reaped(hotffi_task_t *reaped)
{
    hotffi_version_t  *v = reaped->data;
    hotffi_runtime_t  *rt = v->owner.rt;

    hotffi_version_reaped(v);
    rt->reapers--;

    if (v == rt->old && rt->starting == NULL) {
        hotffi_runtime_reload_finish(rt, 0);

    } else if (v == rt->old) {
        /* overdue: the next version is starting; the reload's end drops
           v, if proved */
        if (!v->proved) {
            hotffi_runtime_keep(rt, v);
        }

    } else {
        if (v == rt->current) {
            /* the last version of an unloaded runtime */
            rt->current = NULL;
        }

        if (v->proved) {
            hotffi_runtime_drop_version(rt, v);

        } else {
            hotffi_hub_log(rt->hub, HOTFFI_LOG_WARN, "runtime \"%s\" "
                           "unloaded, but a thread that served it is still "
                           "running: its library stays mapped, and loading "
                           "it again reuses the old code (export "
                           "libffi_fini() to say when its threads are gone)",
                           rt->name);
            hotffi_runtime_keep(rt, v);
        }
    }

    hotffi_runtime_try_close(rt);
}


/* thread: event loop */
void
hotffi_runtime_ref(hotffi_runtime_t *rt)
{
    rt->refs++;
}


/* thread: event loop */
void
hotffi_runtime_unref(hotffi_runtime_t *rt)
{
    if (--rt->refs == 0) {
        hotffi_runtime_free(rt);
    }
}


/*
 * thread: event loop.  hub->free_runtime: frees the runtime of link
 * whatever its state, when its hub is torn down once no runtime thread can
 * run (tests).
 */
static void
hotffi_runtime_free_listed(hotffi_list_t *link)
{
    int                i;
    hotffi_list_t     *kept;
    hotffi_runtime_t  *rt = hotffi_runtime_of(link);
    hotffi_version_t  *v[4];

    v[0] = rt->current;
    v[1] = rt->old;
    v[2] = rt->next_version;
    v[3] = rt->starting == rt->next_version ? NULL : rt->starting;

    for (i = 0; i < 4; i++) {
        if (v[i] && !v[i]->kept) {
            hotffi_version_free(v[i]);
        }
    }

    while ((kept = hotffi_list_pop(&rt->kept)) != NULL) {
        hotffi_version_free(hotffi_list_data(kept, hotffi_version_t,
                                             kept_link));
    }

    if (rt->queue) {
        hotffi_hub_forget_queue(rt->hub, rt->queue);
        hotffi_queue_destroy(rt->queue);
    }

    hotffi_runtime_free(rt);
}
