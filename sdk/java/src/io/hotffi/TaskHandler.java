/*
 * TaskHandler.java -- a call handler for Hotffi.serveTasks(): the whole
 * Task, for handlers that read the request in place, answer with an rc or
 * watch for the caller giving up.
 */
package io.hotffi;

/**
 * Answers task with task.respond(...) before returning; a handler that
 * returns without answering gets rc 2 "task not answered" for it.  Throwing
 * fails an unanswered call as for Handler.
 */
@FunctionalInterface
public interface TaskHandler {
    void handle(Task task) throws Exception;
}
