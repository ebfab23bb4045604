/*
 * Echo.java -- the smallest Java runtime: every call is answered with its
 * own request bytes.
 *
 *   local rt = hotffi.load("hotffi_java",
 *       "classpath=/path/to/build/java/examples,demo.Echo,init,2")
 *   local ok, res = rt:echo("hello")            --> true, "hello"
 *
 * The configuration, if any, is the number of serving threads (default 1).
 */
package demo;

import io.hotffi.Hotffi;

public final class Echo {
    private Echo() {
    }

    public static int init(String cfg, long tq) {
        int threads = cfg == null || cfg.isEmpty() ? 1
                                                   : Integer.parseInt(cfg);
        Hotffi.serve(tq, req -> req, threads);
        return 0;
    }
}
