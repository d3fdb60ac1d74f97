//! The OTLP `ExportTraceServiceRequest` in protobuf, written by hand: the few messages and
//! fields a span needs (opentelemetry-proto's `trace/v1/trace.proto`, `common/v1/common.proto`,
//! `resource/v1/resource.proto`), with their field numbers. docs/tracing.md says why not a crate.

use std::borrow::Cow;
use std::sync::Arc;

/// A finished span, as it is exported.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub trace_state: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, Value)>,
    /// `Some` marks the span failed (status `ERROR`), with this message.
    pub error: Option<String>,
}

/// `Span.SpanKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// An attribute's value (`AnyValue`). Most of a span's values are constants (`tcp`, `http`,
/// `execute_tool`, the protocol version): those are borrowed, not copied for every span; those
/// of a connection or a peer (its address, its identity) are shared, not copied.
#[derive(Debug, Clone)]
pub enum Value {
    Str(Cow<'static, str>),
    Shared(Arc<str>),
    Int(i64),
}

impl Value {
    /// `text` borrowed when it is one of `known` (the values written every day), else copied.
    pub fn known_or_owned<'a>(text: &str, known: impl IntoIterator<Item = &'a &'static str>) -> Value {
        match known.into_iter().find(|known| **known == text) {
            Some(known) => Value::from(*known),
            None => Value::from(text.to_owned()),
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            Value::Shared(text) => Some(text),
            Value::Int(_) => None,
        }
    }
}

/// Equal when they hold the same text or number, however it is held.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a == b,
            (a, b) => a.as_str().is_some_and(|a| b.as_str() == Some(a)),
        }
    }
}

impl From<Arc<str>> for Value {
    fn from(text: Arc<str>) -> Self {
        Value::Shared(text)
    }
}

impl From<&'static str> for Value {
    fn from(text: &'static str) -> Self {
        Value::Str(Cow::Borrowed(text))
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Str(Cow::Owned(text))
    }
}

impl From<i64> for Value {
    fn from(number: i64) -> Self {
        Value::Int(number)
    }
}

/// The field numbers of the OTLP messages, from opentelemetry-proto (`collector/trace/v1`,
/// `trace/v1`, `common/v1`, `resource/v1`): written here, read by [`super::receive`].
pub(super) mod field {
    /// `ExportTraceServiceRequest`
    pub const RESOURCE_SPANS: u32 = 1;
    /// `ResourceSpans`
    pub mod resource_spans {
        pub const RESOURCE: u32 = 1;
        pub const SCOPE_SPANS: u32 = 2;
    }
    /// `Resource`
    pub const RESOURCE_ATTRIBUTES: u32 = 1;
    /// `ScopeSpans`
    pub mod scope_spans {
        pub const SCOPE: u32 = 1;
        pub const SPANS: u32 = 2;
    }
    /// `InstrumentationScope`
    pub mod scope {
        pub const NAME: u32 = 1;
        pub const VERSION: u32 = 2;
    }
    /// `Span`
    pub mod span {
        pub const TRACE_ID: u32 = 1;
        pub const SPAN_ID: u32 = 2;
        pub const TRACE_STATE: u32 = 3;
        pub const PARENT_SPAN_ID: u32 = 4;
        pub const NAME: u32 = 5;
        pub const KIND: u32 = 6;
        pub const START_TIME_UNIX_NANO: u32 = 7;
        pub const END_TIME_UNIX_NANO: u32 = 8;
        pub const ATTRIBUTES: u32 = 9;
        pub const STATUS: u32 = 15;
    }
    /// `Status`
    pub mod status {
        pub const MESSAGE: u32 = 2;
        pub const CODE: u32 = 3;
        /// `StatusCode.STATUS_CODE_ERROR` (unset is 0, left out).
        pub const CODE_ERROR: u64 = 2;
    }
    /// `KeyValue`
    pub mod key_value {
        pub const KEY: u32 = 1;
        pub const VALUE: u32 = 2;
    }
    /// `AnyValue` (`ArrayValue` and `KeyValueList` hold theirs at 1)
    pub mod any_value {
        pub const STRING: u32 = 1;
        pub const BOOL: u32 = 2;
        pub const INT: u32 = 3;
        pub const DOUBLE: u32 = 4;
        pub const ARRAY: u32 = 5;
        pub const KVLIST: u32 = 6;
        pub const BYTES: u32 = 7;
        pub const LIST_VALUES: u32 = 1;
    }
}

use field::{any_value, key_value, resource_spans, scope as scope_field, scope_spans, span as span_field, status};

/// The `Resource` message of a process: its attributes, encoded once.
pub fn resource(attributes: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in attributes {
        message(&mut out, field::RESOURCE_ATTRIBUTES, |kv| encode_key_value(kv, key, &Value::Str(Cow::Owned(value.clone()))));
    }
    out
}

/// An `ExportTraceServiceRequest` of `spans`, from the process whose encoded `Resource` is
/// `resource`, under the instrumentation scope `scope` (`name`, `version`).
pub fn export_request(resource: &[u8], scope: (&str, &str), spans: &[SpanRecord]) -> Vec<u8> {
    let mut encoded = Vec::new();
    for span in spans {
        append_span(&mut encoded, span);
    }
    let mut out = head(resource, scope, encoded.len());
    out.extend_from_slice(&encoded);
    out
}

/// Appends `span` to `out` as one `ScopeSpans.spans` field: a batch is its spans so appended,
/// each as it ends, after the [`head`] written once the batch is complete.
pub fn append_span(out: &mut Vec<u8>, span: &SpanRecord) {
    let most = most_bytes(span);
    out.reserve(most);
    sized_message(out, scope_spans::SPANS, most, |s| encode_span(s, span));
}

/// The bytes of an `ExportTraceServiceRequest` before its spans (`spans` bytes of
/// [`append_span`]s): its one `ResourceSpans` with `resource`, and that one's `ScopeSpans` with
/// `scope`, their lengths counting the spans that follow.
pub fn head(resource: &[u8], scope: (&str, &str), spans: usize) -> Vec<u8> {
    let mut scope_message = Vec::with_capacity(4 + scope.0.len() + scope.1.len());
    string_field(&mut scope_message, scope_field::NAME, scope.0);
    string_field(&mut scope_message, scope_field::VERSION, scope.1);
    let scope_spans = 1 + varint_length(scope_message.len()) + scope_message.len() + spans;
    let resource_spans = 1 + varint_length(resource.len()) + resource.len() + 1 + varint_length(scope_spans) + scope_spans;
    let mut out = Vec::with_capacity(head_room(resource, scope));
    tag(&mut out, field::RESOURCE_SPANS, LENGTH_DELIMITED);
    varint(&mut out, resource_spans as u64);
    bytes_field(&mut out, resource_spans::RESOURCE, resource);
    tag(&mut out, resource_spans::SCOPE_SPANS, LENGTH_DELIMITED);
    varint(&mut out, scope_spans as u64);
    bytes_field(&mut out, scope_spans::SCOPE, &scope_message);
    out
}

/// At least the bytes of any [`head`] of `resource` and `scope`: each of its six tags and
/// lengths at most 11 bytes.
pub fn head_room(resource: &[u8], scope: (&str, &str)) -> usize {
    6 * 11 + resource.len() + scope.0.len() + scope.1.len()
}

/// The bytes of `value` as a varint.
fn varint_length(value: usize) -> usize {
    1 + (usize::BITS - (value | 1).leading_zeros()).saturating_sub(1) as usize / 7
}

/// At least the bytes `span` takes encoded, with its field's tag and length: every field's tag
/// and length (at most 11 bytes) and value.
fn most_bytes(span: &SpanRecord) -> usize {
    let text = |value: &Value| value.as_str().map_or(10, str::len);
    let attributes: usize = span.attributes.iter().map(|(key, value)| 3 * 11 + key.len() + text(value)).sum();
    let optional = span.trace_state.as_ref().map_or(0, String::len) + span.error.as_ref().map_or(0, |e| 2 * 11 + 11 + e.len());
    11 + 8 * 11 + 16 + 8 + 8 + span.name.len() + 10 + 16 + attributes + optional
}

fn encode_span(out: &mut Vec<u8>, span: &SpanRecord) {
    bytes_field(out, span_field::TRACE_ID, &span.trace_id);
    bytes_field(out, span_field::SPAN_ID, &span.span_id);
    if let Some(state) = &span.trace_state {
        string_field(out, span_field::TRACE_STATE, state);
    }
    if let Some(parent) = &span.parent_span_id {
        bytes_field(out, span_field::PARENT_SPAN_ID, parent);
    }
    string_field(out, span_field::NAME, &span.name);
    varint_field(out, span_field::KIND, span.kind as u64);
    fixed64_field(out, span_field::START_TIME_UNIX_NANO, span.start_unix_nanos);
    fixed64_field(out, span_field::END_TIME_UNIX_NANO, span.end_unix_nanos);
    for (key, value) in &span.attributes {
        encode_attribute(out, key, value);
    }
    // An unset status is left out.
    if let Some(error) = &span.error {
        message(out, span_field::STATUS, |s| {
            string_field(s, status::MESSAGE, error);
            varint_field(s, status::CODE, status::CODE_ERROR);
        });
    }
}

/// A span's attribute: a short key with a short text (nearly all of them) written straight, as
/// the general path would write it; any other through [`message`].
fn encode_attribute(out: &mut Vec<u8>, key: &str, value: &Value) {
    if let Some(text) = value.as_str() {
        let any = 2 + text.len();
        let key_value = 2 + key.len() + 2 + any;
        if key_value < 0x80 {
            out.extend_from_slice(&[short_tag(span_field::ATTRIBUTES), key_value as u8, short_tag(key_value::KEY), key.len() as u8]);
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&[short_tag(key_value::VALUE), any as u8, short_tag(any_value::STRING), text.len() as u8]);
            out.extend_from_slice(text.as_bytes());
            return;
        }
    }
    message(out, span_field::ATTRIBUTES, |kv| encode_key_value(kv, key, value));
}

/// The one-byte tag of a length-delimited field numbered below 16.
const fn short_tag(field: u32) -> u8 {
    assert!(field < 16);
    (field << 3) as u8 | LENGTH_DELIMITED
}

fn encode_key_value(out: &mut Vec<u8>, key: &str, value: &Value) {
    string_field(out, key_value::KEY, key);
    message(out, key_value::VALUE, |any| match value {
        Value::Str(text) => string_field(any, any_value::STRING, text),
        Value::Shared(text) => string_field(any, any_value::STRING, text),
        Value::Int(number) => varint_field(any, any_value::INT, *number as u64),
    });
}

/// Protobuf's wire types.
pub(super) const VARINT: u8 = 0;
pub(super) const FIXED64: u8 = 1;
pub(super) const LENGTH_DELIMITED: u8 = 2;
pub(super) const FIXED32: u8 = 5;

#[inline]
fn tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, u64::from(field) << 3 | u64::from(wire_type));
}

#[inline]
fn varint(out: &mut Vec<u8>, mut value: u64) {
    if value < 0x80 {
        out.push(value as u8);
        return;
    }
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    tag(out, field, VARINT);
    varint(out, value);
}

fn fixed64_field(out: &mut Vec<u8>, field: u32, value: u64) {
    tag(out, field, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

#[inline]
fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(out, field, LENGTH_DELIMITED);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn string_field(out: &mut Vec<u8>, field: u32, text: &str) {
    bytes_field(out, field, text.as_bytes());
}

/// A nested message: written in place after a one-byte gap, then the gap is made the length's
/// varint (moving the message only when the length takes more than one byte, and allocating
/// nothing: an attribute's two messages are written for every span exported).
fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    sized_message(out, field, 0, body);
}

/// [`message`] for a body of about `most` bytes: the gap left for its length is the varint of
/// `most`, so that a span (a few hundred bytes, a two-byte length) is not moved up by a byte
/// after it is written. The body moves only when its length takes another number of bytes.
fn sized_message(out: &mut Vec<u8>, field: u32, most: usize, body: impl FnOnce(&mut Vec<u8>)) {
    tag(out, field, LENGTH_DELIMITED);
    let gap = out.len();
    let room = varint_length(most);
    out.resize(gap + room, 0);
    body(out);
    let end = out.len();
    let length = end - gap - room;
    if length < 0x80 && room == 1 {
        out[gap] = length as u8;
        return;
    }
    let (mut prefix, mut used, mut rest) = ([0u8; 10], 0, length as u64);
    while rest >= 0x80 {
        prefix[used] = rest as u8 | 0x80;
        rest >>= 7;
        used += 1;
    }
    prefix[used] = rest as u8;
    let needed = used + 1;
    if needed > room {
        out.resize(end + needed - room, 0);
        out.copy_within(gap + room..end, gap + needed);
    } else if needed < room {
        out.copy_within(gap + room..end, gap + needed);
        out.truncate(end - (room - needed));
    }
    out[gap..gap + needed].copy_from_slice(&prefix[..needed]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One field as protobuf's wire format carries it.
    #[derive(Debug, PartialEq)]
    enum Field<'a> {
        Varint(u64),
        Fixed64(u64),
        Bytes(&'a [u8]),
    }

    /// The fields of one message, in order: a reader of the wire format, independent of the
    /// writer above (which it checks).
    fn fields(mut data: &[u8]) -> Vec<(u32, Field<'_>)> {
        fn read_varint(data: &mut &[u8]) -> u64 {
            let mut value = 0u64;
            for shift in (0..64).step_by(7) {
                let byte = data[0];
                *data = &data[1..];
                value |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    break;
                }
            }
            value
        }
        let mut out = Vec::new();
        while !data.is_empty() {
            let key = read_varint(&mut data);
            let field = (key >> 3) as u32;
            let value = match key & 7 {
                0 => Field::Varint(read_varint(&mut data)),
                1 => {
                    let (bytes, rest) = data.split_at(8);
                    data = rest;
                    Field::Fixed64(u64::from_le_bytes(bytes.try_into().unwrap()))
                }
                2 => {
                    let length = read_varint(&mut data) as usize;
                    let (bytes, rest) = data.split_at(length);
                    data = rest;
                    Field::Bytes(bytes)
                }
                other => panic!("wire type {other} is not written"),
            };
            out.push((field, value));
        }
        out
    }

    fn bytes<'a>(fields: &[(u32, Field<'a>)], number: u32) -> Vec<&'a [u8]> {
        fields.iter().filter(|(n, _)| *n == number).map(|(_, f)| if let Field::Bytes(b) = f { *b } else { panic!("{f:?}") }).collect()
    }

    fn span(name: &str, attributes: usize) -> SpanRecord {
        SpanRecord {
            trace_id: [7; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: Some([9; 8]),
            trace_state: Some("k=v".into()),
            name: name.into(),
            kind: SpanKind::Client,
            start_unix_nanos: 1_700_000_000_000_000_000,
            end_unix_nanos: 1_700_000_000_000_500_000,
            attributes: (0..attributes).map(|i| ("attr", Value::Int(i as i64 - 1))).collect(),
            error: Some("TOOL_FAILED".into()),
        }
    }

    #[test]
    fn a_message_is_its_tag_its_shortest_length_and_its_body_whatever_room_was_guessed() {
        for length in [0, 1, 127, 128, 129, 16_383, 16_384, 20_000, 2_097_152] {
            let body: Vec<u8> = (0..length).map(|i| i as u8).collect();
            let mut expected = vec![0xaa];
            tag(&mut expected, scope_spans::SPANS, LENGTH_DELIMITED);
            varint(&mut expected, length as u64);
            expected.extend_from_slice(&body);
            for most in [0, 1, 127, 128, 16_384, 3_000_000, usize::MAX >> 8] {
                let mut out = vec![0xaa];
                sized_message(&mut out, scope_spans::SPANS, most, |out| out.extend_from_slice(&body));
                assert!(out == expected, "a body of {length} bytes with room for {most}");
            }
        }
    }

    #[test]
    fn a_request_nests_resource_scope_and_spans_with_the_proto_field_numbers() {
        let resource = resource(&[("service.name".into(), "front".into())]);
        let request = export_request(&resource, ("toolmesh", "0.1.0"), &[span("tools/call add", 2), span("b", 0)]);
        let top = fields(&request);
        let resource_spans = bytes(&top, 1);
        assert_eq!(resource_spans.len(), 1);
        let resource_spans = fields(resource_spans[0]);
        let kv = fields(bytes(&fields(bytes(&resource_spans, 1)[0]), 1)[0]);
        assert_eq!(bytes(&kv, 1), [b"service.name"]);
        assert_eq!(bytes(&fields(bytes(&kv, 2)[0]), 1), [b"front"]);
        let scope_spans = fields(bytes(&resource_spans, 2)[0]);
        let scope = fields(bytes(&scope_spans, 1)[0]);
        assert_eq!((bytes(&scope, 1), bytes(&scope, 2)), (vec![&b"toolmesh"[..]], vec![&b"0.1.0"[..]]));
        let spans = bytes(&scope_spans, 2);
        assert_eq!(spans.len(), 2);
        let first = fields(spans[0]);
        assert_eq!(bytes(&first, 1), [&[7u8; 16][..]]);
        assert_eq!(bytes(&first, 2), [&[1u8, 2, 3, 4, 5, 6, 7, 8][..]]);
        assert_eq!(bytes(&first, 3), [b"k=v"]);
        assert_eq!(bytes(&first, 4), [&[9u8; 8][..]]);
        assert_eq!(bytes(&first, 5), [b"tools/call add"]);
        assert!(first.contains(&(6, Field::Varint(3))));
        assert!(first.contains(&(7, Field::Fixed64(1_700_000_000_000_000_000))));
        assert!(first.contains(&(8, Field::Fixed64(1_700_000_000_000_500_000))));
        let attributes = bytes(&first, 9);
        // A negative int64 is its two's complement as a 10-byte varint.
        let value = fields(bytes(&fields(attributes[0]), 2)[0]);
        assert_eq!(value, [(3, Field::Varint(u64::MAX))]);
        let status = fields(bytes(&first, 15)[0]);
        assert_eq!(status, [(2, Field::Bytes(b"TOOL_FAILED")), (3, Field::Varint(2))]);
    }

    #[test]
    fn a_text_attribute_is_written_straight_as_the_general_path_writes_it_and_within_the_batch_estimate() {
        for (key_length, text_length) in [(0, 0), (15, 9), (60, 61), (60, 62), (60, 63), (1, 200), (130, 1)] {
            let (key, text) = ("k".repeat(key_length), "t".repeat(text_length));
            let value = Value::from(text.clone());
            let mut straight = Vec::new();
            encode_attribute(&mut straight, &key, &value);
            let mut general = Vec::new();
            message(&mut general, span_field::ATTRIBUTES, |kv| encode_key_value(kv, &key, &value));
            assert_eq!(straight, general, "key {key_length}, text {text_length}");
        }
        let mut spans = vec![span("tools/call add", 3), span(&"n".repeat(300), 40)];
        spans[0].attributes.push(("gen_ai.tool.name", Value::from("x".repeat(1000))));
        spans[1].error = Some("e".repeat(200));
        let resource = resource(&[("service.name".into(), "front".into())]);
        let request = export_request(&resource, ("toolmesh", "0.1.0"), &spans);
        assert!(request.len() <= 64 + resource.len() + 13 + spans.iter().map(most_bytes).sum::<usize>());
        for one in &spans {
            let mut encoded = Vec::new();
            message(&mut encoded, scope_spans::SPANS, |s| encode_span(s, one));
            assert!(encoded.len() <= most_bytes(one), "{} > {}", encoded.len(), most_bytes(one));
        }
    }

    #[test]
    fn a_head_fits_its_room_and_counts_the_spans_that_follow() {
        for value in [0usize, 1, 127, 128, 16_383, 16_384, 1 << 21, usize::MAX] {
            let mut out = Vec::new();
            varint(&mut out, value as u64);
            assert_eq!(varint_length(value), out.len(), "{value}");
        }
        let resource = resource(&[("service.name".into(), "x".repeat(300))]);
        for spans in [0, 100, 100_000, 8 << 20] {
            assert!(head(&resource, ("toolmesh", "0.1.0"), spans).len() <= head_room(&resource, ("toolmesh", "0.1.0")));
        }
    }

    #[test]
    fn lengths_past_one_varint_byte_are_written_in_full() {
        let long = "n".repeat(300);
        let request = export_request(&resource(&[]), ("toolmesh", "0"), &[span(&long, 40)]);
        let span_bytes = fields(bytes(&fields(bytes(&fields(bytes(&fields(&request), 1)[0]), 2)[0]), 2)[0]);
        assert_eq!(bytes(&span_bytes, 5), [long.as_bytes()]);
        assert_eq!(bytes(&span_bytes, 9).len(), 40);
    }
}
