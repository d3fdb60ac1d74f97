package dev.toolmesh;

import java.util.Map;

/**
 * One {@code resources/read} handed to a {@link ResourceHandler}.
 *
 * @param uri the URI read
 * @param name the declared resource's or template's name
 * @param uriTemplate the template the URI matched; null for a declared resource
 * @param variables the template's variables as they appear in the URI (not percent-decoded)
 * @param context the request context (also {@link Toolmesh#context()} on the handler's thread)
 */
public record ResourceRead(String uri, String name, String uriTemplate, Map<String, String> variables, RequestContext context) {
    /** The value of template variable {@code name}; null when there is none. */
    public String variable(String name) {
        return variables.get(name);
    }
}
