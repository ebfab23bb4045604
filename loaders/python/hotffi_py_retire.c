/*
 * hotffi_py_retire.c -- in-place reload of a Python runtime: the old
 * version's retire(tq) hands its state over, the new version's init reads
 * it with hotffi.state(tq), and a new version that fails to start is
 * rolled back to the module the old one ran.
 *
 * DESIGN
 * rt:__reload() calls libffi_retire() of the old version on a hotffi
 * reaper thread, then libffi_init() of the new one on the event loop and,
 * if that fails, libffi_init() once more with the old version's cfg and
 * the same state: the rollback.  With "module?", importing the file for
 * the rollback would run the new, broken code again, so the loader must
 * recognise the rollback and restart the old module object instead.  It
 * can, because hotffi gives both inits the very blob libffi_retire()
 * returned: every retire leaves a record (cfg, module, blob address), an
 * init that starts from a blob of ours settles its record (forgotten on
 * success, armed on failure), and the next init with an armed record's cfg
 * and blob is the rollback.  A retire() that fails leaves an armed record
 * without blob: hotffi restarts the old version at once, without state.
 *
 * So that a blob identifies its record, libffi_retire() always returns
 * one, an empty one (len 0, a single NUL byte) for "no state": a NULL
 * state would look like any first load.  hotffi.state() gives None for an
 * empty blob, and a C successor sees an empty NUL-terminated string.
 *
 * Blob addresses are compared, never read through: hotffi frees a blob
 * once the reload ends, and a record left behind (the next version was
 * another library) is forgotten when malloc() gives its address to a newer
 * retire.
 *
 * locks: hotffi_py_retired_mtx guards the list of records.  A record's
 * module is dropped with the GIL, after the record left the list.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"


typedef const char *(*hotffi_py_state_pt)(void *tq, int *len);

typedef struct hotffi_py_retired_s  hotffi_py_retired_t;

struct hotffi_py_retired_s {
    char                 *cfg;      /* ours: the version's cfg text */
    PyObject             *module;   /* strong; dropped with the GIL */
    const void           *blob;     /* the value only: never read through */
    unsigned              armed:1;  /* the next init of cfg is a rollback */
    hotffi_py_retired_t  *next;
};


static pthread_mutex_t       hotffi_py_retired_mtx =
    PTHREAD_MUTEX_INITIALIZER;
static hotffi_py_retired_t  *hotffi_py_retired;

/* GIL: the init now running and its state, for hotffi.state() */
static void                 *hotffi_py_state_tq;
static PyObject             *hotffi_py_state_obj;


/* GIL: held.  r has left the list. */
static void
hotffi_py_retired_free(hotffi_py_retired_t *r)
{
    Py_XDECREF(r->module);
    free(r->cfg);
    free(r);
}


/*
 * thread: hotffi's reaper.  GIL: held.  r: ownership passes to the list.
 * Records with the same blob address are stale (hotffi freed that blob):
 * they go.
 */
static void
hotffi_py_retired_add(hotffi_py_retired_t *r)
{
    hotffi_py_retired_t  *p, **prev, *stale;

    stale = NULL;

    (void) pthread_mutex_lock(&hotffi_py_retired_mtx);

    prev = &hotffi_py_retired;

    while ((p = *prev) != NULL) {
        if (r->blob != NULL && p->blob == r->blob) {
            *prev = p->next;
            p->next = stale;
            stale = p;
            continue;
        }

        prev = &p->next;
    }

    r->next = hotffi_py_retired;
    hotffi_py_retired = r;

    (void) pthread_mutex_unlock(&hotffi_py_retired_mtx);

    while (stale) {
        p = stale->next;
        hotffi_py_retired_free(stale);
        stale = p;
    }
}


/*
 * thread: hotffi's reaper.  GIL: held.  retire's result as a malloc()'ed,
 * NUL-terminated blob; NULL with an exception set.
 */
static char *
hotffi_py_retire_blob(PyObject *res, int *len)
{
    char       *blob;
    PyObject   *bytes;
    Py_buffer   view;
    Py_ssize_t  n;

    if (res == Py_None) {
        bytes = PyBytes_FromStringAndSize("", 0);

    } else if (PyUnicode_Check(res)) {
        bytes = PyUnicode_AsUTF8String(res);

    } else if (PyObject_CheckBuffer(res)) {
        if (PyObject_GetBuffer(res, &view, PyBUF_SIMPLE) != 0) {
            return NULL;
        }

        bytes = PyBytes_FromStringAndSize(view.buf, view.len);
        PyBuffer_Release(&view);

    } else {
        PyErr_Format(PyExc_TypeError, "retire() returned %.200s, expected "
                     "bytes, str or None", Py_TYPE(res)->tp_name);
        return NULL;
    }

    if (bytes == NULL) {
        return NULL;
    }

    n = PyBytes_GET_SIZE(bytes);

    if (n >= INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "retire() returned 2 GiB or "
                        "more");
        Py_DECREF(bytes);
        return NULL;
    }

    blob = malloc((size_t) n + 1);
    if (blob == NULL) {
        PyErr_NoMemory();
        Py_DECREF(bytes);
        return NULL;
    }

    memcpy(blob, PyBytes_AS_STRING(bytes), (size_t) n + 1);
    *len = (int) n;

    Py_DECREF(bytes);

    return blob;
}


/* thread: hotffi's reaper.  GIL: taken. */
int
hotffi_py_retire_run(hotffi_py_rt_t *rt, char **state, int *len)
{
    int                   rc;
    char                 *blob, err[HOTFFI_PY_ERR_MAX];
    PyObject             *func, *tqo, *res;
    PyGILState_STATE      gstate;
    hotffi_py_retired_t  *r;

    blob = NULL;
    res = NULL;
    *len = 0;

    gstate = PyGILState_Ensure();

    r = calloc(1, sizeof(hotffi_py_retired_t));
    if (r == NULL) {
        PyErr_NoMemory();
        goto failed;
    }

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
        res = Py_NewRef(Py_None);

    } else {
        /* tq is stopped: hotffi.poll() gives None, serve() refuses it */
        tqo = PyLong_FromVoidPtr(rt->tq);
        res = tqo ? PyObject_CallOneArg(func, tqo) : NULL;
        Py_XDECREF(tqo);
        Py_DECREF(func);
    }

    if (res == NULL) {
        goto failed;
    }

    blob = hotffi_py_retire_blob(res, len);
    if (blob == NULL) {
        goto failed;
    }

    rc = 0;
    goto done;

failed:

    rc = HOTFFI_PY_ERETIRE;
    *len = 0;

    /* the reload's error only has the rc: the traceback goes to the log */
    hotffi_py_error_format(err, sizeof(err));
    (void) fprintf(stderr, "hotffi_python: runtime \"%s\" failed to "
                   "retire, the reload rolls back: %s\n", rt->cfg, err);

done:

    Py_XDECREF(res);

    if (r != NULL) {
        /* hotffi restarts the old version at once if this failed: armed */
        r->cfg = rt->cfg;
        r->module = rt->module;
        r->blob = blob;
        r->armed = rc != 0;
        rt->cfg = NULL;
        rt->module = NULL;
        hotffi_py_retired_add(r);
    }

    PyGILState_Release(gstate);

    *state = blob;

    return rc;
}


/* thread: event loop.  GIL: held. */
PyObject *
hotffi_py_retire_state(void *tq, const void **raw)
{
    int                        len;
    const char                *s;
    static int                 looked;
    static hotffi_py_state_pt  get_state;

    *raw = NULL;

    /* looked up, not linked: lua-resty-ffi has no hotffi_state() */
    if (!looked) {
        *(void **) &get_state = dlsym(RTLD_DEFAULT, "hotffi_state");
        looked = 1;
    }

    if (get_state == NULL) {
        return NULL;
    }

    len = 0;
    s = get_state(tq, &len);

    if (s == NULL) {
        return NULL;
    }

    *raw = s;

    if (len <= 0) {
        return Py_NewRef(Py_None);
    }

    return PyBytes_FromStringAndSize(s, len);
}


/* thread: event loop.  GIL: held. */
PyObject *
hotffi_py_retire_rollback(const char *cfg, const void *raw)
{
    PyObject             *module;
    hotffi_py_retired_t  *r, **prev;

    (void) pthread_mutex_lock(&hotffi_py_retired_mtx);

    for (prev = &hotffi_py_retired; (r = *prev) != NULL; prev = &r->next) {
        if (r->armed && r->blob == raw
            && strcmp(r->cfg, cfg ? cfg : "") == 0)
        {
            *prev = r->next;
            break;
        }
    }

    (void) pthread_mutex_unlock(&hotffi_py_retired_mtx);

    if (r == NULL) {
        return NULL;
    }

    module = r->module;
    r->module = NULL;
    hotffi_py_retired_free(r);

    return module;
}


/* thread: event loop.  GIL: held. */
void
hotffi_py_retire_settle(const void *raw, int ok)
{
    hotffi_py_retired_t  *r, **prev, *gone;

    if (raw == NULL) {
        return;
    }

    gone = NULL;

    (void) pthread_mutex_lock(&hotffi_py_retired_mtx);

    prev = &hotffi_py_retired;

    while ((r = *prev) != NULL) {
        if (r->blob != raw) {
            prev = &r->next;
            continue;
        }

        if (!ok) {
            r->armed = 1;
            prev = &r->next;
            continue;
        }

        *prev = r->next;
        r->next = gone;
        gone = r;
    }

    (void) pthread_mutex_unlock(&hotffi_py_retired_mtx);

    while (gone) {
        r = gone->next;
        hotffi_py_retired_free(gone);
        gone = r;
    }
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
