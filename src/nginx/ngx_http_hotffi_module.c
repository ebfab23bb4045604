/*
 * ngx_http_hotffi_module.c -- the nginx side of the hub: one per worker, its
 * eventfd in the worker's event loop, answers turned into semaphore posts
 * that resume the waiting Lua coroutines.
 */

#include <dlfcn.h>

#include "ngx_http_hotffi_module.h"
#include "hotffi_call.h"
#include "hotffi_env.h"
#include "hotffi_hub.h"
#include "hotffi_runtime.h"


/* how long an exiting worker's calls may still wait for their answers */
#define NGX_HTTP_HOTFFI_GRACE_MS      3000
#define NGX_HTTP_HOTFFI_GRACE_MAX_MS  3600000   /* above an hour: a typo */


static ngx_int_t ngx_http_hotffi_init_module(ngx_cycle_t *cycle);
static void ngx_http_hotffi_exit_process(ngx_cycle_t *cycle);


hotffi_hub_t                *ngx_http_hotffi_hub;
ngx_http_hotffi_sema_api_t   ngx_http_hotffi_sema;

static ngx_connection_t     *ngx_http_hotffi_notify;
static ngx_event_t           ngx_http_hotffi_wakes;
static ngx_event_t           ngx_http_hotffi_grace;


static ngx_http_module_t  ngx_http_hotffi_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */
    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_hotffi_module = {
    NGX_MODULE_V1,
    &ngx_http_hotffi_module_ctx,           /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_hotffi_init_module,           /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_hotffi_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* thread: event loop (master, at configuration time) */
static ngx_int_t
ngx_http_hotffi_init_module(ngx_cycle_t *cycle)
{
    *(void **) &ngx_http_hotffi_sema.create =
                              dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_sema_new");
    *(void **) &ngx_http_hotffi_sema.post =
                             dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_sema_post");
    *(void **) &ngx_http_hotffi_sema.gc =
                               dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_sema_gc");

    if (ngx_http_hotffi_sema.create == NULL
        || ngx_http_hotffi_sema.post == NULL
        || ngx_http_hotffi_sema.gc == NULL)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "hotffi needs ngx_http_lua_module: load_module it "
                      "before ngx_http_hotffi_module.so");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * thread: event loop.  hub host hook: the call is answered.  sema: borrowed;
 * the hub owns it (made by call_post in ngx_http_hotffi_ffi.c) until release.
 */
static void
ngx_http_hotffi_wake(void *sema)
{
    (void) ngx_http_hotffi_sema.post(sema, 1);
}


/*
 * thread: event loop.  hub host hook: the call is gone, or its caller gave
 * up.  sema: the hub's ownership ends here; lua-nginx-module takes it back.
 */
static void
ngx_http_hotffi_release(void *sema)
{
    ngx_http_hotffi_sema.gc(sema);
}


/* thread: event loop.  hub host hook. */
static void
ngx_http_hotffi_log(void *ctx, int level, const char *msg)
{
    static const ngx_uint_t  levels[] = {
        NGX_LOG_ERR, NGX_LOG_ERR, NGX_LOG_WARN, NGX_LOG_NOTICE, NGX_LOG_INFO
    };

    if (level < 1 || level > HOTFFI_LOG_INFO) {
        level = HOTFFI_LOG_ERR;
    }

    ngx_log_error(levels[level], ngx_cycle->log, 0, "hotffi: %s", msg);
}


/*
 * thread: event loop.  hub host hook: a runtime's line (hotffi_log()), at
 * its own level, through the cycle's log: the main error_log, reopened by
 * nginx itself on USR1.
 */
static void
ngx_http_hotffi_line(void *ctx, int level, const char *line, size_t len)
{
    ngx_log_error((ngx_uint_t) level, ngx_cycle->log, 0, "hotffi: %*s",
                  len, line);
}


/* thread: event loop */
static void
ngx_http_hotffi_notify_handler(ngx_event_t *ev)
{
    (void) hotffi_hub_drain(ngx_http_hotffi_hub);
}


/* thread: event loop */
static void
ngx_http_hotffi_wakes_handler(ngx_event_t *ev)
{
    hotffi_hub_flush_wakes(ngx_http_hotffi_hub);
}


/*
 * thread: event loop.  hub host hook.  Posted events run once the events
 * epoll returned, the timers and the events posted before are handled, in
 * this same turn of the loop: after every request it is handling now.
 */
static void
ngx_http_hotffi_defer(void)
{
    ngx_post_event(&ngx_http_hotffi_wakes, &ngx_posted_events);
}


/*
 * thread: event loop.  The worker's hub, made on first use: lua-nginx-module
 * runs init_worker_by_lua* from its own init_process handler, which comes
 * before this module's, and runtimes may be loaded there.  Callers make sure
 * this is a worker, not the master at configuration time.
 */
hotffi_hub_t *
ngx_http_hotffi_hub_get(void)
{
    const char        *err;
    hotffi_host_t      host;
    ngx_connection_t  *c;

    if (ngx_http_hotffi_hub) {
        return ngx_http_hotffi_hub;
    }

    host.wake = ngx_http_hotffi_wake;
    host.release = ngx_http_hotffi_release;
    host.defer = ngx_http_hotffi_defer;
    host.log = ngx_http_hotffi_log;
    host.log_ctx = NULL;
    host.line = ngx_http_hotffi_line;

    /* lines more verbose than the main error_log are never copied */
    host.line_level = (int) ngx_min(ngx_cycle->log->log_level,
                                    NGX_LOG_DEBUG);

    ngx_http_hotffi_hub = hotffi_hub_create(&host, &err);
    if (ngx_http_hotffi_hub == NULL) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                      "hotffi: hub not created: %s", err);
        return NULL;
    }

    c = ngx_get_connection(hotffi_hub_fd(ngx_http_hotffi_hub),
                           ngx_cycle->log);
    if (c == NULL) {
        goto failed;
    }

    ngx_http_hotffi_wakes.handler = ngx_http_hotffi_wakes_handler;
    ngx_http_hotffi_wakes.log = ngx_cycle->log;

    c->read->handler = ngx_http_hotffi_notify_handler;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->log = ngx_cycle->log;

    if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
        ngx_free_connection(c);
        goto failed;
    }

    ngx_http_hotffi_notify = c;
    return ngx_http_hotffi_hub;

failed:

    hotffi_hub_destroy(ngx_http_hotffi_hub);
    ngx_http_hotffi_hub = NULL;
    return NULL;
}


/* thread: event loop.  Every runtime gets the stop. */
static void
ngx_http_hotffi_stop_runtimes(void)
{
    hotffi_list_t  *link, *next, *runtimes;

    runtimes = &ngx_http_hotffi_hub->runtimes;

    for (link = hotffi_list_first(runtimes); link != runtimes; link = next) {
        next = link->next;
        hotffi_runtime_unload(hotffi_runtime_of(link));
    }
}


/*
 * thread: event loop.  The exiting worker's grace is over: the calls still
 * waiting fail, so that their requests end and the worker can go, and the
 * runtimes are stopped.
 */
static void
ngx_http_hotffi_grace_handler(ngx_event_t *ev)
{
    uint64_t  n;

    n = hotffi_call_give_up_all(ngx_http_hotffi_hub);

    if (n) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0, "hotffi: worker "
                      "exiting: %uL calls still waiting given up",
                      (uint64_t) n);
    }

    ngx_http_hotffi_stop_runtimes();
}


/*
 * thread: event loop.  Called by resty.hotffi when the worker starts to
 * exit (a premature timer: HUP, quit): calls still waiting after the grace
 * (HOTFFI_SHUTDOWN_GRACE_MS, by default 3000) fail.  The timer is
 * cancelable: a worker with nothing left to do exits without waiting
 * for it.
 */
NGX_HTTP_HOTFFI_EXPORT void
ngx_http_hotffi_ffi_exiting(void)
{
    uint64_t  ns;

    if (ngx_http_hotffi_hub == NULL || ngx_http_hotffi_grace.timer_set) {
        return;
    }

    ns = hotffi_env_ns("HOTFFI_SHUTDOWN_GRACE_MS", NGX_HTTP_HOTFFI_GRACE_MAX_MS,
                       1000000,
                       (uint64_t) NGX_HTTP_HOTFFI_GRACE_MS * 1000000);

    ngx_http_hotffi_grace.handler = ngx_http_hotffi_grace_handler;
    ngx_http_hotffi_grace.log = ngx_cycle->log;
    ngx_http_hotffi_grace.cancelable = 1;

    ngx_add_timer(&ngx_http_hotffi_grace, (ngx_msec_t) (ns / 1000000));
}


/* thread: event loop */
static void
ngx_http_hotffi_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_hotffi_yield_exit();

    if (ngx_http_hotffi_notify == NULL) {
        return;
    }

    if (ngx_http_hotffi_wakes.posted) {
        ngx_delete_posted_event(&ngx_http_hotffi_wakes);
    }

    if (ngx_http_hotffi_grace.timer_set) {
        ngx_del_timer(&ngx_http_hotffi_grace);
    }

    hotffi_hub_flush_wakes(ngx_http_hotffi_hub);

    /* runtimes get the stop, so that their threads end with the process */
    ngx_http_hotffi_stop_runtimes();

    /* the runtimes' last lines, while the log is there to take them */
    (void) hotffi_logbuf_drain(&ngx_http_hotffi_hub->log,
                               ngx_http_hotffi_line, NULL);

    /*
     * The eventfd stays open: a runtime thread may still answer and write to
     * it until the process is gone, and a closed descriptor could be reused.
     * It leaves the event loop only, so nginx's exit check does not count it
     * as a connection left open.
     */
    (void) ngx_del_event(ngx_http_hotffi_notify->read, NGX_READ_EVENT, 0);
    ngx_free_connection(ngx_http_hotffi_notify);
    ngx_http_hotffi_notify->fd = (ngx_socket_t) -1;
    ngx_http_hotffi_notify = NULL;
}
