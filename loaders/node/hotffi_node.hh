/*
 * hotffi_node.hh -- the Node.js loader's internal contract: Debian's libnode
 * initialised once per nginx worker, and one Node.js Environment (its own
 * isolate, event loop and thread) per runtime version.
 *
 * DESIGN
 * Threads.  Four kinds of thread enter the loader:
 *   - hotffi's init thread: libffi_init() initialises Node once for the
 *     process (InitializeOncePerProcess, with the flags that leave signals,
 *     stdio and resource limits to nginx), starts the version's env thread
 *     and waits for the module's init function to settle -- never on
 *     nginx's event loop;
 *   - the env thread (one per version): creates the Environment, runs the
 *     boot script and the module, then spins Node's event loop, where every
 *     call is handed to JavaScript; it alone touches the isolate;
 *   - the poller thread (one per version): waits on hotffi's queue and
 *     hands the tasks to the env thread through the inbox and a uv_async;
 *   - hotffi's reaper: libffi_fini()/libffi_retire() let the version drain,
 *     take its state, stop its Environment and join both threads.
 *
 * Why an Environment per version: a reload (`module?`, rt:__reload) gets
 * fresh code with its dependencies, process.exit() in user code ends only
 * that version (node::Stop()), and an unload frees every handle the version
 * opened (FreeEnvironment) so nothing of it runs afterwards.
 *
 * Tasks.  A task is hotffi's from poll to respond.  The poller gives it to
 * the inbox (rt->mtx); the env thread moves it to rt->taken while
 * JavaScript holds it, and answers it once (hotffi_node_respond()).  A
 * version whose Environment ended (process.exit, a failed start) is
 * "dead": the env thread answers everything it still holds with an error,
 * and the poller answers every later task at once, until the unload.
 *
 * locks: rt->mtx guards inbox, poll_done, alive, dead, the init and
 * retire results, and the uv_async_send() on rt->wake (never sent once
 * alive is 0).
 */

#ifndef HOTFFI_NODE_H
#define HOTFFI_NODE_H

#include <pthread.h>
#include <stddef.h>

#include <deque>
#include <set>
#include <string>

#include <uv.h>


/* libffi_init() results of the loader itself; init's own rc passes through */
#define HOTFFI_NODE_EBADCFG   1   /* the configuration cannot be parsed */
#define HOTFFI_NODE_ENODE     2   /* Node.js or its Environment did not start */
#define HOTFFI_NODE_EIMPORT   3   /* module or function not found or broken */
#define HOTFFI_NODE_EINIT     4   /* init threw, rejected or gave a non-int */
#define HOTFFI_NODE_ERETIRE   5   /* retire() threw or rejected */

/* rc of a call answered by the loader rather than by the handler */
#define HOTFFI_NODE_RC_EXCEPTION  1   /* thrown or rejected: the stack */
#define HOTFFI_NODE_RC_ENDED      4   /* the version's Environment ended */

#define HOTFFI_NODE_ERR_MAX  4096


/* hotffi's optional functions, looked up (NULL on lua-resty-ffi) */
typedef struct {
    int          (*task_cancelled)(void *task);
    void         (*init_error)(void *tq, const char *msg);
    const char  *(*state)(void *tq, int *len);
    int          (*rollback)(void *tq);
    void         (*log)(void *tq, int level, const char *msg, int len);
} hotffi_node_host_t;

extern hotffi_node_host_t  hotffi_node_host;


/* owner: the registry (hotffi_node_loader.c), from libffi_init() until
   libffi_fini()/libffi_retire() takes and frees it */
typedef struct hotffi_node_rt_s {
    void               *tq;          /* hotffi's, borrowed until fini/retire */
    std::string         cfg;         /* libffi_init()'s cfg text, copied */
    std::string         state_in;    /* the previous version's state */
    bool                has_state;
    std::string         rollback_src; /* the module's source to start again
                                         (a rollback), or empty */
    std::string         loaded_src;  /* the source init loaded (kept for a
                                        rollback of the next version) */
    std::string         loaded_file;

    pthread_mutex_t     mtx;
    pthread_cond_t      cond;

    /* env thread; env is read by other threads only for node::Stop() */
    pthread_t           env_tid;
    void               *env;         /* node::Environment *, env thread's */
    uv_async_t          wake;        /* on the env loop, while alive */
    int                 alive;       /* wake may be sent */
    int                 dead;        /* the Environment ended */
    std::string         dead_why;

    /* poller thread */
    pthread_t           poll_tid;
    int                 polling;     /* the poller was started */
    int                 poll_done;   /* poll returned NULL */
    std::deque<void *>  inbox;       /* tasks for JavaScript (mtx) */
    std::set<void *>    taken;       /* tasks JavaScript holds (env thread) */

    /* libffi_init()'s outcome, written by the env thread */
    int                 init_done;
    int                 init_rc;
    std::string         init_err;

    /* the end: stop_state asks JavaScript for retire()'s state */
    int                 end_asked;   /* fini/retire came (mtx) */
    int                 stop_asked;  /* JavaScript was told to drain */
    int                 stop_state;
    int                 finished;    /* JavaScript drained: Stop the env */
    int                 retire_rc;
    std::string         retire_err;
    std::string         state_out;
    int                 has_state_out;
    int                 exit_code;   /* process.exit()'s, or -1 */
} hotffi_node_rt_t;


/* ---- hotffi_node_env.cc --------------------------------------------- */

/* thread: init.  Node's per-process set-up, once; 0 or -1 with err. */
int hotffi_node_process_start(std::string *err);

/* thread: exit().  Ends the process with status, past libnode's exit
   handlers, once Node was started. */
void hotffi_node_process_end(int status);

/* thread: init.  Starts rt's env thread; 0, or -1 with err. */
int hotffi_node_env_start(hotffi_node_rt_t *rt, std::string *err);

/* thread: any.  A log line through hotffi_log() for rt (level nginx's). */
void hotffi_node_log(hotffi_node_rt_t *rt, int level, const std::string &s);

/* thread: any.  Answers task with rc and len bytes of data (copied). */
void hotffi_node_respond(void *task, int rc, const char *data, size_t len);


/* ---- hotffi_node_loader.cc ----------------------------------------- */

/* thread: env.  Wakes the env thread's loop (rt->mtx held by caller). */
void hotffi_node_wake_locked(hotffi_node_rt_t *rt);


#endif /* HOTFFI_NODE_H */
