package dev.nimbus.lambda.runtime;

import com.amazonaws.services.lambda.runtime.LambdaLogger;
import com.amazonaws.services.lambda.runtime.LambdaRuntime;
import com.amazonaws.services.lambda.runtime.logging.LogFormat;
import com.amazonaws.services.lambda.runtime.logging.LogLevel;
import java.io.File;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOError;
import java.io.PrintStream;
import java.lang.reflect.Field;
import java.net.MalformedURLException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Nimbus's Java runtime: loads the function's handler and serves invocations over the Runtime
 * API (2018-06-01), as Lambda's Java runtime interface client does.
 *
 * <p>The function's classes come from a class loader over LAMBDA_TASK_ROOT (/var/task), its
 * lib/*.jar and /opt/java/lib/*.jar (layers), each directory's jars in lexical order, whose
 * parent is the system class loader (so the aws-lambda-java-core API is the runtime's own).
 * Errors are posted as {"errorMessage", "errorType" (the exception's class), "stackTrace"
 * (frames as StackTraceElement#toString)} with Lambda-Runtime-Function-Error-Type
 * Runtime.UserException; faults in the function's packaging as {"errorMessage", "errorType"}
 * with Runtime.BadFunctionCode. The X-Ray trace header is the system property
 * com.amazonaws.xray.traceHeader during an invocation.
 */
public final class Main {
    private static final String TRACE_PROPERTY = "com.amazonaws.xray.traceHeader";

    private Main() {}

    public static void main(String[] args) throws Exception {
        PrintStream stdout = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        PrintStream stderr = new PrintStream(new FileOutputStream(FileDescriptor.err), true, StandardCharsets.UTF_8);
        System.setOut(stdout);
        System.setErr(stderr);
        RuntimeLogger logger = new RuntimeLogger(stdout);
        installLogger(logger);

        String handler = args.length > 0 ? args[0] : System.getenv("_HANDLER");
        RuntimeApi api = new RuntimeApi(System.getenv("AWS_LAMBDA_RUNTIME_API"));
        String taskRoot = System.getenv("LAMBDA_TASK_ROOT");
        if (taskRoot == null || taskRoot.isEmpty()) {
            taskRoot = System.getProperty("user.dir");
        }
        ClassLoader customer = new URLClassLoader(classPath(taskRoot, "/opt/java"),
                ClassLoader.getSystemClassLoader());
        Thread.currentThread().setContextClassLoader(customer);

        HandlerLoader.Invoker invoker;
        try {
            invoker = HandlerLoader.load(handler == null ? "" : handler, customer);
        } catch (UserFault fault) {
            logger.log(fault.reportable(), logLevel(logger));
            api.error("/init/error", "Runtime.BadFunctionCode",
                    RuntimeApi.errorDocument(fault.msg, fault.exception, null));
            System.exit(1);
            return;
        }

        while (true) {
            RuntimeApi.Invocation inv = api.next();
            if (inv.traceId != null && !inv.traceId.isEmpty()) {
                System.setProperty(TRACE_PROPERTY, inv.traceId);
            } else {
                System.clearProperty(TRACE_PROPERTY);
            }
            logger.setRequestId(inv.requestId);
            byte[] response;
            try {
                response = invoker.call(inv.payload, new LambdaContextImpl(inv, logger));
            } catch (Throwable t) {
                if (report(api, logger, inv.requestId, t)) {
                    System.exit(1);
                }
                continue;
            } finally {
                Thread.interrupted(); // a flag the handler left set must not break the next poll
            }
            api.respond(inv.requestId, response);
        }
    }

    private static LogLevel logLevel(RuntimeLogger logger) {
        return logger.format == LogFormat.JSON ? LogLevel.ERROR : LogLevel.UNDEFINED;
    }

    /** Posts the invocation's error and logs it; true when the runtime must stop. */
    private static boolean report(RuntimeApi api, RuntimeLogger logger, String requestId, Throwable t)
            throws java.io.IOException {
        UserFault.filterStackTrace(t);
        UserFault fault = UserFault.of(t, false);
        byte[] body;
        String type;
        if (t instanceof UserFault) {
            body = RuntimeApi.errorDocument(fault.msg, fault.exception, null);
            type = "Runtime.BadFunctionCode";
        } else {
            StackTraceElement[] frames = t.getStackTrace();
            String[] trace = new String[frames.length];
            for (int i = 0; i < frames.length; i++) {
                trace[i] = frames[i].toString();
            }
            body = RuntimeApi.errorDocument(UserFault.message(t), t.getClass().getName(), trace);
            type = "Runtime.UserException";
        }
        // Logged before the error is posted (Lambda logs it just after), so that the log line
        // lands in this invocation's log even where the platform closes it at the reply.
        logger.log(fault.reportable(), logLevel(logger));
        api.error("/invocation/" + requestId + "/error", type, body);
        return t instanceof VirtualMachineError || t instanceof IOError || fault.fatal;
    }

    /** LambdaRuntime.getLogger() answers the runtime's logger, as on Lambda. */
    private static void installLogger(LambdaLogger logger) {
        try {
            Field f = LambdaRuntime.class.getDeclaredField("logger");
            f.setAccessible(true);
            f.set(null, logger);
        } catch (ReflectiveOperationException e) {
            System.err.println("Could not install the Lambda logger: " + e);
        }
    }

    /** LAMBDA_TASK_ROOT/, LAMBDA_TASK_ROOT/lib/*.jar, /opt/java/lib/*.jar, as Lambda's runtime lists them. */
    static URL[] classPath(String taskRoot, String optRoot) throws MalformedURLException {
        List<URL> urls = new ArrayList<>();
        urls.add(new File(taskRoot).toURI().toURL());
        jars(new File(taskRoot, "lib"), urls);
        jars(new File(optRoot, "lib"), urls);
        return urls.toArray(new URL[0]);
    }

    private static void jars(File dir, List<URL> urls) throws MalformedURLException {
        String[] names = dir.list((d, n) -> n.length() > 4 && n.endsWith(".jar"));
        if (names == null) {
            return;
        }
        Arrays.sort(names);
        for (String n : names) {
            urls.add(new File(dir, n).toURI().toURL());
        }
    }
}
