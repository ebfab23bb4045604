/*
 * hotffi_version.c -- starting a runtime version and reaping it (see
 * hotffi_version.h).
 */

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi_version.h"
#include "hotffi_env.h"
#include "hotffi_err.h"
#include "hotffi_hub.h"
#include "hotffi_direct.h"
#include "hotffi_poller.h"
#include "hotffi_queue.h"


/* how long an unloaded unpin runtime's threads may take to end, by default */
#define HOTFFI_VERSION_GRACE_MS      10000
#define HOTFFI_VERSION_GRACE_MAX_MS  3600000   /* above an hour: a typo */
#define HOTFFI_VERSION_NAME_MAX      256       /* "lib&cfg" in messages */


/* thread: event loop.  Blocks every signal, keeping the old mask. */
static void
hotffi_signals_block(sigset_t *saved)
{
    sigset_t  all;

    (void) sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, saved);
}


/* thread: any */
static char *
hotffi_copy(const char *s, size_t len)
{
    char  *copy;

    copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, s, len);
        copy[len] = '\0';
    }

    return copy;
}


/* thread: event loop.  everything but the library */
static hotffi_version_t *
hotffi_version_alloc(const hotffi_version_owner_t *owner, const char *lib,
    const char *cfg, size_t cfg_len)
{
    hotffi_version_t  *v;

    v = calloc(1, sizeof(hotffi_version_t));
    if (v == NULL) {
        return NULL;
    }

    v->owner = *owner;
    v->port.queue = owner->queue;
    v->port.hub = owner->hub;
    hotffi_list_init(&v->kept_link);
    v->lib_name = strdup(lib);
    v->start = calloc(1, sizeof(hotffi_task_t));
    v->reaped_task = calloc(1, sizeof(hotffi_task_t));
    v->cfg_len = cfg_len;

    if (cfg) {
        v->cfg = hotffi_copy(cfg, cfg_len);
    }

    if (v->lib_name == NULL || v->start == NULL || v->reaped_task == NULL
        || (cfg && v->cfg == NULL))
    {
        hotffi_version_free(v);
        return NULL;
    }

    /* not a pool's: they live and die with v */
    hotffi_list_init(&v->start->link);
    hotffi_list_init(&v->start->glink);
    v->start->hub = owner->hub;
    v->start->handler = owner->started;
    v->start->data = v;

    hotffi_list_init(&v->reaped_task->link);
    hotffi_list_init(&v->reaped_task->glink);
    v->reaped_task->hub = owner->hub;
    v->reaped_task->handler = owner->reaped;
    v->reaped_task->data = v;

    return v;
}


/* thread: event loop */
hotffi_version_t *
hotffi_version_open(const hotffi_version_owner_t *owner, const char *lib,
    const char *cfg, size_t cfg_len, char *err, size_t errlen)
{
    hotffi_version_t  *v;

    v = hotffi_version_alloc(owner, lib, cfg, cfg_len);
    if (v == NULL) {
        (void) snprintf(err, errlen, "out of memory");
        return NULL;
    }

    if (hotffi_library_open(&v->lib, lib, owner->global, err, errlen)
        != HOTFFI_OK)
    {
        hotffi_version_free(v);
        return NULL;
    }

    return v;
}


/* thread: event loop */
hotffi_version_t *
hotffi_version_clone(hotffi_version_t *v, char *err, size_t errlen)
{
    hotffi_version_t  *c;

    c = hotffi_version_alloc(&v->owner, v->lib_name, v->cfg, v->cfg_len);
    if (c == NULL) {
        (void) snprintf(err, errlen, "out of memory");
        return NULL;
    }

    if (hotffi_library_dup(&c->lib, &v->lib, err, errlen) != HOTFFI_OK) {
        hotffi_version_free(c);
        return NULL;
    }

    c->number = v->number;
    c->port.rollback = 1;

    return c;
}


/*
 * thread: any (it reads what open set).
 * Whether v's threads are proved gone by the kernel (hotffi_poller.h): its
 * library cannot say so itself, and unpin wants it closed.
 */
static int
hotffi_version_by_threads(hotffi_version_t *v)
{
    return v->owner.unpin && v->lib.fini == NULL && v->lib.retire == NULL;
}


/*
 * thread: init.  libffi_init() with every signal blocked (inherited from the
 * event loop, see hotffi_version_start()), noting the threads it starts
 * where they must be proved gone; then START goes back through the hub,
 * whose mutex orders this thread's writes (init_rc, the port's init_error)
 * before the event loop reads them.
 */
static void *
hotffi_version_init_thread(void *data)
{
    int                noting;
    hotffi_version_t  *v = data;
    hotffi_threads_t   before;

    noting = hotffi_version_by_threads(v);

    /* listed from here, this thread is not one init started */
    if (noting) {
        hotffi_pollers_list(&before);
    }

    v->init_rc = v->lib.init(v->init_cfg, &v->port);

    if (noting) {
        /* the threads it started, polling yet or not */
        hotffi_pollers_note_new(&v->port.pollers, &before);
        free(before.tids);
    }

    hotffi_hub_complete(v->owner.hub, v->start);

    return NULL;
}


/* thread: event loop */
int
hotffi_version_start(hotffi_version_t *v, const char *state,
    size_t state_len, char *err, size_t errlen)
{
    int       rc;
    sigset_t  saved;

    /* the runtime may keep or change its cfg only until init returns */
    if (v->cfg) {
        v->init_cfg = hotffi_copy(v->cfg, v->cfg_len);
        if (v->init_cfg == NULL) {
            (void) snprintf(err, errlen, "out of memory");
            return HOTFFI_ERROR;
        }
    }

    v->port.state = state;
    v->port.state_len = state ? state_len : 0;
    hotffi_pollers_init(&v->port.pollers, hotffi_version_by_threads(v));

    /*
     * Threads inherit their creator's signal mask: with every signal blocked
     * here, the init thread and the threads libffi_init() starts never take
     * the host's signals (a SIGQUIT taken by a runtime thread would not wake
     * nginx's loop).  v: the init thread's until START arrives, the event
     * loop leaves it alone meanwhile.
     */
    hotffi_signals_block(&saved);
    rc = pthread_create(&v->starter, NULL, hotffi_version_init_thread, v);
    (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);

    if (rc != 0) {
        free(v->init_cfg);
        v->init_cfg = NULL;
        v->port.state = NULL;
        v->port.state_len = 0;
        (void) snprintf(err, errlen, "runtime \"%s\" not started: "
                        "pthread_create() failed", v->owner.name);
        return HOTFFI_ERROR;
    }

    return HOTFFI_OK;
}


/* thread: event loop */
int
hotffi_version_started(hotffi_version_t *v, char *err, size_t errlen)
{
    char  name[HOTFFI_VERSION_NAME_MAX];

    /* it only has to return from hotffi_hub_complete(): a short wait */
    (void) pthread_join(v->starter, NULL);

    free(v->init_cfg);
    v->init_cfg = NULL;
    v->port.state = NULL;
    v->port.state_len = 0;

    if (v->init_rc == 0) {
        hotffi_queue_open_port(v->port.queue, &v->port);

        /* a direct port has no poller to see what queued meanwhile (a
         * reload's calls): send it now */
        (void) hotffi_direct_pump(v->owner.hub, v->port.queue);
        return HOTFFI_OK;
    }

    /* threads libffi_init() may have started see the stop */
    hotffi_queue_stop_port(v->port.queue, &v->port);

    /* named by what it tried, "lib&cfg": a reload's new ones, not the old */
    (void) snprintf(name, sizeof(name), "%s%s%.*s", v->lib_name,
                    v->cfg ? "&" : "",
                    v->cfg ? (int) (v->cfg_len < sizeof(name)
                                    ? v->cfg_len : sizeof(name)) : 0,
                    v->cfg ? v->cfg : "");
    hotffi_err_format(err, errlen, "libffi_init() of runtime \"%s\" failed: "
                      "%d%s%s", name, v->init_rc,
                      v->port.init_error ? ": " : "",
                      v->port.init_error ? v->port.init_error : "");
    return HOTFFI_ERROR;
}


/* thread: event loop */
int
hotffi_version_reapable(hotffi_version_t *v)
{
    /* the kernel's proof needs every poll to return NULL: an unload's */
    return v->lib.fini != NULL || v->lib.retire != NULL
           || (v->final && hotffi_version_by_threads(v));
}


/* thread: reaper */
static void *
hotffi_version_reap_thread(void *data)
{
    int                len;
    char              *state;
    uint64_t           grace;
    hotffi_version_t  *v = data;

    /*
     * The event loop leaves v alone until REAPED comes back: only the
     * reaper writes retire_rc and state, and the hub's mutex orders those
     * writes before the event loop reads them.
     */
    if (v->final) {
        hotffi_queue_wait_drained(v->port.queue);
    }

    if (v->lib.retire && (v->handover || v->lib.fini == NULL)) {
        state = NULL;
        len = 0;
        v->retire_rc = v->lib.retire(&v->port, &state, &len);

        if (state && v->handover && v->retire_rc == 0 && len >= 0) {
            v->state = state;
            v->state_len = (size_t) len;

        } else {
            free(state);
        }

    } else if (v->lib.fini) {
        (void) v->lib.fini(&v->port);

    } else {
        grace = hotffi_env_ns("HOTFFI_UNPIN_GRACE_MS",
                              HOTFFI_VERSION_GRACE_MAX_MS, 1000000,
                              (uint64_t) HOTFFI_VERSION_GRACE_MS * 1000000);
        v->retire_rc = hotffi_pollers_wait_gone(&v->port.pollers, grace);
    }

    hotffi_hub_complete(v->owner.hub, v->reaped_task);

    return NULL;
}


/* thread: event loop */
int
hotffi_version_reap(hotffi_version_t *v)
{
    int       rc;
    sigset_t  saved;

    /*
     * Joinable, and joined before the library is closed: a thread-local
     * destructor libffi_fini() left on the reaper runs as it exits, and it
     * must not find its code unmapped.  The reaper, like runtime threads,
     * must not take the host's signals.
     */
    hotffi_signals_block(&saved);
    rc = pthread_create(&v->reaper, NULL, hotffi_version_reap_thread, v);
    (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);

    if (rc != 0) {
        hotffi_hub_log(v->owner.hub, HOTFFI_LOG_ERR, "runtime \"%s\" "
                       "version %llu cannot retire: pthread_create() failed, "
                       "its library stays loaded", v->owner.name,
                       (unsigned long long) v->number);
        return HOTFFI_ERROR;
    }

    return HOTFFI_OK;
}


/* thread: event loop */
void
hotffi_version_reaped(hotffi_version_t *v)
{
    /* it only has to return from hotffi_hub_complete(): a short wait */
    (void) pthread_join(v->reaper, NULL);

    /* a thread of its library may still run: it stays kept, and mapped */
    v->proved = !hotffi_version_by_threads(v) || v->retire_rc == HOTFFI_OK;
}


/* thread: event loop */
void
hotffi_version_close(hotffi_version_t *v, int shared)
{
    if (!v->owner.unpin) {
        return;
    }

    if (hotffi_library_close(&v->lib) != HOTFFI_OK && !shared) {
        hotffi_hub_log(v->owner.hub, HOTFFI_LOG_WARN, "runtime \"%s\" version "
                       "%llu retired, but its library stays mapped after "
                       "dlclose() (marked NODELETE, or thread-local "
                       "destructors pending): loading the same file reuses "
                       "the old code", v->owner.name,
                       (unsigned long long) v->number);
    }
}


/* thread: event loop */
void
hotffi_version_free(hotffi_version_t *v)
{
    hotffi_direct_free(&v->port);
    free(v->port.init_error);
    free(v->state);
    free(v->init_cfg);
    free(v->start);
    free(v->reaped_task);
    free(v->cfg);
    free(v->lib_name);
    free(v);
}
