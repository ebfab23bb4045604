/*
 * Host.java -- what libhotffi_java.so calls in Java: load a runtime's class
 * (a fresh class loader for "Class?"), run its init, its retire, and join
 * its threads, and guard the worker from System.exit().  Not an API:
 * runtimes use Hotffi.
 */
package io.hotffi;

import java.io.File;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.MalformedURLException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

final class Host {
    /* the loader of each classpath for classes loaded without '?' */
    private static final Map<String, ClassLoader> SHARED =
        new ConcurrentHashMap<>();

    private Host() {
    }

    private static String str(byte[] b) {
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    private static URL[] urls(String classpath) throws MalformedURLException {
        List<URL> out = new ArrayList<>();
        for (String p : classpath.split(File.pathSeparator)) {
            if (!p.isEmpty()) {
                out.add(new File(p).getAbsoluteFile().toURI().toURL());
            }
        }
        return out.toArray(new URL[0]);
    }

    /* the class name, through a new loader when fresh ('?'), which reads
       the class's package (and those below it) from classpath anew */
    static Class<?> load(byte[] classpath, byte[] name, boolean fresh)
        throws Exception {
        String cp = str(classpath);
        String cls = str(name);
        ClassLoader parent = Host.class.getClassLoader();
        ClassLoader loader;

        if (fresh) {
            int dot = cls.lastIndexOf('.');
            loader = new HotffiLoader(urls(cp),
                dot < 0 ? "" : cls.substring(0, dot), parent);
        } else {
            loader = SHARED.computeIfAbsent(cp, k -> {
                try {
                    return new HotffiLoader(urls(k), null, parent);
                } catch (MalformedURLException e) {
                    throw new IllegalArgumentException(e);
                }
            });
        }
        return Class.forName(cls, true, loader);
    }

    private static Method method(Class<?> c, String name, Class<?>... args)
        throws NoSuchMethodException {
        Method m = c.getDeclaredMethod(name, args);
        if (!Modifier.isStatic(m.getModifiers())) {
            throw new NoSuchMethodException(c.getName() + "." + name
                + " is not static");
        }
        m.setAccessible(true);
        return m;
    }

    private static Object invoke(Method m, Object... args) throws Throwable {
        try {
            return m.invoke(null, args);
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
    }

    /* static int method(String cfg, long tq), with the runtime's loader as
       the context loader of the threads it starts */
    static int init(Class<?> c, byte[] name, byte[] cfg, long tq)
        throws Throwable {
        Method m = method(c, str(name), String.class, long.class);
        if (m.getReturnType() != int.class) {
            throw new NoSuchMethodException(c.getName() + "." + str(name)
                + " must return int");
        }
        Thread self = Thread.currentThread();
        ClassLoader before = self.getContextClassLoader();
        self.setContextClassLoader(c.getClassLoader());
        try {
            return (Integer) invoke(m, str(cfg), tq);
        } finally {
            self.setContextClassLoader(before);
        }
    }

    /* static byte[] retire(long tq), if the class has one; null if not */
    static byte[] retire(Class<?> c, long tq) throws Throwable {
        Method m;
        try {
            m = method(c, "retire", long.class);
        } catch (NoSuchMethodException e) {
            return null;
        }
        Object r = invoke(m, tq);
        if (r != null && !(r instanceof byte[])) {
            throw new ClassCastException("retire() must return byte[], not "
                + r.getClass().getName());
        }
        return (byte[]) r;
    }

    static void join(long tq) throws InterruptedException {
        Hotffi.join(tq);
    }

    /* installs the exit guard; false where this JDK cannot (18 and later
       without -Djava.security.manager=allow, 24 and later at all) */
    @SuppressWarnings("removal")
    static boolean guard() {
        try {
            System.setSecurityManager(new ExitGuard());
            return true;
        } catch (UnsupportedOperationException e) {
            return false;
        }
    }

    static byte[] trace(Throwable e) {
        return Hotffi.trace(e).getBytes(StandardCharsets.UTF_8);
    }
}
