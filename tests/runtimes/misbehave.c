/*
 * misbehave.c -- a runtime that fails on purpose, for the isolation tests
 * (tests/nginx/465-isolate.t): run in process, each of these kills or
 * stalls the nginx worker.
 *
 * cfg (what libffi_init() does): "segv" segfaults, "hang" sleeps for
 * ever, "exit" calls exit(3), "fail" returns 1 with a message; anything
 * else (or none) starts one thread serving requests:
 *   "segv"      segfaults               "exit"     exit(7)
 *   "hang"      sleeps for ever (the one thread: nothing more is taken)
 *   "noanswer"  takes the call and never answers it
 *   "leak"      mallocs and touches 1 MiB at a time until malloc fails,
 *               then abort()s
 *   "pid"       answers its process id
 *   "files"     opens /dev/null until it cannot, answers how many it got
 *   "spin"      burns CPU for ever
 *   anything else is echoed.
 */

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hotffi.h"


/* thread: any.  Ends the process with SIGSEGV, for real. */
static void
misbehave_segv(void)
{
    volatile int  *p = NULL;

    /* cppcheck-suppress nullPointer */
    *p = 1;
    raise(SIGSEGV);
}


/* thread: runtime */
static void *
misbehave_loop(void *tq)
{
    int     len, n;
    char   *req, *rsp, *leak;
    void   *task;

    while ((task = ngx_http_lua_ffi_task_poll(tq)) != NULL) {
        req = ngx_http_lua_ffi_get_req(task, &len);

        if (req == NULL) {
            ngx_http_lua_ffi_respond(task, 0, NULL, 0);
            continue;
        }

        if (strcmp(req, "segv") == 0) {
            misbehave_segv();

        } else if (strcmp(req, "exit") == 0) {
            exit(7);

        } else if (strcmp(req, "hang") == 0) {
            for ( ;; ) {
                (void) pause();
            }

        } else if (strcmp(req, "noanswer") == 0) {
            /* the task is dropped on purpose: never answered */
            continue;

        } else if (strcmp(req, "leak") == 0) {
            for ( ;; ) {
                leak = malloc(1024 * 1024);
                if (leak == NULL) {
                    abort();
                }
                memset(leak, 1, 1024 * 1024);
            }

        } else if (strcmp(req, "spin") == 0) {
            for (volatile unsigned long i = 0; ; i++) { /* void */ }

        } else if (strcmp(req, "files") == 0) {
            /* the descriptors stay open: the process is a test's */
            for (n = 0; open("/dev/null", O_RDONLY) != -1; n++) { /* void */ }

            rsp = malloc(32);
            if (rsp == NULL) {
                ngx_http_lua_ffi_respond(task, 1, NULL, 0);
                continue;
            }
            n = snprintf(rsp, 32, "%d", n);
            ngx_http_lua_ffi_respond(task, 0, rsp, n);
            continue;

        } else if (strcmp(req, "pid") == 0) {
            rsp = malloc(32);
            if (rsp == NULL) {
                ngx_http_lua_ffi_respond(task, 1, NULL, 0);
                continue;
            }
            n = snprintf(rsp, 32, "%d", (int) getpid());
            ngx_http_lua_ffi_respond(task, 0, rsp, n);
            continue;
        }

        rsp = malloc(len + 1);
        if (rsp == NULL) {
            ngx_http_lua_ffi_respond(task, 1, NULL, 0);
            continue;
        }
        memcpy(rsp, req, len + 1);
        ngx_http_lua_ffi_respond(task, 0, rsp, len);
    }

    return NULL;
}


/* thread: event loop, or an isolated runtime's helper */
int
libffi_init(char *cfg, void *tq)
{
    pthread_t  tid;

    if (cfg != NULL) {
        if (strcmp(cfg, "segv") == 0) {
            misbehave_segv();

        } else if (strcmp(cfg, "hang") == 0) {
            for ( ;; ) {
                (void) pause();
            }

        } else if (strcmp(cfg, "exit") == 0) {
            exit(3);

        } else if (strcmp(cfg, "fail") == 0) {
            hotffi_init_error(tq, "misbehave: told to fail");
            return 1;
        }
    }

    if (pthread_create(&tid, NULL, misbehave_loop, tq) != 0) {
        return 2;
    }

    /* never joined: the library has no libffi_fini() */
    (void) pthread_detach(tid);
    return 0;
}
