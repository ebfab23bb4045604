/*
 * ExitGuard.java -- keeps System.exit() and Runtime.halt() in a runtime
 * from ending the nginx worker that hosts the JVM: they throw a
 * SecurityException instead, which fails the call (or the init) that made
 * them.  It guards nothing else: every other permission is granted, and no
 * other security manager may replace it.  Installed once per JVM by
 * Host.guard().
 */
package io.hotffi;

import java.security.Permission;

@SuppressWarnings("removal")
final class ExitGuard extends SecurityManager {
    @Override
    public void checkExit(int status) {
        throw new SecurityException("System.exit/Runtime.halt(" + status
            + ") refused: a runtime cannot end the nginx worker");
    }

    @Override
    public void checkPermission(Permission p) {
        if ("setSecurityManager".equals(p.getName())) {
            throw new SecurityException("hotffi's exit guard is the JVM's "
                + "security manager and stays so");
        }
    }

    @Override
    public void checkPermission(Permission p, Object context) {
        checkPermission(p);
    }
}
