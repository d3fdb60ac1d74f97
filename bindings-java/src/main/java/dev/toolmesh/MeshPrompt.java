package dev.toolmesh;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Declares a method as a prompt; {@link AgentBuilder#register(Object)} serves it. Its
 * {@code String} parameters are the prompt's arguments, by name (compile with {@code -parameters}),
 * required unless declared {@code Optional<String>}; a {@link PromptGet} parameter receives the
 * whole request. The method returns what a {@link PromptHandler} returns: a {@code String} (one
 * user message), a {@link PromptResult}, MCP's {@code GetPromptResult}, or a
 * {@code CompletionStage} of one.
 *
 * <pre>{@code
 * @MeshPrompt(description = "Greets someone")
 * public String greet(String name, Optional<String> style) { return "Say hello to " + name; }
 * }</pre>
 */
@Documented
@Retention(RetentionPolicy.RUNTIME)
@Target(ElementType.METHOD)
public @interface MeshPrompt {
    /** The prompt's name; the method's name by default. */
    String name() default "";

    String title() default "";

    String description() default "";
}
