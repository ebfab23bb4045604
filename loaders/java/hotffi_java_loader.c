/*
 * hotffi_java_loader.c -- libhotffi_java.so's runtime ABI: libffi_init()
 * makes a Java class a runtime, libffi_fini() waits for its threads,
 * libffi_retire() also hands the class's retire() state to the next
 * version.
 *
 *   hotffi.load("hotffi_java", "classpath=/srv/java,demo.App?,init,cfg")
 *
 * See docs/java.md.  hotffi_java.h has the threading model.
 */

#include "hotffi_java.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"


/* local references one entry makes at most (a frame frees them) */
#define HOTFFI_JAVA_FRAME  16


hotffi_java_host_t  hotffi_java_host;

static pthread_once_t  hotffi_java_host_once = PTHREAD_ONCE_INIT;


/*
 * The class each configuration last ran, kept when its version ends so
 * that a rollback (the reload that replaced it failed) restarts that very
 * class -- not the file on disk, which a "Class?" would read anew and
 * which may be what failed.  One per cfg: a later successful init of the
 * same cfg forgets it, so reload cycles keep at most one old loader.
 *
 * locks: hotffi_java_back_mtx guards the list.
 */
typedef struct hotffi_java_back_s  hotffi_java_back_t;

struct hotffi_java_back_s {
    char                *cfg;     /* ours */
    jclass               cls;     /* global ref, ours */
    hotffi_java_back_t  *next;
};

static pthread_mutex_t      hotffi_java_back_mtx = PTHREAD_MUTEX_INITIALIZER;
static hotffi_java_back_t  *hotffi_java_backs;


/*
 * thread: any attached.  Unlinks the record of cfg and returns its class
 * (global ref, now the caller's), or NULL.
 */
static jclass
hotffi_java_back_take(const char *cfg)
{
    jclass               cls;
    hotffi_java_back_t  *b, **pp;

    cls = NULL;

    (void) pthread_mutex_lock(&hotffi_java_back_mtx);

    for (pp = &hotffi_java_backs; *pp; pp = &(*pp)->next) {
        b = *pp;

        if (strcmp(b->cfg, cfg) == 0) {
            *pp = b->next;
            cls = b->cls;
            free(b->cfg);
            free(b);
            break;
        }
    }

    (void) pthread_mutex_unlock(&hotffi_java_back_mtx);

    return cls;
}


/*
 * thread: hotffi's reaper, attached.  Keeps cls (a global ref: ownership
 * passes here) for a rollback of cfg, dropping an older one; drops cls
 * itself when out of memory.
 */
static void
hotffi_java_back_keep(JNIEnv *env, const char *cfg, jclass cls)
{
    jclass               old;
    hotffi_java_back_t  *b;

    old = hotffi_java_back_take(cfg);
    if (old != NULL) {
        (*env)->DeleteGlobalRef(env, old);
    }

    b = malloc(sizeof(hotffi_java_back_t));

    if (b == NULL || (b->cfg = strdup(cfg)) == NULL) {
        free(b);
        (*env)->DeleteGlobalRef(env, cls);
        return;
    }

    b->cls = cls;

    (void) pthread_mutex_lock(&hotffi_java_back_mtx);
    b->next = hotffi_java_backs;
    hotffi_java_backs = b;
    (void) pthread_mutex_unlock(&hotffi_java_back_mtx);
}


/* thread: init, once */
static void
hotffi_java_host_lookup(void)
{
    /* RTLD_DEFAULT: hotffi's module is loaded RTLD_GLOBAL */
    *(void **) &hotffi_java_host.task_cancelled = dlsym(RTLD_DEFAULT,
                                                   "hotffi_task_cancelled");
    *(void **) &hotffi_java_host.init_error = dlsym(RTLD_DEFAULT,
                                                    "hotffi_init_error");
    *(void **) &hotffi_java_host.state = dlsym(RTLD_DEFAULT, "hotffi_state");
    *(void **) &hotffi_java_host.rollback = dlsym(RTLD_DEFAULT,
                                                  "hotffi_rollback");
    *(void **) &hotffi_java_host.log = dlsym(RTLD_DEFAULT, "hotffi_log");
}


/* thread: init or reaper.  Says why on stderr and to hotffi. */
static void
hotffi_java_report(void *tq, const char *name, const char *msg)
{
    (void) fprintf(stderr, "hotffi: Java runtime \"%s\" failed: %s\n",
                   name, msg);

    if (hotffi_java_host.init_error != NULL) {
        hotffi_java_host.init_error(tq, msg);
    }
}


/* thread: any attached.  s as a new byte[] (local), or NULL. */
static jbyteArray
hotffi_java_bytes(JNIEnv *env, const char *s)
{
    jsize       len;
    jbyteArray  a;

    if (s == NULL) {
        return NULL;
    }

    len = (jsize) strlen(s);
    a = (*env)->NewByteArray(env, len);

    if (a != NULL) {
        (*env)->SetByteArrayRegion(env, a, 0, len, (const jbyte *) s);
    }

    return a;
}


/*
 * thread: init.  Loads the class and calls its init method; returns 0
 * (rt->cls then holds the class), init's own rc, or a HOTFFI_JAVA_E*
 * code with err saying why.
 */
static int
hotffi_java_start(JNIEnv *env, const hotffi_java_cfg_t *c, void *tq,
    hotffi_java_rt_t *rt, char *err, size_t errlen)
{
    jint        rc;
    jclass      cls, back;
    jbyteArray  cp, name, method, cfg;

    /* a rollback restarts the class the replaced version ran */
    back = NULL;

    if (hotffi_java_host.rollback != NULL
        && hotffi_java_host.rollback(tq))
    {
        back = hotffi_java_back_take(rt->cfg);
    }

    if (back != NULL) {
        rt->cls = back;
        cls = back;
        goto call;
    }

    cp = hotffi_java_bytes(env, c->classpath);
    name = hotffi_java_bytes(env, c->cls);

    if (cp == NULL || name == NULL) {
        (void) snprintf(err, errlen, "out of memory");
        (*env)->ExceptionClear(env);
        return HOTFFI_JAVA_EJVM;
    }

    cls = (*env)->CallStaticObjectMethod(env, hotffi_java_jvm.host,
                                         hotffi_java_jvm.load, cp, name,
                                         c->reload ? JNI_TRUE : JNI_FALSE);

    if (hotffi_java_exception(env, "cannot load the class: ", err, errlen)
        || cls == NULL)
    {
        return HOTFFI_JAVA_ECLASS;
    }

    rt->cls = (*env)->NewGlobalRef(env, cls);

call:

    method = hotffi_java_bytes(env, c->method);
    cfg = hotffi_java_bytes(env, c->cfg);

    rc = (*env)->CallStaticIntMethod(env, hotffi_java_jvm.host,
                                     hotffi_java_jvm.init, cls, method, cfg,
                                     (jlong) (intptr_t) tq);

    if (hotffi_java_exception(env, "init threw: ", err, errlen)) {
        return strncmp(err, "init threw: java.lang.NoSuchMethodException",
                       sizeof("init threw: java.lang.NoSuchMethodException")
                       - 1) == 0 ? HOTFFI_JAVA_ECLASS : HOTFFI_JAVA_EINIT;
    }

    if (rc != 0) {
        (void) snprintf(err, errlen, "%s returned %d", c->name, (int) rc);
        return (int) rc;
    }

    rt->started = 1;

    if (back == NULL) {
        /* this class, not the last one of cfg, is what to go back to */
        back = hotffi_java_back_take(rt->cfg);
        if (back != NULL) {
            (*env)->DeleteGlobalRef(env, back);
        }
    }

    return 0;
}


/*
 * thread: hotffi's init thread (never the event loop: it waits for the
 * JVM), attached to the JVM until it ends.
 * cfg: borrowed, "[classpath=CP,]Class[?][,method[,cfg]]".
 * tq:  borrowed, until libffi_fini() or libffi_retire().
 */
int
libffi_init(char *cfg, void *tq)
{
    int                 rc;
    char                err[HOTFFI_JAVA_ERR_MAX];
    JNIEnv             *env;
    hotffi_java_rt_t   *rt;
    hotffi_java_cfg_t   c;

    (void) pthread_once(&hotffi_java_host_once, hotffi_java_host_lookup);

    if (hotffi_java_cfg_parse(&c, cfg, err, sizeof(err)) != HOTFFI_JAVA_OK) {
        hotffi_java_report(tq, cfg ? cfg : "", err);
        return HOTFFI_JAVA_EBADCFG;
    }

    if (hotffi_java_jvm_start(err, sizeof(err)) != HOTFFI_JAVA_OK) {
        rc = HOTFFI_JAVA_EJVM;
        goto done;
    }

    env = hotffi_java_env();
    if (env == NULL) {
        (void) snprintf(err, sizeof(err), "AttachCurrentThread() failed");
        rc = HOTFFI_JAVA_EJVM;
        goto done;
    }

    /* registered before init runs: init may start polling at once */
    rt = hotffi_java_rt_create(tq, cfg);
    if (rt == NULL) {
        (void) snprintf(err, sizeof(err), "out of memory");
        rc = HOTFFI_JAVA_EJVM;
        goto done;
    }

    if ((*env)->PushLocalFrame(env, HOTFFI_JAVA_FRAME) != 0) {
        (*env)->ExceptionClear(env);
        (void) snprintf(err, sizeof(err), "PushLocalFrame() failed");
        rc = HOTFFI_JAVA_EJVM;
        goto done;
    }

    rc = hotffi_java_start(env, &c, tq, rt, err, sizeof(err));

    (void) (*env)->PopLocalFrame(env, NULL);

done:

    /* a failure: hotffi stops tq and calls libffi_fini(), which cleans up */
    if (rc != 0) {
        hotffi_java_report(tq, c.name, err);
    }

    hotffi_java_cfg_free(&c);

    return rc;
}


/*
 * thread: hotffi's reaper.  Joins the serve threads of rt (their polls
 * return 0 now) and, when state is not NULL, calls the class's
 * retire(tq).  Returns 0 or HOTFFI_JAVA_ERETIRE.
 */
static int
hotffi_java_end(hotffi_java_rt_t *rt, char **state, int *len)
{
    int          rc;
    char         err[HOTFFI_JAVA_ERR_MAX];
    jsize        n;
    JNIEnv      *env;
    jbyteArray   s;

    rc = 0;

    if (rt->cls == NULL) {
        return 0;
    }

    env = hotffi_java_env();
    if (env == NULL || (*env)->PushLocalFrame(env, HOTFFI_JAVA_FRAME) != 0) {
        return state ? HOTFFI_JAVA_ERETIRE : 0;
    }

    (*env)->CallStaticVoidMethod(env, hotffi_java_jvm.host,
                                 hotffi_java_jvm.join,
                                 (jlong) (intptr_t) rt->tq);

    if (hotffi_java_exception(env, "joining the serve threads: ", err,
                              sizeof(err)))
    {
        (void) fprintf(stderr, "hotffi: Java runtime: %s\n", err);
    }

    if (state != NULL) {
        s = (*env)->CallStaticObjectMethod(env, hotffi_java_jvm.host,
                                           hotffi_java_jvm.retire, rt->cls,
                                           (jlong) (intptr_t) rt->tq);

        if (hotffi_java_exception(env, "retire() threw: ", err,
                                  sizeof(err)))
        {
            hotffi_java_report(rt->tq, "retire", err);
            rc = HOTFFI_JAVA_ERETIRE;

        } else if (s != NULL) {
            n = (*env)->GetArrayLength(env, s);
            *state = malloc((size_t) n + 1);

            if (*state == NULL) {
                rc = HOTFFI_JAVA_ERETIRE;

            } else {
                (*env)->GetByteArrayRegion(env, s, 0, n, (jbyte *) *state);
                (*state)[n] = '\0';
                *len = (int) n;
            }
        }
    }

    /* the class, and with it a "Class?" runtime's loader, can go -- or
       stays for a rollback, on a host that can roll back */
    if (hotffi_java_host.rollback != NULL && rt->started) {
        hotffi_java_back_keep(env, rt->cfg, rt->cls);

    } else {
        (*env)->DeleteGlobalRef(env, rt->cls);
    }

    rt->cls = NULL;

    (void) (*env)->PopLocalFrame(env, NULL);

    return rc;
}


/*
 * thread: hotffi's reaper, after the stop was delivered.  Returns once no
 * thread of this runtime can touch tq: nobody in poll, serve threads
 * joined.  The JVM stays (it cannot be made again), and so does this
 * library (-z nodelete).
 */
int
libffi_fini(void *tq)
{
    hotffi_java_rt_t  *rt;

    rt = hotffi_java_rt_take(tq);

    if (rt != NULL) {
        (void) hotffi_java_end(rt, NULL, NULL);
        hotffi_java_rt_free(rt);
    }

    return 0;
}


/*
 * thread: hotffi's reaper, when rt:__reload() replaces this version.  As
 * libffi_fini(), and then the class's static byte[] retire(long tq) gives
 * the state for the next version.  *state: malloc()'ed, hotffi's.
 */
int
libffi_retire(void *tq, char **state, int *len)
{
    int                rc;
    hotffi_java_rt_t  *rt;

    *state = NULL;
    *len = 0;

    rt = hotffi_java_rt_take(tq);

    if (rt == NULL) {
        return 0;
    }

    rc = hotffi_java_end(rt, state, len);

    hotffi_java_rt_free(rt);

    return rc;
}
