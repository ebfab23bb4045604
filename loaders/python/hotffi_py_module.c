/*
 * hotffi_py_module.c -- the `hotffi` Python module, built into the loader:
 * poll(), serve(), state(), log(), shared_dict(), Task, SharedDict,
 * Config, LogHandler and the loader's rc values.
 *
 * Multi-phase initialisation (PEP 489): every interpreter -- the main one
 * and each venv runtime's sub-interpreter -- imports a module of its own,
 * whose Config and Error classes (Python objects of that interpreter) are
 * kept in the module's state.  C code finds the module of the interpreter
 * it runs in through that interpreter's dict (PyInterpreterState_GetDict).
 * Task and SharedDict are static types, shared by every interpreter: they
 * hold no Python object of an interpreter, and CPython 3.11's interpreters
 * share one GIL and one allocator.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <limits.h>
#include <string.h>

#include "hotffi.h"



/* the key of the interpreter's dict that holds its hotffi module */
#define HOTFFI_PY_MODULE_KEY  "hotffi.module"


/* a module's state: hotffi.Config and hotffi.Error of its interpreter */
typedef struct {
    PyObject  *config_class;    /* strong */
    PyObject  *error_class;     /* strong */
} hotffi_py_modstate_t;


/*
 * A str subclass in C would have to deal with str's compact layouts, an
 * exception class with attributes takes a page of C: a few lines of Python
 * say them plainly.
 */
static const char  hotffi_py_module_src[] =
    "class Config(str):\n"
    "    '''A runtime's configuration: the text after module,function,.\n"
    "    int(cfg) is the C address of that text while init runs (0 when\n"
    "    there is none, and after init): how lua-resty-ffi runtimes read\n"
    "    it, ffi.string(ffi.cast('char *', cfg)).'''\n"
    "    address = 0\n"
    "    def __int__(self):\n"
    "        return self.address\n"
    "\n"
    "class Error(Exception):\n"
    "    '''Raised by a serve() handler: fails the call with rc and data\n"
    "    (bytes, str or None) rather than rc 1 and a traceback.'''\n"
    "    def __init__(self, rc, data=None):\n"
    "        super().__init__(rc, data)\n"
    "        self.rc = rc\n"
    "        self.data = data\n"
    "\n"
    "import logging as _logging\n"
    "\n"
    "def nginx_level(levelno):\n"
    "    '''The nginx level of a logging level: CRITICAL and above crit,\n"
    "    ERROR error, WARNING warn, 25 (between INFO and WARNING) notice,\n"
    "    INFO info, below it debug; levels in between count as the level\n"
    "    below them.'''\n"
    "    for at, level in ((50, LOG_CRIT), (40, LOG_ERR), (30, LOG_WARN),\n"
    "                      (25, LOG_NOTICE), (20, LOG_INFO)):\n"
    "        if levelno >= at:\n"
    "            return level\n"
    "    return LOG_DEBUG\n"
    "\n"
    "class LogHandler(_logging.Handler):\n"
    "    '''A logging.Handler writing each record as one line of nginx's\n"
    "    error log, through hotffi.log(): from any thread, never blocking,\n"
    "    at the record's nginx level (nginx_level()), filtered by error_log.\n"
    "    tq None: the runtime of the thread that logs (one that polls or\n"
    "    serves), else a line of no runtime.'''\n"
    "    def __init__(self, tq=None, level=_logging.NOTSET):\n"
    "        super().__init__(level)\n"
    "        self.tq = tq\n"
    "    def emit(self, record):\n"
    "        try:\n"
    "            log(self.tq, nginx_level(record.levelno),\n"
    "                self.format(record))\n"
    "        except Exception:\n"
    "            self.handleError(record)\n";


/* thread: any.  GIL: held.  The tq argument as the pointer hotffi gave init. */
static int
hotffi_py_tq(PyObject *arg, void **tq)
{
    *tq = PyLong_AsVoidPtr(arg);

    if (*tq == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "tq must be the queue address "
                            "init was given");
        }

        return HOTFFI_PY_ERROR;
    }

    return HOTFFI_PY_OK;
}


/* thread: runtime.  GIL: held, released while waiting. */
static PyObject *
hotffi_py_mod_poll(PyObject *mod, PyObject *arg)
{
    void  *tq, *task;

    if (hotffi_py_tq(arg, &tq) != HOTFFI_PY_OK) {
        return NULL;
    }

    if (hotffi_py_interp_in_init()) {
        /* no task is handed out before init has returned */
        PyErr_SetString(PyExc_RuntimeError, "hotffi.poll() inside init "
                        "would wait for init to return: call it from a "
                        "thread");
        return NULL;
    }

    Py_BEGIN_ALLOW_THREADS
    task = hotffi_py_rt_poll(tq);
    Py_END_ALLOW_THREADS

    if (task == NULL) {
        return Py_NewRef(Py_None);
    }

    return hotffi_py_task_new(task);
}


/* thread: any.  GIL: held. */
static PyObject *
hotffi_py_mod_serve(PyObject *mod, PyObject *args, PyObject *kwargs)
{
    int          i, n;
    void        *tq;
    PyObject    *arg, *handler;
    static char *kwlist[] = { "tq", "handler", "threads", NULL };

    n = 1;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|i:serve", kwlist,
                                     &arg, &handler, &n))
    {
        return NULL;
    }

    if (hotffi_py_tq(arg, &tq) != HOTFFI_PY_OK) {
        return NULL;
    }

    if (!PyCallable_Check(handler)) {
        PyErr_Format(PyExc_TypeError, "hotffi.serve(): handler must be "
                     "callable, not %.200s", Py_TYPE(handler)->tp_name);
        return NULL;
    }

    if (n < 1 || n > HOTFFI_PY_MAX_SERVE_THREADS) {
        PyErr_Format(PyExc_ValueError, "hotffi.serve(): threads must be "
                     "from 1 to %d, not %d", HOTFFI_PY_MAX_SERVE_THREADS, n);
        return NULL;
    }

    for (i = 0; i < n; i++) {
        /* threads already started stay: they end at the stop */
        if (hotffi_py_serve_start(tq, handler) != HOTFFI_PY_OK) {
            return NULL;
        }
    }

    return Py_NewRef(Py_None);
}


/* thread: event loop, inside init.  GIL: held. */
static PyObject *
hotffi_py_mod_state(PyObject *mod, PyObject *arg)
{
    void  *tq;

    if (hotffi_py_tq(arg, &tq) != HOTFFI_PY_OK) {
        return NULL;
    }

    return hotffi_py_retire_state_of(tq);
}


/* thread: any.  GIL: held. */
static PyObject *
hotffi_py_mod_log(PyObject *mod, PyObject *args)
{
    int         level;
    void       *tq;
    PyObject   *arg, *msg, *bytes;
    Py_buffer   view;

    if (!PyArg_ParseTuple(args, "OiO:log", &arg, &level, &msg)) {
        return NULL;
    }

    tq = NULL;

    if (arg != Py_None && hotffi_py_tq(arg, &tq) != HOTFFI_PY_OK) {
        return NULL;
    }

    if (PyUnicode_Check(msg)) {
        /* lone surrogates (undecodable bytes) must not fail a log line */
        bytes = PyUnicode_AsEncodedString(msg, "utf-8", "backslashreplace");
        if (bytes == NULL) {
            return NULL;
        }

        hotffi_py_rt_log(tq, level, PyBytes_AS_STRING(bytes),
                         (size_t) PyBytes_GET_SIZE(bytes));
        Py_DECREF(bytes);

        return Py_NewRef(Py_None);
    }

    if (PyObject_GetBuffer(msg, &view, PyBUF_SIMPLE) != 0) {
        return NULL;
    }

    hotffi_py_rt_log(tq, level, view.buf, (size_t) view.len);
    PyBuffer_Release(&view);

    return Py_NewRef(Py_None);
}


/*
 * thread: any.  GIL: held.  hotffi._single_phase(module): whether an
 * extension module was made by single-phase initialisation, which is not
 * safe in a sub-interpreter.  Multi-phase made it from its definition,
 * leaving m_base.m_init NULL; single-phase sets m_init, and a second import
 * of one with m_size -1 is a copy of its dict in a module without a
 * definition.
 */
static PyObject *
hotffi_py_mod_single_phase(PyObject *mod, PyObject *arg)
{
    PyModuleDef  *def;

    if (!PyModule_Check(arg)) {
        /* only multi-phase can make something else (Py_mod_create) */
        Py_RETURN_FALSE;
    }

    def = PyModule_GetDef(arg);
    if (def == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }

        Py_RETURN_TRUE;
    }

    return PyBool_FromLong(def->m_base.m_init != NULL);
}


/*
 * thread: any.  GIL: held, released while the file is read.
 * hotffi._elf_multi_phase(path): True when the extension module file
 * references PyModuleDef_Init(), False when it does not (single-phase),
 * None when that cannot be read.
 */
static PyObject *
hotffi_py_mod_elf_multi_phase(PyObject *mod, PyObject *arg)
{
    int        rc;
    PyObject  *bytes;

    if (!PyUnicode_FSConverter(arg, &bytes)) {
        return NULL;
    }

    Py_BEGIN_ALLOW_THREADS
    rc = hotffi_py_sub_elf_multi_phase(PyBytes_AS_STRING(bytes));
    Py_END_ALLOW_THREADS

    Py_DECREF(bytes);

    if (rc < 0) {
        Py_RETURN_NONE;
    }

    return PyBool_FromLong(rc);
}


static PyMethodDef  hotffi_py_mod_methods[] = {
    { "poll", hotffi_py_mod_poll, METH_O,
      "poll(tq)\n--\n\n"
      "Waits for the next call to the runtime and returns it as a Task, "
      "or None once the runtime is stopped (then stop polling).  Releases "
      "the GIL while it waits.  Not on the thread that runs init." },
    { "serve", (PyCFunction) (void (*)(void)) hotffi_py_mod_serve,
      METH_VARARGS | METH_KEYWORDS,
      "serve(tq, handler, threads=1)\n--\n\n"
      "Starts threads that answer every call with handler(req: bytes), "
      "which returns bytes, str (UTF-8) or None.  An exception fails the "
      "call with rc 1 and the traceback as payload.  The threads end when "
      "the runtime is unloaded." },
    { "state", hotffi_py_mod_state, METH_O,
      "state(tq)\n--\n\n"
      "Inside init: the bytes the previous version's retire(tq) returned "
      "when rt:__reload() replaced it, or None (a first load, a reload "
      "without state, nothing handed over).  RuntimeError elsewhere." },
    { "log", hotffi_py_mod_log, METH_VARARGS,
      "log(tq, level, msg)\n--\n\n"
      "Writes msg (str or bytes) as one line of nginx's error log at level "
      "(LOG_EMERG .. LOG_DEBUG, nginx's), marked with the runtime's name "
      "and version, from any thread, without blocking: the worker's event "
      "loop writes it.  tq None: the runtime of this thread (one that "
      "polls or serves), else a line of no runtime.  Nothing on a host "
      "without hotffi_log() (lua-resty-ffi)." },
    { "shared_dict", hotffi_py_shdict_open, METH_O,
      "shared_dict(name)\n--\n\n"
      "The lua_shared_dict zone `name` of nginx.conf as a SharedDict: "
      "get, get_stale, set, safe_set, add, safe_add, replace, delete, "
      "incr, ttl, with ngx.shared.DICT's meaning, from any thread.  "
      "KeyError when there is no such zone." },
    { "_elf_multi_phase", hotffi_py_mod_elf_multi_phase, METH_O,
      "_elf_multi_phase(path)\n--\n\n"
      "Whether an extension module file references PyModuleDef_Init() "
      "(True), does not (False: single-phase), or cannot tell (None)." },
    { "_single_phase", hotffi_py_mod_single_phase, METH_O,
      "_single_phase(module)\n--\n\n"
      "Whether an extension module was made by single-phase "
      "initialisation (the loader's guard in venv runtimes)." },
    { NULL, NULL, 0, NULL }
};


/* GIL: held.  The module state of this interpreter's hotffi, or NULL. */
static hotffi_py_modstate_t *
hotffi_py_modstate(void)
{
    PyObject  *dict, *m;

    dict = PyInterpreterState_GetDict(PyInterpreterState_Get());
    if (dict == NULL) {
        return NULL;
    }

    m = PyDict_GetItemString(dict, HOTFFI_PY_MODULE_KEY);

    return m ? PyModule_GetState(m) : NULL;
}


static int hotffi_py_module_exec(PyObject *m);


static int
hotffi_py_module_traverse(PyObject *m, visitproc visit, void *arg)
{
    hotffi_py_modstate_t  *st = PyModule_GetState(m);

    if (st != NULL) {
        Py_VISIT(st->config_class);
        Py_VISIT(st->error_class);
    }

    return 0;
}


static int
hotffi_py_module_clear(PyObject *m)
{
    hotffi_py_modstate_t  *st = PyModule_GetState(m);

    if (st != NULL) {
        Py_CLEAR(st->config_class);
        Py_CLEAR(st->error_class);
    }

    return 0;
}


static void
hotffi_py_module_free(void *m)
{
    (void) hotffi_py_module_clear(m);
}


static PyModuleDef_Slot  hotffi_py_mod_slots[] = {
    { Py_mod_exec, (void *) hotffi_py_module_exec },
    { 0, NULL }
};


static struct PyModuleDef  hotffi_py_moddef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "hotffi",
    .m_doc = "hotffi's Python SDK, built into the loader "
             "(libhotffi_python.so).  See docs/python.md.",
    .m_size = sizeof(hotffi_py_modstate_t),
    .m_methods = hotffi_py_mod_methods,
    .m_slots = hotffi_py_mod_slots,
    .m_traverse = hotffi_py_module_traverse,
    .m_clear = hotffi_py_module_clear,
    .m_free = hotffi_py_module_free,
};


/* thread: any.  GIL: held. */
PyObject *
hotffi_py_module_init(void)
{
    return PyModuleDef_Init(&hotffi_py_moddef);
}


/* thread: any.  GIL: held, in the interpreter to install it in. */
int
hotffi_py_module_install(void)
{
    int        rc;
    PyObject  *m, *spec, *cls, *machinery;

    m = PyImport_ImportModule("hotffi");

    if (m != NULL) {
        Py_DECREF(m);
        return HOTFFI_PY_OK;
    }

    if (!PyErr_ExceptionMatches(PyExc_ModuleNotFoundError)) {
        return HOTFFI_PY_ERROR;
    }

    /* not a built-in here: the interpreter was started by someone else */
    PyErr_Clear();

    rc = HOTFFI_PY_ERROR;
    spec = NULL;

    machinery = PyImport_ImportModule("importlib.machinery");
    cls = machinery ? PyObject_GetAttrString(machinery, "ModuleSpec") : NULL;
    Py_XDECREF(machinery);

    if (cls != NULL) {
        spec = PyObject_CallFunction(cls, "sO", "hotffi", Py_None);
        Py_DECREF(cls);
    }

    m = spec ? PyModule_FromDefAndSpec(&hotffi_py_moddef, spec) : NULL;

    if (m != NULL
        && PyModule_ExecDef(m, &hotffi_py_moddef) == 0
        && PyDict_SetItemString(PyImport_GetModuleDict(), "hotffi", m) == 0)
    {
        rc = HOTFFI_PY_OK;
    }

    Py_XDECREF(m);
    Py_XDECREF(spec);

    return rc;
}


/* thread: any.  GIL: held, in the interpreter the module is made for. */
static int
hotffi_py_module_exec(PyObject *m)
{
    PyObject              *dict, *r, *idict;
    hotffi_py_modstate_t  *st;

    st = PyModule_GetState(m);

    /* static types: ready once, for every interpreter */
    if (hotffi_py_task_ready() != HOTFFI_PY_OK
        || PyType_Ready(&hotffi_py_shdict_type) != 0)
    {
        return -1;
    }

    if (PyModule_AddIntConstant(m, "RC_EXCEPTION", HOTFFI_PY_RC_EXCEPTION)
        || PyModule_AddIntConstant(m, "RC_DROPPED", HOTFFI_PY_RC_DROPPED)
        || PyModule_AddIntConstant(m, "LOG_EMERG", HOTFFI_LEVEL_EMERG)
        || PyModule_AddIntConstant(m, "LOG_ALERT", HOTFFI_LEVEL_ALERT)
        || PyModule_AddIntConstant(m, "LOG_CRIT", HOTFFI_LEVEL_CRIT)
        || PyModule_AddIntConstant(m, "LOG_ERR", HOTFFI_LEVEL_ERR)
        || PyModule_AddIntConstant(m, "LOG_WARN", HOTFFI_LEVEL_WARN)
        || PyModule_AddIntConstant(m, "LOG_NOTICE", HOTFFI_LEVEL_NOTICE)
        || PyModule_AddIntConstant(m, "LOG_INFO", HOTFFI_LEVEL_INFO)
        || PyModule_AddIntConstant(m, "LOG_DEBUG", HOTFFI_LEVEL_DEBUG)
        || PyModule_AddType(m, &hotffi_py_task_type)
        || PyModule_AddType(m, &hotffi_py_shdict_type))
    {
        return -1;
    }

    dict = PyModule_GetDict(m);

    r = PyRun_String(hotffi_py_module_src, Py_file_input, dict, dict);
    if (r == NULL) {
        return -1;
    }

    Py_DECREF(r);

    st->config_class = Py_XNewRef(PyDict_GetItemString(dict, "Config"));
    st->error_class = Py_XNewRef(PyDict_GetItemString(dict, "Error"));

    if (st->config_class == NULL || st->error_class == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "hotffi.Config or hotffi.Error "
                        "not defined");
        return -1;
    }

    /* C code's way to this interpreter's module: the newest one made */
    idict = PyInterpreterState_GetDict(PyInterpreterState_Get());
    if (idict == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no interpreter dict");
        return -1;
    }

    return PyDict_SetItemString(idict, HOTFFI_PY_MODULE_KEY, m);
}


/* thread: any.  GIL: held. */
PyObject *
hotffi_py_config_new(const char *text)
{
    PyObject              *str, *cfg, *addr;
    hotffi_py_modstate_t  *st;

    st = hotffi_py_modstate();

    if (st == NULL || st->config_class == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the hotffi module is not made");
        return NULL;
    }

    /* bytes that are not UTF-8 survive as surrogates, as in os.fsdecode */
    str = PyUnicode_DecodeUTF8(text ? text : "", text ? strlen(text) : 0,
                               "surrogateescape");
    if (str == NULL) {
        return NULL;
    }

    cfg = PyObject_CallOneArg(st->config_class, str);
    Py_DECREF(str);

    if (cfg == NULL) {
        return NULL;
    }

    addr = PyLong_FromVoidPtr((void *) text);

    if (addr == NULL || PyObject_SetAttrString(cfg, "address", addr) != 0) {
        Py_XDECREF(addr);
        Py_DECREF(cfg);
        return NULL;
    }

    Py_DECREF(addr);

    return cfg;
}


/*
 * GIL: held.  hotffi frees the text after init: a cfg kept by the runtime
 * then casts to NULL rather than to freed memory.  Keeps the exception
 * init may have left.
 */
void
hotffi_py_config_forget(PyObject *cfg)
{
    PyObject  *type, *value, *tb, *zero;

    PyErr_Fetch(&type, &value, &tb);

    zero = PyLong_FromLong(0);

    if (zero == NULL || PyObject_SetAttrString(cfg, "address", zero) != 0) {
        PyErr_Clear();
    }

    Py_XDECREF(zero);

    PyErr_Restore(type, value, tb);
}


/*
 * thread: any.  GIL: held.
 * The rc of a hotffi.Error as a C int, or an exception.
 */
static int
hotffi_py_error_rc(PyObject *value, int *rc)
{
    int        overflow;
    long       n;
    PyObject  *orc;

    orc = PyObject_GetAttrString(value, "rc");
    if (orc == NULL) {
        return HOTFFI_PY_ERROR;
    }

    n = PyLong_AsLongAndOverflow(orc, &overflow);
    Py_DECREF(orc);

    if (n == -1 && PyErr_Occurred()) {
        return HOTFFI_PY_ERROR;
    }

    if (overflow || n < INT_MIN || n > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "hotffi.Error: rc out of C int "
                        "range");
        return HOTFFI_PY_ERROR;
    }

    *rc = (int) n;

    return HOTFFI_PY_OK;
}


/* thread: any.  GIL: held. */
int
hotffi_py_answer_error(void *task)
{
    int                    rc, answered;
    PyObject              *type, *value, *tb, *data;
    hotffi_py_modstate_t  *st;

    st = hotffi_py_modstate();

    if (st == NULL || st->error_class == NULL
        || !PyErr_ExceptionMatches(st->error_class))
    {
        return HOTFFI_PY_ERROR;
    }

    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);

    answered = 0;
    data = NULL;

    if (value != NULL && hotffi_py_error_rc(value, &rc) == HOTFFI_PY_OK) {
        data = PyObject_GetAttrString(value, "data");

        answered = data != NULL
                   && hotffi_py_answer(task, rc, data) == HOTFFI_PY_OK;
    }

    Py_XDECREF(data);

    if (answered) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return HOTFFI_PY_OK;
    }

    if (PyErr_Occurred() && value != NULL) {
        /* what is wrong with the Error is the news; it becomes context */
        PyObject  *type2, *value2, *tb2;

        PyErr_Fetch(&type2, &value2, &tb2);
        PyErr_NormalizeException(&type2, &value2, &tb2);

        if (tb != NULL) {
            (void) PyException_SetTraceback(value, tb);
        }

        if (value2 != NULL) {
            /* steals the reference to value */
            PyException_SetContext(value2, value);
            value = NULL;
        }

        PyErr_Restore(type2, value2, tb2);

        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);

    } else if (!PyErr_Occurred()) {
        PyErr_Restore(type, value, tb);

    } else {
        Py_XDECREF(type);
        Py_XDECREF(tb);
    }

    return HOTFFI_PY_ERROR;
}
