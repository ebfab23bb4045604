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
 * array, buffer() shows it in place, read-only, valid until respond().
 */
public final class Task {
    private final long tq;
    private final long task;
    private final AtomicBoolean answered = new AtomicBoolean();
    private byte[] request;

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

    /** The request in place (no copy), read-only; null when Lua passed
     *  none.  Do not keep it past respond(). */
    public ByteBuffer buffer() {
        live();
        ByteBuffer b = Hotffi.requestBuffer(task);
        return b == null ? null : b.asReadOnlyBuffer();
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
        if (!answered.compareAndSet(false, true)) {
            throw new IllegalStateException("task already answered");
        }
        Hotffi.respond(task, rc, data);
    }

    public void respond(int rc, String data) {
        respond(rc, data == null ? null
                : data.getBytes(StandardCharsets.UTF_8));
    }

    public void respond(byte[] data) {
        respond(0, data);
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
