/*
 * hotffi_sched.c -- runtime threads' scheduling policy (see hotffi_sched.h).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <sched.h>

#include "hotffi_sched.h"
#include "hotffi_env.h"


static pthread_once_t  hotffi_sched_once = PTHREAD_ONCE_INIT;
static int             hotffi_sched_want_batch;

/*
 * per thread: HOTFFI_SCHED_UNSEEN until its first poll that found no task,
 * then the policy hotffi set (SCHED_OTHER or SCHED_BATCH), or
 * HOTFFI_SCHED_FOREIGN when its runtime chose another one
 */
#define HOTFFI_SCHED_UNSEEN   -1
#define HOTFFI_SCHED_FOREIGN  -2

static __thread int    hotffi_sched_policy = HOTFFI_SCHED_UNSEEN;


static void
hotffi_sched_init(void)
{
    hotffi_sched_want_batch = hotffi_env_ns("HOTFFI_POLL_BATCH", 1, 1, 1)
                              != 0;
}


/* thread: any */
int
hotffi_sched_batch(void)
{
    (void) pthread_once(&hotffi_sched_once, hotffi_sched_init);
    return hotffi_sched_want_batch;
}


/* thread: runtime */
void
hotffi_sched_poller(int crowded)
{
    int                 want;
    struct sched_param  param;

    if (hotffi_sched_policy == HOTFFI_SCHED_FOREIGN) {
        return;
    }

    if (hotffi_sched_policy == HOTFFI_SCHED_UNSEEN) {
        hotffi_sched_policy = hotffi_sched_batch() ? sched_getscheduler(0)
                                                   : HOTFFI_SCHED_FOREIGN;

        if (hotffi_sched_policy != SCHED_OTHER) {
            hotffi_sched_policy = HOTFFI_SCHED_FOREIGN;
            return;
        }
    }

    want = crowded ? SCHED_OTHER : SCHED_BATCH;

    if (want == hotffi_sched_policy) {
        return;
    }

    /* 0 is the only priority of the normal policies; not a privilege */
    param.sched_priority = 0;

    hotffi_sched_policy = sched_setscheduler(0, want, &param) == 0
                          ? want : HOTFFI_SCHED_FOREIGN;
}
