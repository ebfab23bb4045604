/*
 * hog.c -- background CPU load for the busy-machine case of `make bench`
 * (bench/README.md, case 6).
 *
 *   hog THREADS SECONDS
 *
 * DESIGN
 * THREADS threads at normal priority, each a busy loop that never enters
 * the kernel, so that every CPU has one more runnable thread competing
 * with nginx, its runtime threads, wrk and the baselines: what a gateway
 * sees on a machine busy with other work.  bench/run.pl starts one hog
 * with a thread per CPU and stops it by PID.  So that it is never left
 * running whatever happens to the driver, it also ends by itself after
 * SECONDS, and when its parent dies (PR_SET_PDEATHSIG).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>


#define HOG_THREADS_MAX  1024


/* written by the hogs, read by nobody: keeps the loop from being elided */
static atomic_ulong  hog_sink;


static void *
hog_run(void *arg)
{
    unsigned long  n = 0;

    (void) arg;

    for ( ;; ) {
        n = n * 6364136223846793005UL + 1442695040888963407UL;

        if ((n & 0xffffff) == 0) {
            atomic_store_explicit(&hog_sink, n, memory_order_relaxed);
        }
    }

    return NULL;
}


int
main(int argc, char **argv)
{
    long       threads, seconds, i;
    pthread_t  tid;
    char      *end;

    if (argc != 3) {
        fprintf(stderr, "usage: hog THREADS SECONDS\n");
        return 2;
    }

    threads = strtol(argv[1], &end, 10);
    if (*end || threads < 1 || threads > HOG_THREADS_MAX) {
        fprintf(stderr, "hog: THREADS must be 1..%d, not \"%s\"\n",
                HOG_THREADS_MAX, argv[1]);
        return 2;
    }

    seconds = strtol(argv[2], &end, 10);
    if (*end || seconds < 1 || seconds > 86400) {
        fprintf(stderr, "hog: SECONDS must be 1..86400, not \"%s\"\n",
                argv[2]);
        return 2;
    }

    /* the driver gone, the load goes too */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() == 1) {
        return 1;
    }

    for (i = 0; i < threads; i++) {
        if (pthread_create(&tid, NULL, hog_run, NULL) != 0) {
            fprintf(stderr, "hog: pthread_create failed\n");
            return 1;
        }
    }

    /* the hogs end with the process */
    (void) sleep((unsigned) seconds);

    return 0;
}
