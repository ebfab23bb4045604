/*
 * template.c -- a runtime of your own in C, to copy and fill in
 * (docs/c.md).  Builds outside the tree with one command:
 *
 *     cc $(pkg-config --cflags --libs hotffi) -O2 -fPIC -shared \
 *         -o libtemplate.so template.c
 *
 * and loads as hotffi.load("/path/to/libtemplate.so", "4") (cfg: how many
 * threads).  Each call answers "<count> <request>": count is how many calls
 * this runtime answered, kept across rt:__reload() by handing it to the
 * next version.  The parts to change are marked HANDLE.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hotffi.h>


#define TEMPLATE_THREADS_MAX  64


/* one per loaded version: malloc()'ed in libffi_init(), freed when its
 * threads are joined (libffi_fini() or libffi_retire()) */
typedef struct {
    void                 *tq;
    int                   nthreads;
    pthread_t             threads[TEMPLATE_THREADS_MAX];
    atomic_ulong          count;      /* written by every runtime thread */
} template_t;


/*
 * HANDLE: the work of one call.  req is borrowed from hotffi (read-only,
 * len bytes, NULL for a call without a request); the answer is malloc()'ed
 * because hotffi free()s it.  Returns the rc the caller sees (0: success).
 * thread: runtime.
 */
static int
template_handle(template_t *t, const char *req, int len, char **rsp,
    int *rsp_len)
{
    int            n;
    unsigned long  count;

    count = atomic_fetch_add(&t->count, 1) + 1;

    /* 20 digits, a space, the request and a NUL */
    *rsp = malloc(22 + (size_t) len);
    if (*rsp == NULL) {
        return 1;
    }

    n = snprintf(*rsp, 22, "%lu ", count);
    if (len) {
        memcpy(*rsp + n, req, len);
    }

    *rsp_len = n + len;

    return 0;
}


/* thread: runtime; ends when poll says the runtime stops */
static void *
template_loop(void *arg)
{
    int          len, rc, rsp_len;
    char        *req, *rsp;
    void        *task;
    template_t  *t = arg;

    while ((task = ngx_http_lua_ffi_task_poll(t->tq)) != NULL) {
        /* task: ours until respond() */
        req = ngx_http_lua_ffi_get_req(task, &len);

        rsp = NULL;
        rsp_len = 0;

        if (hotffi_task_cancelled(task)) {
            /* the caller gave up: skip the work, answer all the same */
            rc = 1;

        } else {
            rc = template_handle(t, req, len, &rsp, &rsp_len);
        }

        /* task and rsp: hotffi's from here */
        ngx_http_lua_ffi_respond(task, rc, rsp, rsp_len);
    }

    return NULL;
}


/* thread: hotffi reaper (libffi_fini() also runs after a failed init) */
static void
template_join(template_t *t)
{
    int  i;

    for (i = 0; i < t->nthreads; i++) {
        (void) pthread_join(t->threads[i], NULL);
    }
}


/* thread: event loop; must not block.  cfg: borrowed, NULL for nil */
int
libffi_init(char *cfg, void *tq)
{
    int          n, len;
    const char  *state;
    template_t  *t;

    n = (cfg != NULL) ? atoi(cfg) : 1;
    if (n < 1 || n > TEMPLATE_THREADS_MAX) {
        hotffi_init_error(tq, "cfg: the number of threads, 1 to 64");
        return 1;
    }

    t = calloc(1, sizeof(template_t));
    if (t == NULL) {
        hotffi_init_error(tq, "out of memory");
        return 2;
    }

    t->tq = tq;

    /* the previous version's count, if this is a reload: borrowed, so
     * read now */
    state = hotffi_state(tq, &len);
    if (state != NULL && len == sizeof(unsigned long)) {
        unsigned long  count;

        memcpy(&count, state, sizeof(count));
        atomic_store(&t->count, count);
    }

    /* set before the threads start: libffi_fini() finds t through it,
     * even after a failure below */
    hotffi_tq_set_data(tq, t);

    for (t->nthreads = 0; t->nthreads < n; t->nthreads++) {
        if (pthread_create(&t->threads[t->nthreads], NULL, template_loop, t)
            != 0)
        {
            /* libffi_fini() joins the threads already started */
            hotffi_init_error(tq, "pthread_create() failed");
            return 3;
        }
    }

    return 0;
}


/* thread: hotffi reaper; poll returns NULL by now, so the joins end */
int
libffi_fini(void *tq)
{
    template_t  *t = hotffi_tq_data(tq);

    if (t != NULL) {
        template_join(t);
        free(t);
    }

    return 0;
}


/*
 * rt:__reload(): like libffi_fini(), and hands the count to the next
 * version.  thread: hotffi reaper.  state: malloc()'ed, hotffi's.
 */
int
libffi_retire(void *tq, char **state, int *len)
{
    unsigned long   count;
    template_t     *t = hotffi_tq_data(tq);

    if (t == NULL) {
        return 0;
    }

    /* every thread has answered its last task once joined */
    template_join(t);
    count = atomic_load(&t->count);
    free(t);

    *state = malloc(sizeof(count));
    if (*state == NULL) {
        hotffi_init_error(tq, "out of memory for the state");
        return 1;
    }

    memcpy(*state, &count, sizeof(count));
    *len = sizeof(count);

    return 0;
}
