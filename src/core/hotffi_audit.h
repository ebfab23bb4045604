/*
 * hotffi_audit.h -- the audit trail: one line in the host's log for every
 * load, reload and unload of a runtime, whatever asked for it.
 *
 * DESIGN
 * The runtime layer is where every load, reload and unload begins and
 * ends, whoever asked (rt:__reload, the admin handler, a worker's exit, a
 * reload the caller stopped waiting for), so the lines are written from
 * there, through the hub's logger, and from nowhere else.  One event is
 * one line, with a fixed shape an operator can grep and a log shipper can
 * split on spaces:
 *
 *   audit: <event> <result> runtime="<name>" pid=<pid> version=<from>-><to>
 *   lib="<lib>" dev=<major>:<minor> ino=<inode> mtime=<UTC time>
 *   cfg=<crc32 hex>/<bytes> seconds=<s> [error="<why>"]
 *
 * (one line in the log; the host prefixes it with "hotffi: ").  Success is
 * a notice; a refused request (nothing changed) a warning; a failed one
 * (rolled back, or worse) an error.  A configuration may hold secrets:
 * only its CRC-32 and length are written, never its text; the admin
 * handler shows the same digest.
 */

#ifndef HOTFFI_AUDIT_H
#define HOTFFI_AUDIT_H


#include "hotffi_core.h"
#include "hotffi_version.h"


typedef struct {
    const char               *event;    /* "load", "reload", "unload" */
    const char               *result;   /* "ok", "refused", "failed" */
    const char               *name;     /* the runtime's */
    uint64_t                  from;     /* version numbers, 0: none */
    uint64_t                  to;
    const hotffi_version_t   *v;        /* what the line is about; NULL
                                           when no version was made: */
    const char               *lib;      /*   then these say what was */
    const char               *cfg;      /*   asked for (cfg NULL: nil) */
    size_t                    cfg_len;
    double                    seconds;  /* < 0: not timed */
    const char               *error;    /* NULL or "" when none */
} hotffi_audit_t;


/*
 * thread: event loop.  Writes a's line (all of it borrowed) through hub's
 * logger at level (HOTFFI_LOG_*).
 */
void hotffi_audit_log(hotffi_hub_t *hub, int level, const hotffi_audit_t *a);

/* thread: any.  The CRC-32 (ISO-HDLC, as zlib's) of len bytes at p. */
uint32_t hotffi_audit_crc32(const char *p, size_t len);


#endif /* HOTFFI_AUDIT_H */
