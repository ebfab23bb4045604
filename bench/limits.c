/*
 * limits.c -- what this machine allows an echo at best, measured in the
 * same run as hotffi, so that each target can be read against it.
 *
 * memcpy     one memcpy() of SIZE bytes between two warm, already-faulted
 *            buffers on one CPU: an echo copies its payload at least once.
 * echo       the barest cross-thread echo: a "runtime" thread on one CPU
 *            answers each request with a malloc()ed copy of it (as
 *            examples/c/echo.c does), the "caller" on another CPU compares
 *            the answer with the request (as LuaJIT does when it interns an
 *            answer equal to a string it holds) and frees it.  The turn
 *            passes by spinning on an atomic: no queue, no system call, no
 *            sleep.  Any echo whose answer is made by another thread pays
 *            at least this.
 * echo-1cpu  the same with both threads on one CPU, where a waiting thread
 *            can only sched_yield() to the other: the least a round trip
 *            between two threads costs there.
 * echo-park  the same with the threads wherever the scheduler puts them,
 *            neither spinning: the runtime thread waits for its turn on a
 *            futex, woken by a futex wake; the caller waits as an event
 *            loop does, in epoll_wait() on an eventfd that the runtime
 *            writes, and reads it.  The least a round trip costs a design
 *            that parks and answers into an event loop: two wake-ups (the
 *            busy machine's bound).
 *
 * usage: limits memcpy|echo|echo-1cpu|echo-park SIZE SECONDS
 * prints "<GB/s> <us per copy or round trip> <copies or round trips>"
 * (GB = 1e9 B; an echo's GB/s is one direction's bytes over its time),
 * and for an echo " <us per round trip of the median 16-trip chunk>", as
 * the benchmark's own sequential runs report.
 */

#define _GNU_SOURCE

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>


/*
 * Untimed first: the allocator, the caches, and a vCPU that was idle (a
 * hypervisor may take a while to give it back at full speed).
 */
#define ECHO_WARM_TRIPS     16
#define ECHO_WARM_SHARE     10    /* a tenth of the time asked for */

#define ECHO_CHUNK          16    /* round trips per chunk */
#define ECHO_CHUNKS_MAX     65536 /* chunks timed; later ones are not */


typedef enum {
    ECHO_SPIN,                  /* echo */
    ECHO_YIELD,                 /* echo-1cpu */
    ECHO_PARK                   /* echo-park */
} echo_wait_t;


typedef struct {
    const char     *req;        /* written once, then only read by both */
    size_t          size;
    echo_wait_t     how;
    atomic_int      stop;       /* set by the caller before its last turn */
    /*
     * Even turns are the caller's, odd ones the runtime's; `turn` orders
     * every access to `answer`, which the runtime thread malloc()s and
     * hands over, and the caller frees.  32 bits: the futex word.
     */
    atomic_uint     turn;
    char           *answer;
    int             efd;        /* echo-park: the caller's eventfd ... */
    int             epfd;       /* ... in its epoll set */
} echo_t;


static double
now(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


/* The CPU id of the n-th CPU this process may use; -1 when there is none. */
static int
nth_cpu(int n)
{
    int        cpu;
    cpu_set_t  all;

    if (sched_getaffinity(0, sizeof(all), &all) != 0) {
        return -1;
    }

    for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &all) && n-- == 0) {
            return cpu;
        }
    }

    return -1;
}


/* even turns are the caller's: in echo-park it waits on its eventfd */
static void
echo_wait(echo_t *e, unsigned turn)
{
    unsigned             now;
    uint64_t             n;
    struct epoll_event   ev;

    while ((now = atomic_load_explicit(&e->turn, memory_order_acquire))
           != turn)
    {
        if (e->how == ECHO_YIELD) {
            (void) sched_yield();

        } else if (e->how == ECHO_PARK && turn % 2 == 0) {
            if (epoll_wait(e->epfd, &ev, 1, -1) == 1) {
                (void) !read(e->efd, &n, sizeof(n));
            }

        } else if (e->how == ECHO_PARK) {
            (void) syscall(SYS_futex, &e->turn, FUTEX_WAIT_PRIVATE, now,
                           NULL, NULL, 0);
        }
        /* else spin: a sleep would measure the scheduler */
    }
}


static void
echo_pass(echo_t *e, unsigned turn)
{
    uint64_t  one = 1;

    atomic_store_explicit(&e->turn, turn, memory_order_release);

    if (e->how == ECHO_PARK && turn % 2 == 0) {
        (void) !write(e->efd, &one, sizeof(one));

    } else if (e->how == ECHO_PARK) {
        (void) syscall(SYS_futex, &e->turn, FUTEX_WAKE_PRIVATE, 1, NULL,
                       NULL, 0);
    }
}


static void *
echo_runtime(void *data)
{
    echo_t         *e = data;
    unsigned        t;

    for (t = 1; /* void */; t += 2) {
        echo_wait(e, t);

        if (atomic_load_explicit(&e->stop, memory_order_relaxed)) {
            return NULL;
        }

        e->answer = malloc(e->size + 1);
        if (e->answer == NULL) {
            fprintf(stderr, "limits: out of memory\n");
            exit(1);
        }

        memcpy(e->answer, e->req, e->size);
        e->answer[e->size] = '\0';

        echo_pass(e, t + 1);
    }
}


static int
by_value(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


static int
echo(const char *req, size_t size, double seconds, echo_wait_t how)
{
    static double    chunks[ECHO_CHUNKS_MAX];
    size_t           nchunks;
    double           mark;
    int              cpu[2], warm;
    double           start, elapsed;
    echo_t           e;
    cpu_set_t        set;
    pthread_t        tid;
    pthread_attr_t   attr;
    unsigned         t;
    unsigned long    trips;

    cpu[0] = nth_cpu(0);
    cpu[1] = how == ECHO_YIELD ? cpu[0] : nth_cpu(1);

    if (cpu[0] == -1 || cpu[1] == -1) {
        fprintf(stderr, "limits: echo needs %s CPU%s\n",
                how == ECHO_YIELD ? "a" : "two",
                how == ECHO_YIELD ? "" : "s");
        return 1;
    }

    /* parked threads go where the scheduler puts them, as hotffi's do */
    CPU_ZERO(&set);
    CPU_SET(cpu[0], &set);
    if (how != ECHO_PARK && sched_setaffinity(0, sizeof(set), &set) != 0) {
        fprintf(stderr, "limits: cannot pin to CPU %d\n", cpu[0]);
        return 1;
    }

    memset(&e, 0, sizeof(e));
    e.req = req;
    e.size = size;
    e.how = how;
    atomic_init(&e.stop, 0);
    atomic_init(&e.turn, 0);
    e.efd = -1;
    e.epfd = -1;

    if (how == ECHO_PARK) {
        struct epoll_event  ev = { .events = EPOLLIN };

        e.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        e.epfd = epoll_create1(EPOLL_CLOEXEC);

        if (e.efd == -1 || e.epfd == -1
            || epoll_ctl(e.epfd, EPOLL_CTL_ADD, e.efd, &ev) != 0)
        {
            fprintf(stderr, "limits: no eventfd or epoll\n");
            return 1;
        }
    }

    CPU_ZERO(&set);
    CPU_SET(cpu[1], &set);

    /* e: on this stack, shared with the thread until the join below */
    if (pthread_attr_init(&attr) != 0
        || (how != ECHO_PARK
            && pthread_attr_setaffinity_np(&attr, sizeof(set), &set) != 0)
        || pthread_create(&tid, &attr, echo_runtime, &e) != 0)
    {
        fprintf(stderr, "limits: cannot start a thread on CPU %d\n",
                cpu[1]);
        return 1;
    }

    (void) pthread_attr_destroy(&attr);

    warm = 1;
    start = now();
    elapsed = 0;
    trips = 0;
    nchunks = 0;
    mark = 0;

    for (t = 0; /* void */; t += 2) {
        echo_wait(&e, t);

        if (t > 0) {
            if (memcmp(e.answer, req, size) != 0) {
                fprintf(stderr, "limits: wrong answer\n");
                exit(1);
            }
            free(e.answer);
            trips++;
        }

        elapsed = now() - start;

        if (warm) {
            if (trips >= ECHO_WARM_TRIPS
                && elapsed >= seconds / ECHO_WARM_SHARE)
            {
                warm = 0;
                trips = 0;
                start = now();
                elapsed = 0;
            }

        } else if (elapsed >= seconds && trips >= 3) {
            break;

        } else if (trips % ECHO_CHUNK == 0 && trips > 0
                   && nchunks < ECHO_CHUNKS_MAX)
        {
            chunks[nchunks++] = elapsed - mark;
            mark = elapsed;
        }

        echo_pass(&e, t + 1);
    }

    atomic_store_explicit(&e.stop, 1, memory_order_relaxed);
    echo_pass(&e, t + 1);
    (void) pthread_join(tid, NULL);

    if (how == ECHO_PARK) {
        (void) close(e.epfd);
        (void) close(e.efd);
    }

    qsort(chunks, nchunks, sizeof(double), by_value);

    printf("%.3f %.3f %lu %.3f\n", (double) size * trips / elapsed / 1e9,
           elapsed / trips * 1e6, trips,
           nchunks ? chunks[nchunks / 2] / ECHO_CHUNK * 1e6
                   : elapsed / trips * 1e6);

    return 0;
}


static int
copy(const char *a, size_t size, double seconds)
{
    char            *b;
    double           start, elapsed;
    unsigned long    copies;
    volatile char    sink;

    b = malloc(size);
    if (b == NULL) {
        fprintf(stderr, "limits: out of memory\n");
        return 1;
    }

    /* fault the copy in and warm both buffers, outside the timing */
    memcpy(b, a, size);

    copies = 0;
    start = now();

    do {
        memcpy(b, a, size);
        sink = b[copies % size];    /* the copy is used: not elided */
        copies++;
        elapsed = now() - start;
    } while (elapsed < seconds || copies < 3);

    (void) sink;

    printf("%.3f %.3f %lu\n", (double) size * copies / elapsed / 1e9,
           elapsed / copies * 1e6, copies);

    free(b);

    return 0;
}


int
main(int argc, char **argv)
{
    int      rc;
    char    *buf;
    size_t   size;
    double   seconds;

    if (argc != 4 || (strcmp(argv[1], "memcpy") && strcmp(argv[1], "echo")
                      && strcmp(argv[1], "echo-1cpu")
                      && strcmp(argv[1], "echo-park")))
    {
        fprintf(stderr, "usage: limits memcpy|echo|echo-1cpu|echo-park "
                "SIZE SECONDS\n");
        return 2;
    }

    size = strtoul(argv[2], NULL, 10);
    seconds = strtod(argv[3], NULL);

    if (size == 0 || seconds <= 0) {
        fprintf(stderr, "limits: bad SIZE or SECONDS\n");
        return 2;
    }

    buf = malloc(size);
    if (buf == NULL) {
        fprintf(stderr, "limits: out of memory\n");
        return 1;
    }

    /* every byte value, as the benchmark's payloads */
    for (size_t i = 0; i < size; i++) {
        buf[i] = (char) (i * 7 + 1);
    }

    if (strcmp(argv[1], "memcpy") == 0) {
        rc = copy(buf, size, seconds);
    } else {
        rc = echo(buf, size, seconds,
                  strcmp(argv[1], "echo-1cpu") == 0 ? ECHO_YIELD
                  : strcmp(argv[1], "echo-park") == 0 ? ECHO_PARK
                  : ECHO_SPIN);
    }

    free(buf);

    return rc;
}
