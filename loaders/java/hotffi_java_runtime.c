/*
 * hotffi_java_runtime.c -- the registry of the Java runtimes of this
 * worker and the gate every poll goes through, so that a version's end
 * can wait until none of its threads can touch its queue any more.
 *
 * locks: hotffi_java_rt_mtx guards the list and each runtime's pollers
 * and stopped; hotffi_java_rt_cond is signalled when pollers drops.
 */

#include "hotffi_java.h"

#include <stdlib.h>
#include <string.h>

#include "hotffi.h"


static pthread_mutex_t    hotffi_java_rt_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t     hotffi_java_rt_cond = PTHREAD_COND_INITIALIZER;
static hotffi_java_rt_t  *hotffi_java_rts;


/* locks: hotffi_java_rt_mtx held */
static hotffi_java_rt_t *
hotffi_java_rt_find(void *tq)
{
    hotffi_java_rt_t  *rt;

    for (rt = hotffi_java_rts; rt; rt = rt->next) {
        if (rt->tq == tq) {
            return rt;
        }
    }

    return NULL;
}


/* thread: init */
hotffi_java_rt_t *
hotffi_java_rt_create(void *tq, const char *cfg)
{
    hotffi_java_rt_t  *rt;

    rt = calloc(1, sizeof(hotffi_java_rt_t));
    if (rt == NULL) {
        return NULL;
    }

    rt->tq = tq;
    rt->cfg = strdup(cfg ? cfg : "");

    if (rt->cfg == NULL) {
        free(rt);
        return NULL;
    }

    (void) pthread_mutex_lock(&hotffi_java_rt_mtx);
    rt->next = hotffi_java_rts;
    hotffi_java_rts = rt;
    (void) pthread_mutex_unlock(&hotffi_java_rt_mtx);

    return rt;
}


/* thread: a Java thread */
void *
hotffi_java_rt_poll(void *tq)
{
    void              *task;
    hotffi_java_rt_t  *rt;

    (void) pthread_mutex_lock(&hotffi_java_rt_mtx);

    rt = hotffi_java_rt_find(tq);

    if (rt == NULL || rt->stopped) {
        (void) pthread_mutex_unlock(&hotffi_java_rt_mtx);
        return NULL;
    }

    rt->pollers++;
    (void) pthread_mutex_unlock(&hotffi_java_rt_mtx);

    task = ngx_http_lua_ffi_task_poll(tq);

    (void) pthread_mutex_lock(&hotffi_java_rt_mtx);

    /* rt cannot go while pollers counts us: take() waits for 0 */
    if (task == NULL) {
        rt->stopped = 1;
    }

    if (--rt->pollers == 0) {
        (void) pthread_cond_broadcast(&hotffi_java_rt_cond);
    }

    (void) pthread_mutex_unlock(&hotffi_java_rt_mtx);

    return task;
}


/* thread: any.  locks: takes hotffi_java_rt_mtx. */
void
hotffi_java_rt_log(void *tq, int level, const char *msg, int len)
{
    (void) pthread_mutex_lock(&hotffi_java_rt_mtx);

    /* len 0: msg is "" and NUL-terminated, as hotffi_log() reads it */
    hotffi_java_host.log(hotffi_java_rt_find(tq) ? tq : NULL, level, msg,
                         len);

    (void) pthread_mutex_unlock(&hotffi_java_rt_mtx);
}


/* thread: hotffi's reaper (the stop has been delivered to tq) */
hotffi_java_rt_t *
hotffi_java_rt_take(void *tq)
{
    hotffi_java_rt_t  *rt, **pp;

    (void) pthread_mutex_lock(&hotffi_java_rt_mtx);

    rt = hotffi_java_rt_find(tq);

    if (rt == NULL) {
        (void) pthread_mutex_unlock(&hotffi_java_rt_mtx);
        return NULL;
    }

    /* pollers inside get NULL: the stop is there for each of them */
    rt->stopped = 1;

    while (rt->pollers > 0) {
        (void) pthread_cond_wait(&hotffi_java_rt_cond, &hotffi_java_rt_mtx);
    }

    for (pp = &hotffi_java_rts; *pp; pp = &(*pp)->next) {
        if (*pp == rt) {
            *pp = rt->next;
            break;
        }
    }

    (void) pthread_mutex_unlock(&hotffi_java_rt_mtx);

    rt->next = NULL;

    return rt;
}


/* thread: hotffi's reaper */
void
hotffi_java_rt_free(hotffi_java_rt_t *rt)
{
    free(rt->cfg);
    free(rt);
}
