/*
 * hotffi_zonelock.h -- the thread-side lock of shared dict zones: it lets
 * one runtime thread per process at a time, per zone, go for the zone's
 * own (cross-process) lock.
 *
 * DESIGN: two locks, always taken in one order
 * A lua_shared_dict zone has one lock for all workers: nginx's shm mutex
 * (ngx_shmtx_t), a word in shared memory set from 0 to the locker's pid
 * with a compare-and-swap, and back to 0 with another.  Threads of one
 * process store the same pid, but the swap from 0 still lets one of them
 * in, so it excludes threads of a worker as it excludes workers; it has no
 * fairness, though: an event loop waiting for it spins, then yields, while
 * the holder may be any thread of any worker.  With N runtime threads of
 * a worker calling hotffi_shdict_*() in a loop, its own event loop would
 * be one contender among N+1 for every operation, at every Lua call.
 *
 * So a runtime thread first takes this process-local lock (a pthread
 * mutex, parked rather than spun on), and only then the zone's: of the
 * runtime threads of one process, at most one contends with the event
 * loops.  The event loop never takes this lock (Lua calls lua-nginx-module
 * directly), so the order is always zonelock, then shm mutex, and
 * neither holder waits on anything else:
 *
 *   - a runtime thread holding the zonelock waits only for the shm mutex,
 *     whose holder (an event loop, or one runtime thread of another
 *     process) finishes one get or store without waiting for anything;
 *   - nothing is ever waited for while the shm mutex is held but the end
 *     of that one operation: no deadlock, in any interleaving.
 *
 * Locks are striped: the zone's address picks one of HOTFFI_ZONELOCK_N
 * mutexes, so no table has to follow zones; two zones sharing a stripe
 * only serialise their runtime threads a little more.  A thread holds one
 * stripe at a time (one operation on one zone).
 *
 * The mutexes are static, initialised at compile time: usable from any
 * thread before anything else ran.  tests/unit/test_zonelock.c checks the
 * two locks together under ThreadSanitizer.
 */

#ifndef HOTFFI_ZONELOCK_H
#define HOTFFI_ZONELOCK_H


#define HOTFFI_ZONELOCK_N  16


/* thread: any runtime thread, never an event loop.  zone: borrowed, only
 * its address is used.  Pair each lock with one unlock of the same zone. */
void hotffi_zonelock_lock(const void *zone);
void hotffi_zonelock_unlock(const void *zone);

/* The stripe of zone (0 .. HOTFFI_ZONELOCK_N - 1): for tests. */
unsigned hotffi_zonelock_stripe(const void *zone);


#endif /* HOTFFI_ZONELOCK_H */
