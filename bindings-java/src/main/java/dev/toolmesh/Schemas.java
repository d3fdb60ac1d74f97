package dev.toolmesh;

import com.fasterxml.jackson.databind.BeanDescription;
import com.fasterxml.jackson.databind.JavaType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.introspect.BeanPropertyDefinition;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.type.TypeFactory;
import java.lang.reflect.RecordComponent;
import java.lang.reflect.Type;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.net.URI;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.UUID;

/**
 * JSON Schema for a tool's input, derived from Java types. Only this half is the binding's
 * (reading types); core serves the schema and checks arguments against it.
 */
final class Schemas {
    /** One argument of a tool. */
    record Parameter(String name, Type type, boolean required) {}

    private static final Set<Class<?>> INTEGERS = Set.of(
            byte.class, short.class, int.class, long.class, Byte.class, Short.class, Integer.class, Long.class, BigInteger.class);
    private static final Set<Class<?>> NUMBERS = Set.of(float.class, double.class, Float.class, Double.class, BigDecimal.class);
    private static final Set<Class<?>> STRINGS = Set.of(
            String.class, CharSequence.class, char.class, Character.class, UUID.class, URI.class, byte[].class);

    private Schemas() {}

    static ObjectNode inputSchema(List<Parameter> parameters) {
        ObjectSchema schema = new ObjectSchema();
        for (Parameter parameter : parameters) {
            schema.add(parameter.name(), typeSchema(parameter.type()), parameter.required());
        }
        return schema.build();
    }

    static ObjectNode typeSchema(Type type) {
        return schema(TypeFactory.defaultInstance().constructType(type), new HashSet<>());
    }

    /** {@code visiting}: the classes whose schema is being built, so a recursive type ends in "any". */
    private static ObjectNode schema(JavaType type, Set<Class<?>> visiting) {
        Class<?> raw = type.getRawClass();
        ObjectNode schema = Json.MAPPER.createObjectNode();
        if (raw == boolean.class || raw == Boolean.class) {
            return schema.put("type", "boolean");
        }
        if (INTEGERS.contains(raw)) {
            return schema.put("type", "integer");
        }
        if (NUMBERS.contains(raw)) {
            return schema.put("type", "number");
        }
        if (STRINGS.contains(raw)) {
            return schema.put("type", "string");
        }
        if (raw.isEnum()) {
            ArrayNode values = schema.put("type", "string").putArray("enum");
            for (Object constant : raw.getEnumConstants()) {
                values.add(((Enum<?>) constant).name());
            }
            return schema;
        }
        if (type.isArrayType() || type.isCollectionLikeType()) {
            schema.put("type", "array");
            JavaType items = type.getContentType();
            if (items != null && items.getRawClass() != Object.class) {
                schema.set("items", schema(items, visiting));
            }
            if (Set.class.isAssignableFrom(raw)) {
                schema.put("uniqueItems", true);
            }
            return schema;
        }
        if (type.isMapLikeType()) {
            schema.put("type", "object");
            JavaType values = type.getContentType();
            if (values != null && values.getRawClass() != Object.class) {
                schema.set("additionalProperties", schema(values, visiting));
            }
            return schema;
        }
        if (raw == Object.class || JsonNode.class.isAssignableFrom(raw) || raw.isInterface() || !visiting.add(raw)) {
            return schema; // any JSON
        }
        try {
            return raw.isRecord() ? recordSchema(type, visiting) : beanSchema(type, visiting);
        } finally {
            visiting.remove(raw);
        }
    }

    /** Every component of a record is required. */
    private static ObjectNode recordSchema(JavaType type, Set<Class<?>> visiting) {
        ObjectSchema schema = new ObjectSchema();
        for (RecordComponent component : type.getRawClass().getRecordComponents()) {
            JavaType componentType = TypeFactory.defaultInstance().resolveMemberType(component.getGenericType(), type.getBindings());
            schema.add(component.getName(), schema(componentType, visiting), true);
        }
        return schema.build();
    }

    /** A POJO's properties as Jackson reads them; required only where marked {@code @JsonProperty(required = true)}. */
    private static ObjectNode beanSchema(JavaType type, Set<Class<?>> visiting) {
        ObjectSchema schema = new ObjectSchema();
        BeanDescription bean = Json.MAPPER.getDeserializationConfig().introspect(type);
        for (BeanPropertyDefinition property : bean.findProperties()) {
            if (property.couldDeserialize()) {
                schema.add(property.getName(), schema(property.getPrimaryType(), visiting), property.isRequired());
            }
        }
        return schema.build();
    }

    /** {@code {"type": "object", "properties": ..., "required": [...]}}, "required" only when something is. */
    private static final class ObjectSchema {
        private final ObjectNode schema = Json.MAPPER.createObjectNode().put("type", "object");
        private final ObjectNode properties = schema.putObject("properties");
        private final ArrayNode required = Json.MAPPER.createArrayNode();

        void add(String name, ObjectNode propertySchema, boolean isRequired) {
            properties.set(name, propertySchema);
            if (isRequired) {
                required.add(name);
            }
        }

        ObjectNode build() {
            if (!required.isEmpty()) {
                schema.set("required", required);
            }
            return schema;
        }
    }
}
