package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JsonNode;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

/** Input schemas derived from Java types. */
class SchemaTest {
    private static JsonNode json(String text) throws Exception {
        return Json.MAPPER.readTree(text.replace('\'', '"'));
    }

    private static JsonNode schemaOf(java.lang.reflect.Type type) {
        return Schemas.typeSchema(type);
    }

    private static JsonNode schemaOf(Object tools, String tool) throws Exception {
        return Json.MAPPER.readTree(MethodTools.of(tools).stream().filter(t -> t.name().equals(tool)).findFirst().orElseThrow().inputSchema());
    }

    enum Colour { RED, GREEN }

    record Point(int x, double y) {}

    record Labelled<T>(String label, T value, List<T> more) {}

    record Tree(String name, List<Tree> children) {}

    /** A POJO as Jackson reads it: setters and public fields; required only where it says so. */
    public static class Order {
        public String item;
        private int quantity;

        @JsonProperty(required = true)
        public String customer;

        public void setQuantity(int quantity) {
            this.quantity = quantity;
        }

        public int getQuantity() {
            return quantity;
        }
    }

    @Test
    void scalarsMapToJsonTypes() throws Exception {
        for (Class<?> integer : List.of(int.class, Integer.class, long.class, short.class, java.math.BigInteger.class)) {
            assertEquals(json("{'type':'integer'}"), schemaOf(integer), integer.getName());
        }
        for (Class<?> number : List.of(double.class, Float.class, java.math.BigDecimal.class)) {
            assertEquals(json("{'type':'number'}"), schemaOf(number), number.getName());
        }
        assertEquals(json("{'type':'boolean'}"), schemaOf(boolean.class));
        assertEquals(json("{'type':'string'}"), schemaOf(String.class));
        assertEquals(json("{'type':'string'}"), schemaOf(char.class));
        assertEquals(json("{'type':'string','enum':['RED','GREEN']}"), schemaOf(Colour.class));
        assertEquals(json("{}"), schemaOf(Object.class));
        assertEquals(json("{}"), schemaOf(JsonNode.class));
    }

    @Test
    void containersDescribeTheirContents() throws Exception {
        assertEquals(json("{'type':'array','items':{'type':'integer'}}"), schemaOf(new TypeReference<List<Integer>>() {}.getType()));
        assertEquals(json("{'type':'array','items':{'type':'number'}}"), schemaOf(double[].class));
        assertEquals(json("{'type':'array','items':{'type':'string'},'uniqueItems':true}"), schemaOf(new TypeReference<Set<String>>() {}.getType()));
        assertEquals(json("{'type':'object','additionalProperties':{'type':'boolean'}}"), schemaOf(new TypeReference<Map<String, Boolean>>() {}.getType()));
        assertEquals(json("{'type':'object'}"), schemaOf(new TypeReference<Map<String, Object>>() {}.getType()));
        assertEquals(json("{'type':'array'}"), schemaOf(List.class));
    }

    @Test
    void recordsArePropertiesThatAreAllRequired() throws Exception {
        assertEquals(json("{'type':'object','properties':{'x':{'type':'integer'},'y':{'type':'number'}},'required':['x','y']}"), schemaOf(Point.class));
        assertEquals(json("{'type':'object','properties':{'label':{'type':'string'},"
                        + "'value':{'type':'object','properties':{'x':{'type':'integer'},'y':{'type':'number'}},'required':['x','y']},"
                        + "'more':{'type':'array','items':{'type':'object','properties':{'x':{'type':'integer'},'y':{'type':'number'}},'required':['x','y']}}},"
                        + "'required':['label','value','more']}"),
                schemaOf(new TypeReference<Labelled<Point>>() {}.getType()));
    }

    @Test
    void recursiveTypesEndInAnyValue() throws Exception {
        assertEquals(json("{'type':'object','properties':{'name':{'type':'string'},'children':{'type':'array','items':{}}},'required':['name','children']}"),
                schemaOf(Tree.class));
    }

    @Test
    void pojosArePropertiesAsJacksonReadsThem() throws Exception {
        assertEquals(json("{'type':'object','properties':{'item':{'type':'string'},'customer':{'type':'string'},'quantity':{'type':'integer'}},'required':['customer']}"),
                schemaOf(Order.class));
    }

    public static class Calc {
        @MeshTool(capability = "add")
        public int add(int a, int b) {
            return a + b;
        }

        @MeshTool(capability = "sum3", dependencies = {"add"})
        public CompletableFuture<Integer> sum3(int a, int b, int c, MeshProxy add) {
            return CompletableFuture.completedFuture(a + b + c);
        }

        @MeshTool
        public String label(Point point, Optional<Colour> colour, List<Order> orders) {
            return point + " " + colour + " " + orders;
        }
    }

    @Test
    void toolSchemasUseTheRealParameterNamesAndSkipProxies() throws Exception {
        // Exactly what the Python binding derives for `async def sum3(a: int, b: int, c: int, add: Proxy = None)`.
        assertEquals(json("{'type':'object','properties':{'a':{'type':'integer'},'b':{'type':'integer'},'c':{'type':'integer'}},'required':['a','b','c']}"),
                schemaOf(new Calc(), "sum3"));
        JsonNode label = schemaOf(new Calc(), "label");
        assertEquals(json("['point','orders']"), label.get("required"));
        assertEquals(json("{'type':'string','enum':['RED','GREEN']}"), label.at("/properties/colour"));
        assertEquals("object", label.at("/properties/orders/items/type").asText());
    }

    @Test
    void builderToolsDeriveTheirSchemaFromParameterTypes() throws Exception {
        ToolDefinition tool = ToolDefinition.builder("scale")
                .parameter("point", Point.class)
                .optionalParameter("factors", new TypeReference<List<Double>>() {}.getType())
                .handler(call -> null)
                .build();
        assertEquals(json("{'type':'object','properties':{'point':{'type':'object','properties':{'x':{'type':'integer'},'y':{'type':'number'}},'required':['x','y']},"
                        + "'factors':{'type':'array','items':{'type':'number'}}},'required':['point']}"),
                Json.MAPPER.readTree(tool.inputSchema()));
        assertEquals(json("{'type':'object','properties':{}}"), Json.MAPPER.readTree(ToolDefinition.builder("none").handler(call -> 1).build().inputSchema()));
    }
}
