/*
 * hotffi_poller.c -- the threads that serve a port, and the proof that they
 * are gone (see hotffi_poller.h).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* syscall() */
#endif
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hotffi_poller.h"
#include "hotffi_spin.h"


/* how often the reaper looks again */
#define HOTFFI_POLLER_RECHECK_NS  (10 * 1000 * 1000)


static atomic_uint_fast64_t  hotffi_pollers_serials = 1;

/* the serial of the port this thread last noted itself on; 0: none */
static __thread uint64_t     hotffi_pollers_last;


/* thread: event loop */
void
hotffi_pollers_init(hotffi_pollers_t *p, int note)
{
    p->serial = atomic_fetch_add_explicit(&hotffi_pollers_serials, 1,
                                          memory_order_relaxed);
    p->noting = note ? 1 : 0;
    atomic_init(&p->n, 0);
    atomic_init(&p->stops, 0);
}


/* thread: any */
static void
hotffi_pollers_note(hotffi_pollers_t *p, int tid)
{
    unsigned  i;

    i = atomic_fetch_add_explicit(&p->n, 1, memory_order_relaxed);

    if (i < HOTFFI_POLLER_MAX) {
        atomic_store_explicit(&p->tids[i], tid, memory_order_release);
    }
}


/* thread: runtime */
int
hotffi_pollers_note_self(hotffi_pollers_t *p)
{
    if (!p->noting) {
        return 0;
    }

    if (hotffi_pollers_last != p->serial) {
        hotffi_pollers_last = p->serial;
        hotffi_pollers_note(p, (int) syscall(SYS_gettid));
    }

    return 1;
}


/* thread: runtime */
void
hotffi_pollers_note_stop(hotffi_pollers_t *p)
{
    (void) atomic_fetch_add_explicit(&p->stops, 1, memory_order_release);
}


/* thread: any */
static int
hotffi_pollers_cmp(const void *a, const void *b)
{
    int  x = *(const int *) a, y = *(const int *) b;

    return (x > y) - (x < y);
}


/* thread: init */
void
hotffi_pollers_list(hotffi_threads_t *t)
{
    int            *tids, *more, tid;
    DIR            *dir;
    size_t          n, size;
    struct dirent  *de;

    t->tids = NULL;
    t->n = 0;

    dir = opendir("/proc/self/task");
    if (dir == NULL) {
        return;
    }

    n = 0;
    size = 16;
    tids = malloc(size * sizeof(int));
    if (tids == NULL) {
        goto failed;
    }

    while ((de = readdir(dir)) != NULL) {
        tid = atoi(de->d_name);
        if (tid <= 0) {
            continue;
        }

        if (n == size) {
            more = realloc(tids, 2 * size * sizeof(int));
            if (more == NULL) {
                goto failed;
            }

            tids = more;
            size *= 2;
        }

        tids[n++] = tid;
    }

    (void) closedir(dir);

    qsort(tids, n, sizeof(int), hotffi_pollers_cmp);
    t->tids = tids;
    t->n = n;
    return;

failed:

    /* unknown: t->tids stays NULL */
    free(tids);
    (void) closedir(dir);
}


/* thread: init */
void
hotffi_pollers_note_new(hotffi_pollers_t *p, const hotffi_threads_t *before)
{
    size_t            i;
    hotffi_threads_t  now;

    hotffi_pollers_list(&now);

    if (before->tids == NULL || now.tids == NULL) {
        /* unknown: past the max, nothing can be proved */
        atomic_store_explicit(&p->n, HOTFFI_POLLER_MAX + 1,
                              memory_order_relaxed);
        free(now.tids);
        return;
    }

    for (i = 0; i < now.n; i++) {
        if (bsearch(&now.tids[i], before->tids, before->n, sizeof(int),
                    hotffi_pollers_cmp) == NULL)
        {
            hotffi_pollers_note(p, now.tids[i]);
        }
    }

    free(now.tids);
}


/* thread: reaper.  Whether thread tid of this process may still run. */
static int
hotffi_pollers_alive(int tid)
{
    char  path[64];

    (void) snprintf(path, sizeof(path), "/proc/self/task/%d", tid);

    /* anything but "no such thread" may be a thread still there */
    return access(path, F_OK) == 0 || errno != ENOENT;
}


/* thread: reaper.  1 when every note is written and no noted thread is alive */
static int
hotffi_pollers_gone(hotffi_pollers_t *p, unsigned n)
{
    int       tid;
    unsigned  i;

    for (i = 0; i < n; i++) {
        tid = atomic_load_explicit(&p->tids[i], memory_order_acquire);

        if (tid == 0 || hotffi_pollers_alive(tid)) {
            return 0;
        }
    }

    return 1;
}


/* thread: reaper */
int
hotffi_pollers_wait_gone(hotffi_pollers_t *p, uint64_t grace_ns)
{
    unsigned         n;
    uint64_t         deadline;
    struct timespec  pause = { 0, HOTFFI_POLLER_RECHECK_NS };

    deadline = hotffi_spin_now() + grace_ns;

    for ( ;; ) {
        n = atomic_load_explicit(&p->n, memory_order_acquire);

        if (n > HOTFFI_POLLER_MAX) {
            return HOTFFI_DECLINED;
        }

        /* a thread that polled meanwhile is waited for too */
        if (hotffi_pollers_gone(p, n)
            && atomic_load_explicit(&p->n, memory_order_acquire) == n)
        {
            (void) atomic_load_explicit(&p->stops, memory_order_acquire);
            return HOTFFI_OK;
        }

        if (hotffi_spin_now() >= deadline) {
            return HOTFFI_DECLINED;
        }

        (void) nanosleep(&pause, NULL);
    }
}
