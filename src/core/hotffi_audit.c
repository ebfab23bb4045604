/*
 * hotffi_audit.c -- the audit trail's one line per event (see
 * hotffi_audit.h).
 */

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hotffi_audit.h"
#include "hotffi_err.h"
#include "hotffi_hub.h"


/* the nginx host cuts a log line at 2048 bytes: the error's end is kept */
#define HOTFFI_AUDIT_ERROR_MAX  1024


/* thread: any */
uint32_t
hotffi_audit_crc32(const char *p, size_t len)
{
    int        k;
    size_t     i;
    uint32_t   crc;

    crc = 0xffffffff;

    for (i = 0; i < len; i++) {
        crc ^= (unsigned char) p[i];

        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xedb88320 & (0 - (crc & 1)));
        }
    }

    return ~crc;
}


/* thread: event loop */
void
hotffi_audit_log(hotffi_hub_t *hub, int level, const hotffi_audit_t *a)
{
    char         cfg[32], file[96], when[32], secs[32];
    char         error[HOTFFI_AUDIT_ERROR_MAX];
    time_t       mtime;
    struct tm    tm;
    const char  *lib, *text;
    size_t       text_len;
    const hotffi_library_t  *l;

    lib = a->v ? a->v->lib_name : a->lib;
    text = a->v ? a->v->cfg : a->cfg;
    text_len = a->v ? a->v->cfg_len : a->cfg_len;
    l = a->v ? &a->v->lib : NULL;

    if (text) {
        (void) snprintf(cfg, sizeof(cfg), "%08x/%zu",
                        (unsigned) hotffi_audit_crc32(text, text_len),
                        text_len);
    } else {
        (void) snprintf(cfg, sizeof(cfg), "nil");
    }

    if (l && l->ino) {
        (void) snprintf(file, sizeof(file), "%lu:%lu ino=%lu", l->dev_major,
                        l->dev_minor, l->ino);
    } else {
        (void) snprintf(file, sizeof(file), "- ino=-");
    }

    mtime = l ? (time_t) l->mtime : 0;

    if (mtime == 0 || gmtime_r(&mtime, &tm) == NULL
        || strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    {
        (void) snprintf(when, sizeof(when), "-");
    }

    if (a->seconds >= 0) {
        (void) snprintf(secs, sizeof(secs), "%.6f", a->seconds);
    } else {
        (void) snprintf(secs, sizeof(secs), "-");
    }

    error[0] = '\0';

    if (a->error && a->error[0]) {
        hotffi_err_tail(error, sizeof(error), a->error, strlen(a->error));
    }

    hotffi_hub_log(hub, level, "audit: %s %s runtime=\"%s\" pid=%ld "
                   "version=%llu->%llu lib=\"%.512s\" dev=%s mtime=%s "
                   "cfg=%s seconds=%s%s%s%s", a->event, a->result, a->name,
                   (long) getpid(), (unsigned long long) a->from,
                   (unsigned long long) a->to, lib ? lib : "-", file, when,
                   cfg, secs, error[0] ? " error=\"" : "", error,
                   error[0] ? "\"" : "");
}
