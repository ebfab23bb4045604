/*
 * digest.c -- a runtime doing real work on a thread pool: each request is
 * hashed with OpenSSL on one of N threads, and the answer is the hex digest.
 *
 *   hotffi.load("digest", "sha256 4")    -- algorithm, number of threads
 *
 * Any digest OpenSSL knows works ("sha256", "sha512", "sha3-256", ...); an
 * unknown one, or a thread count outside 1..64, fails the load.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "hotffi.h"


#define DIGEST_MAX_THREADS  64


typedef struct digest_s  digest_t;

struct digest_s {
    void           *tq;
    const EVP_MD   *md;
    int             nthreads;
    pthread_t       tids[DIGEST_MAX_THREADS];
};


static void
digest_one(digest_t *d, void *task)
{
    int            len;
    char          *req, *hex;
    unsigned int   i, n;
    unsigned char  md[EVP_MAX_MD_SIZE];

    req = ngx_http_lua_ffi_get_req(task, &len);

    if (EVP_Digest(req, len, md, &n, d->md, NULL) != 1) {
        ngx_http_lua_ffi_respond(task, 2, strdup("EVP_Digest() failed"), 0);
        return;
    }

    hex = malloc(2 * n + 1);
    if (hex == NULL) {
        ngx_http_lua_ffi_respond(task, 1, NULL, 0);
        return;
    }

    for (i = 0; i < n; i++) {
        (void) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    }

    /* hex: ownership passes to hotffi */
    ngx_http_lua_ffi_respond(task, 0, hex, 2 * n);
}


/* thread: runtime, one of the pool; all of them poll the same queue */
static void *
digest_loop(void *data)
{
    void      *task;
    digest_t  *d = data;

    while ((task = ngx_http_lua_ffi_task_poll(d->tq)) != NULL) {
        digest_one(d, task);
    }

    return NULL;
}


/* thread: event loop.  cfg: "ALGORITHM [THREADS]", borrowed. */
int
libffi_init(char *cfg, void *tq)
{
    int        i;
    char       algo[64];
    digest_t  *d;

    d = calloc(1, sizeof(digest_t));
    if (d == NULL) {
        return 1;
    }

    d->tq = tq;
    d->nthreads = 2;

    if (cfg == NULL || sscanf(cfg, "%63s %d", algo, &d->nthreads) < 1) {
        (void) strcpy(algo, "sha256");
    }

    d->md = EVP_get_digestbyname(algo);

    if (d->md == NULL
        || d->nthreads < 1 || d->nthreads > DIGEST_MAX_THREADS)
    {
        free(d);
        return 22;
    }

    /* d: ours, kept with the queue until libffi_fini() */
    hotffi_tq_set_data(tq, d);

    for (i = 0; i < d->nthreads; i++) {
        if (pthread_create(&d->tids[i], NULL, digest_loop, d) != 0) {
            break;
        }
    }

    /* threads already started end when hotffi stops the failed runtime,
     * and libffi_fini() joins them */
    d->nthreads = i;

    return i == 0 ? 11 : 0;
}


/* thread: hotffi reaper */
int
libffi_fini(void *tq)
{
    int        i;
    digest_t  *d = hotffi_tq_data(tq);

    if (d == NULL) {
        /* libffi_init() failed before it made anything */
        return 0;
    }

    for (i = 0; i < d->nthreads; i++) {
        (void) pthread_join(d->tids[i], NULL);
    }

    free(d);
    return 0;
}
