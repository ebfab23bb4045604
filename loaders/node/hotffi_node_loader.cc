/*
 * hotffi_node_loader.cc -- libhotffi_node.so's runtime ABI: libffi_init()
 * makes a JavaScript module a runtime, libffi_fini() drains and ends it,
 * libffi_retire() also hands the module's state to the next version.
 *
 *   hotffi.load("hotffi_node", "/srv/js/handlers?,init,{\"db\":\"x\"}")
 *
 * See docs/node.md.  hotffi_node.hh has the threading model.
 *
 * DESIGN
 * The registry maps each tq to its version (hotffi_node_rt_t), from
 * libffi_init() until the reaper takes it.  The poller thread of a version
 * blocks in ngx_http_lua_ffi_task_poll() and hands every task to the env
 * thread; the end of a version is always the same walk: the poller sees
 * the stop (NULL) and tells the env thread, JavaScript answers what it
 * holds (and, for a retire, calls the module's retire()), the env thread
 * stops the Environment, the reaper joins both threads.
 *
 * A rollback (hotffi_rollback()) starts the code the version that is
 * being restored ran, not the file as it is now on disk: the loader keeps
 * the source of the last module each configuration loaded.
 */

#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <map>
#include <string>

#include "hotffi.h"
#include "hotffi_node.hh"


hotffi_node_host_t  hotffi_node_host;

static pthread_once_t   hotffi_node_host_once = PTHREAD_ONCE_INIT;

/* the registry: tq -> version; owner of each hotffi_node_rt_t */
static pthread_mutex_t                     hotffi_node_reg_mtx =
    PTHREAD_MUTEX_INITIALIZER;
static std::map<void *, hotffi_node_rt_t *>  hotffi_node_reg;
/* cfg -> the module source its last successful init loaded (rollbacks) */
static std::map<std::string, std::string>   hotffi_node_sources;


static void
hotffi_node_host_lookup(void)
{
    /* RTLD_DEFAULT: hotffi's module is loaded RTLD_GLOBAL */
    *(void **) &hotffi_node_host.task_cancelled = dlsym(RTLD_DEFAULT,
                                                   "hotffi_task_cancelled");
    *(void **) &hotffi_node_host.init_error = dlsym(RTLD_DEFAULT,
                                                    "hotffi_init_error");
    *(void **) &hotffi_node_host.state = dlsym(RTLD_DEFAULT, "hotffi_state");
    *(void **) &hotffi_node_host.rollback = dlsym(RTLD_DEFAULT,
                                                  "hotffi_rollback");
    *(void **) &hotffi_node_host.log = dlsym(RTLD_DEFAULT, "hotffi_log");
}


void
hotffi_node_wake_locked(hotffi_node_rt_t *rt)
{
    if (rt->alive) {
        (void) uv_async_send(&rt->wake);
    }
}


/* thread: poller.  Hands tq's tasks to the env thread until the stop. */
static void *
hotffi_node_poll_thread(void *arg)
{
    hotffi_node_rt_t  *rt = static_cast<hotffi_node_rt_t *>(arg);
    void              *task;
    std::string        why;

    for ( ;; ) {
        task = ngx_http_lua_ffi_task_poll(rt->tq);

        (void) pthread_mutex_lock(&rt->mtx);

        if (task == nullptr) {
            rt->poll_done = 1;
            hotffi_node_wake_locked(rt);
            (void) pthread_cond_broadcast(&rt->cond);
            (void) pthread_mutex_unlock(&rt->mtx);
            return nullptr;
        }

        if (rt->dead) {
            why = rt->dead_why;
            (void) pthread_mutex_unlock(&rt->mtx);
            hotffi_node_respond(task, HOTFFI_NODE_RC_ENDED, why.data(),
                                why.size());
            continue;
        }

        rt->inbox.push_back(task);
        /* one wake-up for a burst: uv_async_send() coalesces */
        hotffi_node_wake_locked(rt);
        (void) pthread_mutex_unlock(&rt->mtx);
    }
}


static hotffi_node_rt_t *
hotffi_node_rt_create(void *tq, const char *cfg)
{
    hotffi_node_rt_t  *rt = new hotffi_node_rt_t();

    rt->tq = tq;
    rt->cfg = cfg ? cfg : "";
    rt->exit_code = -1;
    (void) pthread_mutex_init(&rt->mtx, nullptr);
    (void) pthread_cond_init(&rt->cond, nullptr);

    return rt;
}


static void
hotffi_node_rt_free(hotffi_node_rt_t *rt)
{
    (void) pthread_mutex_destroy(&rt->mtx);
    (void) pthread_cond_destroy(&rt->cond);
    delete rt;
}


/*
 * thread: init, or the reaper.  Ends rt: lets it drain (and, with
 * want_state, call retire()), stops its Environment and joins its threads.
 */
static void
hotffi_node_rt_end(hotffi_node_rt_t *rt, int want_state)
{
    (void) pthread_mutex_lock(&rt->mtx);

    /* the poller's stop alone does not end the version: hotffi stops tq
       before it says why (an unload, or a reload that wants the state) */
    rt->stop_state = want_state;
    rt->end_asked = 1;

    if (!rt->polling) {
        /* no poller (a failed init): the end starts now */
        rt->poll_done = 1;
    }

    hotffi_node_wake_locked(rt);
    (void) pthread_mutex_unlock(&rt->mtx);

    if (rt->polling) {
        (void) pthread_join(rt->poll_tid, nullptr);
    }

    (void) pthread_join(rt->env_tid, nullptr);
}


static void
hotffi_node_error(void *tq, const std::string &name, const std::string &err)
{
    std::string  msg = name.empty() ? err : name + ": " + err;

    if (hotffi_node_host.init_error != nullptr) {
        hotffi_node_host.init_error(tq, msg.c_str());
    }
}


/*
 * exit(): registered after every start of a version, so that it runs
 * before whatever libnode registered with atexit() meanwhile (later
 * registrations run first).  on_exit(), not atexit(): it is given the
 * status the worker exits with.
 */
static void
hotffi_node_exiting(int status, void *unused)
{
    hotffi_node_process_end(status);
}


extern "C" {


/*
 * thread: hotffi's init thread (signals blocked).
 * cfg: borrowed, "[dir/]module[?][,function[,cfg]]"; tq: borrowed until
 * libffi_fini() or libffi_retire().
 */
int
libffi_init(char *cfg, void *tq)
{
    int                rc, len;
    const char        *state;
    sigset_t           all, old;
    std::string        err;
    hotffi_node_rt_t  *rt;

    (void) pthread_once(&hotffi_node_host_once, hotffi_node_host_lookup);

    if (cfg == nullptr || cfg[0] == '\0' || cfg[0] == ',') {
        hotffi_node_error(tq, "", "no module: \"[dir/]module[?],function,cfg\""
                          " expected");
        return HOTFFI_NODE_EBADCFG;
    }

    /* the threads Node and we start inherit this mask: nginx's signals
       are for the event loop */
    (void) sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, &old);

    if (hotffi_node_process_start(&err) != 0) {
        (void) pthread_sigmask(SIG_SETMASK, &old, nullptr);
        hotffi_node_error(tq, "", err);
        return HOTFFI_NODE_ENODE;
    }

    rt = hotffi_node_rt_create(tq, cfg);

    if (hotffi_node_host.state != nullptr) {
        state = hotffi_node_host.state(tq, &len);
        if (state != nullptr) {
            rt->state_in.assign(state, len);
            rt->has_state = true;
        }
    }

    (void) pthread_mutex_lock(&hotffi_node_reg_mtx);

    if (hotffi_node_host.rollback != nullptr && hotffi_node_host.rollback(tq)) {
        auto  it = hotffi_node_sources.find(rt->cfg);
        if (it != hotffi_node_sources.end()) {
            rt->rollback_src = it->second;
        }
    }

    hotffi_node_reg[tq] = rt;
    (void) pthread_mutex_unlock(&hotffi_node_reg_mtx);

    if (hotffi_node_env_start(rt, &err) != 0) {
        (void) pthread_sigmask(SIG_SETMASK, &old, nullptr);
        (void) pthread_mutex_lock(&hotffi_node_reg_mtx);
        hotffi_node_reg.erase(tq);
        (void) pthread_mutex_unlock(&hotffi_node_reg_mtx);
        hotffi_node_rt_free(rt);
        hotffi_node_error(tq, "", err);
        return HOTFFI_NODE_ENODE;
    }

    (void) pthread_mutex_lock(&rt->mtx);
    while (!rt->init_done) {
        (void) pthread_cond_wait(&rt->cond, &rt->mtx);
    }
    rc = rt->init_rc;
    err = rt->init_err;
    (void) pthread_mutex_unlock(&rt->mtx);

    if (rc == 0) {
        if (pthread_create(&rt->poll_tid, nullptr, hotffi_node_poll_thread,
                           rt) == 0)
        {
            rt->polling = 1;
            (void) on_exit(hotffi_node_exiting, nullptr);

            if (!rt->loaded_src.empty()) {
                (void) pthread_mutex_lock(&hotffi_node_reg_mtx);
                hotffi_node_sources[rt->cfg] = rt->loaded_src;
                (void) pthread_mutex_unlock(&hotffi_node_reg_mtx);
            }

        } else {
            rc = HOTFFI_NODE_ENODE;
            err = "cannot start the poller thread";
        }
    }

    (void) pthread_sigmask(SIG_SETMASK, &old, nullptr);

    /* a failure: hotffi stops tq and calls libffi_fini(), which ends rt */
    if (rc != 0) {
        hotffi_node_error(tq, "", err);
    }

    return rc;
}


static hotffi_node_rt_t *
hotffi_node_rt_take(void *tq)
{
    hotffi_node_rt_t  *rt = nullptr;

    (void) pthread_mutex_lock(&hotffi_node_reg_mtx);
    auto  it = hotffi_node_reg.find(tq);
    if (it != hotffi_node_reg.end()) {
        rt = it->second;
        hotffi_node_reg.erase(it);
    }
    (void) pthread_mutex_unlock(&hotffi_node_reg_mtx);

    return rt;
}


/* thread: hotffi's reaper, after the stop.  Returns once nothing of this
   version can touch tq: its Environment freed, its threads joined. */
int
libffi_fini(void *tq)
{
    hotffi_node_rt_t  *rt = hotffi_node_rt_take(tq);

    if (rt != nullptr) {
        hotffi_node_rt_end(rt, 0);
        hotffi_node_rt_free(rt);
    }

    return 0;
}


/*
 * thread: hotffi's reaper, when rt:__reload() replaces this version.  As
 * libffi_fini(), after the module's retire(tq) gave the state.
 * *state: malloc()'ed, hotffi's once this returns.
 */
int
libffi_retire(void *tq, char **state, int *len)
{
    int                rc;
    hotffi_node_rt_t  *rt = hotffi_node_rt_take(tq);

    if (rt == nullptr) {
        return 0;
    }

    hotffi_node_rt_end(rt, 1);

    rc = rt->retire_rc;

    if (rc != 0) {
        hotffi_node_error(tq, "retire()", rt->retire_err);

    } else if (rt->has_state_out) {
        *state = (char *) malloc(rt->state_out.size() + 1);
        if (*state != nullptr) {
            memcpy(*state, rt->state_out.data(), rt->state_out.size());
            *len = (int) rt->state_out.size();
        }
    }

    hotffi_node_rt_free(rt);

    return rc;
}


}  /* extern "C" */
