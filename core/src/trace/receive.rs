//! Reading an OTLP/HTTP `ExportTraceServiceRequest` (protobuf) that someone sent: the
//! registry's trace store takes agents' spans this way. The field numbers are the encoder's
//! ([`super::otlp::field`]); anything else an SDK may send (events, links, dropped counts,
//! fields of later OTLP versions) is skipped by its wire type. Malformed input is an error that
//! says where, never a panic: every read is bounds-checked.
//!
//! A request is read in up to three steps, each as late as it can be: [`check_export_request`]
//! checks all of it and keeps nothing (what a store does on arrival); [`index_export_request`]
//! keeps of each span only what listing a store of encoded requests needs (ids, times, failed or
//! not, where it lies); [`decode_indexed_span`] makes one of them a [`ReceivedSpan`], if anyone
//! asks. All three check alike: a request that checks indexes, and its spans decode.

use super::otlp::{field, FIXED32, FIXED64, LENGTH_DELIMITED, VARINT};
use crate::registry_api::TraceSpanKind;
use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

/// One span as it was received, with the `service.name` of the process that sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    pub service: Arc<str>,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: TraceSpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// Every attribute as text; the keys toolmesh writes are not copied (see [`KNOWN_KEYS`]).
    pub attributes: Vec<(Cow<'static, str>, String)>,
    /// The status message of a failed span (`"error"` when it gave none).
    pub error: Option<String>,
}

/// A span of a request read by [`index_export_request`]: what is needed to keep, bound, list
/// and evict it without decoding it, and where its `Span` message lies in the request.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexedSpan {
    pub service: Arc<str>,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub failed: bool,
    /// The bytes of its `Span` message in the request.
    pub at: Range<usize>,
}

/// The service a span's resource does not name (OpenTelemetry's own default).
const UNKNOWN_SERVICE: &str = "unknown_service";
/// How deep arrays and key-value lists may nest in an attribute value.
const MAX_VALUE_DEPTH: usize = 8;

/// How many spans an `ExportTraceServiceRequest` holds, or what is wrong with it: every field is
/// checked as [`index_export_request`] checks it, and nothing is kept or copied.
pub fn check_export_request(body: &[u8]) -> Result<usize, String> {
    let mut spans = 0;
    each_span(body, |_, span| {
        read_span(span, None)?;
        spans += 1;
        Ok(())
    })?;
    Ok(spans)
}

/// The spans of an `ExportTraceServiceRequest` as [`IndexedSpan`]s, or what is wrong with it:
/// every field is checked as decoding checks it (a request that indexes decodes span by span),
/// without copying a name, an attribute or a message.
pub fn index_export_request(body: &[u8]) -> Result<Vec<IndexedSpan>, String> {
    let mut spans = Vec::new();
    each_span(body, |service, span| {
        let head = read_span(span, None)?;
        // `span` is a slice of `body`: its place in it, by address (no unsafe code needed).
        let start = span.as_ptr() as usize - body.as_ptr() as usize;
        spans.push(IndexedSpan {
            service: service.clone(),
            trace_id: head.trace_id,
            span_id: head.span_id,
            parent_span_id: head.parent_span_id,
            start_unix_nano: head.start_unix_nano,
            end_unix_nano: head.end_unix_nano,
            failed: head.failed,
            at: start..start + span.len(),
        });
        Ok(())
    })?;
    Ok(spans)
}

/// The span `span` indexes in `body`, the request [`index_export_request`] indexed.
pub fn decode_indexed_span(body: &[u8], span: &IndexedSpan) -> Result<ReceivedSpan, String> {
    let data = body.get(span.at.clone()).ok_or_else(|| format!("bytes {:?} are not within the {} of the request", span.at, body.len()))?;
    decode_span(data, &span.service)
}

/// Calls `each` with every `Span` message of the request and the `service.name` of its resource.
fn each_span<'a>(body: &'a [u8], mut each: impl FnMut(&Arc<str>, &'a [u8]) -> Result<(), String>) -> Result<(), String> {
    for (index, resource_spans) in Reader::new(body).all_messages(field::RESOURCE_SPANS, "ExportTraceServiceRequest")?.enumerate() {
        let at = |what: String| format!("resource_spans[{index}]: {what}");
        let resource_spans = resource_spans?;
        let mut service: Arc<str> = Arc::from(UNKNOWN_SERVICE);
        let mut scopes = Vec::new();
        let mut reader = Reader::new(resource_spans);
        while let Some((number, value)) = reader.next().map_err(at)? {
            match number {
                field::resource_spans::RESOURCE => {
                    let resource = value.bytes("ResourceSpans.resource").map_err(at)?;
                    for attribute in Reader::new(resource).all_messages(field::RESOURCE_ATTRIBUTES, "Resource").map_err(at)? {
                        let (key, text) = key_value(attribute?, 0).map_err(|e| at(format!("resource: {e}")))?;
                        if key == "service.name" {
                            service = Arc::from(text);
                        }
                    }
                }
                field::resource_spans::SCOPE_SPANS => scopes.push(value.bytes("ResourceSpans.scope_spans").map_err(at)?),
                _ => {}
            }
        }
        for (scope_index, scope_spans) in scopes.into_iter().enumerate() {
            for (span_index, span) in
                Reader::new(scope_spans).all_messages(field::scope_spans::SPANS, "ScopeSpans").map_err(at)?.enumerate()
            {
                span.and_then(|span| each(&service, span))
                    .map_err(|e| at(format!("scope_spans[{scope_index}].spans[{span_index}]: {e}")))?;
            }
        }
    }
    Ok(())
}

/// What every read of a span finds: its ids and times, and whether it failed.
struct Head {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    start_unix_nano: u64,
    end_unix_nano: u64,
    failed: bool,
}

/// What decoding a span copies besides its [`Head`].
struct Detail {
    name: String,
    kind: TraceSpanKind,
    attributes: Vec<(Cow<'static, str>, String)>,
    error: Option<String>,
}

fn decode_span(data: &[u8], service: &Arc<str>) -> Result<ReceivedSpan, String> {
    let mut detail = Detail { name: String::new(), kind: TraceSpanKind::Internal, attributes: Vec::new(), error: None };
    let head = read_span(data, Some(&mut detail))?;
    Ok(ReceivedSpan {
        service: service.clone(),
        trace_id: head.trace_id,
        span_id: head.span_id,
        parent_span_id: head.parent_span_id,
        name: detail.name,
        kind: detail.kind,
        start_unix_nano: head.start_unix_nano,
        end_unix_nano: head.end_unix_nano,
        attributes: detail.attributes,
        error: detail.error,
    })
}

/// Reads and checks every field of a `Span`, copying its name, kind, attributes and status
/// message into `detail` when there is one.
fn read_span(data: &[u8], mut detail: Option<&mut Detail>) -> Result<Head, String> {
    use field::span;
    let mut trace_id = None;
    let mut span_id = None;
    let mut parent_span_id = None;
    let (mut start_unix_nano, mut end_unix_nano) = (0, 0);
    let mut failed = false;
    let mut reader = Reader::new(data);
    while let Some((number, value)) = reader.next()? {
        match number {
            span::TRACE_ID => trace_id = Some(id::<16>(value.bytes("trace_id")?, "trace_id")?),
            span::SPAN_ID => span_id = Some(id::<8>(value.bytes("span_id")?, "span_id")?),
            // Empty: a root span.
            span::PARENT_SPAN_ID => {
                let bytes = value.bytes("parent_span_id")?;
                parent_span_id = (!bytes.is_empty()).then(|| id::<8>(bytes, "parent_span_id")).transpose()?;
            }
            span::NAME => {
                let name = value.bytes("name")?;
                match detail.as_deref_mut() {
                    Some(detail) => detail.name = text(name, "name")?.to_owned(),
                    None => check_text(name, "name")?,
                }
            }
            // SPAN_KIND_SERVER, CONSUMER; CLIENT, PRODUCER; the rest (INTERNAL, UNSPECIFIED).
            span::KIND => {
                let kind = match value.varint("kind")? {
                    2 | 5 => TraceSpanKind::Server,
                    3 | 4 => TraceSpanKind::Client,
                    _ => TraceSpanKind::Internal,
                };
                if let Some(detail) = detail.as_deref_mut() {
                    detail.kind = kind;
                }
            }
            span::START_TIME_UNIX_NANO => start_unix_nano = value.fixed64("start_time_unix_nano")?,
            span::END_TIME_UNIX_NANO => end_unix_nano = value.fixed64("end_time_unix_nano")?,
            span::ATTRIBUTES => {
                let attribute = value.bytes("attributes")?;
                match detail.as_deref_mut() {
                    Some(detail) => detail.attributes.push(key_value(attribute, 0)?),
                    None => check_key_value(attribute, 0)?,
                }
            }
            span::STATUS => {
                let error = failure(value.bytes("status")?)?;
                failed = error.is_some();
                if let Some(detail) = detail.as_deref_mut() {
                    detail.error = error.map(str::to_owned);
                }
            }
            _ => {}
        }
    }
    let trace_id = trace_id.ok_or("no trace_id")?;
    let span_id = span_id.ok_or("no span_id")?;
    if end_unix_nano < start_unix_nano {
        return Err(format!("it ends ({end_unix_nano}) before it starts ({start_unix_nano})"));
    }
    Ok(Head { trace_id, span_id, parent_span_id, start_unix_nano, end_unix_nano, failed })
}

/// A trace or span id: exactly `N` bytes, not all zero (the W3C and OTLP rule).
fn id<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], String> {
    let id: [u8; N] = bytes.try_into().map_err(|_| format!("{what} has {} bytes; it must have {N}", bytes.len()))?;
    if id == [0; N] {
        return Err(format!("{what} is all zeros, which is not a valid id"));
    }
    Ok(id)
}

fn text<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))
}

/// Whether `bytes` are UTF-8, as [`text`] finds, with ASCII (almost every name and value) found
/// in line.
#[inline]
fn check_text(bytes: &[u8], what: &str) -> Result<(), String> {
    if bytes.is_ascii() {
        return Ok(());
    }
    text(bytes, what).map(drop)
}

/// The message of a `Status` whose code is ERROR; `None` for OK or unset.
fn failure(data: &[u8]) -> Result<Option<&str>, String> {
    let (mut message, mut code) = ("", 0);
    let mut reader = Reader::new(data);
    while let Some((number, value)) = reader.next()? {
        match number {
            field::status::MESSAGE => message = text(value.bytes("status.message")?, "status.message")?,
            field::status::CODE => code = value.varint("status.code")?,
            _ => {}
        }
    }
    Ok((code == field::status::CODE_ERROR).then_some(if message.is_empty() { "error" } else { message }))
}

/// The attribute keys of toolmesh's own spans: a span received carries a dozen, and each is
/// kept as one of these rather than as a new string.
const KNOWN_KEYS: [&str; 22] = [
    "mcp.method.name",
    "gen_ai.tool.name",
    "gen_ai.operation.name",
    "gen_ai.prompt.name",
    "mcp.protocol.version",
    "jsonrpc.request.id",
    "network.transport",
    "network.protocol.name",
    "client.address",
    "client.port",
    "server.address",
    "server.port",
    "toolmesh.peer.identity",
    "toolmesh.peer.agent",
    "error.type",
    "rpc.response.status_code",
    "toolmesh.registry.operation",
    "http.request.method",
    "url.template",
    "toolmesh.topology.version",
    "toolmesh.registry.missed_heartbeats",
    "service.name",
];

fn attribute_key(bytes: &[u8]) -> Result<Cow<'static, str>, String> {
    match KNOWN_KEYS.iter().find(|known| known.as_bytes() == bytes) {
        Some(known) => Ok(Cow::Borrowed(known)),
        None => text(bytes, "an attribute key").map(|key| Cow::Owned(key.to_owned())),
    }
}

/// A `KeyValue` as text.
fn key_value(data: &[u8], depth: usize) -> Result<(Cow<'static, str>, String), String> {
    let (mut key, mut value) = (Cow::Borrowed(""), String::new());
    let mut reader = Reader::new(data);
    while let Some((number, field_value)) = reader.next()? {
        match number {
            field::key_value::KEY => key = attribute_key(field_value.bytes("attribute key")?)?,
            field::key_value::VALUE => value = any_value(field_value.bytes("attribute value")?, depth)?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// An `AnyValue` as text: strings as they are, numbers in decimal, bytes in hex, arrays as
/// `[a, b]` and key-value lists as `{k: v}`.
fn any_value(data: &[u8], depth: usize) -> Result<String, String> {
    use field::any_value::*;
    if depth > MAX_VALUE_DEPTH {
        return Err(format!("an attribute value nests deeper than {MAX_VALUE_DEPTH} levels"));
    }
    let mut out = String::new();
    let mut reader = Reader::new(data);
    while let Some((number, value)) = reader.next()? {
        out = match number {
            STRING => text(value.bytes("string_value")?, "a string attribute")?.to_owned(),
            BOOL => (value.varint("bool_value")? != 0).to_string(),
            INT => (value.varint("int_value")? as i64).to_string(),
            DOUBLE => f64::from_bits(value.fixed64("double_value")?).to_string(),
            BYTES => value.bytes("bytes_value")?.iter().map(|b| format!("{b:02x}")).collect(),
            ARRAY => {
                let items: Result<Vec<String>, String> = Reader::new(value.bytes("array_value")?)
                    .all_messages(LIST_VALUES, "ArrayValue")?
                    .map(|item| any_value(item?, depth + 1))
                    .collect();
                format!("[{}]", items?.join(", "))
            }
            KVLIST => {
                let pairs: Result<Vec<String>, String> = Reader::new(value.bytes("kvlist_value")?)
                    .all_messages(LIST_VALUES, "KeyValueList")?
                    .map(|pair| key_value(pair?, depth + 1).map(|(k, v)| format!("{k}: {v}")))
                    .collect();
                format!("{{{}}}", pairs?.join(", "))
            }
            _ => continue,
        };
    }
    Ok(out)
}

/// Checks a `KeyValue` as [`key_value`] reads it, copying nothing.
fn check_key_value(data: &[u8], depth: usize) -> Result<(), String> {
    // Nearly every attribute is a short key and then a short value, and is read straight through.
    if let Some((key, rest)) = short_field(data, field::key_value::KEY) {
        if let Some((value, [])) = short_field(rest, field::key_value::VALUE) {
            check_text(key, "an attribute key")?;
            return check_any_value(value, depth);
        }
    }
    let mut reader = Reader::new(data);
    while let Some((number, field_value)) = reader.next()? {
        match number {
            field::key_value::KEY => check_text(field_value.bytes("attribute key")?, "an attribute key")?,
            field::key_value::VALUE => check_any_value(field_value.bytes("attribute value")?, depth)?,
            _ => {}
        }
    }
    Ok(())
}

/// Checks an `AnyValue` as [`any_value`] reads it, copying nothing.
fn check_any_value(data: &[u8], depth: usize) -> Result<(), String> {
    use field::any_value::*;
    if depth > MAX_VALUE_DEPTH {
        return Err(format!("an attribute value nests deeper than {MAX_VALUE_DEPTH} levels"));
    }
    // Most values are one short string.
    if let Some((string, [])) = short_field(data, STRING) {
        return check_text(string, "a string attribute");
    }
    let mut reader = Reader::new(data);
    while let Some((number, value)) = reader.next()? {
        match number {
            STRING => check_text(value.bytes("string_value")?, "a string attribute")?,
            BOOL => _ = value.varint("bool_value")?,
            INT => _ = value.varint("int_value")?,
            DOUBLE => _ = value.fixed64("double_value")?,
            BYTES => _ = value.bytes("bytes_value")?,
            ARRAY => {
                for item in Reader::new(value.bytes("array_value")?).all_messages(LIST_VALUES, "ArrayValue")? {
                    check_any_value(item?, depth + 1)?;
                }
            }
            KVLIST => {
                for pair in Reader::new(value.bytes("kvlist_value")?).all_messages(LIST_VALUES, "KeyValueList")? {
                    check_key_value(pair?, depth + 1)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A length-delimited field `number` at the start of `data` whose tag and length take a byte
/// each (fewer than 128 bytes), and what follows it; `None` for anything else. The reading of the
/// common case that [`Reader`] would do field by field, in one straight line.
#[inline(always)]
fn short_field(data: &[u8], number: u32) -> Option<(&[u8], &[u8])> {
    let [tag, length, rest @ ..] = data else { return None };
    if u32::from(*tag) != number << 3 | u32::from(LENGTH_DELIMITED) || *length >= 0x80 {
        return None;
    }
    (usize::from(*length) <= rest.len()).then(|| rest.split_at(usize::from(*length)))
}

/// One field's value as the wire format carries it.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32,
    Bytes(&'a [u8]),
}

impl<'a> Wire<'a> {
    fn bytes(self, what: &str) -> Result<&'a [u8], String> {
        match self {
            Wire::Bytes(bytes) => Ok(bytes),
            _ => Err(format!("{what} is not length-delimited")),
        }
    }

    fn varint(self, what: &str) -> Result<u64, String> {
        match self {
            Wire::Varint(value) => Ok(value),
            _ => Err(format!("{what} is not a varint")),
        }
    }

    fn fixed64(self, what: &str) -> Result<u64, String> {
        match self {
            Wire::Fixed64(value) => Ok(value),
            _ => Err(format!("{what} is not a fixed64")),
        }
    }
}

/// The fields of one message, in order.
struct Reader<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, offset: 0 }
    }

    /// The next field, `None` at the end of the message. Inlined, with its rare turns out of
    /// line: a batch of spans is hundreds of fields per span, read on arrival.
    #[inline(always)]
    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, String> {
        if self.offset == self.data.len() {
            return Ok(None);
        }
        let at = self.offset;
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX) {
            return Err(invalid_field_number(number, at));
        }
        let number = number as u32;
        let value = match (key & 7) as u8 {
            VARINT => Wire::Varint(self.varint()?),
            FIXED64 => Wire::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().expect("took 8 bytes"))),
            LENGTH_DELIMITED => {
                let length = self.varint()?;
                Wire::Bytes(self.take(length)?)
            }
            FIXED32 => {
                self.take(4)?;
                Wire::Fixed32
            }
            other => return Err(unused_wire_type(number, other, at)),
        };
        Ok(Some((number, value)))
    }

    /// Every field `number` of the message (a `repeated` message field), as the bytes of each.
    fn all_messages(self, number: u32, message: &'static str) -> Result<impl Iterator<Item = Result<&'a [u8], String>>, String> {
        let mut reader = self;
        let mut found = Vec::new();
        while let Some((n, value)) = reader.next().map_err(|e| format!("{message}: {e}"))? {
            if n == number {
                found.push(value.bytes(message).map_err(|e| format!("{message} field {number}: {e}")));
            }
        }
        Ok(found.into_iter())
    }

    /// A varint: one byte (tags, short lengths, small numbers) in line, longer ones out of it.
    #[inline]
    fn varint(&mut self) -> Result<u64, String> {
        match self.data.get(self.offset) {
            Some(&byte) if byte < 0x80 => {
                self.offset += 1;
                Ok(u64::from(byte))
            }
            _ => self.long_varint(),
        }
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.data.get(self.offset) else { return Err(ends_inside_a_varint(self.offset)) };
            self.offset += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(format!("a varint ending at byte {} is longer than 10 bytes", self.offset))
    }

    #[inline]
    fn take(&mut self, length: u64) -> Result<&'a [u8], String> {
        let left = self.data.len() - self.offset;
        if length > left as u64 {
            return Err(claims_too_much(self.offset, length, left));
        }
        let bytes = &self.data[self.offset..self.offset + length as usize];
        self.offset += length as usize;
        Ok(bytes)
    }
}

#[cold]
fn invalid_field_number(number: u64, at: usize) -> String {
    format!("field number {number} at byte {at} is not valid")
}

#[cold]
fn unused_wire_type(number: u32, wire_type: u8, at: usize) -> String {
    format!("field {number} at byte {at} has wire type {wire_type}, which OTLP does not use")
}

#[cold]
fn ends_inside_a_varint(at: usize) -> String {
    format!("the message ends inside a varint at byte {at}")
}

#[cold]
fn claims_too_much(at: usize, length: u64, left: usize) -> String {
    format!("a field at byte {at} claims {length} bytes but only {left} are left")
}

#[cfg(test)]
mod tests {
    use super::super::otlp::{export_request, resource, SpanKind, SpanRecord, Value};
    use super::*;
    use proptest::prelude::*;

    fn record(n: u8, parent: Option<u8>, error: Option<&str>) -> SpanRecord {
        SpanRecord {
            trace_id: [7; 16],
            span_id: [n; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            trace_state: Some("k=v".into()),
            name: format!("tools/call t{n}"),
            kind: if n.is_multiple_of(2) { SpanKind::Server } else { SpanKind::Client },
            start_unix_nanos: 1_000 + u64::from(n),
            end_unix_nanos: 2_000 + u64::from(n),
            attributes: vec![("mcp.method.name", Value::from("tools/call")), ("server.port", Value::Int(-8443))],
            error: error.map(str::to_owned),
        }
    }

    /// Every span of a request, decoded.
    fn decode_export_request(body: &[u8]) -> Result<Vec<ReceivedSpan>, String> {
        let mut spans = Vec::new();
        each_span(body, |service, span| {
            spans.push(decode_span(span, service)?);
            Ok(())
        })?;
        Ok(spans)
    }

    fn request() -> Vec<u8> {
        let resource = resource(&[("host.name".into(), "h".into()), ("service.name".into(), "front".into())]);
        export_request(&resource, ("toolmesh", "0"), &[record(1, None, None), record(2, Some(1), Some("it broke"))])
    }

    #[test]
    fn what_the_encoder_writes_reads_back_with_its_service() {
        let spans = decode_export_request(&request()).unwrap();
        assert_eq!(spans.len(), 2);
        let (root, child) = (&spans[0], &spans[1]);
        assert_eq!((&*root.service, root.trace_id, root.span_id, root.parent_span_id), ("front", [7; 16], [1; 8], None));
        assert_eq!(
            (root.kind, root.name.as_str(), root.start_unix_nano, root.end_unix_nano),
            (TraceSpanKind::Client, "tools/call t1", 1001, 2001)
        );
        assert_eq!(root.attributes, [("mcp.method.name".into(), "tools/call".to_owned()), ("server.port".into(), "-8443".to_owned())]);
        // The keys toolmesh writes are not copied for every span; others are read as they come.
        assert!(root.attributes.iter().all(|(key, _)| matches!(key, Cow::Borrowed(_))));
        let mut other = record(3, None, None);
        other.attributes = vec![("custom.key", "v".into())];
        let other = &decode_export_request(&export_request(&[], ("s", "1"), &[other])).unwrap()[0];
        assert!(matches!(&other.attributes[0].0, Cow::Owned(key) if key == "custom.key"), "{other:?}");
        assert_eq!(root.error, None);
        assert_eq!((child.parent_span_id, child.kind, child.error.as_deref()), (Some([1; 8]), TraceSpanKind::Server, Some("it broke")));
        assert_eq!(decode_export_request(&[]).unwrap(), []);
    }

    #[test]
    fn values_of_every_type_and_unknown_fields_are_read() {
        // A KeyValue with an array of [bool true, double 1.5, bytes 0xab01], then a span field
        // of a later OTLP version (number 16, fixed32) that must be skipped.
        let array = [0x0a, 0x02, 0x10, 0x01, 0x0a, 0x09, 0x21, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x0a, 0x04, 0x3a, 0x02, 0xab, 0x01];
        let mut any = vec![0x2a, array.len() as u8];
        any.extend(array);
        let mut kv = vec![0x0a, 0x01, b'a', 0x12, any.len() as u8];
        kv.extend(any);
        let mut span = vec![0x0a, 16];
        span.extend([1; 16]);
        span.extend([0x12, 8]);
        span.extend([2; 8]);
        span.extend([0x22, 0]); // an empty parent: a root
        span.extend([0x4a, kv.len() as u8]);
        span.extend(kv);
        span.extend([0x85, 0x01, 1, 2, 3, 4]);
        let spans = decode_export_request(&wrap(&span)).unwrap();
        assert_eq!(spans[0].attributes, [("a".into(), "[true, 1.5, ab01]".to_owned())]);
        assert_eq!((&*spans[0].service, spans[0].parent_span_id, spans[0].kind), (UNKNOWN_SERVICE, None, TraceSpanKind::Internal));
    }

    /// `span` inside a ScopeSpans inside a ResourceSpans inside a request.
    fn wrap(span: &[u8]) -> Vec<u8> {
        let nest = |number: u8, inner: &[u8]| {
            let mut out = vec![number << 3 | 2];
            let mut length = inner.len();
            while length >= 0x80 {
                out.push(length as u8 | 0x80);
                length >>= 7;
            }
            out.push(length as u8);
            out.extend(inner);
            out
        };
        nest(1, &nest(2, &nest(2, span)))
    }

    #[test]
    fn malformed_requests_are_refused_saying_where() {
        let valid = request();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (valid[..valid.len() - 3].to_vec(), "claims"),
            (vec![0x0a, 0xff], "ends inside a varint"),
            (vec![0x0b], "wire type 3"),
            (wrap(&[0x0a, 3, 1, 2, 3]), "trace_id has 3 bytes; it must have 16"),
            (wrap(&[0x12, 8, 1, 1, 1, 1, 1, 1, 1, 1]), "no trace_id"),
            (wrap(&[0x0a, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), "trace_id is all zeros"),
            (wrap(&[0x2a, 2, 0xff, 0xfe]), "name is not UTF-8"),
            (wrap(&[0x28, 1]), "name is not length-delimited"),
        ];
        for (body, says) in cases {
            let e = decode_export_request(&body).unwrap_err();
            assert!(e.contains(says), "{e:?} should say {says:?}");
        }
        let e = decode_export_request(&wrap(&[0x0a, 3, 1, 2, 3])).unwrap_err();
        assert!(e.starts_with("resource_spans[0]: scope_spans[0].spans[0]: "), "{e}");
    }

    #[test]
    fn nesting_past_the_limit_is_refused_not_followed() {
        let mut value = vec![0x0a, 0x01, b'x'];
        for _ in 0..40 {
            // AnyValue { array_value = ArrayValue { values = [value] } }
            let mut array = vec![0x0a, value.len() as u8];
            array.extend(&value);
            value = vec![0x2a, array.len() as u8];
            value.extend(array);
            if value.len() > 100 {
                break;
            }
        }
        let mut kv = vec![0x0a, 0x01, b'k', 0x12, value.len() as u8];
        kv.extend(value);
        let mut span = vec![0x0a, 16];
        span.extend([1; 16]);
        span.extend([0x12, 8]);
        span.extend([2; 8]);
        span.extend([0x4a, kv.len() as u8]);
        span.extend(kv);
        let e = decode_export_request(&wrap(&span)).unwrap_err();
        assert!(e.contains("nests deeper than 8"), "{e}");
    }

    #[test]
    fn an_indexed_request_decodes_span_by_span_to_what_decoding_it_whole_gives() {
        let mut body = request();
        // A second resource, as a batch of another process would carry (requests concatenate).
        let other = resource(&[("service.name".into(), "back".into())]);
        body.extend(export_request(&other, ("toolmesh", "0"), &[record(3, Some(2), None)]));
        let whole = decode_export_request(&body).unwrap();
        let indexed = index_export_request(&body).unwrap();
        assert_eq!(indexed.len(), 3);
        for (index, span) in indexed.iter().zip(&whole) {
            assert_eq!(
                (&index.service, index.trace_id, index.span_id, index.parent_span_id),
                (&span.service, span.trace_id, span.span_id, span.parent_span_id)
            );
            assert_eq!(
                (index.start_unix_nano, index.end_unix_nano, index.failed),
                (span.start_unix_nano, span.end_unix_nano, span.error.is_some())
            );
            assert_eq!(&decode_indexed_span(&body, index).unwrap(), span);
        }
        assert_eq!(&*indexed[2].service, "back");
        let e = decode_indexed_span(&body[..10], &indexed[2]).unwrap_err();
        assert!(e.contains("not within"), "{e}");
    }

    proptest! {
        /// Whatever arrives, the decoder answers: spans or an error, never a panic.
        #[test]
        fn any_bytes_and_any_corruption_of_a_valid_request_are_answered(
            noise in proptest::collection::vec(any::<u8>(), 0..300),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let _ = decode_export_request(&noise);
            let mut corrupt = request();
            for (at, byte) in flips {
                let i = at.index(corrupt.len());
                corrupt[i] = byte;
            }
            let _ = decode_export_request(&corrupt);
        }

        /// Checking and indexing refuse what decoding refuses, with the same words, and keep the
        /// rest.
        #[test]
        fn indexing_and_decoding_agree_on_every_request(
            noise in proptest::collection::vec(any::<u8>(), 0..300),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut corrupt = request();
            for (at, byte) in flips {
                let i = at.index(corrupt.len());
                corrupt[i] = byte;
            }
            for body in [noise, corrupt] {
                match (decode_export_request(&body), index_export_request(&body)) {
                    (Ok(spans), Ok(indexed)) => {
                        prop_assert_eq!(check_export_request(&body), Ok(spans.len()));
                        let again: Vec<ReceivedSpan> = indexed.iter().map(|i| decode_indexed_span(&body, i).unwrap()).collect();
                        prop_assert_eq!(spans, again);
                    }
                    (Err(decoding), Err(indexing)) => {
                        prop_assert_eq!(check_export_request(&body), Err(indexing.clone()));
                        prop_assert_eq!(decoding, indexing);
                    }
                    (decoded, indexed) => prop_assert!(false, "decoding gave {:?}, indexing {:?}", decoded, indexed),
                }
            }
        }
    }
}
