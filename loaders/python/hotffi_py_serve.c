/*
 * hotffi_py_serve.c -- hotffi.serve(tq, handler): threads that take tasks
 * and answer each with handler(req).
 *
 * A serve thread is a plain pthread with a Python thread state of its own
 * for its whole life, in the interpreter of the runtime (the main one, or
 * its venv's sub-interpreter), so a call costs no thread-state set-up: it
 * holds the GIL while the handler runs and gives it up while it waits in
 * poll.  A
 * handler that raises, or returns something that is not bytes, str or
 * None, answers the call with rc 1 and the traceback: a call never hangs on
 * a Python error; hotffi.Error(rc, data) is the way to fail on purpose.
 * Such an unmeant exception is also logged with its traceback (the end of
 * a long one), at level error: a caller that drops the payload must not
 * hide it.  The threads end at the stop and libffi_fini() joins them.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"

/* last: the core's headers declare what follows them hidden */
#include "hotffi_err.h"


/*
 * A logged traceback keeps its end within this much: hotffi keeps 1900
 * bytes of a line, the runtime's name included.
 */
#define HOTFFI_PY_LOG_MAX  1536


/*
 * thread: serve.  GIL: any.  Logs an exception's text (borrowed), keeping
 * its end -- where the exception line is -- when the line is too long for
 * nginx's log.
 */
static void
hotffi_py_serve_log(void *tq, const char *text, size_t len)
{
    int   n;
    char  line[HOTFFI_PY_LOG_MAX];

    n = snprintf(line, sizeof(line), "serve() handler raised: ");
    hotffi_err_tail(line + n, sizeof(line) - (size_t) n, text, len);
    hotffi_py_rt_log(tq, HOTFFI_LEVEL_ERR, line, strlen(line));
}


/* thread: serve.  GIL: held.  Answers one task, whatever handler does. */
static void
hotffi_py_serve_one(void *tq, PyObject *handler, void *task)
{
    int                len;
    char              *req;
    size_t             n;
    PyObject          *arg, *res, *bytes;
    static const char  unknown[] = "unknown Python error";

    /* req: borrowed from the task until the answer; bytes copies it */
    req = ngx_http_lua_ffi_get_req(task, &len);

    arg = PyBytes_FromStringAndSize(req, len);
    res = arg ? PyObject_CallOneArg(handler, arg) : NULL;
    Py_XDECREF(arg);

    if (res != NULL && hotffi_py_answer(task, 0, res) == HOTFFI_PY_OK) {
        Py_DECREF(res);
        return;
    }

    Py_XDECREF(res);

    /* raise hotffi.Error(rc, data): a failure the handler meant */
    if (hotffi_py_answer_error(task) == HOTFFI_PY_OK) {
        return;
    }

    bytes = hotffi_py_error_bytes(&n);

    if (bytes == NULL) {
        hotffi_py_serve_log(tq, unknown, sizeof(unknown) - 1);
        hotffi_py_answer_text(task, HOTFFI_PY_RC_EXCEPTION, unknown,
                              sizeof(unknown) - 1);
        return;
    }

    /* the error log gets the traceback too: the caller may not show it */
    hotffi_py_serve_log(tq, PyBytes_AS_STRING(bytes), n);
    hotffi_py_answer_text(task, HOTFFI_PY_RC_EXCEPTION,
                          PyBytes_AS_STRING(bytes), n);
    Py_DECREF(bytes);
}


/* thread: serve.  GIL: taken for the thread's life, released in poll. */
static void *
hotffi_py_serve_loop(void *data)
{
    void                *task;
    PyThreadState       *ts;
    hotffi_py_gil_t      g;
    hotffi_py_server_t  *s = data;

    hotffi_py_gil_take(s->interp, &g);

    for ( ;; ) {
        ts = PyEval_SaveThread();
        task = hotffi_py_rt_poll(s->tq);
        PyEval_RestoreThread(ts);

        if (task == NULL) {
            break;
        }

        hotffi_py_serve_one(s->tq, s->handler, task);
    }

    /* s itself is freed by libffi_fini() after the join */
    Py_CLEAR(s->handler);

    hotffi_py_gil_give(&g);

    return NULL;
}


/* thread: any.  GIL: held. */
int
hotffi_py_serve_start(void *tq, PyObject *handler)
{
    int                  err;
    sigset_t             all, old;
    PyThreadState       *ts;
    hotffi_py_server_t  *s;

    /*
     * A thread of another interpreter's runtime would poll its queue
     * before hotffi_py_rt_add_server() could refuse it: refused first.
     */
    if (hotffi_py_rt_check(tq, hotffi_py_interp_current()) != HOTFFI_PY_OK) {
        PyErr_SetString(PyExc_ValueError, "hotffi.serve(): tq is not the "
                        "queue of a running runtime of this interpreter");
        return HOTFFI_PY_ERROR;
    }

    s = calloc(1, sizeof(hotffi_py_server_t));
    if (s == NULL) {
        PyErr_NoMemory();
        return HOTFFI_PY_ERROR;
    }

    s->tq = tq;
    s->handler = Py_NewRef(handler);
    s->interp = hotffi_py_interp_current();

    /* s: the thread reads it; the runtime owns it once added below */

    /*
     * Signals are nginx's, for its event loop thread: the new thread (and
     * every thread it starts) blocks them all.
     */
    (void) sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&s->tid, NULL, hotffi_py_serve_loop, s);
    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (err != 0) {
        Py_DECREF(s->handler);
        free(s);
        errno = err;
        PyErr_SetFromErrno(PyExc_RuntimeError);
        return HOTFFI_PY_ERROR;
    }

    if (hotffi_py_rt_add_server(tq, s) == HOTFFI_PY_OK) {
        return HOTFFI_PY_OK;
    }

    /*
     * tq is not (or no longer) a running runtime: the thread finds that out
     * at its first poll and ends; it needs the GIL to say goodbye.
     */
    ts = PyEval_SaveThread();
    (void) pthread_join(s->tid, NULL);
    PyEval_RestoreThread(ts);

    free(s);

    PyErr_SetString(PyExc_ValueError, "hotffi.serve(): tq is not the queue "
                    "of a running runtime of this interpreter");
    return HOTFFI_PY_ERROR;
}
