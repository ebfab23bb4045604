/*
 * hotffi_core.h -- what every core file shares: return codes, visibility,
 * and the forward declarations of the core's types.
 *
 * DESIGN: layers point down
 * Each file of src/core includes only the headers of the layers below its
 * own (scripts/lint.sh checks it, with the order written there once):
 *
 *   abi        the functions runtimes call          nginx module (above)
 *    |
 *   call       post, spin, wait, finish, give up; task handler of a call
 *    |
 *   runtime    load, reload, unload, close; task handler of REAPED
 *    |
 *   audit      one log line per load, reload, unload (the audit trail)
 *    |
 *   version    one library + cfg + port: start it, reap it
 *    |
 *   direct     a port the event loop serves itself (isolated runtimes)
 *    |
 *   hub        completion list, eventfd, deferred wakes, waiters
 *    |
 *   logbuf     runtimes' log lines on their way to the event loop
 *    |
 *   task       one call in flight, its handler; the task pool
 *    |
 *   queue      the bounded request ring a runtime polls
 *    |
 *   port       one version's view of the queue (the ABI's tq)
 *    |
 *   poller     the threads serving a port, proved gone
 *    |
 *   spin       bounded, adaptive busy-waiting
 *    |
 *   sched      a waiting runtime thread's policy: no preempting the loop
 *    |
 *   library    dlopen() and the entry points; the file mapped
 *    |
 *   elf        a library file's ELF marks (Go), read before dlopen()
 *    |
 *   metrics    the counters a scrape reads: data and one inline
 *    |
 *   list, core the list primitive; this file
 *
 * Where a lower layer must reach a higher one, the higher one left a
 * function pointer there: a finished task carries its own handler (set by
 * call for a call, by runtime for a version's REAPED), which the hub's
 * drain calls; a version's REAPED handler comes from its runtime
 * (hotffi_version_owner_t); the hub frees its listed runtimes through
 * free_runtime, set by the runtime layer.  No reference drop below call
 * reaches a reload's end or a library's close.
 *
 * docs/internals.md follows one call, one reload and one unload through
 * these layers, thread by thread.
 */

#ifndef HOTFFI_CORE_H
#define HOTFFI_CORE_H


#include <stddef.h>
#include <stdint.h>


/*
 * The core is linked into the nginx module, which runtimes see through the
 * global symbol namespace: only the ABI and the FFI entry points may leak
 * into it, so everything declared from here on is hidden unless marked.
 * Include system headers before this one: their declarations must keep
 * their own visibility.
 */
#pragma GCC visibility push(hidden)

#define HOTFFI_EXPORT  __attribute__((visibility("default")))


#define HOTFFI_OK         0
#define HOTFFI_ERROR     -1
#define HOTFFI_AGAIN     -2
#define HOTFFI_BUSY      -3
#define HOTFFI_DONE      -4
#define HOTFFI_DECLINED  -5


#define HOTFFI_LOG_ERR     1
#define HOTFFI_LOG_WARN    2
#define HOTFFI_LOG_NOTICE  3
#define HOTFFI_LOG_INFO    4


typedef struct hotffi_task_s     hotffi_task_t;
typedef struct hotffi_queue_s    hotffi_queue_t;
typedef struct hotffi_port_s     hotffi_port_t;
typedef struct hotffi_version_s  hotffi_version_t;
typedef struct hotffi_hub_s      hotffi_hub_t;
typedef struct hotffi_library_s  hotffi_library_t;
typedef struct hotffi_runtime_s  hotffi_runtime_t;
typedef struct hotffi_group_s    hotffi_group_t;
typedef struct hotffi_direct_s   hotffi_direct_t;


#endif /* HOTFFI_CORE_H */
