/*
 * ngx_http_hotffi_ffi.c -- the functions lua/resty/hotffi.lua calls through
 * LuaJIT FFI.  All run on the event loop, in the worker.
 *
 * A call's semaphore is created and freed here, never by Lua: the hub frees
 * it together with the task, so an answer arriving after its coroutine was
 * killed can never post a semaphore that was reused in the meantime.
 */

#include "ngx_http_hotffi_module.h"
#include "hotffi_audit.h"
#include "hotffi_call.h"
#include "hotffi_err.h"
#include "hotffi_hub.h"
#include "hotffi_metrics.h"
#include "hotffi_queue.h"
#include "hotffi_runtime.h"
#include "hotffi_task.h"
#include "hotffi_version.h"



/* the pending calls of one request, given up when its pool goes */
typedef struct {
    hotffi_group_t  group;
} ngx_http_hotffi_ctx_t;


/* mirrors hotffi_ffi_stats_t in lua/resty/hotffi.lua */
typedef struct {
    uint64_t  calls;
    uint64_t  ok;
    uint64_t  failed;
    uint64_t  abandoned;
    uint64_t  rejected;
    uint64_t  full;
    uint64_t  inflight_full;
    uint64_t  timeouts;
    uint64_t  dropped;
    uint64_t  inflight;
    uint64_t  queued;
    uint64_t  unloaded;
    uint64_t  closed;
    uint64_t  version;
    uint64_t  reloads;
    uint64_t  reload_failures;
    uint64_t  reloading;
} ngx_http_hotffi_ffi_stats_t;


/* mirrors hotffi_ffi_reload_t in lua/resty/hotffi.lua */
typedef struct {
    int       ok;
    uint64_t  from;
    uint64_t  to;
    double    started;
    double    seconds;
    int       overdue;
} ngx_http_hotffi_ffi_reload_t;


/*
 * mirrors hotffi_ffi_serving_t in lua/resty/hotffi.lua: the serving
 * version; the strings are borrowed until the runtime's next reload
 */
typedef struct {
    uint64_t     version;
    const char  *lib;
    const char  *cfg;           /* NULL for nil */
    size_t       cfg_len;
    uint32_t     cfg_crc32;
    uint64_t     dev_major;
    uint64_t     dev_minor;
    uint64_t     ino;           /* 0: unknown */
    int64_t      mtime;         /* 0: unknown */
    double       since;
} ngx_http_hotffi_ffi_serving_t;


/*
 * mirrors hotffi_ffi_metrics_t in lua/resty/hotffi.lua: hotffi_metrics_t,
 * then the gauges a scrape reads with them
 */
typedef struct {
    hotffi_metrics_t  m;
    uint64_t          inflight;
    uint64_t          queued;
} ngx_http_hotffi_ffi_metrics_t;


/* mirrors hotffi_ffi_hub_stats_t in lua/resty/hotffi.lua */
typedef struct {
    uint64_t  tasks_live;
    uint64_t  wakeups;
    uint64_t  completions;
    uint64_t  runtimes;
    uint64_t  spin_hits;
    uint64_t  spin_misses;
} ngx_http_hotffi_ffi_hub_stats_t;


static void
ngx_http_hotffi_set_err(u_char *err, size_t *errlen, const char *msg)
{
    *errlen = ngx_min(*errlen, ngx_strlen(msg));
    ngx_memcpy(err, msg, *errlen);
}


NGX_HTTP_HOTFFI_EXPORT int
ngx_http_hotffi_ffi_version(void)
{
    return NGX_HTTP_HOTFFI_FFI_VERSION;
}


/*
 * lib: borrowed, NUL-terminated.  cfg: borrowed, cfg_len bytes, or NULL for
 * nil.  name: borrowed, the runtime's name in messages, NULL for "lib&cfg".
 * Starts the runtime (hotffi_runtime_load_start()): returns it with a
 * reference that Lua drops with ngx_http_hotffi_ffi_runtime_release(), and
 * in *psema the semaphore (the hub's) woken when libffi_init() has
 * returned; then call runtime_started().  NULL with err set when the
 * library could not be opened.
 */
NGX_HTTP_HOTFFI_EXPORT void *
ngx_http_hotffi_ffi_runtime_load(const char *lib, const char *cfg,
    size_t cfg_len, const char *name, uint32_t max_queue,
    uint32_t max_inflight, int global, int unpin, void **psema, u_char *err,
    size_t *errlen)
{
    char                    msg[HOTFFI_ERR_MAX];   /* a traceback's end */
    char                   *serr;
    void                   *sema;
    hotffi_hub_t           *hub;
    hotffi_runtime_t       *rt;
    hotffi_runtime_opts_t   opts;

    hub = ngx_http_hotffi_hub_get();
    if (hub == NULL) {
        ngx_http_hotffi_set_err(err, errlen, "no hub: see the error log");
        return NULL;
    }

    serr = NULL;

    if (ngx_http_hotffi_sema.create(&sema, 0, &serr) != NGX_OK) {
        ngx_http_hotffi_set_err(err, errlen, serr ? serr : "no semaphore");
        return NULL;
    }

    opts.name = name;
    opts.max_queue = max_queue;
    opts.max_inflight = max_inflight;
    opts.global = global ? 1 : 0;
    opts.unpin = unpin ? 1 : 0;

    rt = hotffi_runtime_load_start(hub, lib, cfg, cfg_len, &opts, sema, msg,
                                   sizeof(msg));
    if (rt == NULL) {
        ngx_http_hotffi_sema.gc(sema);
        ngx_http_hotffi_set_err(err, errlen, msg);
        return NULL;
    }

    *psema = sema;
    return rt;
}


/*
 * The outcome of a load's start, once its caller stopped waiting on sema
 * (NULL: it did not wait on one), which is then released: NGX_OK when the
 * runtime serves, NGX_AGAIN while libffi_init() runs, NGX_ERROR when it
 * failed, with err set and its rc in *init_rc.
 */
NGX_HTTP_HOTFFI_EXPORT int
ngx_http_hotffi_ffi_runtime_started(void *rt, void *sema, int *init_rc,
    u_char *err, size_t *errlen)
{
    int   rc;
    char  msg[HOTFFI_ERR_MAX];

    if (sema) {
        hotffi_runtime_reload_release(rt, sema);
    }

    rc = hotffi_runtime_started(rt, init_rc, msg, sizeof(msg));

    if (rc == HOTFFI_ERROR) {
        ngx_http_hotffi_set_err(err, errlen, msg);
        return NGX_ERROR;
    }

    return rc == HOTFFI_OK ? NGX_OK : NGX_AGAIN;
}


/*
 * Blocks the event loop until the runtime's start or reload has ended, for
 * timeout seconds at most: where Lua cannot wait on a semaphore
 * (init_worker_by_lua*).  NGX_OK when it has ended, NGX_AGAIN otherwise.
 */
NGX_HTTP_HOTFFI_EXPORT int
ngx_http_hotffi_ffi_runtime_wait(void *rt, double timeout)
{
    uint64_t  ns;

    ns = timeout < 9.2e9 ? (uint64_t) (timeout * 1e9) : 0;

    return hotffi_runtime_wait(rt, ns ? ns : 1) == HOTFFI_OK ? NGX_OK
                                                             : NGX_AGAIN;
}


NGX_HTTP_HOTFFI_EXPORT void
ngx_http_hotffi_ffi_runtime_unload(void *rt)
{
    hotffi_runtime_unload(rt);
}


/* Lua's handle is gone (its ffi.gc finaliser) */
NGX_HTTP_HOTFFI_EXPORT void
ngx_http_hotffi_ffi_runtime_release(void *rt)
{
    hotffi_runtime_unref(rt);
}


NGX_HTTP_HOTFFI_EXPORT void
ngx_http_hotffi_ffi_runtime_stats(void *p, ngx_http_hotffi_ffi_stats_t *out)
{
    hotffi_runtime_t  *rt = p;

    out->calls = rt->stats.calls;
    out->ok = rt->stats.ok;
    out->failed = rt->stats.failed;
    out->abandoned = rt->stats.abandoned;
    out->rejected = rt->stats.rejected;
    out->full = rt->stats.full;
    out->inflight_full = rt->stats.inflight_full;
    out->timeouts = rt->stats.timeouts;
    out->dropped = rt->stats.dropped;
    out->inflight = rt->stats.inflight;
    out->queued = rt->queue ? hotffi_queue_depth(rt->queue) : 0;
    out->unloaded = rt->unloaded;
    out->closed = rt->closed;
    out->version = hotffi_runtime_version(rt);
    out->reloads = rt->stats.reloads;
    out->reload_failures = rt->stats.reload_failures;
    out->reloading = rt->old != NULL;
}


/* what a metrics scrape reads of a runtime (resty.hotffi.metrics) */
NGX_HTTP_HOTFFI_EXPORT void
ngx_http_hotffi_ffi_runtime_metrics(void *p,
    ngx_http_hotffi_ffi_metrics_t *out)
{
    hotffi_runtime_t  *rt = p;

    out->m = rt->metrics;
    out->inflight = rt->stats.inflight;
    out->queued = rt->queue ? hotffi_queue_depth(rt->queue) : 0;
}


/*
 * The version serving the runtime: NGX_OK, or NGX_DECLINED when none does
 * (unloaded, or between two versions of a reload).
 */
NGX_HTTP_HOTFFI_EXPORT int
ngx_http_hotffi_ffi_runtime_serving(void *p,
    ngx_http_hotffi_ffi_serving_t *out)
{
    hotffi_runtime_t  *rt = p;
    hotffi_version_t  *v = rt->current;

    if (v == NULL || rt->unloaded) {
        return NGX_DECLINED;
    }

    out->version = v->number;
    out->lib = v->lib_name;
    out->cfg = v->cfg;
    out->cfg_len = v->cfg_len;
    out->cfg_crc32 = v->cfg ? hotffi_audit_crc32(v->cfg, v->cfg_len) : 0;
    out->dev_major = v->lib.dev_major;
    out->dev_minor = v->lib.dev_minor;
    out->ino = v->lib.ino;
    out->mtime = v->lib.mtime;
    out->since = v->since;

    return NGX_OK;
}


/*
 * Replaces the runtime's version in place (see hotffi_runtime_reload()).
 * lib: NULL keeps it; cfg: kept when keep_cfg, else cfg_len bytes or NULL
 * for nil; all borrowed.  Returns NGX_OK when the reload has ended (its
 * result from last_reload()), NGX_AGAIN when it goes on: wait on *psema,
 * which the hub owns, then call reload_forget().  NGX_ERROR with err set
 * when it could not start and nothing changed.
 */
NGX_HTTP_HOTFFI_EXPORT int
ngx_http_hotffi_ffi_runtime_reload(void *rt, const char *lib,
    const char *cfg, size_t cfg_len, int keep_cfg, int handover,
    void **psema, u_char *err, size_t *errlen)
{
    int    rc;
    char   msg[HOTFFI_ERR_MAX];
    char  *serr;
    void  *sema;

    serr = NULL;

    if (ngx_http_hotffi_sema.create(&sema, 0, &serr) != NGX_OK) {
        ngx_http_hotffi_set_err(err, errlen, serr ? serr : "no semaphore");
        return NGX_ERROR;
    }

    rc = hotffi_runtime_reload(rt, lib, cfg, cfg_len, keep_cfg, handover,
                               sema, msg, sizeof(msg));

    if (rc == HOTFFI_AGAIN) {
        *psema = sema;
        return NGX_AGAIN;
    }

    ngx_http_hotffi_sema.gc(sema);

    if (rc == HOTFFI_OK) {
        return NGX_OK;
    }

    ngx_http_hotffi_set_err(err, errlen, msg);
    return NGX_ERROR;
}


/*
 * The reload's caller stopped waiting on sema, woken or not.  A later
 * reload may have released sema already: the core knows.
 */
NGX_HTTP_HOTFFI_EXPORT void
ngx_http_hotffi_ffi_runtime_reload_release(void *rt, void *sema)
{
    hotffi_runtime_reload_release(rt, sema);
}


/*
 * The old version did not retire in time: start the next one without its
 * state (hotffi_runtime_reload_overdue()).  NGX_OK when the reload ended,
 * NGX_DECLINED when it had ended already.
 */
NGX_HTTP_HOTFFI_EXPORT int
ngx_http_hotffi_ffi_runtime_reload_overdue(void *rt)
{
    return hotffi_runtime_reload_overdue(rt) == HOTFFI_OK ? NGX_OK
                                                          : NGX_DECLINED;
}


/*
 * The last reload that ended, with its error in err; NGX_DECLINED when
 * there was none.
 */
NGX_HTTP_HOTFFI_EXPORT int
ngx_http_hotffi_ffi_runtime_last_reload(void *p,
    ngx_http_hotffi_ffi_reload_t *out, u_char *err, size_t *errlen)
{
    hotffi_runtime_t        *rt = p;
    hotffi_reload_result_t  *last = &rt->last_reload;

    if (!rt->reloaded) {
        return NGX_DECLINED;
    }

    out->ok = last->ok;
    out->from = last->from;
    out->to = last->to;
    out->started = last->started;
    out->seconds = last->seconds;
    out->overdue = last->overdue;
    ngx_http_hotffi_set_err(err, errlen, last->error);

    return NGX_OK;
}


NGX_HTTP_HOTFFI_EXPORT int
ngx_http_hotffi_ffi_hub_stats(ngx_http_hotffi_ffi_hub_stats_t *out)
{
    hotffi_list_t  *link, *runtimes;

    if (ngx_http_hotffi_hub == NULL) {
        return NGX_DECLINED;
    }

    out->tasks_live = ngx_http_hotffi_hub->tasks.live;
    out->wakeups = ngx_http_hotffi_hub->stats.wakeups;
    out->completions = ngx_http_hotffi_hub->stats.completions;
    out->spin_hits = ngx_http_hotffi_hub->stats.spin_hits;
    out->spin_misses = ngx_http_hotffi_hub->stats.spin_misses;
    out->runtimes = 0;

    runtimes = &ngx_http_hotffi_hub->runtimes;

    for (link = hotffi_list_first(runtimes); link != runtimes;
         link = link->next)
    {
        out->runtimes++;
    }

    return NGX_OK;
}


static void
ngx_http_hotffi_cleanup(void *data)
{
    ngx_http_hotffi_ctx_t  *ctx = data;

    hotffi_group_abandon(&ctx->group);
}


/* the request's group, created with a pool cleanup on first use */
static hotffi_group_t *
ngx_http_hotffi_group(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t     *cln;
    ngx_http_hotffi_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_hotffi_module);
    if (ctx) {
        return &ctx->group;
    }

    /*
     * An internal redirect clears module contexts but not pool cleanups:
     * the calls of the old context are still given up with the pool.
     */
    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_hotffi_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    hotffi_group_init(&ctx->group);
    cln->handler = ngx_http_hotffi_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_hotffi_module);

    return &ctx->group;
}


/*
 * Queues a call and, when the fast path allows it, spins for its answer
 * (hotffi_call.h).  req: borrowed, not copied (NULL for a call without a
 * request), and read by the runtime
 * thread: the caller keeps the Lua string alive until the task is freed,
 * which resty.hotffi does by slot (*pslot).  timeout: the call's, seconds.
 * spin: 0 where the caller cannot wait (a call there must not succeed or
 * fail depending on how fast the answer comes).
 *
 * Returns NULL with err set when the call was not queued, and in *pstate
 * HOTFFI_DECLINED (the runtime is unloaded), HOTFFI_BUSY (its queue is
 * full) or HOTFFI_ERROR.  Otherwise the task, which belongs to the hub, and
 * in *pstate:
 *   HOTFFI_OK     answered while spinning: call_result(), call_finish();
 *   HOTFFI_AGAIN  wait on *psema (the hub's too), then as above, or give
 *                 up with call_abandon();
 *   HOTFFI_DONE   the timeout passed while spinning: call_abandon();
 *   HOTFFI_ERROR  no semaphore to wait on: already given up, err set.
 */
NGX_HTTP_HOTFFI_EXPORT void *
ngx_http_hotffi_ffi_call_post(ngx_http_request_t *r, void *rt,
    const char *req, size_t len, double timeout, int spin, int *pstate,
    uint32_t *pslot, void **psema, u_char *err, size_t *errlen)
{
    char             msg[512];
    char            *serr;
    void            *sema;
    uint64_t         timeout_ns;
    hotffi_group_t  *group;
    hotffi_task_t   *task;

    group = ngx_http_hotffi_group(r);
    if (group == NULL) {
        ngx_http_hotffi_set_err(err, errlen, "no memory");
        return NULL;
    }

    /* 2^63 ns is 292 years: anything longer waits as long */
    timeout_ns = timeout < 9.2e9 ? (uint64_t) (timeout * 1e9) : UINT64_MAX;

    if (spin) {
        task = hotffi_call_post_spin(rt, group, req, len, timeout_ns, pstate,
                                     msg, sizeof(msg));

    } else {
        task = hotffi_call_post(rt, group, req, len, NULL, pstate, msg,
                                sizeof(msg));
    }

    if (task == NULL) {
        ngx_http_hotffi_set_err(err, errlen, msg);
        return NULL;
    }

    if (!spin) {
        *pstate = HOTFFI_AGAIN;
    }

    *pslot = task->slot;

    if (*pstate != HOTFFI_AGAIN) {
        return task;
    }

    /* made only now: a call answered while spinning never needs one */
    serr = NULL;

    if (ngx_http_hotffi_sema.create(&sema, 0, &serr) != NGX_OK) {
        hotffi_call_abandon(task);
        ngx_http_hotffi_set_err(err, errlen, serr ? serr : "no semaphore");
        *pstate = HOTFFI_ERROR;
        return task;
    }

    hotffi_call_wait(task, sema);
    *psema = sema;

    return task;
}


/* rsp: borrowed from the task until call_finish() */
NGX_HTTP_HOTFFI_EXPORT int
ngx_http_hotffi_ffi_call_result(void *task, const char **rsp, size_t *len)
{
    return hotffi_call_result(task, rsp, len);
}


NGX_HTTP_HOTFFI_EXPORT void
ngx_http_hotffi_ffi_call_finish(void *task)
{
    hotffi_call_finish(task);
}


NGX_HTTP_HOTFFI_EXPORT void
ngx_http_hotffi_ffi_call_abandon(void *task)
{
    hotffi_call_abandon(task);
}


/* the caller gives up because its timeout passed: counted as such */
NGX_HTTP_HOTFFI_EXPORT void
ngx_http_hotffi_ffi_call_timeout(void *task)
{
    hotffi_call_timeout(task);
}
