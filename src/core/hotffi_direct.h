/*
 * hotffi_direct.h -- a port the event loop serves itself: the isolation
 * library (src/isolate/) writes an isolated runtime's requests into its
 * helper's ring and takes the answers on the event loop, with no thread
 * of its own in between.
 *
 * DESIGN
 * A runtime's calls reach it through its queue, polled by its threads.
 * For an isolated runtime those threads only copied tasks between the
 * queue and the rings: a sequential call woke four threads (a sender, the
 * helper's poller, a receiver, the event loop), each wake-up some 10 us on
 * the development machine.  A direct port skips both copies' threads:
 *
 *   - after a push, the call layer asks the queue's open direct port to
 *     pump (hotffi_direct_pump()): the library takes what fits its ring
 *     and its in-flight slots (hotffi_direct_poll(), never blocking: what
 *     does not fit stays queued, and max_queue, max_inflight, cancelling
 *     out of the queue and a reload's hand-over of queued calls work as
 *     for polling threads, because the queue sees ordinary takes);
 *   - the helper wakes the event loop by writing the hub's eventfd, which
 *     the library got from hotffi_direct_attach(); the hub's drain, and a
 *     spinning caller's every look, ask each direct port to take its
 *     answers (hotffi_hub.h), which the library completes with
 *     hotffi_direct_respond() (no eventfd write: the drain takes them).
 *
 * Between pumps the library may take and send from a thread of its own
 * (a restarted helper, a backstop tick): one thread at a time per port,
 * under the library's lock.
 *
 * Life: the library attaches inside libffi_init(), the port's `direct`
 * goes live when the port opens and leaves the queue when it stops; the
 * library detaches (hotffi_direct_detach()) before it frees its data, on
 * whatever thread ends it; the entry itself is the version's and is freed
 * with it (hotffi_direct_free(), event loop).
 *
 * None of this is in include/hotffi.h: runtimes never see it, the ABI is
 * unchanged.  The functions the isolation library calls are exported for
 * it (it is a separate shared object resolved against the module).
 */

#ifndef HOTFFI_DIRECT_H
#define HOTFFI_DIRECT_H


#include "hotffi_core.h"
#include "hotffi_hub.h"


/*
 * thread: init, inside libffi_init() of tq's version.  Makes tq's port a
 * direct one: ops (static) and data (the library's, until detach) serve it
 * on the event loop once it opens.  Returns the hub's eventfd (the
 * worker's, open for its life: borrowed) that the peer writes to wake the
 * event loop, or -1 without memory (the port is not direct then).
 */
HOTFFI_EXPORT int hotffi_direct_attach(void *tq,
    const hotffi_direct_ops_t *ops, void *data);

/*
 * thread: any, before the library frees data.  No call reaches ops after
 * it returns (it waits for one in progress).  Idempotent.
 */
HOTFFI_EXPORT void hotffi_direct_detach(void *tq);

/*
 * thread: any, one at a time per port.  Never blocks.  Takes up to max
 * queued tasks in FIFO order while fits(arg, request length) says 1 (it
 * runs under the queue's lock); returns how many, 0 when the port is not
 * open, or stopped.  A task whose caller gave up meanwhile is answered as
 * cancelled here and not returned.  tasks: the caller's from here, until
 * answered (hotffi_direct_respond() or ngx_http_lua_ffi_respond()).
 */
HOTFFI_EXPORT int hotffi_direct_poll(void *tq, void **tasks, int max,
    int (*fits)(void *arg, int len), void *arg);

/*
 * thread: event loop, inside ops->take() only.  As
 * ngx_http_lua_ffi_respond(), without the eventfd write.  rsp: malloc()'ed,
 * hotffi's from here; rsp_len <= 0: strlen().
 */
HOTFFI_EXPORT void hotffi_direct_respond(void *task, int rc, char *rsp,
    int rsp_len);

/*
 * thread: event loop.  A task was pushed to q: its open direct port, if
 * any, sends it now.  1 when that woke a parked peer, else 0.
 */
int hotffi_direct_pump(hotffi_hub_t *hub, hotffi_queue_t *q);

/* thread: event loop.  The version ends: frees what attach made. */
void hotffi_direct_free(hotffi_port_t *port);


#endif /* HOTFFI_DIRECT_H */
