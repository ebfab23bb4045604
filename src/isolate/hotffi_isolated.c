/*
 * hotffi_isolated.c -- the helper process of an isolated runtime: it loads
 * the runtime's library and serves it the ABI over the shared rings.
 *
 * DESIGN
 * An nginx worker (src/isolate/hotffi_isolate.c) starts this program with
 * a memfd on fd 3 (hotffi_iso_shm.h) and its own pid as argv[2].  The
 * program is linked with -rdynamic: the runtime library, opened with the
 * core's own rules (hotffi_library_open()), resolves the ABI's functions
 * (ngx_http_lua_ffi_task_poll(), get_req(), respond() and hotffi's names)
 * against the ones defined here, so the same unmodified library runs here
 * or in the worker.
 *
 * Threads: main runs libffi_init() (it may block or crash: only this
 * process is lost), then waits for the stop.  The runtime's threads call
 * poll (one at a time takes from the request ring, under req_mtx) and
 * respond (one at a time puts into the answer ring, under ans_mtx).  A
 * task here is a copy: its request was copied out of the ring, so the ring
 * space is free at once and answers may come in any order.
 *
 * Wake-ups: the worker's event loop writes requests and takes answers
 * itself (src/core/hotffi_direct.h).  It sleeps in epoll, so an answer
 * wakes it through its hub's eventfd (HOTFFI_ISO_WAKE_FD), written only
 * when it asked for it (hotffi_ring.h); a poll that finds no request
 * first spins as a runtime thread in the worker would (hotffi_spin.h:
 * the same window, back-off and load check), then sleeps on the futex.
 *
 * The stop: the worker closes the request ring; once it is empty every
 * poll returns NULL, main calls libffi_fini() if the library has one (else
 * waits for the tasks taken to be answered, a few seconds at most) and the
 * process exits.  PR_SET_PDEATHSIG ends it with the worker thread that
 * started it, whatever happens to the worker.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hotffi.h"
#include "hotffi_iso_shm.h"
#include "hotffi_library.h"
#include "hotffi_sched.h"
#include "hotffi_spin.h"


/* malloc() tuning of the helper, see main(): glibc's largest threshold,
 * and twice that kept */
#define HOTFFI_ISOLATED_MMAP       (32 << 20)
#define HOTFFI_ISOLATED_TRIM       (64 << 20)

/* a library without libffi_fini(): wait this long for its answers */
#define HOTFFI_ISOLATED_DRAIN_MS   5000


/* the helper's one task queue: the tq its runtime is given */
typedef struct {
    hotffi_iso_shm_t  *shm;         /* the mapping, for the process's life */
    hotffi_ring_t      req;         /* consumed under req_mtx */
    hotffi_ring_t      ans;         /* produced under ans_mtx */
    pthread_mutex_t    req_mtx;
    pthread_mutex_t    ans_mtx;
    pthread_mutex_t    stop_mtx;
    pthread_cond_t     stop_cond;
    int                stopped;     /* under stop_mtx and req_mtx */
    _Atomic int64_t    taken;       /* tasks handed out, not answered */
    _Atomic uint64_t   log_dropped; /* hotffi_log() lines the ring refused */
    hotffi_spin_t      spin;        /* the poll's back-off; under req_mtx */
    uint64_t           spin_wait;   /* a hit's wait, ns; under req_mtx */
    void              *data;        /* hotffi_tq_set_data(); the runtime's */
    char               err[HOTFFI_ISO_ERR_MAX];   /* hotffi_init_error() */
} hotffi_isolated_tq_t;


/* one request, from poll() to respond(): the runtime's in between */
typedef struct {
    uint64_t   id;
    char      *req;     /* malloc()'ed by the ring, freed at respond() */
    int        len;
} hotffi_isolated_task_t;


static hotffi_isolated_tq_t  hotffi_isolated_tq;


/* thread: any.  The ring was corrupted: nothing more can be trusted. */
static void
hotffi_isolated_corrupt(const char *which)
{
    (void) fprintf(stderr, "hotffi-isolated[%d]: the %s ring is corrupt\n",
                   (int) getpid(), which);
    _exit(4);
}


/* thread: runtime.  locks: tq->req_mtx held */
static void
hotffi_isolated_stop(hotffi_isolated_tq_t *tq)
{
    if (tq->stopped) {
        return;
    }

    (void) pthread_mutex_lock(&tq->stop_mtx);
    tq->stopped = 1;
    (void) pthread_cond_broadcast(&tq->stop_cond);
    (void) pthread_mutex_unlock(&tq->stop_mtx);
}


/*
 * thread: runtime.  locks: tq->req_mtx held.  Watches the request ring
 * for the poll window (hotffi_spin.h), unless the machine is busy or
 * recent spins missed; ends early when a request (or the close) came.
 * The thread may park next: its scheduling policy first (hotffi_sched.h).
 */
static void
hotffi_isolated_spin(hotffi_isolated_tq_t *tq)
{
    int       busy;
    uint64_t  window, start, now, yield;

    /* no task: the thread spins, or parks under the policy set here; the
     * load is sampled only when one of the two needs it */
    window = hotffi_spin_poll_for();
    busy = window != 0 || hotffi_sched_batch() ? hotffi_spin_busy() : 1;
    hotffi_sched_poller(hotffi_spin_crowded());

    if (window == 0 || busy || !hotffi_spin_want(&tq->spin)) {
        return;
    }

    start = hotffi_spin_now();
    now = start;
    yield = hotffi_spin_yield_after(tq->spin_wait);

    while (!hotffi_ring_ready(&tq->req)) {
        now = hotffi_spin_now();

        if (now - start >= window) {
            hotffi_spin_record(&tq->spin, 0, now - start);
            return;
        }

        hotffi_spin_pause(now - start, yield);
    }

    hotffi_spin_record(&tq->spin, 1, now - start);
    tq->spin_wait = hotffi_spin_average(tq->spin_wait, now - start);
}


/*
 * thread: runtime.  locks: tq->req_mtx held.  Takes one request; block:
 * wait for one (or the stop).  Returns a task the caller owns, or NULL.
 */
static hotffi_isolated_task_t *
hotffi_isolated_take(hotffi_isolated_tq_t *tq, int block)
{
    int                      rc;
    char                    *payload;
    hotffi_ring_rec_t        rec;
    hotffi_isolated_task_t  *t;

    while (!tq->stopped) {
        rc = hotffi_ring_take(&tq->req, &rec, &payload);

        if (rc == HOTFFI_OK) {
            t = malloc(sizeof(hotffi_isolated_task_t));
            if (t == NULL) {
                /* the request is lost: answer it as failed */
                free(payload);
                (void) pthread_mutex_lock(&tq->ans_mtx);
                (void) hotffi_ring_put(&tq->ans, rec.id, 1, HOTFFI_RING_NULL,
                                       NULL, 0);
                (void) pthread_mutex_unlock(&tq->ans_mtx);
                continue;
            }

            t->id = rec.id;
            t->req = payload;
            t->len = (int) rec.len;
            atomic_fetch_add(&tq->taken, 1);

            /* the worker's turnaround since this thread's last answer,
             * as this side sees it (hotffi_spin.h) */
            hotffi_spin_note_next(0);
            return t;
        }

        if (rc == HOTFFI_ERROR) {
            hotffi_isolated_corrupt("request");
        }

        if (rc == HOTFFI_BUSY) {
            (void) usleep(1000);
            continue;
        }

        if (!block) {
            return NULL;
        }

        /*
         * The spin ends early on a request or on the close; either way
         * the wait below returns at once, and it alone tells the two
         * apart (a closed ring, drained, is the stop: going round again
         * would spin on the close for ever).
         */
        hotffi_isolated_spin(tq);

        if (hotffi_ring_wait(&tq->req, 0, 100) == HOTFFI_DONE) {
            hotffi_isolated_stop(tq);
        }
    }

    return NULL;
}


/* ---- the ABI, as the runtime library sees it -------------------------- */

/* thread: runtime */
void *
ngx_http_lua_ffi_task_poll(void *p)
{
    hotffi_isolated_tq_t    *tq = p;
    hotffi_isolated_task_t  *t;

    (void) pthread_mutex_lock(&tq->req_mtx);
    t = hotffi_isolated_take(tq, 1);
    (void) pthread_mutex_unlock(&tq->req_mtx);

    return t;
}


/* thread: runtime */
int
hotffi_task_poll_batch(void *p, void **tasks, int max)
{
    int                      n;
    hotffi_isolated_tq_t    *tq = p;
    hotffi_isolated_task_t  *t;

    if (max < 1) {
        return 0;
    }

    (void) pthread_mutex_lock(&tq->req_mtx);

    for (n = 0; n < max; n++) {
        t = hotffi_isolated_take(tq, n == 0);
        if (t == NULL) {
            break;
        }

        tasks[n] = t;
    }

    (void) pthread_mutex_unlock(&tq->req_mtx);

    return n;
}


/* thread: the task's owner */
char *
ngx_http_lua_ffi_get_req(void *task, int *len)
{
    hotffi_isolated_task_t  *t = task;

    *len = t->len;
    return t->req;
}


/* thread: the task's owner.  task and rsp: ours from here, freed here. */
void
ngx_http_lua_ffi_respond(void *task, int rc, char *rsp, int rsp_len)
{
    int                      put;
    size_t                   len;
    hotffi_isolated_tq_t    *tq = &hotffi_isolated_tq;
    hotffi_isolated_task_t  *t = task;
    char                     msg[128];

    len = 0;

    if (rsp != NULL) {
        len = rsp_len > 0 ? (size_t) rsp_len : strlen(rsp);
    }

    (void) pthread_mutex_lock(&tq->ans_mtx);

    if (len > hotffi_ring_max_payload(&tq->ans)) {
        (void) snprintf(msg, sizeof(msg), "answer of %zu bytes exceeds the "
                        "isolated runtime's ring (%llu bytes)", len,
                        (unsigned long long) hotffi_ring_max_payload(&tq->ans));
        put = hotffi_ring_put(&tq->ans, t->id, HOTFFI_TASK_ISOLATION, 0, msg,
                              (uint32_t) strlen(msg));

    } else {
        put = hotffi_ring_put(&tq->ans, t->id, rc,
                              rsp == NULL ? HOTFFI_RING_NULL : 0, rsp,
                              (uint32_t) len);
    }

    (void) pthread_mutex_unlock(&tq->ans_mtx);

    if (put == HOTFFI_ERROR) {
        hotffi_isolated_corrupt("answer");
    }

    /* the next poll's spin window grows with it (hotffi_spin.h) */
    hotffi_spin_note_answer(len);

    free(rsp);
    free(t->req);
    free(t);

    atomic_fetch_sub(&tq->taken, 1);
}


/* thread: any */
int
hotffi_abi_version(void)
{
    return HOTFFI_ABI_VERSION;
}


/*
 * thread: the task's owner.  The worker stores the id of a call whose
 * caller gave up in the call's slot (hotffi_iso_shm.h), within a
 * supervisor tick of the give-up.
 */
int
hotffi_task_cancelled(void *task)
{
    uint64_t                 slot;
    hotffi_isolated_tq_t    *tq = &hotffi_isolated_tq;
    hotffi_isolated_task_t  *t = task;

    slot = t->id & HOTFFI_ISO_SLOT_MASK;

    return slot < tq->shm->slots
           && atomic_load_explicit(&hotffi_iso_shm_cancels(tq->shm)[slot],
                                   memory_order_acquire) == t->id;
}


/* thread: main, inside libffi_init() */
void
hotffi_init_error(void *p, const char *msg)
{
    size_t                 len;
    hotffi_isolated_tq_t  *tq = p;

    len = strlen(msg);

    if (len < sizeof(tq->err)) {
        memcpy(tq->err, msg, len + 1);
        return;
    }

    /* keep the end, where a traceback's exception line is */
    memcpy(tq->err, "...", 3);
    memcpy(tq->err + 3, msg + len - (sizeof(tq->err) - 4),
           sizeof(tq->err) - 3);
}


void
hotffi_tq_set_data(void *p, void *data)
{
    ((hotffi_isolated_tq_t *) p)->data = data;
}


void *
hotffi_tq_data(void *p)
{
    return ((hotffi_isolated_tq_t *) p)->data;
}


/*
 * thread: main, inside libffi_init().  The state the worker copied into
 * the mapping: what the version before handed over, for this process's
 * first start only (a restart after a crash starts without it).
 */
const char *
hotffi_state(void *p, int *len)
{
    hotffi_iso_shm_t  *shm = hotffi_isolated_tq.shm;

    if (shm == NULL || !shm->has_state || shm->state_len > INT_MAX) {
        *len = 0;
        return NULL;
    }

    *len = (int) shm->state_len;
    return hotffi_iso_shm_state(shm);
}


int
hotffi_rollback(void *p)
{
    hotffi_iso_shm_t  *shm = hotffi_isolated_tq.shm;

    return shm != NULL && shm->rollback;
}


/*
 * thread: any.  The line crosses to the worker in the answer ring
 * (HOTFFI_ISO_LOG_ID), whose receiver hands it to the worker's own
 * hotffi_log(): the same levels, filter, rotation and bounds as in
 * process.  A full ring drops the line rather than wait; the next line
 * that fits says how many were dropped.
 */
void
hotffi_log(void *p, int level, const char *msg, int len)
{
    int                    rc;
    char                   note[96];
    size_t                 n;
    uint64_t               dropped;
    hotffi_isolated_tq_t  *tq = &hotffi_isolated_tq;

    if (msg == NULL || tq->shm == NULL) {
        return;
    }

    n = len > 0 ? (size_t) len : strlen(msg);

    /* the worker's hotffi_log() cuts long lines; the ring must take it */
    if (n > hotffi_ring_max_payload(&tq->ans)) {
        n = hotffi_ring_max_payload(&tq->ans);
    }

    (void) pthread_mutex_lock(&tq->ans_mtx);

    dropped = atomic_exchange(&tq->log_dropped, 0);
    rc = HOTFFI_OK;

    if (dropped) {
        (void) snprintf(note, sizeof(note), "%llu log lines of the isolated "
                        "process dropped: its answer ring was full",
                        (unsigned long long) dropped);
        rc = hotffi_ring_try_put(&tq->ans, HOTFFI_ISO_LOG_ID,
                                 HOTFFI_LEVEL_WARN, 0, note,
                                 (uint32_t) strlen(note));
    }

    if (rc == HOTFFI_OK) {
        rc = hotffi_ring_try_put(&tq->ans, HOTFFI_ISO_LOG_ID, level, 0, msg,
                                 (uint32_t) n);
        dropped = 0;
    }

    (void) pthread_mutex_unlock(&tq->ans_mtx);

    if (rc == HOTFFI_ERROR) {
        hotffi_isolated_corrupt("answer");
    }

    if (rc != HOTFFI_OK) {
        atomic_fetch_add(&tq->log_dropped, dropped + 1);
    }
}


/*
 * Shared dicts live in the worker's shared memory, which an exec()'ed
 * helper does not map: an isolated runtime has none (docs/isolation.md).
 */
void *
hotffi_shdict(const char *name)
{
    return NULL;
}


static int
hotffi_isolated_no_shdict(char *err, size_t err_len)
{
    if (err != NULL && err_len > 0) {
        (void) snprintf(err, err_len, "no shared dicts in an isolated "
                        "runtime");
    }

    return HOTFFI_SHDICT_ERROR;
}


int
hotffi_shdict_get(void *dict, const char *key, size_t key_len, int stale,
    hotffi_shdict_value_t *value, char *err, size_t err_len)
{
    return hotffi_isolated_no_shdict(err, err_len);
}


int
hotffi_shdict_store(void *dict, int op, const char *key, size_t key_len,
    const hotffi_shdict_value_t *value, double exptime, int *forcible,
    char *err, size_t err_len)
{
    return hotffi_isolated_no_shdict(err, err_len);
}


int
hotffi_shdict_incr(void *dict, const char *key, size_t key_len, double by,
    double *value, int has_init, double init, double init_ttl, int *forcible,
    char *err, size_t err_len)
{
    return hotffi_isolated_no_shdict(err, err_len);
}


double
hotffi_shdict_ttl(void *dict, const char *key, size_t key_len)
{
    return -1;
}


/* ---- the process ------------------------------------------------------ */

/* thread: main.  The worker's limits, before the library is mapped. */
static int
hotffi_isolated_limits(const hotffi_iso_shm_t *shm)
{
    struct rlimit  rl;

    if (shm->memory) {
        rl.rlim_cur = rl.rlim_max = shm->memory;
        if (setrlimit(RLIMIT_AS, &rl) != 0) {
            return -1;
        }
    }

    if (shm->cpu) {
        /* SIGXCPU at the limit, SIGKILL a second later */
        rl.rlim_cur = shm->cpu;
        rl.rlim_max = shm->cpu + 1;
        if (setrlimit(RLIMIT_CPU, &rl) != 0) {
            return -1;
        }
    }

    if (shm->files) {
        rl.rlim_cur = rl.rlim_max = shm->files;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            return -1;
        }
    }

    return 0;
}


/* thread: main.  Says why the start failed, for the worker, and exits. */
static void hotffi_isolated_fail(hotffi_iso_shm_t *shm, const char *why)
    __attribute__((noreturn));

static void
hotffi_isolated_fail(hotffi_iso_shm_t *shm, const char *why)
{
    if (why != shm->init_err) {
        (void) snprintf(shm->init_err, sizeof(shm->init_err), "%s", why);
    }

    atomic_store(&shm->state, HOTFFI_ISO_INIT_FAILED);
    _exit(HOTFFI_ISO_EXIT_INIT);
}


/*
 * thread: main, after the stop.  The worker asked for the state: the
 * library's libffi_retire() gives it, and it crosses in the answer ring in
 * pieces, or the reason it failed does.
 */
static void
hotffi_isolated_retire(hotffi_isolated_tq_t *tq, hotffi_library_t *lib)
{
    int        rc, len;
    char      *state, msg[HOTFFI_ISO_ERR_MAX + 64];
    uint64_t   off, max, n;

    state = NULL;
    len = 0;
    rc = lib->retire(tq, &state, &len);

    /* threads the library left may still log: the ring has one producer */
    (void) pthread_mutex_lock(&tq->ans_mtx);

    if (rc != 0) {
        n = (uint64_t) snprintf(msg, sizeof(msg), "libffi_retire() failed: "
                                "rc %d%s%s", rc, tq->err[0] ? ": " : "",
                                tq->err);
        max = hotffi_ring_max_payload(&tq->ans);
        (void) hotffi_ring_put(&tq->ans, HOTFFI_ISO_STATE_ID,
                               HOTFFI_ISO_STATE_FAILED, 0, msg,
                               (uint32_t) (n < max ? n : max));
        (void) pthread_mutex_unlock(&tq->ans_mtx);
        free(state);
        return;
    }

    if (state == NULL || len < 0) {
        len = 0;
    }

    max = hotffi_ring_max_payload(&tq->ans);
    off = 0;

    /* one piece at least: an empty state is a state, not none */
    do {
        n = (uint64_t) len - off < max ? (uint64_t) len - off : max;

        if (hotffi_ring_put(&tq->ans, HOTFFI_ISO_STATE_ID,
                            off + n == (uint64_t) len ? HOTFFI_ISO_STATE_LAST
                                                      : HOTFFI_ISO_STATE_MORE,
                            state == NULL ? HOTFFI_RING_NULL : 0,
                            state == NULL ? NULL : state + off, (uint32_t) n)
            != HOTFFI_OK)
        {
            break;
        }

        off += n;

    } while (off < (uint64_t) len);

    (void) pthread_mutex_unlock(&tq->ans_mtx);
    free(state);
}


/* thread: main.  Waits until the tasks taken are answered, ms at most. */
static void
hotffi_isolated_drain(hotffi_isolated_tq_t *tq, int ms)
{
    while (atomic_load(&tq->taken) > 0 && ms > 0) {
        (void) usleep(10000);
        ms -= 10;
    }
}


int
main(int argc, char **argv)
{
    int                    rc;
    char                  *cfg, err[512];
    sigset_t               all;
    struct stat            st;
    hotffi_iso_shm_t      *shm;
    hotffi_library_t       lib;
    hotffi_isolated_tq_t  *tq = &hotffi_isolated_tq;

    /*
     * Each request is copied out of the ring into a malloc()'ed buffer,
     * freed at respond() (often on another thread than the one that took
     * it).  With glibc's defaults a free of 100 KiB in a thread's arena
     * gave the pages back (madvise(), 77 us measured) and the next call
     * faulted them in again: 1.2 ms per 100 KiB echo; a 16 MiB one got
     * a fresh mmap() for the request and for the answer, and faulted
     * 8192 pages in (160 ms per copy on a loaded machine).  Keep up to
     * HOTFFI_ISOLATED_TRIM bytes at the top of an arena, and serve
     * requests up to HOTFFI_ISOLATED_MMAP from the arenas.  The cost: a
     * helper that served a large call keeps that memory for the next.
     */
    (void) mallopt(M_MMAP_THRESHOLD, HOTFFI_ISOLATED_MMAP);
    (void) mallopt(M_TRIM_THRESHOLD, HOTFFI_ISOLATED_TRIM);

    /* the worker's thread that started us had its signals blocked */
    (void) sigemptyset(&all);
    (void) sigprocmask(SIG_SETMASK, &all, NULL);

    if (argc != 3) {
        (void) fprintf(stderr, "usage: hotffi-isolated FD WORKER_PID "
                       "(started by hotffi, not by hand)\n");
        return 2;
    }

    /* die with the worker; and if it is gone already, do not start */
    (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != (pid_t) atol(argv[2])) {
        return 2;
    }

    if (fstat(HOTFFI_ISO_FD, &st) != 0
        || (uint64_t) st.st_size < sizeof(hotffi_iso_shm_t))
    {
        return 2;
    }

    /* the worker allocated the pages: map them all now (hotffi_iso_proc.c) */
    shm = mmap(NULL, (size_t) st.st_size, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_POPULATE,
               HOTFFI_ISO_FD, 0);
    if (shm == MAP_FAILED) {
        return 2;
    }

    (void) close(HOTFFI_ISO_FD);

    if (hotffi_iso_shm_check(shm, (uint64_t) st.st_size) != HOTFFI_OK) {
        return 2;
    }

    tq->shm = shm;
    hotffi_iso_shm_rings(shm, &tq->req, &tq->ans, 0);

    /* the worker's event loop sleeps in epoll: wake it by its eventfd,
     * for an answer and for room in the request ring */
    if (shm->has_wake) {
        hotffi_ring_set_wake_fd(&tq->req, HOTFFI_ISO_WAKE_FD);
        hotffi_ring_set_wake_fd(&tq->ans, HOTFFI_ISO_WAKE_FD);
    }
    (void) pthread_mutex_init(&tq->req_mtx, NULL);
    (void) pthread_mutex_init(&tq->ans_mtx, NULL);
    (void) pthread_mutex_init(&tq->stop_mtx, NULL);
    (void) pthread_cond_init(&tq->stop_cond, NULL);

    if (hotffi_isolated_limits(shm) != 0) {
        (void) snprintf(err, sizeof(err), "setrlimit() failed: %s",
                        strerror(errno));
        hotffi_isolated_fail(shm, err);
    }

    if (hotffi_library_open(&lib, shm->lib, 1, err, sizeof(err))
        != HOTFFI_OK)
    {
        hotffi_isolated_fail(shm, err);
    }

    cfg = NULL;

    if (shm->has_cfg) {
        cfg = malloc(shm->cfg_len + 1);
        if (cfg == NULL) {
            hotffi_isolated_fail(shm, "out of memory for the cfg");
        }

        memcpy(cfg, hotffi_iso_shm_cfg(shm), shm->cfg_len);
        cfg[shm->cfg_len] = '\0';
    }

    rc = lib.init(cfg, tq);
    free(cfg);

    if (rc != 0) {
        (void) snprintf(shm->init_err, sizeof(shm->init_err),
                        "libffi_init() failed: rc %d%s%.4000s", rc,
                        tq->err[0] ? ": " : "", tq->err);
        hotffi_isolated_fail(shm, shm->init_err);
    }

    atomic_store(&shm->state, HOTFFI_ISO_RUNNING);

    (void) pthread_mutex_lock(&tq->stop_mtx);
    while (!tq->stopped) {
        (void) pthread_cond_wait(&tq->stop_cond, &tq->stop_mtx);
    }
    (void) pthread_mutex_unlock(&tq->stop_mtx);

    if (shm->retire && lib.retire != NULL) {
        hotffi_isolated_retire(tq, &lib);

    } else if (lib.fini != NULL) {
        (void) lib.fini(tq);

    } else {
        hotffi_isolated_drain(tq, HOTFFI_ISOLATED_DRAIN_MS);
    }

    /* threads the library left running end with the process */
    _exit(0);
}
