/*
 * hotffi_poller.h -- which threads serve a port, and the kernel's word that
 * they are gone: how a library that exports neither libffi_fini() nor
 * libffi_retire() (one written for lua-resty-ffi alone) is proved to run
 * no more code, so that unpin may dlclose() it.
 *
 * DESIGN
 * A version that must be proved so (hotffi_version.c decides) notes two
 * kinds of threads on its port: those its libffi_init() started (the
 * process's threads listed before and after the call: new ones may be
 * another runtime's too, which only makes the proof wait for them), and
 * every thread that polls the port, the first time it does (a thread-local
 * remembers the last port by serial number, as ports are freed and their
 * memory reused, so that polling costs one compare).  A note claims a slot
 * with an atomic add, then writes the kernel thread id into it: a reader
 * that finds 0 knows a note is being written.  Once the runtime is
 * unloaded and its queue drained, every poll returns NULL; the reaper then
 * waits until no noted thread is left in /proc/self/task.  A port noted by
 * more threads than HOTFFI_POLLER_MAX cannot be proved.  A poll that
 * returns NULL counts itself in `stops` (release), which the proof reads
 * (acquire): the port's memory that poll read is ordered before its free
 * by the language too, not only by the kernel's word (and ThreadSanitizer,
 * which cannot read /proc, sees it).
 *
 * Threads the library starts later and that never poll are not seen: such
 * a library must export libffi_fini() (docs/api.md, "unpin").
 */

#ifndef HOTFFI_POLLER_H
#define HOTFFI_POLLER_H


#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "hotffi_core.h"


#define HOTFFI_POLLER_MAX  64


typedef struct {
    uint64_t      serial;      /* set once, before any thread polls */
    unsigned      noting:1;    /* set once: this port's threads are noted */
    atomic_uint   n;           /* slots claimed; past the max: unprovable */

    /* the port's, as the port is its version's: written by the noted
       thread (or the init thread, for init's threads), read by the
       reaper */
    atomic_int    tids[HOTFFI_POLLER_MAX];
    atomic_uint   stops;       /* polls that returned NULL; see below */
} hotffi_pollers_t;


/* the process's threads at one moment (hotffi_pollers_list()) */
typedef struct {
    int     *tids;             /* malloc()'ed, sorted; NULL: unknown */
    size_t   n;
} hotffi_threads_t;


/* thread: event loop.  Gives p a serial of its own; noting = note. */
void hotffi_pollers_init(hotffi_pollers_t *p, int note);

/*
 * thread: runtime, at every poll, before it.  Notes the calling thread,
 * once; returns whether p's threads are noted at all.
 */
int hotffi_pollers_note_self(hotffi_pollers_t *p);

/*
 * thread: runtime.  A poll of a noted port returns NULL: the stop.  Its
 * last touch of the port.
 */
void hotffi_pollers_note_stop(hotffi_pollers_t *p);

/*
 * thread: init (hotffi_version.h).  Lists the process's threads into t;
 * t->tids stays NULL when /proc cannot be read.  The caller frees t->tids.
 */
void hotffi_pollers_list(hotffi_threads_t *t);

/*
 * thread: init.  Notes the threads that exist now and were not in
 * before (a NULL before.tids: the port cannot be proved).
 */
void hotffi_pollers_note_new(hotffi_pollers_t *p,
    const hotffi_threads_t *before);

/*
 * thread: reaper.  Waits until no noted thread is left, for at most
 * grace_ns: HOTFFI_OK when none is, HOTFFI_DECLINED when one still runs
 * (or may: too many were noted).
 */
int hotffi_pollers_wait_gone(hotffi_pollers_t *p, uint64_t grace_ns);


#endif /* HOTFFI_POLLER_H */
