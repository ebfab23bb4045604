/*
 * Echo.java -- the smallest Java runtime: every call is answered with its
 * own request bytes.
 *
 *   local rt = hotffi.load("hotffi_java",
 *       "classpath=/path/to/build/java/examples,demo.Echo,init,2")
 *   local ok, res = rt:echo("hello")            --> true, "hello"
 *
 * The configuration, if any, is the number of serving threads (default
 * 1), then ",copy" to take each request as a byte[] copy (Handler) rather
 * than lent in place (BufferHandler), for comparing the two.
 */
package demo;

import io.hotffi.Hotffi;

public final class Echo {
    private Echo() {
    }

    public static int init(String cfg, long tq) {
        String[] words = cfg == null ? new String[0] : cfg.split(",");
        int threads = words.length == 0 || words[0].isEmpty() ? 1
                      : Integer.parseInt(words[0]);
        if (words.length > 1 && words[1].equals("copy")) {
            Hotffi.serve(tq, req -> req, threads);
        } else {
            // the handler keeps nothing: the request need not be copied
            Hotffi.serveBuffers(tq, req -> req, threads);
        }
        return 0;
    }
}
