/*
 * hotffi_task.c -- creating and freeing tasks, through the hub's free list
 * (see hotffi_task.h).
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
    uint32_t        slot;
    hotffi_task_t  *task;

    task = hub->free;

    if (task) {
        hub->free = task->next;
        slot = task->slot;

    } else {
        task = malloc(sizeof(hotffi_task_t));
        if (task == NULL) {
            return NULL;
        }

        slot = hub->slots++;
    }

    memset(task, 0, sizeof(hotffi_task_t));
    atomic_init(&task->cancelled, 0);

    task->hub = hub;
    task->rt = rt;
    task->kind = HOTFFI_TASK_CALL;
    task->req = req;
    task->req_len = req ? len : 0;
    task->slot = slot;

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

    /* req stays the caller's business: this slot's next call replaces it */
    task->rsp = NULL;
    task->waiter = NULL;
    task->rt = NULL;
    task->next = hub->free;
    hub->free = task;
}


/* thread: event loop */
void
hotffi_task_free_list(hotffi_hub_t *hub)
{
    hotffi_task_t  *task;

    while (hub->free) {
        task = hub->free;
        hub->free = task->next;
        free(task);
    }
}
