/*
 * test_ring.c -- the shared-memory ring of isolated runtimes
 * (src/isolate/hotffi_ring.c): records in order and intact across the
 * wrap, a producer and a consumer on two threads and in two processes
 * waking each other, a try-put that never waits, the close, a corrupted
 * ring refused, and the event loop's side (arm, eventfd wake-ups) as the
 * isolation's direct port uses it: one write per arm, none disarmed,
 * and no record or room ever missed by a loop that sleeps in poll().
 *
 * Built by src/isolate/isolate.mk with the ring alone (not the core).
 */

#define _GNU_SOURCE

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "hotffi_ring.h"


#define RING_SIZE     4096
#define RECORDS       20000
#define MAX_PAYLOAD   1500


/* one ring's shared part and data, in a mapping both sides may share */
typedef struct {
    hotffi_ring_shm_t  shm;
    unsigned char      data[RING_SIZE];
} ring_mem_t;


static ring_mem_t *
ring_map(hotffi_ring_t *r)
{
    ring_mem_t  *m;

    m = mmap(NULL, sizeof(ring_mem_t), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    hotffi_ring_attach(r, &m->shm, m->data, RING_SIZE, 1);
    return m;
}


/* record i's payload: its size and bytes follow from i alone */
static uint32_t
payload_len(uint64_t i)
{
    return (uint32_t) ((i * 7919) % MAX_PAYLOAD);
}


static void
payload_fill(uint64_t i, unsigned char *p, uint32_t len)
{
    uint32_t  k;

    for (k = 0; k < len; k++) {
        p[k] = (unsigned char) (i + k * 31);
    }
}


static void
produce(hotffi_ring_t *r, uint64_t n)
{
    uint64_t        i;
    uint32_t        len;
    unsigned char   buf[MAX_PAYLOAD];

    for (i = 0; i < n; i++) {
        len = payload_len(i);
        payload_fill(i, buf, len);
        assert_int_equal(hotffi_ring_put(r, i, (int32_t) i - 5, 0, buf, len),
                         HOTFFI_OK);
    }
}


/* takes n records, checking each; returns how many were bad */
static uint64_t
consume(hotffi_ring_t *r, uint64_t n, uint64_t spin_ns)
{
    int                rc;
    char              *p;
    uint64_t           i, bad;
    unsigned char      want[MAX_PAYLOAD];
    hotffi_ring_rec_t  rec;

    bad = 0;

    for (i = 0; i < n; ) {
        rc = hotffi_ring_take(r, &rec, &p);

        if (rc == HOTFFI_AGAIN) {
            rc = hotffi_ring_wait(r, spin_ns, 1000);
            if (rc == HOTFFI_DONE) {
                return bad + (n - i);
            }
            continue;
        }

        if (rc != HOTFFI_OK) {
            return bad + (n - i);
        }

        payload_fill(i, want, payload_len(i));
        bad += rec.id != i || rec.rc != (int32_t) i - 5
               || rec.len != payload_len(i)
               || memcmp(p, want, rec.len) != 0 || p[rec.len] != '\0';
        free(p);
        i++;
    }

    return bad;
}


static void
test_round_trip_and_wrap(void **state)
{
    char               *p;
    uint64_t            n;
    ring_mem_t         *m;
    hotffi_ring_t       r;
    hotffi_ring_rec_t   rec;

    m = ring_map(&r);

    /* a NULL payload, an empty one, and enough records to wrap often */
    assert_int_equal(hotffi_ring_put(&r, 1, 0, HOTFFI_RING_NULL, NULL, 0),
                     HOTFFI_OK);
    assert_int_equal(hotffi_ring_put(&r, 2, 0, 0, "", 0), HOTFFI_OK);
    assert_int_equal(hotffi_ring_take(&r, &rec, &p), HOTFFI_OK);
    assert_true(p == NULL && rec.id == 1 && (rec.flags & HOTFFI_RING_NULL));
    assert_int_equal(hotffi_ring_take(&r, &rec, &p), HOTFFI_OK);
    assert_true(p != NULL && rec.id == 2 && rec.len == 0 && p[0] == '\0');
    free(p);
    assert_int_equal(hotffi_ring_take(&r, &rec, &p), HOTFFI_AGAIN);

    for (n = 0; n < 200; n++) {
        produce(&r, 0);
        assert_int_equal(hotffi_ring_put(&r, n, 0, 0, "abcdefghij",
                                         (uint32_t) (n % 11)), HOTFFI_OK);
        assert_int_equal(hotffi_ring_take(&r, &rec, &p), HOTFFI_OK);
        assert_true(rec.id == n && rec.len == n % 11
                    && memcmp(p, "abcdefghij", rec.len) == 0);
        free(p);
    }

    /* the largest payload fits an empty ring; one byte more never does */
    n = hotffi_ring_max_payload(&r);
    p = calloc(1, n + 1);
    assert_non_null(p);
    assert_int_equal(hotffi_ring_put(&r, 9, 0, 0, p, (uint32_t) n + 1),
                     HOTFFI_DECLINED);
    assert_int_equal(hotffi_ring_put(&r, 9, 0, 0, p, (uint32_t) n),
                     HOTFFI_OK);
    free(p);
    assert_int_equal(hotffi_ring_take(&r, &rec, &p), HOTFFI_OK);
    assert_int_equal(rec.len, n);
    free(p);

    (void) munmap(m, sizeof(ring_mem_t));
}


static void *
producer_thread(void *arg)
{
    produce(arg, RECORDS);
    return NULL;
}


/* both sides wait: no spin on the consumer, a ring far smaller than the
 * traffic, so the producer sleeps on space and the consumer on data */
static void
test_two_threads(void **state)
{
    pthread_t       t;
    ring_mem_t     *m;
    hotffi_ring_t   r;

    m = ring_map(&r);
    assert_int_equal(pthread_create(&t, NULL, producer_thread, &r), 0);
    assert_int_equal(consume(&r, RECORDS, 0), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    (void) munmap(m, sizeof(ring_mem_t));
}


/* the same across two processes: futex words in a shared mapping */
static void
test_two_processes(void **state)
{
    int             status;
    pid_t           pid;
    ring_mem_t     *m;
    hotffi_ring_t   r;

    m = ring_map(&r);

    pid = fork();
    assert_true(pid >= 0);

    if (pid == 0) {
        produce(&r, RECORDS);
        _exit(0);
    }

    assert_int_equal(consume(&r, RECORDS, 20000), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    (void) munmap(m, sizeof(ring_mem_t));
}


static void *
closer_thread(void *arg)
{
    (void) usleep(50000);
    hotffi_ring_close(arg);
    return NULL;
}


/* a close wakes a sleeping consumer (DONE once empty) and a producer
 * waiting for space (DONE, nothing written) */
static void
test_close_wakes_both_sides(void **state)
{
    int                 rc, k;
    char               *p;
    pthread_t           t;
    ring_mem_t         *m;
    hotffi_ring_t       r;
    hotffi_ring_rec_t   rec;
    unsigned char       buf[1000];

    m = ring_map(&r);
    assert_int_equal(pthread_create(&t, NULL, closer_thread, &r), 0);

    do {
        rc = hotffi_ring_wait(&r, 0, 10000);
    } while (rc == HOTFFI_AGAIN);

    assert_int_equal(rc, HOTFFI_DONE);
    assert_int_equal(pthread_join(t, NULL), 0);
    (void) munmap(m, sizeof(ring_mem_t));

    m = ring_map(&r);
    memset(buf, 1, sizeof(buf));

    /* four records of 1024 bytes with their headers fill it */
    for (k = 0; k < 4; k++) {
        assert_int_equal(hotffi_ring_put(&r, 0, 0, 0, buf, 1000), HOTFFI_OK);
    }
    assert_int_equal(hotffi_ring_head(&r), RING_SIZE);

    assert_int_equal(pthread_create(&t, NULL, closer_thread, &r), 0);
    assert_int_equal(hotffi_ring_put(&r, 0, 0, 0, buf, 1000), HOTFFI_DONE);
    assert_int_equal(pthread_join(t, NULL), 0);

    /* what was written before the close is still taken, then DONE */
    while (hotffi_ring_take(&r, &rec, &p) == HOTFFI_OK) {
        free(p);
    }
    assert_int_equal(hotffi_ring_wait(&r, 0, 10), HOTFFI_DONE);
    (void) munmap(m, sizeof(ring_mem_t));
}


/* the peer is not trusted: bad counters and lengths are refused */
/* a full ring refuses a try-put at once and takes it once there is room */
static void
test_try_put_never_waits(void **state)
{
    int                 puts;
    char               *payload;
    ring_mem_t         *m;
    hotffi_ring_t       r;
    hotffi_ring_rec_t   rec;
    unsigned char       buf[1000];

    (void) state;
    m = ring_map(&r);
    memset(buf, 'x', sizeof(buf));

    for (puts = 0; hotffi_ring_try_put(&r, (uint64_t) puts + 1, 0, 0, buf,
                                       sizeof(buf)) == HOTFFI_OK; puts++)
    {
        assert_true(puts < RING_SIZE / (int) sizeof(buf));
    }

    assert_true(puts >= 1);
    assert_int_equal(hotffi_ring_try_put(&r, 99, 0, 0, buf, sizeof(buf)),
                     HOTFFI_AGAIN);

    assert_int_equal(hotffi_ring_take(&r, &rec, &payload), HOTFFI_OK);
    assert_int_equal(rec.id, 1);
    free(payload);

    assert_int_equal(hotffi_ring_try_put(&r, 99, 0, 0, buf, sizeof(buf)),
                     HOTFFI_OK);

    hotffi_ring_close(&r);
    assert_int_equal(hotffi_ring_try_put(&r, 100, 0, 0, buf, 1),
                     HOTFFI_DONE);

    (void) munmap(m, sizeof(ring_mem_t));
}


static void
test_corrupt_ring_refused(void **state)
{
    char               *p;
    ring_mem_t         *m;
    hotffi_ring_t       r;
    hotffi_ring_rec_t   rec;

    m = ring_map(&r);

    /* head far beyond tail */
    m->shm.head = RING_SIZE * 3;
    assert_int_equal(hotffi_ring_take(&r, &rec, &p), HOTFFI_ERROR);

    /* tail beyond head, as the producer sees it */
    m->shm.head = 0;
    m->shm.tail = 64;
    assert_int_equal(hotffi_ring_put(&r, 1, 0, 0, "x", 1), HOTFFI_ERROR);

    /* a record whose length runs past what was written */
    m->shm.tail = 0;
    assert_int_equal(hotffi_ring_put(&r, 1, 0, 0, "abc", 3), HOTFFI_OK);
    ((hotffi_ring_rec_t *) m->data)->len = 2000;
    assert_int_equal(hotffi_ring_take(&r, &rec, &p), HOTFFI_ERROR);

    /* a NULL record with a length */
    ((hotffi_ring_rec_t *) m->data)->len = 3;
    ((hotffi_ring_rec_t *) m->data)->flags = HOTFFI_RING_NULL;
    assert_int_equal(hotffi_ring_take(&r, &rec, &p), HOTFFI_ERROR);

    (void) munmap(m, sizeof(ring_mem_t));
}


/* eventfd's counter, read and reset; 0 when nothing was written */
static uint64_t
efd_take(int efd)
{
    uint64_t  n;

    if (read(efd, &n, sizeof(n)) != sizeof(n)) {
        return 0;
    }

    return n;
}


/* the event loop's side, one thread: each arm buys one write at most */
static void
test_eventfd_arm(void **state)
{
    int             efd;
    char           *p;
    ring_mem_t     *m;
    hotffi_ring_t   prod, cons;
    hotffi_ring_rec_t  rec;

    efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(efd != -1);

    m = ring_map(&cons);
    hotffi_ring_attach(&prod, &m->shm, m->data, RING_SIZE, 0);
    hotffi_ring_set_wake_fd(&prod, efd);

    /* not armed: no write */
    assert_int_equal(hotffi_ring_put(&prod, 1, 0, 0, "a", 1), HOTFFI_OK);
    assert_int_equal(efd_take(efd), 0);

    /* armed with a record there: the arm says so, take it */
    assert_int_equal(hotffi_ring_arm_data(&cons), 1);
    assert_int_equal(hotffi_ring_take(&cons, &rec, &p), HOTFFI_OK);
    free(p);

    /* armed on an empty ring: the next put writes once, the one after
     * does not (the flag was cleared by the first) */
    assert_int_equal(hotffi_ring_arm_data(&cons), 0);
    assert_int_equal(hotffi_ring_put(&prod, 2, 0, 0, "b", 1), HOTFFI_OK);
    assert_int_equal(hotffi_ring_put(&prod, 3, 0, 0, "c", 1), HOTFFI_OK);
    assert_int_equal(efd_take(efd), 1);
    assert_int_equal(hotffi_ring_ready(&cons), 1);

    /* disarmed (a spinning loop): no write */
    assert_int_equal(hotffi_ring_arm_data(&cons), 1);
    hotffi_ring_disarm_data(&cons);
    assert_int_equal(hotffi_ring_put(&prod, 4, 0, 0, "d", 1), HOTFFI_OK);
    assert_int_equal(efd_take(efd), 0);

    while (hotffi_ring_take(&cons, &rec, &p) == HOTFFI_OK) {
        free(p);
    }

    assert_int_equal(hotffi_ring_ready(&cons), 0);

    /* room: the producer's handle is the event loop's now, the consumer
     * (the helper) writes once room is made after the arm */
    hotffi_ring_set_wake_fd(&prod, -1);
    hotffi_ring_set_wake_fd(&cons, efd);

    while (hotffi_ring_try_put(&prod, 5, 0, 0, "0123456789", 10)
           == HOTFFI_OK)
    {
        /* void */
    }

    assert_true(hotffi_ring_space(&prod) < hotffi_ring_need(10));
    assert_int_equal(hotffi_ring_arm_space(&prod, hotffi_ring_need(10)), 0);
    assert_int_equal(efd_take(efd), 0);
    assert_int_equal(hotffi_ring_take(&cons, &rec, &p), HOTFFI_OK);
    free(p);
    assert_int_equal(efd_take(efd), 1);
    assert_true(hotffi_ring_space(&prod) >= hotffi_ring_need(10));
    assert_int_equal(hotffi_ring_arm_space(&prod, hotffi_ring_need(10)), 1);

    (void) close(efd);
    (void) munmap(m, sizeof(ring_mem_t));
}


typedef struct {
    hotffi_ring_t  *r;
    int             efd;
} efd_arg_t;


/*
 * The event loop's consumer: takes everything, arms, and sleeps in
 * poll() on the eventfd only when the arm found nothing.  A lost wake-up
 * shows as a poll() that times out with records waiting.
 */
static uint64_t
consume_polling(hotffi_ring_t *r, int efd, uint64_t n)
{
    int                rc;
    char              *p;
    uint64_t           i, bad;
    unsigned char      want[MAX_PAYLOAD];
    struct pollfd      pfd;
    hotffi_ring_rec_t  rec;

    bad = 0;

    for (i = 0; i < n; ) {
        rc = hotffi_ring_take(r, &rec, &p);

        if (rc == HOTFFI_AGAIN) {
            if (hotffi_ring_arm_data(r)) {
                continue;
            }

            pfd.fd = efd;
            pfd.events = POLLIN;

            if (poll(&pfd, 1, 5000) != 1) {
                /* armed, empty, and never woken: a lost wake-up */
                return bad + (n - i);
            }

            (void) efd_take(efd);
            continue;
        }

        if (rc != HOTFFI_OK) {
            return bad + (n - i);
        }

        payload_fill(i, want, payload_len(i));
        bad += rec.id != i || rec.len != payload_len(i)
               || memcmp(p, want, rec.len) != 0;
        free(p);
        i++;
    }

    return bad;
}


static void *
producer_eventfd_thread(void *a)
{
    efd_arg_t  *arg = a;

    produce(arg->r, RECORDS);
    return NULL;
}


/* the helper's answers: it puts (and sleeps on room, a futex), the loop
 * takes and sleeps in poll() */
static void
test_eventfd_answers(void **state)
{
    pthread_t       t;
    ring_mem_t     *m;
    efd_arg_t       arg;
    hotffi_ring_t   prod, cons;

    arg.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(arg.efd != -1);

    m = ring_map(&cons);
    hotffi_ring_attach(&prod, &m->shm, m->data, RING_SIZE, 0);
    hotffi_ring_set_wake_fd(&prod, arg.efd);
    arg.r = &prod;

    assert_int_equal(pthread_create(&t, NULL, producer_eventfd_thread, &arg),
                     0);
    assert_int_equal(consume_polling(&cons, arg.efd, RECORDS), 0);
    assert_int_equal(pthread_join(t, NULL), 0);

    (void) close(arg.efd);
    (void) munmap(m, sizeof(ring_mem_t));
}


static void *
consumer_eventfd_thread(void *a)
{
    efd_arg_t  *arg = a;

    return (void *) (uintptr_t) consume(arg->r, RECORDS, 0);
}


/* the loop's requests: it never waits in a put (try_put, then arms for
 * room and sleeps in poll()); the helper takes and sleeps on a futex */
static void
test_eventfd_requests(void **state)
{
    int             rc;
    void           *bad;
    uint64_t        i;
    uint32_t        len;
    pthread_t       t;
    ring_mem_t     *m;
    efd_arg_t       arg;
    struct pollfd   pfd;
    hotffi_ring_t   prod, cons;
    unsigned char   buf[MAX_PAYLOAD];

    arg.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(arg.efd != -1);

    m = ring_map(&prod);
    hotffi_ring_attach(&cons, &m->shm, m->data, RING_SIZE, 0);
    hotffi_ring_set_wake_fd(&cons, arg.efd);
    arg.r = &cons;

    assert_int_equal(pthread_create(&t, NULL, consumer_eventfd_thread, &arg),
                     0);

    for (i = 0; i < RECORDS; ) {
        len = payload_len(i);
        payload_fill(i, buf, len);
        rc = hotffi_ring_try_put(&prod, i, (int32_t) i - 5, 0, buf, len);

        if (rc == HOTFFI_OK) {
            i++;
            continue;
        }

        assert_int_equal(rc, HOTFFI_AGAIN);

        if (hotffi_ring_arm_space(&prod, hotffi_ring_need(len))) {
            continue;
        }

        pfd.fd = arg.efd;
        pfd.events = POLLIN;

        /* armed, full, and never woken would be a lost wake-up */
        assert_int_equal(poll(&pfd, 1, 5000), 1);
        (void) efd_take(arg.efd);
    }

    assert_int_equal(pthread_join(t, &bad), 0);
    assert_true(bad == NULL);

    (void) close(arg.efd);
    (void) munmap(m, sizeof(ring_mem_t));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_round_trip_and_wrap),
        cmocka_unit_test(test_two_threads),
        cmocka_unit_test(test_two_processes),
        cmocka_unit_test(test_close_wakes_both_sides),
        cmocka_unit_test(test_try_put_never_waits),
        cmocka_unit_test(test_corrupt_ring_refused),
        cmocka_unit_test(test_eventfd_arm),
        cmocka_unit_test(test_eventfd_answers),
        cmocka_unit_test(test_eventfd_requests),
    };

    /* a deadlock fails the program instead of hanging make */
    (void) alarm(120);

    return cmocka_run_group_tests(tests, NULL, NULL);
}
