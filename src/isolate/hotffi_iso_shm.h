/*
 * hotffi_iso_shm.h -- the layout of the memory an nginx worker shares with
 * one isolated runtime's helper process.
 *
 * One memfd per helper process (a restart makes a new one, so nothing a
 * dead helper left behind is read by the next): this header, then the
 * configuration's bytes, then the state handed over by the version
 * before (libffi_retire() of the worker's side), then the cancel table,
 * then the request ring's data, then the answer ring's data, each ring on
 * its own pages.
 *
 * The cancel table has one word per slot of the worker's (a call sent and
 * not answered, hotffi_isolate.c): the worker stores there the id of a call
 * whose caller gave up, the helper's hotffi_task_cancelled() compares it
 * with its task's.  A slot used again gets a new id, so a stale entry never
 * cancels the next call.  The worker writes everything
 * but the helper's fields before it starts the helper; the helper checks
 * the sizes against the file's before it reads anything.  No pointer is
 * stored: both processes map it at their own addresses.
 */

#ifndef HOTFFI_ISO_SHM_H
#define HOTFFI_ISO_SHM_H


#include <stddef.h>
#include <stdint.h>

#include "hotffi_ring.h"


#define HOTFFI_ISO_MAGIC      0x6869736fu    /* "hiso" */
#define HOTFFI_ISO_VERSION    3
#define HOTFFI_ISO_PATH_MAX   4096
#define HOTFFI_ISO_ERR_MAX    4096

/* the helper's state, written by the helper */
#define HOTFFI_ISO_STARTING   0
#define HOTFFI_ISO_RUNNING    1     /* libffi_init() returned 0 */
#define HOTFFI_ISO_INIT_FAILED 2    /* init_err says why */

/* the helper's exit code after a failed start (init_err says why) */
#define HOTFFI_ISO_EXIT_INIT  3

/* a call's id: a sequence number above its slot's index (the slots, the
 * isolation option inflight, are fewer: hotffi_iso_conf.c) */
#define HOTFFI_ISO_SLOT_BITS  20
#define HOTFFI_ISO_SLOT_MASK  ((1u << HOTFFI_ISO_SLOT_BITS) - 1)

/*
 * Ids of answer-ring records that are not answers (no call has them): a
 * hotffi_log() line (rc: the level), and a piece of the state
 * libffi_retire() handed over (rc: HOTFFI_ISO_STATE_MORE, _LAST, or
 * _FAILED with the reason as payload).
 */
#define HOTFFI_ISO_LOG_ID     0
#define HOTFFI_ISO_STATE_ID   1

#define HOTFFI_ISO_STATE_MORE    0
#define HOTFFI_ISO_STATE_LAST    1
#define HOTFFI_ISO_STATE_FAILED  2

/* the fd the helper finds its memfd on, and the worker's eventfd (its
 * hub's: a write wakes the event loop to take answers) */
#define HOTFFI_ISO_FD         3
#define HOTFFI_ISO_WAKE_FD    4


typedef struct {
    /* written by the worker before the helper starts */
    uint32_t            magic;
    uint32_t            version;
    uint64_t            total;          /* bytes of the whole mapping */
    uint64_t            ring_size;      /* each ring's data bytes */
    uint64_t            cfg_len;        /* bytes after the header */
    uint64_t            state_len;      /* bytes after the cfg's NUL */
    uint32_t            has_state;      /* 0: hotffi_state() gives NULL */
    uint32_t            rollback;       /* hotffi_rollback() */
    uint64_t            slots;          /* words of the cancel table */
    _Atomic uint32_t    retire;         /* set by the worker before it
                                           closes the request ring: call
                                           libffi_retire(), send the state */
    uint32_t            pad2;
    uint32_t            has_cfg;        /* 0: libffi_init() gets NULL */
    uint32_t            has_wake;       /* HOTFFI_ISO_WAKE_FD is open */
    uint64_t            memory;         /* RLIMIT_AS bytes, 0: none */
    uint64_t            cpu;            /* RLIMIT_CPU seconds, 0: none */
    uint64_t            files;          /* RLIMIT_NOFILE, 0: inherited */
    char                lib[HOTFFI_ISO_PATH_MAX];

    /* written by the nanny once the helper ended (hotffi_iso_proc.c) */
    int32_t             helper_status;      /* waitpid()'s */
    _Atomic uint32_t    helper_ended;

    /* written by the helper */
    _Atomic uint32_t    state;
    char                init_err[HOTFFI_ISO_ERR_MAX];

    /* the rings' shared parts, each on cache lines of its own */
    hotffi_ring_shm_t   req __attribute__((aligned(64)));
    hotffi_ring_shm_t   ans __attribute__((aligned(64)));
} hotffi_iso_shm_t;


/* Where the configuration's bytes start, and the state's. */
#define hotffi_iso_shm_cfg(shm)  ((char *) (shm) + sizeof(hotffi_iso_shm_t))
#define hotffi_iso_shm_state(shm)                                            \
    (hotffi_iso_shm_cfg(shm) + (shm)->cfg_len + 1)

/* thread: any.  Bytes of a mapping for a header's sizes. */
uint64_t hotffi_iso_shm_size(uint64_t cfg_len, uint64_t state_len,
    uint64_t slots, uint64_t ring_size);

/*
 * thread: any.  The cancel table of a mapping whose header is valid:
 * written by the worker, read by the helper, both atomically.
 */
_Atomic uint64_t *hotffi_iso_shm_cancels(hotffi_iso_shm_t *shm);

/*
 * thread: any.  Points req and ans at the rings of a mapping whose header
 * is valid (hotffi_iso_shm_check()); reset: the worker, before the helper
 * exists.
 */
void hotffi_iso_shm_rings(hotffi_iso_shm_t *shm, hotffi_ring_t *req,
    hotffi_ring_t *ans, int reset);

/*
 * thread: any.  HOTFFI_OK when the header written by the worker agrees
 * with itself and with the mapping's size.
 */
int hotffi_iso_shm_check(const hotffi_iso_shm_t *shm, uint64_t size);


#endif /* HOTFFI_ISO_SHM_H */
