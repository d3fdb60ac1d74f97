package dev.toolmesh;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Declares a method as a mesh tool; {@link AgentBuilder#register(Object)} serves the annotated
 * methods of an object.
 *
 * <p>The input schema comes from the parameter types (primitives, strings, enums, arrays,
 * collections, maps, records, POJOs; {@code Optional} parameters are not required) with their real
 * names, so compile with {@code -parameters}. Parameters of type {@link MeshProxy} receive the
 * declared dependencies: one named like a dependency's capability gets that dependency, the others
 * take the remaining ones in declaration order. The method may return a value or a
 * {@link java.util.concurrent.CompletionStage}.
 */
@Documented
@Retention(RetentionPolicy.RUNTIME)
@Target(ElementType.METHOD)
public @interface MeshTool {
    /** The tool's name; the method's name by default. */
    String name() default "";

    /** The capability it provides; the tool's name by default. */
    String capability() default "";

    String version() default "1.0.0";

    String[] tags() default {};

    String description() default "";

    /** Capabilities this tool calls, each matched by any version and tags. */
    String[] dependencies() default {};

    /** Dependencies narrowed by tags or a version constraint; they come after {@link #dependencies()}. */
    Dependency[] selectors() default {};

    /** Timeout of each dependency call in milliseconds; 0 uses the agent's {@code call_timeout_ms}. */
    long timeoutMs() default 0;

    /**
     * MCP's {@code readOnlyHint} annotation (listed by {@code tools/list}, kept by the registry):
     * a call to a read-only or idempotent tool is also retried on another provider when the
     * connection breaks after the provider received it. Only {@code true} is declared.
     */
    boolean readOnlyHint() default false;

    /** MCP's {@code idempotentHint} annotation (see {@link #readOnlyHint()}); only {@code true} is declared. */
    boolean idempotentHint() default false;

    /**
     * A record or POJO type whose schema is the tool's MCP {@code outputSchema}; every answer's
     * structured content is checked against it. {@code void.class} (the default): none.
     */
    Class<?> outputSchema() default void.class;

    /** Client capabilities the tool needs; a modern MCP client that did not declare one is refused (-32021). */
    String[] requiredClientCapabilities() default {};

    /**
     * MCP's {@code execution.taskSupport}: {@code "optional"} or {@code "required"} let a call run
     * as a task (see {@link ToolDefinition.Builder#taskSupport}); empty (the default): never.
     */
    String taskSupport() default "";
}
