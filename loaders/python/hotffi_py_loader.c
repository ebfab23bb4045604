/*
 * hotffi_py_loader.c -- libhotffi_python.so's runtime ABI: libffi_init()
 * makes a Python module a runtime, libffi_fini() waits for its threads,
 * libffi_retire() also hands the module's state to the next version.
 *
 *   hotffi.load("hotffi_python", "/srv/py/handlers?,init,{\"db\":\"x\"}")
 *   hotffi.load("hotffi_python", "venv=/srv/venvs/a;/srv/py/handlers,init,")
 *
 * See docs/python.md.  hotffi_py.h has the threading and GIL model.
 */

/* first: it includes Python.h, which must precede system headers */
#include "hotffi_py.h"

#include <dlfcn.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>

#include "hotffi.h"


hotffi_py_host_t  hotffi_py_host;

static pthread_once_t  hotffi_py_host_once = PTHREAD_ONCE_INIT;

/*
 * hotffi runs each libffi_init() on an init thread of its own, so two
 * loads may start at once: the interpreter is started under this lock,
 * by the first of them (after that the GIL orders the rest).
 */
static pthread_mutex_t  hotffi_py_start_mtx = PTHREAD_MUTEX_INITIALIZER;


/* thread: event loop, once. */
static void
hotffi_py_host_lookup(void)
{
    /* RTLD_DEFAULT: hotffi's module is loaded RTLD_GLOBAL */
    *(void **) &hotffi_py_host.task_cancelled = dlsym(RTLD_DEFAULT,
                                                 "hotffi_task_cancelled");
    *(void **) &hotffi_py_host.init_error = dlsym(RTLD_DEFAULT,
                                                  "hotffi_init_error");
    *(void **) &hotffi_py_host.state = dlsym(RTLD_DEFAULT, "hotffi_state");
    *(void **) &hotffi_py_host.rollback = dlsym(RTLD_DEFAULT,
                                                "hotffi_rollback");
    *(void **) &hotffi_py_host.log = dlsym(RTLD_DEFAULT, "hotffi_log");
}


/*
 * thread: hotffi's init thread.  GIL: released, taken while Python runs.
 * cfg: borrowed, "[venv=path;][dir/]module[?][,function[,cfg]]".
 * tq:  borrowed, until libffi_fini() or libffi_retire().
 */
int
libffi_init(char *cfg, void *tq)
{
    int                rc;
    char               err[HOTFFI_PY_ERR_MAX], venv[PATH_MAX];
    PyObject          *state, *back;
    sigset_t           all, old;
    hotffi_py_rt_t    *rt;
    hotffi_py_cfg_t    c;
    hotffi_py_gil_t    g;
    hotffi_py_sub_t   *sub;
    hotffi_py_kept_t  *forgotten;

    (void) pthread_once(&hotffi_py_host_once, hotffi_py_host_lookup);

    if (hotffi_py_cfg_parse(&c, cfg, err, sizeof(err)) != HOTFFI_PY_OK) {
        hotffi_py_error_report(tq, cfg ? cfg : "", err);
        return HOTFFI_PY_EBADCFG;
    }

    /* a venv that is not one fails before any interpreter is made */
    if (c.venv != NULL
        && hotffi_py_sub_check(c.venv, venv, err, sizeof(err))
           != HOTFFI_PY_OK)
    {
        hotffi_py_error_report(tq, c.name, err);
        hotffi_py_cfg_free(&c);
        return HOTFFI_PY_EBADCFG;
    }

    /*
     * Threads inherit the signal mask of the thread that starts them, and
     * init starts threads: let none of them take nginx's signals, which
     * are meant for the event loop.
     */
    (void) sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, &old);
    hotffi_py_interp_init_enter(1);

    (void) pthread_mutex_lock(&hotffi_py_start_mtx);
    rc = hotffi_py_interp_start(err, sizeof(err));
    (void) pthread_mutex_unlock(&hotffi_py_start_mtx);

    if (rc != HOTFFI_PY_OK) {
        rc = HOTFFI_PY_EPYTHON;
        goto done;
    }

    /* registered before init runs: init may start polling at once */
    rt = hotffi_py_rt_create(tq, cfg);
    if (rt == NULL) {
        (void) snprintf(err, sizeof(err), "out of memory");
        rc = HOTFFI_PY_EPYTHON;
        goto done;
    }

    /*
     * Whether this restarts the version a failed reload replaced: then its
     * module, and the interpreter it ran in.  Else a venv runtime gets a
     * new sub-interpreter; the rt owns it from here, and libffi_fini()
     * (which hotffi calls after a failed init too) ends it.
     */
    back = hotffi_py_retire_rollback(tq, rt->cfg, &sub);

    if (back == NULL && c.venv != NULL) {
        sub = hotffi_py_sub_create(venv, err, sizeof(err));

        if (sub == NULL) {
            rc = HOTFFI_PY_EPYTHON;
            goto done;
        }
    }

    hotffi_py_rt_set_sub(rt, sub);

    forgotten = NULL;

    hotffi_py_gil_take(rt->interp, &g);

    /* what the previous version handed over */
    state = hotffi_py_retire_state(tq);

    rc = hotffi_py_import_init(&c, tq, rt, back, state, err, sizeof(err));

    if (rc == 0 && back == NULL) {
        /* this module, not the last one of cfg, is what to go back to */
        forgotten = hotffi_py_retire_forget(rt->cfg);
    }

    Py_XDECREF(back);
    Py_XDECREF(state);
    hotffi_py_gil_give(&g);

    /* its module goes with its interpreter's GIL, which is not ours */
    hotffi_py_retire_drop(forgotten);

done:

    hotffi_py_interp_init_enter(0);
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
 * The module is kept for a rollback (hotffi_py_retire.c): a reload with
 * state = false ends the old version here, not in libffi_retire().
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


/*
 * thread: hotffi's reaper, when rt:__reload() replaces this version (tq is
 * stopped: polls return NULL).  GIL: released, taken to join Python
 * threads and to call retire().  Like libffi_fini(), and then the
 * module's retire(tq) gives the state for the next version.
 * *state: malloc()'ed, hotffi's once this returns.
 */
int
libffi_retire(void *tq, char **state, int *len)
{
    int              rc;
    hotffi_py_rt_t  *rt;

    rt = hotffi_py_rt_take(tq);

    if (rt == NULL) {
        /* a version whose init never registered: nothing to hand over */
        return 0;
    }

    /* retire() reads a state no thread of this version changes any more */
    hotffi_py_rt_join(rt);

    /* a reload: the module, and its interpreter, stay for a rollback */
    rt->retiring = 1;

    rc = hotffi_py_retire_run(rt, state, len);

    hotffi_py_rt_free(rt);

    return rc;
}
