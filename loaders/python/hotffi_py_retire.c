/*
 * hotffi_py_retire.c -- in-place reload of a Python runtime: the old
 * version's retire(tq) hands its state over, the new version's init reads
 * it with hotffi.state(tq), and a new version that fails to start is
 * rolled back to the module the old one ran.
 *
 * DESIGN
 * rt:__reload() ends the old version on a hotffi reaper thread (with
 * libffi_retire(), or libffi_fini() when no state is asked for), then
 * calls libffi_init() of the new one on the event loop and, if that
 * fails, libffi_init() once more with the old version's cfg: the rollback,
 * which hotffi_rollback(tq) tells apart.  With "module?", importing the
 * file for the rollback would run the new, broken code again, so a
 * rollback restarts the module object the old version ran instead.
 *
 * The tq changes with every version, the cfg text does not: so when a
 * version ends, its module is kept in a record under its cfg (one record
 * per cfg, the newest wins).  A rollback takes the record of its cfg; an
 * init that is not a rollback and succeeds forgets it, since from then on
 * its own module is the one to go back to.  A record whose runtime was
 * unloaded, or moved to another library or cfg, stays until its cfg is
 * used again: at most one module per cfg text ever loaded.  Two runtimes
 * with the same cfg reloading at the same moment may swap modules, which
 * are then the same file's anyway.
 *
 * On a host without hotffi_rollback() (lua-resty-ffi) there is never a
 * rollback, and no record is kept.
 *
 * A venv runtime's record also holds its sub-interpreter, which ends when
 * the record is dropped.  libffi_fini() cannot tell an unload from a
 * reload with state = false, and an unload must end the interpreter: so
 * such a runtime is kept only when libffi_retire() ends it, which only a
 * reload does.  A rollback after a reload with state = false imports the
 * old cfg afresh, in a new sub-interpreter.
 *
 * locks: hotffi_py_kept_mtx guards the list of records; a record that
 * left the list is its taker's alone, and its module is dropped with the
 * GIL of its own interpreter, the lock not held.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"

/* last: the core's headers declare what follows them hidden */
#include "hotffi_err.h"


/*
 * hotffi keeps the first 400 bytes of a retire error in the reload's
 * message: hand it the last 400 of the traceback, which say what failed.
 */
#define HOTFFI_PY_RETIRE_ERR_MAX  401


typedef struct hotffi_py_kept_s  hotffi_py_kept_t;

struct hotffi_py_kept_s {
    char              *cfg;      /* ours: the version's cfg text */
    PyObject          *module;   /* strong; dropped with sub's GIL */
    hotffi_py_sub_t   *sub;      /* ours: the interpreter of module, or
                                    NULL for the main one */
    hotffi_py_kept_t  *next;
};


/* the records, by cfg; ours */
static pthread_mutex_t         hotffi_py_kept_mtx = PTHREAD_MUTEX_INITIALIZER;
static hotffi_py_kept_t       *hotffi_py_kept;

/*
 * GIL: the init now running and its state, for hotffi.state(); the state
 * is borrowed from libffi_init(), which clears both before it returns
 */
static void                   *hotffi_py_state_tq;
static PyObject               *hotffi_py_state_obj;


/*
 * locks: hotffi_py_kept_mtx held.  Unlinks and returns the record of cfg,
 * or NULL; the caller owns it and frees it with hotffi_py_retire_drop().
 */
static hotffi_py_kept_t *
hotffi_py_kept_take(const char *cfg)
{
    hotffi_py_kept_t  *k, **prev;

    for (prev = &hotffi_py_kept; (k = *prev) != NULL; prev = &k->next) {
        if (strcmp(k->cfg, cfg) == 0) {
            *prev = k->next;
            return k;
        }
    }

    return NULL;
}


/* thread: any but the event loop.  GIL: released.  k has left the list. */
void
hotffi_py_retire_drop(hotffi_py_kept_t *k)
{
    hotffi_py_gil_t  g;

    if (k == NULL) {
        return;
    }

    if (k->module != NULL) {
        hotffi_py_gil_take(hotffi_py_sub_interp(k->sub), &g);
        Py_CLEAR(k->module);
        hotffi_py_gil_give(&g);
    }

    hotffi_py_sub_end(k->sub);

    free(k->cfg);
    free(k);
}


/*
 * thread: hotffi's reaper.  GIL: held.  retire's result as a malloc()'ed,
 * NUL-terminated blob in *blob (NULL for None), the caller's: it passes to
 * hotffi when libffi_retire() returns.  HOTFFI_PY_ERROR with an exception
 * set.
 */
static int
hotffi_py_retire_blob(PyObject *res, char **blob, int *len)
{
    char       *b;
    PyObject   *bytes;
    Py_buffer   view;
    Py_ssize_t  n;

    if (res == Py_None) {
        return HOTFFI_PY_OK;
    }

    if (PyUnicode_Check(res)) {
        bytes = PyUnicode_AsUTF8String(res);

    } else if (PyObject_CheckBuffer(res)) {
        if (PyObject_GetBuffer(res, &view, PyBUF_SIMPLE) != 0) {
            return HOTFFI_PY_ERROR;
        }

        bytes = PyBytes_FromStringAndSize(view.buf, view.len);
        PyBuffer_Release(&view);

    } else {
        PyErr_Format(PyExc_TypeError, "retire() returned %.200s, expected "
                     "bytes, str or None", Py_TYPE(res)->tp_name);
        return HOTFFI_PY_ERROR;
    }

    if (bytes == NULL) {
        return HOTFFI_PY_ERROR;
    }

    n = PyBytes_GET_SIZE(bytes);

    if (n >= INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "retire() returned 2 GiB or "
                        "more");
        Py_DECREF(bytes);
        return HOTFFI_PY_ERROR;
    }

    b = malloc((size_t) n + 1);
    if (b == NULL) {
        PyErr_NoMemory();
        Py_DECREF(bytes);
        return HOTFFI_PY_ERROR;
    }

    memcpy(b, PyBytes_AS_STRING(bytes), (size_t) n + 1);
    *blob = b;
    *len = (int) n;

    Py_DECREF(bytes);

    return HOTFFI_PY_OK;
}


/* thread: hotffi's reaper.  GIL: taken. */
int
hotffi_py_retire_run(hotffi_py_rt_t *rt, char **state, int *len)
{
    char              err[HOTFFI_PY_ERR_MAX], why[HOTFFI_PY_RETIRE_ERR_MAX];
    PyObject         *func, *tqo, *res;
    hotffi_py_gil_t   g;

    *state = NULL;
    *len = 0;

    hotffi_py_gil_take(rt->interp, &g);

    /* retire() is optional: without one the next version gets no state */
    func = NULL;

    if (rt->module != NULL) {
        func = PyObject_GetAttrString(rt->module, "retire");

        if (func == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                goto failed;
            }

            PyErr_Clear();
        }
    }

    if (func == NULL) {
        hotffi_py_gil_give(&g);
        return 0;
    }

    /* tq is stopped: hotffi.poll() gives None, serve() refuses it */
    tqo = PyLong_FromVoidPtr(rt->tq);
    res = tqo ? PyObject_CallOneArg(func, tqo) : NULL;
    Py_XDECREF(tqo);
    Py_DECREF(func);

    if (res != NULL
        && hotffi_py_retire_blob(res, state, len) == HOTFFI_PY_OK)
    {
        Py_DECREF(res);
        hotffi_py_gil_give(&g);
        return 0;
    }

    Py_XDECREF(res);

failed:

    /* the whole traceback to the log, its end to the reload's error */
    hotffi_py_error_format(err, sizeof(err));
    hotffi_py_gil_give(&g);

    (void) fprintf(stderr, "hotffi_python: runtime \"%s\" failed to "
                   "retire, the reload rolls back: %s\n", rt->cfg, err);

    hotffi_err_tail(why, sizeof(why), err, strlen(err));
    hotffi_py_error_pass(rt->tq, why);

    return HOTFFI_PY_ERETIRE;
}


/* thread: hotffi's reaper.  GIL: held, in rt's interpreter. */
hotffi_py_kept_t *
hotffi_py_retire_keep(hotffi_py_rt_t *rt)
{
    hotffi_py_kept_t  *k, *old;

    /* lua-resty-ffi never rolls back */
    if (hotffi_py_host.rollback == NULL) {
        return NULL;
    }

    /* libffi_fini() may be an unload, which ends a venv's interpreter */
    if (rt->sub != NULL && !rt->retiring) {
        return NULL;
    }

    k = malloc(sizeof(hotffi_py_kept_t));
    if (k == NULL) {
        /* a rollback of this cfg then imports the module again */
        return NULL;
    }

    k->cfg = rt->cfg;
    k->module = rt->module;
    k->sub = rt->sub;
    rt->cfg = NULL;
    rt->module = NULL;
    rt->sub = NULL;

    (void) pthread_mutex_lock(&hotffi_py_kept_mtx);

    old = hotffi_py_kept_take(k->cfg);

    k->next = hotffi_py_kept;
    hotffi_py_kept = k;

    (void) pthread_mutex_unlock(&hotffi_py_kept_mtx);

    return old;
}


/* thread: event loop, in libffi_init().  GIL: held. */
PyObject *
hotffi_py_retire_state(void *tq)
{
    int          len;
    const char  *s;

    if (hotffi_py_host.state == NULL) {
        return NULL;
    }

    len = 0;
    s = hotffi_py_host.state(tq, &len);

    if (s == NULL || len < 0) {
        return NULL;
    }

    return PyBytes_FromStringAndSize(s, len);
}


/* thread: init, in libffi_init().  GIL: any. */
PyObject *
hotffi_py_retire_rollback(void *tq, const char *cfg, hotffi_py_sub_t **sub)
{
    PyObject          *module;
    hotffi_py_kept_t  *k;

    *sub = NULL;

    if (hotffi_py_host.rollback == NULL || !hotffi_py_host.rollback(tq)) {
        return NULL;
    }

    (void) pthread_mutex_lock(&hotffi_py_kept_mtx);
    k = hotffi_py_kept_take(cfg);
    (void) pthread_mutex_unlock(&hotffi_py_kept_mtx);

    if (k == NULL) {
        /* out of memory, or a venv runtime ended by libffi_fini(): the
         * module is imported again */
        return NULL;
    }

    /* both go to the caller: nothing left to drop */
    module = k->module;
    *sub = k->sub;
    free(k->cfg);
    free(k);

    return module;
}


/* thread: init, in libffi_init().  GIL: any. */
hotffi_py_kept_t *
hotffi_py_retire_forget(const char *cfg)
{
    hotffi_py_kept_t  *k;

    (void) pthread_mutex_lock(&hotffi_py_kept_mtx);
    k = hotffi_py_kept_take(cfg);
    (void) pthread_mutex_unlock(&hotffi_py_kept_mtx);

    return k;
}


/* thread: event loop.  GIL: held. */
void
hotffi_py_retire_state_set(void *tq, PyObject *state)
{
    hotffi_py_state_tq = tq;
    hotffi_py_state_obj = state;
}


/* thread: any.  GIL: held. */
PyObject *
hotffi_py_retire_state_of(void *tq)
{
    if (tq == NULL || tq != hotffi_py_state_tq) {
        PyErr_SetString(PyExc_RuntimeError, "hotffi.state(tq) only works "
                        "while init(cfg, tq) runs, with its tq");
        return NULL;
    }

    return Py_NewRef(hotffi_py_state_obj ? hotffi_py_state_obj : Py_None);
}
