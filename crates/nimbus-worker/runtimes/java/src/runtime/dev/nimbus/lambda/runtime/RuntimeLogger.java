package dev.nimbus.lambda.runtime;

import com.amazonaws.services.lambda.runtime.LambdaLogger;
import com.amazonaws.services.lambda.runtime.logging.LogFormat;
import com.amazonaws.services.lambda.runtime.logging.LogLevel;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;

/**
 * The LambdaLogger of Context#getLogger and LambdaRuntime#getLogger, as Lambda's Java runtime
 * writes it: in TEXT format a message is written as it is (no newline added), prefixed with
 * `[LEVEL] ` when logged with a level; in JSON format (AWS_LAMBDA_LOG_FORMAT=JSON) each message
 * is a line {"timestamp", "message", "level", "AWSRequestId"}. Levels below AWS_LAMBDA_LOG_LEVEL
 * are dropped; a message without a level never is.
 */
final class RuntimeLogger implements LambdaLogger {
    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'");

    final LogFormat format;
    private final LogLevel minimum;
    private final PrintStream out;
    private volatile String requestId;

    RuntimeLogger(PrintStream out) {
        this.out = out;
        this.format = parse(() -> LogFormat.fromString(env("AWS_LAMBDA_LOG_FORMAT", "TEXT")), LogFormat.TEXT);
        this.minimum = parse(() -> LogLevel.fromString(env("AWS_LAMBDA_LOG_LEVEL", "UNDEFINED")), LogLevel.UNDEFINED);
    }

    private static <T> T parse(java.util.function.Supplier<T> s, T dflt) {
        try {
            return s.get();
        } catch (IllegalArgumentException e) {
            return dflt;
        }
    }

    private static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    void setRequestId(String requestId) {
        this.requestId = requestId;
    }

    private boolean enabled(LogLevel level) {
        return level == LogLevel.UNDEFINED || level.ordinal() >= minimum.ordinal();
    }

    @Override
    public void log(String message) {
        log(message, LogLevel.UNDEFINED);
    }

    @Override
    public void log(byte[] message) {
        log(message, LogLevel.UNDEFINED);
    }

    @Override
    public void log(String message, LogLevel level) {
        if (!enabled(level)) {
            return;
        }
        String text;
        if (format == LogFormat.JSON) {
            JsonObject o = new JsonObject();
            o.addProperty("timestamp", ZonedDateTime.now(ZoneOffset.UTC).format(TIME));
            o.addProperty("message", message);
            o.addProperty("level", level.name());
            if (requestId != null) {
                o.addProperty("AWSRequestId", requestId);
            }
            text = o + "\n";
        } else {
            text = level == LogLevel.UNDEFINED ? String.valueOf(message) : "[" + level + "] " + message;
        }
        write(text.getBytes(StandardCharsets.UTF_8));
    }

    @Override
    public void log(byte[] message, LogLevel level) {
        if (enabled(level)) {
            write(message == null ? "null".getBytes(StandardCharsets.UTF_8) : message);
        }
    }

    private synchronized void write(byte[] bytes) {
        try {
            out.write(bytes);
            out.flush();
        } catch (IOException e) {
            e.printStackTrace();
        }
    }
}
