/*
 * hotffi_java_natives.c -- io.hotffi.Hotffi's native methods: how Java
 * threads take calls (poll), read them (a byte[] copy or a direct
 * ByteBuffer over the request in place), answer them (from a byte[] or a
 * direct ByteBuffer, one copy into hotffi's memory either way) and log.
 *
 * Task and queue handles cross into Java as longs: a task is the
 * runtime's from poll() until respond() (the Java Task object answers
 * once); tq is hotffi's, valid while the runtime's threads may poll it.
 * A request lent as a direct ByteBuffer is revoked (made empty) by the
 * answer that ends its task, before hotffi gets the task back.  Every
 * local reference made here is freed when the native returns to Java, so
 * nothing piles up per call.
 */

#include "hotffi_java.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hotffi.h"


#define HOTFFI_JAVA_PTR(l)  ((void *) (intptr_t) (l))


/*
 * java.nio.Buffer's mark, position, limit and capacity, resolved once
 * when the natives are registered (read-only afterwards); NULL where this
 * JDK names them otherwise, and then a lent buffer is not revoked.
 */
static jfieldID  hotffi_java_buf_mark;
static jfieldID  hotffi_java_buf_position;
static jfieldID  hotffi_java_buf_limit;
static jfieldID  hotffi_java_buf_capacity;


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
 * thread: the task's owner.  An answer of len bytes, malloc()'ed with a
 * spare NUL (an empty answer is "", length 0 with a NUL, not nil), which
 * the caller fills and passes to hotffi with the task.  NULL when out of
 * memory: the task is answered (rc 2, no payload) and OutOfMemoryError
 * is pending.
 */
static char *
hotffi_java_answer_alloc(JNIEnv *env, jlong task, jsize len)
{
    char  *rsp;

    rsp = malloc((size_t) len + 1);

    if (rsp == NULL) {
        ngx_http_lua_ffi_respond(HOTFFI_JAVA_PTR(task), 2, NULL, 0);
        (void) (*env)->ThrowNew(env,
                   (*env)->FindClass(env, "java/lang/OutOfMemoryError"),
                   "hotffi: no memory for an answer");
        return NULL;
    }

    rsp[len] = '\0';

    return rsp;
}


/*
 * thread: the task's owner, before it answers.  lent (a local reference,
 * or NULL: nothing lent) is the direct ByteBuffer over the request that
 * requestBuffer() made for this task: it becomes empty (position, limit
 * and capacity 0), so that every read of it throws from now on instead
 * of reading the Lua string hotffi is about to let go.  Views made from
 * it meanwhile (slice(), duplicate()) keep their own bounds: that they
 * are dropped by then is the handler's part (docs/java.md).
 */
static void
hotffi_java_revoke(JNIEnv *env, jobject lent)
{
    if (lent == NULL || hotffi_java_buf_capacity == NULL) {
        return;
    }

    (*env)->SetIntField(env, lent, hotffi_java_buf_limit, 0);
    (*env)->SetIntField(env, lent, hotffi_java_buf_position, 0);
    (*env)->SetIntField(env, lent, hotffi_java_buf_mark, -1);
    (*env)->SetIntField(env, lent, hotffi_java_buf_capacity, 0);
}


/*
 * thread: the task's owner.  Hotffi.answer(task, rc, data, off, len,
 * lent): the answer is data[off, off + len) (data borrowed for the call,
 * checked by the caller; null: no payload), copied into malloc()'ed memory
 * that passes to hotffi with the task; lent is revoked first.
 */
static void JNICALL
hotffi_java_answer(JNIEnv *env, jclass cls, jlong task, jint rc,
    jbyteArray data, jint off, jint len, jobject lent)
{
    char  *rsp;

    (void) cls;

    hotffi_java_revoke(env, lent);

    if (data == NULL) {
        ngx_http_lua_ffi_respond(HOTFFI_JAVA_PTR(task), rc, NULL, 0);
        return;
    }

    rsp = hotffi_java_answer_alloc(env, task, len);
    if (rsp == NULL) {
        return;
    }

    (*env)->GetByteArrayRegion(env, data, off, len, (jbyte *) rsp);

    if ((*env)->ExceptionCheck(env)) {
        /* bounds the caller should have checked: fail, never guess */
        free(rsp);
        ngx_http_lua_ffi_respond(HOTFFI_JAVA_PTR(task), 2, NULL, 0);
        return;
    }

    ngx_http_lua_ffi_respond(HOTFFI_JAVA_PTR(task), rc, rsp, (int) len);
}


/*
 * thread: the task's owner.  Hotffi.answerDirect(task, rc, data, off,
 * len, lent): the same from a direct ByteBuffer's memory (borrowed for
 * the call; it may be lent itself, an echo: copied before lent is
 * revoked), one memcpy() into the answer hotffi takes.
 */
static void JNICALL
hotffi_java_answer_direct(JNIEnv *env, jclass cls, jlong task, jint rc,
    jobject data, jint off, jint len, jobject lent)
{
    char  *rsp, *from;

    (void) cls;

    from = (*env)->GetDirectBufferAddress(env, data);

    if (from == NULL && len > 0) {
        hotffi_java_revoke(env, lent);
        ngx_http_lua_ffi_respond(HOTFFI_JAVA_PTR(task), 2, NULL, 0);
        (void) (*env)->ThrowNew(env,
                   (*env)->FindClass(env,
                                     "java/lang/IllegalArgumentException"),
                   "hotffi: not a direct buffer");
        return;
    }

    rsp = hotffi_java_answer_alloc(env, task, len);
    if (rsp == NULL) {
        hotffi_java_revoke(env, lent);
        return;
    }

    if (len > 0) {
        memcpy(rsp, from + off, (size_t) len);
    }

    hotffi_java_revoke(env, lent);

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
    { "answer", "(JI[BIILjava/nio/ByteBuffer;)V",
      (void *) hotffi_java_answer },
    { "answerDirect",
      "(JILjava/nio/ByteBuffer;IILjava/nio/ByteBuffer;)V",
      (void *) hotffi_java_answer_direct },
    { "cancelled", "(J)Z", (void *) hotffi_java_cancelled },
    { "log", "(JI[B)V", (void *) hotffi_java_log },
    { "state", "(J)[B", (void *) hotffi_java_state },
    { "rollback", "(J)Z", (void *) hotffi_java_rollback },
};


/*
 * thread: the JVM thread.  The fields revoke() writes; all four or none
 * (a JDK that names them otherwise: lent buffers are not revoked).
 */
static void
hotffi_java_buf_resolve(JNIEnv *env)
{
    jclass    buf;
    jfieldID  f[4];

    buf = (*env)->FindClass(env, "java/nio/Buffer");
    if (buf == NULL) {
        (void) (*env)->ExceptionClear(env);
        return;
    }

    f[0] = (*env)->GetFieldID(env, buf, "mark", "I");
    f[1] = f[0] ? (*env)->GetFieldID(env, buf, "position", "I") : NULL;
    f[2] = f[1] ? (*env)->GetFieldID(env, buf, "limit", "I") : NULL;
    f[3] = f[2] ? (*env)->GetFieldID(env, buf, "capacity", "I") : NULL;

    if (f[3] == NULL) {
        (void) (*env)->ExceptionClear(env);
        return;
    }

    hotffi_java_buf_mark = f[0];
    hotffi_java_buf_position = f[1];
    hotffi_java_buf_limit = f[2];
    hotffi_java_buf_capacity = f[3];
}


/* thread: the JVM thread */
int
hotffi_java_natives_register(JNIEnv *env, jclass hotffi)
{
    jint  n;

    hotffi_java_buf_resolve(env);

    n = (jint) (sizeof(hotffi_java_methods) / sizeof(JNINativeMethod));

    if ((*env)->RegisterNatives(env, hotffi, hotffi_java_methods, n) != 0) {
        return HOTFFI_JAVA_ERROR;
    }

    return HOTFFI_JAVA_OK;
}
