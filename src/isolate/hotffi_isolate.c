/*
 * hotffi_isolate.c -- the worker's side of an isolated runtime: a runtime
 * library (libhotffi_isolate.so) whose calls are served by a helper
 * process running the real runtime library.
 *
 * DESIGN
 * The core does not know about isolation.  resty.hotffi loads this library
 * in place of the runtime's, with the runtime's library, cfg and the
 * isolation options as its cfg (hotffi_iso_conf.h).  To the core it is a
 * runtime like any other, except that its port is a direct one
 * (src/core/hotffi_direct.h): no thread of ours polls it, the event loop
 * itself hands each call over and takes each answer:
 *
 *   pump        event loop, after a push (and the supervisor, for a helper
 *               just started and on each tick): takes from the core's
 *               queue the calls that fit the request ring and the free
 *               slots, copies each into the ring, and wakes the helper
 *               (a futex) if it sleeps; what does not fit stays queued;
 *   take        event loop, when the hub's eventfd (which the helper
 *               writes) is readable or while a caller spins: takes the
 *               answers, log lines and state pieces from the answer ring
 *               and answers the core's tasks;
 *   supervisor  our one thread, every signal blocked (signals are the
 *               event loop's): starts the helper (hotffi_iso_proc.c),
 *               watches it through its pidfd, kills it when stuck, fails
 *               the calls it held when it ends, restarts it with backoff
 *               or marks the runtime failed after a crash loop, and tells
 *               the helper of calls whose caller gave up.
 *
 * io is the rings' lock: the one producer of requests and the one consumer
 * of answers of this process are whoever holds it (the event loop, or the
 * supervisor), and proc, the helper whose rings those are, changes only
 * under it: the supervisor frees a helper's mapping after it set proc to
 * NULL under io, so the event loop never touches a freed ring.  io is held
 * for copies only, never across a wait.
 *
 * Every core task sent is in the slot table, by the id its request carries,
 * until a take (an answer), the supervisor (the helper ended, or the caller
 * gave up) or the pump (the put failed) removes it under mtx: whoever
 * removes it answers it, once.  A task's owner is the core's rule (ours
 * from poll to respond); between our threads it passes through the table,
 * under mtx.  Locks nest io, then the core's queue, then mtx.
 *
 * libffi_init() (on the core's init thread) returns only once the first
 * helper's libffi_init() did, with its result, so that a load fails and a
 * reload rolls back as in process.  The state handed over crosses in the
 * mapping (to the first helper) and in the answer ring (from a retiring
 * one: libffi_retire()).
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
#include "hotffi_direct.h"
#include "hotffi_iso_proc.h"


/* calls one pump takes from the core's queue at a time */
#define HOTFFI_ISO_PUMP_MAX    64

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

    int                  wake_fd;    /* borrowed: the hub's eventfd */

    /* the rings' lock (see DESIGN) */
    pthread_mutex_t      io;
    int                  closing;    /* under io: the end began, send no
                                        more */
    int                  bad;        /* under io: proc corrupted a ring */
    int                  short_of_room;  /* under io: calls wait for room
                                            in the request ring */

    pthread_mutex_t      mtx;
    pthread_cond_t       cond;       /* CLOCK_MONOTONIC; started, stop */

    /* under mtx; proc and gen are written under io too */
    hotffi_iso_proc_t   *proc;       /* the serving helper, or NULL */
    uint64_t             gen;        /* its number */
    int                  failed;     /* crash loop: calls fail at once */
    int                  ended;      /* the supervisor is gone */
    int                  stop;       /* libffi_fini() began */
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
}


/* what a pump may still send: the queue's fits sees it (hotffi_direct.h) */
typedef struct {
    int        failed;     /* every call fails at once */
    uint32_t   slots;      /* free slots */
    uint64_t   space;      /* free bytes of the request ring */
    uint64_t   max;        /* the largest payload */
    uint64_t   short_of;   /* the first record the ring had no room for */
} hotffi_iso_budget_t;


/* thread: a pump's; locks: the core's queue lock held */
static int
hotffi_iso_fits(void *arg, int len)
{
    uint64_t              need;
    hotffi_iso_budget_t  *b = arg;

    /* taken to fail at once: a failed runtime, a request over the ring */
    if (b->failed || (uint64_t) len > b->max) {
        return 1;
    }

    if (b->slots == 0) {
        return 0;
    }

    need = hotffi_ring_need((uint32_t) len);

    if (need > b->space) {
        b->short_of = need;
        return 0;
    }

    b->slots--;
    b->space -= need;
    return 1;
}


/*
 * thread: event loop or supervisor; locks: iso->io held.  Sends one task
 * the pump took (the core's: ours until answered, by someone).
 */
static void
hotffi_iso_send(hotffi_iso_t *iso, hotffi_iso_proc_t *p, void *task,
    const hotffi_iso_budget_t *b, const char *failed_msg)
{
    int        rc, len;
    char      *req;
    uint32_t   i;
    uint64_t   id;
    char       msg[HOTFFI_ISO_MSG_MAX];

    req = ngx_http_lua_ffi_get_req(task, &len);

    if (b->failed) {
        hotffi_iso_fail_task(task, failed_msg);
        return;
    }

    if ((uint64_t) len > b->max) {
        (void) snprintf(msg, sizeof(msg), "runtime \"%s\": request of "
                        "%d bytes exceeds its isolation ring (%llu "
                        "bytes; see the ring option)", iso->conf.name,
                        len, (unsigned long long) b->max);
        hotffi_iso_fail_task(task, msg);
        return;
    }

    /* fits counted this slot: one is free */
    (void) pthread_mutex_lock(&iso->mtx);
    i = iso->free_slots[--iso->nfree];
    id = (++iso->next_seq << HOTFFI_ISO_SLOT_BITS) | i;
    iso->slots[i].task = task;
    iso->slots[i].id = id;
    iso->slots[i].gen = iso->gen;
    (void) pthread_mutex_unlock(&iso->mtx);

    /* the request: the core's (Lua's) bytes, copied into the ring, whose
     * room fits counted; only a corrupt ring or a closed one refuses */
    rc = hotffi_ring_try_put(&p->req, id, 0, req ? 0 : HOTFFI_RING_NULL, req,
                             (uint32_t) len);

    if (rc == HOTFFI_OK) {
        return;
    }

    (void) pthread_mutex_lock(&iso->mtx);
    hotffi_iso_slot_free(iso, i);
    (void) pthread_mutex_unlock(&iso->mtx);

    if (rc == HOTFFI_ERROR && !iso->bad) {
        iso->bad = 1;
        hotffi_iso_log("error", "runtime \"%s\": its process corrupted "
                       "the request ring; killing it", iso->conf.name);
        hotffi_iso_proc_kill(p);
    }

    /* taken, and no other helper may get it now: it failed with this one */
    (void) snprintf(msg, sizeof(msg), "runtime \"%s\" process died: its "
                    "request ring was refused", iso->conf.name);
    hotffi_iso_fail_task(task, msg);
}


/*
 * thread: event loop or supervisor; locks: iso->io held.  Sends what the
 * core's queue holds, as much as fits; when the ring is short of room,
 * asks the helper to wake the event loop once it made some.  Returns 1
 * when the helper slept and was woken.
 */
static int
hotffi_iso_pump_locked(hotffi_iso_t *iso)
{
    int                   n, k, woke, more;
    void                 *tasks[HOTFFI_ISO_PUMP_MAX];
    hotffi_iso_proc_t    *p;
    hotffi_iso_budget_t   b;
    char                  msg[HOTFFI_ISO_MSG_MAX];

    woke = 0;
    p = iso->proc;
    iso->short_of_room = 0;

    do {
        memset(&b, 0, sizeof(b));

        (void) pthread_mutex_lock(&iso->mtx);
        b.failed = iso->failed || iso->ended;
        b.slots = iso->nfree;

        if (b.failed) {
            (void) snprintf(msg, sizeof(msg), "%s", iso->failed
                            ? iso->failed_msg
                            : "the isolated runtime was unloaded");
        }

        (void) pthread_mutex_unlock(&iso->mtx);

        if (!b.failed) {
            if (p == NULL || iso->closing || iso->bad) {
                /* queued calls wait for the next helper */
                return woke;
            }

            b.space = hotffi_ring_space(&p->req);
            b.max = hotffi_ring_max_payload(&p->req);

            if (atomic_load_explicit(&p->req.shm->data_waiting,
                                     memory_order_relaxed))
            {
                woke = 1;
            }
        }

        n = hotffi_direct_poll(iso->tq, tasks, HOTFFI_ISO_PUMP_MAX,
                               hotffi_iso_fits, &b);

        for (k = 0; k < n; k++) {
            hotffi_iso_send(iso, p, tasks[k], &b, msg);
        }

        more = n == HOTFFI_ISO_PUMP_MAX;

        /* the ring's room stopped us: the helper's next take wakes us,
         * unless the room is there already (look again) */
        if (b.short_of && p != NULL) {
            iso->short_of_room = 1;

            if (hotffi_ring_arm_space(&p->req, b.short_of)) {
                more = 1;
            }
        }

    } while (more);

    return woke;
}


/* thread: event loop (the core's direct port; io is taken here) */
static int
hotffi_iso_pump(void *data)
{
    int            woke;
    hotffi_iso_t  *iso = data;

    (void) pthread_mutex_lock(&iso->io);
    woke = hotffi_iso_pump_locked(iso);
    (void) pthread_mutex_unlock(&iso->io);

    return woke;
}


/*
 * thread: event loop or supervisor.  A piece of the state the helper's
 * libffi_retire() handed over, appended to state_out, or why it failed.
 * The helper is not trusted: pieces that come unasked, after the last,
 * or beyond HOTFFI_ISO_STATE_MAX fail the retire.  payload: ours, freed
 * here.
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


/*
 * thread: event loop (local: inside the core's take) or supervisor;
 * locks: iso->io held.  payload: ours, then hotffi's with the answer.
 */
static void
hotffi_iso_deliver(hotffi_iso_t *iso, const hotffi_ring_rec_t *rec,
    char *payload, int local)
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

    if (local) {
        hotffi_direct_respond(task, rec->rc, payload, (int) rec->len);
        return;
    }

    ngx_http_lua_ffi_respond(task, rec->rc, payload, (int) rec->len);
}


/*
 * thread: event loop (local) or supervisor; locks: iso->io held.  Takes
 * every record the helper wrote; returns how many.
 */
static unsigned
hotffi_iso_take_locked(hotffi_iso_t *iso, int local)
{
    int                 rc;
    char               *payload;
    unsigned            n;
    hotffi_ring_rec_t   rec;
    hotffi_iso_proc_t  *p = iso->proc;

    if (p == NULL || iso->bad) {
        return 0;
    }

    for (n = 0; /* void */; n++) {
        rc = hotffi_ring_take(&p->ans, &rec, &payload);

        if (rc != HOTFFI_OK) {
            break;
        }

        hotffi_iso_deliver(iso, &rec, payload, local);
    }

    if (rc == HOTFFI_ERROR) {
        iso->bad = 1;
        hotffi_iso_log("error", "runtime \"%s\": its process corrupted "
                       "the answer ring; killing it", iso->conf.name);
        hotffi_iso_proc_kill(p);
    }

    /* HOTFFI_BUSY (out of memory): the record stays for the next take */
    return n;
}


/* thread: event loop (the core's direct port; see hotffi_hub.h) */
static unsigned
hotffi_iso_take(void *data, int arm)
{
    unsigned       n, got;
    hotffi_iso_t  *iso = data;

    (void) pthread_mutex_lock(&iso->io);

    n = 0;

    for ( ;; ) {
        got = hotffi_iso_take_locked(iso, 1);
        n += got;

        if (iso->proc == NULL || iso->bad) {
            break;
        }

        if (!arm) {
            /* a caller spins and looks: the helper need not wake us */
            hotffi_ring_disarm_data(&iso->proc->ans);
            break;
        }

        /* what came between the take and the arm is taken now */
        if (!hotffi_ring_arm_data(&iso->proc->ans)) {
            break;
        }

        if (got == 0) {
            /* out of memory for a record: look again at the next loop */
            (void) eventfd_write(iso->wake_fd, 1);
            break;
        }
    }

    /* answers free slots and room, and the helper woke us for room:
     * send what waited for them */
    if (n || iso->short_of_room) {
        (void) hotffi_iso_pump_locked(iso);
    }

    (void) pthread_mutex_unlock(&iso->io);

    return n;
}


static const hotffi_direct_ops_t  hotffi_iso_ops = {
    hotffi_iso_pump,
    hotffi_iso_take
};


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
    ssize_t         got;
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
                /* drains the eventfd; EAGAIN: drained already.  A result
                 * taken, not cast away: glibc's fortified read() wants
                 * it used (_FORTIFY_SOURCE, the Debian build's) */
                got = read(iso->stopfd, &buf, sizeof(buf));
                (void) got;
            }
        }

        now = hotffi_iso_ms();

        (void) pthread_mutex_lock(&iso->mtx);
        closing |= iso->stop;
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
            /* the graceful end: nothing more is sent (the core's queue
             * was drained for an unload, and a reload's next version
             * gets what is queued); the helper's polls drain, then get
             * NULL; one still in libffi_init() has nothing to finish; a
             * reload asks for the state first */
            (void) pthread_mutex_lock(&iso->io);
            iso->closing = 1;
            (void) pthread_mutex_unlock(&iso->io);

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

        /*
         * The backstop of the event loop's own pumps and wake-ups: calls
         * queued that nothing sent yet (a helper that took requests and
         * answered none), answers nobody was woken for (a wake-up lost
         * to a helper killed between its put and its write).  Both
         * cost nothing when there are none.
         */
        (void) pthread_mutex_lock(&iso->io);
        (void) hotffi_iso_pump_locked(iso);

        if (hotffi_ring_head(&p->ans) != hotffi_ring_tail(&p->ans)) {
            (void) eventfd_write(iso->wake_fd, 1);
        }

        (void) pthread_mutex_unlock(&iso->io);

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
    int                  clean, started, stop, recent, k;
    char                 why[HOTFFI_ISO_MSG_MAX - 100];
    char                 msg[HOTFFI_ISO_MSG_MAX];
    uint64_t             now, gen = 0, delay;
    uint64_t            *deaths;
    hotffi_iso_t        *iso = arg;
    hotffi_iso_proc_t    proc;

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
            started = 1;

            /* the event loop's from here: it sends the calls queued, and
             * the helper wakes it for the first answer */
            (void) pthread_mutex_lock(&iso->io);
            (void) pthread_mutex_lock(&iso->mtx);
            gen = ++iso->gen;
            iso->proc = &proc;
            iso->bad = 0;
            (void) pthread_mutex_unlock(&iso->mtx);

            (void) hotffi_ring_arm_data(&proc.ans);
            (void) hotffi_iso_pump_locked(iso);
            (void) pthread_mutex_unlock(&iso->io);

            clean = hotffi_iso_watch(iso, &proc, gen, why, sizeof(why));

            /* the helper ended: what it wrote before is answered, then
             * the event loop lets go of its rings */
            (void) pthread_mutex_lock(&iso->io);
            (void) hotffi_iso_take_locked(iso, 0);
            (void) pthread_mutex_lock(&iso->mtx);
            iso->proc = NULL;
            (void) pthread_mutex_unlock(&iso->mtx);
            (void) pthread_mutex_unlock(&iso->io);

            hotffi_ring_close(&proc.req);
            hotffi_ring_close(&proc.ans);
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
            (void) pthread_mutex_unlock(&iso->mtx);

            /* the calls queued fail now, as the later ones will */
            (void) pthread_mutex_lock(&iso->io);
            (void) hotffi_iso_pump_locked(iso);
            (void) pthread_mutex_unlock(&iso->io);

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
    (void) pthread_mutex_unlock(&iso->mtx);

    /* calls still queued for an open port fail: nothing will serve them */
    (void) pthread_mutex_lock(&iso->io);
    (void) hotffi_iso_pump_locked(iso);
    (void) pthread_mutex_unlock(&iso->io);

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

    (void) pthread_mutex_destroy(&iso->io);
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
 * thread: init or a reaper.  Ends what libffi_init() started: the stop,
 * then the supervisor, which ends the helper (the event loop takes its
 * last answers meanwhile), then the direct port: no call of the event
 * loop reaches iso after this, and the caller may free it.
 */
static void
hotffi_iso_end(hotffi_iso_t *iso)
{
    (void) pthread_mutex_lock(&iso->mtx);
    iso->stop = 1;
    (void) pthread_cond_broadcast(&iso->cond);
    (void) pthread_mutex_unlock(&iso->mtx);
    (void) eventfd_write(iso->stopfd, 1);

    (void) pthread_join(iso->supervisor, NULL);

    hotffi_direct_detach(iso->tq);
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
    iso->wake_fd = -1;
    (void) pthread_mutex_init(&iso->io, NULL);
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

    /* the event loop serves our port itself; the helper wakes it */
    iso->wake_fd = hotffi_direct_attach(tq, &hotffi_iso_ops, iso);

    if (iso->wake_fd == -1) {
        hotffi_init_error(tq, "out of memory for the direct port");
        hotffi_iso_free(iso);
        return 3;
    }

    iso->start.wake_fd = iso->wake_fd;

    /* our threads take no signal: nginx's handlers run on the event loop */
    (void) sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, &old);

    rc = pthread_create(&iso->supervisor, NULL, hotffi_iso_supervisor, iso);

    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        hotffi_direct_detach(tq);
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
        hotffi_iso_end(iso);
        hotffi_init_error(tq, iso->start_err);
        hotffi_iso_free(iso);
        return 5;
    }

    /* iso: ours, found again by libffi_fini() */
    hotffi_tq_set_data(tq, iso);
    return 0;
}


/*
 * thread: a hotffi reaper.  The core's stop is delivered: the queue is
 * drained (an unload), or the port stopped (a reload, whose next version
 * gets the calls still queued), so nothing more is sent.  The helper then
 * answers what it holds and exits, or is killed after a grace.
 */
int
libffi_fini(void *tq)
{
    hotffi_iso_t  *iso = hotffi_tq_data(tq);

    if (iso == NULL) {
        return 0;
    }

    hotffi_iso_end(iso);
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

    hotffi_iso_end(iso);

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
