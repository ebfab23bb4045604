/*
 * rt_idle.c -- a test runtime without threads: the test program itself plays
 * the runtime thread, polling the queue and answering, so that every step of
 * a call happens in an order the test chooses.  libffi_init() reports the
 * configuration it got and succeeds unless cfg is "fail".
 */

#include <string.h>

#include "hotffi.h"
#include "unit_rt.h"


/* thread: event loop */
int
libffi_init(char *cfg, void *tq)
{
    UNIT_RT_INIT("rt_idle", cfg, tq);

    return (cfg && strcmp(cfg, "fail") == 0) ? 9 : 0;
}


/* thread: hotffi reaper */
int
libffi_fini(void *tq)
{
    UNIT_RT_FINI("rt_idle", tq);

    return 0;
}
