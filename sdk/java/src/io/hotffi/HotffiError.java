/*
 * HotffiError.java -- thrown by a handler to fail its call on purpose, with
 * an rc and a payload of its own; not logged.
 */
package io.hotffi;

import java.nio.charset.StandardCharsets;

public class HotffiError extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final int rc;
    private final transient byte[] data;

    public HotffiError(int rc, byte[] data) {
        super("hotffi error " + rc);
        this.rc = rc;
        this.data = data;
    }

    public HotffiError(int rc, String data) {
        this(rc, data == null ? null : data.getBytes(StandardCharsets.UTF_8));
    }

    public HotffiError(int rc) {
        this(rc, (byte[]) null);
    }

    public int rc() {
        return rc;
    }

    public byte[] data() {
        return data;
    }
}
