package dev.toolmesh;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;

/** The one Jackson mapper of the binding: arguments, results and schemas cross to core as JSON text. */
final class Json {
    /** Unknown fields in an argument object are ignored, as a tolerant reader should. */
    static final ObjectMapper MAPPER =
            new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

    private Json() {}
}
