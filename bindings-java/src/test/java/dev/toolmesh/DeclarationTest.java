package dev.toolmesh;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.toolmesh.testkit.Certs;
import dev.toolmesh.testkit.Mcp;
import dev.toolmesh.testkit.Mesh;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import javax.tools.ToolProvider;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What the annotation and builder APIs tell core about tools, and how they reach handlers. */
class DeclarationTest {
    private static JsonNode json(String text) throws Exception {
        return Json.MAPPER.readTree(text.replace('\'', '"'));
    }

    private static Map<String, JsonNode> infos(Object tools) {
        Map<String, JsonNode> byName = new java.util.TreeMap<>();
        MethodTools.of(tools).forEach(tool -> byName.put(tool.name(), tool.info()));
        return byName;
    }

    public static class Declared {
        /** Not a tool. */
        public int helper() {
            return 0;
        }

        @MeshTool
        public int plain() {
            return 1;
        }

        @MeshTool(name = "weighted-mean", capability = "mean", version = "2.1.0", tags = {"math", "stats"},
                description = "The weighted mean.", timeoutMs = 1500, readOnlyHint = true, idempotentHint = true,
                dependencies = {"sum"}, selectors = {@Dependency(capability = "div", version = ">=1.2", tags = {"+fast", "-slow"})})
        public double weightedMean(List<Double> values, MeshProxy div, MeshProxy sum) {
            return 0;
        }
    }

    @Test
    void annotationsDescribeTheTool() throws Exception {
        Map<String, JsonNode> tools = infos(new Declared());
        assertEquals(List.of("plain", "weighted-mean"), List.copyOf(tools.keySet()));
        assertEquals(json("{'name':'plain','version':'1.0.0','description':'','tags':[],"
                + "'input_schema':{'type':'object','properties':{}},'dependencies':[]}"), tools.get("plain"));
        JsonNode mean = tools.get("weighted-mean");
        assertEquals("mean", mean.get("capability").asText());
        assertEquals("2.1.0", mean.get("version").asText());
        assertEquals(json("['math','stats']"), mean.get("tags"));
        assertEquals("The weighted mean.", mean.get("description").asText());
        assertEquals(1500, mean.get("timeout_ms").asLong());
        assertEquals(json("['sum',{'capability':'div','tags':['+fast','-slow'],'version':'>=1.2'}]"), mean.get("dependencies"));
        assertEquals(json("['values']"), mean.at("/input_schema/required"));
        assertEquals(json("{'readOnlyHint':true,'idempotentHint':true}"), mean.get("annotations"));
        JsonNode built = ToolDefinition.builder("b").idempotentHint(true).destructiveHint(false).title("B").handler(call -> 1).build().info();
        assertEquals(json("{'idempotentHint':true,'destructiveHint':false,'title':'B'}"), built.get("annotations"));
    }

    public static class Base {
        @MeshTool
        public int inherited() {
            return 1;
        }

        @MeshTool
        public int overridden() {
            return 1;
        }
    }

    public static class Derived extends Base {
        @Override
        @MeshTool(capability = "derived-version")
        public int overridden() {
            return 2;
        }
    }

    @Test
    void inheritedToolsAreServedAndOverridesWin() {
        Map<String, JsonNode> tools = infos(new Derived());
        assertEquals(List.of("inherited", "overridden"), List.copyOf(tools.keySet()));
        assertEquals("derived-version", tools.get("overridden").get("capability").asText());
    }

    public static class TooManyProxies {
        @MeshTool(dependencies = {"add"})
        public int tool(MeshProxy add, MeshProxy extra) {
            return 0;
        }
    }

    @Test
    void declarationMistakesAreReportedWhenRegistering() {
        var tooMany = assertThrows(IllegalArgumentException.class, () -> Toolmesh.agent("x").register(new TooManyProxies()));
        assertTrue(tooMany.getMessage().contains("has 2 MeshProxy parameters but declares 1 dependencies"), tooMany.getMessage());
        var none = assertThrows(IllegalArgumentException.class, () -> Toolmesh.agent("x").register(new Object()));
        assertEquals("java.lang.Object has no @MeshTool, @MeshResource or @MeshPrompt methods", none.getMessage());
        var noHandler = assertThrows(NullPointerException.class, () -> ToolDefinition.builder("empty").build());
        assertEquals("tool 'empty' has no handler", noHandler.getMessage());
    }

    @Test
    void classesCompiledWithoutParameterNamesAreRefusedWithTheFix(@TempDir Path dir) throws Exception {
        Path source = dir.resolve("Nameless.java");
        Files.writeString(source, "public class Nameless {\n"
                + "  @dev.toolmesh.MeshTool public int add(int a, int b) { return a + b; }\n"
                + "}\n");
        int status = ToolProvider.getSystemJavaCompiler().run(null, null, null,
                "-classpath", System.getProperty("java.class.path"), "-d", dir.toString(), source.toString());
        assertEquals(0, status);
        try (URLClassLoader loader = new URLClassLoader(new URL[] {dir.toUri().toURL()}, getClass().getClassLoader())) {
            Object nameless = loader.loadClass("Nameless").getConstructor().newInstance();
            var error = assertThrows(IllegalArgumentException.class, () -> Toolmesh.agent("x").register(nameless));
            assertEquals("toolmesh cannot see the parameter names of Nameless.add(int, int): compile with -parameters"
                    + " (maven-compiler-plugin <parameters>true</parameters>; Gradle options.compilerArgs += '-parameters')", error.getMessage());
        }
    }

    public record Point(int x, int y) {}

    /** A POJO argument: Jackson reads it through its setters; width is required, height defaults to 1. */
    public static class Rect {
        @com.fasterxml.jackson.annotation.JsonProperty(required = true)
        private int width;
        private int height = 1;

        public int getWidth() {
            return width;
        }

        public void setWidth(int width) {
            this.width = width;
        }

        public int getHeight() {
            return height;
        }

        public void setHeight(int height) {
            this.height = height;
        }
    }

    public record Placed(int area, Point corner) {}

    public static class Proxied {
        /** A POJO and a record decoded from one live call's arguments. */
        @MeshTool
        public Placed place(Rect rect, Point origin) {
            return new Placed(rect.getWidth() * rect.getHeight(), new Point(origin.x() + rect.getWidth(), origin.y() + rect.getHeight()));
        }

        @MeshTool(capability = "add")
        public int add(int a, int b) {
            return a + b;
        }

        @MeshTool(capability = "neg")
        public int neg(int a) {
            return -a;
        }

        /** {@code add} is matched by name although it comes second; {@code first} takes what is left. */
        @MeshTool(dependencies = {"neg", "add"})
        public CompletableFuture<Integer> combine(Point point, java.util.Optional<Integer> offset, MeshProxy first, MeshProxy add) {
            return add.call(Map.of("a", point.x(), "b", point.y() + offset.orElse(0)), Integer.class)
                    .thenCompose(sum -> first.call(Map.of("a", sum), Integer.class));
        }
    }

    @Test
    void annotatedAndBuilderToolsServeTogetherWithoutARegistry(@TempDir Path dir) throws Exception {
        // Dependencies this agent provides itself are called in process: no registry needed.
        try (Mesh mesh = new Mesh(dir)) {
            Certs certs = mesh.certs("alpha");
            ToolDefinition twice = ToolDefinition.builder("twice")
                    .capability("double")
                    .parameter("value", int.class)
                    .dependsOn("add")
                    .handler(call -> call.proxy("add").call(Map.of("a", call.argument("value", Integer.class), "b", call.argument("value", Integer.class))))
                    .build();
            ToolDefinition echo = ToolDefinition.builder("echo")
                    .parameter("point", Point.class)
                    .handler(call -> Map.of("point", call.argument("point", Point.class), "headers", Toolmesh.headers()))
                    .build();
            // Declared a plain string, decoded as an enum by the handler: core's check passes, Jackson's refuses.
            ToolDefinition weekday = ToolDefinition.builder("weekday")
                    .parameter("day", String.class)
                    .handler(call -> call.argument("day", java.time.DayOfWeek.class).getValue())
                    .build();
            try (MeshAgent alpha = Toolmesh.agent("alpha").options(certs.options("alpha")).register(new Proxied()).tool(twice).tool(echo).tool(weekday).start()) {
                Mcp operator = new Mcp(certs.clientContext("operator"));
                assertEquals(-10, operator.call(alpha.endpoint(), "combine", Map.of("point", Map.of("x", 3, "y", 4), "offset", 3), Map.of()).asInt());
                assertEquals(-7, operator.call(alpha.endpoint(), "combine", Map.of("point", Map.of("x", 3, "y", 4)), Map.of()).asInt());
                assertEquals(42, operator.call(alpha.endpoint(), "twice", Map.of("value", 21), Map.of()).asInt());
                assertEquals(json("{'area':12,'corner':{'x':4,'y':6}}"),
                        operator.call(alpha.endpoint(), "place", Map.of("rect", Map.of("width", 3, "height", 4), "origin", Map.of("x", 1, "y", 2)), Map.of()));
                assertEquals(json("{'area':5,'corner':{'x':5,'y':1}}"),
                        operator.call(alpha.endpoint(), "place", Map.of("rect", Map.of("width", 5, "extra", true), "origin", Map.of("x", 0, "y", 0)), Map.of()));
                JsonNode noWidth = operator.callError(alpha.endpoint(), "place", Map.of("rect", Map.of("height", 2), "origin", Map.of("x", 0, "y", 0)));
                assertEquals("INVALID_ARGUMENTS", noWidth.get("name").asText(), noWidth.toString());
                assertEquals(json("{'point':{'x':1,'y':2},'headers':{}}"), operator.call(alpha.endpoint(), "echo", Map.of("point", Map.of("x", 1, "y", 2)), Map.of()));
                // core checks the arguments' types against the derived schema before Java sees them...
                JsonNode invalid = operator.callError(alpha.endpoint(), "combine", Map.of("point", "three"));
                assertEquals("INVALID_ARGUMENTS", invalid.get("name").asText(), invalid.toString());
                assertTrue(invalid.get("message").asText().startsWith("tool 'combine': argument 'point'"), invalid.toString());
                // ...and core what is inside an object too, naming the nested argument.
                JsonNode undecodable = operator.callError(alpha.endpoint(), "combine", Map.of("point", Map.of("x", "three", "y", 4)));
                assertEquals(5003, undecodable.get("code").asInt(), undecodable.toString());
                assertEquals("INVALID_ARGUMENTS", undecodable.get("name").asText(), undecodable.toString());
                assertEquals("tool 'combine': argument 'point.x' must be of type integer, got string",
                        undecodable.get("message").asText(), undecodable.toString());
                // An argument the handler cannot decode into its type: INVALID_ARGUMENTS, worded by core.
                assertEquals(1, operator.call(alpha.endpoint(), "weekday", Map.of("day", "MONDAY"), Map.of()).asInt());
                JsonNode notADay = operator.callError(alpha.endpoint(), "weekday", Map.of("day", "Funday"));
                assertEquals(5003, notADay.get("code").asInt(), notADay.toString());
                assertTrue(notADay.get("message").asText().startsWith("tool 'weekday': argument 'day' is not a valid java.time.DayOfWeek: "),
                        notADay.toString());
            }
        }
    }
}
