/*
 * Ctl.java -- the ctl runtime of the tests, in Java, for the cases every
 * language runs (tests/lib/HotffiLangs.pm, tests/nginx/450-languages.t),
 * on the SDK's Task API:
 *
 *   echo:S  fail:RC:MSG  error:MSG  null  empty  sleep:MS  cancelled  cfg
 *   log:LEVEL:N:TEXT, and anything else fails with rc 3.
 * Java's own, for tests/nginx/56x: sleeping (how many sleeps run now),
 * attached (how many of hotffi's threads are attached to the JVM now),
 * herror:RC:MSG (a HotffiError), throw:MSG (an exception), threads (how
 * many hotffi-j* threads are alive), buffer:S (the request in place),
 * slice:S (S answered from a slice of the request in place), keep:S (the
 * request in place kept past the answer), kept (what reading that kept
 * buffer does now), exit:N and halt:N (System.exit(N), Runtime.halt(N)),
 * setsm (replace the security manager).
 *
 * The configuration is the number of serving threads (default 4), or
 * "fail-init" (init returns 7), or "exit-init" (init calls System.exit).
 */
package ctl;

import io.hotffi.Hotffi;
import io.hotffi.HotffiError;
import io.hotffi.Task;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicInteger;

public final class Ctl {
    private static final AtomicInteger CANCELLED = new AtomicInteger();
    private static final AtomicInteger SLEEPING = new AtomicInteger();
    /* keep:'s buffer, which a handler must not do: kept shows why */
    private static volatile ByteBuffer kept;

    private Ctl() {
    }

    private static byte[] b(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    public static int init(String cfg, long tq) {
        if ("fail-init".equals(cfg)) {
            return 7;
        }
        if ("exit-init".equals(cfg)) {
            System.exit(9);
        }
        int threads = cfg == null || cfg.isEmpty() ? 4
                                                   : Integer.parseInt(cfg);
        Hotffi.serveTasks(tq, task -> handle(task, cfg), threads);
        return 0;
    }

    private static void handle(Task task, String cfg) throws Exception {
        String req = new String(task.request(), StandardCharsets.ISO_8859_1);
        int colon = req.indexOf(':');
        String cmd = colon < 0 ? req : req.substring(0, colon);
        String arg = colon < 0 ? "" : req.substring(colon + 1);
        byte[] raw = arg.getBytes(StandardCharsets.ISO_8859_1);

        switch (cmd) {
        case "echo":
            task.respond(0, raw);
            break;
        case "fail": {
            int c2 = arg.indexOf(':');
            task.respond(Integer.parseInt(arg.substring(0, c2)),
                arg.substring(c2 + 1).getBytes(StandardCharsets.ISO_8859_1));
            break;
        }
        case "error":
            task.respond(1, raw);
            break;
        case "null":
            task.respond(0, (byte[]) null);
            break;
        case "empty":
            task.respond(0, new byte[0]);
            break;
        case "sleep": {
            long end = System.nanoTime() + Long.parseLong(arg) * 1000000L;
            SLEEPING.incrementAndGet();
            try {
                while (System.nanoTime() < end) {
                    if (task.cancelled()) {
                        CANCELLED.incrementAndGet();
                        task.respond(0, b("cancelled"));
                        return;
                    }
                    Thread.sleep(5);
                }
            } finally {
                SLEEPING.decrementAndGet();
            }
            task.respond(0, b("slept"));
            break;
        }
        case "sleeping":
            task.respond(0, b(Integer.toString(SLEEPING.get())));
            break;
        case "cancelled":
            task.respond(0, b(Integer.toString(CANCELLED.get())));
            break;
        case "cfg":
            task.respond(0, cfg == null ? null : b(cfg));
            break;
        case "log": {
            String[] p = arg.split(":", 3);
            int n = Integer.parseInt(p[1]);
            for (int i = 1; i <= n; i++) {
                Hotffi.log(task.queue(), Integer.parseInt(p[0]),
                    p[2] + " " + i);
            }
            task.respond(0, b("logged " + n));
            break;
        }
        case "herror": {
            int c2 = arg.indexOf(':');
            throw new HotffiError(Integer.parseInt(arg.substring(0, c2)),
                arg.substring(c2 + 1));
        }
        case "throw":
            throw new IllegalStateException("thrown: " + arg);
        case "exit":
            System.exit(Integer.parseInt(arg));
            break;
        case "halt":
            Runtime.getRuntime().halt(Integer.parseInt(arg));
            break;
        case "setsm":
            setSecurityManager();
            break;
        case "threads":
        case "attached": {
            int n = 0;
            for (Thread t : Thread.getAllStackTraces().keySet()) {
                String name = t.getName();
                if (t.isAlive() && (cmd.equals("threads")
                                    ? name.startsWith("hotffi-j")
                                    : name.equals("hotffi"))) {
                    n++;
                }
            }
            task.respond(0, b(Integer.toString(n)));
            break;
        }
        case "buffer": {
            ByteBuffer buf = task.buffer();
            byte[] out = new byte[buf.remaining() - 7];
            buf.position(7);
            buf.get(out);
            task.respond(0, b(buf.isDirect() + " " + buf.isReadOnly() + " "
                + new String(out, StandardCharsets.ISO_8859_1)));
            break;
        }
        case "slice": {
            ByteBuffer buf = task.buffer();
            buf.position(6);
            task.respond(0, buf.slice());
            break;
        }
        case "keep":
            kept = task.buffer();
            task.respond(0, b("kept " + kept.remaining()));
            break;
        case "kept": {
            ByteBuffer k = kept;
            String what;
            try {
                what = "read " + k.get(0);
            } catch (IndexOutOfBoundsException e) {
                what = "revoked " + k.capacity() + " " + k.remaining();
            }
            task.respond(0, b(what));
            break;
        }
        default:
            task.respond(3, b("unknown command"));
        }
    }

    @SuppressWarnings("removal")
    private static void setSecurityManager() {
        System.setSecurityManager(new SecurityManager());
    }
}
