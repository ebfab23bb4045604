/*
 * test_spin.c -- the spin policy's decisions (src/core/hotffi_spin.c),
 * driven with made-up inputs: the machine's load as /proc/loadavg would
 * show it, and a history of hits and misses.  Nothing here measures time
 * or depends on the machine the test runs on.
 */

#define _GNU_SOURCE

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "hotffi_spin.h"


#define ONE  HOTFFI_SPIN_LOAD_ONE


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


/*
 * On 2 CPUs: the reader and its partner spinning (2 runnable) is quiet;
 * the two of them and one more thread (a hog per CPU: 3-4) is busy.
 */
static void
test_load_busy(void **state)
{
    uint32_t  avg;
    int       i;

    (void) state;

    assert_false(hotffi_spin_load_busy(0, 2));
    assert_false(hotffi_spin_load_busy(1 * ONE, 2));
    assert_false(hotffi_spin_load_busy(2 * ONE, 2));
    assert_false(hotffi_spin_load_busy(3 * ONE - 1, 2));
    assert_true(hotffi_spin_load_busy(3 * ONE, 2));
    assert_true(hotffi_spin_load_busy(4 * ONE, 2));

    /* more CPUs take more load */
    assert_false(hotffi_spin_load_busy(4 * ONE, 8));
    assert_true(hotffi_spin_load_busy(9 * ONE, 8));

    /* one CPU: the reader and one more thread is busy already */
    assert_false(hotffi_spin_load_busy(1 * ONE, 1));
    assert_true(hotffi_spin_load_busy(2 * ONE, 1));

    /* a quiet machine's one odd sample does not stop spinning ... */
    avg = hotffi_spin_load_average(0, 2);
    avg = hotffi_spin_load_average(avg, 5);
    assert_false(hotffi_spin_load_busy(avg, 2));

    /* ... a lasting load does, within a few samples, and its end too */
    for (i = 0; i < 3; i++) {
        avg = hotffi_spin_load_average(avg, 5);
    }
    assert_true(hotffi_spin_load_busy(avg, 2));

    for (i = 0; i < 4; i++) {
        avg = hotffi_spin_load_average(avg, 1);
    }
    assert_false(hotffi_spin_load_busy(avg, 2));
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


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_load_parse),
        cmocka_unit_test(test_load_average),
        cmocka_unit_test(test_load_busy),
        cmocka_unit_test(test_backoff_fast),
        cmocka_unit_test(test_reset_keeps_backoff),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
