/*
 * hotffi_logbuf.c -- runtimes' log lines on their way to the event loop
 * (see hotffi_logbuf.h).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi_logbuf.h"


/* a record in fill: this header, then len bytes of text */
typedef struct {
    int32_t    level;
    uint32_t   len;
} hotffi_logbuf_rec_t;


/* room for the cut marker: " [... 18446744073709551615 bytes cut]" */
#define HOTFFI_LOGBUF_MARK  40


/* thread: event loop */
int
hotffi_logbuf_init(hotffi_logbuf_t *lb, int level)
{
    memset(lb, 0, sizeof(hotffi_logbuf_t));

    if (level <= 0) {
        return HOTFFI_OK;
    }

    lb->fill = malloc(HOTFFI_LOGBUF_BYTES);
    lb->spare = malloc(HOTFFI_LOGBUF_BYTES);

    if (lb->fill == NULL || lb->spare == NULL
        || pthread_mutex_init(&lb->mtx, NULL) != 0)
    {
        free(lb->fill);
        free(lb->spare);
        lb->fill = NULL;
        lb->spare = NULL;
        return HOTFFI_ERROR;
    }

    if (level > HOTFFI_LEVEL_DEBUG) {
        level = HOTFFI_LEVEL_DEBUG;
    }

    atomic_store_explicit(&lb->level, level, memory_order_relaxed);

    return HOTFFI_OK;
}


/* thread: event loop */
void
hotffi_logbuf_free(hotffi_logbuf_t *lb)
{
    if (lb->fill == NULL) {
        return;
    }

    (void) pthread_mutex_destroy(&lb->mtx);
    free(lb->fill);
    free(lb->spare);
    lb->fill = NULL;
    lb->spare = NULL;
    atomic_store_explicit(&lb->level, 0, memory_order_relaxed);
}


/* thread: any */
int
hotffi_logbuf_push(hotffi_logbuf_t *lb, int level, const char *prefix,
    size_t prefix_len, const char *msg, size_t len)
{
    int                  first;
    char                *p, mark[HOTFFI_LOGBUF_MARK];
    size_t               keep, mark_len;
    hotffi_logbuf_rec_t  rec;

    /* a line too long keeps its start and says how much was cut */
    mark_len = 0;

    if (prefix_len + len > HOTFFI_LOGBUF_LINE_MAX) {
        keep = HOTFFI_LOGBUF_LINE_MAX - HOTFFI_LOGBUF_MARK;

        if (prefix_len > keep) {
            prefix_len = keep;
        }

        mark_len = (size_t) snprintf(mark, sizeof(mark), " [... %zu bytes "
                                     "cut]", prefix_len + len - keep);
        len = keep - prefix_len;
    }

    rec.level = level;
    rec.len = (uint32_t) (prefix_len + len + mark_len);

    (void) pthread_mutex_lock(&lb->mtx);

    if (lb->lines == HOTFFI_LOGBUF_LINES
        || HOTFFI_LOGBUF_BYTES - lb->used < sizeof(rec) + rec.len)
    {
        lb->dropped++;
        (void) pthread_mutex_unlock(&lb->mtx);
        return 0;
    }

    p = lb->fill + lb->used;
    memcpy(p, &rec, sizeof(rec));
    p += sizeof(rec);
    memcpy(p, prefix, prefix_len);
    memcpy(p + prefix_len, msg, len);

    if (mark_len) {
        memcpy(p + prefix_len + len, mark, mark_len);
    }

    first = lb->used == 0;
    lb->used += sizeof(rec) + rec.len;
    lb->lines++;
    atomic_store_explicit(&lb->ready, 1, memory_order_release);

    (void) pthread_mutex_unlock(&lb->mtx);

    return first;
}


/* thread: the drainer */
unsigned
hotffi_logbuf_drain(hotffi_logbuf_t *lb, hotffi_logbuf_sink_pt sink,
    void *ctx)
{
    char                *p, *end, line[80];
    uint64_t             dropped;
    unsigned             n;
    hotffi_logbuf_rec_t  rec;

    /* a hint: a line pushed after it is announced by its own wake-up */
    if (!atomic_load_explicit(&lb->ready, memory_order_acquire)) {
        return 0;
    }

    (void) pthread_mutex_lock(&lb->mtx);

    p = lb->fill;
    lb->fill = lb->spare;
    lb->spare = p;
    end = p + lb->used;
    dropped = lb->dropped;

    lb->used = 0;
    lb->lines = 0;
    lb->dropped = 0;
    atomic_store_explicit(&lb->ready, 0, memory_order_relaxed);

    (void) pthread_mutex_unlock(&lb->mtx);

    for (n = 0; p < end; n++) {
        memcpy(&rec, p, sizeof(rec));
        p += sizeof(rec);
        sink(ctx, rec.level, p, rec.len);
        p += rec.len;
    }

    if (dropped) {
        n++;
        sink(ctx, HOTFFI_LEVEL_WARN, line,
             (size_t) snprintf(line, sizeof(line), "%llu runtime log lines "
                               "dropped: the buffer was full",
                               (unsigned long long) dropped));
    }

    return n;
}
