/*
 * hotffi_py_loader.c -- libhotffi_python.so's runtime ABI: libffi_init()
 * makes a Python module a runtime, libffi_fini() waits for its threads.
 *
 *   hotffi.load("hotffi_python", "/srv/py/handlers?,init,{\"db\":\"x\"}")
 *
 * See docs/python.md.  hotffi_py.h has the threading and GIL model.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <signal.h>
#include <stdio.h>

#include "hotffi.h"


/*
 * thread: event loop.  GIL: released, taken while Python runs.
 * cfg: borrowed, "[dir/]module[?][,function[,cfg]]".
 * tq:  borrowed, until libffi_fini().
 */
int
libffi_init(char *cfg, void *tq)
{
    int               rc;
    char              err[HOTFFI_PY_ERR_MAX];
    sigset_t          all, old;
    hotffi_py_rt_t   *rt;
    hotffi_py_cfg_t   c;
    PyGILState_STATE  gstate;

    if (hotffi_py_cfg_parse(&c, cfg, err, sizeof(err)) != HOTFFI_PY_OK) {
        hotffi_py_error_report(tq, cfg ? cfg : "", err);
        return HOTFFI_PY_EBADCFG;
    }

    /*
     * Threads inherit the signal mask of the thread that starts them, and
     * init starts threads: let none of them take nginx's signals, which
     * are meant for the event loop.
     */
    (void) sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, &old);

    if (hotffi_py_interp_start(err, sizeof(err)) != HOTFFI_PY_OK) {
        rc = HOTFFI_PY_EPYTHON;
        goto done;
    }

    /* registered before init runs: init may start polling at once */
    rt = hotffi_py_rt_create(tq);
    if (rt == NULL) {
        (void) snprintf(err, sizeof(err), "out of memory");
        rc = HOTFFI_PY_EPYTHON;
        goto done;
    }

    gstate = PyGILState_Ensure();
    rc = hotffi_py_import_init(&c, tq, rt, err, sizeof(err));
    PyGILState_Release(gstate);

done:

    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

    /* a failure: hotffi stops tq and calls libffi_fini(), which cleans up */
    if (rc != 0) {
        hotffi_py_error_report(tq, c.name, err);
    }

    hotffi_py_cfg_free(&c);

    return rc;
}


/*
 * thread: hotffi's reaper, after the stop was delivered.  GIL: released,
 * taken to join Python threads.  Returns once no thread of this runtime
 * can touch tq: nobody in poll, serve threads and init's threads joined.
 * The interpreter stays, and so does this library (-z nodelete): unpin
 * cannot unload the interpreter, whose other runtimes may still run.
 */
int
libffi_fini(void *tq)
{
    hotffi_py_rt_t  *rt;

    rt = hotffi_py_rt_take(tq);

    if (rt != NULL) {
        hotffi_py_rt_free(rt);
    }

    return 0;
}
