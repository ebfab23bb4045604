/*
 * hotffi_direct.c -- a port the event loop serves itself (see the DESIGN
 * note in hotffi_direct.h).
 */

#include <stdatomic.h>
#include <stdlib.h>

#include "hotffi.h"
#include "hotffi_direct.h"
#include "hotffi_port.h"
#include "hotffi_queue.h"
#include "hotffi_task.h"


/* the library's fits, seen through the queue's (which gives the task) */
typedef struct {
    int   (*fits)(void *arg, int len);
    void   *arg;
} hotffi_direct_fits_t;


/* thread: init */
HOTFFI_EXPORT int
hotffi_direct_attach(void *tq, const hotffi_direct_ops_t *ops, void *data)
{
    hotffi_hub_t     *hub;
    hotffi_port_t    *port = tq;
    hotffi_direct_t  *d;

    hub = port->hub;

    if (hub == NULL || port->direct != NULL) {
        return -1;
    }

    d = calloc(1, sizeof(hotffi_direct_t));
    if (d == NULL) {
        return -1;
    }

    hotffi_list_init(&d->link);
    d->ops = ops;
    d->data = data;
    d->hub = hub;

    /* the port is not open yet: the event loop reads direct after START,
     * which the hub's mutex orders after this write */
    port->direct = d;
    hotffi_hub_direct_add(hub, d);

    return hotffi_hub_fd(hub);
}


/* thread: any */
HOTFFI_EXPORT void
hotffi_direct_detach(void *tq)
{
    hotffi_port_t  *port = tq;

    if (port->direct == NULL) {
        return;
    }

    /* a pump that read q->direct before this finds data NULL */
    hotffi_queue_stop_port(port->queue, port);
    hotffi_hub_direct_remove(port->direct->hub, port->direct);
}


/* thread: the poller; locks: q->mtx held */
static int
hotffi_direct_fits(void *arg, hotffi_task_t *task)
{
    hotffi_direct_fits_t  *f = arg;

    return f->fits(f->arg, (int) task->req_len);
}


/* thread: any, one at a time per port */
HOTFFI_EXPORT int
hotffi_direct_poll(void *tq, void **tasks, int max,
    int (*fits)(void *arg, int len), void *arg)
{
    uint32_t               got;
    hotffi_port_t         *port = tq;
    hotffi_direct_fits_t   f;

    if (max < 1) {
        return 0;
    }

    f.fits = fits;
    f.arg = arg;

    got = hotffi_queue_poll_fit(port->queue, port, (hotffi_task_t **) tasks,
                                (uint32_t) max, hotffi_direct_fits, &f);

    return hotffi_hub_taken((hotffi_task_t **) tasks, (int) got);
}


/* thread: event loop, inside a take */
HOTFFI_EXPORT void
hotffi_direct_respond(void *tsk, int rc, char *rsp, int rsp_len)
{
    hotffi_task_t  *task = tsk;

    hotffi_task_answer(task, rc, rsp, rsp_len);
    hotffi_hub_complete_local(task->hub, task);
}


/* thread: event loop */
int
hotffi_direct_pump(hotffi_hub_t *hub, hotffi_queue_t *q)
{
    hotffi_direct_t  *d;

    d = atomic_load_explicit(&q->direct, memory_order_relaxed);

    /* the entry is the version's, freed on this thread only */
    return d != NULL ? hotffi_hub_direct_pump(hub, d) : 0;
}


/* thread: event loop */
void
hotffi_direct_free(hotffi_port_t *port)
{
    if (port->direct == NULL) {
        return;
    }

    hotffi_hub_direct_remove(port->direct->hub, port->direct);
    free(port->direct);
    port->direct = NULL;
}
