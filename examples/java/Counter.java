/*
 * Counter.java -- a Java runtime with state that reloads in place: it
 * counts its calls, and rt:__reload{} hands the count to the next version
 * (retire() returns it, init reads it with Hotffi.state()).
 *
 *   local rt = hotffi.load("hotffi_java",
 *       "classpath=/path/to/build/java/examples,demo.Counter?,init")
 *   rt:hit()                                    --> true, "1"
 *   rt:__reload{}                               -- the count goes on
 */
package demo;

import io.hotffi.Hotffi;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicLong;

public final class Counter {
    private static final AtomicLong COUNT = new AtomicLong();

    private Counter() {
    }

    public static int init(String cfg, long tq) {
        byte[] state = Hotffi.state(tq);
        if (state != null) {
            COUNT.set(Long.parseLong(
                new String(state, StandardCharsets.US_ASCII)));
        }
        Hotffi.serve(tq, req -> Long.toString(COUNT.incrementAndGet())
            .getBytes(StandardCharsets.US_ASCII), 1);
        return 0;
    }

    /** Called once the version's threads are joined: its state. */
    public static byte[] retire(long tq) {
        return Long.toString(COUNT.get()).getBytes(StandardCharsets.US_ASCII);
    }
}
