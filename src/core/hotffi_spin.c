/*
 * hotffi_spin.c -- bounded, adaptive busy-waiting (see hotffi_spin.h).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "hotffi_spin.h"
#include "hotffi_env.h"


#define HOTFFI_SPIN_US_MAX  1000000    /* a knob above 1 s is a typo */


static pthread_once_t  hotffi_spin_once = PTHREAD_ONCE_INIT;
static uint64_t        hotffi_spin_ns;
static uint64_t        hotffi_poll_spin_ns;

/* the machine's load (hotffi_spin_busy()); the fd: once, never closed */
static int             hotffi_spin_load_fd = -1;
static unsigned        hotffi_spin_cpus;
static atomic_ullong   hotffi_spin_load_at;      /* ns of the last sample */
static atomic_uint     hotffi_spin_load_avg;     /* see hotffi_spin.h */
static atomic_uint     hotffi_spin_load_over;    /* see hotffi_spin.h */
static atomic_int      hotffi_spin_load_is_busy;
static atomic_int      hotffi_spin_load_is_crowded;
static atomic_int      hotffi_spin_load_forced = -1;

/* per thread: 1 when it may run on one CPU only, 0 otherwise, -1 unknown */
static __thread int    hotffi_spin_one_cpu = -1;

/* per runtime thread: its last answer (size, when: 0 once learned from),
 * and the event loop's turnaround per KiB of answer it learned */
static __thread size_t    hotffi_spin_answer_bytes;
static __thread uint64_t  hotffi_spin_answer_at;
static __thread uint32_t  hotffi_spin_turnaround_rate;


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

    /* a process without /proc, or told so, is never busy: spinning as
     * configured whatever the load */
    if (hotffi_env_ns("HOTFFI_SPIN_LOAD", 1, 1, 1)) {
        hotffi_spin_load_fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    }

    hotffi_spin_cpus = (unsigned) sysconf(_SC_NPROCESSORS_ONLN) > 0
                       ? (unsigned) sysconf(_SC_NPROCESSORS_ONLN) : 1;
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
hotffi_spin_for(uint64_t window, size_t bytes, uint32_t ns_per_kib)
{
    size_t    kib = bytes / 1024;
    uint64_t  rate;

    if (window == 0 || window >= HOTFFI_SPIN_BYTES_MAX_NS || ns_per_kib == 0) {
        return window;
    }

    /* the rate is a mean: a quarter more covers most calls above it */
    rate = (uint64_t) ns_per_kib + ns_per_kib / 4;

    /* compared before multiplying: no overflow, whatever the size */
    if (kib >= (HOTFFI_SPIN_BYTES_MAX_NS - window) / rate) {
        return HOTFFI_SPIN_BYTES_MAX_NS;
    }

    return window + (uint64_t) kib * rate;
}


/* thread: any */
uint32_t
hotffi_spin_rate_learn(uint32_t rate, uint64_t ns, size_t bytes)
{
    uint64_t  sample;

    if (bytes < HOTFFI_SPIN_LEARN_BYTES) {
        return rate;
    }

    if (ns > HOTFFI_SPIN_BYTES_MAX_NS) {
        ns = HOTFFI_SPIN_BYTES_MAX_NS;
    }

    /* bytes >= 32 KiB and ns <= 0.5 ms: at most 15625, never 0 */
    sample = ns * 1024 / bytes;
    sample = sample ? sample : 1;

    if (rate == 0) {
        return (uint32_t) sample;
    }

    return (uint32_t) (rate - rate / 4 + sample / 4);
}


/* thread: runtime */
void
hotffi_spin_note_answer(size_t bytes)
{
    hotffi_spin_answer_bytes = bytes;
    hotffi_spin_answer_at = bytes >= HOTFFI_SPIN_LEARN_BYTES
                            ? hotffi_spin_now() : 0;
}


/* thread: runtime */
void
hotffi_spin_note_next(uint64_t posted)
{
    uint64_t  at = hotffi_spin_answer_at;

    /* a task posted before this thread's answer says nothing of the loop's
     * turnaround (another caller's, under concurrency) */
    if (at == 0) {
        return;
    }

    posted = posted ? posted : hotffi_spin_now();

    if (posted <= at) {
        return;
    }

    hotffi_spin_turnaround_rate = hotffi_spin_rate_learn(
                                      hotffi_spin_turnaround_rate,
                                      posted - at, hotffi_spin_answer_bytes);
    hotffi_spin_answer_at = 0;
}


/* thread: runtime */
uint32_t
hotffi_spin_turnaround(void)
{
    return hotffi_spin_turnaround_rate;
}


/* thread: runtime */
uint64_t
hotffi_spin_poll_for(void)
{
    return hotffi_spin_for(hotffi_spin_poll_window(),
                           hotffi_spin_answer_bytes,
                           hotffi_spin_turnaround_rate);
}


/* thread: owner of s */
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


/* thread: owner of s */
void
hotffi_spin_record(hotffi_spin_t *s, int hit, uint64_t waited)
{
    if (hit) {
        s->hits++;
        s->backoff = 0;
        s->wait = hotffi_spin_average(s->wait, waited);
        return;
    }

    /* 1, 4, 16 ... calls without a spin: a slow runtime costs a window
     * now and then, and a fast one that had a hiccup is back soon */
    s->misses++;
    s->backoff = s->backoff ? s->backoff * HOTFFI_SPIN_BACKOFF_FACTOR : 1;

    if (s->backoff > HOTFFI_SPIN_BACKOFF_MAX) {
        s->backoff = HOTFFI_SPIN_BACKOFF_MAX;
    }

    s->skip = s->backoff;
}


/* thread: owner of s */
void
hotffi_spin_reset(hotffi_spin_t *s)
{
    /* the rest ends; the back-off stays until a spin hits */
    s->skip = 0;
}


/* thread: any */
int
hotffi_spin_load_parse(const char *text, size_t len)
{
    size_t  i, field = 0;
    int     n = -1;

    /* the 4th field, "running/total" */
    for (i = 0; i < len && field < 3; i++) {
        if (text[i] == ' ' && i + 1 < len && text[i + 1] != ' ') {
            field++;
        }
    }

    for ( /* void */ ; i < len && text[i] >= '0' && text[i] <= '9'; i++) {
        if (n > 100000) {
            return -1;
        }

        n = (n < 0 ? 0 : n * 10) + (text[i] - '0');
    }

    return field == 3 && i < len && text[i] == '/' ? n : -1;
}


/* thread: any */
uint32_t
hotffi_spin_load_average(uint32_t avg, unsigned running)
{
    if (running > 65536) {
        running = 65536;
    }

    if (avg == 0) {
        /* the first sample: taken as it is, not averaged with nothing */
        return running * HOTFFI_SPIN_LOAD_ONE;
    }

    /* 1/4 of the way: one odd sample moves it little, a change shows
     * within a few samples (tens of ms) */
    return avg - avg / 4 + running * HOTFFI_SPIN_LOAD_ONE / 4;
}


/* thread: any */
uint32_t
hotffi_spin_load_share(uint32_t share, unsigned running, unsigned cpus)
{
    uint32_t  sample = running > cpus ? HOTFFI_SPIN_SHARE_ONE : 0;

    /* 1/4 of the way, as the average */
    return share - share / 4 + sample / 4;
}


/* thread: any */
int
hotffi_spin_load_busy(uint32_t share)
{
    return share >= HOTFFI_SPIN_SHARE_BUSY;
}


/* thread: any */
int
hotffi_spin_load_crowded(uint32_t avg, unsigned cpus)
{
    /* the reader and its partner taking turns fit on one CPU */
    return avg >= (cpus + 2) * HOTFFI_SPIN_LOAD_ONE;
}


/* thread: any */
int
hotffi_spin_busy(void)
{
    char      buf[128];
    ssize_t   n;
    uint64_t  now, at;
    int       running;
    uint32_t  avg, share;

    int       forced;

    forced = atomic_load_explicit(&hotffi_spin_load_forced,
                                  memory_order_relaxed);
    if (forced >= 0) {
        return forced;
    }

    (void) pthread_once(&hotffi_spin_once, hotffi_spin_init);

    if (hotffi_spin_load_fd == -1) {
        return 0;
    }

    now = hotffi_spin_now();
    at = atomic_load_explicit(&hotffi_spin_load_at, memory_order_relaxed);

    /* one thread samples; the others go on with the last decision */
    if (now - at < HOTFFI_SPIN_LOAD_EVERY_NS
        || !atomic_compare_exchange_strong_explicit(&hotffi_spin_load_at,
                                                    &at, now,
                                                    memory_order_relaxed,
                                                    memory_order_relaxed))
    {
        return atomic_load_explicit(&hotffi_spin_load_is_busy,
                                    memory_order_relaxed);
    }

    n = pread(hotffi_spin_load_fd, buf, sizeof(buf), 0);
    running = n > 0 ? hotffi_spin_load_parse(buf, (size_t) n) : -1;

    if (running < 0) {
        return atomic_load_explicit(&hotffi_spin_load_is_busy,
                                    memory_order_relaxed);
    }

    /* only the sampler writes them (the CAS above): load and store
     * suffice */
    avg = hotffi_spin_load_average(
              atomic_load_explicit(&hotffi_spin_load_avg,
                                   memory_order_relaxed),
              (unsigned) running);
    atomic_store_explicit(&hotffi_spin_load_avg, avg, memory_order_relaxed);

    share = hotffi_spin_load_share(
                atomic_load_explicit(&hotffi_spin_load_over,
                                     memory_order_relaxed),
                (unsigned) running, hotffi_spin_cpus);
    atomic_store_explicit(&hotffi_spin_load_over, share,
                          memory_order_relaxed);
    atomic_store_explicit(&hotffi_spin_load_is_busy,
                          hotffi_spin_load_busy(share),
                          memory_order_relaxed);
    atomic_store_explicit(&hotffi_spin_load_is_crowded,
                          hotffi_spin_load_crowded(avg, hotffi_spin_cpus),
                          memory_order_relaxed);

    return atomic_load_explicit(&hotffi_spin_load_is_busy,
                                memory_order_relaxed);
}


/* thread: any */
int
hotffi_spin_crowded(void)
{
    int  forced;

    forced = atomic_load_explicit(&hotffi_spin_load_forced,
                                  memory_order_relaxed);

    return forced >= 0 ? forced
                       : atomic_load_explicit(&hotffi_spin_load_is_crowded,
                                              memory_order_relaxed);
}



/* thread: any */
void
hotffi_spin_busy_force(int busy)
{
    atomic_store_explicit(&hotffi_spin_load_forced, busy < 0 ? -1 : !!busy,
                          memory_order_relaxed);
}
