/*
 * unit_helpers.h -- what the unit test programs share: a fake host that
 * counts wake-ups and releases and keeps the last log line, the paths of the
 * test runtimes, bounded waits (on the hub's eventfd, on threads), and a
 * watchdog so that a deadlock fails the program instead of hanging make.
 *
 * Include it after every system header: the core's headers make whatever is
 * declared after them hidden, and a hidden declaration of a libc or cmocka
 * function does not link.  Everything here is static: each test program is
 * one translation unit.
 */

#ifndef UNIT_HELPERS_H
#define UNIT_HELPERS_H


#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "hotffi_core.h"
#include "hotffi_call.h"
#include "hotffi_hub.h"
#include "hotffi_port.h"
#include "hotffi_queue.h"
#include "hotffi_runtime.h"
#include "hotffi_version.h"
#include "hotffi_task.h"
#include "hotffi.h"


/* what a test program defines for the runtimes to see (see unit_rt.h) */
#define UNIT_EXPORT      __attribute__((visibility("default")))
#define UNIT_UNUSED      __attribute__((unused))

/* every bounded wait gives up after this long */
#define UNIT_WAIT_MS     5000

/* the whole program is killed after this long: a deadlock must not hang */
#define UNIT_WATCHDOG_S  60


/* ---- time and threads */

static inline int64_t
unit_now_ms(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static inline void
unit_sleep_ms(long ms)
{
    struct timespec  ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
        /* void */
    }
}


/* The threads of this process, as the kernel lists them. */
static inline int
unit_threads(void)
{
    int             n;
    DIR            *dir;
    struct dirent  *de;

    dir = opendir("/proc/self/task");
    assert_non_null(dir);

    n = 0;

    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] != '.') {
            n++;
        }
    }

    (void) closedir(dir);
    return n;
}


/*
 * Waits until the process is back to n threads.  The reaper is detached and
 * runtimes may detach theirs: this is the only proof that none of them can
 * still touch the hub (which hotffi_hub_destroy() requires).
 */
static inline void
unit_wait_threads(int n)
{
    int64_t  end;

    end = unit_now_ms() + UNIT_WAIT_MS;

    while (unit_threads() != n) {
        if (unit_now_ms() > end) {
            fail_msg("%d threads still running, expected %d",
                     unit_threads(), n);
        }

        unit_sleep_ms(1);
    }
}


/* pthread_join() that fails the test instead of hanging it */
static inline void *
unit_join(pthread_t tid, long ms)
{
    int              rc;
    void            *ret;
    struct timespec  ts;

    (void) clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;

    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }

    ret = NULL;
    rc = pthread_timedjoin_np(tid, &ret, &ts);

    if (rc != 0) {
        fail_msg("thread did not end within %ld ms: %s", ms, strerror(rc));
    }

    return ret;
}


/*
 * Called first by every main().  The watchdog turns a deadlock into a failed
 * program.  One thread is started and joined because TSan starts its own
 * background thread with the first pthread_create(): after this, thread
 * counts taken by the tests are stable.
 */
static void *
unit_nop_thread(void *arg)
{
    return arg;
}


static inline void
unit_init(void)
{
    pthread_t  tid;

    (void) alarm(UNIT_WATCHDOG_S);

    if (pthread_create(&tid, NULL, unit_nop_thread, NULL) != 0
        || pthread_join(tid, NULL) != 0)
    {
        fprintf(stderr, "unit_init: cannot start a thread\n");
        exit(1);
    }
}


/* ---- the fake host */

/* A caller waiting for a task: the hub hands it to wake() and release(). */
typedef struct {
    int   woken;
    int   released;
} unit_waiter_t;


typedef struct {
    unsigned   wakes;
    unsigned   releases;
    unsigned   logs;              /* lines, but the audit trail's */
    int        log_level;
    char       log[512];          /* the last of them */
    unsigned   audits;            /* the audit trail's lines */
    char       audit[512];        /* the last of them */
} unit_host_state_t;


static unit_host_state_t  unit_host_state UNIT_UNUSED;


static void
unit_host_wake(void *waiter)
{
    unit_waiter_t  *w = waiter;

    w->woken++;
    unit_host_state.wakes++;
}


static void
unit_host_release(void *waiter)
{
    unit_waiter_t  *w = waiter;

    w->released++;
    unit_host_state.releases++;
}


static void
unit_host_log(void *ctx, int level, const char *msg)
{
    /* one per load, reload and unload (hotffi_audit.h): counted apart */
    if (strncmp(msg, "audit: ", 7) == 0) {
        unit_host_state.audits++;
        (void) snprintf(unit_host_state.audit, sizeof(unit_host_state.audit),
                        "%s", msg);
        return;
    }

    unit_host_state.logs++;
    unit_host_state.log_level = level;
    (void) snprintf(unit_host_state.log, sizeof(unit_host_state.log), "%s",
                    msg);
}


/* A hub whose host is the fake one above, its state reset. */
static inline hotffi_hub_t *
unit_hub_create(void)
{
    const char     *err;
    hotffi_hub_t   *hub;
    hotffi_host_t   host;

    memset(&unit_host_state, 0, sizeof(unit_host_state));
    memset(&host, 0, sizeof(host));

    host.wake = unit_host_wake;
    host.release = unit_host_release;
    host.log = unit_host_log;
    host.log_ctx = NULL;

    err = NULL;
    hub = hotffi_hub_create(&host, &err);

    if (hub == NULL) {
        fail_msg("hotffi_hub_create: %s", err);
    }

    return hub;
}


/* ---- runtime libraries */

/*
 * The directory of the test runtimes: HOTFFI_UNIT_LIBDIR as make sets it,
 * else the program's own directory (they are built side by side), so that
 * a program also runs by hand.
 */
static inline const char *
unit_libdir(void)
{
    char         *slash;
    ssize_t       n;
    const char   *dir;
    static char   self[PATH_MAX], full[PATH_MAX];

    if (full[0]) {
        return full;
    }

    dir = getenv("HOTFFI_UNIT_LIBDIR");

    if (dir == NULL || *dir == '\0') {
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0) {
            return ".";
        }

        self[n] = '\0';
        slash = strrchr(self, '/');
        *slash = '\0';
        dir = self;
    }

    /* absolute: make passes a relative one, and a child may chdir */
    if (realpath(dir, full) == NULL) {
        (void) snprintf(full, sizeof(full), "%s", dir);
    }

    return full;
}


/* The absolute path of the test runtime NAME ("rt_echo"). */
static inline const char *
unit_lib(char *buf, size_t size, const char *name)
{
    int  n;

    n = snprintf(buf, size, "%s/lib%s.so", unit_libdir(), name);

    if (n < 0 || (size_t) n >= size) {
        fail_msg("path of %s too long", name);
    }

    return buf;
}


/* A malloc()'ed copy of n bytes, as a runtime's answer must be. */
static inline char *
unit_dup(const char *bytes, size_t n)
{
    char  *p;

    p = malloc(n ? n : 1);
    assert_non_null(p);
    memcpy(p, bytes, n);

    return p;
}


/* ---- the event loop */

/* 1 when fd is readable within ms (0: right now). */
static inline int
unit_readable(int fd, int ms)
{
    int            n;
    struct pollfd  pfd;

    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;

    do {
        n = poll(&pfd, 1, ms);
    } while (n == -1 && errno == EINTR);

    assert_true(n >= 0);
    return n == 1 && (pfd.revents & POLLIN);
}


/*
 * Runs the event loop -- wait on the hub's eventfd, drain -- until done(data)
 * is true, for UNIT_WAIT_MS at most.
 */
static inline void
unit_drain_until(hotffi_hub_t *hub, int (*done)(void *data), void *data)
{
    int64_t  end;

    end = unit_now_ms() + UNIT_WAIT_MS;

    while (!done(data)) {
        if (unit_now_ms() > end) {
            fail_msg("the event loop waited %d ms in vain", UNIT_WAIT_MS);
        }

        (void) unit_readable(hotffi_hub_fd(hub), 50);
        (void) hotffi_hub_drain(hub);
    }
}


static int UNIT_UNUSED
unit_is_closed(void *data)
{
    hotffi_runtime_t  *rt = data;

    return rt->closed;
}


/* the runtime the hub listed last */
static UNIT_UNUSED hotffi_runtime_t *
unit_first_runtime(hotffi_hub_t *hub)
{
    return hotffi_runtime_of(hotffi_list_first(&hub->runtimes));
}


static int UNIT_UNUSED
unit_no_runtimes(void *data)
{
    hotffi_hub_t  *hub = data;

    return hotffi_list_empty(&hub->runtimes);
}


/*
 * Unloads rt, runs the event loop until its REAPED task was drained and
 * drops the caller's reference.  rt must have a libffi_fini().
 */
static inline void UNIT_UNUSED
unit_close(hotffi_hub_t *hub, hotffi_runtime_t *rt)
{
    hotffi_runtime_unload(rt);
    unit_drain_until(hub, unit_is_closed, rt);
    assert_null(rt->queue);
    hotffi_runtime_unref(rt);
}


/*
 * A load whose start is waited for: the runtime, serving, or NULL with the
 * reason in err and libffi_init()'s rc in *init_rc (when not NULL; 0 when
 * the failure came before it).
 */
static inline hotffi_runtime_t * UNIT_UNUSED
unit_load(hotffi_hub_t *hub, const char *lib, const char *cfg,
    size_t cfg_len, const hotffi_runtime_opts_t *opts, int *init_rc,
    char *err, size_t errlen)
{
    hotffi_runtime_t  *rt;

    if (init_rc) {
        *init_rc = 0;
    }

    rt = hotffi_runtime_load_start(hub, lib, cfg, cfg_len, opts, NULL, err,
                                   errlen);
    if (rt == NULL) {
        return NULL;
    }

    assert_int_equal(hotffi_runtime_wait(rt, 0), HOTFFI_OK);

    if (hotffi_runtime_started(rt, init_rc, err, errlen) != HOTFFI_OK) {
        hotffi_runtime_unref(rt);
        return NULL;
    }

    return rt;
}


/* ---- hooks the test runtimes call (see unit_rt.h) */

UNIT_EXPORT void unit_rt_init_hook(const char *rt, char *cfg, void *tq);
UNIT_EXPORT void unit_rt_fini_hook(const char *rt, void *tq);


#endif /* UNIT_HELPERS_H */
