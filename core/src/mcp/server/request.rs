//! Reading a JSON-RPC request from the body: typed structs that borrow from it, read leniently.

use super::reply::RpcError;
use crate::mcp::codes;
use http::StatusCode;
use serde::de::{value::MapAccessDeserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

// ---- Reading a request ----------------------------------------------------------------------
//
// Members are read leniently: one of an unexpected type is kept (and then reads as absent, as
// `Value::as_str` and co. made it), never a deserialization error, so it is answered with the
// protocol's error for it (Invalid Request, Invalid params) and only malformed JSON is a parse
// error. Unlike a `Value`, which let the last one win, a member read here that appears twice is
// a parse error; members not read here (`clientInfo`, …) are checked for JSON syntax only.

/// A request to answer.
pub(super) struct Request<'a> {
    /// A string or a number, echoed verbatim.
    pub(super) id: &'a RawValue,
    pub(super) method: Cow<'a, str>,
    pub(super) params: Option<ObjectOr<Params<'a>>>,
}

/// A message that gets no answer but may still do something.
pub(super) enum Notice<'a> {
    /// `notifications/cancelled`: the id (its JSON) of the request the caller gave up on.
    Cancelled(&'a RawValue),
    /// A response to a request of the server's own (see `client_requests.rs`): its id, and its
    /// `result` or its `error`.
    Answer(&'a RawValue, Result<&'a RawValue, &'a RawValue>),
    /// Any other notification.
    Ignored,
}

/// Reads and checks a JSON-RPC message: `Ok(Err(notice))` for one that gets no answer.
pub(super) fn read_request(body: &[u8]) -> Result<Result<Request<'_>, Notice<'_>>, RpcError> {
    // One UTF-8 check of the whole body costs less than serde_json's check of every string. A
    // body that fails it is read as bytes, only for serde_json's own error message.
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<ObjectOr<Envelope>>(text),
        Err(_) => serde_json::from_slice(body),
    };
    let envelope = match parsed {
        Ok(ObjectOr::Object(envelope)) => envelope,
        Ok(ObjectOr::Array) => return Err(RpcError::invalid_request("JSON-RPC batches are not supported")),
        Ok(ObjectOr::Other) => return Err(RpcError::invalid_request("the body must be a JSON-RPC object")),
        Err(e) => return Err(RpcError::new(StatusCode::BAD_REQUEST, codes::PARSE_ERROR, format!("Parse error: {e}"))),
    };
    if envelope.jsonrpc.and_then(Raw::as_str).as_deref() != Some("2.0") {
        return Err(RpcError::invalid_request("jsonrpc must be \"2.0\""));
    }
    let Some(method) = envelope.method.and_then(Raw::as_str) else {
        let answer = match (envelope.result, envelope.error) {
            (Some(result), None) => Ok(result),
            (None, Some(error)) => Err(error),
            (Some(_), Some(_)) => return Err(RpcError::invalid_request("a response has a result or an error, not both")),
            (None, None) => return Err(RpcError::invalid_request("no method")),
        };
        return match envelope.id {
            Some(id) => Ok(Err(Notice::Answer(id.0, answer))),
            None => Err(RpcError::invalid_request("a response needs the id of the request it answers")),
        };
    };
    let Some(id) = envelope.id else {
        let cancelled = match (method.as_ref(), &envelope.params) {
            ("notifications/cancelled", Some(ObjectOr::Object(params))) => params.request_id.filter(|id| id.is_string_or_number()),
            _ => None,
        };
        return Ok(Err(cancelled.map_or(Notice::Ignored, |id| Notice::Cancelled(id.0))));
    };
    if !id.is_string_or_number() {
        return Err(RpcError::invalid_request("id must be a string or an integer"));
    }
    Ok(Ok(Request { id: id.0, method, params: envelope.params }))
}

/// A JSON-RPC message: the members the server reads.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Raw<'a>>,
    #[serde(borrow, default)]
    method: Option<Raw<'a>>,
    /// Absent makes a notification; `null` is an invalid id.
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<Raw<'a>>,
    #[serde(borrow, default)]
    params: Option<ObjectOr<Params<'a>>>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// The `params` members the methods read.
#[derive(Deserialize, Default)]
pub(super) struct Params<'a> {
    /// `tools/call` and `prompts/get`.
    #[serde(borrow, default)]
    pub(super) name: Option<Raw<'a>>,
    /// `tools/call` and `prompts/get`; `null` is the same as absent.
    #[serde(default)]
    pub(super) arguments: Option<Value>,
    /// `resources/read`.
    #[serde(borrow, default)]
    pub(super) uri: Option<Raw<'a>>,
    /// `tools/list` and the other lists; anything but `null` is refused, as this server never
    /// paginates.
    #[serde(default)]
    pub(super) cursor: Option<IgnoredAny>,
    /// `logging/setLevel`.
    #[serde(borrow, default)]
    pub(super) level: Option<Raw<'a>>,
    /// `completion/complete`: what is completed (`{type: "ref/prompt" | "ref/resource", …}`).
    #[serde(rename = "ref", default)]
    pub(super) reference: Option<Value>,
    /// `completion/complete`: the argument being completed (`{name, value}`).
    #[serde(default)]
    pub(super) argument: Option<Value>,
    /// `tools/call` answering input requests (2026-07-28), and `tasks/update`: the client's
    /// answers by key.
    #[serde(rename = "inputResponses", default)]
    pub(super) input_responses: Option<Value>,
    /// `tools/call` answering input requests: the sealed state the earlier answer carried.
    #[serde(rename = "requestState", borrow, default)]
    pub(super) request_state: Option<Raw<'a>>,
    /// `tasks/get`, `tasks/update`, `tasks/cancel`: the task.
    #[serde(rename = "taskId", borrow, default)]
    pub(super) task_id: Option<Raw<'a>>,
    /// `notifications/cancelled`: the request the caller gave up on.
    #[serde(rename = "requestId", borrow, default)]
    pub(super) request_id: Option<Raw<'a>>,
    /// `subscriptions/listen`: what the client opts in to (`{resourceSubscriptions: [uri, …]}`,
    /// `{taskIds: [...]}` of the tasks extension).
    #[serde(default)]
    pub(super) notifications: Option<Value>,
    /// `initialize`.
    #[serde(rename = "protocolVersion", borrow, default)]
    pub(super) protocol_version: Option<Raw<'a>>,
    /// A legacy `initialize`: what the client can do (its session keeps it).
    #[serde(borrow, default)]
    pub(super) capabilities: Option<Raw<'a>>,
    #[serde(rename = "_meta", borrow, default)]
    pub(super) meta: Option<ObjectOr<RequestMeta<'a>>>,
}

impl<'a> Params<'a> {
    pub(super) fn meta(&self) -> Option<&RequestMeta<'a>> {
        match &self.meta {
            Some(ObjectOr::Object(meta)) => Some(meta),
            _ => None,
        }
    }
}

/// The per-request `_meta` members read here (key names as in [`super::META_PROTOCOL_VERSION`] etc.).
#[derive(Deserialize)]
pub(super) struct RequestMeta<'a> {
    /// Present at all, even `null`, it marks a modern request.
    #[serde(rename = "io.modelcontextprotocol/protocolVersion", borrow, default, deserialize_with = "present")]
    pub(super) protocol_version: Option<Raw<'a>>,
    #[serde(rename = "io.modelcontextprotocol/clientCapabilities", borrow, default)]
    pub(super) client_capabilities: Option<Raw<'a>>,
    #[serde(borrow, default)]
    pub(super) traceparent: Option<Raw<'a>>,
    #[serde(borrow, default)]
    pub(super) tracestate: Option<Raw<'a>>,
    #[serde(rename = "dev.toolmesh/deadlineMs", borrow, default)]
    pub(super) deadline_ms: Option<Raw<'a>>,
    /// `tools/call`: the token progress notifications echo (a string or an integer).
    #[serde(rename = "progressToken", borrow, default)]
    pub(super) progress_token: Option<Raw<'a>>,
    /// `tools/call` (modern): the least severe log level the client wants to receive.
    #[serde(rename = "io.modelcontextprotocol/logLevel", borrow, default)]
    pub(super) log_level: Option<Raw<'a>>,
}

/// A member kept as its JSON text, read only as far as the server needs it.
#[derive(Deserialize, Clone, Copy)]
#[serde(transparent)]
pub(super) struct Raw<'a>(#[serde(borrow)] pub(super) &'a RawValue);

impl<'a> Raw<'a> {
    /// The member as a string, or `None` when it is not one.
    pub(super) fn as_str(self) -> Option<Cow<'a, str>> {
        let json = self.0.get();
        match json.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            // Without escapes, the text between the quotes is the string.
            Some(plain) if !plain.contains('\\') => Some(Cow::Borrowed(plain)),
            Some(_) => serde_json::from_str(json).ok().map(Cow::Owned),
            None => None,
        }
    }

    pub(super) fn as_u64(self) -> Option<u64> {
        serde_json::from_str::<Value>(self.0.get()).ok()?.as_u64()
    }

    pub(super) fn is_object(self) -> bool {
        self.0.get().starts_with('{')
    }

    pub(super) fn is_string_or_number(self) -> bool {
        matches!(self.0.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
    }
}

/// For a member whose `null` must not read as its absence (a bare `Option` reads both as `None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A value read only when it is an object; any other value is skipped and noted by kind.
pub(super) enum ObjectOr<T> {
    Object(T),
    Array,
    Other,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOr<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjectOrVisitor(PhantomData))
    }
}

struct ObjectOrVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOrVisitor<T> {
    type Value = ObjectOr<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(ObjectOr::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(ObjectOr::Array)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(ObjectOr::Other)
    }
}
