/*
 * Hotffi.java -- a Java runtime's side of hotffi: take calls from a queue
 * (serve threads, or poll() for a loop of one's own), answer them, log.
 */
package io.hotffi;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The natives are libhotffi_java.so's, registered when the worker's JVM
 * starts.  tq is the queue a runtime's init got (its long argument); a
 * task handle is what poll() returned.  See docs/java.md.
 */
public final class Hotffi {
    /* nginx's levels, as error_log names them */
    public static final int EMERG = 1;
    public static final int ALERT = 2;
    public static final int CRIT = 3;
    public static final int ERR = 4;
    public static final int WARN = 5;
    public static final int NOTICE = 6;
    public static final int INFO = 7;
    public static final int DEBUG = 8;

    /** rc of a call whose handler threw (the payload is the trace). */
    public static final int RC_EXCEPTION = 1;
    /** rc of a call a TaskHandler returned from without answering. */
    public static final int RC_UNANSWERED = 2;

    public static final int MAX_SERVE_THREADS = 256;

    private static final Map<Long, List<Thread>> SERVERS =
        new ConcurrentHashMap<>();
    private static final AtomicInteger SEQ = new AtomicInteger();
    /* the request of a call Lua made with none, for a BufferHandler */
    private static final ByteBuffer EMPTY =
        ByteBuffer.allocateDirect(0).asReadOnlyBuffer();

    private Hotffi() {
    }

    /* ---- the loader's natives ----------------------------------------- */

    /** The next task's handle, blocking; 0 once the runtime must stop
     *  (unloaded, or replaced by a reload): return then. */
    public static native long poll(long tq);

    /** A copy of the task's request; null when Lua passed none. */
    public static native byte[] request(long task);

    /** The request in place, as a direct buffer (no copy), valid until
     *  respond(); null when Lua passed none.  Never write to it. */
    public static native ByteBuffer requestBuffer(long task);

    /** Answers the task (exactly once); data null for no payload. */
    public static void respond(long task, int rc, byte[] data) {
        answer(task, rc, data, 0, data == null ? 0 : data.length, null);
    }

    /* Task's answers: data[off, off + len) (checked here), or a direct
       buffer's bytes at off (checked here), copied once into hotffi's
       memory; lent, when not null, is revoked first (Task.buffer()) */
    static native void answer(long task, int rc, byte[] data, int off,
        int len, ByteBuffer lent);

    static native void answerDirect(long task, int rc, ByteBuffer data,
        int off, int len, ByteBuffer lent);

    /** Whether the task's caller gave up. */
    public static native boolean cancelled(long task);

    /** A line in nginx's error log (level ERR..DEBUG), never blocking. */
    public static native void log(long tq, int level, byte[] msg);

    /** Inside init: the state the previous version's retire() handed
     *  over, or null. */
    public static native byte[] state(long tq);

    /** Inside init: whether this init restarts the version a failed
     *  reload replaced. */
    public static native boolean rollback(long tq);

    /* ---- conveniences --------------------------------------------------- */

    public static void log(long tq, int level, String msg) {
        log(tq, level, msg.getBytes(StandardCharsets.UTF_8));
    }

    /** poll() as a Task, or null once the runtime must stop. */
    public static Task pollTask(long tq) {
        long t = poll(tq);
        return t == 0 ? null : new Task(tq, t);
    }

    /** Starts threads serving tq with handler: its answer is the call's. */
    public static void serve(long tq, Handler handler, int threads) {
        if (handler == null) {
            throw new IllegalArgumentException("serve() needs a handler");
        }
        serveTasks(tq, task -> task.respond(0,
            handler.handle(task.request())), threads);
    }

    /** Starts threads serving tq with handler, which reads each request
     *  in place (a read-only direct buffer lent until it returns: no copy,
     *  no garbage) and answers with a buffer's remaining bytes (copied
     *  once; null answers nil).  See BufferHandler. */
    public static void serveBuffers(long tq, BufferHandler handler,
        int threads) {
        if (handler == null) {
            throw new IllegalArgumentException("serve() needs a handler");
        }
        serveTasks(tq, task -> {
            ByteBuffer req = task.buffer();
            task.respond(0, handler.handle(req == null ? EMPTY : req));
        }, threads);
    }

    /** Starts threads serving tq, each task handed to handler whole. */
    public static void serveTasks(long tq, TaskHandler handler, int threads) {
        if (handler == null) {
            throw new IllegalArgumentException("serve() needs a handler");
        }
        if (threads < 1 || threads > MAX_SERVE_THREADS) {
            throw new IllegalArgumentException("serve() threads must be 1.."
                + MAX_SERVE_THREADS + ", not " + threads);
        }
        List<Thread> list = SERVERS.computeIfAbsent(tq,
            k -> new ArrayList<>());
        synchronized (list) {
            for (int i = 0; i < threads; i++) {
                Thread t = new Thread(() -> loop(tq, handler),
                    "hotffi-j" + SEQ.incrementAndGet());
                t.setDaemon(true);
                list.add(t);
                t.start();
            }
        }
    }

    private static void loop(long tq, TaskHandler handler) {
        for (;;) {
            long t = poll(tq);
            if (t == 0) {
                return;
            }
            Task task = new Task(tq, t);
            try {
                handler.handle(task);
                if (!task.answered()) {
                    task.respond(RC_UNANSWERED, "task not answered");
                }
            } catch (HotffiError e) {
                if (!task.answered()) {
                    task.respond(e.rc(), e.data());
                }
            } catch (Throwable e) {
                String trace = trace(e);
                log(tq, ERR, "serve() handler threw: " + trace);
                if (!task.answered()) {
                    task.respond(RC_EXCEPTION, trace);
                }
            }
        }
    }

    /** e's stack trace as Java prints it, without the last newline. */
    public static String trace(Throwable e) {
        StringWriter w = new StringWriter();
        e.printStackTrace(new PrintWriter(w));
        String s = w.toString();
        return s.endsWith("\n") ? s.substring(0, s.length() - 1) : s;
    }

    /* the loader, as a version ends: joins the serve threads of tq, whose
       polls return 0 by now */
    static void join(long tq) throws InterruptedException {
        List<Thread> list = SERVERS.remove(tq);
        if (list == null) {
            return;
        }
        synchronized (list) {
            for (Thread t : list) {
                t.join();
            }
        }
    }
}
