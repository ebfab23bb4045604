/*
 * Task.java -- one call taken from a runtime's queue: its request, its
 * answer (once), and whether its caller gave up.
 */
package io.hotffi;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A task belongs to the thread that polled it until respond(); then hotffi
 * owns it and every method but answered() throws.  The request is
 * hotffi's memory (the Lua string itself): request() copies it into a new
 * array, buffer() lends it in place, read-only, until respond(), which
 * revokes it (it is empty from then on: reading it throws).
 */
public final class Task {
    private final long tq;
    private final long task;
    private final AtomicBoolean answered = new AtomicBoolean();
    private byte[] request;
    private ByteBuffer lent;    /* buffer()'s, revoked by respond() */

    Task(long tq, long task) {
        this.tq = tq;
        this.task = task;
    }

    /** The queue this task came from (for Hotffi.log). */
    public long queue() {
        return tq;
    }

    /** The request bytes, copied once; empty when Lua passed none. */
    public byte[] request() {
        live();
        if (request == null) {
            byte[] r = Hotffi.request(task);
            request = r == null ? new byte[0] : r;
        }
        return request;
    }

    /** The request in place (no copy), read-only, lent until respond():
     *  then it is revoked (empty: every read throws).  The same buffer
     *  each time, rewound (position 0, limit the request's length); null
     *  when Lua passed none.  Views made of it (slice(), duplicate()) are
     *  not revoked: keep none past respond(). */
    public ByteBuffer buffer() {
        live();
        if (lent == null) {
            ByteBuffer b = Hotffi.requestBuffer(task);
            if (b == null) {
                return null;
            }
            lent = b.asReadOnlyBuffer();
        }
        return lent.clear();
    }

    /** Whether the caller gave up (timeout, request ended). */
    public boolean cancelled() {
        live();
        return Hotffi.cancelled(task);
    }

    public boolean answered() {
        return answered.get();
    }

    /** Answers: rc 0 succeeds, any other rc fails the call; data may be
     *  null (nil in Lua). */
    public void respond(int rc, byte[] data) {
        claim();
        Hotffi.answer(task, rc, data, 0, data == null ? 0 : data.length,
            lent);
    }

    /** Answers with data's remaining bytes (position to limit; its
     *  position does not move), copied once, from any buffer: buffer()
     *  itself (an echo), a slice of it, a direct buffer of one's own
     *  reused call after call, a wrapped array.  null is nil. */
    public void respond(int rc, ByteBuffer data) {
        claim();
        if (data == null) {
            Hotffi.answer(task, rc, null, 0, 0, lent);
        } else if (data.isDirect()) {
            Hotffi.answerDirect(task, rc, data, data.position(),
                data.remaining(), lent);
        } else if (data.hasArray()) {
            Hotffi.answer(task, rc, data.array(),
                data.arrayOffset() + data.position(), data.remaining(),
                lent);
        } else {
            /* a read-only heap buffer hides its array */
            byte[] b = new byte[data.remaining()];
            data.duplicate().get(b);
            Hotffi.answer(task, rc, b, 0, b.length, lent);
        }
    }

    public void respond(int rc, String data) {
        respond(rc, data == null ? null
                : data.getBytes(StandardCharsets.UTF_8));
    }

    public void respond(byte[] data) {
        respond(0, data);
    }

    private void claim() {
        if (!answered.compareAndSet(false, true)) {
            throw new IllegalStateException("task already answered");
        }
    }

    private void live() {
        if (answered.get()) {
            throw new IllegalStateException("task already answered");
        }
    }

    @Override
    public String toString() {
        return "hotffi.Task(" + (answered.get() ? "answered" : "open") + ")";
    }
}
