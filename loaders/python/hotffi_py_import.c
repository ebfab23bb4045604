/*
 * hotffi_py_import.c -- finding a runtime's module (afresh with "?"),
 * calling its init function, and undoing the import when the load fails.
 *
 * "module?" makes a new module object from the file on disk each time,
 * rather than importlib.reload()'s update in place: a runtime still serving
 * the old version keeps its own module and globals, and a new version that
 * does not compile or whose init fails leaves sys.modules as it was.  The
 * source is compiled directly, bypassing __pycache__, whose timestamps
 * (seconds) miss a file rewritten within a second to the same size.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>



/*
 * thread: event loop.  GIL: held.
 * dir first on sys.path, unless it is there already.
 */
static int
hotffi_py_import_path_add(const char *dir)
{
    int        rc, has;
    PyObject  *path, *d;

    path = PySys_GetObject("path");

    if (path == NULL || !PyList_Check(path)) {
        PyErr_SetString(PyExc_RuntimeError, "sys.path is not a list");
        return HOTFFI_PY_ERROR;
    }

    d = PyUnicode_DecodeFSDefault(dir);
    if (d == NULL) {
        return HOTFFI_PY_ERROR;
    }

    has = PySequence_Contains(path, d);
    rc = has < 0 ? -1 : has ? 0 : PyList_Insert(path, 0, d);

    Py_DECREF(d);

    return rc == 0 ? HOTFFI_PY_OK : HOTFFI_PY_ERROR;
}


/* thread: event loop.  GIL: held.  New reference to module.attr. */
static PyObject *
hotffi_py_import_attr(const char *module, const char *attr)
{
    PyObject  *m, *a;

    m = PyImport_ImportModule(module);
    if (m == NULL) {
        return NULL;
    }

    a = PyObject_GetAttrString(m, attr);
    Py_DECREF(m);

    return a;
}


/*
 * thread: event loop.  GIL: held.  The Python threads running now, as a
 * set; with before, the ones started since, as a list (dummies for
 * foreign threads left out).
 */
static PyObject *
hotffi_py_import_threads(PyObject *before)
{
    Py_ssize_t  i, n;
    PyObject   *enumerate, *all, *dummy, *list, *t;
    int         old, fake;

    enumerate = hotffi_py_import_attr("threading", "enumerate");
    if (enumerate == NULL) {
        return NULL;
    }

    all = PyObject_CallNoArgs(enumerate);
    Py_DECREF(enumerate);

    if (all == NULL) {
        return NULL;
    }

    if (before == NULL) {
        list = PySet_New(all);
        Py_DECREF(all);
        return list;
    }

    list = NULL;

    dummy = hotffi_py_import_attr("threading", "_DummyThread");
    if (dummy == NULL) {
        goto done;
    }

    list = PyList_New(0);
    if (list == NULL) {
        goto done;
    }

    n = PyList_GET_SIZE(all);

    for (i = 0; i < n; i++) {
        t = PyList_GET_ITEM(all, i);

        old = PySet_Contains(before, t);
        fake = PyObject_IsInstance(t, dummy);

        if (old < 0 || fake < 0) {
            Py_CLEAR(list);
            goto done;
        }

        if (!old && !fake && PyList_Append(list, t) != 0) {
            Py_CLEAR(list);
            goto done;
        }
    }

done:

    Py_XDECREF(dummy);
    Py_DECREF(all);

    return list;
}


/*
 * thread: event loop.  GIL: held.
 * sys.modules[name] back to old (NULL: none), exception kept.
 */
static void
hotffi_py_import_restore(PyObject *name, PyObject *old)
{
    PyObject  *type, *value, *tb, *modules;

    PyErr_Fetch(&type, &value, &tb);

    modules = PyImport_GetModuleDict();

    if (old != NULL) {
        (void) PyDict_SetItem(modules, name, old);

    } else if (PyDict_DelItem(modules, name) != 0) {
        PyErr_Clear();
    }

    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}


/*
 * thread: event loop.  GIL: held.
 * Runs the module's code from its source file, or its loader.
 */
static int
hotffi_py_import_exec(PyObject *spec, PyObject *module)
{
    int        is_source;
    PyObject  *loader, *sfl, *origin, *data, *code, *dict, *r;

    r = NULL;
    data = NULL;
    code = NULL;
    origin = NULL;

    loader = PyObject_GetAttrString(spec, "loader");
    sfl = hotffi_py_import_attr("importlib.machinery", "SourceFileLoader");

    if (loader == NULL || sfl == NULL) {
        goto done;
    }

    is_source = PyObject_IsInstance(loader, sfl);

    if (is_source < 0) {
        goto done;
    }

    if (!is_source) {
        /* a .pyc or an extension module: its loader knows best */
        r = PyObject_CallMethod(loader, "exec_module", "O", module);
        goto done;
    }

    origin = PyObject_GetAttrString(spec, "origin");
    if (origin == NULL) {
        goto done;
    }

    data = PyObject_CallMethod(loader, "get_data", "O", origin);
    if (data == NULL) {
        goto done;
    }

    code = PyObject_CallMethod(loader, "source_to_code", "OO", data, origin);
    if (code == NULL) {
        goto done;
    }

    dict = PyModule_GetDict(module);

    if (PyDict_GetItemString(dict, "__builtins__") == NULL
        && PyDict_SetItemString(dict, "__builtins__", PyEval_GetBuiltins())
           != 0)
    {
        goto done;
    }

    r = PyEval_EvalCode(code, dict, dict);

done:

    Py_XDECREF(r);
    Py_XDECREF(code);
    Py_XDECREF(data);
    Py_XDECREF(origin);
    Py_XDECREF(sfl);
    Py_XDECREF(loader);

    return r ? HOTFFI_PY_OK : HOTFFI_PY_ERROR;
}


/*
 * thread: event loop.  GIL: held.  A new module object made from the
 * module's file, put in sys.modules; *old gets what was there (a new
 * reference, or NULL).
 */
static PyObject *
hotffi_py_import_fresh(const hotffi_py_cfg_t *c, PyObject *name,
    PyObject **old)
{
    const char  *dot;
    PyObject    *r, *finder, *path, *parent, *spec, *module, *from_spec;

    module = NULL;
    parent = NULL;
    path = NULL;
    spec = NULL;
    finder = NULL;
    from_spec = NULL;

    *old = PyDict_GetItemWithError(PyImport_GetModuleDict(), name);
    if (*old == NULL && PyErr_Occurred()) {
        return NULL;
    }

    Py_XINCREF(*old);

    /* a file created since the last import is found */
    r = hotffi_py_import_attr("importlib", "invalidate_caches");
    if (r == NULL) {
        goto done;
    }

    Py_SETREF(r, PyObject_CallNoArgs(r));
    if (r == NULL) {
        goto done;
    }

    Py_DECREF(r);

    /* "pkg.mod?": the package is imported as usual, only mod is fresh */
    dot = strrchr(c->module, '.');

    if (dot != NULL) {
        r = PyUnicode_FromStringAndSize(c->module, dot - c->module);
        if (r == NULL) {
            goto done;
        }

        parent = PyImport_Import(r);
        Py_DECREF(r);

        if (parent == NULL) {
            goto done;
        }

        path = PyObject_GetAttrString(parent, "__path__");
        if (path == NULL) {
            PyErr_Format(PyExc_ModuleNotFoundError, "No module named '%s'; "
                         "'%.*s' is not a package", c->module,
                         (int) (dot - c->module), c->module);
            goto done;
        }

    } else if (c->dir != NULL) {
        /* in that directory: not an older one first on sys.path */
        path = Py_BuildValue("[O&]", PyUnicode_DecodeFSDefault, c->dir);

    } else {
        path = Py_NewRef(Py_None);
    }

    finder = hotffi_py_import_attr("importlib.machinery", "PathFinder");

    if (path == NULL || finder == NULL) {
        goto done;
    }

    spec = PyObject_CallMethod(finder, "find_spec", "OO", name, path);
    if (spec == NULL) {
        goto done;
    }

    if (spec == Py_None) {
        PyErr_Format(PyExc_ModuleNotFoundError, "No module named '%s'",
                     c->module);
        goto done;
    }

    from_spec = hotffi_py_import_attr("importlib.util", "module_from_spec");
    if (from_spec == NULL) {
        goto done;
    }

    module = PyObject_CallOneArg(from_spec, spec);
    if (module == NULL) {
        goto done;
    }

    /* in sys.modules while it runs, as import does: pickle, dataclasses */
    if (PyDict_SetItem(PyImport_GetModuleDict(), name, module) != 0
        || hotffi_py_import_exec(spec, module) != HOTFFI_PY_OK)
    {
        hotffi_py_import_restore(name, *old);
        Py_CLEAR(module);
        goto done;
    }

    if (parent != NULL
        && PyObject_SetAttrString(parent, dot + 1, module) != 0)
    {
        PyErr_Clear();
    }

done:

    Py_XDECREF(from_spec);
    Py_XDECREF(spec);
    Py_XDECREF(finder);
    Py_XDECREF(path);
    Py_XDECREF(parent);

    return module;
}


/*
 * thread: event loop.  GIL: held.  init(cfg, tq) and what it returned: 0,
 * its own rc, or HOTFFI_PY_EINIT with an exception set.
 */
static int
hotffi_py_import_call(const hotffi_py_cfg_t *c, PyObject *module, void *tq)
{
    int        overflow;
    long       rc;
    PyObject  *func, *cfg, *tqo, *res;

    func = PyObject_GetAttrString(module, c->function);
    if (func == NULL) {
        return HOTFFI_PY_EIMPORT;
    }

    if (!PyCallable_Check(func)) {
        PyErr_Format(PyExc_TypeError, "%s.%s is %.200s, not a function",
                     c->module, c->function, Py_TYPE(func)->tp_name);
        Py_DECREF(func);
        return HOTFFI_PY_EIMPORT;
    }

    cfg = hotffi_py_config_new(c->cfg);
    tqo = PyLong_FromVoidPtr(tq);
    res = NULL;

    if (cfg != NULL && tqo != NULL) {
        res = PyObject_CallFunctionObjArgs(func, cfg, tqo, NULL);
        hotffi_py_config_forget(cfg);
    }

    Py_XDECREF(tqo);
    Py_XDECREF(cfg);
    Py_DECREF(func);

    if (res == NULL) {
        return HOTFFI_PY_EINIT;
    }

    /* lua-resty-ffi reads it with PyLong_AsLong(): an int, 0 for success */
    if (!PyLong_Check(res) || PyBool_Check(res)) {
        PyErr_Format(PyExc_TypeError, "%s.%s() returned %.200s, expected "
                     "an int (0 = ok)", c->module, c->function,
                     Py_TYPE(res)->tp_name);
        Py_DECREF(res);
        return HOTFFI_PY_EINIT;
    }

    rc = PyLong_AsLongAndOverflow(res, &overflow);
    Py_DECREF(res);

    if (overflow || rc < INT_MIN || rc > INT_MAX) {
        PyErr_Format(PyExc_OverflowError, "%s.%s() returned an int out of "
                     "C int range", c->module, c->function);
        return HOTFFI_PY_EINIT;
    }

    return (int) rc;
}


/* thread: event loop.  GIL: held. */
int
hotffi_py_import_init(const hotffi_py_cfg_t *c, void *tq, hotffi_py_rt_t *rt,
    PyObject *back, PyObject *state, char *err, size_t errlen)
{
    int        rc;
    PyObject  *name, *module, *old, *before;

    old = NULL;
    module = NULL;

    name = PyUnicode_FromString(c->module);
    before = name ? hotffi_py_import_threads(NULL) : NULL;

    if (before == NULL) {
        hotffi_py_error_format(err, errlen);
        Py_XDECREF(name);
        return HOTFFI_PY_EPYTHON;
    }

    rc = HOTFFI_PY_EIMPORT;

    if (c->dir != NULL && hotffi_py_import_path_add(c->dir) != HOTFFI_PY_OK) {
        goto failed;
    }

    /*
     * A rollback restarts the module the old version ran: the file on
     * disk is the new version's, which just failed.
     */
    if (back != NULL) {
        module = Py_NewRef(back);

    } else if (c->reload) {
        module = hotffi_py_import_fresh(c, name, &old);

    } else {
        module = PyImport_Import(name);
    }

    if (module == NULL) {
        goto failed;
    }

    hotffi_py_retire_state_set(tq, state);
    rc = hotffi_py_import_call(c, module, tq);
    hotffi_py_retire_state_set(NULL, NULL);

    if (rc == 0) {
        /* retire(tq) is looked up in it, for the next reload */
        rt->module = Py_NewRef(module);
        goto done;
    }

    if (c->reload && back == NULL) {
        hotffi_py_import_restore(name, old);
    }

    if (!PyErr_Occurred()) {
        (void) snprintf(err, errlen, "%s.%s() returned %d", c->module,
                        c->function, rc);
        goto done;
    }

failed:

    hotffi_py_error_format(err, errlen);

done:

    /* what init started, even if it failed: libffi_fini() joins it */
    rt->threads = hotffi_py_import_threads(before);

    if (rt->threads == NULL) {
        PyErr_Clear();
    }

    Py_XDECREF(module);
    Py_XDECREF(old);
    Py_DECREF(before);
    Py_DECREF(name);

    return rc;
}
