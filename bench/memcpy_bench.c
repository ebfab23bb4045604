/*
 * memcpy_bench.c -- the physical limits for the large-payload echo.
 *
 * Default: how many bytes per second one memcpy() of SIZE bytes moves
 * between two warm, already-faulted buffers on one CPU.  An echo must copy
 * its payload at least once, so its bandwidth is compared against this.
 *
 * "cross": the same, but each copy reads what a thread on another CPU
 * wrote just before, as an echo's runtime thread reads the request and the
 * event loop reads the answer.  The two threads take turns, so it measures
 * one copy's cost when its source sits in the other CPU's cache.
 *
 * usage: memcpy_bench SIZE SECONDS [cross]   prints "<GB/s> <copies>"
 * (GB = 1e9 B)
 */

#define _GNU_SOURCE

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


typedef struct {
    char           *buf[2];
    size_t          size;
    unsigned long   turns;
    atomic_ulong    turn;       /* whose copy is next: turn % 2 */
    double          busy;       /* seconds spent copying, both threads */
} cross_t;


static double
now(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


/* Pins the calling thread to the n-th CPU it may use; 0 when there is none. */
static int
pin(int n)
{
    int        cpu;
    cpu_set_t  all, one;

    if (sched_getaffinity(0, sizeof(all), &all) != 0) {
        return 0;
    }

    for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &all) && n-- == 0) {
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            return pthread_setaffinity_np(pthread_self(), sizeof(one), &one)
                   == 0;
        }
    }

    return 0;
}


/*
 * Thread `me` (0 or 1) copies buffer me into buffer 1 - me on its turns;
 * the other thread wrote buffer me on its turn before.
 */
static void
cross_turns(cross_t *c, unsigned long me)
{
    double          start;
    unsigned long   t;

    for (t = me; t < c->turns; t += 2) {
        while (atomic_load_explicit(&c->turn, memory_order_acquire) != t) {
            /* spin: a sleep would measure the scheduler */
        }

        start = now();
        memcpy(c->buf[1 - me], c->buf[me], c->size);
        c->busy += now() - start;

        atomic_store_explicit(&c->turn, t + 1, memory_order_release);
    }
}


static void *
cross_thread(void *data)
{
    cross_t  *c = data;

    (void) pin(1);
    cross_turns(c, 1);

    return NULL;
}


static int
cross(char *a, char *b, size_t size, double seconds)
{
    double      start, one;
    cross_t     c;
    pthread_t   tid;

    if (!pin(0)) {
        fprintf(stderr, "memcpy_bench: cannot pin to a CPU\n");
        return 1;
    }

    /* as many turns as fit the time, judged by one local copy */
    start = now();
    memcpy(b, a, size);
    one = now() - start;

    memset(&c, 0, sizeof(c));
    c.buf[0] = a;
    c.buf[1] = b;
    c.size = size;
    c.turns = (unsigned long) (seconds / (one * 4 + 1e-7)) + 4;
    c.turns += c.turns % 2;
    atomic_init(&c.turn, 0);

    /* c: on this stack, shared with the thread until the join below;
     * turn orders every other access to it and to the buffers */
    if (pthread_create(&tid, NULL, cross_thread, &c) != 0) {
        fprintf(stderr, "memcpy_bench: pthread_create() failed\n");
        return 1;
    }

    cross_turns(&c, 0);
    (void) pthread_join(tid, NULL);

    printf("%.3f %lu\n", (double) size * c.turns / c.busy / 1e9, c.turns);

    return 0;
}


int
main(int argc, char **argv)
{
    int             rc;
    char           *a, *b, *t;
    size_t          size;
    double          seconds, start, elapsed;
    unsigned long   copies;
    volatile char   sink;

    if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "cross"))) {
        fprintf(stderr, "usage: memcpy_bench SIZE SECONDS [cross]\n");
        return 2;
    }

    size = strtoul(argv[1], NULL, 10);
    seconds = strtod(argv[2], NULL);

    if (size == 0 || seconds <= 0) {
        fprintf(stderr, "memcpy_bench: bad SIZE or SECONDS\n");
        return 2;
    }

    a = malloc(size);
    b = malloc(size);
    if (a == NULL || b == NULL) {
        fprintf(stderr, "memcpy_bench: out of memory\n");
        return 1;
    }

    /* fault both buffers in and warm them, outside the timing */
    memset(a, 'a', size);
    memset(b, 'b', size);
    memcpy(b, a, size);

    if (argc == 4) {
        rc = cross(a, b, size, seconds);
        free(a);
        free(b);
        return rc;
    }

    copies = 0;
    start = now();

    do {
        memcpy(b, a, size);
        sink = b[copies % size];
        t = a;
        a = b;
        b = t;
        copies++;
        elapsed = now() - start;
    } while (elapsed < seconds || copies < 3);

    (void) sink;

    printf("%.3f %lu\n", (double) size * copies / elapsed / 1e9, copies);

    free(a);
    free(b);

    return 0;
}
