/*
 * rt_noinit.c -- a shared library that is not a runtime: it has a
 * libffi_fini() but no libffi_init(), so loading it must fail.
 */

#include "hotffi.h"


int  rt_noinit_marker = 1;


/* never called: the load fails before */
int
libffi_fini(void *tq)
{
    return rt_noinit_marker;
}
