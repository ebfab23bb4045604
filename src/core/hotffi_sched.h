/*
 * hotffi_sched.h -- how a runtime's polling threads are scheduled against
 * the event loop that feeds them.
 *
 * DESIGN
 * The event loop wakes a parked runtime thread once per turn with calls
 * (hotffi_queue_wake()).  Linux puts a woken thread on the CPU of the thread
 * that woke it, and a SCHED_OTHER thread may preempt it there: when wrk and
 * nginx fill the CPUs, the event loop stops in its turn, switches to the
 * runtime thread for the few tasks queued so far and back, two context
 * switches per wake-up, and the calls the rest of the turn posts wait for
 * the next one.  A SCHED_BATCH thread never preempts on wake-up: it runs
 * when the loop waits for events, or on a CPU with room, and then finds the
 * whole turn's tasks.  That needs a CPU free once the loop waits: on a
 * machine crowded with other work (runnable threads reach the CPUs plus
 * two, hotffi_spin_crowded(): one more than spinning tolerates, since the
 * loop and its runtime thread take turns on one CPU) the loop's CPU goes to
 * that work, and waiting for its time slice made parked calls slower.  So a
 * polling thread that is about to wait runs SCHED_BATCH while the machine
 * is not crowded and SCHED_OTHER while it is, switched (one system call)
 * only when that changes; its share of the CPU
 * and its nice value are the same under both.  A thread whose runtime
 * chose another policy is left alone, and HOTFFI_POLL_BATCH=0 leaves every
 * thread alone (docs/api.md).
 */

#ifndef HOTFFI_SCHED_H
#define HOTFFI_SCHED_H


#include "hotffi_core.h"


/*
 * thread: a runtime thread, at a poll that found no task waiting, with what
 * hotffi_spin_crowded() said.  Sets the calling thread's policy as above; a
 * refusal by the kernel is not retried.
 */
void hotffi_sched_poller(int crowded);

/* thread: any.  1 when pollers are made SCHED_BATCH (HOTFFI_POLL_BATCH). */
int hotffi_sched_batch(void);


#endif /* HOTFFI_SCHED_H */
