/*
 * hotffi_ring.h -- a byte ring in shared memory between two processes: one
 * producer, one consumer, records copied in place, futex wake-ups.
 *
 * DESIGN
 * The ring lives in a MAP_SHARED mapping of a memfd that the nginx worker
 * and an isolated runtime's helper process both map.  Each direction of a
 * helper's traffic has one ring: requests (worker -> helper) and answers
 * (helper -> worker).  A record is a fixed header (hotffi_ring_rec_t) and
 * its payload, padded to 8 bytes; a record may wrap around the end of the
 * data area, and is copied in and out in up to two pieces.
 *
 * Ordering: head counts the bytes ever written, tail the bytes ever read,
 * both 64-bit and never wrapping.  The producer copies a record, then
 * stores head with release; the consumer loads head with acquire, copies
 * the record out, then stores tail with release.  One producer thread and
 * one consumer thread at a time per ring: a process with several threads
 * on one side serialises them with a lock of its own.
 *
 * Wake-ups: a side that finds nothing to do spins for a while, then says
 * it sleeps (data_waiting or space_waiting), checks again and sleeps on a
 * shared futex word (data_seq, space_seq).  The other side, after moving
 * head or tail, fences and wakes only when the flag is set: a busy ring
 * makes no system call.  Every sleep has a timeout, so a peer that dies
 * (or never wakes us) costs a bounded delay, not a hang.
 *
 * A side that cannot sleep on a futex (the nginx worker's event loop,
 * which sleeps in epoll) arms the flag instead (hotffi_ring_arm_data(),
 * hotffi_ring_arm_space()) and is woken through an eventfd its peer holds:
 * the peer's handle then carries that descriptor (wake_fd), and its put or
 * take clears the flag with an exchange and writes the eventfd, so one arm
 * costs at most one write, however many records follow.
 *
 * Trust: the peer may be a crashing or hostile process.  Every value read
 * from shared memory (head, tail, a record's length) is checked before it
 * is used; a bad one gives HOTFFI_ERROR, and the caller ends the helper.
 * Nothing in the shared mapping is a pointer.
 */

#ifndef HOTFFI_RING_H
#define HOTFFI_RING_H


#include <stddef.h>
#include <stdint.h>

/* the return codes; include system headers before this header */
#include "hotffi_core.h"


/* the record carries no payload (a NULL request or answer, not "") */
#define HOTFFI_RING_NULL  1


/* the shared part: lives in the mapping, written by both processes */
typedef struct {
    /* written by the producer */
    _Atomic uint64_t  head;
    _Atomic uint32_t  data_seq;         /* futex word */
    _Atomic uint32_t  space_waiting;    /* the producer sleeps on space */
    char              pad1[48];

    /* written by the consumer */
    _Atomic uint64_t  tail;
    _Atomic uint32_t  space_seq;        /* futex word */
    _Atomic uint32_t  data_waiting;     /* the consumer sleeps on data */
    char              pad2[48];

    /* written by whoever ends the ring (the worker) */
    _Atomic uint32_t  closed;
    char              pad3[60];
} hotffi_ring_shm_t;


/* one record's header, as stored in the ring */
typedef struct {
    uint64_t  id;       /* the worker's name for the call */
    int32_t   rc;       /* an answer's rc; 0 in a request */
    uint32_t  len;      /* payload bytes that follow */
    uint32_t  flags;    /* HOTFFI_RING_NULL */
    uint32_t  pad;
} hotffi_ring_rec_t;


/* one process's handle on a ring: private memory, trusted */
typedef struct {
    hotffi_ring_shm_t  *shm;    /* borrowed: the mapping's */
    unsigned char      *data;   /* borrowed: the mapping's */
    uint64_t            size;   /* bytes of data, a power of two */
    int                 wake_fd;  /* borrowed: -1, the peer sleeps on the
                                     futex; else the eventfd it polls */
} hotffi_ring_t;


/*
 * thread: any.  Points r at a ring whose shared part and data area are
 * already mapped; with reset, zeroes the shared part (the creator, before
 * the peer exists).  size: a power of two, at least 64.
 */
void hotffi_ring_attach(hotffi_ring_t *r, hotffi_ring_shm_t *shm, void *data,
    uint64_t size, int reset);

/*
 * thread: any, before the ring is used.  The peer of this handle is woken
 * by writing fd (an eventfd, borrowed: it outlives the handle) instead of
 * the futex.
 */
void hotffi_ring_set_wake_fd(hotffi_ring_t *r, int fd);

/* The largest payload a record of this ring may carry. */
uint64_t hotffi_ring_max_payload(const hotffi_ring_t *r);

/*
 * thread: the producer.  Copies one record in, waiting (spin, then futex)
 * for space.  HOTFFI_OK; HOTFFI_DECLINED: len exceeds
 * hotffi_ring_max_payload(); HOTFFI_DONE: the ring is closed (nothing was
 * written); HOTFFI_ERROR: the peer corrupted the ring.
 * payload: borrowed, len bytes (NULL with HOTFFI_RING_NULL).
 */
int hotffi_ring_put(hotffi_ring_t *r, uint64_t id, int32_t rc,
    uint32_t flags, const void *payload, uint32_t len);

/* thread: the producer.  As hotffi_ring_put(), but HOTFFI_AGAIN at once
 * when the record does not fit now. */
int hotffi_ring_try_put(hotffi_ring_t *r, uint64_t id, int32_t rc,
    uint32_t flags, const void *payload, uint32_t len);

/*
 * thread: the consumer.  Takes one record if there is one: HOTFFI_OK and
 * *payload malloc()'ed with a NUL after its rec->len bytes (NULL for a
 * HOTFFI_RING_NULL record), the caller's to free; HOTFFI_AGAIN: empty;
 * HOTFFI_BUSY: out of memory, the record stays; HOTFFI_ERROR: the peer
 * corrupted the ring.
 */
int hotffi_ring_take(hotffi_ring_t *r, hotffi_ring_rec_t *rec,
    char **payload);

/*
 * thread: the consumer.  Waits until there is a record: spins for up to
 * spin_ns, then sleeps on the futex for up to timeout_ms.  HOTFFI_OK: a
 * record is there; HOTFFI_AGAIN: none yet; HOTFFI_DONE: closed and empty.
 */
int hotffi_ring_wait(hotffi_ring_t *r, uint64_t spin_ns, int timeout_ms);

/*
 * thread: the consumer, woken through wake_fd.  Asks the producer for a
 * wake-up at its next record (once: it clears the flag when it writes).
 * Returns 1 when a record is there already (take it: no wake-up may come
 * for it), else 0.  disarm: the consumer watches the ring itself (it
 * spins), and a record needs no wake-up.
 */
int hotffi_ring_arm_data(hotffi_ring_t *r);
void hotffi_ring_disarm_data(hotffi_ring_t *r);

/*
 * thread: the producer, woken through wake_fd.  Asks the consumer for a
 * wake-up once it frees space.  Returns 1 when need bytes of record
 * (hotffi_ring_need()) fit already, else 0.
 */
int hotffi_ring_arm_space(hotffi_ring_t *r, uint64_t need);

/* thread: the producer.  Bytes free now, and the bytes a record of len
 * payload bytes takes. */
uint64_t hotffi_ring_space(const hotffi_ring_t *r);
uint64_t hotffi_ring_need(uint32_t len);

/* thread: the consumer.  1 when a record waits or the ring is closed. */
int hotffi_ring_ready(const hotffi_ring_t *r);

/* thread: any.  Ends the ring: puts fail, waits return; wakes both sides. */
void hotffi_ring_close(hotffi_ring_t *r);

/* thread: any.  Bytes written and bytes taken so far (progress marks). */
uint64_t hotffi_ring_head(const hotffi_ring_t *r);
uint64_t hotffi_ring_tail(const hotffi_ring_t *r);

/* thread: any.  Monotonic nanoseconds. */
uint64_t hotffi_ring_now(void);


#endif /* HOTFFI_RING_H */
