package dev.toolmesh.testkit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Map;
import javax.net.ssl.SSLContext;

/** A plain MCP client (modern revision, one HTTPS request per call), for calling agents from outside the mesh. */
public final class Mcp {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String REVISION = "2026-07-28";

    private final HttpClient http;

    public Mcp(SSLContext tls) {
        this.http = HttpClient.newBuilder().sslContext(tls).connectTimeout(Duration.ofSeconds(10)).build();
    }

    /** Calls {@code tool} and returns its structured result; fails on any error. */
    public JsonNode call(String endpoint, String tool, Object arguments, Map<String, String> headers) {
        return call(endpoint, tool, arguments, headers, null);
    }

    /** The same, telling the agent it must answer within {@code deadline} (toolmesh's deadline extension). */
    public JsonNode call(String endpoint, String tool, Object arguments, Map<String, String> headers, Duration deadline) {
        JsonNode result = callResult(endpoint, tool, arguments, headers, deadline);
        if (result.path("isError").asBoolean()) {
            throw new AssertionError("tool " + tool + " failed: " + result);
        }
        return result.get("structuredContent");
    }

    /** Calls a tool that must fail; returns the mesh error it reported ({@code code}, {@code name}, {@code message}). */
    public JsonNode callError(String endpoint, String tool, Object arguments) {
        JsonNode result = callResult(endpoint, tool, arguments, Map.of(), null);
        if (!result.path("isError").asBoolean()) {
            throw new AssertionError("tool " + tool + " did not fail: " + result);
        }
        return result.path("_meta").path("dev.toolmesh/error");
    }

    /** Calls {@code tool} and returns its whole {@code CallToolResult}, whatever it is. */
    public JsonNode callResult(String endpoint, String tool, Object arguments) {
        return callResult(endpoint, tool, arguments, Map.of(), null);
    }

    /**
     * Sends one modern request of {@code method} ({@code mcpName}: the {@code Mcp-Name} header, or
     * null) and returns the whole JSON-RPC answer, a result or an error.
     */
    public JsonNode request(String endpoint, String method, Object params, String mcpName) {
        ObjectNode body = JSON.createObjectNode().put("jsonrpc", "2.0").put("id", 1).put("method", method);
        ObjectNode withMeta = JSON.valueToTree(params);
        ObjectNode meta = withMeta.putObject("_meta").put("io.modelcontextprotocol/protocolVersion", REVISION);
        meta.putObject("io.modelcontextprotocol/clientCapabilities");
        body.set("params", withMeta);
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(endpoint))
                .timeout(Duration.ofSeconds(30))
                .header("Content-Type", "application/json")
                .header("Accept", "application/json, text/event-stream")
                .header("MCP-Protocol-Version", REVISION)
                .header("Mcp-Method", method)
                .POST(HttpRequest.BodyPublishers.ofString(body.toString()));
        if (mcpName != null) {
            request.header("Mcp-Name", mcpName);
        }
        try {
            HttpResponse<String> response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
            return JSON.readTree(response.body());
        } catch (IOException e) {
            throw new AssertionError(method + " at " + endpoint + " failed: " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    /**
     * Sends one modern request of {@code method} with request id {@code id} whose answer is a
     * long-lived event stream (such as {@code subscriptions/listen}); the future receives every
     * JSON-RPC message of it, in order, once the server ends the stream.
     */
    public java.util.concurrent.CompletableFuture<java.util.List<JsonNode>> stream(String endpoint, int id, String method, Object params) {
        ObjectNode body = JSON.createObjectNode().put("jsonrpc", "2.0").put("id", id).put("method", method);
        ObjectNode withMeta = JSON.valueToTree(params);
        ObjectNode meta = withMeta.putObject("_meta").put("io.modelcontextprotocol/protocolVersion", REVISION);
        meta.putObject("io.modelcontextprotocol/clientCapabilities");
        body.set("params", withMeta);
        HttpRequest request = HttpRequest.newBuilder(URI.create(endpoint))
                .header("Content-Type", "application/json")
                .header("Accept", "application/json, text/event-stream")
                .header("MCP-Protocol-Version", REVISION)
                .header("Mcp-Method", method)
                .POST(HttpRequest.BodyPublishers.ofString(body.toString()))
                .build();
        return http.sendAsync(request, HttpResponse.BodyHandlers.ofString()).thenApply(response -> eventMessages(response.body()));
    }

    private static java.util.List<JsonNode> eventMessages(String stream) {
        java.util.List<JsonNode> messages = new java.util.ArrayList<>();
        for (String event : stream.split("\n\n")) {
            StringBuilder data = new StringBuilder();
            event.lines().filter(line -> line.startsWith("data:")).forEach(line -> data.append(line.substring(5).strip()));
            if (!data.isEmpty()) {
                try {
                    messages.add(JSON.readTree(data.toString()));
                } catch (IOException e) {
                    throw new AssertionError("an event that is not JSON: " + data, e);
                }
            }
        }
        return messages;
    }

    /**
     * Calls {@code tool} with {@code extraMeta} added to the request's {@code _meta} and returns
     * every JSON-RPC message of the answer in order: the notifications of an answer streamed as
     * events, then the response (an answer that is one JSON body is the one message).
     */
    public java.util.List<JsonNode> messages(String endpoint, String tool, Object arguments, Map<String, Object> extraMeta) {
        ObjectNode params = JSON.createObjectNode().put("name", tool);
        params.set("arguments", JSON.valueToTree(arguments));
        ObjectNode meta = params.putObject("_meta").put("io.modelcontextprotocol/protocolVersion", REVISION);
        meta.putObject("io.modelcontextprotocol/clientCapabilities");
        extraMeta.forEach((key, value) -> meta.set(key, JSON.valueToTree(value)));
        ObjectNode body = JSON.createObjectNode().put("jsonrpc", "2.0").put("id", 1).put("method", "tools/call");
        body.set("params", params);
        HttpRequest request = HttpRequest.newBuilder(URI.create(endpoint))
                .timeout(Duration.ofSeconds(30))
                .header("Content-Type", "application/json")
                .header("Accept", "application/json, text/event-stream")
                .header("MCP-Protocol-Version", REVISION)
                .header("Mcp-Method", "tools/call")
                .header("Mcp-Name", tool)
                .POST(HttpRequest.BodyPublishers.ofString(body.toString()))
                .build();
        try {
            HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
            java.util.List<JsonNode> messages = new java.util.ArrayList<>();
            if (!response.headers().firstValue("content-type").orElse("").startsWith("text/event-stream")) {
                messages.add(JSON.readTree(response.body()));
                return messages;
            }
            for (String event : response.body().split("\n\n")) {
                StringBuilder data = new StringBuilder();
                event.lines().filter(line -> line.startsWith("data:")).forEach(line -> data.append(line.substring(5).strip()));
                if (!data.isEmpty()) {
                    messages.add(JSON.readTree(data.toString()));
                }
            }
            return messages;
        } catch (IOException e) {
            throw new AssertionError("tools/call " + tool + " at " + endpoint + " failed: " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }

    private JsonNode callResult(String endpoint, String tool, Object arguments, Map<String, String> headers, Duration deadline) {
        ObjectNode params = JSON.createObjectNode().put("name", tool);
        params.set("arguments", JSON.valueToTree(arguments));
        ObjectNode meta = params.putObject("_meta").put("io.modelcontextprotocol/protocolVersion", REVISION);
        meta.putObject("io.modelcontextprotocol/clientCapabilities");
        if (deadline != null) {
            meta.put("dev.toolmesh/deadlineMs", deadline.toMillis());
        }
        ObjectNode body = JSON.createObjectNode().put("jsonrpc", "2.0").put("id", 1).put("method", "tools/call");
        body.set("params", params);
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(endpoint))
                .timeout(Duration.ofSeconds(30))
                .header("Content-Type", "application/json")
                .header("Accept", "application/json, text/event-stream")
                .header("MCP-Protocol-Version", REVISION)
                .header("Mcp-Method", "tools/call")
                .header("Mcp-Name", tool)
                .POST(HttpRequest.BodyPublishers.ofString(body.toString()));
        headers.forEach(request::header);
        try {
            HttpResponse<String> response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
            JsonNode answer = JSON.readTree(response.body());
            if (response.statusCode() != 200 || !answer.has("result")) {
                throw new AssertionError("tools/call " + tool + " answered HTTP " + response.statusCode() + ": " + response.body());
            }
            return answer.get("result");
        } catch (IOException e) {
            throw new AssertionError("tools/call " + tool + " at " + endpoint + " failed: " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }
}
