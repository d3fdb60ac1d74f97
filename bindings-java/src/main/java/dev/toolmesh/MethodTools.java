package dev.toolmesh;

import com.fasterxml.jackson.databind.JavaType;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.Parameter;
import java.lang.reflect.ParameterizedType;
import java.lang.reflect.Type;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;

/** Reads {@link MeshTool} methods into tool definitions. */
final class MethodTools {
    private MethodTools() {}

    /** The tools of {@code target}: its {@link MeshTool} methods, inherited ones included; empty when it has none. */
    static List<ToolDefinition> of(Object target) {
        List<ToolDefinition> tools = new ArrayList<>();
        Set<String> seen = new HashSet<>();
        for (Class<?> type = target.getClass(); type != null && type != Object.class; type = type.getSuperclass()) {
            for (Method method : type.getDeclaredMethods()) {
                MeshTool annotation = method.getAnnotation(MeshTool.class);
                // An overriding method hides the one it overrides.
                if (annotation != null && seen.add(method.getName() + Arrays.toString(method.getParameterTypes()))) {
                    tools.add(define(target, method, annotation));
                }
            }
        }
        return tools;
    }

    private static ToolDefinition define(Object target, Method method, MeshTool annotation) {
        String name = annotation.name().isEmpty() ? method.getName() : annotation.name();
        ToolDefinition.Builder builder = ToolDefinition.builder(name)
                .version(annotation.version())
                .tags(annotation.tags())
                .description(annotation.description())
                .timeoutMs(annotation.timeoutMs());
        if (!annotation.capability().isEmpty()) {
            builder.capability(annotation.capability());
        }
        if (annotation.readOnlyHint()) {
            builder.readOnlyHint(true);
        }
        if (annotation.idempotentHint()) {
            builder.idempotentHint(true);
        }
        if (annotation.outputSchema() != void.class) {
            builder.outputSchema(annotation.outputSchema());
        }
        builder.requiresClientCapabilities(annotation.requiredClientCapabilities());
        if (!annotation.taskSupport().isEmpty()) {
            builder.taskSupport(annotation.taskSupport());
        }
        List<String> capabilities = new ArrayList<>(List.of(annotation.dependencies()));
        for (String capability : annotation.dependencies()) {
            builder.dependsOn(capability);
        }
        for (Dependency selector : annotation.selectors()) {
            builder.dependsOn(selector.capability(), selector.version(), selector.tags());
            capabilities.add(selector.capability());
        }

        Parameter[] parameters = method.getParameters();
        if (parameters.length > 0 && !parameters[0].isNamePresent()) {
            throw new IllegalArgumentException("toolmesh cannot see the parameter names of " + signature(method)
                    + ": compile with -parameters (maven-compiler-plugin <parameters>true</parameters>;"
                    + " Gradle options.compilerArgs += '-parameters')");
        }
        Argument[] arguments = new Argument[parameters.length];
        List<Parameter> proxies = Arrays.stream(parameters).filter(p -> p.getType() == MeshProxy.class).toList();
        int[] dependencyOf = assignDependencies(method, name, proxies, capabilities);
        int proxyIndex = 0;
        for (int i = 0; i < parameters.length; i++) {
            Parameter parameter = parameters[i];
            if (parameter.getType() == MeshProxy.class) {
                arguments[i] = Argument.proxy(dependencyOf[proxyIndex++]);
                continue;
            }
            Type optionalOf = optionalContent(parameter.getParameterizedType());
            Type valueType = optionalOf != null ? optionalOf : parameter.getParameterizedType();
            if (optionalOf != null) {
                builder.optionalParameter(parameter.getName(), valueType);
            } else {
                builder.parameter(parameter.getName(), valueType);
            }
            arguments[i] = Argument.value(parameter.getName(), Json.MAPPER.constructType(valueType), optionalOf != null);
        }

        if (!Modifier.isPublic(method.getModifiers()) || !Modifier.isPublic(method.getDeclaringClass().getModifiers())) {
            // Reflection from this package needs it; in a named module, open the package to dev.toolmesh.
            method.setAccessible(true);
        }
        Object receiver = Modifier.isStatic(method.getModifiers()) ? null : target;
        return builder.handler(call -> invoke(method, receiver, arguments, (Invocation) call)).build();
    }

    private static Object invoke(Method method, Object receiver, Argument[] arguments, Invocation call) throws Exception {
        Object[] values = new Object[arguments.length];
        for (int i = 0; i < arguments.length; i++) {
            values[i] = arguments[i].from(call);
        }
        try {
            return method.invoke(receiver, values);
        } catch (InvocationTargetException e) {
            if (e.getCause() instanceof Exception thrown) {
                throw thrown;
            }
            throw e;
        }
    }

    /**
     * Which dependency each {@link MeshProxy} parameter receives, by core's rule for every
     * language: a parameter named like a declared capability gets that dependency; the others take
     * the remaining ones in declaration order.
     */
    private static int[] assignDependencies(Method method, String tool, List<Parameter> proxies, List<String> capabilities) {
        int[] assigned = Native.assignProxyParameters(
                proxies.stream().map(Parameter::getName).toArray(String[]::new), capabilities.toArray(String[]::new));
        if (assigned == null) {
            throw new IllegalArgumentException("tool '" + tool + "' (" + signature(method) + ") has " + proxies.size()
                    + " MeshProxy parameters but declares " + capabilities.size()
                    + " dependencies; add them with @MeshTool(dependencies = {...})");
        }
        return assigned;
    }

    /** {@code T} of an {@code Optional<T>} parameter, else null. */
    private static Type optionalContent(Type type) {
        if (type instanceof ParameterizedType parameterized && parameterized.getRawType() == Optional.class) {
            return parameterized.getActualTypeArguments()[0];
        }
        return type == Optional.class ? Object.class : null;
    }

    private static String signature(Method method) {
        return method.getDeclaringClass().getSimpleName() + "." + method.getName()
                + Arrays.stream(method.getParameterTypes()).map(Class::getSimpleName).collect(Collectors.joining(", ", "(", ")"));
    }

    /** Where one parameter's value comes from on each call. */
    private record Argument(String name, JavaType type, boolean optional, int dependency) {
        static Argument proxy(int dependency) {
            return new Argument(null, null, false, dependency);
        }

        static Argument value(String name, JavaType type, boolean optional) {
            return new Argument(name, type, optional, -1);
        }

        Object from(Invocation call) {
            if (name == null) {
                return call.proxy(dependency);
            }
            Object value = call.argument(name, type);
            return optional ? Optional.ofNullable(value) : value;
        }
    }
}
