/*
 * hotffi_env.h -- the core's knobs from the environment, read one way.
 */

#ifndef HOTFFI_ENV_H
#define HOTFFI_ENV_H


#include <stdint.h>

#include "hotffi_core.h"


/*
 * thread: any (nothing may setenv() meanwhile).  The variable name as a
 * whole decimal number of units, at most max, times unit_ns; dflt_ns when
 * it is unset, empty, malformed or above max (a typo must not turn a knob
 * off or to forever).
 */
uint64_t hotffi_env_ns(const char *name, unsigned long max, uint64_t unit_ns,
    uint64_t dflt_ns);


#endif /* HOTFFI_ENV_H */
