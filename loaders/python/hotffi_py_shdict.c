/*
 * hotffi_py_shdict.c -- hotffi.shared_dict(name): a lua_shared_dict zone
 * as a hotffi.SharedDict, over hotffi_shdict_*() (include/hotffi.h).
 *
 * DESIGN: Lua's meaning, Python's manners
 * Values are what ngx.shared.DICT holds: None (no key), bool, float (a Lua
 * number; int is accepted on the way in) and bytes (a Lua string; str is
 * accepted as UTF-8).  get() answers (value, flags) and get_stale()
 * (value, flags, stale) as Lua does; add()/replace() answer False where
 * Lua answers false, "exists"/"not found"; incr() without init on a
 * missing key raises KeyError; other failures ("no memory", "not a
 * number") raise RuntimeError with lua-nginx-module's words.
 *
 * The host functions are looked up with dlsym() once, like the loader's
 * others, so the loader still loads on lua-resty-ffi, where
 * hotffi.shared_dict() raises RuntimeError.  The GIL is released around
 * each call: the zone's lock may make it wait for another worker, and
 * nothing there needs Python (docs/api.md, "Shared dicts").
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <dlfcn.h>
#include <stdlib.h>

#include "hotffi.h"


typedef struct {
    void    *(*open)(const char *name);
    int      (*get)(void *dict, const char *key, size_t key_len, int stale,
                    hotffi_shdict_value_t *value, char *err, size_t err_len);
    int      (*store)(void *dict, int op, const char *key, size_t key_len,
                      const hotffi_shdict_value_t *value, double exptime,
                      int *forcible, char *err, size_t err_len);
    int      (*incr)(void *dict, const char *key, size_t key_len, double by,
                     double *value, int has_init, double init,
                     double init_ttl, int *forcible, char *err,
                     size_t err_len);
    double   (*ttl)(void *dict, const char *key, size_t key_len);
} hotffi_py_shdict_api_t;


/* written once under the once, read-only afterwards */
static hotffi_py_shdict_api_t  hotffi_py_shdict_api;
static pthread_once_t          hotffi_py_shdict_once = PTHREAD_ONCE_INIT;


typedef struct {
    PyObject_HEAD
    void      *zone;     /* hotffi's, good for the worker's life */
    PyObject  *name;     /* str, ours */
} hotffi_py_shdict_obj_t;


static void
hotffi_py_shdict_lookup(void)
{
    *(void **) &hotffi_py_shdict_api.open = dlsym(RTLD_DEFAULT,
                                                  "hotffi_shdict");
    *(void **) &hotffi_py_shdict_api.get = dlsym(RTLD_DEFAULT,
                                                 "hotffi_shdict_get");
    *(void **) &hotffi_py_shdict_api.store = dlsym(RTLD_DEFAULT,
                                                   "hotffi_shdict_store");
    *(void **) &hotffi_py_shdict_api.incr = dlsym(RTLD_DEFAULT,
                                                  "hotffi_shdict_incr");
    *(void **) &hotffi_py_shdict_api.ttl = dlsym(RTLD_DEFAULT,
                                                 "hotffi_shdict_ttl");
}


/* GIL: held.  key: str (UTF-8) or bytes-like; view released by caller. */
static int
hotffi_py_shdict_key(PyObject *key, Py_buffer *view)
{
    if (PyUnicode_Check(key)) {
        Py_ssize_t   len;
        const char  *p = PyUnicode_AsUTF8AndSize(key, &len);

        if (p == NULL) {
            return HOTFFI_PY_ERROR;
        }

        /* the str owns p: a read-only view with no exporter */
        if (PyBuffer_FillInfo(view, NULL, (void *) p, len, 1, PyBUF_SIMPLE)
            != 0)
        {
            return HOTFFI_PY_ERROR;
        }

    } else if (PyObject_GetBuffer(key, view, PyBUF_SIMPLE) != 0) {
        PyErr_Format(PyExc_TypeError, "shared dict key must be str or "
                     "bytes, not %.200s", Py_TYPE(key)->tp_name);
        return HOTFFI_PY_ERROR;
    }

    if (view->len == 0 || view->len > 65535) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, view->len ? "shared dict key is "
                        "longer than 65535 bytes" : "shared dict key is "
                        "empty");
        return HOTFFI_PY_ERROR;
    }

    return HOTFFI_PY_OK;
}


/* GIL: held.  A Python value as a dict value; view holds str/bytes. */
static int
hotffi_py_shdict_value(PyObject *o, hotffi_shdict_value_t *v,
    Py_buffer *view, int *has_view)
{
    *has_view = 0;
    memset(v, 0, sizeof(hotffi_shdict_value_t));

    if (o == Py_None) {
        v->type = HOTFFI_SHDICT_NIL;
        return HOTFFI_PY_OK;
    }

    if (PyBool_Check(o)) {
        v->type = HOTFFI_SHDICT_BOOLEAN;
        v->number = o == Py_True;
        return HOTFFI_PY_OK;
    }

    if (PyLong_Check(o) || PyFloat_Check(o)) {
        v->type = HOTFFI_SHDICT_NUMBER;
        v->number = PyFloat_AsDouble(o);
        return v->number == -1.0 && PyErr_Occurred() ? HOTFFI_PY_ERROR
                                                     : HOTFFI_PY_OK;
    }

    if (PyUnicode_Check(o)) {
        Py_ssize_t  len;

        v->str = (char *) PyUnicode_AsUTF8AndSize(o, &len);
        if (v->str == NULL) {
            return HOTFFI_PY_ERROR;
        }
        v->type = HOTFFI_SHDICT_STRING;
        v->len = (size_t) len;
        return HOTFFI_PY_OK;
    }

    if (PyObject_GetBuffer(o, view, PyBUF_SIMPLE) == 0) {
        *has_view = 1;
        v->type = HOTFFI_SHDICT_STRING;
        v->str = view->buf;     /* borrowed from o for the call */
        v->len = (size_t) view->len;
        return HOTFFI_PY_OK;
    }

    PyErr_Format(PyExc_TypeError, "a shared dict holds None, bool, int, "
                 "float, str or bytes, not %.200s", Py_TYPE(o)->tp_name);
    return HOTFFI_PY_ERROR;
}


/* GIL: held.  The Python object of a value got; frees v->str. */
static PyObject *
hotffi_py_shdict_object(hotffi_shdict_value_t *v)
{
    PyObject  *o;

    switch (v->type) {
    case HOTFFI_SHDICT_BOOLEAN:
        return PyBool_FromLong(v->number != 0);
    case HOTFFI_SHDICT_NUMBER:
        return PyFloat_FromDouble(v->number);
    case HOTFFI_SHDICT_STRING:
        o = PyBytes_FromStringAndSize(v->str, (Py_ssize_t) v->len);
        free(v->str);           /* malloc()'ed by hotffi, ours */
        v->str = NULL;
        return o;
    default:
        return Py_NewRef(Py_None);
    }
}


static PyObject *
hotffi_py_shdict_do_get(hotffi_py_shdict_obj_t *self, PyObject *key,
    int stale)
{
    int                    rc;
    char                   err[128];
    PyObject              *value;
    Py_buffer              k;
    hotffi_shdict_value_t  v;

    if (hotffi_py_shdict_key(key, &k) != HOTFFI_PY_OK) {
        return NULL;
    }

    Py_BEGIN_ALLOW_THREADS
    rc = hotffi_py_shdict_api.get(self->zone, k.buf, (size_t) k.len, stale,
                                  &v, err, sizeof(err));
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&k);

    if (rc != HOTFFI_SHDICT_OK) {
        PyErr_Format(PyExc_RuntimeError, "shared dict get: %s", err);
        return NULL;
    }

    value = hotffi_py_shdict_object(&v);
    if (value == NULL) {
        return NULL;
    }

    return stale ? Py_BuildValue("(NIO)", value, v.flags,
                                 v.stale ? Py_True : Py_False)
                 : Py_BuildValue("(NI)", value, v.flags);
}


/* thread: any.  GIL: held, released during the call. */
static PyObject *
hotffi_py_shdict_get(PyObject *self, PyObject *key)
{
    return hotffi_py_shdict_do_get((hotffi_py_shdict_obj_t *) self, key, 0);
}


static PyObject *
hotffi_py_shdict_get_stale(PyObject *self, PyObject *key)
{
    return hotffi_py_shdict_do_get((hotffi_py_shdict_obj_t *) self, key, 1);
}


/* set, safe_set, add, safe_add, replace, delete: key, value, exptime, flags */
static PyObject *
hotffi_py_shdict_store(hotffi_py_shdict_obj_t *self, int op,
    const char *fname, PyObject *args, PyObject *kwargs, int has_value)
{
    int                    rc, has_view;
    char                   err[128];
    double                 exptime;
    unsigned int           flags;
    PyObject              *key, *value;
    Py_buffer              k, view;
    hotffi_shdict_value_t  v;
    static char           *kwlist[] = { "key", "value", "exptime", "flags",
                                        NULL };
    static char           *kwlist_key[] = { "key", NULL };

    value = Py_None;
    exptime = 0;
    flags = 0;

    if (has_value) {
        if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|dI", kwlist, &key,
                                         &value, &exptime, &flags))
        {
            return NULL;
        }

    } else if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:delete",
                                            kwlist_key, &key))
    {
        return NULL;
    }

    if (!(exptime >= 0)) {
        PyErr_Format(PyExc_ValueError, "shared dict %s: exptime must be 0 "
                     "or more seconds", fname);
        return NULL;
    }

    if (hotffi_py_shdict_key(key, &k) != HOTFFI_PY_OK) {
        return NULL;
    }

    if (hotffi_py_shdict_value(value, &v, &view, &has_view) != HOTFFI_PY_OK) {
        PyBuffer_Release(&k);
        return NULL;
    }

    v.flags = flags;

    Py_BEGIN_ALLOW_THREADS
    rc = hotffi_py_shdict_api.store(self->zone, op, k.buf, (size_t) k.len,
                                    &v, exptime, NULL, err, sizeof(err));
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&k);
    if (has_view) {
        PyBuffer_Release(&view);
    }

    if (rc == HOTFFI_SHDICT_DECLINED) {
        return Py_NewRef(Py_False);
    }

    if (rc != HOTFFI_SHDICT_OK) {
        PyErr_Format(PyExc_RuntimeError, "shared dict %s: %s", fname, err);
        return NULL;
    }

    return Py_NewRef(op == HOTFFI_SHDICT_SET || op == HOTFFI_SHDICT_SAFE_SET
                     ? Py_None : Py_True);
}


#define HOTFFI_PY_SHDICT_STORE(fn, op, has_value)                            \
static PyObject *                                                            \
hotffi_py_shdict_##fn(PyObject *self, PyObject *args, PyObject *kwargs)      \
{                                                                            \
    return hotffi_py_shdict_store((hotffi_py_shdict_obj_t *) self, op, #fn,  \
                                  args, kwargs, has_value);                  \
}

HOTFFI_PY_SHDICT_STORE(set, HOTFFI_SHDICT_SET, 1)
HOTFFI_PY_SHDICT_STORE(safe_set, HOTFFI_SHDICT_SAFE_SET, 1)
HOTFFI_PY_SHDICT_STORE(add, HOTFFI_SHDICT_ADD, 1)
HOTFFI_PY_SHDICT_STORE(safe_add, HOTFFI_SHDICT_SAFE_ADD, 1)
HOTFFI_PY_SHDICT_STORE(replace, HOTFFI_SHDICT_REPLACE, 1)
HOTFFI_PY_SHDICT_STORE(delete, HOTFFI_SHDICT_SET, 0)


/* incr(key, value, init=None, init_ttl=0) */
static PyObject *
hotffi_py_shdict_incr(PyObject *self, PyObject *args, PyObject *kwargs)
{
    int          rc;
    char         err[128];
    double       by, init, init_ttl, out;
    PyObject    *key, *oinit;
    Py_buffer    k;
    static char *kwlist[] = { "key", "value", "init", "init_ttl", NULL };

    oinit = Py_None;
    init = 0;
    init_ttl = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "Od|Od:incr", kwlist,
                                     &key, &by, &oinit, &init_ttl))
    {
        return NULL;
    }

    if (oinit != Py_None) {
        init = PyFloat_AsDouble(oinit);
        if (init == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
    }

    if (!(init_ttl >= 0)) {
        PyErr_SetString(PyExc_ValueError, "shared dict incr: init_ttl must "
                        "be 0 or more seconds");
        return NULL;
    }

    if (hotffi_py_shdict_key(key, &k) != HOTFFI_PY_OK) {
        return NULL;
    }

    Py_BEGIN_ALLOW_THREADS
    rc = hotffi_py_shdict_api.incr(((hotffi_py_shdict_obj_t *) self)->zone,
                                   k.buf, (size_t) k.len, by, &out,
                                   oinit != Py_None, init, init_ttl, NULL,
                                   err, sizeof(err));
    Py_END_ALLOW_THREADS

    if (rc == HOTFFI_SHDICT_DECLINED) {
        PyErr_SetObject(PyExc_KeyError, key);
    } else if (rc != HOTFFI_SHDICT_OK) {
        PyErr_Format(PyExc_RuntimeError, "shared dict incr: %s", err);
    }

    PyBuffer_Release(&k);

    return rc == HOTFFI_SHDICT_OK ? PyFloat_FromDouble(out) : NULL;
}


/* ttl(key): seconds left, 0.0 for never, None for no such key */
static PyObject *
hotffi_py_shdict_ttl(PyObject *self, PyObject *key)
{
    double     left;
    Py_buffer  k;

    if (hotffi_py_shdict_key(key, &k) != HOTFFI_PY_OK) {
        return NULL;
    }

    Py_BEGIN_ALLOW_THREADS
    left = hotffi_py_shdict_api.ttl(((hotffi_py_shdict_obj_t *) self)->zone,
                                    k.buf, (size_t) k.len);
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&k);

    return left < 0 ? Py_NewRef(Py_None) : PyFloat_FromDouble(left);
}


static void
hotffi_py_shdict_dealloc(PyObject *o)
{
    Py_XDECREF(((hotffi_py_shdict_obj_t *) o)->name);
    Py_TYPE(o)->tp_free(o);
}


static PyObject *
hotffi_py_shdict_repr(PyObject *o)
{
    return PyUnicode_FromFormat("<hotffi.SharedDict %R>",
                                ((hotffi_py_shdict_obj_t *) o)->name);
}


#define KW  (PyCFunction) (void (*)(void))

static PyMethodDef  hotffi_py_shdict_methods[] = {
    { "get", hotffi_py_shdict_get, METH_O,
      "get(key) -> (value, flags)\n\nDICT:get(key): value None when there "
      "is no such key or it expired." },
    { "get_stale", hotffi_py_shdict_get_stale, METH_O,
      "get_stale(key) -> (value, flags, stale)\n\nDICT:get_stale(key)." },
    { "set", KW hotffi_py_shdict_set, METH_VARARGS | METH_KEYWORDS,
      "set(key, value, exptime=0, flags=0)\n\nDICT:set(); value None "
      "deletes.  exptime in seconds, 0: never.  RuntimeError on failure." },
    { "safe_set", KW hotffi_py_shdict_safe_set, METH_VARARGS | METH_KEYWORDS,
      "safe_set(key, value, exptime=0, flags=0)\n\nset() that never "
      "evicts: RuntimeError('... no memory') when full." },
    { "add", KW hotffi_py_shdict_add, METH_VARARGS | METH_KEYWORDS,
      "add(key, value, exptime=0, flags=0) -> bool\n\nDICT:add(): False "
      "when the key exists." },
    { "safe_add", KW hotffi_py_shdict_safe_add, METH_VARARGS | METH_KEYWORDS,
      "safe_add(key, value, exptime=0, flags=0) -> bool" },
    { "replace", KW hotffi_py_shdict_replace, METH_VARARGS | METH_KEYWORDS,
      "replace(key, value, exptime=0, flags=0) -> bool\n\nDICT:replace(): "
      "False when there is no such key." },
    { "delete", KW hotffi_py_shdict_delete, METH_VARARGS | METH_KEYWORDS,
      "delete(key)\n\nDICT:delete()." },
    { "incr", KW hotffi_py_shdict_incr, METH_VARARGS | METH_KEYWORDS,
      "incr(key, value, init=None, init_ttl=0) -> float\n\nDICT:incr(): "
      "the new value; KeyError when there is no such key and no init." },
    { "ttl", hotffi_py_shdict_ttl, METH_O,
      "ttl(key) -> float or None\n\nDICT:ttl(): seconds left, 0.0 for a "
      "key that never expires, None for no such key." },
    { NULL, NULL, 0, NULL }
};


PyTypeObject  hotffi_py_shdict_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "hotffi.SharedDict",
    .tp_doc = "A lua_shared_dict zone, from hotffi.shared_dict(name).",
    .tp_basicsize = sizeof(hotffi_py_shdict_obj_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = hotffi_py_shdict_dealloc,
    .tp_repr = hotffi_py_shdict_repr,
    .tp_methods = hotffi_py_shdict_methods,
};


/* thread: any.  GIL: held.  hotffi.shared_dict(name). */
PyObject *
hotffi_py_shdict_open(PyObject *mod, PyObject *name)
{
    void                    *zone;
    const char              *s;
    hotffi_py_shdict_obj_t  *o;

    s = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    if (s == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "hotffi.shared_dict(): name must "
                         "be str, not %.200s", Py_TYPE(name)->tp_name);
        }
        return NULL;
    }

    pthread_once(&hotffi_py_shdict_once, hotffi_py_shdict_lookup);

    if (hotffi_py_shdict_api.open == NULL || hotffi_py_shdict_api.get == NULL
        || hotffi_py_shdict_api.store == NULL
        || hotffi_py_shdict_api.incr == NULL
        || hotffi_py_shdict_api.ttl == NULL)
    {
        PyErr_SetString(PyExc_RuntimeError, "hotffi.shared_dict(): the host "
                        "has no hotffi_shdict() (not hotffi?)");
        return NULL;
    }

    zone = hotffi_py_shdict_api.open(s);
    if (zone == NULL) {
        PyErr_Format(PyExc_KeyError, "no lua_shared_dict named %R", name);
        return NULL;
    }

    o = PyObject_New(hotffi_py_shdict_obj_t, &hotffi_py_shdict_type);
    if (o == NULL) {
        return NULL;
    }

    o->zone = zone;
    o->name = Py_NewRef(name);

    return (PyObject *) o;
}
