/*
 * c_echo.c -- a runtime written the way lua-resty-ffi runtimes are, from its
 * ABI description alone: the three functions are declared here, nothing
 * comes from hotffi, and there is no libffi_fini().  Two builds,
 * build/lib/libffi_c_echo.so (BUILD "a") and libffi_c_echo_b.so ("b"),
 * show which code answers after a library is loaded again from disk
 * (tests/nginx/420-compat.t).
 *
 * Requests: "build" answers the build, a call without a request answers
 * "<null>", anything else is echoed back.  cfg "linger=MS": the polling
 * thread stays MS ms after the unload before it ends.
 */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#ifndef BUILD
#define BUILD  "a"
#endif


void *ngx_http_lua_ffi_task_poll(void *tq);
char *ngx_http_lua_ffi_get_req(void *tsk, int *len);
void ngx_http_lua_ffi_respond(void *tsk, int rc, char *rsp, int rsp_len);


/* what libffi_init() hands its thread, which frees it */
typedef struct {
    void  *tq;
    long   linger_ms;
} c_echo_t;


/* rsp: malloc()'ed, the host frees it */
static void
c_echo_answer(void *task, const char *b, int len)
{
    char  *rsp;

    rsp = malloc(len + 1);
    if (rsp == NULL) {
        ngx_http_lua_ffi_respond(task, 1, NULL, 0);
        return;
    }

    memcpy(rsp, b, len);
    rsp[len] = '\0';
    ngx_http_lua_ffi_respond(task, 0, rsp, len);
}


/* thread: runtime */
static void *
c_echo_loop(void *data)
{
    int              len;
    char            *req;
    void            *task;
    c_echo_t        *c = data;
    struct timespec  linger;

    while ((task = ngx_http_lua_ffi_task_poll(c->tq)) != NULL) {
        req = ngx_http_lua_ffi_get_req(task, &len);

        if (req == NULL) {
            c_echo_answer(task, "<null>", 6);

        } else if (len == 5 && memcmp(req, "build", 5) == 0) {
            c_echo_answer(task, BUILD, strlen(BUILD));

        } else {
            c_echo_answer(task, req, len);
        }
    }

    /* unloaded: the queue is gone, never touch it again */
    linger.tv_sec = c->linger_ms / 1000;
    linger.tv_nsec = c->linger_ms % 1000 * 1000000;
    free(c);

    (void) nanosleep(&linger, NULL);

    return NULL;
}


/* thread: the host's event loop */
int
libffi_init(char *cfg, void *tq)
{
    int             rc;
    c_echo_t       *c;
    pthread_t       tid;
    pthread_attr_t  attr;

    c = malloc(sizeof(c_echo_t));
    if (c == NULL || pthread_attr_init(&attr) != 0) {
        free(c);
        return 1;
    }

    c->tq = tq;
    c->linger_ms = (cfg && strncmp(cfg, "linger=", 7) == 0)
                   ? atol(cfg + 7) : 0;

    (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, c_echo_loop, c);
    (void) pthread_attr_destroy(&attr);

    if (rc != 0) {
        free(c);
        return 2;
    }

    return 0;
}
