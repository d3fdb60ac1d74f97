package dev.toolmesh;

import java.lang.annotation.Documented;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * A dependency narrowed by tags and a semver constraint, in {@link MeshTool#selectors()}. Tags:
 * {@code "fast"} is required, {@code "+fast"} preferred, {@code "-slow"} excluded.
 */
@Documented
@Retention(RetentionPolicy.RUNTIME)
@Target({})
public @interface Dependency {
    String capability();

    String[] tags() default {};

    /** A semver constraint such as {@code ">=1.2, <2"}; any version by default. */
    String version() default "";
}
