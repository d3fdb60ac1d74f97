//! MCP over Streamable HTTP: the server side of both protocol eras ([`server`]) and the modern
//! client agents use to call each other ([`client`]).

pub mod catalog;
pub mod client;
pub mod content;
pub mod input;
pub mod schema;
pub mod server;

pub use client::McpClient;
pub use content::ResultShape;
pub use server::{McpServer, ServerInfo};

use http::header::HeaderName;
use std::borrow::Cow;

/// The modern, stateless revision that mesh peers speak to each other.
pub const MODERN_VERSION: &str = "2026-07-28";
/// Legacy revisions served statelessly, newest first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
/// What the endpoint assumes for a legacy request that names no version.
pub const DEFAULT_LEGACY_VERSION: &str = "2025-03-26";

/// The one MCP endpoint path.
pub const ENDPOINT_PATH: &str = "/mcp";

pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const HEADER_METHOD: &str = "mcp-method";
pub const HEADER_NAME: &str = "mcp-name";
pub const HEADER_SESSION_ID: &str = "mcp-session-id";

// The same as `HeaderName`s, made at compile time: looked up or set by `&str`, a name is checked,
// lowercased and hashed again on every request.
pub const PROTOCOL_VERSION_HEADER: HeaderName = HeaderName::from_static(HEADER_PROTOCOL_VERSION);
pub const METHOD_HEADER: HeaderName = HeaderName::from_static(HEADER_METHOD);
pub const NAME_HEADER: HeaderName = HeaderName::from_static(HEADER_NAME);
pub const SESSION_ID_HEADER: HeaderName = HeaderName::from_static(HEADER_SESSION_ID);

pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` of each message on a `subscriptions/listen` stream: which subscription it belongs to.
pub const META_SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
/// The least severe log level a modern request wants to receive (absent: none).
pub const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// The tasks extension (SEP-2663): a client declares it in `_meta` client capabilities
/// `extensions`, a server in its capabilities' `extensions`.
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";
/// The remaining time budget of the caller, in milliseconds (a toolmesh extension).
pub const META_DEADLINE_MS: &str = "dev.toolmesh/deadlineMs";
/// The mesh error behind an `isError` result (a toolmesh extension): `{code, name, message}`.
pub const META_ERROR: &str = "dev.toolmesh/error";

/// JSON-RPC and MCP error codes.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// `resources/read` of an unknown URI in the legacy era (2026-07-28 uses INVALID_PARAMS).
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
    pub const HEADER_MISMATCH: i64 = -32020;
    pub const MISSING_CAPABILITY: i64 = -32021;
    pub const UNSUPPORTED_VERSION: i64 = -32022;
}

/// Decodes an `Mcp-*` header value: plain (borrowed), or `=?base64?…?=` for values that are not
/// plain ASCII.
pub fn decode_header_value(raw: &str) -> Option<Cow<'_, str>> {
    let trimmed = raw.trim();
    match trimmed.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        Some(b64) => base64_decode(b64).and_then(|bytes| String::from_utf8(bytes).ok()).map(Cow::Owned),
        None => Some(Cow::Borrowed(trimmed)),
    }
}

/// The `x-mcp-header` name a tool's input schema gives each parameter that a modern call must
/// mirror in an `Mcp-Param-{Name}` header (SEP-2243): `(parameter, header suffix)`.
pub fn mirrored_parameters(input_schema: &serde_json::Value) -> impl Iterator<Item = (&str, &str)> {
    input_schema
        .get("properties")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(parameter, schema)| Some((parameter.as_str(), schema.get("x-mcp-header")?.as_str()?)))
}

/// The client capabilities a tool may require ([`crate::registry_api::ToolInfo::required_client_capabilities`]):
/// those a server can ask a client to use on its behalf.
pub const REQUIRABLE_CLIENT_CAPABILITIES: &[&str] = &["elicitation", "roots", "sampling"];

/// Checks what a tool declares about its answers and its clients: an `outputSchema` describes an
/// object (MCP requires it: `structuredContent` is one), and each required client capability is
/// one a client can declare ([`REQUIRABLE_CLIENT_CAPABILITIES`]), once.
pub fn check_tool_contract(output_schema: Option<&serde_json::Value>, required_client_capabilities: &[String]) -> Result<(), String> {
    if let Some(schema) = output_schema {
        let declared = schema.get("type");
        if declared.and_then(serde_json::Value::as_str) != Some("object") {
            let got = declared.map_or_else(|| "none".to_owned(), ToString::to_string);
            return Err(format!(
                "output_schema.type must be \"object\" (an output schema describes MCP's structuredContent, an object), got {got}"
            ));
        }
    }
    for (i, capability) in required_client_capabilities.iter().enumerate() {
        if !REQUIRABLE_CLIENT_CAPABILITIES.contains(&capability.as_str()) {
            return Err(format!(
                "required_client_capabilities[{i}]: {capability:?} is not a capability a client can declare; use {}",
                REQUIRABLE_CLIENT_CAPABILITIES.join(", ")
            ));
        }
        if required_client_capabilities[..i].contains(capability) {
            return Err(format!("required_client_capabilities[{i}]: {capability:?} is listed twice"));
        }
    }
    Ok(())
}

/// Checks what a tool's input schema declares with `x-mcp-header` (SEP-2243): each name an HTTP
/// field-name token (RFC 9110), none twice within the tool (case-insensitively), each on a
/// parameter of a primitive type. A declaration that breaks one of these would make every
/// modern call to the tool fail at its client; it is refused where the tool is declared.
pub fn check_mirrored_parameters(input_schema: &serde_json::Value) -> Result<(), String> {
    let Some(properties) = input_schema.get("properties").and_then(serde_json::Value::as_object) else { return Ok(()) };
    let mut seen = std::collections::HashSet::new();
    for (parameter, schema) in properties {
        let Some(declared) = schema.get("x-mcp-header") else { continue };
        let at = format!("inputSchema.properties.{parameter}.x-mcp-header");
        let Some(name) = declared.as_str() else {
            return Err(format!("{at} must be a string (the header name after Mcp-Param-), not {declared}"));
        };
        let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(format!(
                "{at} '{}' is not an HTTP header name: use letters, digits and !#$%&'*+-.^_`|~",
                crate::text::escape(name)
            ));
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(format!("{at} '{name}' is declared by two parameters (header names ignore case); give each its own"));
        }
        let primitive = ["string", "integer", "number", "boolean"];
        match schema.get("type").and_then(serde_json::Value::as_str) {
            Some(kind) if primitive.contains(&kind) => {}
            _ => {
                return Err(format!(
                    "{at}: parameter '{parameter}' must have type string, integer, number or boolean to be mirrored in a header"
                ))
            }
        }
    }
    Ok(())
}

/// The text an argument's value is mirrored as in its `Mcp-Param-*` header, before
/// [`encode_header_value`]: a string as is, a number or boolean as JSON writes it. `None` for null,
/// objects and arrays, which are never mirrored (the schema check refuses them for a mirrored
/// parameter).
pub fn mirrored_text(value: &serde_json::Value) -> Option<Cow<'_, str>> {
    use serde_json::Value;
    match value {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Encodes a value for an `Mcp-*` header (base64 sentinel when it is not plain visible ASCII).
pub fn encode_header_value(value: &str) -> String {
    let plain = !value.is_empty() && value.bytes().all(|b| (0x20..0x7f).contains(&b)) && value.trim() == value && !value.starts_with("=?");
    if plain {
        value.to_owned()
    } else {
        format!("=?base64?{}?=", base64_encode(value.as_bytes()))
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8) | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, strictly: padded to a multiple of 4, `=` only as the last one or two
/// characters (SEP-2243 rejects a header whose base64 is unpadded or has foreign characters).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let data = text.trim_end_matches('=');
    if text.len() - data.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in data.bytes() {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_trip_through_the_base64_sentinel() {
        for v in ["add", "héllo", " padded ", "=?tricky", "a", "ab", "abc"] {
            assert_eq!(decode_header_value(&encode_header_value(v)).as_deref(), Some(v), "{v}");
        }
        assert_eq!(encode_header_value("add"), "add");
        assert_eq!(encode_header_value("é"), "=?base64?w6k=?=");
        assert_eq!(decode_header_value("=?base64?!!?="), None);
        // Strict: padding required, and `=` only at the end.
        assert_eq!(decode_header_value("=?base64?SGVsbG8=?=").as_deref(), Some("Hello"));
        assert_eq!(decode_header_value("=?base64?SGVsbG8?="), None);
        assert_eq!(decode_header_value("=?base64?SGVs!!!bG8=?="), None);
        assert_eq!(decode_header_value("=?base64?SG=sbG8=?="), None);
        assert_eq!(decode_header_value("=?base64?SGVsbG8===?="), None);
        // Without both halves of the sentinel, a value is literal.
        assert_eq!(decode_header_value("=?base64?SGVsbG8=").as_deref(), Some("=?base64?SGVsbG8="));
    }

    #[test]
    fn mirrored_parameters_are_checked_where_the_tool_is_declared() {
        use serde_json::json;
        let schema = |region: serde_json::Value| json!({"type": "object", "properties": {"region": region, "plain": {"type": "object"}}});
        assert_eq!(check_mirrored_parameters(&schema(json!({"type": "string", "x-mcp-header": "Region"}))), Ok(()));
        assert_eq!(check_mirrored_parameters(&schema(json!({"type": "integer", "x-mcp-header": "X-Zone_1"}))), Ok(()));
        assert_eq!(check_mirrored_parameters(&json!({"type": "object"})), Ok(()));
        let refused = |region| check_mirrored_parameters(&schema(region)).unwrap_err();
        assert_eq!(
            refused(json!({"type": "string", "x-mcp-header": 7})),
            "inputSchema.properties.region.x-mcp-header must be a string (the header name after Mcp-Param-), not 7"
        );
        assert!(refused(json!({"type": "string", "x-mcp-header": ""})).contains("'' is not an HTTP header name"));
        assert!(refused(json!({"type": "string", "x-mcp-header": "Reg\nion"})).contains("is not an HTTP header name"));
        assert!(refused(json!({"type": "string", "x-mcp-header": "Région"})).contains("is not an HTTP header name"));
        assert!(refused(json!({"type": "array", "x-mcp-header": "Region"})).contains("must have type string, integer, number or boolean"));
        assert!(refused(json!({"x-mcp-header": "Region"})).contains("must have type string, integer, number or boolean"));
    }
}
