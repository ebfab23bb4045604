/*
 * ngx_http_hotffi_yield.c -- letting the event loop run once between calls
 * answered on the fast path, without ngx.sleep(0).
 *
 * A coroutine whose calls keep being answered while it spins never gives
 * the event loop a turn; every HOTFFI_SPIN_STREAK_MAX such calls it yields
 * once.  ngx.sleep(0) would do, but a lua-nginx-module built without
 * OpenResty's delayed-events patch (Debian's) logs a [warn] for each one.
 * So the yield is nginx's own: the coroutine waits on a semaphore that a
 * 0 ms timer posts, and a 0 ms timer fires only after the next
 * epoll_wait(), as a sleep(0) would.  One semaphore and one timer serve
 * every coroutine of the worker: the timer posts once for each coroutine
 * that asked since it was armed, and the semaphore resumes them in order.
 */

#include "ngx_http_hotffi_module.h"


static void ngx_http_hotffi_yield_handler(ngx_event_t *ev);


static ngx_event_t   ngx_http_hotffi_yield_timer;

/* lua-nginx-module's semaphore, made on first use, kept for the worker's
   life; event loop only, like the count */
static void         *ngx_http_hotffi_yield_sema;
static ngx_uint_t    ngx_http_hotffi_yielders;


/*
 * thread: event loop.  The semaphore the calling coroutine should wait on
 * (with any timeout: it is posted in the next turn of the loop), or NULL
 * when none could be made: then the coroutine goes on without yielding.
 */
NGX_HTTP_HOTFFI_EXPORT void *
ngx_http_hotffi_ffi_yield(void)
{
    char  *err;

    if (ngx_http_hotffi_yield_sema == NULL) {
        err = NULL;

        if (ngx_http_hotffi_sema.create(&ngx_http_hotffi_yield_sema, 0, &err)
            != NGX_OK)
        {
            ngx_http_hotffi_yield_sema = NULL;
            return NULL;
        }

        ngx_http_hotffi_yield_timer.handler = ngx_http_hotffi_yield_handler;
        ngx_http_hotffi_yield_timer.log = ngx_cycle->log;

        /* a shutting-down worker need not wait for it */
        ngx_http_hotffi_yield_timer.cancelable = 1;
    }

    if (!ngx_http_hotffi_yield_timer.timer_set) {
        ngx_add_timer(&ngx_http_hotffi_yield_timer, 0);
    }

    ngx_http_hotffi_yielders++;

    return ngx_http_hotffi_yield_sema;
}


/* thread: event loop */
static void
ngx_http_hotffi_yield_handler(ngx_event_t *ev)
{
    ngx_uint_t  n;

    n = ngx_http_hotffi_yielders;
    ngx_http_hotffi_yielders = 0;

    /*
     * A coroutine killed while it waited leaves its post unclaimed: the
     * next one to yield then goes on at once, which costs nothing.
     */
    (void) ngx_http_hotffi_sema.post(ngx_http_hotffi_yield_sema, (int) n);
}


/*
 * thread: event loop, exit_process.  Before the cycle's pool goes, which
 * takes lua-nginx-module's semaphore memory with it.
 */
void
ngx_http_hotffi_yield_exit(void)
{
    if (ngx_http_hotffi_yield_timer.timer_set) {
        ngx_del_timer(&ngx_http_hotffi_yield_timer);
    }

    if (ngx_http_hotffi_yield_sema) {
        ngx_http_hotffi_sema.gc(ngx_http_hotffi_yield_sema);
        ngx_http_hotffi_yield_sema = NULL;
    }
}
