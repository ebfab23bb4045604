/*
 * Handler.java -- a call handler for Hotffi.serve(): request bytes in,
 * answer bytes out.
 */
package io.hotffi;

/**
 * Answers one call: the request bytes (an empty array when Lua passed no
 * request) in, the answer out (null answers nil).  Throwing HotffiError
 * fails the call with its rc and data; any other exception fails it with
 * rc 1 and the stack trace, which the error log gets too.
 */
@FunctionalInterface
public interface Handler {
    byte[] handle(byte[] request) throws Exception;
}
