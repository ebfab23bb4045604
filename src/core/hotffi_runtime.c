/*
 * hotffi_runtime.c -- loading, unloading and retiring runtimes
 * (see hotffi_runtime.h).
 */

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi_runtime.h"
#include "hotffi_hub.h"
#include "hotffi_queue.h"
#include "hotffi_task.h"


#define HOTFFI_DEFAULT_MAX_QUEUE  65536
#define HOTFFI_NAME_MAX           256


static char *
hotffi_runtime_name(const char *lib, const char *cfg, size_t cfg_len)
{
    char    *name;
    size_t   n;

    name = malloc(HOTFFI_NAME_MAX);
    if (name == NULL) {
        return NULL;
    }

    /* the key resty.hotffi caches the runtime under */
    if (cfg == NULL) {
        (void) snprintf(name, HOTFFI_NAME_MAX, "%s", lib);
        return name;
    }

    n = cfg_len < HOTFFI_NAME_MAX ? cfg_len : HOTFFI_NAME_MAX;
    (void) snprintf(name, HOTFFI_NAME_MAX, "%s&%.*s", lib, (int) n, cfg);
    return name;
}


static void
hotffi_runtime_link(hotffi_runtime_t *rt)
{
    hotffi_hub_t  *hub = rt->hub;

    rt->prev = NULL;
    rt->next = hub->runtimes;

    if (hub->runtimes) {
        hub->runtimes->prev = rt;
    }

    hub->runtimes = rt;
}


static void
hotffi_runtime_free(hotffi_runtime_t *rt)
{
    if (rt->prev) {
        rt->prev->next = rt->next;

    } else {
        rt->hub->runtimes = rt->next;
    }

    if (rt->next) {
        rt->next->prev = rt->prev;
    }

    free(rt->retire);
    free(rt->name);
    free(rt);
}


/* thread: event loop.  Blocks every signal, keeping the old mask. */
static void
hotffi_signals_block(sigset_t *saved)
{
    sigset_t  all;

    (void) sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, saved);
}


/* libffi_init() with a private, NUL-terminated copy of cfg */
static int
hotffi_runtime_init(hotffi_runtime_t *rt, const char *cfg, size_t cfg_len,
    char *err, size_t errlen)
{
    int       rc;
    char     *copy;
    sigset_t  saved;

    copy = NULL;

    if (cfg) {
        copy = malloc(cfg_len + 1);
        if (copy == NULL) {
            (void) snprintf(err, errlen, "out of memory");
            return HOTFFI_ERROR;
        }

        memcpy(copy, cfg, cfg_len);
        copy[cfg_len] = '\0';
    }

    /*
     * Threads inherit their creator's signal mask: with every signal blocked
     * here, the threads libffi_init() starts never take the host's signals
     * (a SIGQUIT taken by a runtime thread would not wake nginx's loop).
     */
    hotffi_signals_block(&saved);
    rc = rt->lib.init(copy, rt->queue);
    (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);

    free(copy);

    if (rc != 0) {
        (void) snprintf(err, errlen, "libffi_init() of runtime \"%s\" "
                        "failed: %d%s%s", rt->name, rc,
                        rt->queue->init_error ? ": " : "",
                        rt->queue->init_error ? rt->queue->init_error : "");
        return HOTFFI_ERROR;
    }

    return HOTFFI_OK;
}


/* thread: event loop */
hotffi_runtime_t *
hotffi_runtime_load(hotffi_hub_t *hub, const char *lib, const char *cfg,
    size_t cfg_len, const hotffi_runtime_opts_t *opts, char *err,
    size_t errlen)
{
    uint32_t           max;
    hotffi_runtime_t  *rt;

    rt = calloc(1, sizeof(hotffi_runtime_t));
    if (rt == NULL) {
        (void) snprintf(err, errlen, "out of memory");
        return NULL;
    }

    rt->hub = hub;
    rt->unpin = opts->unpin;
    rt->refs = 1;

    max = opts->max_queue ? opts->max_queue : HOTFFI_DEFAULT_MAX_QUEUE;

    rt->name = hotffi_runtime_name(lib, cfg, cfg_len);
    rt->queue = hotffi_queue_create(max);
    rt->retire = calloc(1, sizeof(hotffi_task_t));

    if (rt->name == NULL || rt->queue == NULL || rt->retire == NULL) {
        (void) snprintf(err, errlen, "out of memory");
        goto failed;
    }

    rt->retire->hub = hub;
    rt->retire->rt = rt;
    rt->retire->kind = HOTFFI_TASK_RETIRE;

    if (hotffi_library_open(&rt->lib, lib, opts->global, err, errlen)
        != HOTFFI_OK)
    {
        goto failed;
    }

    hotffi_runtime_link(rt);

    /* the reference that retiring drops */
    rt->refs++;

    if (hotffi_runtime_init(rt, cfg, cfg_len, err, errlen) != HOTFFI_OK) {
        /* threads libffi_init() may have started see the stop */
        hotffi_runtime_unload(rt);
        hotffi_runtime_unref(rt);
        return NULL;
    }

    return rt;

failed:

    if (rt->queue) {
        hotffi_queue_destroy(rt->queue);
    }

    free(rt->retire);
    free(rt->name);
    free(rt);
    return NULL;
}


/* thread: reaper */
static void *
hotffi_runtime_reap(void *data)
{
    hotffi_runtime_t  *rt = data;

    /*
     * Only rt->queue, rt->lib.fini and rt->retire are read here: the event
     * loop changes none of them before the RETIRE task comes back.
     */
    hotffi_queue_wait_drained(rt->queue);
    (void) rt->lib.fini(rt->queue);
    hotffi_hub_complete(rt->retire->hub, rt->retire);

    return NULL;
}


/* thread: event loop */
void
hotffi_runtime_unload(hotffi_runtime_t *rt)
{
    int       rc;
    sigset_t  saved;

    if (rt->unloaded) {
        return;
    }

    rt->unloaded = 1;
    hotffi_queue_stop(rt->queue);

    if (rt->lib.fini == NULL) {
        return;
    }

    /*
     * Joinable, and joined before the library is closed: a thread-local
     * destructor libffi_fini() left on the reaper runs as it exits, and it
     * must not find its code unmapped.  The reaper, like runtime threads,
     * must not take the host's signals.
     */
    hotffi_signals_block(&saved);
    rc = pthread_create(&rt->reaper, NULL, hotffi_runtime_reap, rt);
    (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);

    if (rc != 0) {
        hotffi_hub_log(rt->hub, HOTFFI_LOG_ERR, "runtime \"%s\" cannot "
                       "retire: pthread_create() failed, its library stays "
                       "loaded", rt->name);
    }
}


/* thread: event loop */
void
hotffi_runtime_retired(hotffi_task_t *retire)
{
    hotffi_runtime_t  *rt = retire->rt;

    rt->retired = 1;

    /* it only has to return from hotffi_hub_complete(): a short wait */
    (void) pthread_join(rt->reaper, NULL);

    hotffi_queue_destroy(rt->queue);
    rt->queue = NULL;

    if (rt->unpin && hotffi_library_close(&rt->lib) != HOTFFI_OK) {
        hotffi_hub_log(rt->hub, HOTFFI_LOG_WARN, "runtime \"%s\" unloaded, "
                       "but its library stays mapped after dlclose() "
                       "(marked NODELETE, or thread-local destructors "
                       "pending): the next load reuses the old code",
                       rt->name);
    }

    hotffi_runtime_unref(rt);
}


void
hotffi_runtime_ref(hotffi_runtime_t *rt)
{
    rt->refs++;
}


void
hotffi_runtime_unref(hotffi_runtime_t *rt)
{
    if (--rt->refs == 0) {
        hotffi_runtime_free(rt);
    }
}


void
hotffi_runtime_forget(hotffi_runtime_t *rt)
{
    if (rt->queue) {
        hotffi_queue_destroy(rt->queue);
    }

    hotffi_runtime_free(rt);
}
