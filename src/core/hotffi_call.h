/*
 * hotffi_call.h -- a caller's side of a task: post it, wait (the host's
 * business), then take the answer or give up.
 *
 * DESIGN
 * A posted task ends in exactly one of two ways, both on the event loop:
 * - the answer is drained first: the task is marked done and the caller's
 *   waiter woken; the caller reads the result and finishes the task;
 * - the caller gives up first (timeout, killed coroutine, request gone): the
 *   task is marked cancelled, which the runtime can see, its waiter is
 *   released at once, and the task is freed when its answer is drained (or
 *   when poll skips it, unanswered).
 * A group collects the pending tasks of one caller scope (an nginx request)
 * so that the end of the scope gives all of them up at once.
 *
 * The fast path: right after posting, the caller may spin for the answer
 * (hotffi_call_spin()) instead of parking.  It does so only when no other
 * caller of this process waits (the event loop has nothing else to do), no
 * runtime thread had to be woken for the call, and the runtime answered its
 * recent spins, for at most HOTFFI_SPIN_US.  That decision is made in one
 * function, hotffi_call_spin_decide() in hotffi_call.c, from what it is
 * given: hub->callers, the push's answer (task->woke) and rt->spin.  An
 * answer taken while spinning needs no waiter at all, so a waiter is
 * attached only when the caller is about to park (hotffi_call_wait()).
 */

#ifndef HOTFFI_CALL_H
#define HOTFFI_CALL_H


#include "hotffi_core.h"
#include "hotffi_list.h"


/* event loop only; its memory may be the host's (an nginx request pool) */
struct hotffi_group_s {
    hotffi_list_t   tasks;     /* pending tasks, by task->glink, newest
                                  first */
};


/* thread: event loop */
void hotffi_group_init(hotffi_group_t *g);

/* thread: event loop.  Gives up every task still pending in g. */
void hotffi_group_abandon(hotffi_group_t *g);

/*
 * thread: event loop.  Queues a call of rt.  req: borrowed, not copied: it
 * must stay valid and unchanged, with a NUL at req[len], until the task is
 * freed (hotffi_call_finish(), or the drain of an abandoned task).  group
 * may be NULL.  waiter: may be NULL (see hotffi_call_wait()); the hub takes
 * ownership on success only, and hands it to the host's wake() and
 * release().  req may be NULL: a call without a request.  Returns NULL
 * with the reason in err, and in *why (when not NULL) HOTFFI_DECLINED when
 * the runtime is unloaded, HOTFFI_BUSY when its queue is full, HOTFFI_ERROR
 * otherwise (memory is short, the request too large).
 */
hotffi_task_t *hotffi_call_post(hotffi_runtime_t *rt, hotffi_group_t *group,
    const char *req, size_t len, void *waiter, int *why, char *err,
    size_t errlen);

/* hotffi_call_spin(): done, and the caller should yield once */
#define HOTFFI_OK_YIELD  1

/*
 * thread: event loop.  Spins for the answer of a task just posted, when the
 * fast path allows it (see above), for at most min(HOTFFI_SPIN_US,
 * timeout_ns).  HOTFFI_OK: the task is done (read it, finish it).
 * HOTFFI_OK_YIELD: the same, and HOTFFI_SPIN_STREAK_MAX calls in a row were
 * answered so: the caller should let the event loop run once (an
 * ngx.sleep(0)) before it goes on.  HOTFFI_AGAIN: not yet, wait for it.
 * HOTFFI_DONE: timeout_ns passed while spinning; the caller should give up.
 */
int hotffi_call_spin(hotffi_task_t *task, uint64_t timeout_ns);

/*
 * thread: event loop.  hotffi_call_post() without a waiter, then
 * hotffi_call_spin(), *state being what the spin returned; the spin, when
 * likely, is announced to the hub before the push.  Returns NULL with the
 * reason in err and *state as hotffi_call_post() (its why).
 */
hotffi_task_t *hotffi_call_post_spin(hotffi_runtime_t *rt,
    hotffi_group_t *group, const char *req, size_t len, uint64_t timeout_ns,
    int *state, char *err, size_t errlen);

/*
 * thread: event loop.  Gives a task posted without a waiter its waiter,
 * before the caller parks; the hub takes ownership.  The task must not be
 * done (hotffi_call_spin() said HOTFFI_AGAIN and nothing ran since).
 */
void hotffi_call_wait(hotffi_task_t *task, void *waiter);

/*
 * thread: event loop.  The answer of a done task: returns rc and sets *rsp
 * (borrowed from the task, may be NULL) and *len; of a task the host gave
 * up, HOTFFI_TASK_UNSERVED and HOTFFI_CALL_GONE.
 */
int hotffi_call_result(hotffi_task_t *task, const char **rsp, size_t *len);

/*
 * thread: event loop.  The caller has read a done task: free it (a task
 * the host gave up is given up, see hotffi_call_abandon()).
 */
void hotffi_call_finish(hotffi_task_t *task);

/*
 * thread: event loop.  The caller gives up; the task may be done or not.
 * One not taken by the runtime yet leaves its queue and is freed at once.
 */
void hotffi_call_abandon(hotffi_task_t *task);

/*
 * thread: event loop.  The same, because the caller's timeout passed:
 * counted as a timeout (rt->stats, rt->metrics), not as abandoned.
 */
void hotffi_call_timeout(hotffi_task_t *task);

/*
 * thread: event loop.  The host gives up every call still waiting for its
 * answer (a worker that exits must not wait for calls that hang): each
 * caller is woken, reads HOTFFI_TASK_UNSERVED with HOTFFI_CALL_GONE as its
 * answer, and its finish gives the task up; each call counts as dropped.
 * Returns how many.
 */
uint64_t hotffi_call_give_up_all(hotffi_hub_t *hub);

#define HOTFFI_CALL_GONE  "call given up: the worker is exiting"



#endif /* HOTFFI_CALL_H */
