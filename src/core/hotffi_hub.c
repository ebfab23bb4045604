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
#include "hotffi_spin.h"
#include "hotffi_err.h"
#include "hotffi_queue.h"


/* hotffi_hub_process(): set by the first hub made, cleared at its end */
static _Atomic(hotffi_hub_t *)  hotffi_hub_first;


/* thread: event loop */
hotffi_hub_t *
hotffi_hub_create(const hotffi_host_t *host, const char **err)
{
    hotffi_hub_t  *hub, *first;

    hub = calloc(1, sizeof(hotffi_hub_t));
    if (hub == NULL) {
        *err = "out of memory";
        return NULL;
    }

    hub->host = *host;
    hotffi_list_init(&hub->done);
    hotffi_list_init(&hub->runtimes);
    hotffi_list_init(&hub->calls);
    hotffi_list_init(&hub->wakes);
    hotffi_task_pool_init(&hub->tasks);

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

    if (pthread_mutex_init(&hub->direct_mtx, NULL) != 0) {
        *err = "pthread_mutex_init() failed";
        (void) pthread_mutex_destroy(&hub->mtx);
        (void) close(hub->efd);
        free(hub);
        return NULL;
    }

    hotffi_list_init(&hub->directs);

    if (hotffi_logbuf_init(&hub->log, host->line ? host->line_level : 0)
        != HOTFFI_OK)
    {
        *err = "out of memory";
        (void) pthread_mutex_destroy(&hub->direct_mtx);
        (void) pthread_mutex_destroy(&hub->mtx);
        (void) close(hub->efd);
        free(hub);
        return NULL;
    }

    first = NULL;
    (void) atomic_compare_exchange_strong(&hotffi_hub_first, &first, hub);

    return hub;
}


/* thread: event loop */
void
hotffi_hub_destroy(hotffi_hub_t *hub)
{
    hotffi_hub_t  *self;

    self = hub;
    (void) atomic_compare_exchange_strong(&hotffi_hub_first, &self, NULL);

    hotffi_hub_flush_wakes(hub);
    (void) hotffi_hub_drain(hub);

    while (!hotffi_list_empty(&hub->runtimes)) {
        hub->free_runtime(hotffi_list_first(&hub->runtimes));
    }

    hotffi_task_pool_free(&hub->tasks);
    hotffi_logbuf_free(&hub->log);

    (void) pthread_mutex_destroy(&hub->direct_mtx);
    (void) pthread_mutex_destroy(&hub->mtx);
    (void) close(hub->efd);
    free(hub);
}


/* thread: any */
int
hotffi_hub_fd(hotffi_hub_t *hub)
{
    return hub->efd;
}


/* thread: event loop */
void
hotffi_hub_wake(hotffi_hub_t *hub, hotffi_queue_t *q)
{
    if (hub->callers == 0 || hub->host.defer == NULL) {
        hotffi_queue_wake(q);
        return;
    }

    if (hotffi_list_linked(&q->wake_link)) {
        return;
    }

    if (hotffi_list_empty(&hub->wakes)) {
        hub->host.defer();
    }

    hotffi_list_insert_tail(&hub->wakes, &q->wake_link);
}


/* thread: event loop */
void
hotffi_hub_flush_wakes(hotffi_hub_t *hub)
{
    hotffi_list_t    *link;
    hotffi_queue_t   *q;
    hotffi_direct_t  *d;

    while ((link = hotffi_list_pop(&hub->wakes)) != NULL) {
        q = hotffi_list_data(link, hotffi_queue_t, wake_link);
        hotffi_queue_wake(q);

        /* a direct port's calls deferred by the call layer */
        d = atomic_load_explicit(&q->direct, memory_order_relaxed);

        if (d != NULL) {
            (void) hotffi_hub_direct_pump(hub, d);
        }
    }
}


/* thread: event loop */
void
hotffi_hub_forget_queue(hotffi_hub_t *hub, hotffi_queue_t *q)
{
    (void) hub;

    if (hotffi_list_linked(&q->wake_link)) {
        hotffi_list_remove(&q->wake_link);
    }
}


/* thread: any */
void
hotffi_hub_complete(hotffi_hub_t *hub, hotffi_task_t *task)
{
    int  notify;

    (void) pthread_mutex_lock(&hub->mtx);

    /* a spinning event loop takes the list without being told */
    notify = hotffi_list_empty(&hub->done)
             && !atomic_load_explicit(&hub->spinning, memory_order_relaxed);

    hotffi_list_insert_tail(&hub->done, &task->link);
    atomic_store_explicit(&hub->ready, 1, memory_order_release);

    (void) pthread_mutex_unlock(&hub->mtx);

    if (notify) {
        hotffi_hub_notify(hub);
    }
}


/* thread: event loop, inside a direct port's take */
void
hotffi_hub_complete_local(hotffi_hub_t *hub, hotffi_task_t *task)
{
    (void) pthread_mutex_lock(&hub->mtx);
    hotffi_list_insert_tail(&hub->done, &task->link);
    atomic_store_explicit(&hub->ready, 1, memory_order_release);
    (void) pthread_mutex_unlock(&hub->mtx);
}


/* thread: the taker */
int
hotffi_hub_taken(hotffi_task_t **tasks, int got)
{
    int             i, n;
    uint64_t        now;
    hotffi_task_t  *task;

    if (got <= 0) {
        return 0;
    }

    now = 0;

    for (i = 0, n = 0; i < got; i++) {
        task = tasks[i];

        if (atomic_load_explicit(&task->cancelled, memory_order_acquire)) {
            /* nobody waits for it: send it back unanswered to be freed */
            task->rc = HOTFFI_TASK_CANCELLED;
            hotffi_hub_complete(task->hub, task);
            continue;
        }

        /* only calls that teach the service rate need the clock: one
         * read for a batch, none for small calls (hotffi_spin.h) */
        if (task->req_len >= HOTFFI_SPIN_LEARN_BYTES) {
            now = now ? now : hotffi_spin_now();
            task->taken = now;
        }

        tasks[n++] = task;
    }

    return n;
}


/* thread: any */
void
hotffi_hub_direct_add(hotffi_hub_t *hub, hotffi_direct_t *d)
{
    (void) pthread_mutex_lock(&hub->direct_mtx);

    if (!hotffi_list_linked(&d->link)) {
        hotffi_list_insert_tail(&hub->directs, &d->link);
        atomic_fetch_add_explicit(&hub->ndirect, 1, memory_order_relaxed);
    }

    (void) pthread_mutex_unlock(&hub->direct_mtx);
}


/* thread: any */
void
hotffi_hub_direct_remove(hotffi_hub_t *hub, hotffi_direct_t *d)
{
    (void) pthread_mutex_lock(&hub->direct_mtx);

    if (hotffi_list_linked(&d->link)) {
        hotffi_list_remove(&d->link);
        atomic_fetch_sub_explicit(&hub->ndirect, 1, memory_order_relaxed);
    }

    d->data = NULL;

    (void) pthread_mutex_unlock(&hub->direct_mtx);
}


/* thread: event loop */
int
hotffi_hub_direct_pump(hotffi_hub_t *hub, hotffi_direct_t *d)
{
    int  woke;

    (void) pthread_mutex_lock(&hub->direct_mtx);
    woke = d->data ? d->ops->pump(d->data) : 0;
    (void) pthread_mutex_unlock(&hub->direct_mtx);

    return woke;
}


/*
 * thread: event loop.  Every direct port's answers onto done (see the
 * DESIGN note in hotffi_hub.h); arm: and wake us for the next ones.
 */
static void
hotffi_hub_direct_take(hotffi_hub_t *hub, int arm)
{
    hotffi_list_t    *link;
    hotffi_direct_t  *d;

    if (atomic_load_explicit(&hub->ndirect, memory_order_relaxed) == 0) {
        return;
    }

    (void) pthread_mutex_lock(&hub->direct_mtx);

    for (link = hotffi_list_first(&hub->directs); link != &hub->directs;
         link = link->next)
    {
        d = hotffi_list_data(link, hotffi_direct_t, link);
        (void) d->ops->take(d->data, arm);
    }

    (void) pthread_mutex_unlock(&hub->direct_mtx);
}


/* thread: any */
void
hotffi_hub_notify(hotffi_hub_t *hub)
{
    uint64_t  one;
    ssize_t   n;

    one = 1;

    do {
        n = write(hub->efd, &one, sizeof(one));
    } while (n == -1 && errno == EINTR);

    /* EAGAIN means the counter is saturated: a wake-up is pending */
}


/* thread: any */
hotffi_hub_t *
hotffi_hub_process(void)
{
    return atomic_load_explicit(&hotffi_hub_first, memory_order_acquire);
}


/* locks: hub->mtx held.  Moves the whole list to list. */
static void
hotffi_hub_detach(hotffi_hub_t *hub, hotffi_list_t *list)
{
    hotffi_list_move(list, &hub->done);
    atomic_store_explicit(&hub->ready, 0, memory_order_relaxed);
}


/*
 * thread: event loop.  Hands each task of list to its handler, which owns
 * it from then on (it may free it, or queue it anew).
 */
static unsigned
hotffi_hub_run(hotffi_hub_t *hub, hotffi_list_t *list)
{
    unsigned        n;
    hotffi_list_t  *link;
    hotffi_task_t  *task;

    for (n = 0; (link = hotffi_list_pop(list)) != NULL; n++) {
        task = hotffi_list_data(link, hotffi_task_t, link);
        task->handler(task);
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
    hotffi_list_t  list;

    (void) pthread_mutex_lock(&hub->mtx);
    hotffi_hub_detach(hub, &list);
    (void) pthread_mutex_unlock(&hub->mtx);

    return hotffi_hub_run(hub, &list);
}


/* thread: event loop */
unsigned
hotffi_hub_drain(hotffi_hub_t *hub)
{
    ssize_t   got;
    uint64_t  count;

    /* read first: see the DESIGN note in hotffi_hub.h.  EAGAIN: read by
     * an earlier drain.  The result is kept, not cast away, for glibc's
     * fortified read() (Debian's build flags) */
    got = read(hub->efd, &count, sizeof(count));
    (void) got;

    /* first: an isolated runtime's lines come with its answers */
    hotffi_hub_direct_take(hub, 1);

    /* runtimes' lines, announced through the same eventfd */
    if (hub->host.line) {
        (void) hotffi_logbuf_drain(&hub->log, hub->host.line,
                                   hub->host.log_ctx);
    }

    return hotffi_hub_take_list(hub);
}


/* thread: event loop */
unsigned
hotffi_hub_take(hotffi_hub_t *hub)
{
    hotffi_hub_direct_take(hub, 0);

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

    /* and the direct ports' peers write no eventfd either */
    hotffi_hub_direct_take(hub, 0);
}


/* thread: event loop */
void
hotffi_hub_spin_end(hotffi_hub_t *hub)
{
    hotffi_list_t  list;

    /* wakes us again, and what came meanwhile is on done */
    hotffi_hub_direct_take(hub, 1);

    /* one critical section: see the DESIGN note in hotffi_hub.h */
    (void) pthread_mutex_lock(&hub->mtx);
    atomic_store_explicit(&hub->spinning, 0, memory_order_relaxed);
    hotffi_hub_detach(hub, &list);
    (void) pthread_mutex_unlock(&hub->mtx);

    (void) hotffi_hub_run(hub, &list);
}


/* thread: event loop */
void
hotffi_hub_log(hotffi_hub_t *hub, int level, const char *fmt, ...)
{
    char     msg[HOTFFI_ERR_MAX];
    va_list  args;

    if (hub->host.log == NULL) {
        return;
    }

    /* a line that carries a traceback keeps its end (hotffi_err.h) */
    va_start(args, fmt);
    hotffi_err_vformat(msg, sizeof(msg), fmt, args);
    va_end(args);

    hub->host.log(hub->host.log_ctx, level, msg);
}
