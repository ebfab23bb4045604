/*
 * BufferHandler.java -- a call handler for Hotffi.serveBuffers(): the
 * request lent in place, the answer from any ByteBuffer, so that a call
 * makes no garbage and copies its bytes once each way at most.
 */
package io.hotffi;

import java.nio.ByteBuffer;

/**
 * Answers one call.  request is the caller's own bytes (the Lua string),
 * a read-only direct buffer lent until handle() returns and revoked then
 * (empty: reading it throws): copy what you keep.  An empty buffer when
 * Lua passed no request.  The answer is the returned buffer's remaining
 * bytes (position to limit), copied once into hotffi's memory after
 * handle() returns: request itself (an echo), a slice of it, a direct
 * buffer reused call after call or ByteBuffer.wrap(bytes) all do; null
 * answers nil.  Throwing fails the call as for Handler.
 */
@FunctionalInterface
public interface BufferHandler {
    ByteBuffer handle(ByteBuffer request) throws Exception;
}
