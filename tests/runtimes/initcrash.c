/*
 * initcrash.c -- a runtime whose libffi_init() dies of SIGSEGV, as a new
 * version with a fatal bug at start would: what a canary reload must stop
 * at its first worker (tests/nginx/715-admin-canary.t).
 */

#include <stddef.h>

#include "hotffi.h"


int
libffi_init(char *cfg, void *tq)
{
    volatile int  *nowhere = NULL;

    /* a real fault: raise() would only leave a blocked signal pending */
    /* cppcheck-suppress nullPointer ; the fault is the point */
    *nowhere = 1;
    return 1;
}
