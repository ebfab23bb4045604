/*
 * hotffi_call.c -- posting calls and ending them (see hotffi_call.h).
 */

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>

#include "hotffi_call.h"
#include "hotffi_direct.h"
#include "hotffi_hub.h"
#include "hotffi_metrics.h"
#include "hotffi_queue.h"
#include "hotffi_runtime.h"
#include "hotffi_spin.h"
#include "hotffi_task.h"
#include "hotffi.h"


static void hotffi_call_complete(hotffi_task_t *task);
static void hotffi_call_give_up(hotffi_task_t *task);


/* thread: event loop */
void
hotffi_group_init(hotffi_group_t *g)
{
    hotffi_list_init(&g->tasks);
}


/* thread: event loop.  Takes task out of its group, if in one. */
static void
hotffi_group_remove(hotffi_task_t *task)
{
    if (hotffi_list_linked(&task->glink)) {
        hotffi_list_remove(&task->glink);
    }
}


/* thread: event loop */
void
hotffi_group_abandon(hotffi_group_t *g)
{
    while (!hotffi_list_empty(&g->tasks)) {
        hotffi_call_abandon(hotffi_list_data(hotffi_list_first(&g->tasks),
                                             hotffi_task_t, glink));
    }
}


/*
 * thread: event loop.  The end of a call's task: its waiter (the hub's),
 * its reference on rt, then the task itself, back to the pool.
 */
static void
hotffi_call_free(hotffi_task_t *task)
{
    hotffi_hub_t      *hub = task->hub;
    hotffi_runtime_t  *rt = task->rt;

    hotffi_hub_waiter_release(hub, &task->waiter);
    hotffi_task_free(&hub->tasks, task);
    hotffi_runtime_unref(rt);
}


/*
 * thread: event loop.
 * why (may be NULL) and err say why a call was not queued
 */
static hotffi_task_t *
hotffi_call_refuse(int *why, int rc, char *err, size_t errlen,
    const char *fmt, ...)
{
    va_list  args;

    if (why) {
        *why = rc;
    }

    va_start(args, fmt);
    (void) vsnprintf(err, errlen, fmt, args);
    va_end(args);

    return NULL;
}


/* thread: event loop */
hotffi_task_t *
hotffi_call_post(hotffi_runtime_t *rt, hotffi_group_t *group,
    const char *req, size_t len, void *waiter, int *why, char *err,
    size_t errlen)
{
    int             rc;
    hotffi_task_t  *task;

    if (rt->unloaded) {
        rt->stats.rejected++;
        rt->metrics.unloaded++;
        return hotffi_call_refuse(why, HOTFFI_DECLINED, err, errlen,
                                  "runtime \"%s\" is unloaded", rt->name);
    }

    if (len > INT_MAX) {
        /* the ABI hands the length to the runtime as an int */
        return hotffi_call_refuse(why, HOTFFI_ERROR, err, errlen,
                                  "request too large: %zu bytes", len);
    }

    task = hotffi_task_create(&rt->hub->tasks, rt->hub, rt,
                              hotffi_call_complete, req, len);
    if (task == NULL) {
        return hotffi_call_refuse(why, HOTFFI_ERROR, err, errlen,
                                  "out of memory");
    }

    /* the task's reference, dropped by hotffi_call_free() */
    hotffi_runtime_ref(rt);

    /*
     * The latency's start (hotffi_metrics.h), and see
     * hotffi_call_complete(); before the push: the answer may come at once
     */
    task->posted = hotffi_spin_now();
    task->resting = rt->spin.skip != 0;

    rc = hotffi_queue_push(rt->queue, task);

    if (rc != HOTFFI_OK && rc != HOTFFI_QUEUE_OWED) {
        rt->stats.rejected++;
        hotffi_call_free(task);

        /* counted, and logged once a second at most (hotffi_runtime.h) */
        if (rc == HOTFFI_BUSY) {
            rt->stats.full++;
            rt->metrics.queue_full++;
            hotffi_runtime_warn(rt);
            return hotffi_call_refuse(why, HOTFFI_BUSY, err, errlen,
                                      "queue full");
        }

        if (rc == HOTFFI_QUEUE_INFLIGHT) {
            rt->stats.inflight_full++;
            rt->metrics.queue_full++;
            hotffi_runtime_warn(rt);
            return hotffi_call_refuse(why, HOTFFI_BUSY, err, errlen,
                                      "queue full: %u calls taken and not "
                                      "answered (max_inflight)",
                                      rt->queue->max_inflight);
        }

        if (rc == HOTFFI_DECLINED) {
            rt->metrics.unloaded++;
            return hotffi_call_refuse(why, HOTFFI_DECLINED, err, errlen,
                                      "runtime \"%s\" is unloaded", rt->name);
        }

        return hotffi_call_refuse(why, HOTFFI_ERROR, err, errlen,
                                  "out of memory");
    }

    task->waiter = waiter;

    if (group) {
        hotffi_list_insert_head(&group->tasks, &task->glink);
    }

    hotffi_list_insert_head(&rt->hub->calls, &task->clink);

    if (rc == HOTFFI_QUEUE_OWED) {
        /* before callers counts this call: alone, it wakes at once */
        task->woke = 1;
        hotffi_hub_wake(rt->hub, rt->queue);

    } else if (atomic_load_explicit(&rt->queue->direct,
                                    memory_order_relaxed) != NULL)
    {
        /*
         * An isolated runtime (hotffi_direct.h): a lone call is sent now;
         * calls made while others are in flight are sent together once
         * the loop has handled what was ready, as a queue's wake-ups are
         * (hotffi_hub_flush_wakes()): one futex wake of the helper, and a
         * batch for it, per turn of the loop.
         */
        if (rt->hub->callers == 0 || rt->hub->host.defer == NULL) {
            /* the helper was parked: the answer comes after a wake-up */
            task->woke = hotffi_direct_pump(rt->hub, rt->queue);

        } else {
            hotffi_hub_wake(rt->hub, rt->queue);
        }
    }

    rt->stats.calls++;
    rt->stats.inflight++;
    rt->metrics.bytes_in += len;
    rt->hub->callers++;

    return task;
}


/*
 * thread: event loop.  The spin decision, whole and in one place: the
 * window (ns) the event loop spins for the answer of a call of len bytes
 * to rt, 0 for none.  others: calls of this process in flight besides it;
 * woke: its push had to wake a parked runtime thread.  posted: the call is
 * queued, and a runtime resting from missed spins counts it as one call of
 * its rest; otherwise this is the forecast made before the push, which
 * changes nothing.
 *
 * Another caller is inside a call (waiting, or answered and not yet
 * resumed): the loop has its work to do, and the answers will come in
 * batches anyway.  No runtime thread was spinning on the queue (the push
 * had to wake one): the answer comes after a wake-up, which the loop had
 * better spend on other work (under HTTP load that is most calls, and not
 * spinning for them measured better: bench/README.md, "Figures behind
 * design choices").  A machine whose CPUs all have other work
 * (hotffi_spin_busy()): the spin would take CPU time from the runtime
 * thread itself.  A runtime that missed
 * recent spins is given a rest (hotffi_spin_want()).
 */
static uint64_t
hotffi_call_spin_decide(hotffi_runtime_t *rt, size_t len, uint64_t others,
    int woke, int posted)
{
    uint64_t  window;

    window = hotffi_spin_for(hotffi_spin_window(), len, rt->service_rate);

    if (window == 0 || others != 0 || woke || hotffi_spin_busy()) {
        return 0;
    }

    if (!posted) {
        return rt->spin.skip == 0 ? window : 0;
    }

    return hotffi_spin_want(&rt->spin) ? window : 0;
}


/* thread: event loop */
int
hotffi_call_spin(hotffi_task_t *task, uint64_t timeout_ns)
{
    uint64_t           window, start, now, end, yield;
    hotffi_hub_t      *hub = task->hub;
    hotffi_runtime_t  *rt = task->rt;

    /* this call counts among the callers */
    window = task->done ? 0
             : hotffi_call_spin_decide(rt, task->req_len, hub->callers - 1,
                                       task->woke, 1);

    if (window == 0) {
        /* hotffi_call_post_spin() may have begun it */
        if (atomic_load_explicit(&hub->spinning, memory_order_relaxed)) {
            hotffi_hub_spin_end(hub);
        }

        hub->spin_streak = 0;
        return task->done ? HOTFFI_OK : HOTFFI_AGAIN;
    }

    start = hotffi_spin_now();
    end = start + (timeout_ns < window ? timeout_ns : window);
    yield = hotffi_spin_yield_after(rt->spin.wait);

    hotffi_hub_spin_begin(hub);

    for ( ;; ) {
        (void) hotffi_hub_take(hub);

        now = hotffi_spin_now();

        if (task->done || now >= end) {
            break;
        }

        hotffi_spin_pause(now - start, yield);
    }

    hotffi_hub_spin_end(hub);

    hotffi_spin_record(&rt->spin, task->done, now - start);

    if (task->done) {
        hub->stats.spin_hits++;

        if (++hub->spin_streak < HOTFFI_SPIN_STREAK_MAX) {
            return HOTFFI_OK;
        }

        /* the event loop has not run anything else for a while */
        hub->spin_streak = 0;
        return HOTFFI_OK_YIELD;
    }

    hub->stats.spin_misses++;
    hub->spin_streak = 0;

    return timeout_ns <= window ? HOTFFI_DONE : HOTFFI_AGAIN;
}


/* thread: event loop */
hotffi_task_t *
hotffi_call_post_spin(hotffi_runtime_t *rt, hotffi_group_t *group,
    const char *req, size_t len, uint64_t timeout_ns, int *state, char *err,
    size_t errlen)
{
    hotffi_hub_t   *hub = rt->hub;
    hotffi_task_t  *task;

    /*
     * A call likely to spin announces it before the push: a runtime thread
     * that answers before this one reaches the spin then writes no eventfd
     * either (the wake-up would find nothing, and cost two more syscalls).
     */
    if (hotffi_call_spin_decide(rt, len, hub->callers, 0, 0) != 0) {
        hotffi_hub_spin_begin(hub);
    }

    task = hotffi_call_post(rt, group, req, len, NULL, state, err, errlen);

    if (task == NULL) {
        if (atomic_load_explicit(&hub->spinning, memory_order_relaxed)) {
            hotffi_hub_spin_end(hub);
        }

        return NULL;
    }

    *state = hotffi_call_spin(task, timeout_ns);

    return task;
}


/* thread: event loop */
void
hotffi_call_wait(hotffi_task_t *task, void *waiter)
{
    task->waiter = waiter;
}


/* thread: event loop */
int
hotffi_call_result(hotffi_task_t *task, const char **rsp, size_t *len)
{
    if (task->gone) {
        /* given up by the host, answered since or not: the same outcome */
        *rsp = HOTFFI_CALL_GONE;
        *len = sizeof(HOTFFI_CALL_GONE) - 1;
        return HOTFFI_TASK_UNSERVED;
    }

    *rsp = task->rsp;
    *len = task->rsp_len;

    return task->rc;
}


/* thread: event loop */
void
hotffi_call_finish(hotffi_task_t *task)
{
    hotffi_metrics_t  *m = &task->rt->metrics;

    /* given up by the host (the worker exits): its caller finishes it */
    if (!task->done) {
        hotffi_call_abandon(task);
        return;
    }

    if (task->rc == 0) {
        m->ok++;

    } else {
        m->error++;
    }

    m->bytes_out += task->rsp_len;

    /* a task the runtime never saw (no version could serve) has no time */
    if (task->answered >= task->posted && task->answered != 0) {
        hotffi_metrics_observe(m, task->answered - task->posted);
    }

    task->hub->callers--;
    hotffi_group_remove(task);
    hotffi_list_remove(&task->clink);
    hotffi_call_free(task);
}


/* thread: event loop */
void
hotffi_call_abandon(hotffi_task_t *task)
{
    task->rt->metrics.abandoned++;
    hotffi_call_give_up(task);
}


/*
 * thread: event loop.  The caller stops waiting for task, answered or not
 * (hotffi_call_abandon(), hotffi_call_timeout()).
 */
static void
hotffi_call_give_up(hotffi_task_t *task)
{
    hotffi_runtime_t  *rt = task->rt;

    task->hub->callers--;
    hotffi_group_remove(task);
    hotffi_list_remove(&task->clink);

    if (task->done) {
        hotffi_call_free(task);
        return;
    }

    rt->stats.abandoned++;
    atomic_store_explicit(&task->cancelled, 1, memory_order_release);

    /* not taken yet: out of the queue, its slot free at once */
    if (rt->queue && hotffi_queue_cancel(rt->queue, task) == HOTFFI_OK) {
        rt->stats.inflight--;
        hotffi_call_free(task);
        return;
    }

    /*
     * Nobody waits any more: the waiter goes now rather than with the
     * answer, which may come late or, from a runtime that hangs, never (the
     * host may have to account for every waiter when the process exits).
     */
    hotffi_hub_waiter_release(task->hub, &task->waiter);
}


/* thread: event loop */
uint64_t
hotffi_call_give_up_all(hotffi_hub_t *hub)
{
    uint64_t        n;
    hotffi_list_t  *link;
    hotffi_task_t  *task;

    n = 0;

    for (link = hotffi_list_first(&hub->calls); link != &hub->calls;
         link = link->next)
    {
        task = hotffi_list_data(link, hotffi_task_t, clink);

        if (task->done || task->gone) {
            continue;
        }

        /* its caller finishes it, which gives it up; it stays listed */
        task->gone = 1;
        task->rt->stats.dropped++;
        hotffi_runtime_warn(task->rt);
        hotffi_hub_waiter_wake(hub, task->waiter);
        n++;
    }

    return n;
}


/* thread: event loop */
void
hotffi_call_timeout(hotffi_task_t *task)
{
    hotffi_runtime_t  *rt = task->rt;

    rt->stats.timeouts++;
    rt->metrics.timeout++;
    hotffi_runtime_warn(rt);
    hotffi_call_give_up(task);
}


/*
 * thread: event loop.  The handler of every call's task (set by
 * hotffi_call_post()): the hub drained it, answered, unanswered or failed.
 */
static void
hotffi_call_complete(hotffi_task_t *task)
{
    hotffi_runtime_t  *rt = task->rt;

    rt->stats.inflight--;

    /* a queue freed already (its runtime closed) had every task back */
    if (rt->queue) {
        hotffi_queue_answered(rt->queue);
    }

    if (atomic_load_explicit(&task->cancelled, memory_order_relaxed)) {
        hotffi_call_free(task);
        return;
    }

    if (task->taken && task->answered >= task->taken) {
        rt->service_rate = hotffi_spin_rate_learn(rt->service_rate,
                                                  task->answered - task->taken,
                                                  task->req_len);
    }

    /*
     * A runtime resting from spins (it missed) that answered this call
     * within the window is fast again: spin for the next call already,
     * rather than after up to HOTFFI_SPIN_BACKOFF_MAX calls.
     */
    if (task->resting && rt->spin.skip
        && task->answered - task->posted
           < hotffi_spin_for(hotffi_spin_window(), task->req_len,
                             rt->service_rate))
    {
        hotffi_spin_reset(&rt->spin);
    }

    if (task->rc == 0) {
        rt->stats.ok++;

    } else {
        rt->stats.failed++;
    }

    task->done = 1;

    hotffi_hub_waiter_wake(task->hub, task->waiter);
}
