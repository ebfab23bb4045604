/*
 * hotffi_ring.c -- the shared-memory byte ring (see hotffi_ring.h).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hotffi_ring.h"


#define HOTFFI_RING_ALIGN(n)  (((n) + 7) & ~(uint64_t) 7)
#define HOTFFI_RING_REC       sizeof(hotffi_ring_rec_t)

/* a producer waiting for space sleeps this long at most per round */
#define HOTFFI_RING_SPACE_MS  50


/* thread: any */
uint64_t
hotffi_ring_now(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}


static void
hotffi_ring_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    sched_yield();
#endif
}


/*
 * thread: any.  A shared (not FUTEX_PRIVATE) futex: the two sides are two
 * processes.  EAGAIN (the word moved), EINTR and ETIMEDOUT all mean "look
 * again", which every caller does.
 */
static void
hotffi_ring_futex_wait(_Atomic uint32_t *word, uint32_t seen, int ms)
{
    struct timespec  ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long) (ms % 1000) * 1000000;
    (void) syscall(SYS_futex, (uint32_t *) word, FUTEX_WAIT, seen, &ts,
                   NULL, 0);
}


static void
hotffi_ring_futex_wake(_Atomic uint32_t *word)
{
    atomic_fetch_add(word, 1);
    (void) syscall(SYS_futex, (uint32_t *) word, FUTEX_WAKE, INT_MAX, NULL,
                   NULL, 0);
}


/*
 * thread: the side that moved head or tail, after the fence.  The peer
 * said it waits (flag): wake it, through its futex, or through the
 * eventfd it polls; there the exchange makes one write per arm.
 */
static void
hotffi_ring_wake(hotffi_ring_t *r, _Atomic uint32_t *flag,
    _Atomic uint32_t *seq)
{
    uint64_t  one;
    ssize_t   n;

    if (!atomic_load_explicit(flag, memory_order_relaxed)) {
        return;
    }

    /*
     * One waker per sleep: the first clears the flag, the ones after it
     * (the event loop's next sends, before the woken side has run) make
     * no system call.  One sleeper per flag at a time (a ring has one
     * consumer and one producer), and it raises the flag again before
     * each sleep.
     */
    if (atomic_exchange(flag, 0) == 0) {
        return;
    }

    if (r->wake_fd == -1) {
        hotffi_ring_futex_wake(seq);
        return;
    }

    one = 1;

    do {
        n = write(r->wake_fd, &one, sizeof(one));
    } while (n == -1 && errno == EINTR);

    /* EAGAIN: the counter is saturated, a wake-up is pending anyway */
}


/* thread: any */
void
hotffi_ring_attach(hotffi_ring_t *r, hotffi_ring_shm_t *shm, void *data,
    uint64_t size, int reset)
{
    r->shm = shm;
    r->data = data;
    r->size = size;
    r->wake_fd = -1;

    if (reset) {
        memset(shm, 0, sizeof(hotffi_ring_shm_t));
    }
}


/* thread: any, before use */
void
hotffi_ring_set_wake_fd(hotffi_ring_t *r, int fd)
{
    r->wake_fd = fd;
}


uint64_t
hotffi_ring_max_payload(const hotffi_ring_t *r)
{
    uint64_t  max = r->size - HOTFFI_RING_REC;

    return max > UINT32_MAX - 8 ? UINT32_MAX - 8 : max;
}


/* thread: any */
uint64_t
hotffi_ring_head(const hotffi_ring_t *r)
{
    return atomic_load_explicit(&r->shm->head, memory_order_acquire);
}


uint64_t
hotffi_ring_tail(const hotffi_ring_t *r)
{
    return atomic_load_explicit(&r->shm->tail, memory_order_acquire);
}


/* thread: the producer.  n bytes of src at ring position pos. */
static void
hotffi_ring_copy_in(hotffi_ring_t *r, uint64_t pos, const void *src,
    uint64_t n)
{
    uint64_t  off = pos & (r->size - 1);
    uint64_t  first = r->size - off;

    if (n <= first) {
        memcpy(r->data + off, src, n);
        return;
    }

    memcpy(r->data + off, src, first);
    memcpy(r->data, (const unsigned char *) src + first, n - first);
}


/* thread: the consumer */
static void
hotffi_ring_copy_out(hotffi_ring_t *r, uint64_t pos, void *dst, uint64_t n)
{
    uint64_t  off = pos & (r->size - 1);
    uint64_t  first = r->size - off;

    if (n <= first) {
        memcpy(dst, r->data + off, n);
        return;
    }

    memcpy(dst, r->data + off, first);
    memcpy((unsigned char *) dst + first, r->data, n - first);
}


/*
 * thread: the producer.  Sleeps until the consumer frees space (or the
 * round's timeout); space_seq is read before the flag is raised and the
 * ring looked at again, so a take in between is never missed.
 */
static void
hotffi_ring_wait_space(hotffi_ring_t *r, uint64_t head, uint64_t need)
{
    uint32_t  seen;
    uint64_t  tail;

    seen = atomic_load(&r->shm->space_seq);
    atomic_store(&r->shm->space_waiting, 1);

    tail = atomic_load(&r->shm->tail);

    if (head - tail <= r->size - need || atomic_load(&r->shm->closed)) {
        atomic_store(&r->shm->space_waiting, 0);
        return;
    }

    hotffi_ring_futex_wait(&r->shm->space_seq, seen, HOTFFI_RING_SPACE_MS);
    atomic_store(&r->shm->space_waiting, 0);
}


/* thread: the producer.  block: wait for space, else HOTFFI_AGAIN. */
static int
hotffi_ring_put_rec(hotffi_ring_t *r, uint64_t id, int32_t rc,
    uint32_t flags, const void *payload, uint32_t len, int block)
{
    uint64_t           head, tail, need, used, start;
    hotffi_ring_rec_t  rec;

    if (len > hotffi_ring_max_payload(r)) {
        return HOTFFI_DECLINED;
    }

    need = HOTFFI_RING_ALIGN(HOTFFI_RING_REC + (uint64_t) len);
    head = atomic_load_explicit(&r->shm->head, memory_order_relaxed);
    start = 0;

    for ( ;; ) {
        if (atomic_load_explicit(&r->shm->closed, memory_order_acquire)) {
            return HOTFFI_DONE;
        }

        tail = atomic_load_explicit(&r->shm->tail, memory_order_acquire);
        used = head - tail;

        if (used > r->size) {
            return HOTFFI_ERROR;
        }

        if (r->size - used >= need) {
            break;
        }

        if (!block) {
            return HOTFFI_AGAIN;
        }

        /* a full ring usually empties within microseconds: spin first */
        if (start == 0) {
            start = hotffi_ring_now();
        }

        if (hotffi_ring_now() - start < 50000) {
            hotffi_ring_pause();
            continue;
        }

        hotffi_ring_wait_space(r, head, need);
    }

    memset(&rec, 0, sizeof(rec));
    rec.id = id;
    rec.rc = rc;
    rec.len = len;
    rec.flags = flags;

    hotffi_ring_copy_in(r, head, &rec, HOTFFI_RING_REC);

    if (len) {
        hotffi_ring_copy_in(r, head + HOTFFI_RING_REC, payload, len);
    }

    atomic_store_explicit(&r->shm->head, head + need, memory_order_release);

    /* pairs with the consumer's store of data_waiting and load of head */
    atomic_thread_fence(memory_order_seq_cst);

    hotffi_ring_wake(r, &r->shm->data_waiting, &r->shm->data_seq);

    return HOTFFI_OK;
}


/* thread: the producer */
int
hotffi_ring_put(hotffi_ring_t *r, uint64_t id, int32_t rc, uint32_t flags,
    const void *payload, uint32_t len)
{
    return hotffi_ring_put_rec(r, id, rc, flags, payload, len, 1);
}


/* thread: the producer */
int
hotffi_ring_try_put(hotffi_ring_t *r, uint64_t id, int32_t rc,
    uint32_t flags, const void *payload, uint32_t len)
{
    return hotffi_ring_put_rec(r, id, rc, flags, payload, len, 0);
}


/* thread: the consumer */
int
hotffi_ring_take(hotffi_ring_t *r, hotffi_ring_rec_t *rec, char **payload)
{
    char      *p;
    uint64_t   head, tail, avail, need;

    tail = atomic_load_explicit(&r->shm->tail, memory_order_relaxed);
    head = atomic_load_explicit(&r->shm->head, memory_order_acquire);
    avail = head - tail;

    if (avail == 0) {
        return HOTFFI_AGAIN;
    }

    if (avail > r->size || avail < HOTFFI_RING_REC) {
        return HOTFFI_ERROR;
    }

    hotffi_ring_copy_out(r, tail, rec, HOTFFI_RING_REC);

    need = HOTFFI_RING_ALIGN(HOTFFI_RING_REC + (uint64_t) rec->len);

    if (need > avail
        || ((rec->flags & HOTFFI_RING_NULL) && rec->len != 0))
    {
        return HOTFFI_ERROR;
    }

    p = NULL;

    if (!(rec->flags & HOTFFI_RING_NULL)) {
        p = malloc((size_t) rec->len + 1);
        if (p == NULL) {
            return HOTFFI_BUSY;
        }

        hotffi_ring_copy_out(r, tail + HOTFFI_RING_REC, p, rec->len);
        p[rec->len] = '\0';
    }

    atomic_store_explicit(&r->shm->tail, tail + need, memory_order_release);

    /* pairs with the producer's store of space_waiting and load of tail */
    atomic_thread_fence(memory_order_seq_cst);

    hotffi_ring_wake(r, &r->shm->space_waiting, &r->shm->space_seq);

    /* payload: the caller's from here */
    *payload = p;
    return HOTFFI_OK;
}


/* thread: the consumer */
int
hotffi_ring_wait(hotffi_ring_t *r, uint64_t spin_ns, int timeout_ms)
{
    uint32_t  seen;
    uint64_t  tail, start;

    tail = atomic_load_explicit(&r->shm->tail, memory_order_relaxed);
    start = 0;

    for ( ;; ) {
        if (atomic_load_explicit(&r->shm->head, memory_order_acquire)
            != tail)
        {
            return HOTFFI_OK;
        }

        if (atomic_load_explicit(&r->shm->closed, memory_order_acquire)) {
            return HOTFFI_DONE;
        }

        if (start == 0) {
            start = hotffi_ring_now();
        }

        if (hotffi_ring_now() - start >= spin_ns) {
            break;
        }

        hotffi_ring_pause();
    }

    seen = atomic_load(&r->shm->data_seq);
    atomic_store(&r->shm->data_waiting, 1);

    if (atomic_load(&r->shm->head) == tail && !atomic_load(&r->shm->closed)) {
        hotffi_ring_futex_wait(&r->shm->data_seq, seen, timeout_ms);
    }

    atomic_store(&r->shm->data_waiting, 0);

    if (atomic_load_explicit(&r->shm->head, memory_order_acquire) != tail) {
        return HOTFFI_OK;
    }

    return atomic_load(&r->shm->closed) ? HOTFFI_DONE : HOTFFI_AGAIN;
}


/* thread: the consumer */
int
hotffi_ring_arm_data(hotffi_ring_t *r)
{
    atomic_store(&r->shm->data_waiting, 1);

    /* pairs with the producer's store of head and load of data_waiting */
    atomic_thread_fence(memory_order_seq_cst);

    return atomic_load(&r->shm->head)
           != atomic_load_explicit(&r->shm->tail, memory_order_relaxed);
}


/* thread: the consumer */
void
hotffi_ring_disarm_data(hotffi_ring_t *r)
{
    atomic_store_explicit(&r->shm->data_waiting, 0, memory_order_relaxed);
}


/* thread: the producer */
uint64_t
hotffi_ring_space(const hotffi_ring_t *r)
{
    uint64_t  used;

    used = atomic_load_explicit(&r->shm->head, memory_order_relaxed)
           - atomic_load_explicit(&r->shm->tail, memory_order_acquire);

    /* a corrupt tail: no space; the put that follows says why */
    return used > r->size ? 0 : r->size - used;
}


uint64_t
hotffi_ring_need(uint32_t len)
{
    return HOTFFI_RING_ALIGN(HOTFFI_RING_REC + (uint64_t) len);
}


/* thread: the producer */
int
hotffi_ring_arm_space(hotffi_ring_t *r, uint64_t need)
{
    atomic_store(&r->shm->space_waiting, 1);

    /* pairs with the consumer's store of tail and load of space_waiting */
    atomic_thread_fence(memory_order_seq_cst);

    return hotffi_ring_space(r) >= need;
}


/* thread: the consumer */
int
hotffi_ring_ready(const hotffi_ring_t *r)
{
    return atomic_load_explicit(&r->shm->head, memory_order_acquire)
           != atomic_load_explicit(&r->shm->tail, memory_order_relaxed)
           || atomic_load_explicit(&r->shm->closed, memory_order_relaxed);
}


/* thread: any */
void
hotffi_ring_close(hotffi_ring_t *r)
{
    atomic_store(&r->shm->closed, 1);
    hotffi_ring_futex_wake(&r->shm->data_seq);
    hotffi_ring_futex_wake(&r->shm->space_seq);
}
