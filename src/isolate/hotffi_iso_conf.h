/*
 * hotffi_iso_conf.h -- an isolated runtime's options, as resty.hotffi
 * passes them to the worker's side in place of the runtime's cfg, and the
 * log lines of the worker's side.
 */

#ifndef HOTFFI_ISO_CONF_H
#define HOTFFI_ISO_CONF_H


#include <stddef.h>
#include <stdint.h>

#include "hotffi_core.h"


/*
 * The text, one "key=value" line each, "cfg=" last with the runtime's own
 * cfg to the end of the string (absent: libffi_init() gets NULL).
 * lua/resty/hotffi/isolate.lua writes it; defaults are docs/isolation.md's.
 */
typedef struct {
    char      *lib;          /* the runtime's library, as load() named it */
    char      *name;         /* the runtime's name, for messages */
    char      *helper;       /* the helper program's path */
    char      *cfg;          /* the runtime's cfg, or NULL */
    size_t     cfg_len;
    uint64_t   memory;       /* RLIMIT_AS bytes, 0: none */
    uint64_t   cpu;          /* RLIMIT_CPU seconds, 0: none */
    uint64_t   files;        /* RLIMIT_NOFILE, 0: the worker's */
    uint64_t   ring;         /* bytes per ring, a power of two */
    uint64_t   stuck_ms;     /* calls waiting, no progress: kill after */
    uint64_t   init_ms;      /* libffi_init() in the helper: kill after */
    uint64_t   restarts;     /* this many deaths within window_ms: failed */
    uint64_t   window_ms;
    uint64_t   inflight;     /* calls sent to the helper at most */
} hotffi_iso_conf_t;


/*
 * thread: event loop.  Parses text into conf (strings malloc()'ed, freed
 * by hotffi_iso_conf_free()); on failure HOTFFI_ERROR and why in err.
 */
int hotffi_iso_conf_parse(hotffi_iso_conf_t *conf, const char *text,
    char *err, size_t errlen);

void hotffi_iso_conf_free(hotffi_iso_conf_t *conf);

/*
 * thread: any.  One line to the worker's stderr, which nginx points at
 * its error log, in nginx's format: "[error] PID#TID: hotffi: ...".
 */
void hotffi_iso_log(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));


#endif /* HOTFFI_ISO_CONF_H */
