/*
 * hotffi_zonelock.c -- the thread-side lock of shared dict zones: a
 * stripe of process-local mutexes (see hotffi_zonelock.h for why and for
 * the lock order).
 */

#include <pthread.h>
#include <stdint.h>

#include "hotffi_zonelock.h"


#define M  PTHREAD_MUTEX_INITIALIZER

static pthread_mutex_t  hotffi_zonelocks[HOTFFI_ZONELOCK_N] = {
    M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M
};

#undef M

/* a new stripe count must come with as many initialisers */
_Static_assert(HOTFFI_ZONELOCK_N == 16, "one initialiser per stripe");


unsigned
hotffi_zonelock_stripe(const void *zone)
{
    uintptr_t  p = (uintptr_t) zone;

    /* zones are allocated far apart: mix the bits above the alignment */
    p ^= p >> 12;
    p ^= p >> 7;

    return (unsigned) ((p >> 4) % HOTFFI_ZONELOCK_N);
}


void
hotffi_zonelock_lock(const void *zone)
{
    (void) pthread_mutex_lock(&hotffi_zonelocks[hotffi_zonelock_stripe(zone)]);
}


void
hotffi_zonelock_unlock(const void *zone)
{
    (void) pthread_mutex_unlock(
        &hotffi_zonelocks[hotffi_zonelock_stripe(zone)]);
}
