package dev.nimbus.lambda.runtime;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/** The Runtime API (2018-06-01) of this environment, over keep-alive HTTP/1.1. */
final class RuntimeApi {
    static final String USER_AGENT = "nimbus-lambda-java/" + System.getProperty("java.version");

    /** One event from /invocation/next. */
    static final class Invocation {
        String requestId;
        long deadlineMs;
        String functionArn;
        String traceId;
        String clientContext;
        String cognitoIdentity;
        String tenantId;
        byte[] payload;
    }

    private final String base;

    RuntimeApi(String address) {
        if (address == null || address.isEmpty()) {
            throw new IllegalStateException("AWS_LAMBDA_RUNTIME_API is not set");
        }
        this.base = "http://" + address + "/2018-06-01/runtime";
    }

    Invocation next() throws IOException {
        HttpURLConnection conn = open("/invocation/next");
        conn.setRequestMethod("GET");
        conn.setReadTimeout(0); // a long poll
        int status = conn.getResponseCode();
        if (status != 200) {
            drain(conn);
            throw new IOException("Received " + status + " when waiting for next invocation.");
        }
        Invocation inv = new Invocation();
        inv.requestId = conn.getHeaderField("Lambda-Runtime-Aws-Request-Id");
        String deadline = conn.getHeaderField("Lambda-Runtime-Deadline-Ms");
        inv.deadlineMs = deadline == null ? 0 : Long.parseLong(deadline.trim());
        inv.functionArn = conn.getHeaderField("Lambda-Runtime-Invoked-Function-Arn");
        inv.traceId = conn.getHeaderField("Lambda-Runtime-Trace-Id");
        inv.clientContext = conn.getHeaderField("Lambda-Runtime-Client-Context");
        inv.cognitoIdentity = conn.getHeaderField("Lambda-Runtime-Cognito-Identity");
        inv.tenantId = conn.getHeaderField("Lambda-Runtime-Aws-Tenant-Id");
        try (InputStream in = conn.getInputStream()) {
            inv.payload = in.readAllBytes();
        }
        return inv;
    }

    void respond(String requestId, byte[] body) throws IOException {
        post("/invocation/" + requestId + "/response", body, Map.of("Content-Type", "application/json"));
    }

    /** Posts an error document to /invocation/{id}/error or /init/error. */
    void error(String path, String errorType, byte[] body) throws IOException {
        post(path, body, Map.of("Content-Type", "application/json", "Lambda-Runtime-Function-Error-Type", errorType));
    }

    private HttpURLConnection open(String path) throws IOException {
        HttpURLConnection conn = (HttpURLConnection) new URL(base + path).openConnection();
        conn.setUseCaches(false);
        conn.setRequestProperty("User-Agent", USER_AGENT);
        return conn;
    }

    private void post(String path, byte[] body, Map<String, String> headers) throws IOException {
        HttpURLConnection conn = open(path);
        conn.setRequestMethod("POST");
        headers.forEach(conn::setRequestProperty);
        conn.setDoOutput(true);
        conn.setFixedLengthStreamingMode(body.length);
        try (OutputStream out = conn.getOutputStream()) {
            out.write(body);
        }
        int status = conn.getResponseCode();
        drain(conn);
        if (status != 202) {
            System.err.println("Runtime API answered " + status + " to POST " + path);
        }
    }

    /** Reads and closes the response so that the connection is reused. */
    private static void drain(HttpURLConnection conn) {
        try (InputStream in = conn.getResponseCode() >= 400 ? conn.getErrorStream() : conn.getInputStream()) {
            if (in != null) {
                in.readAllBytes();
            }
        } catch (IOException ignored) {
            // nothing to reuse
        }
    }

    /** A JSON string literal (for error documents, which must not depend on gson). */
    static String quote(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                case '\b': b.append("\\b"); break;
                case '\f': b.append("\\f"); break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        return b.append('"').toString();
    }

    /** {"errorMessage", "errorType"[, "stackTrace"]}: fields that are null are left out, as gson does on Lambda. */
    static byte[] errorDocument(String message, String type, String[] stackTrace) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        StringBuilder b = new StringBuilder("{");
        String sep = "";
        if (message != null) {
            b.append("\"errorMessage\":").append(quote(message));
            sep = ",";
        }
        if (type != null) {
            b.append(sep).append("\"errorType\":").append(quote(type));
            sep = ",";
        }
        if (stackTrace != null) {
            b.append(sep).append("\"stackTrace\":[");
            for (int i = 0; i < stackTrace.length; i++) {
                b.append(i == 0 ? "" : ",").append(quote(stackTrace[i]));
            }
            b.append(']');
        }
        b.append('}');
        byte[] bytes = b.toString().getBytes(StandardCharsets.UTF_8);
        out.write(bytes, 0, bytes.length);
        return out.toByteArray();
    }
}
