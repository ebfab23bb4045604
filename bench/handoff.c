/*
 * handoff.c -- the bound of the HTTP case for a call answered by another
 * thread: the least such a call can cost nginx's event loop, loaded by
 * bench/hotffi_bench.lua into the benchmark's worker (/handoff).
 *
 * The yield-only bound (/yield) has no other thread.  A bridge that keeps
 * the event loop free must also hand each call to a thread and be told
 * when it is answered, and on a machine whose CPUs nginx and wrk fill that
 * thread's turns come from the same CPUs.  This is that hand-off and
 * nothing else: the request's coroutine puts its semaphore on a queue and
 * waits on it; one helper thread takes the queue whole and puts it on the
 * answered list as it is ("answering" costs nothing: no payload, no task,
 * no copy, no allocation); the event loop learns of answers through one
 * eventfd and posts the semaphores.  Each side wakes the other only when
 * it may be waiting, as hotffi does: the helper parks on a condition
 * variable when the queue is empty and is signalled at once for a lone
 * call, otherwise once per turn of the loop, at its end (a posted event),
 * and writes the eventfd only when the answered list was empty.  The
 * helper runs SCHED_BATCH, as hotffi's polling threads do where nginx and
 * its load fill the CPUs (src/core/hotffi_sched.h): it never preempts the
 * loop on wake-up; with HOTFFI_BENCH_HANDOFF_BATCH=0 it keeps the default
 * policy, as hotffi's do on a machine crowded with other work (the busy
 * case, where it is also the sequential case's bound for a caller that
 * parks).
 *
 * Built against the nginx tree the module is built in (the same headers
 * and configuration); the symbols it uses are nginx's and
 * lua-nginx-module's, resolved when LuaJIT loads it into the worker.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>


/* more than the benchmark's connections: one waiting call each */
#define HANDOFF_SLOTS  8192


/* lua-nginx-module's, exported for ngx.semaphore's FFI */
void ngx_http_lua_ffi_sema_post(void *sem, int n);


typedef struct {
    void        *sem[HANDOFF_SLOTS];
    ngx_uint_t   n;
} handoff_list_t;


/*
 * The semaphores on both lists are lua-nginx-module's, owned by the Lua
 * side (bench/hotffi_bench.lua keeps them for the worker's life); the
 * helper only moves the pointers from one list to the other.
 */
static pthread_mutex_t   handoff_todo_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t    handoff_todo_cond = PTHREAD_COND_INITIALIZER;
static handoff_list_t    handoff_todo;          /* handoff_todo_lock */
static int               handoff_parked;        /* handoff_todo_lock */

static pthread_mutex_t   handoff_done_lock = PTHREAD_MUTEX_INITIALIZER;
static handoff_list_t    handoff_done;          /* handoff_done_lock */

/* event loop only; the eventfd is written by the helper too */
static int               handoff_efd = -1;
static ngx_connection_t *handoff_conn;
static ngx_uint_t        handoff_inflight;      /* bounds both lists */
static ngx_event_t       handoff_wake;
static handoff_list_t    handoff_drained;


/* thread: the helper */
static void *
handoff_helper(void *arg)
{
    static handoff_list_t  taken;
    const char            *batch;
    struct sched_param     sp;
    ngx_uint_t             i, notify;
    uint64_t               one;

    batch = getenv("HOTFFI_BENCH_HANDOFF_BATCH");

    if (batch == NULL || ngx_strcmp(batch, "0") != 0) {
        ngx_memzero(&sp, sizeof(sp));
        (void) pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    }

    one = 1;

    for ( ;; ) {
        pthread_mutex_lock(&handoff_todo_lock);

        while (handoff_todo.n == 0) {
            handoff_parked = 1;
            pthread_cond_wait(&handoff_todo_cond, &handoff_todo_lock);
            handoff_parked = 0;
        }

        ngx_memcpy(taken.sem, handoff_todo.sem,
                   handoff_todo.n * sizeof(void *));
        taken.n = handoff_todo.n;
        handoff_todo.n = 0;

        pthread_mutex_unlock(&handoff_todo_lock);

        pthread_mutex_lock(&handoff_done_lock);

        notify = (handoff_done.n == 0);

        for (i = 0; i < taken.n; i++) {
            handoff_done.sem[handoff_done.n++] = taken.sem[i];
        }

        pthread_mutex_unlock(&handoff_done_lock);

        /* an eventfd write fails only past 2^64 - 2 unread: never here */
        if (notify) {
            (void) write(handoff_efd, &one, sizeof(one));
        }
    }

    return NULL;
}


/* thread: event loop.  The eventfd first, then the list: see the helper. */
static void
handoff_answered(ngx_event_t *ev)
{
    uint64_t    v;
    ngx_uint_t  i;

    (void) read(handoff_efd, &v, sizeof(v));

    pthread_mutex_lock(&handoff_done_lock);

    ngx_memcpy(handoff_drained.sem, handoff_done.sem,
               handoff_done.n * sizeof(void *));
    handoff_drained.n = handoff_done.n;
    handoff_done.n = 0;

    pthread_mutex_unlock(&handoff_done_lock);

    handoff_inflight -= handoff_drained.n;

    for (i = 0; i < handoff_drained.n; i++) {
        ngx_http_lua_ffi_sema_post(handoff_drained.sem[i], 1);
    }
}


/*
 * thread: event loop, at the end of a turn that queued calls.  The signal
 * comes after the unlock: a helper woken while the mutex is held would
 * only block on it again, one more wake-up.  A helper that read the
 * queue since gets a spurious wake-up, never a lost one: it parks only
 * while the queue is empty, under the lock.
 */
static void
handoff_signal(ngx_event_t *ev)
{
    int  parked;

    pthread_mutex_lock(&handoff_todo_lock);
    parked = handoff_parked;
    pthread_mutex_unlock(&handoff_todo_lock);

    if (parked) {
        pthread_cond_signal(&handoff_todo_cond);
    }
}


/*
 * thread: event loop, once per worker (init_worker_by_lua*).  0, or -1
 * with the reason in the error log.  The helper lives as long as the
 * worker.
 */
int
hotffi_bench_handoff_init(void)
{
    pthread_t          tid;
    ngx_connection_t  *c;

    handoff_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (handoff_efd == -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                      "handoff: eventfd() failed");
        return -1;
    }

    c = ngx_get_connection(handoff_efd, ngx_cycle->log);
    if (c == NULL) {
        return -1;
    }

    c->read->handler = handoff_answered;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;

    if (ngx_add_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
        ngx_free_connection(c);
        return -1;
    }

    handoff_conn = c;

    handoff_wake.handler = handoff_signal;
    handoff_wake.log = ngx_cycle->log;

    if (pthread_create(&tid, NULL, handoff_helper, NULL) != 0) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "handoff: no helper thread");
        return -1;
    }

    (void) pthread_detach(tid);
    return 0;
}


/*
 * thread: event loop.  Queues the calling coroutine's semaphore (borrowed:
 * the Lua side keeps it while the call waits); 0, or -1 when as many
 * calls wait as there are slots.
 */
int
hotffi_bench_handoff(void *sem)
{
    int  parked;

    if (handoff_inflight == HANDOFF_SLOTS) {
        return -1;
    }

    handoff_inflight++;

    pthread_mutex_lock(&handoff_todo_lock);

    handoff_todo.sem[handoff_todo.n++] = sem;
    parked = handoff_parked;

    pthread_mutex_unlock(&handoff_todo_lock);

    if (!parked) {
        return 0;
    }

    /* a lone call is all this turn will bring: no reason to wait */
    if (handoff_inflight == 1) {
        pthread_cond_signal(&handoff_todo_cond);
        return 0;
    }

    if (!handoff_wake.posted) {
        ngx_post_event(&handoff_wake, &ngx_posted_events);
    }

    return 0;
}


/*
 * thread: event loop, exit_worker_by_lua*.  nginx counts a connection still
 * open at exit as a leak.  The eventfd stays open: the helper, which lives
 * until the process ends, may still write to it.
 */
void
hotffi_bench_handoff_exit(void)
{
    if (handoff_conn == NULL) {
        return;
    }

    (void) ngx_del_event(handoff_conn->read, NGX_READ_EVENT, 0);
    ngx_free_connection(handoff_conn);
    handoff_conn->fd = (ngx_socket_t) -1;
    handoff_conn = NULL;
}
