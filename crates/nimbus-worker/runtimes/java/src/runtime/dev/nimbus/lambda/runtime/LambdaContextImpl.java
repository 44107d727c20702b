package dev.nimbus.lambda.runtime;

import com.amazonaws.services.lambda.runtime.Client;
import com.amazonaws.services.lambda.runtime.ClientContext;
import com.amazonaws.services.lambda.runtime.CognitoIdentity;
import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.LambdaLogger;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.util.LinkedHashMap;
import java.util.Map;

/** The Context handed to handlers. */
final class LambdaContextImpl implements Context {
    static final int MEMORY_LIMIT = parseInt(System.getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), 128);
    static final String LOG_GROUP_NAME = System.getenv("AWS_LAMBDA_LOG_GROUP_NAME");
    static final String LOG_STREAM_NAME = System.getenv("AWS_LAMBDA_LOG_STREAM_NAME");
    static final String FUNCTION_NAME = System.getenv("AWS_LAMBDA_FUNCTION_NAME");
    static final String FUNCTION_VERSION = System.getenv("AWS_LAMBDA_FUNCTION_VERSION");

    private final RuntimeApi.Invocation inv;
    private final CognitoIdentity identity;
    private final ClientContext clientContext;
    private final LambdaLogger logger;

    LambdaContextImpl(RuntimeApi.Invocation inv, LambdaLogger logger) {
        this.inv = inv;
        this.logger = logger;
        this.identity = cognito(inv.cognitoIdentity);
        this.clientContext = clientContext(inv.clientContext);
    }

    private static int parseInt(String s, int dflt) {
        try {
            return s == null ? dflt : Integer.parseInt(s.trim());
        } catch (NumberFormatException e) {
            return dflt;
        }
    }

    private static JsonObject object(String json) {
        if (json == null || json.isEmpty()) {
            return null;
        }
        try {
            JsonElement e = JsonParser.parseString(json);
            return e.isJsonObject() ? e.getAsJsonObject() : null;
        } catch (RuntimeException e) {
            return null;
        }
    }

    private static String str(JsonObject o, String key) {
        if (o == null) {
            return null;
        }
        JsonElement e = o.get(key);
        return e == null || e.isJsonNull() ? null : e.isJsonPrimitive() ? e.getAsString() : e.toString();
    }

    private static Map<String, String> map(JsonObject o, String key) {
        JsonElement e = o == null ? null : o.get(key);
        if (e == null || !e.isJsonObject()) {
            return null;
        }
        Map<String, String> m = new LinkedHashMap<>();
        for (Map.Entry<String, JsonElement> en : e.getAsJsonObject().entrySet()) {
            JsonElement v = en.getValue();
            m.put(en.getKey(), v.isJsonNull() ? null : v.isJsonPrimitive() ? v.getAsString() : v.toString());
        }
        return m;
    }

    private static CognitoIdentity cognito(String json) {
        JsonObject o = object(json);
        if (o == null) {
            return null;
        }
        String id = str(o, "cognitoIdentityId");
        String pool = str(o, "cognitoIdentityPoolId");
        return new CognitoIdentity() {
            public String getIdentityId() {
                return id;
            }

            public String getIdentityPoolId() {
                return pool;
            }
        };
    }

    private static ClientContext clientContext(String json) {
        JsonObject o = object(json);
        if (o == null) {
            return null;
        }
        JsonElement c = o.get("client");
        JsonObject co = c != null && c.isJsonObject() ? c.getAsJsonObject() : null;
        Client client = co == null ? null : new Client() {
            public String getInstallationId() {
                return str(co, "installation_id");
            }

            public String getAppTitle() {
                return str(co, "app_title");
            }

            public String getAppVersionName() {
                return str(co, "app_version_name");
            }

            public String getAppVersionCode() {
                return str(co, "app_version_code");
            }

            public String getAppPackageName() {
                return str(co, "app_package_name");
            }
        };
        Map<String, String> custom = map(o, "custom");
        Map<String, String> env = map(o, "env");
        return new ClientContext() {
            public Client getClient() {
                return client;
            }

            public Map<String, String> getCustom() {
                return custom;
            }

            public Map<String, String> getEnvironment() {
                return env;
            }
        };
    }

    public String getAwsRequestId() {
        return inv.requestId;
    }

    public String getLogGroupName() {
        return LOG_GROUP_NAME;
    }

    public String getLogStreamName() {
        return LOG_STREAM_NAME;
    }

    public String getFunctionName() {
        return FUNCTION_NAME;
    }

    public String getFunctionVersion() {
        return FUNCTION_VERSION;
    }

    public String getInvokedFunctionArn() {
        return inv.functionArn;
    }

    public CognitoIdentity getIdentity() {
        return identity;
    }

    public ClientContext getClientContext() {
        return clientContext;
    }

    public int getRemainingTimeInMillis() {
        long delta = inv.deadlineMs - System.currentTimeMillis();
        return delta > 0 ? (int) Math.min(delta, Integer.MAX_VALUE) : 0;
    }

    public int getMemoryLimitInMB() {
        return MEMORY_LIMIT;
    }

    public LambdaLogger getLogger() {
        return logger;
    }

    public String getTenantId() {
        return inv.tenantId;
    }

    public String getXrayTraceId() {
        return inv.traceId;
    }
}
