/*
 * hotffi_spin.h -- bounded, adaptive busy-waiting before a thread parks.
 *
 * DESIGN
 * On this kind of machine a kernel entry or a context switch costs 2-4 us,
 * while a whole echo round trip between two running threads costs about
 * one.  So a thread that expects an answer (the event loop, after posting
 * a call) or a request (a runtime thread, after answering one) soon looks
 * for it for a short while before it parks, and the other side skips the
 * wake-up when it knows nobody is parked.
 *
 * Spinning is only worth it when the other side can run at the same time.
 * With one usable CPU it cannot, so a pause there is sched_yield(): the
 * CPU goes to the thread that is to answer, and comes back at once when
 * there is none.
 *
 * Past the first few microseconds a spin yields the CPU at each turn
 * rather than pausing, so that a spinner only takes CPU time nobody else
 * wants (on a busy 2-CPU machine, the HTTP client's, say).
 *
 * Every spin is bounded by a window in nanoseconds; a miss makes the next
 * spins of that policy rarer (exponential back-off in calls), so a slow
 * runtime costs one window now and then, not one per call.  A call made
 * during the back-off that is answered within the window ends it (the
 * runtime's own answer time, stamped in respond(), not the wake-up's).
 *
 * Spinning only pays while there is a CPU for each side of the call: on a
 * machine whose CPUs all have other work, a spinner takes CPU time from
 * the very thread it waits for (and a sched_yield() hands its CPU to
 * someone else's thread for a whole time slice), so park-only beats it
 * 2-9 times there (bench/README.md, "Busy machine").  So both sides first
 * ask hotffi_spin_busy(): the runnable threads of the whole machine
 * (/proc/loadavg's running count, which includes the thread reading it),
 * sampled at most every HOTFFI_SPIN_LOAD_EVERY_NS by whichever thread
 * finds the sample stale.  The machine is busy, and nobody spins, while
 * more than about a third of the samples (HOTFFI_SPIN_SHARE_BUSY, in a
 * moving share, 1/4 per sample) count more runnable threads than CPUs:
 * then a spinner holds a CPU that another thread waits for.  The reader
 * and its partner spinning fit on two CPUs; a hog per CPU beside them
 * makes every sample count; an HTTP client on the same machine (wrk beside
 * the worker and its runtime thread) makes about half of them count,
 * because it runs now and then, so an average of the count (the policy
 * before, busy at the CPUs plus one) stayed below the line while the
 * runtime thread's spins delayed the client and the calls' answers (at 32
 * connections, the calls' p99 was half again what it is now and the
 * thread's CPU per call about twice: bench/README.md).  One odd sample
 * does not make a quiet machine busy, two in a row do, and four quiet ones
 * end it.  Unreadable (no /proc), or HOTFFI_SPIN_LOAD=0: never busy.
 * The policy's arithmetic is in pure functions (hotffi_spin_load_*), which
 * the unit tests drive with made-up samples.
 *
 * A miss backs off fast: the next 1, 4, 16, 64, then 256 spins of that
 * side are skipped (x4 per miss in a row), and only a hit ends the
 * back-off; a call answered within the window during a rest ends the rest
 * but not the back-off, so a runtime that misses again rests 4 times
 * longer.  Runtime threads back off the same way in their poll (one
 * hotffi_spin_t per queue, used by its one spinner at a time).
 *
 * The windows are knobs read once per process from the environment
 * (docs/api.md): HOTFFI_SPIN_US for the event loop, HOTFFI_POLL_SPIN_US for
 * runtime threads; 0 turns spinning off.
 *
 * A call that moves many bytes cannot be answered before the runtime has
 * read them, nor the next one posted before the caller has read the
 * answer, and bytes that cross CPUs take time: a 1 MiB echo's copy takes
 * far longer than the default window, so both sides parked and woke each
 * other for every call (bench/README.md, "Large payloads").  So a window
 * grows with the bytes the other side must read first (hotffi_spin_for()):
 * the event loop's with the request, a runtime thread's with the answer it
 * gave last, up to HOTFFI_SPIN_BYTES_MAX_NS.  How much it grows per KiB is
 * not a constant of one machine but what the other side took lately, per
 * KiB of what it had to read, learned from every call of at least
 * HOTFFI_SPIN_LEARN_BYTES whether it spun or not (hotffi_spin_rate_learn()):
 * - the event loop learns, per runtime, the runtime's service time (from
 *   the poll that took the task to its respond(): a parked thread's
 *   wake-up is not the runtime's doing) per KiB of request;
 * - a runtime thread learns the event loop's turnaround (from its own
 *   respond() to the post of the next call it takes) per KiB of the answer
 *   it gave, so a caller that does other work between calls teaches a
 *   longer wait, bounded like the rest.
 * Until a side has seen a large call, its window does not grow: the first
 * large calls miss, park, and teach the rate.
 */

#ifndef HOTFFI_SPIN_H
#define HOTFFI_SPIN_H


#include <stddef.h>
#include <stdint.h>

#include "hotffi_core.h"


#define HOTFFI_SPIN_NS_DEFAULT       20000     /* event loop: 20 us */
#define HOTFFI_POLL_SPIN_NS_DEFAULT  20000     /* runtime threads: 20 us */
#define HOTFFI_SPIN_BACKOFF_MAX      256       /* calls without spinning */
#define HOTFFI_SPIN_BACKOFF_FACTOR   4         /* per miss in a row */

/* the machine's load: sampled this often at most, and how it is kept */
#define HOTFFI_SPIN_LOAD_EVERY_NS    5000000   /* 5 ms */
#define HOTFFI_SPIN_LOAD_ONE         16        /* fixed point: 1 thread */
#define HOTFFI_SPIN_SHARE_ONE        256       /* fixed point: every sample */
#define HOTFFI_SPIN_SHARE_BUSY       96        /* 3/8 of them */

/* calls this large teach the window's growth per KiB; its bound */
#define HOTFFI_SPIN_LEARN_BYTES      (32 * 1024)
#define HOTFFI_SPIN_BYTES_MAX_NS     500000    /* 0.5 ms */

/*
 * Calls answered while spinning never give the event loop back: after this
 * many in a row the caller yields once (see hotffi_call_spin()),
 * so that other requests of the worker wait at most that many round trips.
 */
#define HOTFFI_SPIN_STREAK_MAX       64

/*
 * After twice the usual wait of a hit, but at least this long, a spin
 * yields instead of pausing: an answer that comes later is less likely than
 * a thread waiting for this CPU (wrk, or the very runtime thread that is to
 * answer), which gets it that way.  Neither a fixed early yield nor a fixed
 * late one served both small and large answers (bench/README.md, "Figures
 * behind design choices").
 */
#define HOTFFI_SPIN_YIELD_NS         3000


/* one caller's adaptive state; event loop only (one per runtime) */
typedef struct {
    uint32_t   skip;        /* calls left before the next spin */
    uint32_t   backoff;     /* the skip after the next miss */
    uint64_t   hits;        /* answered while spinning */
    uint64_t   misses;      /* the window ended first */
    uint64_t   wait;        /* a hit's wait, ns, moving average (1/8) */
} hotffi_spin_t;


/* thread: any.  Monotonic nanoseconds (vDSO, no kernel entry). */
uint64_t hotffi_spin_now(void);

/*
 * thread: any.  One pause of a spin loop that began spun ns ago: the CPU's
 * relax hint, or sched_yield() when this thread can only run on one CPU or
 * has spun for yield_after ns already.
 */
void hotffi_spin_pause(uint64_t spun, uint64_t yield_after);

/* thread: any.  The knobs, in ns; read from the environment once. */
uint64_t hotffi_spin_window(void);
uint64_t hotffi_spin_poll_window(void);

/*
 * thread: any.  A window of `window` ns grown for `bytes` the other side
 * must read first, at ns_per_kib and a quarter more (the rate is a mean);
 * 0 stays 0 (spinning off), and a window the knobs made longer than the
 * bound stays as it is.
 */
uint64_t hotffi_spin_for(uint64_t window, size_t bytes, uint32_t ns_per_kib);

/*
 * thread: any.  The rate `rate` after the other side took ns for a call
 * whose `bytes` it read first: unchanged below HOTFFI_SPIN_LEARN_BYTES, the
 * first sample as it is, then 1/4 of the way (a change of the payload or
 * the machine shows within a few calls).  A sample counts at most
 * HOTFFI_SPIN_BYTES_MAX_NS: a caller that went idle teaches the bound, not
 * its idle time.
 */
uint32_t hotffi_spin_rate_learn(uint32_t rate, uint64_t ns, size_t bytes);

/*
 * thread: runtime.  respond() notes the answer this thread gave (its size,
 * and when); the thread's next poll notes when the task it took was posted
 * (hotffi_spin_note_next(); 0 for now, where the post time is not known:
 * the clock is read only when there is something to learn), which teaches
 * the thread the event loop's turnaround per KiB of answer.
 * hotffi_spin_poll_for() is the poll window grown for the last answer at
 * that rate.
 */
void hotffi_spin_note_answer(size_t bytes);
void hotffi_spin_note_next(uint64_t posted);
uint64_t hotffi_spin_poll_for(void);

/* thread: runtime.  The turnaround this thread learned, ns per KiB of its
 * answer (0: nothing yet); for tests and diagnostics. */
uint32_t hotffi_spin_turnaround(void);

/* thread: owner of s.  Whether to spin this time. */
int hotffi_spin_want(hotffi_spin_t *s);

/* thread: owner of s.  How the spin it allowed ended; waited: ns. */
void hotffi_spin_record(hotffi_spin_t *s, int hit, uint64_t waited);

/* thread: any.  When a spin whose hits wait `wait` ns should yield. */
uint64_t hotffi_spin_yield_after(uint64_t wait);

/* thread: any.  wait's moving average after a hit that waited ns. */
uint64_t hotffi_spin_average(uint64_t wait, uint64_t ns);

/* thread: owner of s.  A call not spun for was answered within the window. */
void hotffi_spin_reset(hotffi_spin_t *s);

/*
 * thread: any.  Whether the machine is too busy to spin now (see above);
 * samples the load when the last sample is older than
 * HOTFFI_SPIN_LOAD_EVERY_NS, otherwise reads one atomic.
 */
int hotffi_spin_busy(void);

/*
 * thread: any.  1 or 0: hotffi_spin_busy() answers that from now on
 * instead of looking at the machine; -1: it looks again.  For the unit
 * tests, whose decisions must not depend on the machine that runs them.
 */
void hotffi_spin_busy_force(int busy);

/*
 * thread: any, after hotffi_spin_busy() (which samples).  1 while the
 * runnable count of the same samples, in a moving average (1/4 per
 * sample), reaches the CPUs plus two: then even a thread that only takes
 * turns with its partner on one CPU finds no CPU free when the partner
 * waits (hotffi_sched.h).  Forced as hotffi_spin_busy() is.
 */
int hotffi_spin_crowded(void);

/*
 * thread: any.  The policy, as pure functions.  parse: the running count
 * of /proc/loadavg's text ("0.52 0.58 0.59 3/467 12345"), -1 when it has
 * none.  average: the moving average (HOTFFI_SPIN_LOAD_ONE per thread)
 * after one more sample; crowded: whether it leaves no CPU free to a
 * thread taking turns with its partner on a machine of cpus CPUs.  share:
 * the moving share (HOTFFI_SPIN_SHARE_ONE for all) of samples with more
 * runnable threads than cpus, after one more; busy: whether that share
 * says no spinning.
 */
int hotffi_spin_load_parse(const char *text, size_t len);
uint32_t hotffi_spin_load_average(uint32_t avg, unsigned running);
int hotffi_spin_load_crowded(uint32_t avg, unsigned cpus);
uint32_t hotffi_spin_load_share(uint32_t share, unsigned running,
    unsigned cpus);
int hotffi_spin_load_busy(uint32_t share);


#endif /* HOTFFI_SPIN_H */
