/*
 * hotffi_abi.c -- the functions runtimes call (see include/hotffi.h).  These
 * are the only core symbols exported to the libraries hotffi loads.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi_core.h"
#include "hotffi_err.h"
#include "hotffi_hub.h"
#include "hotffi_port.h"
#include "hotffi_queue.h"
#include "hotffi_spin.h"
#include "hotffi_task.h"
#include "hotffi_version.h"
#include "hotffi.h"


/* `runtime "NAME" vN: `, NAME at most HOTFFI_NAME_MAX (hotffi_runtime.c) */
#define HOTFFI_LOG_PREFIX_MAX  320


/* thread: runtime */
HOTFFI_EXPORT void *
ngx_http_lua_ffi_task_poll(void *tq)
{
    void  *task;

    return hotffi_task_poll_batch(tq, &task, 1) ? task : NULL;
}


/* thread: runtime */
HOTFFI_EXPORT int
hotffi_task_poll_batch(void *tq, void **tasks, int max)
{
    int             n, noted;
    uint32_t        got;
    hotffi_port_t  *port = tq;

    if (max < 1) {
        return 0;
    }

    noted = hotffi_pollers_note_self(&port->pollers);

    for ( ;; ) {
        got = hotffi_queue_poll_batch(port->queue, port,
                                      (hotffi_task_t **) tasks,
                                      (uint32_t) max);
        if (got == 0) {
            if (noted) {
                hotffi_pollers_note_stop(&port->pollers);
            }

            return 0;
        }

        n = hotffi_hub_taken((hotffi_task_t **) tasks, (int) got);

        if (n) {
            /* the event loop's turnaround since this thread's last answer */
            hotffi_spin_note_next(((hotffi_task_t *) tasks[0])->posted);
            return n;
        }
    }
}


/* thread: runtime */
HOTFFI_EXPORT char *
ngx_http_lua_ffi_get_req(void *tsk, int *len)
{
    hotffi_task_t  *task = tsk;

    if (len) {
        *len = (int) task->req_len;
    }

    /* char * for lua-resty-ffi's signature; the bytes are read-only */
    return (char *) task->req;
}


/* thread: runtime */
HOTFFI_EXPORT void
ngx_http_lua_ffi_respond(void *tsk, int rc, char *rsp, int rsp_len)
{
    hotffi_task_t  *task = tsk;

    hotffi_task_answer(task, rc, rsp, rsp_len);
    hotffi_spin_note_answer(task->rsp_len);
    hotffi_hub_complete(task->hub, task);
}


/* thread: any */
HOTFFI_EXPORT int
hotffi_abi_version(void)
{
    return HOTFFI_ABI_VERSION;
}


/* thread: runtime */
HOTFFI_EXPORT int
hotffi_task_cancelled(void *tsk)
{
    hotffi_task_t  *task = tsk;

    return atomic_load_explicit(&task->cancelled, memory_order_acquire);
}


/* thread: inside libffi_init() (init) or libffi_retire() (reaper) */
HOTFFI_EXPORT void
hotffi_init_error(void *tq, const char *msg)
{
    hotffi_port_t  *port = tq;

    if (port->init_error == NULL) {
        port->init_error = malloc(HOTFFI_ERR_MAX);
        if (port->init_error == NULL) {
            return;
        }
    }

    hotffi_err_tail(port->init_error, HOTFFI_ERR_MAX, msg, strlen(msg));
}


/* thread: any */
HOTFFI_EXPORT void
hotffi_tq_set_data(void *tq, void *data)
{
    hotffi_port_t  *port = tq;

    port->data = data;
}


/* thread: any */
HOTFFI_EXPORT void *
hotffi_tq_data(void *tq)
{
    hotffi_port_t  *port = tq;

    return port->data;
}


/* thread: init, inside libffi_init() */
HOTFFI_EXPORT const char *
hotffi_state(void *tq, int *len)
{
    hotffi_port_t  *port = tq;

    if (len) {
        *len = (int) port->state_len;
    }

    return port->state;
}


/* thread: init, inside libffi_init() */
HOTFFI_EXPORT int
hotffi_rollback(void *tq)
{
    hotffi_port_t  *port = tq;

    return port->rollback;
}


/*
 * thread: any.  tq is a version's port (the only ports runtimes are given):
 * its name and number were written before libffi_init() and never change,
 * and the runtime's name outlives every tq of it.
 */
HOTFFI_EXPORT void
hotffi_log(void *tq, int level, const char *msg, int len)
{
    int                n;
    char               prefix[HOTFFI_LOG_PREFIX_MAX];
    hotffi_hub_t      *hub;
    hotffi_version_t  *v;

    if (msg == NULL) {
        return;
    }

    if (level < HOTFFI_LEVEL_EMERG) {
        level = HOTFFI_LEVEL_EMERG;

    } else if (level > HOTFFI_LEVEL_DEBUG) {
        level = HOTFFI_LEVEL_DEBUG;
    }

    v = NULL;

    if (tq) {
        v = (hotffi_version_t *) ((char *) tq
                                  - offsetof(hotffi_version_t, port));
        hub = v->owner.hub;

    } else {
        hub = hotffi_hub_process();

        if (hub == NULL) {
            return;
        }
    }

    /* filtered before anything is copied: a debug line costs a load */
    if (!hotffi_logbuf_wants(&hub->log, level)) {
        return;
    }

    n = 0;

    if (v) {
        n = snprintf(prefix, sizeof(prefix), "runtime \"%s\" v%llu: ",
                     v->owner.name, (unsigned long long) v->number);

        if (n < 0) {
            n = 0;

        } else if (n >= (int) sizeof(prefix)) {
            n = (int) sizeof(prefix) - 1;
        }
    }

    if (hotffi_logbuf_push(&hub->log, level, prefix, (size_t) n, msg,
                           len > 0 ? (size_t) len : strlen(msg)))
    {
        hotffi_hub_notify(hub);
    }
}
