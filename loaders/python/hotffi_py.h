/*
 * hotffi_py.h -- the Python loader's internal contract: one CPython per
 * nginx worker, any number of runtimes ("module,function,cfg"
 * configurations) in its main interpreter, and one sub-interpreter of its
 * own for each version of a runtime that names a virtualenv ("venv=").
 *
 * DESIGN
 * Threads.  Three kinds of thread enter the loader:
 *   - the event loop: libffi_init() starts the interpreter once, imports the
 *     module and calls its init function (so loads are serialised);
 *   - runtime threads: the serve threads started by hotffi.serve(), and the
 *     runtime's own Python threads calling hotffi.poll();
 *   - hotffi's reaper: libffi_fini() joins what the runtime started;
 *     libffi_retire() joins it too, then calls the module's retire(tq)
 *     for the state the next version starts from; both keep the module
 *     for a rollback (hotffi_py_retire.c).
 *
 * GIL.  The loader releases it right after starting the interpreter
 * (PyEval_SaveThread), so it is held only while Python code runs.  Every
 * entry from C takes it with hotffi_py_gil_take() in the interpreter of the
 * runtime it works for: PyGILState_Ensure() for the main one (as before
 * sub-interpreters), a thread state of its own made on the runtime's
 * sub-interpreter otherwise (PyGILState_Ensure() always enters the main
 * interpreter).  CPython 3.11's interpreters share one GIL.  Polling gives
 * it up while it waits.  Functions say "GIL: held" (the caller holds it),
 * "GIL: released" (the caller must not hold it, in any interpreter) or
 * "GIL: taken" (they take it themselves).
 *
 * Interpreters.  A runtime without "venv=" runs in the main interpreter,
 * started by the first load and never ended.  A runtime with one runs in a
 * sub-interpreter made by its libffi_init() (hotffi_py_sub.c) and owned by
 * exactly one holder at a time: the runtime's registry entry, then the
 * rollback record of its module, then the registry entry of a rollback.
 * The last holder ends it, once every thread that ran in it was joined.
 *
 * Queues.  A runtime's queue (tq) is freed by hotffi once libffi_fini()
 * returns.  Every poll made through the loader goes through a gate, the
 * runtime registry (hotffi_py_runtime.c): it counts the threads inside poll
 * and stops letting them in after the first NULL, so that libffi_fini() can
 * wait until none can touch tq any more.
 *
 * locks: the registry's mutex guards the list of runtimes and each
 * runtime's pollers, stopped, servers, sub and interp fields; the
 * rollback records' mutex their list (hotffi_py_retire.c).  Neither is
 * held while waiting for the GIL.
 */

#ifndef HOTFFI_PY_H
#define HOTFFI_PY_H


#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stddef.h>


#define HOTFFI_PY_OK      0
#define HOTFFI_PY_ERROR  -1

/* libffi_init() results of the loader itself; init's own rc passes through */
#define HOTFFI_PY_EBADCFG  1     /* the configuration cannot be parsed */
#define HOTFFI_PY_EPYTHON  2     /* the interpreter did not start */
#define HOTFFI_PY_EIMPORT  3     /* module or function not found or broken */
#define HOTFFI_PY_EINIT    4     /* init raised, or did not return an int */

/* libffi_retire() result: retire() raised or returned a wrong type */
#define HOTFFI_PY_ERETIRE  5

/* rc of a call answered by the loader rather than by the runtime */
#define HOTFFI_PY_RC_EXCEPTION  1    /* the handler raised: the traceback */
#define HOTFFI_PY_RC_DROPPED    2    /* a task was garbage-collected */

/* hotffi keeps 4095 bytes of an init error; so do we, from the end */
#define HOTFFI_PY_ERR_MAX  4096

#define HOTFFI_PY_MAX_SERVE_THREADS  256


typedef struct hotffi_py_cfg_s     hotffi_py_cfg_t;
typedef struct hotffi_py_rt_s      hotffi_py_rt_t;
typedef struct hotffi_py_server_s  hotffi_py_server_t;
typedef struct hotffi_py_sub_s     hotffi_py_sub_t;
typedef struct hotffi_py_kept_s    hotffi_py_kept_t;


/* ---- hotffi_py_config.c: "venv=path;dir/module?,function,cfg" --------- */

struct hotffi_py_cfg_s {
    char        *buf;        /* ours: holds venv, dir, module, function,
                                name */
    const char  *venv;       /* the virtualenv as written, or NULL */
    const char  *dir;        /* absolute directory for sys.path, or NULL */
    const char  *module;     /* dotted module name */
    const char  *function;   /* "init" unless given */
    const char  *name;       /* "module-as-written,function", for messages */
    const char  *cfg;        /* borrowed from hotffi's cfg: the rest, or NULL */
    unsigned     reload:1;   /* "?": read the module's file again */
};

/*
 * thread: event loop.  GIL: any.
 * text: borrowed; c->cfg points into it, so it must outlive c.
 * Returns HOTFFI_PY_OK, or HOTFFI_PY_ERROR with the reason in err.
 * Free with hotffi_py_cfg_free().
 */
int hotffi_py_cfg_parse(hotffi_py_cfg_t *c, const char *text, char *err,
    size_t errlen);
void hotffi_py_cfg_free(hotffi_py_cfg_t *c);


/* ---- hotffi_py_loader.c: the host's optional functions ------------------ */

/*
 * hotffi's own functions, looked up rather than linked: a host without
 * them (lua-resty-ffi, an older hotffi) still loads this library, and they
 * are NULL there.  Filled once, first thing in libffi_init(), and only read
 * afterwards: every other entry into the loader comes after one.
 */
typedef struct {
    int          (*task_cancelled)(void *task);
    void         (*init_error)(void *tq, const char *msg);
    const char  *(*state)(void *tq, int *len);
    int          (*rollback)(void *tq);
    void         (*log)(void *tq, int level, const char *msg, int len);
} hotffi_py_host_t;

extern hotffi_py_host_t  hotffi_py_host;


/* ---- hotffi_py_interp.c: the worker's interpreter ----------------------- */

/* a way into Python, made by hotffi_py_gil_take() */
typedef struct {
    PyThreadState     *ts;       /* ours, in a sub-interpreter; or NULL */
    PyGILState_STATE   gstate;   /* the main interpreter's, when ts NULL */
} hotffi_py_gil_t;

/*
 * thread: any that holds no thread state.  GIL: taken.  Enters interp
 * (NULL: the main interpreter) on this thread: PyGILState_Ensure() for the
 * main one, a new thread state for a sub-interpreter.  As with
 * PyGILState_Ensure(), failing to allocate a thread state is fatal.
 */
void hotffi_py_gil_take(PyInterpreterState *interp, hotffi_py_gil_t *g);

/* thread: the one that took g.  GIL: held, released.  Leaves, for good. */
void hotffi_py_gil_give(hotffi_py_gil_t *g);

/*
 * GIL: held.  The interpreter this thread runs in, as hotffi_py_gil_take()
 * takes it: NULL for the main interpreter.
 */
PyInterpreterState *hotffi_py_interp_current(void);

/*
 * thread: event loop.  GIL: released (nobody has it before the first call).
 * Starts the interpreter on the first call; later calls return at once.
 * HOTFFI_PY_OK, or HOTFFI_PY_ERROR with the reason in err.
 */
int hotffi_py_interp_start(char *err, size_t errlen);

/*
 * thread: init.  on: this thread now runs libffi_init() (1) or has left it
 * (0); hotffi_py_interp_in_init() says so, on any thread.
 */
void hotffi_py_interp_init_enter(int on);
int hotffi_py_interp_in_init(void);


/* ---- hotffi_py_runtime.c: the registry and the poll gate ---------------- */

/* owner: its runtime's servers list (libffi_fini() frees it after the
   join); the serve thread only reads it */
struct hotffi_py_server_s {
    void                *tq;        /* the value only: never read through */
    PyInterpreterState  *interp;    /* the runtime's: NULL for the main */
    PyObject            *handler;   /* strong; GIL; dropped by the thread */
    pthread_t            tid;
    hotffi_py_server_t  *next;
};

/* owner: the registry, then whoever hotffi_py_rt_take() returns it to */
struct hotffi_py_rt_s {
    void                *tq;        /* hotffi's, borrowed until
                                       libffi_fini() or libffi_retire() */
    int                  pollers;   /* threads inside the gate's poll */
    unsigned             stopped:1; /* a poll returned NULL: let none in */
    hotffi_py_server_t  *servers;   /* joined by libffi_fini() */
    PyObject            *threads;   /* strong; GIL: Python threads init
                                       started */
    PyObject            *module;    /* strong; GIL: the module init ran */
    char                *cfg;       /* ours: libffi_init()'s cfg text;
                                       both move to a rollback record
                                       when the version ends */
    hotffi_py_sub_t     *sub;       /* ours: the sub-interpreter it runs
                                       in (NULL: the main one); moves
                                       with the module, else ended by
                                       hotffi_py_rt_free() */
    PyInterpreterState  *interp;    /* sub's, or NULL: set before init */
    unsigned             retiring:1; /* ended by libffi_retire(): a
                                       reload, never an unload */
    hotffi_py_rt_t      *next;
};

/*
 * thread: event loop.  GIL: any.  cfg: borrowed, copied.
 * NULL when out of memory.
 */
hotffi_py_rt_t *hotffi_py_rt_create(void *tq, const char *cfg);

/*
 * thread: init, before init runs.  GIL: released.  sub: ownership passes to
 * rt (NULL: the main interpreter).
 */
void hotffi_py_rt_set_sub(hotffi_py_rt_t *rt, hotffi_py_sub_t *sub);

/*
 * thread: runtime (never the event loop).  GIL: released.
 * The gate: ngx_http_lua_ffi_task_poll(tq) for a registered, running
 * runtime; NULL, without touching tq, once the runtime stopped or is gone.
 */
void *hotffi_py_rt_poll(void *tq);

/*
 * thread: any.  GIL: any.  hotffi_log() for tq -- NULL: the runtime this
 * thread polls or serves, if any -- with the registry's lock held, so that
 * tq cannot end meanwhile; a tq no longer (or never) registered logs a
 * line of no runtime.  msg: borrowed, len bytes.  Nothing on a host
 * without hotffi_log().
 */
void hotffi_py_rt_log(void *tq, int level, const char *msg, size_t len);

/*
 * thread: any.  GIL: any.  HOTFFI_PY_OK when tq is a registered, running
 * runtime of interp (NULL: the main interpreter), else HOTFFI_PY_ERROR.
 */
int hotffi_py_rt_check(void *tq, PyInterpreterState *interp);

/*
 * thread: any.  GIL: any.  s: ownership passes to the runtime when
 * HOTFFI_PY_OK; HOTFFI_PY_ERROR when tq is unknown or stopped, or a
 * runtime of another interpreter than s->interp.
 */
int hotffi_py_rt_add_server(void *tq, hotffi_py_server_t *s);

/*
 * thread: hotffi's reaper.  GIL: released.  Marks the runtime stopped,
 * waits until no thread is inside its poll, unregisters it and returns it
 * (the caller frees it with hotffi_py_rt_free()), or NULL if tq is unknown.
 */
hotffi_py_rt_t *hotffi_py_rt_take(void *tq);

/*
 * thread: hotffi's reaper.  GIL: released, taken to join Python threads.
 * Joins the serve threads and the Python threads init started; a second
 * call does nothing.
 */
void hotffi_py_rt_join(hotffi_py_rt_t *rt);

/*
 * thread: hotffi's reaper.  GIL: released.  Joins threads (if not done),
 * keeps the module for a rollback or drops it (taking the GIL), ends the
 * sub-interpreter unless it went with the module, and frees rt.
 */
void hotffi_py_rt_free(hotffi_py_rt_t *rt);


/* ---- hotffi_py_sub.c: a venv runtime's sub-interpreter ----------------- */

/*
 * thread: init.  GIL: any.  Checks that venv (borrowed, as written in the
 * configuration; relative to the current directory) is a virtualenv this
 * CPython can use, and writes its absolute path into path (PATH_MAX
 * bytes).  HOTFFI_PY_OK, or HOTFFI_PY_ERROR with the reason in err.
 */
int hotffi_py_sub_check(const char *venv, char *path, char *err,
    size_t errlen);

/*
 * thread: init.  GIL: released.  A new sub-interpreter whose sys.path is
 * the stdlib and venv's site-packages (path: from hotffi_py_sub_check()),
 * with the `hotffi` module and the guard against single-phase extension
 * modules; the caller owns it.  NULL with the reason in err.
 */
hotffi_py_sub_t *hotffi_py_sub_create(const char *path, char *err,
    size_t errlen);

/*
 * thread: any.  GIL: any.  Whether the extension module file at path
 * (borrowed) imports PyModuleDef_Init(), which multi-phase initialisation
 * needs: 1, 0 (then its init is single-phase), or -1 when its ELF dynamic
 * symbols cannot be read (no file, another format, stripped section
 * headers).
 */
int hotffi_py_sub_elf_multi_phase(const char *path);

/* thread: any.  GIL: any.  sub's interpreter; NULL for sub NULL. */
PyInterpreterState *hotffi_py_sub_interp(hotffi_py_sub_t *sub);

/*
 * thread: any but the event loop (it may wait for non-daemon threads).
 * GIL: released.  Ends sub's interpreter (Py_EndInterpreter) and frees
 * sub.  A thread still running in it (a daemon thread nobody joined) would
 * make CPython abort: the interpreter is then left as it is, with a line
 * in the error log.  sub NULL: nothing.
 */
void hotffi_py_sub_end(hotffi_py_sub_t *sub);


/* ---- hotffi_py_import.c: import, reload, call init ---------------------- */

/*
 * thread: event loop.  GIL: held.
 * Imports (or, with "?", re-reads) the module -- or, for a rollback, takes
 * back (borrowed, not NULL) as it is -- and calls its init function with
 * the configuration and tq; hotffi.state(tq) gives state meanwhile
 * (borrowed, NULL for none).  Returns 0 (rt->module then holds the
 * module), init's own non-zero rc, or a HOTFFI_PY_E* code; err says why
 * whenever the result is not 0.
 */
int hotffi_py_import_init(const hotffi_py_cfg_t *c, void *tq,
    hotffi_py_rt_t *rt, PyObject *back, PyObject *state, char *err,
    size_t errlen);


/* ---- hotffi_py_retire.c: state hand-over, rollback ---------------------- */

/*
 * thread: hotffi's reaper, in libffi_retire(), threads joined.  GIL: taken.
 * Calls rt->module's retire(tq), if it has one, and hands what it returned
 * back in *state (malloc()'ed, *len bytes, NUL-terminated; NULL for None
 * or no retire).  Returns 0, or HOTFFI_PY_ERETIRE with *state NULL after
 * logging the traceback and handing its end to hotffi_init_error().
 */
int hotffi_py_retire_run(hotffi_py_rt_t *rt, char **state, int *len);

/*
 * thread: hotffi's reaper, as a version ends (libffi_retire() or
 * libffi_fini()), for a version whose init ran (rt->module not NULL).
 * GIL: held, in rt's interpreter.  Moves rt->module, rt->cfg and rt->sub
 * into the record a rollback of that cfg restarts, on a host that can roll
 * back -- for a runtime in a sub-interpreter, only when it retires (an
 * unload must end the interpreter) -- and leaves them in rt otherwise.
 * Returns the record of that cfg it replaced, or NULL: the caller drops it
 * with hotffi_py_retire_drop() once it holds no GIL.
 */
hotffi_py_kept_t *hotffi_py_retire_keep(hotffi_py_rt_t *rt);

/*
 * thread: any but the event loop.  GIL: released.  Drops a record: its
 * module (in its interpreter) and its sub-interpreter.  k NULL: nothing.
 */
void hotffi_py_retire_drop(hotffi_py_kept_t *k);

/*
 * thread: event loop, in libffi_init().  GIL: held.
 * hotffi_state(tq) as a new bytes object, or NULL when there is none or
 * the host lacks it.
 */
PyObject *hotffi_py_retire_state(void *tq);

/*
 * thread: init, in libffi_init().  GIL: any.
 * When hotffi_rollback(tq) says this init restarts the version a failed
 * reload replaced, the module that version ran (a reference that passes
 * to the caller) and in *sub the sub-interpreter it ran in (the caller's
 * too; NULL for the main one), and its record is forgotten; otherwise
 * NULL.  cfg: borrowed: rt->cfg.
 */
PyObject *hotffi_py_retire_rollback(void *tq, const char *cfg,
    hotffi_py_sub_t **sub);

/*
 * thread: init, after an init that succeeded and was no rollback.
 * GIL: any.  Unlinks the record of cfg (borrowed: rt->cfg) and returns it
 * for hotffi_py_retire_drop(): the module now serving cfg is the one a
 * later rollback restarts.
 */
hotffi_py_kept_t *hotffi_py_retire_forget(const char *cfg);

/*
 * thread: event loop.  GIL: held.  What hotffi.state(tq) answers while an
 * init runs on tq: state (borrowed, NULL for None); tq NULL when it ends.
 */
void hotffi_py_retire_state_set(void *tq, PyObject *state);

/*
 * thread: any.  GIL: held.  hotffi.state(tq): the state of the init now
 * running on tq (new reference), or NULL with an exception set.
 */
PyObject *hotffi_py_retire_state_of(void *tq);


/* ---- hotffi_py_module.c, hotffi_py_task.c: the `hotffi` module ----------- */

/*
 * GIL: held.  The module's init function for PyImport_AppendInittab():
 * multi-phase, so that every interpreter gets a module of its own.
 */
PyObject *hotffi_py_module_init(void);

/*
 * GIL: held, in the interpreter to install it in.  Imports `hotffi`, or,
 * where it is no built-in (someone else started Python), makes it from its
 * definition and puts it in sys.modules.  HOTFFI_PY_ERROR with an
 * exception set.
 */
int hotffi_py_module_install(void);

/*
 * GIL: held.  A hotffi.Config: a str with the text and, for lua-resty-ffi
 * runtimes, int() giving its C address.  text: borrowed, may be NULL; its
 * address is only good until hotffi_py_config_forget().
 */
PyObject *hotffi_py_config_new(const char *text);
void hotffi_py_config_forget(PyObject *cfg);

/* GIL: held.  The type of hotffi.Task objects, ready after task_ready(). */
extern PyTypeObject  hotffi_py_task_type;
int hotffi_py_task_ready(void);

/* GIL: held.  hotffi.SharedDict (hotffi_py_shdict.c), and
 * hotffi.shared_dict(name): a new one, or NULL with KeyError. */
extern PyTypeObject  hotffi_py_shdict_type;
PyObject *hotffi_py_shdict_open(PyObject *mod, PyObject *name);

/* GIL: held.  task: ownership passes to the new Task; NULL on error. */
PyObject *hotffi_py_task_new(void *task);

/*
 * GIL: held.  Answers task with rc and data (bytes-like, str or None).
 * task: ownership passes to hotffi on HOTFFI_PY_OK.  On HOTFFI_PY_ERROR a
 * Python exception is set and the task is still the caller's.
 */
int hotffi_py_answer(void *task, int rc, PyObject *data);

/*
 * GIL: held.  If the current exception is a hotffi.Error, answers task with
 * its rc and data and clears it (HOTFFI_PY_OK); else HOTFFI_PY_ERROR, with
 * an exception still set and the task still the caller's.
 */
int hotffi_py_answer_error(void *task);

/*
 * GIL: any.  Answers task with rc and a copy of text (NULL: no payload).
 * task: ownership passes to hotffi.
 */
void hotffi_py_answer_text(void *task, int rc, const char *text, size_t len);


/* ---- hotffi_py_serve.c: hotffi.serve() ---------------------------------- */

/*
 * thread: any.  GIL: held.  Starts a thread that polls tq and answers each
 * task with handler(req); an exception the handler did not mean (not a
 * hotffi.Error) is also logged, traceback and all, at level error.
 * HOTFFI_PY_ERROR with a Python exception set.
 */
int hotffi_py_serve_start(void *tq, PyObject *handler);


/* ---- hotffi_py_error.c: exceptions as text ------------------------------ */

/*
 * GIL: held.  New bytes with the current exception formatted as Python
 * prints it (traceback included), in UTF-8 with undecodable characters
 * escaped, and in *len their number less the final newline; the exception
 * is cleared.  NULL only if even that failed (then with no exception set).
 */
PyObject *hotffi_py_error_bytes(size_t *len);

/* GIL: held.  The current exception's text into buf (its end if long). */
void hotffi_py_error_format(char *buf, size_t size);

/*
 * thread: inside libffi_init() (the event loop) or libffi_retire().
 * GIL: any.  Hands msg (borrowed) to hotffi_init_error() when the host has
 * it: the load's or the reload's error message then ends with it.
 */
void hotffi_py_error_pass(void *tq, const char *msg);

/*
 * thread: event loop, inside libffi_init().  GIL: any.
 * Logs why runtime `name` failed to load to stderr (nginx's error log) and
 * hands msg to hotffi_init_error() when the host has it.
 */
void hotffi_py_error_report(void *tq, const char *name, const char *msg);


#endif /* HOTFFI_PY_H */
