//! Which protocol era a request belongs to, and what a modern request must carry (`_meta` keys and
//! the SEP-2243 headers that repeat the body).

use super::reply::RpcError;
use super::request::{Params, Raw, RequestMeta};
use crate::mcp::*;
use http::header::AsHeaderName;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Era {
    Modern,
    Legacy,
}

pub(super) fn supported_versions() -> Vec<&'static str> {
    std::iter::once(MODERN_VERSION).chain(LEGACY_VERSIONS.iter().copied()).collect()
}

pub(super) fn era_of(method: &str, headers: &HeaderMap, meta: Option<&RequestMeta>) -> Era {
    // A request that carries the modern `_meta` protocol version is modern whatever its method:
    // an `initialize` sent that way is a removed method (404 / -32601), as the spec and the
    // reference servers answer it, not a legacy handshake.
    if meta.is_some_and(|m| m.protocol_version.is_some()) {
        return Era::Modern;
    }
    if method == "initialize" {
        return Era::Legacy;
    }
    match headers.get(PROTOCOL_VERSION_HEADER).map(|v| v.to_str().map(str::trim)) {
        None => Era::Legacy,
        Some(Ok(v)) if LEGACY_VERSIONS.contains(&v) => Era::Legacy,
        // Any other version claims the modern era, whose requests must carry _meta.
        Some(_) => Era::Modern,
    }
}

/// SEP-2243 header validation and the required `_meta` keys of a modern request.
pub(super) fn check_modern_request(method: &str, headers: &HeaderMap, params: &Params) -> Result<(), RpcError> {
    let meta = params.meta();
    let Some(version) = meta.and_then(|m| m.protocol_version).and_then(Raw::as_str) else {
        return Err(RpcError::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_PARAMS,
            format!("Invalid params: missing _meta[\"{META_PROTOCOL_VERSION}\"]"),
        ));
    };
    // The header must repeat the body before the version itself is judged: a header and a body
    // that disagree are a HeaderMismatch (-32020) even when the body's version is unsupported too.
    expect_header(headers, &PROTOCOL_VERSION_HEADER, &version)?;
    if version != MODERN_VERSION {
        return Err(RpcError::new(StatusCode::BAD_REQUEST, codes::UNSUPPORTED_VERSION, format!("Unsupported protocol version: {version}"))
            .with_data(json!({"supported": supported_versions(), "requested": version})));
    }
    if !meta.and_then(|m| m.client_capabilities).is_some_and(Raw::is_object) {
        return Err(RpcError::new(
            StatusCode::BAD_REQUEST,
            codes::INVALID_PARAMS,
            format!("Invalid params: missing _meta[\"{META_CLIENT_CAPABILITIES}\"]"),
        ));
    }
    expect_header(headers, &METHOD_HEADER, method)?;
    // `Mcp-Name` mirrors what the request names: a tool or prompt by name, a resource by URI, a
    // task by id (SEP-2663).
    let named = match method {
        "tools/call" | "prompts/get" => params.name,
        "resources/read" => params.uri,
        "tasks/get" | "tasks/update" | "tasks/cancel" => params.task_id,
        _ => None,
    };
    if let Some(name) = named.and_then(Raw::as_str) {
        expect_header(headers, &NAME_HEADER, &name)?;
    }
    Ok(())
}

pub(super) fn expect_header<N: AsHeaderName + AsRef<str> + Copy>(headers: &HeaderMap, name: N, expected: &str) -> Result<(), RpcError> {
    let name_text = name.as_ref();
    let mismatch = |what: String| RpcError::new(StatusCode::BAD_REQUEST, codes::HEADER_MISMATCH, format!("Header mismatch: {what}"));
    let Some(raw) = headers.get(name) else {
        return Err(mismatch(format!("missing {name_text} header (expected '{expected}')")));
    };
    let value = raw.to_str().ok().and_then(decode_header_value).ok_or_else(|| mismatch(format!("{name_text} header is not valid")))?;
    if value != expected {
        return Err(mismatch(format!("{name_text} header '{value}' does not match the body ('{expected}')")));
    }
    Ok(())
}

/// SEP-2243's `Mcp-Param-*` rule for a modern `tools/call`: each parameter the tool mirrors in a
/// header and the call gives a value must arrive in that header too (plain, or base64 in the
/// `=?base64?…?=` sentinel), equal to the body's value; a header for a parameter the body lacks
/// is a mismatch as well. Any failure is a HeaderMismatch (400 / -32020).
pub(super) fn check_param_headers(input_schema: &Value, arguments: Option<&Value>, headers: &HeaderMap) -> Result<(), RpcError> {
    for (parameter, suffix) in mirrored_parameters(input_schema) {
        let header = format!("mcp-param-{}", suffix.to_ascii_lowercase());
        let expected = match arguments.and_then(|a| a.get(parameter)) {
            None | Some(Value::Null) => None,
            Some(value) => match mirrored_text(value) {
                Some(text) => Some(text),
                // Only primitives are mirrored; the schema check refuses anything else for them.
                None => continue,
            },
        };
        match expected {
            Some(expected) => expect_header(headers, header.as_str(), &expected)?,
            None if headers.contains_key(header.as_str()) => {
                return Err(RpcError::new(
                    StatusCode::BAD_REQUEST,
                    codes::HEADER_MISMATCH,
                    format!("Header mismatch: {header} header is set but the body has no '{parameter}'"),
                ))
            }
            None => {}
        }
    }
    Ok(())
}
