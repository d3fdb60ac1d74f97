//! The answers the endpoint writes: JSON-RPC success and error envelopes, and the `tools/call`
//! result with its `structuredContent` and toolmesh `_meta`.

use super::era::Era;
use crate::error::Error;
use crate::mcp::codes;
use crate::server::Body;
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// A JSON-RPC error on its way out (serialized as the response's `error`), with the HTTP status
/// it travels with.
#[derive(Serialize)]
pub(super) struct RpcError {
    #[serde(skip)]
    pub(super) status: StatusCode,
    code: i64,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
}

impl RpcError {
    pub(super) fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        RpcError { status, code, message: message.into(), data: None }
    }

    pub(super) fn code(&self) -> i64 {
        self.code
    }

    pub(super) fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub(super) fn invalid_request(what: &str) -> Self {
        RpcError::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, format!("Invalid Request: {what}"))
    }
}

#[derive(Serialize)]
struct Success<'a, R> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    result: &'a R,
}

#[derive(Serialize)]
struct Failure<'a> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    error: &'a RpcError,
}

#[derive(Serialize)]
pub(super) struct CallResult<'a> {
    pub(super) content: [TextContent<'a>; 1],
    #[serde(rename = "structuredContent", skip_serializing_if = "Option::is_none")]
    pub(super) structured: Option<Structured<'a>>,
    #[serde(rename = "isError")]
    pub(super) is_error: bool,
    #[serde(rename = "resultType", skip_serializing_if = "Option::is_none")]
    pub(super) result_type: Option<&'static str>,
    #[serde(rename = "_meta", skip_serializing_if = "ResultMeta::is_empty")]
    pub(super) meta: ResultMeta<'a>,
}

/// The `tools/call` result of a handler that answered in MCP's own shape
/// ([`crate::mcp::content::ToolOutput`]).
#[derive(Serialize)]
pub(super) struct RichCallResult<'a> {
    pub(super) content: Vec<Cow<'a, Value>>,
    #[serde(rename = "structuredContent", skip_serializing_if = "Option::is_none")]
    pub(super) structured: Option<Cow<'a, Value>>,
    #[serde(rename = "isError")]
    pub(super) is_error: bool,
    #[serde(rename = "resultType", skip_serializing_if = "Option::is_none")]
    pub(super) result_type: Option<&'static str>,
    #[serde(rename = "_meta", skip_serializing_if = "ResultMeta::is_empty")]
    pub(super) meta: ResultMeta<'a>,
}

impl<'a> RichCallResult<'a> {
    /// `output` as this era writes it: legacy revisions require an object as `structuredContent`
    /// (another value is wrapped, as for plain values), and a result whose `structuredContent` has
    /// no text beside it gets its serialization as a text item (the spec's back-compat SHOULD).
    pub(super) fn of(era: Era, output: &'a crate::mcp::content::ToolOutput, meta: ResultMeta<'a>) -> Self {
        let mut content: Vec<Cow<'a, Value>> = output.content().iter().map(Cow::Borrowed).collect();
        let structured = output.structured().map(|value| match era {
            Era::Legacy if !value.is_object() => Cow::Owned(serde_json::json!({"result": value})),
            _ => Cow::Borrowed(value),
        });
        if let Some(value) = output.structured().filter(|_| !output.content().iter().any(|item| item["type"] == "text")) {
            content.push(Cow::Owned(crate::mcp::content::text_item(value)));
        }
        let modern = era == Era::Modern;
        RichCallResult { content, structured, is_error: output.is_error(), result_type: modern.then_some("complete"), meta }
    }
}

#[derive(Serialize)]
pub(super) struct TextContent<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) text: &'a str,
}

/// A tool's value as `structuredContent`. Legacy revisions require an object there, so other
/// values are wrapped.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Structured<'a> {
    AsIs(&'a RawValue),
    Wrapped {
        result: &'a RawValue,
    },
    /// The `structuredContent` of a tool error: `{"error": {"code", "message", "data"?}}`.
    ToolError {
        error: ToolErrorContent<'a>,
    },
}

#[derive(Serialize)]
pub(super) struct ToolErrorContent<'a> {
    pub(super) code: &'a str,
    pub(super) message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<&'a Value>,
}

impl<'a> Structured<'a> {
    pub(super) fn of(era: Era, value: &Value, json: &'a RawValue) -> Self {
        match era {
            Era::Legacy if !value.is_object() => Structured::Wrapped { result: json },
            _ => Structured::AsIs(json),
        }
    }
}

#[derive(Serialize)]
pub(super) struct ResultMeta<'a> {
    #[serde(rename = "io.modelcontextprotocol/serverInfo", skip_serializing_if = "Option::is_none")]
    pub(super) server_info: Option<&'a RawValue>,
    #[serde(rename = "dev.toolmesh/error", skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<ErrorMeta<'a>>,
}

impl ResultMeta<'_> {
    fn is_empty(&self) -> bool {
        self.server_info.is_none() && self.error.is_none()
    }
}

/// The mesh error behind an `isError` result or an unknown tool (the `META_ERROR` extension).
#[derive(Serialize)]
pub(super) struct ErrorMeta<'a> {
    code: u32,
    name: &'static str,
    message: &'a str,
    /// A tool error's application code and data.
    #[serde(rename = "appCode", skip_serializing_if = "Option::is_none")]
    app_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
}

impl<'a> ErrorMeta<'a> {
    pub(super) fn of(e: &'a Error) -> Self {
        ErrorMeta { code: e.code(), name: e.kind().name(), message: e.message(), app_code: e.app_code(), data: e.data() }
    }
}

pub(super) fn accepted() -> Response<Body> {
    Response::builder().status(StatusCode::ACCEPTED).body(Body::empty()).expect("static response")
}

pub(super) fn json_ok(id: &RawValue, result: &impl Serialize) -> Response<Body> {
    crate::server::json_response(StatusCode::OK, &Success { jsonrpc: "2.0", id, result })
}

pub(super) fn rpc_error(id: &RawValue, e: RpcError) -> Response<Body> {
    crate::server::json_response(e.status, &Failure { jsonrpc: "2.0", id, error: &e })
}
