/*
 * hotffi_spin.c -- bounded, adaptive busy-waiting (see hotffi_spin.h).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "hotffi_spin.h"
#include "hotffi_env.h"


#define HOTFFI_SPIN_US_MAX  1000000    /* a knob above 1 s is a typo */


static pthread_once_t  hotffi_spin_once = PTHREAD_ONCE_INIT;
static uint64_t        hotffi_spin_ns;
static uint64_t        hotffi_poll_spin_ns;

/* per thread: 1 when it may run on one CPU only, 0 otherwise, -1 unknown */
static __thread int    hotffi_spin_one_cpu = -1;

/* per runtime thread: the size of its last answer */
static __thread size_t  hotffi_spin_answer_bytes;


/* thread: any */
uint64_t
hotffi_spin_now(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}


static void
hotffi_spin_init(void)
{
    hotffi_spin_ns = hotffi_env_ns("HOTFFI_SPIN_US", HOTFFI_SPIN_US_MAX,
                                   1000, HOTFFI_SPIN_NS_DEFAULT);
    hotffi_poll_spin_ns = hotffi_env_ns("HOTFFI_POLL_SPIN_US",
                                        HOTFFI_SPIN_US_MAX, 1000,
                                        HOTFFI_POLL_SPIN_NS_DEFAULT);
}


/* thread: any */
uint64_t
hotffi_spin_window(void)
{
    (void) pthread_once(&hotffi_spin_once, hotffi_spin_init);
    return hotffi_spin_ns;
}


/* thread: any */
uint64_t
hotffi_spin_poll_window(void)
{
    (void) pthread_once(&hotffi_spin_once, hotffi_spin_init);
    return hotffi_poll_spin_ns;
}


/* thread: any */
void
hotffi_spin_pause(uint64_t spun, uint64_t yield_after)
{
    cpu_set_t  set;

    if (hotffi_spin_one_cpu == -1) {
        /*
         * Asked once per thread: the mask is inherited at creation and
         * nobody changes a running worker's (taskset starts it pinned).
         */
        hotffi_spin_one_cpu = sched_getaffinity(0, sizeof(set), &set) == 0
                              && CPU_COUNT(&set) == 1;
    }

    if (hotffi_spin_one_cpu || spun >= yield_after) {
        /* the thread we wait for may need this very CPU to progress */
        (void) sched_yield();
        return;
    }

#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__ ("yield" ::: "memory");
#else
    __asm__ __volatile__ ("" ::: "memory");
#endif
}


/* thread: any */
uint64_t
hotffi_spin_for(uint64_t window, size_t bytes)
{
    size_t  kib = bytes / 1024;

    if (window == 0 || window >= HOTFFI_SPIN_BYTES_MAX_NS) {
        return window;
    }

    /* compared before multiplying: no overflow, whatever the size */
    if (kib >= (HOTFFI_SPIN_BYTES_MAX_NS - window) / HOTFFI_SPIN_NS_PER_KIB) {
        return HOTFFI_SPIN_BYTES_MAX_NS;
    }

    return window + (uint64_t) kib * HOTFFI_SPIN_NS_PER_KIB;
}


/* thread: runtime */
void
hotffi_spin_note_answer(size_t bytes)
{
    hotffi_spin_answer_bytes = bytes;
}


/* thread: runtime */
size_t
hotffi_spin_last_answer(void)
{
    return hotffi_spin_answer_bytes;
}


/* thread: event loop */
int
hotffi_spin_want(hotffi_spin_t *s)
{
    if (s->skip) {
        s->skip--;
        return 0;
    }

    return 1;
}


/* thread: any */
uint64_t
hotffi_spin_yield_after(uint64_t wait)
{
    return wait * 2 > HOTFFI_SPIN_YIELD_NS ? wait * 2 : HOTFFI_SPIN_YIELD_NS;
}


/* thread: any */
uint64_t
hotffi_spin_average(uint64_t wait, uint64_t ns)
{
    /* 1/8 of the way: one odd call moves it little */
    return wait - wait / 8 + ns / 8;
}


/* thread: event loop */
void
hotffi_spin_record(hotffi_spin_t *s, int hit, uint64_t waited)
{
    if (hit) {
        s->hits++;
        s->backoff = 0;
        s->wait = hotffi_spin_average(s->wait, waited);
        return;
    }

    /* 1, 2, 4 ... calls without a spin: a slow runtime costs a window
     * now and then, and a fast one that had a hiccup is back soon */
    s->misses++;
    s->backoff = s->backoff ? s->backoff * 2 : 1;

    if (s->backoff > HOTFFI_SPIN_BACKOFF_MAX) {
        s->backoff = HOTFFI_SPIN_BACKOFF_MAX;
    }

    s->skip = s->backoff;
}


/* thread: event loop */
void
hotffi_spin_reset(hotffi_spin_t *s)
{
    s->skip = 0;
    s->backoff = 0;
}
