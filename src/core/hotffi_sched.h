/*
 * hotffi_sched.h -- how a runtime's polling threads are scheduled against
 * the event loop that feeds them.
 *
 * DESIGN
 * The event loop wakes a parked runtime thread once per turn with calls
 * (hotffi_queue_wake()).  When no CPU is idle (wrk and nginx fill them),
 * Linux puts the woken thread on the CPU of the thread that woke it, and a
 * SCHED_OTHER thread preempts it there: the event loop stops in its turn,
 * switches to the runtime thread for the few tasks queued so far and back,
 * two context switches per wake-up, and the calls the rest of the turn
 * posts wait for the next one.  A SCHED_BATCH thread never preempts on
 * wake-up: it runs when the loop waits for events and finds the whole
 * turn's tasks.  So a polling thread about to wait runs SCHED_BATCH,
 * except on a machine crowded with other work (runnable threads reach the
 * CPUs plus two, hotffi_spin_crowded()), where the loop's CPU goes to that
 * work once the loop waits and a thread that may not preempt would wait
 * for its time slice; the policy is switched (one system call) only when
 * that changes, never the thread's share of the CPU or its nice value, and
 * a thread whose runtime chose another policy is left alone.  Where nginx
 * and its load fill the CPUs it halves the runtime threads' CPU per call;
 * elsewhere, measured in the same minutes, it changed nothing
 * (bench/README.md).  HOTFFI_POLL_BATCH=0 turns it off.
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

/* thread: any.  1 when pollers may be made SCHED_BATCH (HOTFFI_POLL_BATCH). */
int hotffi_sched_batch(void);


#endif /* HOTFFI_SCHED_H */
