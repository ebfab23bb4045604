/*
 * hotffi.h -- the C ABI between hotffi and the runtime libraries it loads.
 *
 * A runtime is a shared library that exports libffi_init().  hotffi calls it
 * once per (library, configuration) in each nginx worker, handing it a task
 * queue.  The runtime's own threads take tasks from the queue, read each
 * request and answer it.  Everything here is binary-compatible with
 * lua-resty-ffi: a library built for it loads and works unmodified, and a
 * library written against this header alone also works on lua-resty-ffi as
 * long as it uses only the lua-resty-ffi names.
 *
 * Ownership in one paragraph: a request belongs to hotffi and is valid from
 * the moment a task is polled until it is answered; it is the Lua caller's
 * string itself, not a copy, so it is read-only.  A response is malloc()'ed
 * by the runtime and belongs to hotffi once passed to respond().  A task
 * belongs to the runtime from poll() until respond(); after respond() the
 * runtime must not touch it again.
 */

#ifndef HOTFFI_H
#define HOTFFI_H


#include <stddef.h>


#ifdef __cplusplus
extern "C" {
#endif

/* hotffi is loaded into a process whose other code may build hidden */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif


/* Bumped when a declaration below changes incompatibly. */
#define HOTFFI_ABI_VERSION  2


/*
 * rc values hotffi itself puts on a task.  A runtime answers with 0 for
 * success and any other value for failure; these are negative so that they
 * never collide with a runtime's own (positive) error codes.
 */
#define HOTFFI_TASK_CANCELLED  -100

/* no version of the runtime was left to take the task: see rt:__reload() */
#define HOTFFI_TASK_UNSERVED   -101

/*
 * an isolated runtime (docs/isolation.md) could not answer: its process
 * died or was stuck, it is marked failed, or a payload exceeds its ring;
 * the answer says which
 */
#define HOTFFI_TASK_ISOLATION  -102


/* ---- exported by the runtime library ---------------------------------- */

/*
 * Required.  Starts the runtime: parse cfg, start the polling thread(s),
 * return 0.  Any other return value fails the load and the runtime is
 * discarded (its queue is stopped, so threads it already started get NULL
 * from poll).
 *
 * thread: a short-lived thread of hotffi's (the init thread), never the
 *         event loop: it may take its time (connect, import, warm up)
 *         while nginx serves other requests; calls made meanwhile wait
 *         in the queue, and fail with this init's error if it fails.  The
 *         thread ends once it returns, and its thread-locals with it
 *         rather than keep the library mapped.  Every signal is blocked
 *         on it, and so on the threads it starts.
 * cfg:    borrowed NUL-terminated string, or NULL when Lua passed nil;
 *         hotffi frees it after libffi_init() returns, so copy what you keep.
 * tq:     borrowed; this version's handle on the runtime's queue, valid
 *         until libffi_fini() or libffi_retire() returns, or, in a library
 *         that exports neither, until the runtime is unloaded and every
 *         poll returned NULL (for ever while a thread could still poll it).
 *         A reload gives the next version another tq over the same queue.
 *
 * Without libffi_fini() and libffi_retire(), a library loaded with
 * unpin = true is closed once it is unloaded and the kernel shows gone
 * every thread its libffi_init() started and every thread that polled tq
 * (HOTFFI_UNPIN_GRACE_MS, 10 s by default, at most; else it stays mapped,
 * with one warning).  Threads that
 * never poll and were started later are not seen: such a library must
 * export libffi_fini().
 */
int libffi_init(char *cfg, void *tq);

/*
 * Optional, hotffi only.  Called after the stop marker has been delivered,
 * on a thread of hotffi's (never the event loop), so it may block: join the
 * threads that polled tq and release what libffi_init() created.  It is
 * called after a failed libffi_init() too (threads it started must be
 * joined before the library can go): hotffi_tq_data() may then be NULL.
 * When it returns, no code of the library may run any more; only then does
 * hotffi dlclose() a library loaded with unpin = true and free tq.  A
 * library without libffi_fini() (or libffi_retire()) is dlclose()'d only
 * once the kernel shows its threads gone (see libffi_init()).
 *
 * thread: a hotffi reaper thread.
 * tq:     borrowed; it is freed after libffi_fini() returns.
 */
int libffi_fini(void *tq);


/*
 * Optional, hotffi only: in-place reload with state hand-over.  When
 * rt:__reload() replaces this version, hotffi first stops tq (every poll()
 * on it returns NULL from now on; tasks still queued wait for the next
 * version), then calls libffi_retire() on a thread of its own: answer the
 * tasks already taken, join the threads that polled tq, and hand back the
 * state the next version should start from in *state (malloc()'ed, *len
 * bytes; leave *state NULL for none).  The next version reads it with
 * hotffi_state() inside its libffi_init(); so does this version's own
 * library if the next one fails to start and hotffi rolls back to it.
 *
 * Like libffi_fini(), returning means no code of this version runs any
 * more: it replaces libffi_fini() when both exist and the reload asks for
 * state.  A non-zero return fails the reload (the error names the rc): the
 * old version is started again, without state.
 *
 * thread: a hotffi reaper thread; it may block.
 * tq:     borrowed; freed after libffi_retire() returns.
 * state:  ownership passes to hotffi, which free()s it.
 */
int libffi_retire(void *tq, char **state, int *len);


/* ---- provided by hotffi, lua-resty-ffi names ---------------------------- */

/*
 * Takes the next task, blocking until there is one.  Returns NULL when the
 * runtime was unloaded and every task queued before the unload has been
 * handed out, or at once when a reload replaces this version (the tasks
 * still queued go to the next version): the runtime must stop.  Every later
 * call also returns NULL, so each of several polling threads sees the stop.
 * Tasks whose caller gave up before they were taken are answered by hotffi
 * and never returned.
 *
 * thread: any runtime thread.  thread-safe.
 * tq:     borrowed.
 * returns a task the runtime owns until it calls respond(), or NULL.
 */
void *ngx_http_lua_ffi_task_poll(void *tq);

/*
 * The request bytes of a task and, in *len, their number (the request may
 * contain NUL bytes).  A call made without a request (rt:method() or
 * rt:method(nil) in Lua) gives NULL and 0, as on lua-resty-ffi; an empty
 * string gives a valid pointer and 0.  hotffi hands over the caller's own
 * bytes (a Lua string's memory), not a copy: they are read-only, and there
 * is a NUL after them, but a runtime for lua-resty-ffi too should rely on
 * len alone.
 *
 * thread: the thread that owns the task.
 * returns memory borrowed from the task: valid until respond().
 */
char *ngx_http_lua_ffi_get_req(void *task, int *len);

/*
 * Answers a task.  rc 0 is success; anything else fails the call with rc
 * (the Lua caller sees false, rc, rsp).  rsp may be NULL for no payload.
 * rsp_len is the payload size; 0 (or less) with a non-NULL rsp means rsp is a
 * NUL-terminated string.  The caller may have given up already (timeout,
 * client gone): respond() is still required, and hotffi frees everything.
 *
 * thread: the thread that owns the task.  thread-safe.
 * task:   ownership passes to hotffi; do not touch it afterwards.
 * rsp:    ownership passes to hotffi, which free()s it.
 */
void ngx_http_lua_ffi_respond(void *task, int rc, char *rsp, int rsp_len);


/* ---- provided by hotffi, hotffi names ----------------------------------- */

/* The ABI version hotffi was built with (HOTFFI_ABI_VERSION).  thread: any. */
int hotffi_abi_version(void);

/*
 * ngx_http_lua_ffi_task_poll() for several tasks at once: blocks until there
 * is at least one task (or the stop), then takes up to max of those queued,
 * oldest first, with one lock round trip.  Returns how many it put into
 * tasks[0..n-1], or 0 where poll() would return NULL (the runtime must stop;
 * every later call returns 0 too).  Tasks whose caller gave up before they
 * were taken are answered by hotffi and never returned.  Each task is the
 * runtime's until its own respond(), as from poll(); the two functions may
 * be mixed, on any number of threads.
 *
 * Before it parks, a polling thread (this or poll()) watches the queue for
 * a short while (HOTFFI_POLL_SPIN_US, 20 us by default, longer after a
 * large answer of this thread; see docs/api.md), so that a runtime that
 * keeps up with its callers costs no wake-up.
 *
 * thread: any runtime thread.  thread-safe.
 * tq:     borrowed.
 * tasks:  borrowed array of at least max pointers, written by hotffi.
 * max:    how many tasks at most; less than 1 returns 0 at once.
 */
int hotffi_task_poll_batch(void *tq, void **tasks, int max);

/*
 * 1 once the caller has given up on this task (it timed out, the request
 * ended, the coroutine was killed), else 0.  A runtime doing long work may
 * check it and answer early; it must still call respond().
 *
 * thread: the thread that owns the task.  thread-safe.
 */
int hotffi_task_cancelled(void *task);

/*
 * Says why libffi_init() or libffi_retire() is about to fail: call it from
 * inside either before returning non-zero, and the load's or the reload's
 * error message ends with msg (a Python traceback, say) instead of the bare
 * return code.  A later call replaces an earlier one; a msg longer than
 * 4095 bytes keeps its end (where a traceback's exception line is), after
 * a leading "...".
 *
 * thread: inside libffi_init() (the init thread) or libffi_retire() only.
 * tq:     the queue libffi_init() or libffi_retire() was given.
 * msg:    borrowed NUL-terminated string; hotffi copies it.
 */
void hotffi_init_error(void *tq, const char *msg);

/*
 * One pointer of the runtime's own per queue, so that libffi_fini(tq) finds
 * what libffi_init(cfg, tq) made without a registry of its own.  NULL until
 * set.
 *
 * thread: any; set it in libffi_init() before starting threads that read it.
 * data:   borrowed; hotffi never dereferences or frees it.
 */
void hotffi_tq_set_data(void *tq, void *data);
void *hotffi_tq_data(void *tq);


/*
 * The state the previous version handed over from its libffi_retire(), for
 * libffi_init() to start from: returns it and its size in *len, or NULL
 * (and 0) on a first load, a reload without hand-over, or a previous
 * version without libffi_retire().
 *
 * thread: the init thread, inside libffi_init() only.
 * tq:     the queue libffi_init() was given.
 * returns memory borrowed until libffi_init() returns: copy what you keep.
 */
const char *hotffi_state(void *tq, int *len);

/*
 * 1 when this libffi_init() starts the previous version again because the
 * reload that replaced it failed (a rollback; it gets the same state), else
 * 0.  A runtime that reads its code anew on every init (Python's "module?")
 * restarts the code that ran before instead.
 *
 * thread: the init thread, inside libffi_init() only.
 */
int hotffi_rollback(void *tq);


/* hotffi_log()'s levels: nginx's own, as error_log names them */
#define HOTFFI_LEVEL_EMERG   1
#define HOTFFI_LEVEL_ALERT   2
#define HOTFFI_LEVEL_CRIT    3
#define HOTFFI_LEVEL_ERR     4
#define HOTFFI_LEVEL_WARN    5
#define HOTFFI_LEVEL_NOTICE  6
#define HOTFFI_LEVEL_INFO    7
#define HOTFFI_LEVEL_DEBUG   8

/*
 * Writes a line to nginx's error log, from any thread, without blocking.
 * The line is copied into a bounded buffer of the worker's and written by
 * its event loop with nginx's own logger (the main error_log, as
 * `hotffi: runtime "NAME" vN: msg`), so the error_log level filters it,
 * `nginx -s reopen` moves it to the new file, and nothing is written from
 * the runtime's thread.  A line more verbose than the error_log level costs
 * one load and is not copied.  A line longer than 1900 bytes (name
 * included) keeps its start and ends with " [... N bytes cut]".  When the
 * buffer is full (512 lines or 64 KiB waiting for the event loop), the line
 * is dropped, and the next drain writes one warning saying how many were.
 * Optional: resolve it at run time (a weak symbol, dlsym()), as a runtime
 * for lua-resty-ffi too must, where it does not exist.
 *
 * thread: any.  thread-safe, non-blocking (a short lock, no I/O).
 * tq:     borrowed, a queue libffi_init() was given, valid as for poll();
 *         or NULL for a line of no runtime: it is written without a
 *         runtime's name, and lost when the worker has loaded no runtime.
 * level:  HOTFFI_LEVEL_EMERG (1) .. HOTFFI_LEVEL_DEBUG (8); below 1 counts
 *         as 1, above 8 as 8.
 * msg:    borrowed, copied before the call returns; NULL writes nothing.
 * len:    bytes of msg, which may hold any byte (a newline stays one);
 *         0 or less means msg is NUL-terminated, as for respond().
 */
void hotffi_log(void *tq, int level, const char *msg, int len);

/*
 * Shared dicts: the lua_shared_dict zones of nginx.conf, read and written
 * from runtime threads with the meaning ngx.shared.DICT gives them in Lua
 * (the same code does the work: lua-nginx-module's), so a value one side
 * writes is what the other reads, in every worker.  Optional host
 * functions, like the ones above: resolve them at run time.
 *
 * thread: any; thread-safe.  Each call takes the zone's lock for one
 * operation, as a Lua call does (docs/api.md, "Shared dicts").
 */

#define HOTFFI_SHDICT_NIL      0     /* no such key (or expired) */
#define HOTFFI_SHDICT_BOOLEAN  1     /* number is 0 or 1 */
#define HOTFFI_SHDICT_NUMBER   3     /* a Lua number: a double */
#define HOTFFI_SHDICT_STRING   4     /* bytes: str, len */

#define HOTFFI_SHDICT_SET       0    /* ngx.shared.DICT:set() */
#define HOTFFI_SHDICT_SAFE_SET  1    /* :safe_set(): never evicts */
#define HOTFFI_SHDICT_ADD       2    /* :add(): only if absent */
#define HOTFFI_SHDICT_SAFE_ADD  3    /* :safe_add() */
#define HOTFFI_SHDICT_REPLACE   4    /* :replace(): only if present */

#define HOTFFI_SHDICT_OK         0
#define HOTFFI_SHDICT_ERROR     -1   /* err says why ("no memory", "empty
                                        key", "key too long": keys are 1 to
                                        65535 bytes, as in Lua, ...) */
#define HOTFFI_SHDICT_DECLINED  -5   /* add: "exists"; replace and incr
                                        without init: "not found" */

typedef struct {
    int            type;     /* HOTFFI_SHDICT_NIL ... _STRING */
    double         number;   /* NUMBER, and BOOLEAN as 0 or 1 */
    char          *str;      /* STRING; from get: malloc()'ed, NUL after
                                len bytes, the caller's to free() */
    size_t         len;      /* STRING: its length in bytes */
    unsigned int   flags;    /* the user flags of set()/get() */
    int            stale;    /* get with stale: 1 if it had expired */
} hotffi_shdict_value_t;

/* The zone `name` (lua_shared_dict name ...;), or NULL if there is none.
 * The handle is good for the worker's life. */
void *hotffi_shdict(const char *name);

/* DICT:get(key) (or :get_stale(key) when stale is 1) into *value. */
int hotffi_shdict_get(void *dict, const char *key, size_t key_len,
    int stale, hotffi_shdict_value_t *value, char *err, size_t err_len);

/* DICT:set/safe_set/add/safe_add/replace(key, value, exptime, flags),
 * exptime in seconds (0: never); value NULL or of type NIL deletes the
 * key (DICT:delete()).  *forcible (may be NULL) is 1 when other items
 * were evicted to make room. */
int hotffi_shdict_store(void *dict, int op, const char *key,
    size_t key_len, const hotffi_shdict_value_t *value, double exptime,
    int *forcible, char *err, size_t err_len);

/* DICT:incr(key, by[, init[, init_ttl]]): the new value in *value. */
int hotffi_shdict_incr(void *dict, const char *key, size_t key_len,
    double by, double *value, int has_init, double init, double init_ttl,
    int *forcible, char *err, size_t err_len);

/* DICT:ttl(key): seconds left, 0 for a key that never expires, -1 for no
 * such key. */
double hotffi_shdict_ttl(void *dict, const char *key, size_t key_len);


#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* HOTFFI_H */
