/*
 * hotffi_task.c -- creating and freeing tasks (see hotffi_task.h).
 */

#include <stdlib.h>
#include <string.h>

#include "hotffi_task.h"
#include "hotffi_hub.h"
#include "hotffi_runtime.h"


/* thread: event loop */
hotffi_task_t *
hotffi_task_create(hotffi_hub_t *hub, hotffi_runtime_t *rt, const char *req,
    size_t len)
{
    hotffi_task_t  *task;

    task = malloc(sizeof(hotffi_task_t) + len + 1);
    if (task == NULL) {
        return NULL;
    }

    memset(task, 0, sizeof(hotffi_task_t));
    atomic_init(&task->cancelled, 0);

    task->hub = hub;
    task->rt = rt;
    task->kind = HOTFFI_TASK_CALL;
    task->req_len = len;

    if (len) {
        memcpy(task->req, req, len);
    }

    task->req[len] = '\0';

    hotffi_runtime_ref(rt);
    hub->stats.tasks_live++;

    return task;
}


/* thread: event loop */
void
hotffi_task_free(hotffi_task_t *task)
{
    hotffi_hub_t  *hub;

    hub = task->hub;

    free(task->rsp);

    if (task->waiter && hub->host.release) {
        hub->host.release(task->waiter);
    }

    hotffi_runtime_unref(task->rt);
    hub->stats.tasks_live--;

    free(task);
}
