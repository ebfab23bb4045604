/*
 * hotffi_py_runtime.c -- the registry of the worker's Python runtimes, and
 * the gate every poll made through the loader goes through.
 *
 * DESIGN
 * hotffi frees a queue once libffi_fini() returns, so libffi_fini() must
 * know that no thread can touch tq any more.  The gate counts the threads
 * inside poll (pollers); after the first NULL (the stop) it lets nobody in
 * and answers NULL itself, without touching tq.  libffi_fini() marks the
 * runtime stopped, waits for pollers to drop to 0 and unregisters it; then
 * joins the serve threads and the Python threads init started (which may
 * poll tq directly, lua-resty-ffi style, bypassing the gate).
 *
 * A thread that polls (serve threads too) remembers its tq while it
 * polls, so that hotffi.log() without a tq (hotffi.LogHandler()) names the
 * runtime it works for.  A line is handed to hotffi_log() under the
 * registry's lock, for a tq found in the registry only: libffi_fini()
 * unregisters its runtime before hotffi can free tq.
 *
 * Every entry into Python for a runtime (joins, dropping its module) is
 * made in the runtime's interpreter: the main one, or its venv's
 * sub-interpreter, which hotffi_py_rt_free() ends last.
 *
 * locks: hotffi_py_rt_mtx guards the list and every runtime's pollers,
 * stopped and servers; hotffi_py_rt_idle is signalled when a runtime's
 * pollers drop to 0 after its stop.  hotffi_py_rt_mine is the thread's.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"


static pthread_mutex_t  hotffi_py_rt_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t   hotffi_py_rt_idle = PTHREAD_COND_INITIALIZER;
static hotffi_py_rt_t  *hotffi_py_rts;

/* the tq this thread last polled, until its poll returned NULL */
static __thread void   *hotffi_py_rt_mine;


/* locks: hotffi_py_rt_mtx held */
static hotffi_py_rt_t *
hotffi_py_rt_find(void *tq)
{
    hotffi_py_rt_t  *rt;

    for (rt = hotffi_py_rts; rt; rt = rt->next) {
        if (rt->tq == tq) {
            return rt;
        }
    }

    return NULL;
}


/* thread: event loop.  GIL: any. */
hotffi_py_rt_t *
hotffi_py_rt_create(void *tq, const char *cfg)
{
    hotffi_py_rt_t  *rt;

    rt = calloc(1, sizeof(hotffi_py_rt_t));
    if (rt == NULL) {
        return NULL;
    }

    /* a rollback finds the module it restarts by cfg: hotffi_py_retire.c */
    rt->cfg = strdup(cfg ? cfg : "");
    if (rt->cfg == NULL) {
        free(rt);
        return NULL;
    }

    rt->tq = tq;

    (void) pthread_mutex_lock(&hotffi_py_rt_mtx);
    rt->next = hotffi_py_rts;
    hotffi_py_rts = rt;
    (void) pthread_mutex_unlock(&hotffi_py_rt_mtx);

    return rt;
}


/* thread: init.  GIL: released. */
void
hotffi_py_rt_set_sub(hotffi_py_rt_t *rt, hotffi_py_sub_t *sub)
{
    /* the lock: hotffi_py_rt_add_server() reads interp */
    (void) pthread_mutex_lock(&hotffi_py_rt_mtx);
    rt->sub = sub;
    rt->interp = hotffi_py_sub_interp(sub);
    (void) pthread_mutex_unlock(&hotffi_py_rt_mtx);
}


/* thread: runtime.  GIL: released. */
void *
hotffi_py_rt_poll(void *tq)
{
    void            *task;
    hotffi_py_rt_t  *rt;

    (void) pthread_mutex_lock(&hotffi_py_rt_mtx);

    rt = hotffi_py_rt_find(tq);

    if (rt == NULL || rt->stopped) {
        (void) pthread_mutex_unlock(&hotffi_py_rt_mtx);
        return NULL;
    }

    /* rt cannot be freed while we count in it: libffi_fini() waits */
    rt->pollers++;

    (void) pthread_mutex_unlock(&hotffi_py_rt_mtx);

    hotffi_py_rt_mine = tq;
    task = ngx_http_lua_ffi_task_poll(tq);

    if (task == NULL) {
        hotffi_py_rt_mine = NULL;
    }

    (void) pthread_mutex_lock(&hotffi_py_rt_mtx);

    rt->pollers--;

    if (task == NULL) {
        rt->stopped = 1;
    }

    if (rt->stopped && rt->pollers == 0) {
        (void) pthread_cond_broadcast(&hotffi_py_rt_idle);
    }

    (void) pthread_mutex_unlock(&hotffi_py_rt_mtx);

    return task;
}


/* thread: any.  GIL: any. */
int
hotffi_py_rt_check(void *tq, PyInterpreterState *interp)
{
    int              rc;
    hotffi_py_rt_t  *rt;

    (void) pthread_mutex_lock(&hotffi_py_rt_mtx);

    rt = hotffi_py_rt_find(tq);
    rc = rt != NULL && !rt->stopped && rt->interp == interp ? HOTFFI_PY_OK
                                                            : HOTFFI_PY_ERROR;

    (void) pthread_mutex_unlock(&hotffi_py_rt_mtx);

    return rc;
}


/* thread: any.  GIL: any. */
int
hotffi_py_rt_add_server(void *tq, hotffi_py_server_t *s)
{
    int              rc;
    hotffi_py_rt_t  *rt;

    (void) pthread_mutex_lock(&hotffi_py_rt_mtx);

    rt = hotffi_py_rt_find(tq);

    if (rt == NULL || rt->stopped || rt->interp != s->interp) {
        /* a serve thread must be joined before its interpreter ends */
        rc = HOTFFI_PY_ERROR;

    } else {
        s->next = rt->servers;
        rt->servers = s;
        rc = HOTFFI_PY_OK;
    }

    (void) pthread_mutex_unlock(&hotffi_py_rt_mtx);

    return rc;
}


/* thread: any.  GIL: any. */
void
hotffi_py_rt_log(void *tq, int level, const char *msg, size_t len)
{
    if (hotffi_py_host.log == NULL) {
        return;
    }

    if (tq == NULL) {
        tq = hotffi_py_rt_mine;
    }

    /* hotffi copies the line at once: a short lock */
    (void) pthread_mutex_lock(&hotffi_py_rt_mtx);

    if (tq != NULL && hotffi_py_rt_find(tq) == NULL) {
        tq = NULL;
    }

    /* len 0 would mean NUL-terminated */
    hotffi_py_host.log(tq, level, len ? msg : "",
                       len > INT_MAX ? INT_MAX : (int) len);

    (void) pthread_mutex_unlock(&hotffi_py_rt_mtx);
}


/* thread: hotffi's reaper.  GIL: released. */
hotffi_py_rt_t *
hotffi_py_rt_take(void *tq)
{
    hotffi_py_rt_t  *rt, **prev;

    (void) pthread_mutex_lock(&hotffi_py_rt_mtx);

    rt = hotffi_py_rt_find(tq);

    if (rt != NULL) {
        /* hotffi delivered the stop: threads in poll are on their way out */
        rt->stopped = 1;

        while (rt->pollers) {
            (void) pthread_cond_wait(&hotffi_py_rt_idle, &hotffi_py_rt_mtx);
        }

        for (prev = &hotffi_py_rts; *prev != rt; prev = &(*prev)->next) {
            /* void */
        }

        *prev = rt->next;
    }

    (void) pthread_mutex_unlock(&hotffi_py_rt_mtx);

    return rt;
}


/*
 * GIL: taken.  Joins the Python threads that init started: they may be
 * lua-resty-ffi style pollers calling ngx_http_lua_ffi_task_poll() without
 * the gate.  A thread that never ends keeps libffi_fini() waiting, and so
 * the queue allocated: harmless, and the only safe choice.
 */
static void
hotffi_py_rt_join_threads(hotffi_py_rt_t *rt)
{
    Py_ssize_t        i, n;
    PyObject         *t, *r;
    hotffi_py_gil_t   g;

    hotffi_py_gil_take(rt->interp, &g);

    n = PyList_GET_SIZE(rt->threads);

    for (i = 0; i < n; i++) {
        t = PyList_GET_ITEM(rt->threads, i);

        /* Thread.join() lets the GIL go while it waits */
        r = PyObject_CallMethod(t, "join", NULL);
        if (r == NULL) {
            PyErr_Clear();
        }

        Py_XDECREF(r);
    }

    Py_CLEAR(rt->threads);

    hotffi_py_gil_give(&g);
}


/* thread: hotffi's reaper.  GIL: released. */
void
hotffi_py_rt_join(hotffi_py_rt_t *rt)
{
    hotffi_py_server_t  *s, *next;

    /* serve threads drop their handler themselves, with the GIL */
    for (s = rt->servers; s; s = next) {
        next = s->next;
        (void) pthread_join(s->tid, NULL);
        free(s);
    }

    rt->servers = NULL;

    if (rt->threads != NULL) {
        hotffi_py_rt_join_threads(rt);
    }
}


/* thread: hotffi's reaper.  GIL: released. */
void
hotffi_py_rt_free(hotffi_py_rt_t *rt)
{
    hotffi_py_gil_t    g;
    hotffi_py_kept_t  *old;

    hotffi_py_rt_join(rt);

    old = NULL;

    if (rt->module != NULL) {
        hotffi_py_gil_take(rt->interp, &g);

        /* a rollback may restart it: kept (with rt->sub), else dropped */
        old = hotffi_py_retire_keep(rt);
        Py_CLEAR(rt->module);

        hotffi_py_gil_give(&g);
    }

    /* the record of the same cfg this one replaced, and its interpreter */
    hotffi_py_retire_drop(old);

    /* every thread that ran in it is joined: unless kept, it ends */
    hotffi_py_sub_end(rt->sub);

    free(rt->cfg);
    free(rt);
}
