/*
 * hotffi_java_natives.c -- io.hotffi.Hotffi's native methods: how Java
 * threads take calls (poll), read them (a byte[] copy or a direct
 * ByteBuffer over the request in place), answer them and log.
 *
 * Task and queue handles cross into Java as longs: a task is the
 * runtime's from poll() until respond() (the Java Task object answers
 * once); tq is hotffi's, valid while the runtime's threads may poll it.
 * Every local reference made here is freed when the native returns to
 * Java, so nothing piles up per call.
 */

#include "hotffi_java.h"

#include <stdint.h>
#include <stdlib.h>

#include "hotffi.h"


#define HOTFFI_JAVA_PTR(l)  ((void *) (intptr_t) (l))


/* thread: a Java thread.  Hotffi.poll(tq): the task's handle, or 0. */
static jlong JNICALL
hotffi_java_poll(JNIEnv *env, jclass cls, jlong tq)
{
    (void) env;
    (void) cls;

    return (jlong) (intptr_t) hotffi_java_rt_poll(HOTFFI_JAVA_PTR(tq));
}


/* thread: the task's owner.  Hotffi.request(task): a copy, or null. */
static jbyteArray JNICALL
hotffi_java_request(JNIEnv *env, jclass cls, jlong task)
{
    int          len;
    char        *req;
    jbyteArray   a;

    (void) cls;

    req = ngx_http_lua_ffi_get_req(HOTFFI_JAVA_PTR(task), &len);
    if (req == NULL) {
        return NULL;
    }

    a = (*env)->NewByteArray(env, len);
    if (a == NULL) {
        return NULL;    /* OutOfMemoryError is pending */
    }

    (*env)->SetByteArrayRegion(env, a, 0, len, (const jbyte *) req);

    return a;
}


/*
 * thread: the task's owner.  Hotffi.requestBuffer(task): the request's own
 * bytes (the Lua string, borrowed until respond()), or null.
 */
static jobject JNICALL
hotffi_java_request_buffer(JNIEnv *env, jclass cls, jlong task)
{
    int    len;
    char  *req;

    (void) cls;

    req = ngx_http_lua_ffi_get_req(HOTFFI_JAVA_PTR(task), &len);
    if (req == NULL) {
        return NULL;
    }

    return (*env)->NewDirectByteBuffer(env, req, (jlong) len);
}


/*
 * thread: the task's owner.  Hotffi.respond(task, rc, data): the task and
 * a malloc()'ed copy of data pass to hotffi.
 */
static void JNICALL
hotffi_java_respond(JNIEnv *env, jclass cls, jlong task, jint rc,
    jbyteArray data)
{
    char   *rsp;
    jsize   len;

    (void) cls;

    if (data == NULL) {
        ngx_http_lua_ffi_respond(HOTFFI_JAVA_PTR(task), rc, NULL, 0);
        return;
    }

    len = (*env)->GetArrayLength(env, data);

    /* an empty answer is "" (length 0 with a NUL), not nil */
    rsp = malloc((size_t) len + 1);

    if (rsp == NULL) {
        ngx_http_lua_ffi_respond(HOTFFI_JAVA_PTR(task), 2, NULL, 0);
        (void) (*env)->ThrowNew(env,
                   (*env)->FindClass(env, "java/lang/OutOfMemoryError"),
                   "hotffi: no memory for an answer");
        return;
    }

    (*env)->GetByteArrayRegion(env, data, 0, len, (jbyte *) rsp);
    rsp[len] = '\0';

    ngx_http_lua_ffi_respond(HOTFFI_JAVA_PTR(task), rc, rsp, (int) len);
}


/* thread: the task's owner.  Hotffi.cancelled(task). */
static jboolean JNICALL
hotffi_java_cancelled(JNIEnv *env, jclass cls, jlong task)
{
    (void) env;
    (void) cls;

    if (hotffi_java_host.task_cancelled == NULL) {
        return JNI_FALSE;
    }

    return hotffi_java_host.task_cancelled(HOTFFI_JAVA_PTR(task))
           ? JNI_TRUE : JNI_FALSE;
}


/*
 * thread: any Java thread.  Hotffi.log(): through the registry, so that a
 * tq that ended meanwhile is never touched (its line has no runtime name).
 */
static void JNICALL
hotffi_java_log(JNIEnv *env, jclass cls, jlong tq, jint level,
    jbyteArray msg)
{
    jsize   len;
    jbyte  *bytes;

    (void) cls;

    if (hotffi_java_host.log == NULL || msg == NULL) {
        return;
    }

    len = (*env)->GetArrayLength(env, msg);

    if (len == 0) {
        hotffi_java_rt_log(HOTFFI_JAVA_PTR(tq), level, "", 0);
        return;
    }

    bytes = (*env)->GetPrimitiveArrayCritical(env, msg, NULL);
    if (bytes == NULL) {
        return;
    }

    /* copies and never blocks (a short lock): fine in a critical region */
    hotffi_java_rt_log(HOTFFI_JAVA_PTR(tq), level, (const char *) bytes,
                       (int) len);

    (*env)->ReleasePrimitiveArrayCritical(env, msg, bytes, JNI_ABORT);
}


/* thread: the init thread, inside init.  Hotffi.state(tq). */
static jbyteArray JNICALL
hotffi_java_state(JNIEnv *env, jclass cls, jlong tq)
{
    int          len;
    jbyteArray   a;
    const char  *s;

    (void) cls;

    if (hotffi_java_host.state == NULL) {
        return NULL;
    }

    s = hotffi_java_host.state(HOTFFI_JAVA_PTR(tq), &len);
    if (s == NULL) {
        return NULL;
    }

    a = (*env)->NewByteArray(env, len);
    if (a != NULL) {
        (*env)->SetByteArrayRegion(env, a, 0, len, (const jbyte *) s);
    }

    return a;
}


/* thread: the init thread, inside init.  Hotffi.rollback(tq). */
static jboolean JNICALL
hotffi_java_rollback(JNIEnv *env, jclass cls, jlong tq)
{
    (void) env;
    (void) cls;

    if (hotffi_java_host.rollback == NULL) {
        return JNI_FALSE;
    }

    return hotffi_java_host.rollback(HOTFFI_JAVA_PTR(tq)) ? JNI_TRUE
                                                          : JNI_FALSE;
}


static JNINativeMethod  hotffi_java_methods[] = {
    { "poll", "(J)J", (void *) hotffi_java_poll },
    { "request", "(J)[B", (void *) hotffi_java_request },
    { "requestBuffer", "(J)Ljava/nio/ByteBuffer;",
      (void *) hotffi_java_request_buffer },
    { "respond", "(JI[B)V", (void *) hotffi_java_respond },
    { "cancelled", "(J)Z", (void *) hotffi_java_cancelled },
    { "log", "(JI[B)V", (void *) hotffi_java_log },
    { "state", "(J)[B", (void *) hotffi_java_state },
    { "rollback", "(J)Z", (void *) hotffi_java_rollback },
};


/* thread: the JVM thread */
int
hotffi_java_natives_register(JNIEnv *env, jclass hotffi)
{
    jint  n;

    n = (jint) (sizeof(hotffi_java_methods) / sizeof(JNINativeMethod));

    if ((*env)->RegisterNatives(env, hotffi, hotffi_java_methods, n) != 0) {
        return HOTFFI_JAVA_ERROR;
    }

    return HOTFFI_JAVA_OK;
}
