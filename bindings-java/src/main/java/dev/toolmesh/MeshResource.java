package dev.toolmesh;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Declares a method as the reader of a resource, or of a resource template when {@link #uri} has
 * {@code {variables}}; {@link AgentBuilder#register(Object)} serves it. {@code String} parameters
 * receive the template's variables of the same name (compile with {@code -parameters}); a
 * {@link ResourceRead} parameter receives the whole request. The method returns what a
 * {@link ResourceHandler} returns: a {@code String}, a {@code byte[]}, MCP's
 * {@code ReadResourceResult}, or a {@code CompletionStage} of one.
 *
 * <pre>{@code
 * @MeshResource(uri = "test://template/{id}/data", mimeType = "application/json")
 * public String data(String id) { return "{\"id\": \"" + id + "\"}"; }
 * }</pre>
 */
@Documented
@Retention(RetentionPolicy.RUNTIME)
@Target(ElementType.METHOD)
public @interface MeshResource {
    /** The resource's URI, or an RFC 6570 level-1 URI template ({@code test://item/{id}}). */
    String uri();

    /** The resource's or template's name; the method's name by default. */
    String name() default "";

    String title() default "";

    String description() default "";

    String mimeType() default "";
}
