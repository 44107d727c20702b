package dev.nimbus.lambda;

import java.io.File;
import java.lang.reflect.InvocationTargetException;
import java.net.URL;
import java.net.URLClassLoader;
import java.util.ArrayList;
import java.util.List;

/**
 * Entry point of Nimbus's Java runtime.
 *
 * <p>The system class path holds only this launcher and the aws-lambda-java-core API
 * (com.amazonaws.services.lambda.runtime), so the function's classes, loaded by a child
 * class loader, see Lambda's interfaces first (as on Lambda) and nothing else of the runtime:
 * the runtime proper and its gson are loaded here by a sibling class loader, so a function may
 * bring its own gson (or anything else) without a clash.
 */
public final class Launcher {
    private Launcher() {}

    public static void main(String[] args) throws Throwable {
        File root = new File(Launcher.class.getProtectionDomain().getCodeSource().getLocation().toURI())
                .getParentFile();
        List<URL> urls = new ArrayList<>();
        urls.add(new File(root, "nimbus-lambda-runtime.jar").toURI().toURL());
        File gson = new File(root, "gson.jar");
        if (!gson.isFile()) {
            gson = new File("/usr/share/java/gson.jar");
        }
        urls.add(gson.toURI().toURL());
        ClassLoader runtime = new URLClassLoader(urls.toArray(new URL[0]),
                Launcher.class.getClassLoader());
        try {
            Class.forName("dev.nimbus.lambda.runtime.Main", true, runtime)
                    .getMethod("main", String[].class)
                    .invoke(null, (Object) args);
        } catch (InvocationTargetException e) {
            throw e.getCause();
        }
    }
}
