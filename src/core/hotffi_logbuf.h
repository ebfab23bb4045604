/*
 * hotffi_logbuf.h -- the bounded buffer that carries runtimes' log lines
 * (hotffi_log()) from their threads to the event loop, which writes them
 * with the host's logger.
 *
 * DESIGN
 * Runtime threads must never write the log themselves: nginx's logger is
 * not thread-safe, and nginx closes and reopens its log files on USR1.  So
 * a line is copied here, and the event loop writes it later.  One buffer
 * per host process (per nginx worker), owned by its hub.
 *
 * Two flat byte arrays of HOTFFI_LOGBUF_BYTES: runtime threads append
 * records (level, length, text) to `fill` under mtx; the drain swaps `fill`
 * and `spare` under mtx -- O(1), whatever the number of lines -- and walks
 * its lines with the lock released, so a runtime thread waits at most for
 * one memcpy of a line, never for a write().  Nothing grows: a line that
 * does not fit (HOTFFI_LOGBUF_BYTES, or HOTFFI_LOGBUF_LINES lines since the
 * last drain) is dropped and counted, and the drain ends with one line
 * saying how many were dropped.  A line is cut to HOTFFI_LOGBUF_LINE_MAX
 * bytes, ending with a marker that says how much was cut.
 *
 * Lines more verbose than `level` (the host's error_log level) are never
 * copied: the caller asks hotffi_logbuf_wants() first, without the lock.
 *
 * Wake-ups are the caller's: a push that makes the buffer non-empty says
 * so, and the caller wakes the drainer (the hub's eventfd), so a burst of
 * lines costs one wake-up.  A drop needs none: it finds the buffer full,
 * hence non-empty, and its wake-up already sent.
 *
 * locks: mtx guards fill, used, lines and dropped; `ready` (fill is not
 * empty) and `level` are atomics read without it; spare is the drainer's
 * alone (one drainer at a time: the event loop).
 */

#ifndef HOTFFI_LOGBUF_H
#define HOTFFI_LOGBUF_H


#include <pthread.h>
#include <stdatomic.h>

#include "hotffi_core.h"
#include "hotffi.h"           /* the levels: HOTFFI_LEVEL_* */


#define HOTFFI_LOGBUF_BYTES     65536  /* per array: bytes of records */
#define HOTFFI_LOGBUF_LINES     512    /* lines between two drains */
#define HOTFFI_LOGBUF_LINE_MAX  1900   /* text of a line, marker included:
                                          nginx cuts a whole line at 2048 */


typedef struct {
    pthread_mutex_t  mtx;
    char            *fill;       /* owned; records appended; locks: mtx */
    char            *spare;      /* owned; the drainer's */
    uint32_t         used;       /* bytes of fill; locks: mtx */
    uint32_t         lines;      /* records in fill; locks: mtx */
    uint64_t         dropped;    /* since the last drain; locks: mtx */
    atomic_int       ready;      /* fill has a record, or a drop */
    atomic_int       level;      /* the most verbose level kept, 0: none */
} hotffi_logbuf_t;


/*
 * thread: the drainer's (the event loop), one drain's line.  line is
 * borrowed for the call, len bytes, not NUL-terminated; level is nginx's.
 */
typedef void (*hotffi_logbuf_sink_pt)(void *ctx, int level, const char *line,
    size_t len);


/*
 * thread: event loop.  Keeps lines up to level (nginx's; 0 keeps none and
 * allocates nothing).  HOTFFI_ERROR when memory is short.
 */
int hotffi_logbuf_init(hotffi_logbuf_t *lb, int level);

/* thread: event loop, when no thread can push any more.  Drops what is left. */
void hotffi_logbuf_free(hotffi_logbuf_t *lb);

/* thread: any.  Whether a line of level would be kept (no lock). */
static inline int
hotffi_logbuf_wants(hotffi_logbuf_t *lb, int level)
{
    return level <= atomic_load_explicit(&lb->level, memory_order_relaxed);
}

/*
 * thread: any.  Appends one line, prefix then msg (both borrowed, copied
 * now), cut to HOTFFI_LOGBUF_LINE_MAX bytes with a marker; or drops and
 * counts it when the buffer is full.  Returns 1 when this line made the
 * buffer non-empty: the caller must wake the drainer.  Never blocks but
 * for the lock, held for one copy.
 */
int hotffi_logbuf_push(hotffi_logbuf_t *lb, int level, const char *prefix,
    size_t prefix_len, const char *msg, size_t len);

/*
 * thread: the drainer (one at a time).  Hands every line waiting to sink,
 * oldest first, then, if any were dropped, one line at HOTFFI_LEVEL_WARN
 * saying how many.  Returns how many lines it handed out, that one
 * included.
 */
unsigned hotffi_logbuf_drain(hotffi_logbuf_t *lb, hotffi_logbuf_sink_pt sink,
    void *ctx);


#endif /* HOTFFI_LOGBUF_H */
