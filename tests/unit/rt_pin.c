/*
 * rt_pin.c -- rt_idle under another name: a library no other test loads, so
 * that whether it stays in the process after its runtime retired depends on
 * the unpin option alone.
 */

#include "hotffi.h"
#include "unit_rt.h"


/* thread: event loop */
int
libffi_init(char *cfg, void *tq)
{
    UNIT_RT_INIT("rt_pin", cfg, tq);

    return 0;
}


/* thread: hotffi reaper */
int
libffi_fini(void *tq)
{
    UNIT_RT_FINI("rt_pin", tq);

    return 0;
}
