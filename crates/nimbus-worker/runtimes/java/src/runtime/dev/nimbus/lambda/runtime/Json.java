package dev.nimbus.lambda.runtime;

import com.amazonaws.services.lambda.runtime.CustomPojoSerializer;
import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.ToNumberStrategy;
import com.google.gson.TypeAdapter;
import com.google.gson.TypeAdapterFactory;
import com.google.gson.reflect.TypeToken;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonWriter;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.lang.reflect.Type;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;

/**
 * JSON (de)serialization of RequestHandler events and results, with gson configured to read
 * and write what Lambda's Jackson-based serializer does where it matters: lenient input
 * (single quotes, unquoted names), unknown properties ignored, property names matched
 * case-insensitively when no field has the exact name (e.g. `Records`, `eventSourceARN` in
 * aws-lambda-java-events classes), numbers in untyped values (Object, Map&lt;String, Object&gt;)
 * as Integer, Long or BigInteger when integral and Double otherwise, nulls left out of
 * objects, no HTML escaping. A function's CustomPojoSerializer (ServiceLoader) replaces it.
 */
final class Json {
    private Json() {}

    /** Reads and writes one declared type. */
    interface Serializer {
        Object fromJson(InputStream in) throws IOException;

        void toJson(Object value, OutputStream out) throws IOException;
    }

    private static volatile Gson gson;
    private static volatile boolean customLoaded;
    private static CustomPojoSerializer custom;

    static Gson gson() {
        Gson g = gson;
        if (g == null) {
            g = new GsonBuilder()
                    .disableHtmlEscaping()
                    .serializeSpecialFloatingPointValues()
                    .setObjectToNumberStrategy(JACKSON_NUMBERS)
                    .registerTypeAdapterFactory(new CaseInsensitiveProperties())
                    .create();
            gson = g;
        }
        return g;
    }

    /** Integral numbers as the smallest of Integer, Long, BigInteger; others as Double (Jackson's defaults). */
    private static final ToNumberStrategy JACKSON_NUMBERS = in -> {
        String s = in.nextString();
        if (s.indexOf('.') < 0 && s.indexOf('e') < 0 && s.indexOf('E') < 0) {
            try {
                long l = Long.parseLong(s);
                if (l >= Integer.MIN_VALUE && l <= Integer.MAX_VALUE) {
                    return (int) l;
                }
                return l;
            } catch (NumberFormatException e) {
                try {
                    return new BigInteger(s);
                } catch (NumberFormatException e2) {
                    // NaN, Infinity: fall through
                }
            }
        }
        double d = Double.parseDouble(s);
        if (Double.isInfinite(d) && !s.toLowerCase().contains("inf")) {
            return new BigDecimal(s);
        }
        return d;
    };

    static synchronized CustomPojoSerializer customSerializer(ClassLoader loader) {
        if (!customLoaded) {
            customLoaded = true;
            Iterator<CustomPojoSerializer> it = ServiceLoader.load(CustomPojoSerializer.class, loader).iterator();
            if (it.hasNext()) {
                custom = it.next();
                if (it.hasNext()) {
                    throw new IllegalStateException(
                            "Too many serializers provided inside the META-INF/services folder, only one is allowed");
                }
            }
        }
        return custom;
    }

    static Serializer forType(Type type, ClassLoader loader) {
        CustomPojoSerializer c = customSerializer(loader);
        if (c != null) {
            return new Serializer() {
                public Object fromJson(InputStream in) {
                    return c.fromJson(in, type);
                }

                public void toJson(Object value, OutputStream out) {
                    c.toJson(value, out, type);
                }
            };
        }
        Gson g = gson();
        TypeAdapter<?> adapter = g.getAdapter(TypeToken.get(type));
        return new Serializer() {
            public Object fromJson(InputStream in) throws IOException {
                JsonReader reader = new JsonReader(new InputStreamReader(in, StandardCharsets.UTF_8));
                reader.setLenient(true);
                return adapter.read(reader);
            }

            public void toJson(Object value, OutputStream out) throws IOException {
                Writer w = new OutputStreamWriter(out, StandardCharsets.UTF_8);
                if (value == null) {
                    w.write("null");
                } else {
                    // The value's own class, so that subclasses (and Object-typed results) keep their fields.
                    g.toJson(value, value.getClass(), g.newJsonWriter(w));
                }
                w.flush();
            }
        };
    }

    /** For a bean class: JSON object keys with no field of that exact name are matched ignoring case. */
    private static final class CaseInsensitiveProperties implements TypeAdapterFactory {
        @Override
        public <T> TypeAdapter<T> create(Gson gson, TypeToken<T> type) {
            Class<?> raw = type.getRawType();
            if (raw.isPrimitive() || raw.isArray() || raw.isEnum() || raw.isInterface()
                    || Modifier.isAbstract(raw.getModifiers()) || Map.class.isAssignableFrom(raw)
                    || Collection.class.isAssignableFrom(raw) || JsonElement.class.isAssignableFrom(raw)
                    || raw.getName().startsWith("java.") || raw.getName().startsWith("javax.")
                    || raw.getName().startsWith("com.google.gson.")) {
                return null;
            }
            Map<String, String> names = new HashMap<>();
            List<String> exact = new ArrayList<>();
            for (Class<?> c = raw; c != null && c != Object.class; c = c.getSuperclass()) {
                for (Field f : c.getDeclaredFields()) {
                    if (Modifier.isStatic(f.getModifiers()) || Modifier.isTransient(f.getModifiers())) {
                        continue;
                    }
                    String name = f.getName();
                    com.google.gson.annotations.SerializedName sn =
                            f.getAnnotation(com.google.gson.annotations.SerializedName.class);
                    if (sn != null) {
                        name = sn.value();
                    }
                    exact.add(name);
                    names.putIfAbsent(name.toLowerCase(), name);
                }
            }
            if (exact.isEmpty()) {
                return null;
            }
            TypeAdapter<T> delegate = gson.getDelegateAdapter(this, type);
            return new TypeAdapter<T>() {
                @Override
                public void write(JsonWriter out, T value) throws IOException {
                    delegate.write(out, value);
                }

                @Override
                public T read(JsonReader in) throws IOException {
                    JsonElement tree = JsonParser.parseReader(in);
                    if (tree.isJsonObject()) {
                        JsonObject obj = tree.getAsJsonObject();
                        JsonObject renamed = null;
                        for (Map.Entry<String, JsonElement> e : obj.entrySet()) {
                            if (rename(e.getKey(), obj) != null) {
                                renamed = new JsonObject();
                                break;
                            }
                        }
                        if (renamed != null) {
                            for (Map.Entry<String, JsonElement> e : obj.entrySet()) {
                                String to = rename(e.getKey(), obj);
                                renamed.add(to != null ? to : e.getKey(), e.getValue());
                            }
                            tree = renamed;
                        }
                    }
                    return delegate.fromJsonTree(tree);
                }

                /** The field a key stands for when no field has the key's exact name. */
                private String rename(String key, JsonObject obj) {
                    if (exact.contains(key)) {
                        return null;
                    }
                    String match = names.get(key.toLowerCase());
                    return match != null && !obj.has(match) ? match : null;
                }
            };
        }
    }

    static byte[] toBytes(Serializer s, Object value) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        s.toJson(value, out);
        return out.toByteArray();
    }
}
