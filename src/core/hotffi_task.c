/*
 * hotffi_task.c -- creating and freeing tasks, through a pool's free list
 * (see hotffi_task.h).
 */

#include <stdlib.h>
#include <string.h>

#include "hotffi_spin.h"
#include "hotffi_task.h"


/* thread: event loop */
void
hotffi_task_pool_init(hotffi_task_pool_t *pool)
{
    hotffi_list_init(&pool->free);
    pool->slots = 0;
    pool->live = 0;
}


/* thread: event loop */
hotffi_task_t *
hotffi_task_create(hotffi_task_pool_t *pool, hotffi_hub_t *hub,
    hotffi_runtime_t *rt, hotffi_task_handler_pt handler, const char *req,
    size_t len)
{
    uint32_t        slot;
    hotffi_list_t  *link;
    hotffi_task_t  *task;

    link = hotffi_list_pop(&pool->free);

    if (link) {
        task = hotffi_list_data(link, hotffi_task_t, link);
        slot = task->slot;

    } else {
        task = malloc(sizeof(hotffi_task_t));
        if (task == NULL) {
            return NULL;
        }

        slot = pool->slots++;
    }

    memset(task, 0, sizeof(hotffi_task_t));
    atomic_init(&task->cancelled, 0);
    hotffi_list_init(&task->link);
    hotffi_list_init(&task->glink);
    hotffi_list_init(&task->clink);

    task->handler = handler;
    task->hub = hub;
    task->rt = rt;
    task->req = req;
    task->req_len = req ? len : 0;
    task->slot = slot;

    pool->live++;

    return task;
}


/* thread: event loop */
void
hotffi_task_free(hotffi_task_pool_t *pool, hotffi_task_t *task)
{
    free(task->rsp);
    pool->live--;

    /* req stays the caller's business: this slot's next call replaces it */
    task->rsp = NULL;
    task->rt = NULL;
    hotffi_list_insert_head(&pool->free, &task->link);
}


/* thread: the answerer */
void
hotffi_task_answer(hotffi_task_t *task, int rc, char *rsp, int rsp_len)
{
    task->answered = hotffi_spin_now();
    task->rc = rc;
    task->rsp = rsp;

    if (rsp == NULL) {
        task->rsp_len = 0;

    } else if (rsp_len <= 0) {
        task->rsp_len = strlen(rsp);

    } else {
        task->rsp_len = (size_t) rsp_len;
    }
}


/* thread: event loop */
void
hotffi_task_pool_free(hotffi_task_pool_t *pool)
{
    hotffi_list_t  *link;

    while ((link = hotffi_list_pop(&pool->free)) != NULL) {
        free(hotffi_list_data(link, hotffi_task_t, link));
    }
}
