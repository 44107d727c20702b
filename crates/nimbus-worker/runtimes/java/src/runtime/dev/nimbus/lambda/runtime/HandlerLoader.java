package dev.nimbus.lambda.runtime;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import com.amazonaws.services.lambda.runtime.RequestStreamHandler;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.lang.reflect.TypeVariable;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Turns `_HANDLER` into something to call, with the rules of Lambda's Java runtime:
 *
 * <ul>
 *   <li>`pkg.Class`: the class implements RequestStreamHandler or RequestHandler&lt;I, O&gt;
 *       (with concrete type arguments);
 *   <li>`pkg.Class::method`: a public method named so, the longest signature first (a trailing
 *       Context counting one more), among (InputStream, OutputStream, Context), (InputStream,
 *       OutputStream), (InputStream, Context), (OutputStream, Context), (InputStream),
 *       (OutputStream), (Context), (T, Context), (T), (); static or on a new instance.
 * </ul>
 *
 * Faults that Lambda reports on the first invocation (class not found, no suitable method...)
 * come back as an Invoker that throws them; a fatal one (the class's static initializer or its
 * constructor threw) is thrown from {@link #load}, for Init to fail.
 */
final class HandlerLoader {
    private HandlerLoader() {}

    /** One invocation: the event's bytes in, the response's bytes out. */
    interface Invoker {
        byte[] call(byte[] event, Context context) throws Throwable;
    }

    private static final byte[] JSON_NULL = "null".getBytes(StandardCharsets.UTF_8);

    static Invoker load(String spec, ClassLoader loader) {
        int colons = spec.lastIndexOf("::");
        String className = colons < 0 ? spec : spec.substring(0, colons);
        String methodName = colons < 0 ? null : spec.substring(colons + 2);
        if (className.isEmpty() || (methodName != null && methodName.isEmpty())) {
            return failing(UserFault.of("Invalid handler: `" + spec + "'"));
        }
        Class<?> clazz;
        try {
            clazz = Class.forName(className, true, loader);
        } catch (ClassNotFoundException e) {
            return failing(UserFault.classNotFound(e, className));
        } catch (NoClassDefFoundError e) {
            return failing(UserFault.loadingClass(e, className, false));
        } catch (Throwable t) {
            throw UserFault.loadingClass(t, className, true);
        }
        Invoker invoker;
        try {
            invoker = methodName == null ? classHandler(clazz, loader) : methodHandler(clazz, methodName, loader);
        } catch (UserFault f) {
            if (f.fatal) {
                throw f;
            }
            return failing(f);
        }
        return invoker;
    }

    private static Invoker failing(UserFault fault) {
        return (event, context) -> {
            throw fault;
        };
    }

    private static Invoker classHandler(Class<?> clazz, ClassLoader loader) {
        if (RequestStreamHandler.class.isAssignableFrom(clazz)) {
            RequestStreamHandler h = (RequestStreamHandler) instantiate(clazz);
            return (event, context) -> {
                ByteArrayOutputStream out = new ByteArrayOutputStream(1024);
                h.handleRequest(new ByteArrayInputStream(event), out, context);
                return out.toByteArray();
            };
        }
        if (RequestHandler.class.isAssignableFrom(clazz)) {
            Type[] types = requestHandlerTypes(clazz, new HashMap<>());
            if (types == null) {
                throw UserFault.of("Class " + clazz.getName()
                        + " does not implement RequestHandler with concrete type parameters");
            }
            for (int i = 0; i < 2; i++) {
                if (types[i] instanceof TypeVariable) {
                    Type bound = concreteBound((TypeVariable<?>) types[i]);
                    if (bound == null) {
                        throw UserFault.of("Class " + clazz.getName()
                                + " does not implement RequestHandler with concrete type parameters: parameter "
                                + types[i] + " has no upper bound.");
                    }
                    types[i] = bound;
                }
            }
            @SuppressWarnings("unchecked")
            RequestHandler<Object, Object> h = (RequestHandler<Object, Object>) instantiate(clazz);
            return pojo(types[0], types[1], loader, h::handleRequest);
        }
        throw UserFault.of("Class does not implement an appropriate handler interface: " + clazz.getName());
    }

    private static Type concreteBound(TypeVariable<?> v) {
        for (Type b : v.getBounds()) {
            if (!Object.class.equals(b)) {
                return b;
            }
        }
        return null;
    }

    /** RequestHandler's type arguments as `type` binds them, or null where it is implemented raw. */
    private static Type[] requestHandlerTypes(Type type, Map<TypeVariable<?>, Type> outer) {
        Class<?> raw;
        Map<TypeVariable<?>, Type> env = new HashMap<>();
        if (type instanceof ParameterizedType) {
            ParameterizedType pt = (ParameterizedType) type;
            raw = (Class<?>) pt.getRawType();
            TypeVariable<?>[] vars = raw.getTypeParameters();
            Type[] args = pt.getActualTypeArguments();
            for (int i = 0; i < vars.length && i < args.length; i++) {
                Type a = args[i];
                env.put(vars[i], a instanceof TypeVariable && outer.containsKey(a) ? outer.get(a) : a);
            }
        } else if (type instanceof Class) {
            raw = (Class<?>) type;
        } else {
            return null;
        }
        if (raw == RequestHandler.class) {
            if (env.isEmpty()) {
                return null;
            }
            TypeVariable<?>[] vars = raw.getTypeParameters();
            return new Type[] {env.get(vars[0]), env.get(vars[1])};
        }
        for (Type i : raw.getGenericInterfaces()) {
            Type[] found = requestHandlerTypes(i, env);
            if (found != null) {
                return found;
            }
        }
        Type sup = raw.getGenericSuperclass();
        return sup == null ? null : requestHandlerTypes(sup, env);
    }

    private static Object instantiate(Class<?> clazz) {
        Constructor<?> ctor;
        try {
            ctor = clazz.getConstructor();
        } catch (NoSuchMethodException e) {
            Exception why = clazz.getEnclosingClass() != null && !Modifier.isStatic(clazz.getModifiers())
                    ? new Exception("Class " + clazz.getName()
                            + " cannot be instantiated because it is a non-static inner class")
                    : new Exception("Class " + clazz.getName() + " has no public zero-argument constructor", e);
            throw UserFault.of(why, false);
        }
        try {
            return ctor.newInstance();
        } catch (InvocationTargetException e) {
            throw UserFault.of(e.getCause() == null ? e : e.getCause(), true);
        } catch (ReflectiveOperationException e) {
            throw UserFault.of(e, false);
        }
    }

    private interface PojoCall {
        Object call(Object input, Context context) throws Throwable;
    }

    /** A handler taking and returning objects; inputType null: takes none; void outputType: returns none. */
    private static Invoker pojo(Type inputType, Type outputType, ClassLoader loader, PojoCall call) {
        Json.Serializer in = inputType == null ? null : Json.forType(inputType, loader);
        boolean isVoid = outputType == void.class || outputType == Void.class;
        Json.Serializer out = isVoid ? null : Json.forType(outputType, loader);
        return (event, context) -> {
            Object input = null;
            if (in != null) {
                try {
                    input = in.fromJson(new ByteArrayInputStream(event));
                } catch (Throwable t) {
                    throw new RuntimeException("An error occurred during JSON parsing", UserFault.filterStackTrace(t));
                }
            }
            Object result = call.call(input, context);
            if (out == null) {
                return JSON_NULL;
            }
            try {
                return Json.toBytes(out, result);
            } catch (Throwable t) {
                throw new RuntimeException("An error occurred during JSON serialization of response", t);
            }
        };
    }

    private static boolean isContext(Type t) {
        return Context.class.equals(t);
    }

    private static Invoker methodHandler(Class<?> clazz, String name, ClassLoader loader) {
        Method[] all;
        try {
            all = clazz.getMethods();
        } catch (NoClassDefFoundError e) {
            throw new UserFault("Error loading method " + name + " on class " + clazz.getName(),
                    e.getClass().getName(), UserFault.trace(e), false);
        }
        List<Method> candidates = new ArrayList<>();
        for (Method m : all) {
            if (m.getName().equals(name)) {
                candidates.add(m);
            }
        }
        candidates.sort((l, r) -> {
            if (l.isBridge() != r.isBridge()) {
                return l.isBridge() ? 1 : -1;
            }
            return Integer.compare(weight(r), weight(l));
        });
        for (Method m : candidates) {
            Invoker inv = forMethod(clazz, m, loader);
            if (inv != null) {
                return inv;
            }
        }
        throw UserFault.of("No public method named " + name + " with appropriate method signature found on class "
                + clazz.getName());
    }

    /** Parameter count, a trailing Context counting twice. */
    private static int weight(Method m) {
        Class<?>[] p = m.getParameterTypes();
        return p.length + (p.length > 0 && isContext(p[p.length - 1]) ? 1 : 0);
    }

    /** The invoker for one overload, or null when its signature is not a handler's. */
    private static Invoker forMethod(Class<?> clazz, Method m, ClassLoader loader) {
        Type r = m.getGenericReturnType();
        Type[] p = m.getGenericParameterTypes();
        switch (p.length) {
            case 0:
                return pojoMethod(clazz, m, null, r, false, loader);
            case 1:
                if (InputStream.class.equals(p[0])) {
                    return streamMethod(clazz, m, true, false, false);
                } else if (OutputStream.class.equals(p[0])) {
                    return streamMethod(clazz, m, false, true, false);
                } else if (isContext(p[0])) {
                    return pojoMethod(clazz, m, null, r, true, loader);
                }
                return pojoMethod(clazz, m, p[0], r, false, loader);
            case 2:
                if (OutputStream.class.equals(p[0])) {
                    if (isContext(p[1])) {
                        return streamMethod(clazz, m, false, true, true);
                    }
                    System.err.println("Ignoring two-argument overload because first argument type is OutputStream"
                            + " and second argument type is not Context");
                    return null;
                } else if (isContext(p[0])) {
                    System.err.println("Ignoring two-argument overload because first argument type is Context");
                    return null;
                } else if (InputStream.class.equals(p[0])) {
                    if (OutputStream.class.equals(p[1])) {
                        return streamMethod(clazz, m, true, true, false);
                    } else if (isContext(p[1])) {
                        return streamMethod(clazz, m, true, false, true);
                    }
                    System.err.println("Ignoring two-argument overload because second parameter type, "
                            + m.getParameterTypes()[1].getName() + ", is not OutputStream.");
                    return null;
                } else if (isContext(p[1])) {
                    return pojoMethod(clazz, m, p[0], r, true, loader);
                }
                System.err.println("Ignoring two-argument overload because second parameter type is not Context");
                return null;
            case 3:
                if (InputStream.class.equals(p[0]) && OutputStream.class.equals(p[1]) && isContext(p[2])) {
                    return streamMethod(clazz, m, true, true, true);
                }
                System.err.println("Ignoring three-argument overload because argument signature is not"
                        + " (InputStream, OutputStream, Context");
                return null;
            default:
                System.err.println("Ignoring an overload of method " + m.getName()
                        + " because it has too many parameters: Expected at most 3, got " + p.length);
                return null;
        }
    }

    private static Object target(Class<?> clazz, Method m) {
        return Modifier.isStatic(m.getModifiers()) ? null : instantiate(clazz);
    }

    private static Object invoke(Method m, Object target, Object[] args) throws Throwable {
        try {
            return m.invoke(target, args);
        } catch (InvocationTargetException e) {
            throw e.getCause() == null ? e : e.getCause();
        }
    }

    private static Invoker pojoMethod(Class<?> clazz, Method m, Type input, Type output, boolean context,
                                      ClassLoader loader) {
        Object target = target(clazz, m);
        m.setAccessible(true);
        int n = (input != null ? 1 : 0) + (context ? 1 : 0);
        return pojo(input, output, loader, (event, ctx) -> {
            Object[] args = new Object[n];
            int i = 0;
            if (input != null) {
                args[i++] = event;
            }
            if (context) {
                args[i] = ctx;
            }
            return invoke(m, target, args);
        });
    }

    private static Invoker streamMethod(Class<?> clazz, Method m, boolean in, boolean out, boolean context) {
        if (m.getReturnType() != void.class && m.getReturnType() != Void.class) {
            System.err.println("Will ignore return type " + m.getReturnType() + " on byte stream handler");
        }
        Object target = target(clazz, m);
        m.setAccessible(true);
        return (event, ctx) -> {
            ByteArrayOutputStream output = new ByteArrayOutputStream(1024);
            List<Object> args = new ArrayList<>(3);
            if (in) {
                args.add(new ByteArrayInputStream(event));
            }
            if (out) {
                args.add(output);
            }
            if (context) {
                args.add(ctx);
            }
            invoke(m, target, args.toArray());
            return out ? output.toByteArray() : JSON_NULL;
        };
    }
}
