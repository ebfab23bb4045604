/*
 * hotffi_java_jvm.c -- the worker's JVM: created once, after the fork, on a
 * thread of its own, with nginx's signals left to nginx; and the
 * attachment of hotffi's threads to it.
 *
 * JVM options, in order (a later one wins where the JVM lets it):
 *   -Djava.class.path=<the SDK jar>[:$CLASSPATH]
 *   -Xrs                        no handlers for HUP INT TERM QUIT
 *   -XX:-UsePerfData            no /tmp/hsperfdata_* files
 *   -XX:+DisableAttachMechanism no attach listener
 *   -Djava.security.manager=allow  so that the exit guard may be installed
 *   then the words of $HOTFFI_JAVA_OPTS (`env HOTFFI_JAVA_OPTS=...;`)
 * The SDK jar is $HOTFFI_JAVA_SDK, else the one this library was built
 * with.  See docs/java.md, "The JVM in nginx".
 */

#include "hotffi_java.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#ifndef HOTFFI_JAVA_JAR
#define HOTFFI_JAVA_JAR  "hotffi.jar"
#endif

#define HOTFFI_JAVA_NONE      0
#define HOTFFI_JAVA_STARTING  1
#define HOTFFI_JAVA_UP        2
#define HOTFFI_JAVA_FAILED    3

#define HOTFFI_JAVA_FIXED_OPTS  7   /* ours, before the user's */


hotffi_java_jvm_t  hotffi_java_jvm;

/* locks: hotffi_java_jvm_mtx guards the three below */
static pthread_mutex_t  hotffi_java_jvm_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t   hotffi_java_jvm_cond = PTHREAD_COND_INITIALIZER;
static int              hotffi_java_jvm_state;
static char             hotffi_java_jvm_err[HOTFFI_JAVA_ERR_MAX];

static pthread_t        hotffi_java_jvm_tid;
static pthread_key_t    hotffi_java_env_key;


/* thread: the JVM thread.  locks: takes hotffi_java_jvm_mtx. */
static void
hotffi_java_jvm_done(int state, const char *msg)
{
    (void) pthread_mutex_lock(&hotffi_java_jvm_mtx);

    if (state == HOTFFI_JAVA_FAILED) {
        (void) snprintf(hotffi_java_jvm_err, sizeof(hotffi_java_jvm_err),
                        "%s", msg);
    }

    hotffi_java_jvm_state = state;
    (void) pthread_cond_broadcast(&hotffi_java_jvm_cond);
    (void) pthread_mutex_unlock(&hotffi_java_jvm_mtx);
}


/*
 * thread: whichever the JVM exits on.  A JVM that gives up while it starts
 * (a bad -Xmx, say) calls exit(): on the JVM thread, that thread ends
 * instead and the worker lives on, with no JVM.  Elsewhere (a fatal
 * error with -XX:+ExitOnOutOfMemoryError, say; System.exit() is refused
 * by the exit guard) the process exits, as the JVM asked.
 */
static void JNICALL
hotffi_java_jvm_exit_hook(jint code)
{
    char  msg[128];

    if (pthread_equal(pthread_self(), hotffi_java_jvm_tid)) {
        (void) snprintf(msg, sizeof(msg), "the JVM gave up while starting, "
                        "exit status %d (its reason is in the error log)",
                        (int) code);
        hotffi_java_jvm_done(HOTFFI_JAVA_FAILED, msg);
        pthread_exit(NULL);
    }
}


static void
hotffi_java_words_drop(char **w, int n)
{
    while (n > 0) {
        free(w[--n]);
    }

    free(w);
}


/* thread: the JVM thread.  The line is one of JDK 17's warning's. */
static int
hotffi_java_jvm_jdk_warning(const char *line, size_t n)
{
    static const char  *says[] = { "terminally deprecated",
                                   "etSecurityManager", "io.hotffi.Host" };
    char                 copy[512];
    size_t               i;

    if (n < 9 || n >= sizeof(copy) || memcmp(line, "WARNING: ", 9) != 0) {
        return 0;
    }

    memcpy(copy, line, n);
    copy[n] = '\0';

    for (i = 0; i < sizeof(says) / sizeof(says[0]); i++) {
        if (strstr(copy, says[i]) != NULL) {
            return 1;
        }
    }

    return 0;
}


/*
 * thread: the JVM thread.  Writes buf's complete lines to stderr, but for
 * JDK 17's warning about hotffi's own setSecurityManager() call; all:
 * the last line too, even without its newline.  Returns how many bytes
 * are left, moved to buf's start.
 */
static size_t
hotffi_java_jvm_pass_lines(char *buf, size_t len, int all)
{
    char    *line, *end, *nl;
    size_t   n;

    line = buf;
    end = buf + len;

    while (line < end) {
        nl = memchr(line, '\n', (size_t) (end - line));

        if (nl == NULL && !all) {
            break;
        }

        n = (size_t) ((nl != NULL ? nl + 1 : end) - line);

        if (!hotffi_java_jvm_jdk_warning(line, n)
            && write(STDERR_FILENO, line, n) < 0)
        {
            return 0;
        }

        line += n;
    }

    n = (size_t) (end - line);
    memmove(buf, line, n);

    return n;
}


/*
 * thread: the JVM thread.  JDK 17 says on the process's stderr (the error
 * log) that a deprecated method was called and asks to report it to
 * hotffi: we called it on purpose.  For the call, fd 2 is a pipe; what
 * other threads wrote meanwhile is passed on, the JDK's lines are not.
 */
static jboolean
hotffi_java_jvm_guard_quietly(JNIEnv *env, jclass host, jmethodID guard)
{
    int       fds[2], saved;
    char      buf[4096];
    size_t    len;
    ssize_t   n;
    jboolean  ok;

    if (pipe(fds) != 0) {
        return (*env)->CallStaticBooleanMethod(env, host, guard);
    }

    /* the read end must not block: the pipe is drained once, at the end */
    (void) fcntl(fds[0], F_SETFL, O_NONBLOCK);
    (void) fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    (void) fcntl(fds[1], F_SETFD, FD_CLOEXEC);

    saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);

    if (saved != -1 && dup2(fds[1], STDERR_FILENO) == -1) {
        (void) close(saved);
        saved = -1;
    }

    (void) close(fds[1]);

    ok = (*env)->CallStaticBooleanMethod(env, host, guard);

    if (saved != -1) {
        (void) dup2(saved, STDERR_FILENO);
        (void) close(saved);
    }

    /* others' writes meanwhile come through, a line at a time (a partial
     * last line of a chunk is carried to the next) */
    len = 0;

    while ((n = read(fds[0], buf + len, sizeof(buf) - len)) > 0) {
        len = hotffi_java_jvm_pass_lines(buf, len + (size_t) n,
                                         len + (size_t) n == sizeof(buf));
    }

    (void) hotffi_java_jvm_pass_lines(buf, len, 1);
    (void) close(fds[0]);

    return ok;
}


/*
 * thread: the JVM thread.  System.exit() in a runtime would end the
 * worker, with every request it holds: Host.guard() makes it throw
 * instead.  A JDK that cannot (removed from 24 on) is said once.
 */
static void
hotffi_java_jvm_guard(JNIEnv *env, jclass host)
{
    jmethodID  guard;

    guard = (*env)->GetStaticMethodID(env, host, "guard", "()Z");

    if (guard != NULL
        && hotffi_java_jvm_guard_quietly(env, host, guard)
        && !(*env)->ExceptionCheck(env))
    {
        return;
    }

    (void) (*env)->ExceptionClear(env);
    (void) fprintf(stderr, "hotffi: this JDK has no security manager to "
                   "refuse System.exit(): a runtime that calls it ends "
                   "the nginx worker\n");
}


/* thread: the JVM thread.  Resolves what the loader calls in Java. */
static const char *
hotffi_java_jvm_resolve(JNIEnv *env)
{
    jclass              hotffi, host;
    hotffi_java_jvm_t  *j;

    j = &hotffi_java_jvm;

    hotffi = (*env)->FindClass(env, "io/hotffi/Hotffi");
    if (hotffi == NULL) {
        return "class io.hotffi.Hotffi not found (is the SDK jar there?)";
    }

    if (hotffi_java_natives_register(env, hotffi) != HOTFFI_JAVA_OK) {
        return "RegisterNatives() failed for io.hotffi.Hotffi";
    }

    host = (*env)->FindClass(env, "io/hotffi/Host");
    if (host == NULL) {
        return "class io.hotffi.Host not found";
    }

    j->host = (*env)->NewGlobalRef(env, host);
    j->load = (*env)->GetStaticMethodID(env, host, "load",
                                        "([B[BZ)Ljava/lang/Class;");
    j->init = (*env)->GetStaticMethodID(env, host, "init",
                                        "(Ljava/lang/Class;[B[BJ)I");
    j->retire = (*env)->GetStaticMethodID(env, host, "retire",
                                          "(Ljava/lang/Class;J)[B");
    j->join = (*env)->GetStaticMethodID(env, host, "join", "(J)V");
    j->trace = (*env)->GetStaticMethodID(env, host, "trace",
                                         "(Ljava/lang/Throwable;)[B");

    if (j->host == NULL || j->load == NULL || j->init == NULL
        || j->retire == NULL || j->join == NULL || j->trace == NULL)
    {
        return "io.hotffi.Host lacks a method (an SDK jar of another "
               "version?)";
    }

    hotffi_java_jvm_guard(env, host);

    return NULL;
}


/*
 * thread: the JVM thread, started with every signal blocked (the init
 * thread's mask): the JVM's threads inherit that, and -Xrs keeps the
 * JVM from unblocking nginx's signals on them.
 */
static void *
hotffi_java_jvm_main(void *arg)
{
    int              i, n, rc;
    char           **words, *classpath, err[256], msg[300];
    JNIEnv          *env;
    JavaVM          *vm;
    const char      *jar, *cp, *why;
    JavaVMOption    *opts;
    JavaVMInitArgs   args;

    (void) arg;

    jar = getenv("HOTFFI_JAVA_SDK");
    if (jar == NULL || *jar == '\0') {
        jar = HOTFFI_JAVA_JAR;
    }

    cp = getenv("CLASSPATH");

    classpath = malloc(sizeof("-Djava.class.path=") + strlen(jar)
                       + (cp ? strlen(cp) + 1 : 0));
    if (classpath == NULL) {
        hotffi_java_jvm_done(HOTFFI_JAVA_FAILED, "out of memory");
        return NULL;
    }

    (void) sprintf(classpath, "-Djava.class.path=%s%s%s", jar,
                   cp && *cp ? ":" : "", cp && *cp ? cp : "");

    words = hotffi_java_words(getenv("HOTFFI_JAVA_OPTS"), &n, err,
                              sizeof(err));
    if (words == NULL) {
        free(classpath);
        (void) snprintf(msg, sizeof(msg), "HOTFFI_JAVA_OPTS: %s", err);
        hotffi_java_jvm_done(HOTFFI_JAVA_FAILED, msg);
        return NULL;
    }

    opts = calloc(HOTFFI_JAVA_FIXED_OPTS + n, sizeof(JavaVMOption));
    if (opts == NULL) {
        free(classpath);
        hotffi_java_words_drop(words, n);
        hotffi_java_jvm_done(HOTFFI_JAVA_FAILED, "out of memory");
        return NULL;
    }

    opts[0].optionString = classpath;
    opts[1].optionString = "-Xrs";
    opts[2].optionString = "-XX:-UsePerfData";
    opts[3].optionString = "-XX:+DisableAttachMechanism";
    opts[4].optionString = "exit";
    opts[4].extraInfo = (void *) hotffi_java_jvm_exit_hook;
    opts[5].optionString = "-Dio.hotffi.loader=libhotffi_java";
    opts[6].optionString = "-Djava.security.manager=allow";

    for (i = 0; i < n; i++) {
        opts[HOTFFI_JAVA_FIXED_OPTS + i].optionString = words[i];
    }

    args.version = JNI_VERSION_10;
    args.nOptions = HOTFFI_JAVA_FIXED_OPTS + n;
    args.options = opts;
    args.ignoreUnrecognized = JNI_FALSE;

    rc = JNI_CreateJavaVM(&vm, (void **) &env, &args);

    free(opts);
    free(classpath);
    hotffi_java_words_drop(words, n);

    if (rc != JNI_OK) {
        (void) snprintf(err, sizeof(err), "JNI_CreateJavaVM() failed: %d "
                        "(a bad option in HOTFFI_JAVA_OPTS?)", rc);
        hotffi_java_jvm_done(HOTFFI_JAVA_FAILED, err);
        return NULL;
    }

    hotffi_java_jvm.vm = vm;

    why = hotffi_java_jvm_resolve(env);

    if (why != NULL) {
        (void) (*env)->ExceptionClear(env);
        (void) (*vm)->DetachCurrentThread(vm);
        hotffi_java_jvm_done(HOTFFI_JAVA_FAILED, why);
        return NULL;
    }

    /* the JVM lives on; this thread is done with it */
    (void) (*vm)->DetachCurrentThread(vm);
    hotffi_java_jvm_done(HOTFFI_JAVA_UP, NULL);

    return NULL;
}


/* thread: any thread of hotffi's, as it ends: it leaves the JVM */
static void
hotffi_java_env_detach(void *vm)
{
    (void) (*(JavaVM *) vm)->DetachCurrentThread((JavaVM *) vm);
}


/* thread: init.  locks: takes hotffi_java_jvm_mtx. */
int
hotffi_java_jvm_start(char *err, size_t errlen)
{
    int             rc;
    sigset_t        all, old;
    pthread_attr_t  attr;

    (void) pthread_mutex_lock(&hotffi_java_jvm_mtx);

    if (hotffi_java_jvm_state == HOTFFI_JAVA_NONE) {
        hotffi_java_jvm_state = HOTFFI_JAVA_STARTING;

        (void) pthread_key_create(&hotffi_java_env_key,
                                  hotffi_java_env_detach);

        /* the JVM's threads inherit this mask: nginx's signals stay out */
        (void) sigfillset(&all);
        (void) pthread_sigmask(SIG_SETMASK, &all, &old);

        (void) pthread_attr_init(&attr);
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* JNI_CreateJavaVM() wants more stack than a small default */
        (void) pthread_attr_setstacksize(&attr, 8 * 1024 * 1024);

        rc = pthread_create(&hotffi_java_jvm_tid, &attr,
                            hotffi_java_jvm_main, NULL);

        (void) pthread_attr_destroy(&attr);
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

        if (rc != 0) {
            hotffi_java_jvm_state = HOTFFI_JAVA_FAILED;
            (void) snprintf(hotffi_java_jvm_err, sizeof(hotffi_java_jvm_err),
                            "pthread_create() failed for the JVM: %s",
                            strerror(rc));
        }
    }

    while (hotffi_java_jvm_state == HOTFFI_JAVA_STARTING) {
        (void) pthread_cond_wait(&hotffi_java_jvm_cond, &hotffi_java_jvm_mtx);
    }

    rc = hotffi_java_jvm_state == HOTFFI_JAVA_UP ? HOTFFI_JAVA_OK
                                                 : HOTFFI_JAVA_ERROR;
    if (rc != HOTFFI_JAVA_OK) {
        (void) snprintf(err, errlen, "%s", hotffi_java_jvm_err);
    }

    (void) pthread_mutex_unlock(&hotffi_java_jvm_mtx);

    return rc;
}


/* thread: a thread of hotffi's, after hotffi_java_jvm_start() succeeded */
JNIEnv *
hotffi_java_env(void)
{
    JNIEnv                   *env;
    JavaVM                   *vm;
    JavaVMAttachArgs          aa;

    vm = hotffi_java_jvm.vm;

    if ((*vm)->GetEnv(vm, (void **) &env, JNI_VERSION_10) == JNI_OK) {
        return env;
    }

    aa.version = JNI_VERSION_10;
    aa.name = "hotffi";
    aa.group = NULL;

    if ((*vm)->AttachCurrentThreadAsDaemon(vm, (void **) &env, &aa)
        != JNI_OK)
    {
        return NULL;
    }

    /* detached by the key's destructor when this thread ends */
    (void) pthread_setspecific(hotffi_java_env_key, vm);

    return env;
}


/* thread: any attached */
int
hotffi_java_exception(JNIEnv *env, const char *prefix, char *err,
    size_t errlen)
{
    jsize        len;
    size_t       plen, room;
    jthrowable   e;
    jbyteArray   trace;

    if (!(*env)->ExceptionCheck(env)) {
        return 0;
    }

    e = (*env)->ExceptionOccurred(env);
    (*env)->ExceptionClear(env);

    plen = (size_t) snprintf(err, errlen, "%s", prefix);
    if (plen >= errlen) {
        return 1;
    }

    trace = (*env)->CallStaticObjectMethod(env, hotffi_java_jvm.host,
                                           hotffi_java_jvm.trace, e);

    if ((*env)->ExceptionCheck(env) || trace == NULL) {
        (*env)->ExceptionClear(env);
        (void) snprintf(err + plen, errlen - plen, "(no stack trace)");
        (*env)->DeleteLocalRef(env, e);
        return 1;
    }

    len = (*env)->GetArrayLength(env, trace);
    room = errlen - plen - 1;

    if ((size_t) len <= room) {
        (*env)->GetByteArrayRegion(env, trace, 0, len,
                                   (jbyte *) err + plen);
        err[plen + len] = '\0';

    } else {
        /* the head: the exception's own line and its first frames */
        (*env)->GetByteArrayRegion(env, trace, 0, (jsize) room - 4,
                                   (jbyte *) err + plen);
        memcpy(err + errlen - 5, " ...", 5);
    }

    (*env)->DeleteLocalRef(env, trace);
    (*env)->DeleteLocalRef(env, e);

    return 1;
}
