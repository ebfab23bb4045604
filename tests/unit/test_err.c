/*
 * test_err.c -- error text: one size, and a text too long keeps its end
 * (where a traceback's exception line is) after "...".
 */

#define _GNU_SOURCE

#include "unit_helpers.h"
#include "hotffi_err.h"


/* a text that fits is copied whole */
static void
test_err_fits(void **state)
{
    char  buf[16];

    hotffi_err_tail(buf, sizeof(buf), "short", 5);
    assert_string_equal(buf, "short");

    hotffi_err_format(buf, sizeof(buf), "%s: %d", "rc", 42);
    assert_string_equal(buf, "rc: 42");

    /* exactly size - 1 bytes still fit */
    hotffi_err_format(buf, sizeof(buf), "%s", "123456789012345");
    assert_string_equal(buf, "123456789012345");
}


/* a text too long keeps its end after "...", in size bytes */
static void
test_err_keeps_the_end(void **state)
{
    char  buf[16];

    hotffi_err_format(buf, sizeof(buf), "Traceback %s\n%s", "(most recent "
                      "call last): lots of frames", "ValueError: x");
    assert_int_equal(strlen(buf), sizeof(buf) - 1);
    assert_string_equal(buf, "...alueError: x");

    hotffi_err_tail(buf, sizeof(buf), "0123456789abcdefXYZ", 19);
    assert_string_equal(buf, "...789abcdefXYZ");
}


/* the cut never begins inside a UTF-8 character */
static void
test_err_utf8(void **state)
{
    char        buf[8];
    const char  *text = "abcd\xc3\xa9" "fgh";     /* "abcdéfgh" */

    /* 4 bytes kept would begin at the second byte of the é */
    hotffi_err_tail(buf, sizeof(buf), text, strlen(text));
    assert_string_equal(buf, "...fgh");
}


/* the core's buffers: a traceback of 10 KiB keeps its last line */
static void
test_err_max(void **state)
{
    char    buf[HOTFFI_ERR_MAX], *big;
    size_t  n = 10240;

    big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    memcpy(big + n - 14, "\nKeyError: 'k'", 14);
    big[n] = '\0';

    hotffi_err_format(buf, sizeof(buf), "libffi_init() failed: -1: %s", big);
    assert_int_equal(strlen(buf), HOTFFI_ERR_MAX - 1);
    assert_memory_equal(buf, "...xxx", 6);
    assert_string_equal(buf + HOTFFI_ERR_MAX - 15, "\nKeyError: 'k'");

    free(big);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_err_fits),
        cmocka_unit_test(test_err_keeps_the_end),
        cmocka_unit_test(test_err_utf8),
        cmocka_unit_test(test_err_max),
    };

    unit_init();

    return cmocka_run_group_tests_name("err", tests, NULL, NULL);
}
