/*
 * test_spin.c -- the spin policy's decisions (src/core/hotffi_spin.c),
 * driven with made-up inputs: the machine's load as /proc/loadavg would
 * show it, a history of hits and misses, and the other side's times per
 * KiB.  Nothing here measures time or depends on the machine the test
 * runs on; the windows are the defaults (no HOTFFI_*SPIN_US set).
 */

#define _GNU_SOURCE

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "hotffi_sched.h"
#include "hotffi_spin.h"


#define ONE  HOTFFI_SPIN_LOAD_ONE
#define KIB  1024
#define MAX  HOTFFI_SPIN_BYTES_MAX_NS


static int
parse(const char *text)
{
    return hotffi_spin_load_parse(text, strlen(text));
}


/* the running count, and text without one refused */
static void
test_load_parse(void **state)
{
    (void) state;

    assert_int_equal(parse("0.52 0.58 0.59 3/467 12345\n"), 3);
    assert_int_equal(parse("12.00 8.10 4.00 17/1200 99\n"), 17);
    assert_int_equal(parse("0.00 0.00 0.00 0/1 1"), 0);

    assert_int_equal(parse(""), -1);
    assert_int_equal(parse("0.52 0.58 0.59"), -1);
    assert_int_equal(parse("0.52 0.58 0.59 3"), -1);
    assert_int_equal(parse("0.52 0.58 0.59 x/467 1"), -1);
    assert_int_equal(parse("0.52 0.58 0.59 99999999999/467 1"), -1);

    /* a cut read: the length counts, not a NUL */
    assert_int_equal(hotffi_spin_load_parse("0.5 0.5 0.5 3/4", 13), -1);
}


/* the first sample is taken whole, later ones a quarter of the way */
static void
test_load_average(void **state)
{
    uint32_t  avg;
    int       i;

    (void) state;

    avg = hotffi_spin_load_average(0, 2);
    assert_int_equal(avg, 2 * ONE);

    avg = hotffi_spin_load_average(avg, 6);
    assert_int_equal(avg, 3 * ONE);

    /* a steady input is reached, and kept */
    for (i = 0; i < 64; i++) {
        avg = hotffi_spin_load_average(avg, 4);
    }
    assert_in_range(avg, 4 * ONE - 3, 4 * ONE);

    /* an absurd count is bounded, no overflow */
    avg = hotffi_spin_load_average(avg, 4000000000u);
    assert_true(avg <= 65536 * ONE);
}


/* the share of samples over cpus after these counts, from none */
static uint32_t
share_of(const unsigned *running, int n, unsigned cpus, int rounds)
{
    uint32_t  share = 0;
    int       r, i;

    for (r = 0; r < rounds; r++) {
        for (i = 0; i < n; i++) {
            share = hotffi_spin_load_share(share, running[i], cpus);
        }
    }

    return share;
}


/*
 * Busy: more runnable threads than CPUs in more than about a third of the
 * samples.  On 2 CPUs the reader and its partner spinning (2) are quiet;
 * with a hog per CPU (4 and more) busy at every sample; with an HTTP
 * client on the same machine (3 about half the time, else 2) busy too.
 */
static void
test_load_busy(void **state)
{
    static const unsigned  quiet[] = { 2 };
    static const unsigned  hogs[] = { 4, 5 };
    static const unsigned  client[] = { 3, 2 };
    /* ends on its over sample: the share's highest */
    static const unsigned  now_and_then[] = { 2, 2, 2, 3 };
    uint32_t               share;
    int                    i;

    (void) state;

    assert_false(hotffi_spin_load_busy(share_of(quiet, 1, 2, 100)));
    assert_true(hotffi_spin_load_busy(share_of(hogs, 2, 2, 100)));
    assert_true(hotffi_spin_load_busy(share_of(client, 2, 2, 100)));
    assert_false(hotffi_spin_load_busy(share_of(now_and_then, 4, 2, 100)));

    /* more CPUs take more load: a hog per CPU of 2 leaves 8 quiet */
    assert_false(hotffi_spin_load_busy(share_of(hogs, 2, 8, 100)));

    /* one CPU: the reader and its partner are one too many already */
    assert_true(hotffi_spin_load_busy(share_of(quiet, 1, 1, 100)));

    /* a quiet machine's one odd sample does not stop spinning ... */
    share = hotffi_spin_load_share(0, 5, 2);
    assert_false(hotffi_spin_load_busy(share));

    /* ... a lasting load does from the second sample, and its end within
     * four */
    share = hotffi_spin_load_share(share, 5, 2);
    assert_true(hotffi_spin_load_busy(share));

    for (i = 0; i < 10; i++) {
        share = hotffi_spin_load_share(share, 5, 2);
    }
    assert_true(hotffi_spin_load_busy(share));

    for (i = 0; i < 4; i++) {
        share = hotffi_spin_load_share(share, 2, 2);
    }
    assert_false(hotffi_spin_load_busy(share));

    /* never above the whole; from the whole, a long quiet spell ends it
     * (the integer share may keep a remainder, never one that is busy) */
    assert_true(share_of(hogs, 2, 2, 1000) <= HOTFFI_SPIN_SHARE_ONE);
    share = HOTFFI_SPIN_SHARE_ONE;
    for (i = 0; i < 1000; i++) {
        share = hotffi_spin_load_share(share, 2, 2);
    }
    assert_false(hotffi_spin_load_busy(share));
}


static void
test_load_crowded(void **state)
{
    uint32_t  avg;
    int       i;

    (void) state;

    /* the count's average: one odd sample moves it little, a lasting
     * load moves it within a few samples */
    avg = hotffi_spin_load_average(0, 2);
    avg = hotffi_spin_load_average(avg, 5);
    assert_false(hotffi_spin_load_crowded(avg, 2));

    for (i = 0; i < 4; i++) {
        avg = hotffi_spin_load_average(avg, 5);
    }
    assert_true(hotffi_spin_load_crowded(avg, 2));

    /*
     * crowded, one thread further: on 2 CPUs, wrk, the event loop and its
     * runtime thread (3) leave a CPU to the two that take turns; a hog per
     * CPU beside those two (4) does not
     */
    assert_false(hotffi_spin_load_crowded(3 * ONE, 2));
    assert_false(hotffi_spin_load_crowded(4 * ONE - 1, 2));
    assert_true(hotffi_spin_load_crowded(4 * ONE, 2));
    assert_false(hotffi_spin_load_crowded(2 * ONE, 1));
    assert_true(hotffi_spin_load_crowded(3 * ONE, 1));
}


/*
 * In a child process, whose knob is read afresh: HOTFFI_POLL_BATCH as
 * given (NULL: unset), then a waiting poller's turn on a machine that is
 * not crowded; exits with the policy the child's thread has after it.
 */
static int
policy_with_knob(const char *knob)
{
    int    status;
    pid_t  pid;

    pid = fork();
    assert_true(pid >= 0);

    if (pid == 0) {
        if (knob != NULL) {
            (void) setenv("HOTFFI_POLL_BATCH", knob, 1);
        } else {
            (void) unsetenv("HOTFFI_POLL_BATCH");
        }

        hotffi_sched_poller(0);
        _exit(sched_getscheduler(0));
    }

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));

    return WEXITSTATUS(status);
}


static void
test_sched_knob(void **state)
{
    (void) state;

    /* on unless turned off */
    assert_int_equal(policy_with_knob(NULL), SCHED_BATCH);
    assert_int_equal(policy_with_knob("0"), SCHED_OTHER);
    assert_int_equal(policy_with_knob("1"), SCHED_BATCH);
}


static unsigned
skipped(hotffi_spin_t *s)
{
    unsigned  n = 0;

    while (!hotffi_spin_want(s)) {
        n++;
    }

    return n;
}


/* misses in a row: 1, 4, 16, 64, 256, 256 calls without a spin */
static void
test_backoff_fast(void **state)
{
    hotffi_spin_t  s;
    unsigned       expect[] = { 1, 4, 16, 64, 256, 256 };
    size_t         i;

    (void) state;

    memset(&s, 0, sizeof(s));

    assert_true(hotffi_spin_want(&s));

    for (i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        hotffi_spin_record(&s, 0, 20000);
        assert_int_equal(skipped(&s), expect[i]);
    }

    assert_int_equal(s.misses, 6);

    /* a hit ends the back-off: the next miss rests one call */
    hotffi_spin_record(&s, 1, 1000);
    assert_int_equal(s.hits, 1);
    hotffi_spin_record(&s, 0, 20000);
    assert_int_equal(skipped(&s), 1);
}


/* a fast answer during a rest ends the rest, not the back-off */
static void
test_reset_keeps_backoff(void **state)
{
    hotffi_spin_t  s;

    (void) state;

    memset(&s, 0, sizeof(s));

    hotffi_spin_record(&s, 0, 20000);
    hotffi_spin_record(&s, 0, 20000);   /* backoff 4 */
    assert_false(hotffi_spin_want(&s));

    hotffi_spin_reset(&s);
    assert_true(hotffi_spin_want(&s));

    /* missed again: a rest 4 times longer, not one call */
    hotffi_spin_record(&s, 0, 20000);
    assert_int_equal(skipped(&s), 16);
}


/* a window grows with the bytes at the rate learned, and a quarter more */
static void
test_spin_for_bytes(void **state)
{
    uint64_t  base = 20000;

    (void) state;

    assert_int_equal(hotffi_spin_for(base, 0, 200), base);
    assert_int_equal(hotffi_spin_for(base, 1023, 200), base);
    assert_int_equal(hotffi_spin_for(base, 100 * KIB, 200), base + 100 * 250);
    assert_int_equal(hotffi_spin_for(base, 1024 * KIB, 100),
                     base + 1024 * 125);

    /* nothing learned yet: no growth */
    assert_int_equal(hotffi_spin_for(base, 1024 * KIB, 0), base);

    /* bounded, and no overflow whatever the size or the rate */
    assert_int_equal(hotffi_spin_for(base, 16 * 1024 * KIB, 200), MAX);
    assert_int_equal(hotffi_spin_for(base, SIZE_MAX, 200), MAX);
    assert_int_equal(hotffi_spin_for(base, SIZE_MAX, UINT32_MAX), MAX);
    assert_int_equal(hotffi_spin_for(base, 64 * KIB, UINT32_MAX), MAX);

    /* spinning off stays off; a longer knob is kept as it is */
    assert_int_equal(hotffi_spin_for(0, 1024 * KIB, 200), 0);
    assert_int_equal(hotffi_spin_for(1000000000, 1024 * KIB, 200),
                     1000000000);
}


/* small calls teach nothing; the first sample is taken as it is, then a
 * quarter of the way; an idle caller teaches the bound, not its idleness */
static void
test_rate_learn(void **state)
{
    int       i;
    uint32_t  rate;

    (void) state;

    assert_int_equal(hotffi_spin_rate_learn(0, 1000000, 4 * KIB), 0);
    assert_int_equal(hotffi_spin_rate_learn(0, 1000000,
                                            HOTFFI_SPIN_LEARN_BYTES - 1), 0);
    assert_int_equal(hotffi_spin_rate_learn(77, 1000000, 10 * KIB), 77);

    /* 1 MiB in 150 us: 146 ns per KiB */
    rate = hotffi_spin_rate_learn(0, 150000, 1024 * KIB);
    assert_int_equal(rate, 146);

    /* the payload's cost doubles: three quarters of the way in five calls */
    rate = hotffi_spin_rate_learn(rate, 300000, 1024 * KIB);
    assert_int_equal(rate, 146 - 146 / 4 + 292 / 4);
    for (i = 0; i < 4; i++) {
        rate = hotffi_spin_rate_learn(rate, 300000, 1024 * KIB);
    }
    assert_in_range(rate, 250, 292);

    /* a second of idleness after a 64 KiB answer counts as the bound */
    assert_int_equal(hotffi_spin_rate_learn(0, 1000000000ULL, 64 * KIB),
                     MAX * KIB / (64 * KIB));

    /* never 0 once learned (0 means nothing learned) */
    assert_int_equal(hotffi_spin_rate_learn(0, 1, 1024 * KIB), 1);
}


static void *
turnaround_thread(void *data)
{
    uint64_t  *out = data;
    uint64_t   now;

    /* before any answer: the poll window as configured */
    out[0] = hotffi_spin_poll_for();

    /* a large answer: nothing learned until the next request comes */
    hotffi_spin_note_answer(300 * KIB);
    out[1] = hotffi_spin_poll_for();

    /* a request posted before the answer (another caller's) teaches
     * nothing; one posted 0.3 ms after it teaches that turnaround */
    hotffi_spin_note_next(1);
    out[2] = hotffi_spin_turnaround();
    now = hotffi_spin_now();
    hotffi_spin_note_next(now + 300000);
    out[3] = hotffi_spin_turnaround();
    out[4] = hotffi_spin_poll_for();

    /* learned once per answer; a small answer's window does not grow */
    hotffi_spin_note_next(now + 900000);
    out[5] = hotffi_spin_turnaround();
    hotffi_spin_note_answer(100);
    out[6] = hotffi_spin_poll_for();

    /* 0 is now (a side that cannot see the post): it learns from that
     * answer, which is then used up */
    hotffi_spin_note_answer(300 * KIB);
    hotffi_spin_note_next(0);
    out[7] = hotffi_spin_turnaround();
    hotffi_spin_note_next(hotffi_spin_now() + 300000);
    out[8] = hotffi_spin_turnaround();

    return NULL;
}


/* a runtime thread learns the event loop's turnaround per KiB of its own
 * answers, and grows its poll window with it; a thread's own */
static void
test_turnaround(void **state)
{
    pthread_t  tid;
    uint64_t   out[9], base = HOTFFI_POLL_SPIN_NS_DEFAULT;

    (void) state;

    assert_int_equal(pthread_create(&tid, NULL, turnaround_thread, out), 0);
    assert_int_equal(pthread_join(tid, NULL), 0);

    assert_int_equal(out[0], base);
    assert_int_equal(out[1], base);
    assert_int_equal(out[2], 0);

    /* at least 0.3 ms per 300 KiB, at most the bound's */
    assert_in_range(out[3], 1000, MAX * KIB / (300 * KIB));
    assert_in_range(out[4], base + 300 * 1250, MAX);
    assert_int_equal(out[5], out[3]);
    assert_int_equal(out[6], base);
    assert_in_range(out[7], out[5] - out[5] / 4,
                    out[5] - out[5] / 4 + MAX * KIB / (300 * KIB) / 4);
    assert_int_equal(out[8], out[7]);

    /* this thread answered nothing and learned nothing */
    assert_int_equal(hotffi_spin_turnaround(), 0);
    assert_int_equal(hotffi_spin_poll_for(), base);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_load_parse),
        cmocka_unit_test(test_load_average),
        cmocka_unit_test(test_load_busy),
        cmocka_unit_test(test_load_crowded),
        cmocka_unit_test(test_sched_knob),
        cmocka_unit_test(test_backoff_fast),
        cmocka_unit_test(test_reset_keeps_backoff),
        cmocka_unit_test(test_spin_for_bytes),
        cmocka_unit_test(test_rate_learn),
        cmocka_unit_test(test_turnaround),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
