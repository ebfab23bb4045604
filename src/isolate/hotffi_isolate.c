/*
 * hotffi_isolate.c -- the worker's side of an isolated runtime: a runtime
 * library (libhotffi_isolate.so) whose calls are served by a helper
 * process running the real runtime library.
 *
 * DESIGN
 * The core does not know about isolation.  resty.hotffi loads this library
 * in place of the runtime's, with the runtime's library, cfg and the
 * isolation options as its cfg (hotffi_iso_conf.h).  To the core it is a
 * runtime like any other: it polls tasks and answers them.  Three threads
 * of ours, all with every signal blocked (signals are the event loop's):
 *
 *   sender      polls the core's queue, copies each request into the
 *               request ring of the current helper (one producer);
 *   receiver    one per helper: takes answers from the answer ring (one
 *               consumer) and responds to the core's tasks;
 *   supervisor  starts the helper (hotffi_iso_proc.c), watches it through
 *               its pidfd, kills it when stuck, fails the calls it held
 *               when it ends, restarts it with backoff or marks the
 *               runtime failed after a crash loop.
 *
 * Every core task the sender has taken and sent is in the slot table, by
 * the id its request carries, until the receiver (an answer), the
 * supervisor (the helper ended, or the caller gave up) or the sender (the
 * put failed) removes it under mtx: whoever removes it answers it, once.
 * A task's owner is the core's rule (ours from poll to respond); between
 * our threads it passes through the table, under mtx.
 *
 * A helper's mapping and rings (iso->proc) are the supervisor's: it frees
 * them only after the sender stopped using them (iso->sending, under mtx)
 * and the receiver was joined.
 *
 * libffi_init() (on the core's init thread) returns only once the first
 * helper's libffi_init() did, with its result, so that a load fails and a
 * reload rolls back as in process; the sender starts after that.  The
 * state handed over crosses in the mapping (to the first helper) and in
 * the answer ring (from a retiring one: libffi_retire()).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "hotffi.h"
#include "hotffi_iso_proc.h"


/*
 * how long the receiver spins on an empty answer ring before it sleeps:
 * not at all, measured on a loaded two-CPU machine (docs/isolation.md),
 * where a spinning receiver takes the CPU the helper needs
 */
#define HOTFFI_ISO_SPIN_NS     0

/* the first restart's delay; doubled per recent death, up to the max */
#define HOTFFI_ISO_BACKOFF_MS  100
#define HOTFFI_ISO_BACKOFF_MAX 5000

/* cancelled calls answered per supervisor tick at most */
#define HOTFFI_ISO_SWEEP_MAX   256

#define HOTFFI_ISO_MSG_MAX     600

/* the state a helper may hand over at a reload, at most */
#define HOTFFI_ISO_STATE_MAX   (256 << 20)

/* how often the supervisor looks at a helper still in libffi_init() */
#define HOTFFI_ISO_START_TICK_MS  5


typedef struct {
    void      *task;    /* the core's task, or NULL: the slot is free */
    uint64_t   id;
    uint64_t   gen;     /* the helper it was sent to */
} hotffi_iso_slot_t;


typedef struct {
    hotffi_iso_conf_t    conf;
    char               **envp;       /* ours, for every helper's start */
    void                *tq;         /* borrowed: the core's */

    pthread_mutex_t      mtx;
    pthread_cond_t       cond;       /* CLOCK_MONOTONIC; any change below */

    /* under mtx */
    hotffi_iso_proc_t   *proc;       /* the serving helper, or NULL */
    uint64_t             gen;        /* its number */
    int                  sending;    /* the sender uses proc */
    int                  failed;     /* crash loop: calls fail at once */
    int                  ended;      /* the supervisor is gone */
    int                  stop;       /* libffi_fini() began */
    int                  sender_done;
    char                 failed_msg[HOTFFI_ISO_MSG_MAX];
    hotffi_iso_slot_t   *slots;      /* conf.inflight of them */
    uint32_t            *free_slots;
    uint32_t             nfree;
    uint64_t             next_seq;

    /*
     * The first helper's start, under mtx: 0 while its libffi_init() runs,
     * 1 once it serves, -1 when it failed (start_err says why).  init
     * waits for it, so that a load or reload fails when the runtime's
     * init does, and a reload rolls back.
     */
    int                  started;
    char                 start_err[HOTFFI_ISO_ERR_MAX];
    hotffi_iso_start_t   start;      /* the first helper's hand-over */
    char                *start_state; /* ours: start.state's copy */

    /*
     * libffi_retire(), under mtx: retire asks the helper for the state,
     * which arrives in pieces (hotffi_iso_deliver()) into state_out (ours,
     * then the core's); state_end: 0 none yet, 1 all of it, -1 failed.
     */
    int                  retire;
    int                  last_clean; /* the last helper exited cleanly */
    char                *state_out;
    size_t               state_len;
    size_t               state_cap;
    int                  state_end;
    char                 state_err[HOTFFI_ISO_ERR_MAX];

    int                  stopfd;     /* eventfd: wakes the supervisor */
    pthread_t            sender;
    pthread_t            supervisor;
} hotffi_iso_t;


/* thread: any.  An answer of ours: malloc()'ed text, hotffi frees it. */
static void
hotffi_iso_fail_task(void *task, const char *msg)
{
    ngx_http_lua_ffi_respond(task, HOTFFI_TASK_ISOLATION, strdup(msg), 0);
}


/* locks: iso->mtx held */
static void
hotffi_iso_slot_free(hotffi_iso_t *iso, uint32_t i)
{
    iso->slots[i].task = NULL;
    iso->slots[i].id = 0;
    iso->free_slots[iso->nfree++] = i;

    if (iso->nfree == 1) {
        (void) pthread_cond_broadcast(&iso->cond);
    }
}


/* thread: sender.  The core's task: ours until answered, by someone. */
static void
hotffi_iso_send(hotffi_iso_t *iso, void *task, const char *req, int len)
{
    int                 rc;
    uint32_t            i;
    uint64_t            id;
    hotffi_iso_proc_t  *p;
    char                msg[HOTFFI_ISO_MSG_MAX];

    (void) pthread_mutex_lock(&iso->mtx);

    for ( ;; ) {
        if (iso->failed || iso->ended) {
            (void) snprintf(msg, sizeof(msg), "%s", iso->failed
                            ? iso->failed_msg
                            : "the isolated runtime was unloaded");
            (void) pthread_mutex_unlock(&iso->mtx);
            hotffi_iso_fail_task(task, msg);
            return;
        }

        if (iso->proc == NULL || iso->nfree == 0) {
            (void) pthread_cond_wait(&iso->cond, &iso->mtx);
            continue;
        }

        p = iso->proc;

        if ((uint64_t) len > hotffi_ring_max_payload(&p->req)) {
            (void) pthread_mutex_unlock(&iso->mtx);
            (void) snprintf(msg, sizeof(msg), "runtime \"%s\": request of "
                            "%d bytes exceeds its isolation ring (%llu "
                            "bytes; see the ring option)", iso->conf.name,
                            len, (unsigned long long)
                            hotffi_ring_max_payload(&p->req));
            hotffi_iso_fail_task(task, msg);
            return;
        }

        i = iso->free_slots[--iso->nfree];
        id = (++iso->next_seq << HOTFFI_ISO_SLOT_BITS) | i;
        iso->slots[i].task = task;
        iso->slots[i].id = id;
        iso->slots[i].gen = iso->gen;
        iso->sending++;

        (void) pthread_mutex_unlock(&iso->mtx);

        /* the request: the core's (Lua's) bytes, copied into the ring */
        rc = hotffi_ring_put(&p->req, id, 0, req ? 0 : HOTFFI_RING_NULL, req,
                             (uint32_t) len);

        (void) pthread_mutex_lock(&iso->mtx);

        if (--iso->sending == 0) {
            (void) pthread_cond_broadcast(&iso->cond);
        }

        if (rc == HOTFFI_OK) {
            break;
        }

        /* not sent: the task waits for the next helper */
        hotffi_iso_slot_free(iso, i);

        if (rc == HOTFFI_ERROR) {
            hotffi_iso_log("error", "runtime \"%s\": its process corrupted "
                           "the request ring; killing it", iso->conf.name);
            hotffi_iso_proc_kill(p);
        }

        while (iso->proc == p && !iso->failed && !iso->ended) {
            (void) pthread_cond_wait(&iso->cond, &iso->mtx);
        }
    }

    (void) pthread_mutex_unlock(&iso->mtx);
}


/* thread: sender */
static void *
hotffi_iso_sender(void *arg)
{
    int           len;
    char         *req;
    void         *task;
    hotffi_iso_t  *iso = arg;

    while ((task = ngx_http_lua_ffi_task_poll(iso->tq)) != NULL) {
        req = ngx_http_lua_ffi_get_req(task, &len);
        hotffi_iso_send(iso, task, req, len);
    }

    return NULL;
}


/*
 * thread: receiver.  A piece of the state the helper's libffi_retire()
 * handed over, appended to state_out, or why it failed.  The helper is
 * not trusted: pieces that come unasked, after the last, or beyond
 * HOTFFI_ISO_STATE_MAX fail the retire.  payload: ours, freed here.
 */
static void
hotffi_iso_state_piece(hotffi_iso_t *iso, const hotffi_ring_rec_t *rec,
    char *payload)
{
    char    *p;
    size_t   cap;

    (void) pthread_mutex_lock(&iso->mtx);

    if (!iso->retire || iso->state_end != 0) {
        goto done;
    }

    if (rec->rc == HOTFFI_ISO_STATE_FAILED) {
        iso->state_end = -1;
        (void) snprintf(iso->state_err, sizeof(iso->state_err), "%s",
                        payload ? payload : "libffi_retire() failed");
        goto done;
    }

    if ((rec->rc != HOTFFI_ISO_STATE_MORE && rec->rc != HOTFFI_ISO_STATE_LAST)
        || iso->state_len + rec->len > HOTFFI_ISO_STATE_MAX)
    {
        iso->state_end = -1;
        (void) snprintf(iso->state_err, sizeof(iso->state_err),
                        "the state handed over is malformed or over %d MiB",
                        HOTFFI_ISO_STATE_MAX >> 20);
        goto done;
    }

    /* a NULL piece: libffi_retire() handed over no state at all */
    if (!(rec->flags & HOTFFI_RING_NULL)) {
        if (iso->state_len + rec->len + 1 > iso->state_cap) {
            cap = (iso->state_len + rec->len + 1) * 2;
            p = realloc(iso->state_out, cap);
            if (p == NULL) {
                iso->state_end = -1;
                (void) snprintf(iso->state_err, sizeof(iso->state_err),
                                "out of memory for the state handed over");
                goto done;
            }

            iso->state_out = p;
            iso->state_cap = cap;
        }

        memcpy(iso->state_out + iso->state_len, payload, rec->len);
        iso->state_len += rec->len;
    }

    if (rec->rc == HOTFFI_ISO_STATE_LAST) {
        iso->state_end = 1;
    }

done:

    (void) pthread_mutex_unlock(&iso->mtx);
    free(payload);
}


/* thread: receiver.  payload: ours, then hotffi's with the answer. */
static void
hotffi_iso_deliver(hotffi_iso_t *iso, const hotffi_ring_rec_t *rec,
    char *payload)
{
    void      *task;
    uint32_t   i;

    if (rec->id == HOTFFI_ISO_LOG_ID) {
        hotffi_log(iso->tq, rec->rc, payload, (int) rec->len);
        free(payload);
        return;
    }

    if (rec->id == HOTFFI_ISO_STATE_ID) {
        hotffi_iso_state_piece(iso, rec, payload);
        return;
    }

    i = (uint32_t) (rec->id & HOTFFI_ISO_SLOT_MASK);
    task = NULL;

    (void) pthread_mutex_lock(&iso->mtx);

    /* an unknown id: a call given up meanwhile, or a confused helper */
    if (i < iso->conf.inflight && iso->slots[i].task != NULL
        && iso->slots[i].id == rec->id)
    {
        task = iso->slots[i].task;
        hotffi_iso_slot_free(iso, i);
    }

    (void) pthread_mutex_unlock(&iso->mtx);

    if (task == NULL) {
        free(payload);
        return;
    }

    ngx_http_lua_ffi_respond(task, rec->rc, payload, (int) rec->len);
}


typedef struct {
    hotffi_iso_t       *iso;
    hotffi_iso_proc_t  *proc;    /* the supervisor's; valid until joined */
} hotffi_iso_receiver_arg_t;


/* thread: receiver */
static void *
hotffi_iso_receiver(void *a)
{
    int                         rc;
    char                       *payload;
    hotffi_ring_rec_t           rec;
    hotffi_iso_receiver_arg_t  *arg = a;

    for ( ;; ) {
        rc = hotffi_ring_take(&arg->proc->ans, &rec, &payload);

        if (rc == HOTFFI_OK) {
            hotffi_iso_deliver(arg->iso, &rec, payload);
            continue;
        }

        if (rc == HOTFFI_BUSY) {
            (void) usleep(1000);
            continue;
        }

        if (rc == HOTFFI_ERROR) {
            hotffi_iso_log("error", "runtime \"%s\": its process corrupted "
                           "the answer ring; killing it",
                           arg->iso->conf.name);
            hotffi_iso_proc_kill(arg->proc);
            break;
        }

        if (hotffi_ring_wait(&arg->proc->ans, HOTFFI_ISO_SPIN_NS, 100)
            == HOTFFI_DONE)
        {
            break;
        }
    }

    return NULL;
}


/*
 * thread: supervisor.  Answers the calls sent to helper gen with msg (all
 * of them), or, given the helper's cancel table, at most
 * HOTFFI_ISO_SWEEP_MAX of those whose caller gave up, and tells the helper
 * (hotffi_iso_shm.h).  Returns how many slots of gen stay in use.
 */
static uint64_t
hotffi_iso_sweep(hotffi_iso_t *iso, uint64_t gen, _Atomic uint64_t *cancels,
    const char *msg)
{
    int        n, k;
    void      *tasks[HOTFFI_ISO_SWEEP_MAX];
    uint32_t   i;
    uint64_t   used;

    do {
        n = 0;
        used = 0;

        (void) pthread_mutex_lock(&iso->mtx);

        for (i = 0; i < iso->conf.inflight; i++) {
            if (iso->slots[i].task == NULL || iso->slots[i].gen != gen) {
                continue;
            }

            if (n == HOTFFI_ISO_SWEEP_MAX
                || (cancels != NULL
                    && !hotffi_task_cancelled(iso->slots[i].task)))
            {
                used++;
                continue;
            }

            if (cancels != NULL) {
                atomic_store_explicit(&cancels[i], iso->slots[i].id,
                                      memory_order_release);
            }

            tasks[n++] = iso->slots[i].task;
            hotffi_iso_slot_free(iso, i);
        }

        (void) pthread_mutex_unlock(&iso->mtx);

        for (k = 0; k < n; k++) {
            if (cancels != NULL) {
                ngx_http_lua_ffi_respond(tasks[k], HOTFFI_TASK_CANCELLED,
                                         NULL, 0);
            } else {
                hotffi_iso_fail_task(tasks[k], msg);
            }
        }

    } while (cancels == NULL && used > 0);

    return used;
}


/* thread: supervisor.  Milliseconds of monotonic time. */
static uint64_t
hotffi_iso_ms(void)
{
    return hotffi_ring_now() / 1000000;
}


/*
 * thread: supervisor.  Watches helper gen until it ended, and reaps it:
 * why says how it ended.  Kills it when calls wait and it has neither
 * taken nor answered one for stuck_ms, and after an unload's grace.
 * Returns 1 for a clean exit after the unload asked for it.
 */
static int
hotffi_iso_watch(hotffi_iso_t *iso, hotffi_iso_proc_t *p, uint64_t gen,
    char *why, size_t len)
{
    int             stuck, closing, clean, started, retire;
    uint64_t        now, last_change, progress, last_progress, used;
    uint64_t        stop_deadline, tick, buf, begun;
    struct pollfd   fds[2];

    tick = iso->conf.stuck_ms / 4 + 1;
    tick = tick > 100 ? 100 : tick;

    stuck = 0;
    closing = 0;
    stop_deadline = 0;
    last_progress = 0;
    last_change = hotffi_iso_ms();
    begun = last_change;

    for ( ;; ) {
        fds[0].fd = p->pidfd;
        fds[0].events = POLLIN;
        fds[1].fd = iso->stopfd;
        fds[1].events = POLLIN;

        (void) pthread_mutex_lock(&iso->mtx);
        started = iso->started;
        (void) pthread_mutex_unlock(&iso->mtx);

        if (poll(fds, 2, started ? (int) tick : HOTFFI_ISO_START_TICK_MS)
            > 0)
        {
            if (fds[0].revents) {
                break;
            }

            if (fds[1].revents) {
                (void) read(iso->stopfd, &buf, sizeof(buf));
            }
        }

        now = hotffi_iso_ms();

        (void) pthread_mutex_lock(&iso->mtx);
        closing |= iso->stop && iso->sender_done;
        retire = iso->retire;

        if (iso->started == 0
            && atomic_load(&p->shm->state) == HOTFFI_ISO_RUNNING)
        {
            /* libffi_init() waits for this; restarts start afresh */
            iso->started = 1;
            iso->start.state = NULL;
            iso->start.len = 0;
            iso->start.rollback = 0;
            free(iso->start_state);
            iso->start_state = NULL;
            (void) pthread_cond_broadcast(&iso->cond);
        }

        started = iso->started;
        (void) pthread_mutex_unlock(&iso->mtx);

        if (started == 0 && !stuck && now - begun >= iso->conf.init_ms) {
            (void) snprintf(why, len, "libffi_init() still running after "
                            "%llu ms: killed",
                            (unsigned long long) iso->conf.init_ms);
            hotffi_iso_proc_kill(p);
            stuck = 2;
        }

        if (closing && stop_deadline == 0) {
            /* the graceful end: the helper's polls drain, then get NULL;
             * one still in libffi_init() has nothing to finish; a reload
             * asks for the state first */
            atomic_store(&p->shm->retire, (uint32_t) retire);
            hotffi_ring_close(&p->req);
            stop_deadline = now + iso->conf.stuck_ms;

            if (atomic_load(&p->shm->state) != HOTFFI_ISO_RUNNING) {
                hotffi_iso_proc_kill(p);
                stuck = 1;
            }
        }

        if (stop_deadline && now > stop_deadline && !stuck) {
            hotffi_iso_log("warn", "runtime \"%s\": its process did not exit "
                           "within %llu ms of the unload; killing it",
                           iso->conf.name,
                           (unsigned long long) iso->conf.stuck_ms);
            hotffi_iso_proc_kill(p);
            stuck = 1;
        }

        used = hotffi_iso_sweep(iso, gen, hotffi_iso_shm_cancels(p->shm), "");

        /* progress: requests taken and answers written, by the helper */
        progress = hotffi_ring_tail(&p->req) + hotffi_ring_head(&p->ans);

        if (progress != last_progress || used == 0) {
            last_progress = progress;
            last_change = now;

        } else if (!stuck && now - last_change >= iso->conf.stuck_ms) {
            (void) snprintf(why, len, "stuck: %llu call(s) waiting, none "
                            "taken or answered for %llu ms, killed",
                            (unsigned long long) used,
                            (unsigned long long) iso->conf.stuck_ms);
            hotffi_iso_log("error", "runtime \"%s\" process %d %s",
                           iso->conf.name, (int) p->pid, why);
            hotffi_iso_proc_kill(p);
            stuck = 2;
        }
    }

    if (stuck == 2) {
        char  ignored[64];

        (void) hotffi_iso_proc_reap(p, ignored, sizeof(ignored));
        return 0;
    }

    clean = hotffi_iso_proc_reap(p, why, len);
    return clean && closing;
}


/* thread: supervisor.  Sleeps ms, or less when the unload begins. */
static void
hotffi_iso_backoff(hotffi_iso_t *iso, uint64_t ms)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t) (ms / 1000);
    ts.tv_nsec += (long) (ms % 1000) * 1000000;

    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }

    (void) pthread_mutex_lock(&iso->mtx);

    while (!iso->stop) {
        if (pthread_cond_timedwait(&iso->cond, &iso->mtx, &ts) == ETIMEDOUT) {
            break;
        }
    }

    (void) pthread_mutex_unlock(&iso->mtx);
}


/* thread: supervisor */
static void *
hotffi_iso_supervisor(void *arg)
{
    int                         clean, started, stop, recent, k;
    char                        why[HOTFFI_ISO_MSG_MAX - 100];
    char                        msg[HOTFFI_ISO_MSG_MAX];
    uint64_t                    now, gen = 0, delay;
    uint64_t                   *deaths;
    pthread_t                   receiver;
    hotffi_iso_t               *iso = arg;
    hotffi_iso_proc_t           proc;
    hotffi_iso_receiver_arg_t   rarg;

    /* the times of the last conf.restarts deaths, a ring */
    deaths = calloc(iso->conf.restarts, sizeof(uint64_t));
    k = 0;

    for ( ;; ) {
        clean = 0;
        started = 0;

        if (deaths == NULL) {
            (void) snprintf(why, sizeof(why), "out of memory");

        } else if (hotffi_iso_proc_start(&proc, &iso->conf, &iso->start,
                                         iso->envp, why, sizeof(why))
                   == HOTFFI_OK)
        {
            rarg.iso = iso;
            rarg.proc = &proc;

            if (pthread_create(&receiver, NULL, hotffi_iso_receiver, &rarg)
                != 0)
            {
                hotffi_iso_proc_kill(&proc);
                (void) hotffi_iso_proc_reap(&proc, msg, sizeof(msg));
                hotffi_iso_proc_free(&proc);
                (void) snprintf(why, sizeof(why), "pthread_create() failed");

            } else {
                started = 1;

                (void) pthread_mutex_lock(&iso->mtx);
                gen = ++iso->gen;
                iso->proc = &proc;
                (void) pthread_cond_broadcast(&iso->cond);
                (void) pthread_mutex_unlock(&iso->mtx);

                clean = hotffi_iso_watch(iso, &proc, gen, why, sizeof(why));

                (void) pthread_mutex_lock(&iso->mtx);
                iso->proc = NULL;
                (void) pthread_mutex_unlock(&iso->mtx);

                /* wakes the sender (its put fails) and the receiver (it
                 * ends once it took what the helper wrote before) */
                hotffi_ring_close(&proc.req);
                hotffi_ring_close(&proc.ans);

                (void) pthread_mutex_lock(&iso->mtx);
                while (iso->sending) {
                    (void) pthread_cond_wait(&iso->cond, &iso->mtx);
                }
                (void) pthread_mutex_unlock(&iso->mtx);

                (void) pthread_join(receiver, NULL);
            }
        }

        (void) pthread_mutex_lock(&iso->mtx);
        stop = iso->stop;
        iso->last_clean = clean;

        if (iso->started == 0) {
            /* the first start failed: the load (or reload) fails with it,
             * nothing is restarted */
            iso->started = -1;

            if (started
                && atomic_load(&proc.shm->state) == HOTFFI_ISO_INIT_FAILED)
            {
                (void) snprintf(iso->start_err, sizeof(iso->start_err),
                                "%.*s", (int) sizeof(iso->start_err) - 1,
                                proc.shm->init_err);
            } else {
                (void) snprintf(iso->start_err, sizeof(iso->start_err),
                                "its process ended in libffi_init(): %s",
                                why);
            }

            (void) pthread_cond_broadcast(&iso->cond);
            (void) pthread_mutex_unlock(&iso->mtx);

            if (started) {
                hotffi_iso_proc_free(&proc);
            }

            break;
        }

        (void) pthread_mutex_unlock(&iso->mtx);

        now = hotffi_iso_ms();
        recent = 0;

        if (!stop && deaths != NULL) {
            deaths[k] = now;
            k = (k + 1) % (int) iso->conf.restarts;

            for (unsigned j = 0; j < iso->conf.restarts; j++) {
                recent += deaths[j] && now - deaths[j] < iso->conf.window_ms;
            }
        }

        if (stop) {
            (void) snprintf(msg, sizeof(msg), "runtime \"%s\" was unloaded "
                            "before its process answered: %s",
                            iso->conf.name, clean ? "exited" : why);

        } else if (deaths == NULL || recent >= (int) iso->conf.restarts) {
            (void) snprintf(msg, sizeof(msg), "runtime \"%s\" failed: its "
                            "process died %d times within %llu ms (last: "
                            "%s); not restarted", iso->conf.name, recent,
                            (unsigned long long) iso->conf.window_ms, why);
            hotffi_iso_log("error", "%s", msg);

            (void) pthread_mutex_lock(&iso->mtx);
            iso->failed = 1;
            (void) snprintf(iso->failed_msg, sizeof(iso->failed_msg), "%s",
                            msg);
            (void) pthread_cond_broadcast(&iso->cond);
            (void) pthread_mutex_unlock(&iso->mtx);

        } else {
            (void) snprintf(msg, sizeof(msg), "runtime \"%s\" process died: "
                            "%s; restarting", iso->conf.name, why);
            hotffi_iso_log("error", "%s", msg);
        }

        if (started) {
            (void) hotffi_iso_sweep(iso, gen, NULL, msg);
            hotffi_iso_proc_free(&proc);
        }

        if (stop || deaths == NULL || recent >= (int) iso->conf.restarts) {
            break;
        }

        delay = HOTFFI_ISO_BACKOFF_MS << (recent > 7 ? 6 : recent - 1);
        hotffi_iso_backoff(iso, delay > HOTFFI_ISO_BACKOFF_MAX
                                ? HOTFFI_ISO_BACKOFF_MAX : delay);
    }

    free(deaths);

    (void) pthread_mutex_lock(&iso->mtx);
    iso->ended = 1;
    (void) pthread_cond_broadcast(&iso->cond);
    (void) pthread_mutex_unlock(&iso->mtx);

    return NULL;
}


/* thread: event loop, or a reaper */
static void
hotffi_iso_free(hotffi_iso_t *iso)
{
    if (iso->envp != NULL) {
        hotffi_iso_proc_env_free(iso->envp);
    }

    if (iso->stopfd != -1) {
        (void) close(iso->stopfd);
    }

    (void) pthread_mutex_destroy(&iso->mtx);
    (void) pthread_cond_destroy(&iso->cond);
    free(iso->slots);
    free(iso->free_slots);
    free(iso->start_state);
    free(iso->state_out);
    hotffi_iso_conf_free(&iso->conf);
    free(iso);
}


/*
 * thread: init or a reaper.  Ends the threads libffi_init() started: the
 * stop, then the sender (if it runs), then the supervisor, which ends the
 * helper.
 */
static void
hotffi_iso_end(hotffi_iso_t *iso, int sender)
{
    /* first the stop: a sender waiting for a helper that will not be
     * restarted any more fails its call instead, and polls the NULL */
    (void) pthread_mutex_lock(&iso->mtx);
    iso->stop = 1;
    (void) pthread_cond_broadcast(&iso->cond);
    (void) pthread_mutex_unlock(&iso->mtx);
    (void) eventfd_write(iso->stopfd, 1);

    if (sender) {
        (void) pthread_join(iso->sender, NULL);
    }

    (void) pthread_mutex_lock(&iso->mtx);
    iso->sender_done = 1;
    (void) pthread_mutex_unlock(&iso->mtx);

    (void) eventfd_write(iso->stopfd, 1);
    (void) pthread_join(iso->supervisor, NULL);
}


/*
 * thread: a hotffi init thread.  The runtime's cfg is ours (see
 * hotffi_iso_conf.h).  Returns once the helper's libffi_init() returned 0,
 * or fails with its reason, so that the load or the reload sees the
 * runtime's own result (and a reload rolls back).
 */
int
libffi_init(char *cfg, void *tq)
{
    int                  rc, len;
    uint32_t             i;
    const char          *state;
    sigset_t             all, old;
    hotffi_iso_t        *iso;
    pthread_condattr_t   ca;
    char                 err[512];

    iso = calloc(1, sizeof(hotffi_iso_t));
    if (iso == NULL) {
        return 1;
    }

    iso->tq = tq;
    iso->stopfd = -1;
    (void) pthread_mutex_init(&iso->mtx, NULL);
    (void) pthread_condattr_init(&ca);
    (void) pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    (void) pthread_cond_init(&iso->cond, &ca);
    (void) pthread_condattr_destroy(&ca);

    if (hotffi_iso_conf_parse(&iso->conf, cfg, err, sizeof(err))
        != HOTFFI_OK)
    {
        hotffi_init_error(tq, err);
        hotffi_iso_free(iso);
        return 2;
    }

    iso->envp = hotffi_iso_proc_env();
    iso->slots = calloc(iso->conf.inflight, sizeof(hotffi_iso_slot_t));
    iso->free_slots = calloc(iso->conf.inflight, sizeof(uint32_t));
    iso->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    if (iso->envp == NULL || iso->slots == NULL || iso->free_slots == NULL
        || iso->stopfd == -1)
    {
        hotffi_init_error(tq, "out of memory or file descriptors");
        hotffi_iso_free(iso);
        return 3;
    }

    for (i = 0; i < iso->conf.inflight; i++) {
        iso->free_slots[i] = (uint32_t) (iso->conf.inflight - 1 - i);
    }

    iso->nfree = (uint32_t) iso->conf.inflight;

    /* the version before's state: borrowed during this call only */
    state = hotffi_state(tq, &len);

    if (state != NULL) {
        iso->start_state = malloc(len > 0 ? (size_t) len : 1);
        if (iso->start_state == NULL) {
            hotffi_init_error(tq, "out of memory for the state");
            hotffi_iso_free(iso);
            return 3;
        }

        memcpy(iso->start_state, state, len > 0 ? (size_t) len : 0);
        iso->start.state = iso->start_state;
        iso->start.len = len > 0 ? (size_t) len : 0;
    }

    iso->start.rollback = hotffi_rollback(tq);

    /* our threads take no signal: nginx's handlers run on the event loop */
    (void) sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, &old);

    rc = pthread_create(&iso->supervisor, NULL, hotffi_iso_supervisor, iso);

    if (rc != 0) {
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        hotffi_init_error(tq, "pthread_create() failed");
        hotffi_iso_free(iso);
        return 4;
    }

    (void) pthread_mutex_lock(&iso->mtx);
    while (iso->started == 0) {
        (void) pthread_cond_wait(&iso->cond, &iso->mtx);
    }
    (void) pthread_mutex_unlock(&iso->mtx);

    if (iso->started < 0) {
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        hotffi_iso_end(iso, 0);
        hotffi_init_error(tq, iso->start_err);
        hotffi_iso_free(iso);
        return 5;
    }

    rc = pthread_create(&iso->sender, NULL, hotffi_iso_sender, iso);
    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        hotffi_iso_end(iso, 0);
        hotffi_init_error(tq, "pthread_create() failed");
        hotffi_iso_free(iso);
        return 4;
    }

    /* iso: ours, found again by libffi_fini() */
    hotffi_tq_set_data(tq, iso);
    return 0;
}


/*
 * thread: a hotffi reaper.  The core's stop is delivered: the sender's
 * poll returns NULL once the queue is drained (an unload) or at once (a
 * reload, whose next version gets the calls still queued).  The helper
 * then answers what it holds and exits, or is killed after a grace.
 */
int
libffi_fini(void *tq)
{
    hotffi_iso_t  *iso = hotffi_tq_data(tq);

    if (iso == NULL) {
        return 0;
    }

    hotffi_iso_end(iso, 1);
    hotffi_iso_free(iso);
    return 0;
}


/*
 * thread: a hotffi reaper.  As libffi_fini(), but the helper is asked for
 * the state (its library's libffi_retire(), when it has one), which
 * crosses in the answer ring and is handed to the core; a helper whose
 * retire failed, or that died on the way, fails the reload with why.
 * state: ours (state_out), then the core's.
 */
int
libffi_retire(void *tq, char **state, int *len)
{
    int            rc;
    hotffi_iso_t  *iso = hotffi_tq_data(tq);

    *state = NULL;
    *len = 0;

    if (iso == NULL) {
        return 0;
    }

    (void) pthread_mutex_lock(&iso->mtx);
    iso->retire = 1;
    (void) pthread_mutex_unlock(&iso->mtx);

    hotffi_iso_end(iso, 1);

    rc = 0;

    if (iso->state_end < 0) {
        hotffi_init_error(tq, iso->state_err);
        rc = 1;

    } else if (iso->state_end == 0 && !iso->last_clean && !iso->failed) {
        hotffi_init_error(tq, "its process ended before it handed over "
                              "the state");
        rc = 2;

    } else if (iso->state_end > 0 && iso->state_len <= INT_MAX) {
        *state = iso->state_out;
        *len = (int) iso->state_len;
        iso->state_out = NULL;
    }

    hotffi_iso_free(iso);
    return rc;
}
