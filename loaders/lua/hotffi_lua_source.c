/*
 * hotffi_lua_source.c -- the code a Lua service runs: read from its file,
 * or remembered.
 *
 * DESIGN
 * Two kinds of record, in one list under one lock, each a key and a copy
 * of code text:
 *   "file" records, by path: a module loaded without "?" is read once,
 *     and every later load of that path runs the same text;
 *   "ran" records, by the whole cfg: the code the last version that
 *     started with this cfg ran, for a rollback (hotffi_rollback()), which
 *     must restart that code and not the file edited meanwhile.
 * One record per key, the newest wins; at most one per path and cfg text
 * ever loaded, as small as the code itself.
 *
 * locks: hotffi_lua_source_mtx guards the list; the text is copied in and
 * out under it.
 */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi_lua.h"


/* a Lua service larger than this is surely a mistake */
#define HOTFFI_LUA_SOURCE_MAX  (64 * 1024 * 1024)


typedef struct hotffi_lua_src_s  hotffi_lua_src_t;

struct hotffi_lua_src_s {
    int                kind;     /* 'f' file, 'r' ran */
    char              *key;      /* ours */
    char              *text;     /* ours */
    size_t             len;
    hotffi_lua_src_t  *next;
};


static pthread_mutex_t    hotffi_lua_source_mtx = PTHREAD_MUTEX_INITIALIZER;
static hotffi_lua_src_t  *hotffi_lua_sources;    /* mtx */


/* locks: mtx held */
static hotffi_lua_src_t *
hotffi_lua_source_find(int kind, const char *key)
{
    hotffi_lua_src_t  *s;

    for (s = hotffi_lua_sources; s != NULL; s = s->next) {
        if (s->kind == kind && strcmp(s->key, key) == 0) {
            return s;
        }
    }

    return NULL;
}


/* thread: any.  Copies text into the record of (kind, key). */
static void
hotffi_lua_source_put(int kind, const char *key, const char *text,
    size_t len)
{
    char              *copy;
    hotffi_lua_src_t  *s;

    copy = malloc(len + 1);
    if (copy == NULL) {
        return;
    }

    memcpy(copy, text, len);
    copy[len] = '\0';

    (void) pthread_mutex_lock(&hotffi_lua_source_mtx);

    s = hotffi_lua_source_find(kind, key);

    if (s == NULL) {
        s = calloc(1, sizeof(hotffi_lua_src_t));
        if (s == NULL || (s->key = strdup(key)) == NULL) {
            (void) pthread_mutex_unlock(&hotffi_lua_source_mtx);
            free(s);
            free(copy);
            return;
        }

        s->kind = kind;
        s->next = hotffi_lua_sources;
        hotffi_lua_sources = s;
    }

    free(s->text);
    s->text = copy;
    s->len = len;

    (void) pthread_mutex_unlock(&hotffi_lua_source_mtx);
}


/* thread: any.  1 with a copy of the record in svc->src, else 0. */
static int
hotffi_lua_source_copy(hotffi_lua_svc_t *svc, int kind, const char *key)
{
    int                found;
    hotffi_lua_src_t  *s;

    found = 0;

    (void) pthread_mutex_lock(&hotffi_lua_source_mtx);

    s = hotffi_lua_source_find(kind, key);

    if (s != NULL) {
        svc->src = malloc(s->len + 1);
        if (svc->src != NULL) {
            memcpy(svc->src, s->text, s->len + 1);
            svc->src_len = s->len;
            found = 1;
        }
    }

    (void) pthread_mutex_unlock(&hotffi_lua_source_mtx);

    return found;
}


/* thread: the init thread.  svc->src: ours, the whole file. */
static int
hotffi_lua_source_read(hotffi_lua_svc_t *svc, char *err, size_t errlen)
{
    FILE    *f;
    long     size;
    size_t   n;

    f = fopen(svc->path, "rb");
    if (f == NULL) {
        (void) snprintf(err, errlen, "cannot open \"%s\": %s", svc->path,
                        strerror(errno));
        return HOTFFI_LUA_ERROR;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        (void) snprintf(err, errlen, "cannot read \"%s\": %s", svc->path,
                        strerror(errno));
        (void) fclose(f);
        return HOTFFI_LUA_ERROR;
    }

    if (size > HOTFFI_LUA_SOURCE_MAX) {
        (void) snprintf(err, errlen, "\"%s\" is larger than %d bytes",
                        svc->path, HOTFFI_LUA_SOURCE_MAX);
        (void) fclose(f);
        return HOTFFI_LUA_ERROR;
    }

    svc->src = malloc((size_t) size + 1);
    if (svc->src == NULL) {
        (void) snprintf(err, errlen, "out of memory");
        (void) fclose(f);
        return HOTFFI_LUA_ERROR;
    }

    n = fread(svc->src, 1, (size_t) size, f);

    if (ferror(f)) {
        (void) snprintf(err, errlen, "cannot read \"%s\"", svc->path);
        (void) fclose(f);
        return HOTFFI_LUA_ERROR;
    }

    (void) fclose(f);

    svc->src[n] = '\0';
    svc->src_len = n;

    return HOTFFI_LUA_OK;
}


/*
 * thread: the init thread.  Puts the code to run into svc->src (ours):
 * for a rollback, what the last version of this cfg ran; without "?",
 * what was read first from the path; else the file as it is now.
 */
int
hotffi_lua_source_get(hotffi_lua_svc_t *svc, int reread, int rollback,
    char *err, size_t errlen)
{
    if (rollback && hotffi_lua_source_copy(svc, 'r', svc->cfg)) {
        return HOTFFI_LUA_OK;
    }

    if (!reread && hotffi_lua_source_copy(svc, 'f', svc->path)) {
        return HOTFFI_LUA_OK;
    }

    if (hotffi_lua_source_read(svc, err, errlen) != HOTFFI_LUA_OK) {
        return HOTFFI_LUA_ERROR;
    }

    if (!reread) {
        hotffi_lua_source_put('f', svc->path, svc->src, svc->src_len);
    }

    return HOTFFI_LUA_OK;
}


/* thread: the init thread.  svc started: its code is the one to go back to. */
void
hotffi_lua_source_remember(hotffi_lua_svc_t *svc, int reread)
{
    hotffi_lua_source_put('r', svc->cfg, svc->src, svc->src_len);
}
