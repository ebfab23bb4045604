/*
 * hotffi_hub.c -- the completion list and its eventfd (see hotffi_hub.h).
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "hotffi_hub.h"
#include "hotffi_task.h"
#include "hotffi_call.h"
#include "hotffi_queue.h"
#include "hotffi_runtime.h"


hotffi_hub_t *
hotffi_hub_create(const hotffi_host_t *host, const char **err)
{
    hotffi_hub_t  *hub;

    hub = calloc(1, sizeof(hotffi_hub_t));
    if (hub == NULL) {
        *err = "out of memory";
        return NULL;
    }

    hub->host = *host;

    hub->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (hub->efd == -1) {
        *err = "eventfd() failed";
        free(hub);
        return NULL;
    }

    if (pthread_mutex_init(&hub->mtx, NULL) != 0) {
        *err = "pthread_mutex_init() failed";
        (void) close(hub->efd);
        free(hub);
        return NULL;
    }

    return hub;
}


void
hotffi_hub_destroy(hotffi_hub_t *hub)
{
    hotffi_hub_flush_wakes(hub);
    (void) hotffi_hub_drain(hub);

    while (hub->runtimes) {
        hotffi_runtime_forget(hub->runtimes);
    }

    hotffi_task_free_list(hub);

    (void) pthread_mutex_destroy(&hub->mtx);
    (void) close(hub->efd);
    free(hub);
}


int
hotffi_hub_fd(hotffi_hub_t *hub)
{
    return hub->efd;
}


/* thread: event loop */
void
hotffi_hub_wake(hotffi_hub_t *hub, hotffi_runtime_t *rt)
{
    if (hub->stats.callers == 0 || hub->host.defer == NULL) {
        hotffi_queue_wake(rt->queue);
        return;
    }

    if (rt->wake_deferred) {
        return;
    }

    rt->wake_deferred = 1;
    hotffi_runtime_ref(rt);
    rt->wake_next = hub->wakes;

    if (hub->wakes == NULL) {
        hub->host.defer();
    }

    hub->wakes = rt;
}


/* thread: event loop */
void
hotffi_hub_flush_wakes(hotffi_hub_t *hub)
{
    hotffi_runtime_t  *rt;

    while (hub->wakes) {
        rt = hub->wakes;
        hub->wakes = rt->wake_next;
        rt->wake_next = NULL;
        rt->wake_deferred = 0;

        /* a runtime retired meanwhile has no queue, nor pollers */
        if (rt->queue) {
            hotffi_queue_wake(rt->queue);
        }

        hotffi_runtime_unref(rt);
    }
}


/* thread: any */
void
hotffi_hub_complete(hotffi_hub_t *hub, hotffi_task_t *task)
{
    int       notify;
    uint64_t  one;
    ssize_t   n;

    task->next = NULL;

    (void) pthread_mutex_lock(&hub->mtx);

    /* a spinning event loop takes the list without being told */
    notify = hub->head == NULL
             && !atomic_load_explicit(&hub->spinning, memory_order_relaxed);

    if (hub->head == NULL) {
        hub->head = task;

    } else {
        hub->tail->next = task;
    }

    hub->tail = task;
    atomic_store_explicit(&hub->ready, 1, memory_order_release);

    (void) pthread_mutex_unlock(&hub->mtx);

    if (notify) {
        one = 1;

        do {
            n = write(hub->efd, &one, sizeof(one));
        } while (n == -1 && errno == EINTR);

        /* EAGAIN means the counter is saturated: a wake-up is pending */
    }
}


/* locks: hub->mtx held.  Takes the whole list. */
static hotffi_task_t *
hotffi_hub_detach(hotffi_hub_t *hub)
{
    hotffi_task_t  *task;

    task = hub->head;
    hub->head = NULL;
    hub->tail = NULL;
    atomic_store_explicit(&hub->ready, 0, memory_order_relaxed);

    return task;
}


/* thread: event loop.  Hands each answer of the list to its caller. */
static unsigned
hotffi_hub_run(hotffi_hub_t *hub, hotffi_task_t *task)
{
    unsigned        n;
    hotffi_task_t  *next;

    for (n = 0; task; task = next, n++) {
        next = task->next;

        if (task->kind == HOTFFI_TASK_RETIRE) {
            hotffi_runtime_retired(task);

        } else {
            hotffi_call_complete(task);
        }
    }

    if (n) {
        hub->stats.wakeups++;
        hub->stats.completions += n;
    }

    return n;
}


/* thread: event loop.  Takes the list and hands out its answers. */
static unsigned
hotffi_hub_take_list(hotffi_hub_t *hub)
{
    hotffi_task_t  *task;

    (void) pthread_mutex_lock(&hub->mtx);
    task = hotffi_hub_detach(hub);
    (void) pthread_mutex_unlock(&hub->mtx);

    return hotffi_hub_run(hub, task);
}


/* thread: event loop */
unsigned
hotffi_hub_drain(hotffi_hub_t *hub)
{
    uint64_t  count;

    /* read first: see the DESIGN note in hotffi_hub.h */
    (void) read(hub->efd, &count, sizeof(count));

    return hotffi_hub_take_list(hub);
}


/* thread: event loop */
unsigned
hotffi_hub_take(hotffi_hub_t *hub)
{
    if (!atomic_load_explicit(&hub->ready, memory_order_acquire)) {
        return 0;
    }

    return hotffi_hub_take_list(hub);
}


/* thread: event loop */
void
hotffi_hub_spin_begin(hotffi_hub_t *hub)
{
    /*
     * No lock: an append that misses the store writes the eventfd as
     * usual, which costs a spurious wake-up at worst.
     */
    atomic_store_explicit(&hub->spinning, 1, memory_order_relaxed);
}


/* thread: event loop */
void
hotffi_hub_spin_end(hotffi_hub_t *hub)
{
    hotffi_task_t  *task;

    /* one critical section: see the DESIGN note in hotffi_hub.h */
    (void) pthread_mutex_lock(&hub->mtx);
    atomic_store_explicit(&hub->spinning, 0, memory_order_relaxed);
    task = hotffi_hub_detach(hub);
    (void) pthread_mutex_unlock(&hub->mtx);

    (void) hotffi_hub_run(hub, task);
}


void
hotffi_hub_log(hotffi_hub_t *hub, int level, const char *fmt, ...)
{
    char     msg[512];
    va_list  args;

    if (hub->host.log == NULL) {
        return;
    }

    va_start(args, fmt);
    (void) vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    hub->host.log(hub->host.log_ctx, level, msg);
}
