/*
 * dictctl.c -- a runtime the tests steer to use shared dicts from its
 * threads (tests/nginx/480-shdict.t).  Requests, fields split at ':':
 *
 *   get:DICT:KEY            "<type> <flags> <value>" or "nil"
 *   stale:DICT:KEY          the same, with get_stale, and " stale" if so
 *   OP:DICT:KEY:T:V:EXP:FL  OP is set, safe_set, add, safe_add, replace;
 *                           T is s (string V), n (number V), b (boolean
 *                           V = 0/1) or nil (delete); answers "ok" or
 *                           "declined: why" / "error: why"
 *   incr:DICT:KEY:BY[:INIT[:TTL]]
 *                           the new value, or "declined: why"
 *   bump:DICT:KEY:N         N increments by 1 (init 0): "done"
 *   churn:DICT:N:SEED       N rounds on keys c0..c7: each sets a string
 *                           "LEN:" + LEN copies of one letter (LEN up to
 *                           3000: slab pages come and go), or reads one
 *                           and checks it is whole: "done" or "corrupt:
 *                           KEY VALUE"
 *   ttl:DICT:KEY            the seconds left, 0, or -1
 *   nodict:NAME             "null" when hotffi_shdict(NAME) is NULL
 *
 * cfg "threads=N" sets the number of polling threads (default 2).
 */

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"


#define DICTCTL_MAX_THREADS  8
#define DICTCTL_MAX_FIELDS   8


typedef struct {
    void       *tq;
    int         nthreads;
    pthread_t   tids[DICTCTL_MAX_THREADS];
} dictctl_t;


static void
dictctl_answer(void *task, const char *text, size_t len)
{
    char  *rsp = malloc(len + 1);

    if (rsp == NULL) {
        ngx_http_lua_ffi_respond(task, 1, NULL, 0);
        return;
    }
    memcpy(rsp, text, len);
    ngx_http_lua_ffi_respond(task, 0, rsp, (int) len);
}


static void
dictctl_answerf(void *task, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
dictctl_answerf(void *task, const char *fmt, ...)
{
    char     buf[512];
    int      n;
    va_list  args;

    va_start(args, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);
    dictctl_answer(task, buf, n < 0 ? 0 : (size_t) n < sizeof(buf)
                                          ? (size_t) n : sizeof(buf) - 1);
}


/* Splits req (NUL-terminated copy) at ':' into at most max fields. */
static int
dictctl_split(char *req, char **f, int max)
{
    int  n = 0;

    f[n++] = req;
    while (n < max && (req = strchr(req, ':')) != NULL) {
        *req++ = '\0';
        f[n++] = req;
    }
    return n;
}


static void
dictctl_get(void *task, char **f, int stale)
{
    char                   err[128];
    void                  *dict = hotffi_shdict(f[1]);
    hotffi_shdict_value_t  v;

    if (hotffi_shdict_get(dict, f[2], strlen(f[2]), stale, &v, err,
                          sizeof(err)) != HOTFFI_SHDICT_OK)
    {
        dictctl_answerf(task, "error: %s", err);
        return;
    }

    switch (v.type) {
    case HOTFFI_SHDICT_STRING:
        dictctl_answerf(task, "string %u %.*s%s", v.flags, (int) v.len,
                        v.str, v.stale ? " stale" : "");
        free(v.str);
        break;
    case HOTFFI_SHDICT_NUMBER:
        dictctl_answerf(task, "number %u %.17g%s", v.flags, v.number,
                        v.stale ? " stale" : "");
        break;
    case HOTFFI_SHDICT_BOOLEAN:
        dictctl_answerf(task, "boolean %u %s%s", v.flags,
                        v.number ? "true" : "false",
                        v.stale ? " stale" : "");
        break;
    default:
        dictctl_answerf(task, "nil");
    }
}


static void
dictctl_store(void *task, char **f, int n)
{
    int                    op, rc;
    char                   err[128];
    hotffi_shdict_value_t  v;

    if (n < 7) {
        dictctl_answerf(task, "error: OP:DICT:KEY:T:V:EXP:FLAGS expected");
        return;
    }

    op = strcmp(f[0], "set") == 0 ? HOTFFI_SHDICT_SET
         : strcmp(f[0], "safe_set") == 0 ? HOTFFI_SHDICT_SAFE_SET
         : strcmp(f[0], "add") == 0 ? HOTFFI_SHDICT_ADD
         : strcmp(f[0], "safe_add") == 0 ? HOTFFI_SHDICT_SAFE_ADD
         : HOTFFI_SHDICT_REPLACE;

    memset(&v, 0, sizeof(v));
    v.flags = (unsigned int) strtoul(f[6], NULL, 10);
    if (strcmp(f[3], "s") == 0) {
        v.type = HOTFFI_SHDICT_STRING;
        v.str = f[4];
        v.len = strlen(f[4]);
    } else if (strcmp(f[3], "n") == 0) {
        v.type = HOTFFI_SHDICT_NUMBER;
        v.number = strtod(f[4], NULL);
    } else if (strcmp(f[3], "b") == 0) {
        v.type = HOTFFI_SHDICT_BOOLEAN;
        v.number = strcmp(f[4], "1") == 0;
    } else {
        v.type = HOTFFI_SHDICT_NIL;
    }

    rc = hotffi_shdict_store(hotffi_shdict(f[1]), op, f[2], strlen(f[2]),
                             &v, strtod(f[5], NULL), NULL, err, sizeof(err));
    if (rc == HOTFFI_SHDICT_OK) {
        dictctl_answerf(task, "ok");
    } else {
        dictctl_answerf(task, "%s: %s",
                        rc == HOTFFI_SHDICT_DECLINED ? "declined" : "error",
                        err);
    }
}


static void
dictctl_incr(void *task, char **f, int n)
{
    int     rc;
    char    err[128];
    double  value;

    rc = hotffi_shdict_incr(hotffi_shdict(f[1]), f[2], strlen(f[2]),
                            strtod(f[3], NULL), &value, n > 4,
                            n > 4 ? strtod(f[4], NULL) : 0,
                            n > 5 ? strtod(f[5], NULL) : 0, NULL, err,
                            sizeof(err));
    if (rc == HOTFFI_SHDICT_OK) {
        dictctl_answerf(task, "%.17g", value);
    } else {
        dictctl_answerf(task, "%s: %s",
                        rc == HOTFFI_SHDICT_DECLINED ? "declined" : "error",
                        err);
    }
}


static void
dictctl_bump(void *task, char **f)
{
    long    i, times = strtol(f[3], NULL, 10);
    char    err[128];
    void   *dict = hotffi_shdict(f[1]);
    double  value;

    for (i = 0; i < times; i++) {
        if (hotffi_shdict_incr(dict, f[2], strlen(f[2]), 1, &value, 1, 0, 0,
                               NULL, err, sizeof(err))
            != HOTFFI_SHDICT_OK)
        {
            dictctl_answerf(task, "error after %ld: %s", i, err);
            return;
        }
    }
    dictctl_answerf(task, "done");
}


/* Whether v is "LEN:" and LEN copies of one letter (or absent). */
static int
dictctl_whole(const hotffi_shdict_value_t *v)
{
    char    *end;
    size_t   i, len;

    if (v->type == HOTFFI_SHDICT_NIL) {
        return 1;
    }
    if (v->type != HOTFFI_SHDICT_STRING) {
        return 0;
    }
    len = strtoul(v->str, &end, 10);
    if (end == v->str || *end != ':'
        || (size_t) (end + 1 - v->str) + len != v->len)
    {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if (end[1 + i] != end[1]) {
            return 0;
        }
    }
    return 1;
}


static void
dictctl_churn(void *task, char **f)
{
    int                    rc;
    long                   i, rounds = strtol(f[2], NULL, 10);
    char                   key[4], err[128], *buf;
    size_t                 len, head;
    unsigned               seed = (unsigned) strtoul(f[3], NULL, 10), r;
    void                  *dict = hotffi_shdict(f[1]);
    hotffi_shdict_value_t  v;

    buf = malloc(3100);
    if (buf == NULL) {
        dictctl_answerf(task, "error: no memory");
        return;
    }

    for (i = 0; i < rounds; i++) {
        r = (unsigned) rand_r(&seed);
        key[0] = 'c';
        key[1] = (char) ('0' + r % 8);
        key[2] = '\0';

        if (r & 8) {
            len = 1 + (r >> 4) % 3000;
            head = (size_t) snprintf(buf, 16, "%zu:", len);
            memset(buf + head, 'a' + (int) ((r >> 16) % 26), len);
            memset(&v, 0, sizeof(v));
            v.type = HOTFFI_SHDICT_STRING;
            v.str = buf;
            v.len = head + len;
            rc = hotffi_shdict_store(dict, HOTFFI_SHDICT_SET, key, 2, &v, 0,
                                     NULL, err, sizeof(err));
            if (rc != HOTFFI_SHDICT_OK) {
                dictctl_answerf(task, "error: set %s: %s", key, err);
                free(buf);
                return;
            }
            continue;
        }

        if (hotffi_shdict_get(dict, key, 2, 0, &v, err, sizeof(err))
            != HOTFFI_SHDICT_OK)
        {
            dictctl_answerf(task, "error: get %s: %s", key, err);
            free(buf);
            return;
        }
        if (!dictctl_whole(&v)) {
            dictctl_answerf(task, "corrupt: %s %.40s", key,
                            v.str ? v.str : "(not a string)");
            free(v.str);
            free(buf);
            return;
        }
        free(v.str);
    }

    free(buf);
    dictctl_answerf(task, "done");
}


static void
dictctl_serve(void *task)
{
    int    len, n;
    char  *req, *copy, *f[DICTCTL_MAX_FIELDS];

    req = ngx_http_lua_ffi_get_req(task, &len);
    copy = malloc((size_t) len + 1);
    if (copy == NULL) {
        ngx_http_lua_ffi_respond(task, 1, NULL, 0);
        return;
    }
    memcpy(copy, req, (size_t) len);
    copy[len] = '\0';

    n = dictctl_split(copy, f, DICTCTL_MAX_FIELDS);

    if (n == 2 && strcmp(f[0], "nodict") == 0) {
        dictctl_answerf(task, "%s", hotffi_shdict(f[1]) ? "found" : "null");
    } else if (n < 3) {
        dictctl_answerf(task, "error: bad request");
    } else if (strcmp(f[0], "get") == 0 || strcmp(f[0], "stale") == 0) {
        dictctl_get(task, f, f[0][0] == 's');
    } else if (strcmp(f[0], "incr") == 0 && n >= 4) {
        dictctl_incr(task, f, n);
    } else if (strcmp(f[0], "bump") == 0 && n >= 4) {
        dictctl_bump(task, f);
    } else if (strcmp(f[0], "churn") == 0 && n >= 4) {
        dictctl_churn(task, f);
    } else if (strcmp(f[0], "ttl") == 0) {
        dictctl_answerf(task, "%g",
                        hotffi_shdict_ttl(hotffi_shdict(f[1]), f[2],
                                          strlen(f[2])));
    } else {
        dictctl_store(task, f, n);
    }

    free(copy);
}


static void *
dictctl_thread(void *arg)
{
    void       *task;
    dictctl_t  *d = arg;

    while ((task = ngx_http_lua_ffi_task_poll(d->tq)) != NULL) {
        dictctl_serve(task);
    }
    return NULL;
}


int
libffi_init(char *cfg, void *tq)
{
    int         i;
    dictctl_t  *d;

    d = calloc(1, sizeof(dictctl_t));
    if (d == NULL) {
        return 1;
    }
    d->tq = tq;
    d->nthreads = 2;
    if (cfg && strncmp(cfg, "threads=", 8) == 0) {
        d->nthreads = atoi(cfg + 8);
    }
    if (d->nthreads < 1 || d->nthreads > DICTCTL_MAX_THREADS) {
        free(d);
        return 2;
    }

    hotffi_tq_set_data(tq, d);
    for (i = 0; i < d->nthreads; i++) {
        if (pthread_create(&d->tids[i], NULL, dictctl_thread, d) != 0) {
            return 3;
        }
    }
    return 0;
}


int
libffi_fini(void *tq)
{
    int         i;
    dictctl_t  *d = hotffi_tq_data(tq);

    for (i = 0; i < d->nthreads; i++) {
        pthread_join(d->tids[i], NULL);
    }
    free(d);
    return 0;
}
