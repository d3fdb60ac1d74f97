package dev.toolmesh;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.lang.reflect.Parameter;
import java.lang.reflect.ParameterizedType;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.function.Function;

/** Reads {@link MeshResource} and {@link MeshPrompt} methods into resources, templates and prompts. */
final class MethodCatalog {
    final List<Resource> resources = new ArrayList<>();
    final List<ResourceTemplate> templates = new ArrayList<>();
    final List<Prompt> prompts = new ArrayList<>();

    private MethodCatalog() {}

    /** The annotated methods of {@code target}, inherited ones included; empty when it has none. */
    static MethodCatalog of(Object target) {
        MethodCatalog catalog = new MethodCatalog();
        Set<String> seen = new HashSet<>();
        for (Class<?> type = target.getClass(); type != null && type != Object.class; type = type.getSuperclass()) {
            for (Method method : type.getDeclaredMethods()) {
                // An overriding method hides the one it overrides.
                if (!seen.add(method.getName() + Arrays.toString(method.getParameterTypes()))) {
                    continue;
                }
                MeshResource resource = method.getAnnotation(MeshResource.class);
                if (resource != null) {
                    catalog.addResource(target, method, resource);
                }
                MeshPrompt prompt = method.getAnnotation(MeshPrompt.class);
                if (prompt != null) {
                    catalog.addPrompt(target, method, prompt);
                }
            }
        }
        return catalog;
    }

    boolean isEmpty() {
        return resources.isEmpty() && templates.isEmpty() && prompts.isEmpty();
    }

    private void addResource(Object target, Method method, MeshResource annotation) {
        String name = annotation.name().isEmpty() ? method.getName() : annotation.name();
        List<Function<ResourceRead, Object>> arguments = new ArrayList<>();
        for (Parameter parameter : namedParameters(method)) {
            if (parameter.getType() == ResourceRead.class) {
                arguments.add(read -> read);
            } else if (parameter.getType() == String.class) {
                String variable = parameter.getName();
                arguments.add(read -> read.variable(variable));
            } else {
                throw new IllegalArgumentException("@MeshResource " + signature(method) + ": parameter '" + parameter.getName()
                        + "' must be a String (a template variable of that name) or a ResourceRead");
            }
        }
        ResourceHandler handler = read -> invoke(method, target, arguments.stream().map(argument -> argument.apply(read)).toArray());
        if (annotation.uri().contains("{")) {
            ResourceTemplate.Builder builder = ResourceTemplate.builder(annotation.uri(), name).handler(handler);
            optional(annotation.title(), builder::title);
            optional(annotation.description(), builder::description);
            optional(annotation.mimeType(), builder::mimeType);
            templates.add(builder.build());
        } else {
            Resource.Builder builder = Resource.builder(annotation.uri(), name).handler(handler);
            optional(annotation.title(), builder::title);
            optional(annotation.description(), builder::description);
            optional(annotation.mimeType(), builder::mimeType);
            resources.add(builder.build());
        }
    }

    private void addPrompt(Object target, Method method, MeshPrompt annotation) {
        String name = annotation.name().isEmpty() ? method.getName() : annotation.name();
        Prompt.Builder builder = Prompt.builder(name);
        optional(annotation.title(), builder::title);
        optional(annotation.description(), builder::description);
        List<Function<PromptGet, Object>> arguments = new ArrayList<>();
        for (Parameter parameter : namedParameters(method)) {
            String argument = parameter.getName();
            if (parameter.getType() == PromptGet.class) {
                arguments.add(get -> get);
            } else if (parameter.getType() == String.class) {
                builder.argument(argument, null, true);
                arguments.add(get -> get.argument(argument));
            } else if (parameter.getType() == Optional.class
                    && parameter.getParameterizedType() instanceof ParameterizedType optional
                    && optional.getActualTypeArguments()[0] == String.class) {
                builder.argument(argument, null, false);
                arguments.add(get -> Optional.ofNullable(get.argument(argument)));
            } else {
                throw new IllegalArgumentException("@MeshPrompt " + signature(method) + ": parameter '" + argument
                        + "' must be a String (a required argument), an Optional<String> or a PromptGet");
            }
        }
        prompts.add(builder.handler(get -> invoke(method, target, arguments.stream().map(argument -> argument.apply(get)).toArray())).build());
    }

    private static Parameter[] namedParameters(Method method) {
        Parameter[] parameters = method.getParameters();
        if (parameters.length > 0 && !parameters[0].isNamePresent()) {
            throw new IllegalArgumentException("toolmesh cannot see the parameter names of " + signature(method)
                    + ": compile with -parameters (maven-compiler-plugin <parameters>true</parameters>;"
                    + " Gradle options.compilerArgs += '-parameters')");
        }
        if (!Modifier.isPublic(method.getModifiers()) || !Modifier.isPublic(method.getDeclaringClass().getModifiers())) {
            // Reflection from this package needs it; in a named module, open the package to dev.toolmesh.
            method.setAccessible(true);
        }
        return parameters;
    }

    private static Object invoke(Method method, Object target, Object[] values) throws Exception {
        try {
            return method.invoke(Modifier.isStatic(method.getModifiers()) ? null : target, values);
        } catch (InvocationTargetException e) {
            if (e.getCause() instanceof Exception thrown) {
                throw thrown;
            }
            throw e;
        }
    }

    private static void optional(String value, java.util.function.Consumer<String> set) {
        if (!value.isEmpty()) {
            set.accept(value);
        }
    }

    private static String signature(Method method) {
        return method.getDeclaringClass().getSimpleName() + "." + method.getName();
    }
}
