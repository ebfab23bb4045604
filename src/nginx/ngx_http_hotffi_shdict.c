/*
 * ngx_http_hotffi_shdict.c -- lua_shared_dict zones for runtime threads:
 * the hotffi_shdict_*() functions of include/hotffi.h.
 *
 * DESIGN: lua-nginx-module's own code, called from any thread
 * A value must mean the same to a runtime as to ngx.shared.DICT in Lua,
 * in every worker, so these functions do not touch the zone themselves:
 * they call the very functions lua-resty-core's ngx.shared.DICT calls
 * (ngx_http_lua_ffi_shdict_get/store/incr/get_ttl, exported by the lua
 * module, found with dlsym()).  Those take the zone's mutex around every
 * access to the tree and the slab, so what they need of the caller's
 * thread is only what that mutex gives:
 *
 *   - ngx_shmtx_lock() stores the locker's pid in the lock word with a
 *     compare-and-swap from 0.  Threads of one process store the same pid,
 *     but the swap still lets only one of them in: the lock excludes an
 *     event loop and a runtime thread of the same worker as it excludes
 *     two workers.  Waiting spins, then sleeps on the zone's semaphore or
 *     yields: never on anything the event loop must do first, so a runtime
 *     thread cannot deadlock with its own worker.
 *   - The pid matters only when a worker dies holding the lock: the master
 *     frees a lock that holds the dead worker's pid, which a runtime thread
 *     of that worker held as much as its event loop did.
 *   - Expiry reads nginx's cached time (ngx_timeofday()), which nginx
 *     publishes through a ring of slots for readers outside the event loop.
 *   - Nothing is allocated from a request pool or logged by the lua module
 *     on these paths; a value longer than the buffer given is malloc()'ed.
 *
 * A runtime thread holding the lock blocks every worker's Lua on that zone
 * for as long as one get or store takes, as another worker's would.
 *
 * Before the zone's mutex, a runtime thread takes the zone's thread-side
 * lock (src/core/hotffi_zonelock.h), process-local: of the runtime threads
 * of one worker, one at a time contends with the event loops, so a worker
 * whose threads hammer a zone does not starve its own Lua.  The event loop
 * never takes it, so the order is always that lock, then the zone's mutex,
 * and no holder of either waits for anything but the end of one operation.
 *
 * Zones are found by name in a table resty.hotffi fills from ngx.shared
 * (the zone pointers lua-resty-core passes to those functions) before its
 * first load, under a mutex any thread may take to look one up.
 */

#include <dlfcn.h>
#include <pthread.h>

#include "hotffi.h"
#include "hotffi_zonelock.h"
#include "ngx_http_hotffi_module.h"


/* lua-nginx-module's NGX_HTTP_LUA_SHDICT_* store flags */
#define SHDICT_ADD      0x0001
#define SHDICT_REPLACE  0x0002
#define SHDICT_SAFE     0x0004


typedef struct {
    int        (*get)(void *zone, const u_char *key, size_t key_len,
                      int *value_type, u_char **str_value_buf,
                      size_t *str_value_len, double *num_value,
                      int *user_flags, int get_stale, int *is_stale,
                      char **errmsg);
    int        (*store)(void *zone, int op, const u_char *key,
                        size_t key_len, int value_type,
                        const u_char *str_value_buf, size_t str_value_len,
                        double num_value, long exptime, int user_flags,
                        char **errmsg, int *forcible);
    int        (*incr)(void *zone, const u_char *key, size_t key_len,
                       double *value, char **err, int has_init, double init,
                       long init_ttl, int *forcible);
    long       (*get_ttl)(void *zone, const u_char *key, size_t key_len);
} ngx_http_hotffi_shdict_api_t;


#define NGX_HTTP_HOTFFI_SHDICT_MAX       256
#define NGX_HTTP_HOTFFI_SHDICT_NAME_MAX  128


/* the zones by name, noted by the event loop, read by any thread */
typedef struct {
    char   name[NGX_HTTP_HOTFFI_SHDICT_NAME_MAX];
    void  *zone;
} ngx_http_hotffi_shdict_t;

static ngx_http_hotffi_shdict_t  shdicts[NGX_HTTP_HOTFFI_SHDICT_MAX];
static ngx_uint_t                shdict_n;         /* guarded by shdict_mtx */
static pthread_mutex_t           shdict_mtx = PTHREAD_MUTEX_INITIALIZER;

/* written once under `once`, read-only afterwards */
static ngx_http_hotffi_shdict_api_t  shdict_api;
static int                           shdict_api_ok;
static pthread_once_t                shdict_once = PTHREAD_ONCE_INIT;


static void
ngx_http_hotffi_shdict_resolve(void)
{
    *(void **) &shdict_api.get = dlsym(RTLD_DEFAULT,
                                       "ngx_http_lua_ffi_shdict_get");
    *(void **) &shdict_api.store = dlsym(RTLD_DEFAULT,
                                         "ngx_http_lua_ffi_shdict_store");
    *(void **) &shdict_api.incr = dlsym(RTLD_DEFAULT,
                                        "ngx_http_lua_ffi_shdict_incr");
    *(void **) &shdict_api.get_ttl = dlsym(RTLD_DEFAULT,
                                           "ngx_http_lua_ffi_shdict_get_ttl");

    shdict_api_ok = shdict_api.get
                    && shdict_api.store && shdict_api.incr
                    && shdict_api.get_ttl;
}


/* Says why in err (lua-nginx-module's errmsg are short static strings). */
static int
ngx_http_hotffi_shdict_fail(int rc, const char *why, char *err,
    size_t err_len)
{
    if (err && err_len) {
        ngx_cpystrn((u_char *) err, (u_char *) (why ? why : "failed"),
                    err_len);
    }

    return rc;
}


/* Whether the lua module's functions are there, and dict is a zone. */
static int
ngx_http_hotffi_shdict_ready(const void *dict, char *err, size_t err_len)
{
    pthread_once(&shdict_once, ngx_http_hotffi_shdict_resolve);

    if (dict == NULL) {
        (void) ngx_http_hotffi_shdict_fail(0, "no such shared dict", err,
                                           err_len);
        return 0;
    }

    if (!shdict_api_ok) {
        (void) ngx_http_hotffi_shdict_fail(0, "lua-nginx-module's shared "
                                           "dict functions were not found: "
                                           "is it loaded?", err, err_len);
        return 0;
    }

    return 1;
}


/*
 * A key as lua-resty-core lets one through: not empty, and at most 65535
 * bytes, since the zone's nodes keep a key's length in 16 bits (a longer
 * one would be stored cut and break the tree).
 */
static int
ngx_http_hotffi_shdict_key_ok(const char *key, size_t key_len, char *err,
    size_t err_len)
{
    if (key == NULL || key_len == 0) {
        (void) ngx_http_hotffi_shdict_fail(0, "empty key", err, err_len);
        return 0;
    }

    if (key_len > 65535) {
        (void) ngx_http_hotffi_shdict_fail(0, "key too long", err, err_len);
        return 0;
    }

    return 1;
}


/*
 * thread: event loop.  Notes the zone of lua_shared_dict `name`, as
 * lua-nginx-module hands it to its own shdict functions (resty.hotffi
 * registers every ngx.shared dict before its first load).
 */
NGX_HTTP_HOTFFI_EXPORT void
ngx_http_hotffi_ffi_shdict_add(const char *name, size_t len, void *zone)
{
    ngx_uint_t  i;

    if (len >= NGX_HTTP_HOTFFI_SHDICT_NAME_MAX || zone == NULL) {
        return;
    }

    pthread_mutex_lock(&shdict_mtx);

    for (i = 0; i < shdict_n; i++) {
        if (ngx_strcmp(shdicts[i].name, name) == 0) {
            break;
        }
    }

    if (i < NGX_HTTP_HOTFFI_SHDICT_MAX) {
        ngx_memcpy(shdicts[i].name, name, len);
        shdicts[i].name[len] = '\0';
        shdicts[i].zone = zone;
        shdict_n = i == shdict_n ? shdict_n + 1 : shdict_n;
    }

    pthread_mutex_unlock(&shdict_mtx);
}


/* thread: any */
NGX_HTTP_HOTFFI_EXPORT void *
hotffi_shdict(const char *name)
{
    void        *zone;
    ngx_uint_t   i;

    if (name == NULL) {
        return NULL;
    }

    zone = NULL;
    pthread_mutex_lock(&shdict_mtx);

    for (i = 0; i < shdict_n; i++) {
        if (ngx_strcmp(shdicts[i].name, name) == 0) {
            zone = shdicts[i].zone;
            break;
        }
    }

    pthread_mutex_unlock(&shdict_mtx);

    return zone;
}


/* thread: any */
NGX_HTTP_HOTFFI_EXPORT int
hotffi_shdict_get(void *dict, const char *key, size_t key_len, int stale,
    hotffi_shdict_value_t *value, char *err, size_t err_len)
{
    int      rc, type, flags, is_stale;
    char    *errmsg;
    u_char   buf[64], *str;
    size_t   len;
    double   num;

    ngx_memzero(value, sizeof(hotffi_shdict_value_t));

    if (!ngx_http_hotffi_shdict_ready(dict, err, err_len)
        || !ngx_http_hotffi_shdict_key_ok(key, key_len, err, err_len))
    {
        return HOTFFI_SHDICT_ERROR;
    }

    str = buf;
    len = sizeof(buf);
    type = HOTFFI_SHDICT_NIL;
    flags = 0;
    is_stale = 0;
    errmsg = NULL;

    hotffi_zonelock_lock(dict);
    rc = shdict_api.get(dict, (const u_char *) key, key_len, &type, &str,
                        &len, &num, &flags, stale, &is_stale, &errmsg);
    hotffi_zonelock_unlock(dict);
    if (rc != NGX_OK) {
        return ngx_http_hotffi_shdict_fail(HOTFFI_SHDICT_ERROR, errmsg, err,
                                           err_len);
    }

    value->type = type;
    value->flags = (unsigned int) flags;
    value->stale = is_stale;

    switch (type) {

    case HOTFFI_SHDICT_STRING:
        /* a value longer than buf came malloc()'ed: hand that one over */
        if (str == buf) {
            str = malloc(len + 1);
            if (str == NULL) {
                return ngx_http_hotffi_shdict_fail(HOTFFI_SHDICT_ERROR,
                                                   "no memory", err,
                                                   err_len);
            }
            ngx_memcpy(str, buf, len);
        } else {
            /* lua-nginx-module malloc()'ed exactly len: add the NUL */
            u_char  *p = realloc(str, len + 1);

            if (p == NULL) {
                free(str);
                return ngx_http_hotffi_shdict_fail(HOTFFI_SHDICT_ERROR,
                                                   "no memory", err,
                                                   err_len);
            }
            str = p;
        }
        str[len] = '\0';
        value->str = (char *) str;
        value->len = len;
        break;

    case HOTFFI_SHDICT_NUMBER:
        value->number = num;
        break;

    case HOTFFI_SHDICT_BOOLEAN:
        /* the lua module hands a boolean over as one byte in the buffer */
        value->number = str[0] ? 1 : 0;
        if (str != buf) {
            free(str);
        }
        break;

    default:
        value->type = HOTFFI_SHDICT_NIL;
        break;
    }

    return HOTFFI_SHDICT_OK;
}


/* thread: any */
NGX_HTTP_HOTFFI_EXPORT int
hotffi_shdict_store(void *dict, int op, const char *key, size_t key_len,
    const hotffi_shdict_value_t *value, double exptime, int *forcible,
    char *err, size_t err_len)
{
    int          rc, flags, type, dummy;
    char        *errmsg;
    u_char       boolean;
    const char  *str;
    size_t       len;

    if (!ngx_http_hotffi_shdict_ready(dict, err, err_len)
        || !ngx_http_hotffi_shdict_key_ok(key, key_len, err, err_len))
    {
        return HOTFFI_SHDICT_ERROR;
    }

    switch (op) {
    case HOTFFI_SHDICT_SET:      flags = 0; break;
    case HOTFFI_SHDICT_SAFE_SET: flags = SHDICT_SAFE; break;
    case HOTFFI_SHDICT_ADD:      flags = SHDICT_ADD; break;
    case HOTFFI_SHDICT_SAFE_ADD: flags = SHDICT_ADD | SHDICT_SAFE; break;
    case HOTFFI_SHDICT_REPLACE:  flags = SHDICT_REPLACE; break;
    default:
        return ngx_http_hotffi_shdict_fail(HOTFFI_SHDICT_ERROR, "bad op", err,
                                           err_len);
    }

    /* exptime >= 0 and finite (NaN fails the test) */
    if (!(exptime >= 0 && exptime <= 1e9)) {
        return ngx_http_hotffi_shdict_fail(HOTFFI_SHDICT_ERROR, "bad exptime",
                                           err, err_len);
    }

    type = value ? value->type : HOTFFI_SHDICT_NIL;
    str = NULL;
    len = 0;

    switch (type) {
    case HOTFFI_SHDICT_NIL:
        break;
    case HOTFFI_SHDICT_STRING:
        str = value->str;
        len = value->len;
        break;
    case HOTFFI_SHDICT_BOOLEAN:
        boolean = value->number != 0;
        str = (const char *) &boolean;
        len = 1;
        break;
    case HOTFFI_SHDICT_NUMBER:
        break;
    default:
        return ngx_http_hotffi_shdict_fail(HOTFFI_SHDICT_ERROR,
                                           "bad value type", err, err_len);
    }

    errmsg = NULL;
    hotffi_zonelock_lock(dict);
    rc = shdict_api.store(dict, flags, (const u_char *) key, key_len, type,
                          (const u_char *) str, len,
                          value ? value->number : 0,
                          (long) (exptime * 1000),
                          value ? (int) value->flags : 0, &errmsg,
                          forcible ? forcible : &dummy);
    hotffi_zonelock_unlock(dict);
    if (rc == NGX_OK) {
        return HOTFFI_SHDICT_OK;
    }

    /* "exists" for add, "not found" for replace: declined, not failed */
    rc = (op == HOTFFI_SHDICT_ADD || op == HOTFFI_SHDICT_SAFE_ADD
          || op == HOTFFI_SHDICT_REPLACE)
         && errmsg && ngx_strcmp(errmsg, "no memory") != 0
         ? HOTFFI_SHDICT_DECLINED : HOTFFI_SHDICT_ERROR;

    return ngx_http_hotffi_shdict_fail(rc, errmsg, err, err_len);
}


/* thread: any */
NGX_HTTP_HOTFFI_EXPORT int
hotffi_shdict_incr(void *dict, const char *key, size_t key_len, double by,
    double *value, int has_init, double init, double init_ttl,
    int *forcible, char *err, size_t err_len)
{
    int    rc, dummy;
    char  *errmsg;

    if (!ngx_http_hotffi_shdict_ready(dict, err, err_len)
        || !ngx_http_hotffi_shdict_key_ok(key, key_len, err, err_len))
    {
        return HOTFFI_SHDICT_ERROR;
    }

    if (has_init && !(init_ttl >= 0 && init_ttl <= 1e9)) {
        return ngx_http_hotffi_shdict_fail(HOTFFI_SHDICT_ERROR, "bad init_ttl",
                                           err, err_len);
    }

    *value = by;
    errmsg = NULL;
    hotffi_zonelock_lock(dict);
    rc = shdict_api.incr(dict, (const u_char *) key, key_len, value,
                         &errmsg, has_init, init,
                         has_init ? (long) (init_ttl * 1000) : 0,
                         forcible ? forcible : &dummy);
    hotffi_zonelock_unlock(dict);
    if (rc == NGX_OK) {
        return HOTFFI_SHDICT_OK;
    }

    rc = errmsg && ngx_strcmp(errmsg, "not found") == 0
         ? HOTFFI_SHDICT_DECLINED : HOTFFI_SHDICT_ERROR;

    return ngx_http_hotffi_shdict_fail(rc, errmsg, err, err_len);
}


/* thread: any */
NGX_HTTP_HOTFFI_EXPORT double
hotffi_shdict_ttl(void *dict, const char *key, size_t key_len)
{
    long  ms;

    if (!ngx_http_hotffi_shdict_ready(dict, NULL, 0)
        || !ngx_http_hotffi_shdict_key_ok(key, key_len, NULL, 0))
    {
        return -1;
    }

    hotffi_zonelock_lock(dict);
    ms = shdict_api.get_ttl(dict, (const u_char *) key, key_len);
    hotffi_zonelock_unlock(dict);
    return ms == NGX_DECLINED ? -1 : (double) ms / 1000;
}
