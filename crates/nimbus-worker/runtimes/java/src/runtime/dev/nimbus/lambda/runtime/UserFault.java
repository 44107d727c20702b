package dev.nimbus.lambda.runtime;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Set;

/**
 * A fault in the function's code or packaging (bad handler, class not found, a throwing
 * constructor), reported as Lambda's Java runtime does: `Runtime.BadFunctionCode`, a body of
 * {"errorMessage", "errorType"} without a stack trace. A fatal one stops Init.
 */
final class UserFault extends RuntimeException {
    private static final long serialVersionUID = 1L;
    /** Frames from here on down are the runtime's own, and are cut from reported traces. */
    static final String RUNTIME_PACKAGE = "dev.nimbus.lambda.";

    final String msg;
    /** The exception's class name; null for a fault with no exception behind it. */
    final String exception;
    final String trace;
    final boolean fatal;

    UserFault(String msg, String exception, String trace, boolean fatal) {
        super(msg, null, false, false);
        this.msg = msg;
        this.exception = exception;
        this.trace = trace;
        this.fatal = fatal;
    }

    static UserFault of(String msg) {
        return new UserFault(msg, null, null, false);
    }

    static UserFault of(Throwable t, boolean fatal) {
        if (t instanceof UserFault) {
            return (UserFault) t;
        }
        return new UserFault(message(t), t.getClass().getName(), trace(t), fatal);
    }

    static UserFault loadingClass(Throwable t, String className, boolean fatal) {
        return new UserFault("Error loading class " + className + (t.getMessage() == null ? "" : ": " + t.getMessage()),
                t.getClass().getName(), trace(t), fatal);
    }

    static UserFault classNotFound(Throwable t, String className) {
        return new UserFault("Class not found: " + className, t.getClass().getName(), trace(t), false);
    }

    /** A throwable's message as Lambda reports it: its class name when it has none. */
    static String message(Throwable t) {
        String m = t.getLocalizedMessage();
        return m == null ? t.getClass().getName() : m;
    }

    static String trace(Throwable t) {
        filterStackTrace(t);
        StringWriter sw = new StringWriter();
        t.printStackTrace(new PrintWriter(sw));
        return sw.toString();
    }

    /** Cuts the runtime's frames (and everything below them) from t, its causes and suppressed. */
    static <T extends Throwable> T filterStackTrace(T t) {
        filter(t, Collections.newSetFromMap(new IdentityHashMap<>()));
        return t;
    }

    private static void filter(Throwable t, Set<Throwable> seen) {
        if (t == null || !seen.add(t)) {
            return;
        }
        StackTraceElement[] trace = t.getStackTrace();
        for (int i = 0; i < trace.length; i++) {
            if (trace[i].getClassName().startsWith(RUNTIME_PACKAGE)) {
                StackTraceElement[] cut = new StackTraceElement[i];
                System.arraycopy(trace, 0, cut, 0, i);
                t.setStackTrace(cut);
                break;
            }
        }
        filter(t.getCause(), seen);
        for (Throwable s : t.getSuppressed()) {
            filter(s, seen);
        }
    }

    /** The text logged for the fault: `msg: exception\ntrace\n`, or `msg\n`. */
    String reportable() {
        if (exception != null || trace != null) {
            return String.format("%s: %s%n%s%n", msg, exception == null ? "" : exception, trace == null ? "" : trace);
        }
        return msg + "\n";
    }
}
