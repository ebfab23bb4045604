/*
 * memcpy_bench.c -- the physical limit for the large-payload echo: how many
 * bytes per second one memcpy() of SIZE bytes moves between two warm,
 * already-faulted buffers on this machine.  An echo must copy its payload at
 * least once, so its bandwidth is compared against this.
 *
 * usage: memcpy_bench SIZE SECONDS   prints "<GB/s> <copies>" (GB = 1e9 B)
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static double
now(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


int
main(int argc, char **argv)
{
    char           *a, *b, *t;
    size_t          size;
    double          seconds, start, elapsed;
    unsigned long   copies;
    volatile char   sink;

    if (argc != 3) {
        fprintf(stderr, "usage: memcpy_bench SIZE SECONDS\n");
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
