/*
 * hotffi_py_interp.c -- the worker's one CPython: its main interpreter,
 * started by the first load and never finalised, and the way every thread
 * enters the interpreter of the runtime it works for.
 *
 * Never finalised because Py_Finalize() with threads still running (serve
 * threads, the runtimes' own) is unsafe, and because Python code and
 * extension modules cannot be unloaded anyway: the interpreter lives as
 * long as the worker process, and the loader library is linked with
 * -z nodelete so that even unpin cannot unmap code the interpreter calls.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>



/* the interpreter the loader was built against, for sys.prefix */
#ifndef HOTFFI_PY_HOME
#define HOTFFI_PY_HOME        "/usr"
#endif

#ifndef HOTFFI_PY_EXECUTABLE
#define HOTFFI_PY_EXECUTABLE  "/usr/bin/python3"
#endif


static int        hotffi_py_started;
static int        hotffi_py_failed;
static char       hotffi_py_failure[256];

/* set while this thread runs libffi_init() (hotffi's init thread) */
static __thread int  hotffi_py_in_init;


/*
 * Extension modules (those in lib-dynload, numpy...) are not linked against
 * libpython: they expect its symbols in the global namespace.  When hotffi
 * loads this library without is_global, libpython comes in RTLD_LOCAL;
 * promote it, so that is_global is not needed for imports to work.
 *
 * thread: event loop.  GIL: any.
 */
static void
hotffi_py_interp_promote(void)
{
    Dl_info  info;

    if (dladdr((void *) Py_InitializeFromConfig, &info) == 0
        || info.dli_fname == NULL)
    {
        return;
    }

    /* the handle is deliberately kept: libpython stays for good */
    (void) dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
}


/* thread: event loop.  GIL: not started.  Remembers why, for good. */
static int
hotffi_py_interp_fail(const char *what, PyStatus status, char *err,
    size_t errlen)
{
    (void) snprintf(hotffi_py_failure, sizeof(hotffi_py_failure),
                    "the Python interpreter did not start: %s%s%s", what,
                    status.err_msg ? ": " : "",
                    status.err_msg ? status.err_msg : "");

    hotffi_py_failed = 1;
    (void) snprintf(err, errlen, "%s", hotffi_py_failure);

    return HOTFFI_PY_ERROR;
}


/*
 * Someone else started the interpreter in this process: the module cannot
 * be a built-in any more, so put it in sys.modules directly.
 *
 * thread: event loop.  GIL: taken.
 */
static int
hotffi_py_interp_adopt(char *err, size_t errlen)
{
    int               rc;
    PyGILState_STATE  gstate;

    gstate = PyGILState_Ensure();

    rc = hotffi_py_module_install();

    if (rc != HOTFFI_PY_OK) {
        hotffi_py_error_format(err, errlen);
    }

    PyGILState_Release(gstate);

    return rc;
}


/* thread: event loop.  GIL: released. */
int
hotffi_py_interp_start(char *err, size_t errlen)
{
    PyConfig   config;
    PyStatus   status;
    PyObject  *m;

    if (hotffi_py_started) {
        return HOTFFI_PY_OK;
    }

    if (hotffi_py_failed) {
        /* a second Py_InitializeFromConfig() is not safe: say it again */
        (void) snprintf(err, errlen, "%s", hotffi_py_failure);
        return HOTFFI_PY_ERROR;
    }

    hotffi_py_interp_promote();

    if (Py_IsInitialized()) {
        if (hotffi_py_interp_adopt(err, errlen) != HOTFFI_PY_OK) {
            return HOTFFI_PY_ERROR;
        }

        hotffi_py_started = 1;
        return HOTFFI_PY_OK;
    }

    if (PyImport_AppendInittab("hotffi", hotffi_py_module_init) != 0) {
        return hotffi_py_interp_fail("PyImport_AppendInittab() failed",
                                     PyStatus_Ok(), err, errlen);
    }

    /*
     * The "Python configuration": PYTHONPATH, PYTHONHOME and friends work
     * when nginx passes them on (env PYTHONPATH;).  But nginx owns the
     * process: no signal handlers (SIGINT would stop being nginx's), no
     * changes to C stdio, no command line.
     */
    PyConfig_InitPythonConfig(&config);

    config.install_signal_handlers = 0;
    config.configure_c_stdio = 0;
    config.parse_argv = 0;

    status = PyConfig_SetBytesString(&config, &config.executable,
                                     HOTFFI_PY_EXECUTABLE);
    if (PyStatus_Exception(status)) {
        PyConfig_Clear(&config);
        return hotffi_py_interp_fail("PyConfig.executable", status, err,
                                     errlen);
    }

    /*
     * Without PYTHONHOME, Python would look for its library relative to the
     * executable, nginx's (/usr/sbin/nginx, or OpenResty's), and warn if it
     * is not there: point it at the installation this was built against.
     */
    if (getenv("PYTHONHOME") == NULL) {
        status = PyConfig_SetBytesString(&config, &config.home,
                                         HOTFFI_PY_HOME);
        if (PyStatus_Exception(status)) {
            PyConfig_Clear(&config);
            return hotffi_py_interp_fail("PyConfig.home", status, err,
                                         errlen);
        }
    }

    status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);

    if (PyStatus_Exception(status)) {
        return hotffi_py_interp_fail("Py_InitializeFromConfig() failed",
                                     status, err, errlen);
    }

    /* import it now: any later thread finds it ready */
    m = PyImport_ImportModule("hotffi");
    if (m == NULL) {
        hotffi_py_error_format(err, errlen);
        (void) PyEval_SaveThread();
        hotffi_py_failed = 1;
        (void) snprintf(hotffi_py_failure, sizeof(hotffi_py_failure),
                        "the hotffi module did not initialise");
        return HOTFFI_PY_ERROR;
    }

    Py_DECREF(m);

    /*
     * Give up the GIL for good: from now on every entry takes it with
     * hotffi_py_gil_take(), this thread's state included.
     */
    (void) PyEval_SaveThread();

    hotffi_py_started = 1;
    return HOTFFI_PY_OK;
}


/* thread: init */
void
hotffi_py_interp_init_enter(int on)
{
    hotffi_py_in_init = on;
}


/* thread: any */
int
hotffi_py_interp_in_init(void)
{
    return hotffi_py_in_init;
}


/* thread: any that holds no thread state.  GIL: taken. */
void
hotffi_py_gil_take(PyInterpreterState *interp, hotffi_py_gil_t *g)
{
    if (interp == NULL) {
        g->ts = NULL;
        g->gstate = PyGILState_Ensure();
        return;
    }

    /*
     * PyGILState_Ensure() knows the main interpreter only.  This thread
     * state is the thread's only one: if the thread has none in
     * PyGILState's slot, CPython puts this one there (so that C code
     * calling PyGILState_Ensure() under it, ctypes callbacks say, finds
     * it) and takes it out again when it is deleted.
     */
    g->ts = PyThreadState_New(interp);
    if (g->ts == NULL) {
        Py_FatalError("hotffi: PyThreadState_New() failed");
    }

    PyEval_RestoreThread(g->ts);
}


/* thread: the one that took g.  GIL: held, released. */
void
hotffi_py_gil_give(hotffi_py_gil_t *g)
{
    if (g->ts == NULL) {
        PyGILState_Release(g->gstate);
        return;
    }

    PyThreadState_Clear(g->ts);
    PyThreadState_DeleteCurrent();
    g->ts = NULL;
}


/* thread: any.  GIL: held. */
PyInterpreterState *
hotffi_py_interp_current(void)
{
    PyInterpreterState  *interp;

    interp = PyInterpreterState_Get();

    return interp == PyInterpreterState_Main() ? NULL : interp;
}
