/*
 * hotffi_java.h -- the Java loader's internal contract: one JVM per nginx
 * worker, any number of runtimes ("[classpath=CP,]Class[?],method,cfg"
 * configurations) inside it.
 *
 * DESIGN
 * The JVM.  Created once per worker, after the fork, by the first
 * libffi_init() -- on a thread of the loader's own (hotffi_java_jvm.c),
 * which every load waits for on its init thread, never the event loop.  It
 * is never destroyed: a JVM cannot be created twice in one process, so it
 * lives as long as the worker, and unloading a runtime ends its threads
 * and drops its class loader instead.  It starts with -Xrs and with every
 * signal blocked on the thread that creates it, so that its own threads
 * leave nginx's signals to the event loop.
 *
 * Threads.  Four kinds enter the loader:
 *   - the JVM thread: creates the JVM, registers the natives, ends;
 *   - init threads (hotffi's): libffi_init() loads the class and calls its
 *     init method;
 *   - Java threads: the serve threads of Hotffi.serve() and the runtime's
 *     own, calling the natives (hotffi_java_natives.c);
 *   - hotffi's reaper: libffi_fini() and libffi_retire() join the serve
 *     threads, libffi_retire() calls the class's retire(tq).
 * A thread of hotffi's is attached to the JVM the first time it needs
 * Java and detached when it ends (hotffi_java_env()).  Java threads are
 * the JVM's own.  C code calling Java frees its local references with a
 * local frame per entry; natives return to Java, which frees them.
 *
 * Queues.  A runtime's tq is freed by hotffi once libffi_fini() returns.
 * Every poll goes through a gate, the runtime registry
 * (hotffi_java_runtime.c): it counts the threads inside poll and lets none
 * in after the first NULL, so that libffi_fini() can wait until none can
 * touch tq any more.
 *
 * locks: the registry's mutex guards the list of runtimes and each
 * runtime's pollers and stopped fields; the JVM's mutex its start.
 */

#ifndef HOTFFI_JAVA_H
#define HOTFFI_JAVA_H


#include <jni.h>
#include <pthread.h>
#include <stddef.h>


#define HOTFFI_JAVA_OK      0
#define HOTFFI_JAVA_ERROR  -1

/* libffi_init() results of the loader itself; init's own rc passes through */
#define HOTFFI_JAVA_EBADCFG  1     /* the configuration cannot be parsed */
#define HOTFFI_JAVA_EJVM     2     /* the JVM did not start */
#define HOTFFI_JAVA_ECLASS   3     /* class or method not found, or broken */
#define HOTFFI_JAVA_EINIT    4     /* init threw */

/* libffi_retire() result: retire() threw or returned a wrong type */
#define HOTFFI_JAVA_ERETIRE  5

/* hotffi keeps 4095 bytes of an init error; so do we, from the end */
#define HOTFFI_JAVA_ERR_MAX  4096


/* ---- hotffi_java_config.c: the cfg and the JVM's options ---------------- */

typedef struct {
    char        *buf;        /* ours: holds the pieces below */
    const char  *classpath;  /* "classpath=" part, else $CLASSPATH, else "" */
    const char  *cls;        /* dotted class name */
    const char  *method;     /* "init" unless given */
    const char  *name;       /* "Class,method", for messages */
    const char  *cfg;        /* borrowed from hotffi's cfg: the rest, or NULL */
    unsigned     reload:1;   /* "?": a fresh class loader */
} hotffi_java_cfg_t;

/*
 * thread: init.  text: borrowed; c->cfg points into it.
 * HOTFFI_JAVA_OK, or HOTFFI_JAVA_ERROR with the reason in err.
 * Free with hotffi_java_cfg_free().
 */
int hotffi_java_cfg_parse(hotffi_java_cfg_t *c, const char *text, char *err,
    size_t errlen);
void hotffi_java_cfg_free(hotffi_java_cfg_t *c);

/*
 * thread: any.  Splits text as a shell splits words: white space between
 * them, '...' and "..." quote, a backslash escapes the next character
 * (outside single quotes).  Returns a malloc()'ed array of *n words
 * (malloc()'ed each, the caller frees them and it), or NULL with err set
 * (an unclosed quote, out of memory).  text NULL or blank: no words.
 */
char **hotffi_java_words(const char *text, int *n, char *err, size_t errlen);


/* ---- hotffi_java_jvm.c: the worker's JVM -------------------------------- */

/* the Java pieces the loader calls, resolved once the JVM is up */
typedef struct {
    JavaVM     *vm;
    jclass      host;        /* global: io.hotffi.Host */
    jmethodID   load;        /* Host.load(byte[], byte[], boolean) */
    jmethodID   init;        /* Host.init(Class, byte[], byte[], long) */
    jmethodID   retire;      /* Host.retire(Class, long) */
    jmethodID   join;        /* Host.join(long) */
    jmethodID   trace;       /* Host.trace(Throwable) */
} hotffi_java_jvm_t;

/* filled once by the JVM thread, read-only afterwards */
extern hotffi_java_jvm_t  hotffi_java_jvm;

/*
 * thread: init (any but the event loop: it blocks while the JVM starts).
 * Starts the JVM on the first call; every call waits until it is up.
 * HOTFFI_JAVA_OK, or HOTFFI_JAVA_ERROR with the reason in err (for good:
 * a JVM that failed to start cannot be started again in this process).
 */
int hotffi_java_jvm_start(char *err, size_t errlen);

/*
 * thread: a thread of hotffi's, JVM started.  The thread's JNIEnv,
 * attaching it (as a daemon) on first use; it is detached when the thread
 * ends.  NULL if attaching failed.
 */
JNIEnv *hotffi_java_env(void);

/*
 * thread: any attached.  If a Java exception is pending: clears it, writes
 * its stack trace (the end, if long) after prefix into err and returns 1;
 * else 0.
 */
int hotffi_java_exception(JNIEnv *env, const char *prefix, char *err,
    size_t errlen);

/* thread: the JVM thread.  Registers io.hotffi.Hotffi's natives. */
int hotffi_java_natives_register(JNIEnv *env, jclass hotffi);


/* ---- hotffi_java_loader.c: the host's optional functions ---------------- */

/*
 * hotffi's own functions, looked up rather than linked, so that a host
 * without them (lua-resty-ffi) still loads this library: NULL there.
 * Filled once, first thing in libffi_init(), read-only afterwards.
 */
typedef struct {
    int          (*task_cancelled)(void *task);
    void         (*init_error)(void *tq, const char *msg);
    const char  *(*state)(void *tq, int *len);
    int          (*rollback)(void *tq);
    void         (*log)(void *tq, int level, const char *msg, int len);
} hotffi_java_host_t;

extern hotffi_java_host_t  hotffi_java_host;


/* ---- hotffi_java_runtime.c: the registry and the poll gate -------------- */

/* owner: the registry, then whoever hotffi_java_rt_take() returns it to */
typedef struct hotffi_java_rt_s  hotffi_java_rt_t;

struct hotffi_java_rt_s {
    void              *tq;        /* hotffi's, borrowed until libffi_fini()
                                     or libffi_retire() */
    int                pollers;   /* threads inside the gate's poll */
    unsigned           stopped:1; /* a poll returned NULL: let none in */
    unsigned           started:1; /* init returned 0: a rollback may
                                     restart cls */
    jclass             cls;       /* global ref, or NULL: the class init
                                     ran; dropped (or kept for a rollback)
                                     when the version ends */
    char              *cfg;       /* ours: libffi_init()'s cfg text */
    hotffi_java_rt_t  *next;
};

/* thread: init.  cfg: borrowed, copied.  NULL when out of memory. */
hotffi_java_rt_t *hotffi_java_rt_create(void *tq, const char *cfg);

/*
 * thread: a Java thread.  The gate: ngx_http_lua_ffi_task_poll(tq) for a
 * registered, running runtime; NULL, without touching tq, once the
 * runtime stopped or is gone.
 */
void *hotffi_java_rt_poll(void *tq);

/*
 * thread: any.  hotffi_log() for tq with the registry's lock held, so
 * that tq cannot end meanwhile; a tq no longer registered logs a line of
 * no runtime.  msg: borrowed, len bytes (0: msg is "").  The host must
 * have hotffi_log().
 */
void hotffi_java_rt_log(void *tq, int level, const char *msg, int len);

/*
 * thread: hotffi's reaper.  Marks the runtime stopped, waits until no
 * thread is inside its poll, unregisters it and returns it (the caller
 * frees it with hotffi_java_rt_free()), or NULL if tq is unknown.
 */
hotffi_java_rt_t *hotffi_java_rt_take(void *tq);

/* thread: hotffi's reaper.  Frees rt (its cls already dealt with). */
void hotffi_java_rt_free(hotffi_java_rt_t *rt);


#endif /* HOTFFI_JAVA_H */
