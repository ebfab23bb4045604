/*
 * hotffi_iso_conf.c -- an isolated runtime's options, and log lines (see
 * hotffi_iso_conf.h).
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hotffi.h"
#include "hotffi_iso_conf.h"


#define HOTFFI_ISO_HELPER  "hotffi-isolated"


/*
 * thread: event loop.  Where the helper is when the isolate.helper option
 * does not say: the installed library is built with the path where the
 * installation puts the helper (HOTFFI_ISO_HELPER_PATH, dist/dist.mk); the
 * build tree's finds it next to itself (dladdr()).  Caller frees with
 * free(); NULL when out of memory or dladdr() failed.
 */
#ifdef HOTFFI_ISO_HELPER_PATH

static char *
hotffi_iso_conf_helper(void)
{
    return strdup(HOTFFI_ISO_HELPER_PATH);
}

#else

static char *
hotffi_iso_conf_helper(void)
{
    char     *dir, *path;
    size_t    len;
    Dl_info   info;

    if (dladdr((void *) libffi_init, &info) == 0 || info.dli_fname == NULL) {
        return NULL;
    }

    dir = strdup(info.dli_fname);
    if (dir == NULL) {
        return NULL;
    }

    len = strlen(dir) + sizeof(HOTFFI_ISO_HELPER) + 2;
    path = malloc(len);
    if (path != NULL) {
        (void) snprintf(path, len, "%s/%s", dirname(dir), HOTFFI_ISO_HELPER);
    }

    free(dir);
    return path;
}

#endif


static int
hotffi_iso_conf_number(const char *v, size_t n, uint64_t *out)
{
    char                *end;
    unsigned long long   x;

    errno = 0;
    x = strtoull(v, &end, 10);

    if (n == 0 || end != v + n || errno != 0 || *v == '-') {
        return HOTFFI_ERROR;
    }

    *out = x;
    return HOTFFI_OK;
}


/* thread: event loop */
int
hotffi_iso_conf_parse(hotffi_iso_conf_t *conf, const char *text, char *err,
    size_t errlen)
{
    size_t       klen, vlen;
    uint64_t    *num;
    const char  *p, *eq, *nl;

    memset(conf, 0, sizeof(hotffi_iso_conf_t));
    conf->ring = 4 * 1024 * 1024;
    conf->stuck_ms = 10000;
    conf->init_ms = 60000;
    conf->restarts = 5;
    conf->window_ms = 30000;
    conf->inflight = 1024;

    p = text ? text : "";

    while (*p) {
        eq = strchr(p, '=');
        if (eq == NULL) {
            (void) snprintf(err, errlen, "bad isolation options near \"%.32s\"",
                            p);
            goto failed;
        }

        klen = (size_t) (eq - p);

        if (klen == 3 && memcmp(p, "cfg", 3) == 0) {
            conf->cfg_len = strlen(eq + 1);
            conf->cfg = strdup(eq + 1);
            if (conf->cfg == NULL) {
                goto nomem;
            }
            break;
        }

        nl = strchr(eq, '\n');
        if (nl == NULL) {
            nl = eq + strlen(eq);
        }

        vlen = (size_t) (nl - eq - 1);

#define HOTFFI_ISO_KEY(k)  (klen == sizeof(k) - 1 && memcmp(p, k, klen) == 0)

        num = NULL;

        if (HOTFFI_ISO_KEY("lib") || HOTFFI_ISO_KEY("name")
            || HOTFFI_ISO_KEY("helper"))
        {
            char  **s = *p == 'l' ? &conf->lib
                        : *p == 'n' ? &conf->name : &conf->helper;

            free(*s);
            *s = strndup(eq + 1, vlen);
            if (*s == NULL) {
                goto nomem;
            }

        } else if (HOTFFI_ISO_KEY("memory")) {
            num = &conf->memory;
        } else if (HOTFFI_ISO_KEY("cpu")) {
            num = &conf->cpu;
        } else if (HOTFFI_ISO_KEY("files")) {
            num = &conf->files;
        } else if (HOTFFI_ISO_KEY("ring")) {
            num = &conf->ring;
        } else if (HOTFFI_ISO_KEY("stuck_ms")) {
            num = &conf->stuck_ms;
        } else if (HOTFFI_ISO_KEY("init_ms")) {
            num = &conf->init_ms;
        } else if (HOTFFI_ISO_KEY("restarts")) {
            num = &conf->restarts;
        } else if (HOTFFI_ISO_KEY("window_ms")) {
            num = &conf->window_ms;
        } else if (HOTFFI_ISO_KEY("inflight")) {
            num = &conf->inflight;
        } else {
            (void) snprintf(err, errlen, "unknown isolation option \"%.*s\"",
                            (int) klen, p);
            goto failed;
        }

#undef HOTFFI_ISO_KEY

        if (num && hotffi_iso_conf_number(eq + 1, vlen, num) != HOTFFI_OK) {
            (void) snprintf(err, errlen, "bad isolation option \"%.*s\": "
                            "\"%.*s\"", (int) klen, p, (int) vlen, eq + 1);
            goto failed;
        }

        p = *nl ? nl + 1 : nl;
    }

    if (conf->lib == NULL || conf->lib[0] == '\0') {
        (void) snprintf(err, errlen, "isolation options name no library");
        goto failed;
    }

    if (conf->ring < 4096 || conf->ring > ((uint64_t) 1 << 31)
        || (conf->ring & (conf->ring - 1)) != 0)
    {
        (void) snprintf(err, errlen, "isolation option ring: a power of two "
                        "from 4096 to 2^31 expected");
        goto failed;
    }

    if (conf->inflight < 1 || conf->inflight > 1000000
        || conf->restarts < 1 || conf->stuck_ms < 1 || conf->init_ms < 1)
    {
        (void) snprintf(err, errlen, "isolation options inflight, restarts, "
                        "stuck_ms and init_ms must be positive "
                        "(inflight <= 1e6)");
        goto failed;
    }

    if (conf->name == NULL) {
        conf->name = strdup(conf->lib);
        if (conf->name == NULL) {
            goto nomem;
        }
    }

    if (conf->helper == NULL) {
        conf->helper = hotffi_iso_conf_helper();
        if (conf->helper == NULL) {
            (void) snprintf(err, errlen, "cannot find %s next to the "
                            "isolation library", HOTFFI_ISO_HELPER);
            goto failed;
        }
    }

    if (access(conf->helper, X_OK) != 0) {
        (void) snprintf(err, errlen, "access(\"%s\") failed: %s",
                        conf->helper, strerror(errno));
        goto failed;
    }

    return HOTFFI_OK;

nomem:

    (void) snprintf(err, errlen, "out of memory");

failed:

    hotffi_iso_conf_free(conf);
    return HOTFFI_ERROR;
}


void
hotffi_iso_conf_free(hotffi_iso_conf_t *conf)
{
    free(conf->lib);
    free(conf->name);
    free(conf->helper);
    free(conf->cfg);
    memset(conf, 0, sizeof(hotffi_iso_conf_t));
}


/* thread: any */
void
hotffi_iso_log(const char *level, const char *fmt, ...)
{
    int         n;
    ssize_t     written;
    char        line[1024];
    time_t      now;
    va_list     ap;
    struct tm   tm;

    now = time(NULL);
    (void) localtime_r(&now, &tm);

    n = snprintf(line, sizeof(line),
                 "%04d/%02d/%02d %02d:%02d:%02d [%s] %d#%d: hotffi: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, level, (int) getpid(), (int) gettid());

    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);

    if (n > (int) sizeof(line) - 2) {
        n = (int) sizeof(line) - 2;
    }

    line[n++] = '\n';

    /* one write(): lines of several threads do not interleave.  A line
     * stderr does not take is lost: there is nowhere else to say so (the
     * result is taken for glibc's fortified write(), as in
     * hotffi_iso_watch()) */
    written = write(STDERR_FILENO, line, (size_t) n);
    (void) written;
}
