package dev.toolmesh;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import java.io.UncheckedIOException;

/**
 * What a dependency's callee reported while it ran ({@link MeshProxy#stream}): its progress, or a
 * log message. Core decodes the callee's notifications; this only reads core's JSON.
 */
public sealed interface CalleeUpdate permits CalleeUpdate.Progress, CalleeUpdate.Log {
    /** Progress so far, of {@code total} (null: unknown), with an optional {@code message}. */
    record Progress(double progress, Double total, String message) implements CalleeUpdate {}

    /** A log message at {@code level} ({@code debug} … {@code emergency}); {@code logger} may be null. */
    record Log(String level, JsonNode data, String logger) implements CalleeUpdate {}

    /** One of core's reports ({@code Notification::to_json}). */
    static CalleeUpdate fromJson(String json) {
        JsonNode update;
        try {
            update = Json.MAPPER.readTree(json);
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException("a callee's report is not JSON: " + e.getOriginalMessage(), e);
        }
        if ("progress".equals(update.path("kind").asText())) {
            JsonNode total = update.get("total");
            JsonNode message = update.get("message");
            return new Progress(update.path("progress").asDouble(), total == null || total.isNull() ? null : total.asDouble(),
                    message == null || message.isNull() ? null : message.asText());
        }
        JsonNode logger = update.get("logger");
        return new Log(update.path("level").asText(), update.get("data"), logger == null || logger.isNull() ? null : logger.asText());
    }
}
