/*
 * hotffi_metrics.h -- the counters a metrics scrape reads: how each call to
 * a runtime ended as its caller saw it, how long its answer took, and the
 * bytes it moved.
 *
 * DESIGN
 * Kept apart from the runtime's own statistics (hotffi_runtime_stats_t,
 * which count what the queue and the runtime did) because these count
 * what the caller got: every call ends in exactly one outcome -- refused
 * (queue full, unloaded), or posted and then finished (ok, runtime error),
 * timed out or abandoned -- so the outcomes add up to the calls made.
 *
 * Recording costs a few additions on the event loop per call and no lock:
 * every field is written and read on the event loop only (the scrape reads
 * them through resty.hotffi's FFI, in the same worker).  The latency is
 * the time from the post to the runtime's answer (task->posted to
 * task->answered, both hotffi_spin_now()), which leaves out the wake-up of
 * the waiting coroutine; it is observed when the caller takes the answer.
 * The histogram's buckets are fixed, so that every worker and every
 * runtime can be summed by Prometheus; a bucket counts the calls that fell
 * into it alone, and the reader makes them cumulative.
 */

#ifndef HOTFFI_METRICS_H
#define HOTFFI_METRICS_H


#include "hotffi_core.h"


/* upper bounds of the latency buckets, ns; the last bucket is +Inf */
#define HOTFFI_METRICS_BUCKETS_NS                                           \
    10000, 25000, 50000, 100000, 250000, 500000,                            \
    1000000, 2500000, 5000000, 10000000, 25000000, 50000000,                \
    100000000, 250000000, 500000000, 1000000000, 2500000000ULL,             \
    5000000000ULL, 10000000000ULL

#define HOTFFI_METRICS_NBUCKETS  20     /* the bounds above and +Inf */


typedef struct {
    uint64_t   ok;             /* answered with rc 0, taken by the caller */
    uint64_t   error;          /* answered with another rc, taken */
    uint64_t   timeout;        /* the caller's timeout passed first */
    uint64_t   queue_full;     /* refused: the queue was full */
    uint64_t   unloaded;       /* refused: unloaded, or no version serves */
    uint64_t   abandoned;      /* given up otherwise: request gone,
                                  coroutine killed */
    uint64_t   bytes_in;       /* request bytes of the calls posted */
    uint64_t   bytes_out;      /* answer bytes of the calls finished */
    uint64_t   latency_sum_ns; /* over the calls in the buckets */
    uint64_t   latency[HOTFFI_METRICS_NBUCKETS];
} hotffi_metrics_t;


/* thread: event loop.  One answer that took ns; m is the runtime's. */
static inline void
hotffi_metrics_observe(hotffi_metrics_t *m, uint64_t ns)
{
    static const uint64_t  bounds[] = { HOTFFI_METRICS_BUCKETS_NS };
    unsigned               i;

    /* most calls take microseconds: the first bucket ends the loop */
    for (i = 0; i < HOTFFI_METRICS_NBUCKETS - 1 && ns > bounds[i]; i++) {
        /* void */
    }

    m->latency[i]++;
    m->latency_sum_ns += ns;
}


#endif /* HOTFFI_METRICS_H */
