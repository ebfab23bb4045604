/*
 * hotffi_env.c -- the core's knobs from the environment (see hotffi_env.h).
 */

#include <stdlib.h>

#include "hotffi_env.h"


/* thread: any */
uint64_t
hotffi_env_ns(const char *name, unsigned long max, uint64_t unit_ns,
    uint64_t dflt_ns)
{
    char           *v, *end;
    unsigned long   n;

    v = getenv(name);
    if (v == NULL || *v == '\0') {
        return dflt_ns;
    }

    n = strtoul(v, &end, 10);
    if (*end != '\0' || n > max) {
        return dflt_ns;
    }

    return (uint64_t) n * unit_ns;
}
