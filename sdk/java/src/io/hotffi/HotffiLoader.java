/*
 * HotffiLoader.java -- the class loader of a runtime loaded as "Class?":
 * child-first for the class's package (and those below it), so that each
 * load reads them from disk anew; parent-first for the rest (the JDK,
 * io.hotffi, libraries on CLASSPATH).
 */
package io.hotffi;

import java.net.URL;
import java.net.URLClassLoader;

final class HotffiLoader extends URLClassLoader {
    static {
        registerAsParallelCapable();
    }

    private final String pkg;   /* null: parent-first for everything */

    HotffiLoader(URL[] urls, String pkg, ClassLoader parent) {
        super(urls, parent);
        this.pkg = pkg;
    }

    private boolean own(String name) {
        if (pkg == null || name.startsWith("io.hotffi.")
            || name.startsWith("java.")) {
            return false;
        }
        return pkg.isEmpty() ? name.indexOf('.') < 0
                             : name.startsWith(pkg + ".");
    }

    @Override
    protected Class<?> loadClass(String name, boolean resolve)
        throws ClassNotFoundException {
        if (!own(name)) {
            return super.loadClass(name, resolve);
        }
        synchronized (getClassLoadingLock(name)) {
            Class<?> c = findLoadedClass(name);
            if (c == null) {
                try {
                    c = findClass(name);
                } catch (ClassNotFoundException e) {
                    return super.loadClass(name, resolve);
                }
            }
            if (resolve) {
                resolveClass(c);
            }
            return c;
        }
    }
}
