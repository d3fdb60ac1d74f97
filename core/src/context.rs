//! Request context: the data that follows a call across hops. Wrappers capture it from their
//! async-local storage and hand it back to core; it is plain data, never a thread-local.

use rand::RngCore;
use tokio::time::Instant;

/// W3C trace context of one span. The IDs are kept as their lowercase hex digits in place, so
/// parsing a `traceparent` and making a child span allocate nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 32],
    span_id: [u8; 16],
    pub sampled: bool,
    pub tracestate: Option<String>,
}

/// A `traceparent` value (`00-{trace id}-{span id}-{flags}`), written without allocating.
pub struct Traceparent([u8; 55]);

impl Traceparent {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a traceparent is ASCII")
    }
}

impl TraceContext {
    /// Starts a new trace with a fresh root span.
    pub fn new_root() -> Self {
        TraceContext { trace_id: random_hex(), span_id: random_hex(), sampled: true, tracestate: None }
    }

    /// A new span in the same trace (one per hop).
    pub fn child(&self) -> Self {
        TraceContext { trace_id: self.trace_id, span_id: random_hex(), sampled: self.sampled, tracestate: self.tracestate.clone() }
    }

    /// 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.trace_id).expect("trace ids are hex digits")
    }

    /// 16 lowercase hex digits: the span this context belongs to.
    pub fn span_id(&self) -> &str {
        std::str::from_utf8(&self.span_id).expect("span ids are hex digits")
    }

    /// Parses a `traceparent` value (version 00); `None` for anything invalid, as the spec says
    /// to restart the trace then.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        // Version 00 has one layout: `00-{32 hex digits}-{16}-{2}`, 55 bytes.
        let value = traceparent.trim().as_bytes();
        if value.len() != 55 || !value.starts_with(b"00-") || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let (trace_id, span_id) = (lowercase_hex::<32>(&value[3..35])?, lowercase_hex::<16>(&value[36..52])?);
        let flags = u8::from_str_radix(std::str::from_utf8(&lowercase_hex::<2>(&value[53..])?).ok()?, 16).ok()?;
        if trace_id.iter().all(|b| *b == b'0') || span_id.iter().all(|b| *b == b'0') {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            tracestate: tracestate.map(str::to_owned).filter(|s| !s.is_empty()),
        })
    }

    /// The trace id as the 16 bytes OTLP sends.
    pub fn trace_id_bytes(&self) -> [u8; 16] {
        hex_bytes(&self.trace_id)
    }

    /// The span id as the 8 bytes OTLP sends.
    pub fn span_id_bytes(&self) -> [u8; 8] {
        hex_bytes(&self.span_id)
    }

    pub fn traceparent(&self) -> Traceparent {
        let mut value = *b"00-00000000000000000000000000000000-0000000000000000-00";
        value[3..35].copy_from_slice(&self.trace_id);
        value[36..52].copy_from_slice(&self.span_id);
        value[54] = if self.sampled { b'1' } else { b'0' };
        Traceparent(value)
    }
}

/// `N` hex digits, in lowercase; `None` for anything else.
fn lowercase_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    let digits: [u8; N] = digits.try_into().ok()?;
    digits.iter().all(u8::is_ascii_hexdigit).then(|| digits.map(|b| b.to_ascii_lowercase()))
}

/// The bytes that `2 * N` lowercase hex digits write.
fn hex_bytes<const N: usize>(digits: &[u8]) -> [u8; N] {
    let value = |digit: u8| if digit.is_ascii_digit() { digit - b'0' } else { digit - b'a' + 10 };
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = value(pair[0]) << 4 | value(pair[1]);
    }
    bytes
}

/// `N` random lowercase hex digits, never all zero (an all-zero ID is invalid in W3C trace context).
fn random_hex<const N: usize>() -> [u8; N] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut raw = [0u8; 16];
    let raw = &mut raw[..N / 2];
    let mut rng = rand::rng();
    // Drawn again when all zero (2^-64 at worst).
    while {
        rng.fill_bytes(raw);
        raw.iter().all(|b| *b == 0)
    } {}
    let mut digits = [0u8; N];
    for (pair, byte) in digits.chunks_exact_mut(2).zip(raw.iter()) {
        pair.copy_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 15)]]);
    }
    digits
}

/// What a handler runs with, and what flows into the calls it makes.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The headers the handler sees (lowercase names): the allow-listed ones of the inbound
    /// request, and those its caller set on purpose (see [`HeaderAllowList::capture_inbound`]).
    /// Outbound calls carry them, but for the names in `hop_only`.
    pub headers: Vec<(String, String)>,
    /// Names among `headers` that were set on purpose by the caller of this hop and that this
    /// agent's allow-list does not name: seen by this hop's handler, never forwarded.
    pub hop_only: Vec<String>,
    /// The headers are the caller's own (`toolmesh call --header`), set on purpose: requests list
    /// their names in [`CALLER_HEADERS`] so that the receiving handler sees them whatever its
    /// allow-list. False in a handler's context, whose headers are only forwarded.
    pub headers_set_by_caller: bool,
    /// Names among `headers` (lowercase) that the code making the call set on purpose (a
    /// call-headers scope of a binding, [`RequestContext::with_call_headers`]): listed in
    /// [`CALLER_HEADERS`] like all headers are when `headers_set_by_caller` is true.
    pub set_on_purpose: Vec<String>,
    /// The span of the handler that is running (outbound calls become its children).
    pub trace: Option<TraceContext>,
    /// When the inbound request must be answered by; outbound calls never outlive it.
    pub deadline: Option<Instant>,
    /// The verified origin chain the inbound call came with; outbound calls extend it.
    pub origin: Option<std::sync::Arc<crate::origin::VerifiedOrigin>>,
    /// The mTLS identity of the inbound caller: the vouched origin of outbound calls when it
    /// sent no chain of its own.
    pub caller: Option<std::sync::Arc<str>>,
    /// The inbound request's sink for progress and log messages and its cancellation; `None`
    /// outside a served request (reports are then dropped, and nothing cancels).
    pub reporter: Option<std::sync::Arc<crate::report::Reporter>>,
    /// Receives the progress and log messages the callees of outbound calls made with this
    /// context send; with it, those calls ask for them (a progress token, the `debug` level).
    pub on_notification: Option<crate::report::NotificationObserver>,
    /// The capabilities the client declared in a modern request's `_meta`
    /// (`{"sampling": {}, ...}`); `None` for a legacy request, which declares them only in an
    /// `initialize` a stateless server does not keep, and outside a served request.
    pub client_capabilities: Option<std::sync::Arc<serde_json::Value>>,
    /// A call that answers an input request (2026-07-28): the client's answers by request key
    /// (`inputResponses`), and the state the handler asked to get back, unsealed by core.
    pub input: Option<std::sync::Arc<InputAnswers>>,
    /// Input-required across hops ([`crate::mcp::input::relay`]): where a dependency call made for
    /// this request leaves what its callee asked of the client, for the MCP server to answer
    /// with when the handler fails; set by the server for each `tools/call`.
    pub dependency_asked: Option<std::sync::Arc<crate::mcp::input::relay::Asked>>,
    /// The client's answers for a dependency's input requests, brought by this retry: sent on
    /// with the dependency call to the provider that asked.
    pub dependency_answers: Option<std::sync::Arc<crate::mcp::input::relay::Answers>>,
}

/// What a client sent back for a handler's input requests ([`crate::mcp::input`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputAnswers {
    /// `{key: response}`, as the client sent them (an object; `{}` when it sent only the state).
    pub responses: serde_json::Map<String, serde_json::Value>,
    /// The state the handler's earlier answer carried, checked and unsealed.
    pub state: Option<serde_json::Value>,
}

impl RequestContext {
    /// The trace id of the handler's span, if the context has a trace.
    pub fn trace_id(&self) -> Option<&str> {
        self.trace.as_ref().map(TraceContext::trace_id)
    }

    /// The span of the handler that is running; outbound calls become its children.
    pub fn span_id(&self) -> Option<&str> {
        self.trace.as_ref().map(TraceContext::span_id)
    }

    pub fn sampled(&self) -> bool {
        self.trace.as_ref().is_some_and(|t| t.sampled)
    }

    pub fn traceparent(&self) -> Option<String> {
        self.trace.as_ref().map(|t| t.traceparent().as_str().to_owned())
    }

    pub fn tracestate(&self) -> Option<&str> {
        self.trace.as_ref().and_then(|t| t.tracestate.as_deref())
    }

    /// Reports the handler's progress to its caller ([`crate::report::Reporter::progress`]): sent
    /// only when the request asked for progress and is still being waited for.
    pub fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) -> bool {
        self.reporter.as_ref().is_some_and(|r| r.progress(progress, total, message))
    }

    /// Sends a log message to the handler's caller ([`crate::report::Reporter::log`]): only at
    /// or above the level the request opted into.
    pub fn log(&self, level: crate::report::LogLevel, data: &serde_json::Value, logger: Option<&str>) -> bool {
        self.reporter.as_ref().is_some_and(|r| r.log(level, data, logger))
    }

    /// Whether the request this handler serves was cancelled (its caller closed the stream).
    pub fn is_cancelled(&self) -> bool {
        self.reporter.as_ref().is_some_and(|r| r.is_cancelled())
    }

    /// Returns once the request is cancelled; never outside a served request.
    pub async fn cancelled(&self) {
        match &self.reporter {
            Some(reporter) => reporter.cancelled().await,
            None => std::future::pending().await,
        }
    }

    /// The context a dependency call made with this one is made with, when it differs: when the
    /// request this handler serves asked for progress or log messages and the handler set no
    /// observer of its own, the callee's are relayed to this request's caller (each hop does
    /// the same, so the last hop's progress reaches the first caller with no code in between).
    pub fn relaying(&self) -> Option<RequestContext> {
        if self.on_notification.is_some() {
            return None;
        }
        let observer = crate::report::NotificationObserver::relaying(self.reporter.clone()?)?;
        Some(RequestContext { on_notification: Some(observer), ..self.clone() })
    }

    /// Runs `callback` once when the request this handler serves is cancelled (its caller went
    /// away, or its deadline passed), on the thread that cancels it: it must not block. Bindings
    /// turn it into their idiom (cancel the task, abort the signal, cancel the future). Never
    /// outside a served request.
    pub fn on_cancel(&self, callback: impl FnOnce() + Send + 'static) {
        if let Some(reporter) = &self.reporter {
            reporter.on_cancel(callback);
        }
    }

    /// Milliseconds left before the inbound call's deadline, if it has one (0 once it passed).
    pub fn remaining_ms(&self) -> Option<u64> {
        let left = self.deadline?.saturating_duration_since(Instant::now());
        Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    }

    /// What a handler sees of its context, as JSON, for bindings that read it as such: `headers`
    /// (an object, lowercase names), `trace_id`, `span_id`, `sampled`, `traceparent`,
    /// `tracestate`, `remaining_ms`, `caller`, `client_capabilities`, and a call answering input
    /// requests its `input_responses` and `request_state` (null when absent).
    pub fn view_json(&self) -> serde_json::Value {
        let headers: serde_json::Map<String, serde_json::Value> =
            self.headers.iter().map(|(name, value)| (name.clone(), serde_json::Value::from(value.as_str()))).collect();
        serde_json::json!({
            "headers": headers,
            "trace_id": self.trace_id(),
            "span_id": self.span_id(),
            "sampled": self.sampled(),
            "traceparent": self.traceparent(),
            "tracestate": self.tracestate(),
            "remaining_ms": self.remaining_ms(),
            "caller": self.caller.as_deref(),
            "client_capabilities": self.client_capabilities.as_deref(),
            "input_responses": self.input.as_ref().map(|i| &i.responses),
            "request_state": self.input.as_ref().and_then(|i| i.state.as_ref()),
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The headers an outbound call carries: all but the hop-only ones and those a request
    /// sets itself.
    pub fn onward_headers(&self) -> impl Iterator<Item = &(String, String)> {
        self.headers.iter().filter(|(n, _)| {
            let name = n.to_ascii_lowercase();
            !never_propagated(&name) && !self.hop_only.contains(&name)
        })
    }

    /// The names (lowercase, once each) of the onward headers that were set on purpose: an
    /// outbound request lists them in [`CALLER_HEADERS`], so that the handler it reaches sees
    /// them whatever its allow-list.
    pub fn caller_set_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (name, _) in self.onward_headers() {
            let name = name.to_ascii_lowercase();
            if (self.headers_set_by_caller || self.set_on_purpose.contains(&name)) && !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// The context of a call made inside a call-headers scope (Python `toolmesh.call_headers`,
    /// Node `withCallHeaders`, Java `Toolmesh.withCallHeaders`, C `toolmesh_call_headers`): the
    /// headers `base` sends onward (the handler's allow-listed ones; none outside a handler),
    /// plus `call_headers`, set on purpose by the caller's code. The latter are listed in
    /// [`CALLER_HEADERS`], so the handler the call reaches sees them whatever its allow-list, and
    /// they go further only where allow-lists name them. `call_headers` is in scope order (outer
    /// scopes first): the last value of a name wins, over `base`'s too. Names are matched
    /// case-insensitively and kept in lowercase. Trace, deadline and origin are `base`'s.
    ///
    /// Errors (`INVALID_ARGUMENTS`, naming the header): a name that is not an HTTP header name, a
    /// value that is not a valid header value, a name that is never propagated (see
    /// [`never_propagated`]: the request sets those itself), more than [`MAX_CALLER_HEADERS`]
    /// headers or more than [`MAX_CALLER_HEADER_BYTES`] of values.
    pub fn with_call_headers(base: Option<&RequestContext>, call_headers: &[(String, String)]) -> crate::Result<RequestContext> {
        let mut scoped: Vec<(String, String)> = Vec::new();
        for (name, value) in call_headers {
            let name = check_call_header(name, value)?;
            scoped.retain(|(n, _)| *n != name);
            scoped.push((name, value.clone()));
        }
        if scoped.len() > MAX_CALLER_HEADERS {
            return Err(crate::Error::new(
                crate::ErrorKind::InvalidArguments,
                format!("{} call headers are set; at most {MAX_CALLER_HEADERS} are sent", scoped.len()),
            ));
        }
        let bytes: usize = scoped.iter().map(|(_, v)| v.len()).sum();
        if bytes > MAX_CALLER_HEADER_BYTES {
            return Err(crate::Error::new(
                crate::ErrorKind::InvalidArguments,
                format!("the call headers' values come to {bytes} bytes; at most {MAX_CALLER_HEADER_BYTES} are sent"),
            ));
        }
        let base = base.cloned().unwrap_or_default();
        let mut headers: Vec<(String, String)> =
            base.onward_headers().filter(|(n, _)| !scoped.iter().any(|(s, _)| n.eq_ignore_ascii_case(s))).cloned().collect();
        let mut set_on_purpose = if base.headers_set_by_caller {
            headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect()
        } else {
            base.set_on_purpose.iter().filter(|n| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n))).cloned().collect::<Vec<_>>()
        };
        set_on_purpose.extend(scoped.iter().map(|(n, _)| n.clone()));
        headers.extend(scoped);
        Ok(RequestContext { headers, hop_only: Vec::new(), headers_set_by_caller: false, set_on_purpose, ..base })
    }

    /// [`RequestContext::with_call_headers`] for a binding's call: `base` unchanged when no
    /// scope set headers.
    pub fn for_call(
        base: Option<std::sync::Arc<RequestContext>>,
        call_headers: &[(String, String)],
    ) -> crate::Result<Option<std::sync::Arc<RequestContext>>> {
        if call_headers.is_empty() {
            return Ok(base);
        }
        Ok(Some(std::sync::Arc::new(RequestContext::with_call_headers(base.as_deref(), call_headers)?)))
    }
}

/// Checks one header a caller's code sets on purpose for its calls; returns its name in
/// lowercase. The error (`INVALID_ARGUMENTS`) names the header and what is wrong with it.
pub fn check_call_header(name: &str, value: &str) -> crate::Result<String> {
    let refused = |why: String| crate::Error::new(crate::ErrorKind::InvalidArguments, why);
    let lowercase = name.to_ascii_lowercase();
    if http::HeaderName::from_bytes(lowercase.as_bytes()).is_err() {
        return Err(refused(format!("call header '{name}' is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)")));
    }
    if never_propagated(&lowercase) {
        return Err(refused(format!(
            "call header '{name}' cannot be set: the request sets it itself (hop-by-hop, body, protocol, trace and toolmesh headers never are); use another name"
        )));
    }
    if http::HeaderValue::from_str(value).is_err() {
        return Err(refused(format!(
            "the value of call header '{name}' is not a valid HTTP header value (visible ASCII, spaces and tabs only)"
        )));
    }
    Ok(lowercase)
}

/// The request header in which a caller lists (comma-separated) the headers it set on purpose
/// for the handler it calls; never captured or forwarded itself.
pub const CALLER_HEADERS: &str = "toolmesh-caller-headers";
pub const CALLER_HEADERS_HEADER: http::HeaderName = http::HeaderName::from_static(CALLER_HEADERS);
/// The W3C trace context headers, as `HeaderName`s made at compile time.
pub const TRACEPARENT_HEADER: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE_HEADER: http::HeaderName = http::HeaderName::from_static("tracestate");
/// At most this many caller-set headers are shown to a handler (the rest are ignored)...
pub const MAX_CALLER_HEADERS: usize = 32;
/// ... and at most this many bytes of their values in all.
pub const MAX_CALLER_HEADER_BYTES: usize = 16 * 1024;

/// Which inbound headers are propagated: exact names (case-insensitive) or prefixes ending in `*`,
/// within two rules that no list overrides:
///
/// - Never propagated ([`never_propagated`]): headers of one hop or of the inbound body and
///   response format, and the headers the protocol and the trace context carry themselves. Copied
///   onto the outbound request beside its own, they would break it (a second `content-length` or
///   `host`) or lie about it (`content-encoding`, another call's `mcp-name`).
/// - Credentials (`authorization`, `cookie`) only when named exactly: a prefix such as `*` must
///   not hand the caller's credentials to every agent downstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderAllowList {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

/// Hop-by-hop fields (RFC 9110 §7.6.1, with the legacy ones it names), and headers that belong to
/// one request or are carried separately, by exact name.
const NEVER_PROPAGATED: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "host",
    "expect",
    "accept",
    "accept-encoding",
    "traceparent",
    "tracestate",
    crate::origin::HEADER,
    CALLER_HEADERS,
];
/// The same, by prefix: proxy fields, the inbound body's description and MCP's own headers.
const NEVER_PROPAGATED_PREFIXES: &[&str] = &["proxy-", "content-", "mcp-"];
/// Propagated only when the allow-list names them exactly.
const CREDENTIALS: &[&str] = &["authorization", "cookie"];

/// Whether a header is never propagated, whatever the allow-list says (`name` in lowercase):
/// the outbound request sets these itself.
pub fn never_propagated(name: &str) -> bool {
    NEVER_PROPAGATED.contains(&name) || NEVER_PROPAGATED_PREFIXES.iter().any(|p| name.starts_with(p))
}

impl HeaderAllowList {
    /// Parses `TOOLMESH_PROPAGATE_HEADERS`: comma-separated, blanks ignored.
    pub fn parse(spec: &str) -> Self {
        let mut list = HeaderAllowList::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let item = item.to_ascii_lowercase();
            match item.strip_suffix('*') {
                Some(prefix) => list.prefixes.push(prefix.to_owned()),
                None => list.exact.push(item),
            }
        }
        list
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    pub fn allows(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        if never_propagated(&name) {
            return false;
        }
        self.exact.contains(&name) || (!CREDENTIALS.contains(&name.as_str()) && self.prefixes.iter().any(|p| name.starts_with(p.as_str())))
    }

    /// What a handler sees of an inbound request's headers, and which of them are hop-only.
    ///
    /// The rule, the same in every language: a header the caller set on purpose (listed in
    /// [`CALLER_HEADERS`]) is seen by the handler it was sent to, whatever this agent's
    /// allow-list; it goes further only if the allow-list names it. Other inbound headers are
    /// seen (and forwarded) only when the allow-list names them. Either way, headers that are
    /// never propagated ([`never_propagated`], those the `Connection` header names) are never
    /// seen, and credentials (`authorization`, `cookie`) only when the allow-list names them
    /// exactly. At most [`MAX_CALLER_HEADERS`] caller-set headers, of
    /// [`MAX_CALLER_HEADER_BYTES`] in all, are taken; the rest are left out.
    pub fn capture_inbound<'a>(&self, headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> (Vec<(String, String)>, Vec<String>) {
        let headers: Vec<(&str, &str)> = headers.into_iter().collect();
        let mut seen = self.capture(headers.iter().copied());
        let listed: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(CALLER_HEADERS))
            .flat_map(|(_, v)| v.split(','))
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        if listed.is_empty() {
            return (seen, Vec::new());
        }
        let hop_options = connection_options(&headers);
        let mut hop_only = Vec::new();
        let mut bytes = 0;
        for (name, value) in &headers {
            let name = name.to_ascii_lowercase();
            let set_on_purpose = listed.contains(&name) && !hop_options.contains(&name);
            if !set_on_purpose || never_propagated(&name) || CREDENTIALS.contains(&name.as_str()) || self.allows(&name) {
                // Allowed ones are in `seen` already (credentials only when named exactly).
                continue;
            }
            bytes += value.len();
            if hop_only.len() == MAX_CALLER_HEADERS || bytes > MAX_CALLER_HEADER_BYTES {
                tracing::debug!(header = %name, "a caller-set header beyond the limits is left out");
                continue;
            }
            if !hop_only.contains(&name) {
                hop_only.push(name.clone());
            }
            seen.push((name, (*value).to_owned()));
        }
        (seen, hop_only)
    }

    /// [`HeaderAllowList::capture_inbound`] of a request's headers. Their values are read as
    /// text only when some may be taken: not when the allow-list is empty and the caller listed
    /// none of its own, which spares reading the kilobyte of origin chain every request carries.
    pub fn capture_inbound_map(&self, headers: &http::HeaderMap) -> (Vec<(String, String)>, Vec<String>) {
        if self.is_empty() && !headers.contains_key(CALLER_HEADERS_HEADER) {
            return (Vec::new(), Vec::new());
        }
        self.capture_inbound(headers.iter().filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))))
    }

    /// Keeps the allowed headers of `headers`, with lowercase names. Headers that the inbound
    /// `Connection` header names are that hop's own (RFC 9110 §7.6.1) and are dropped too.
    pub fn capture<'a>(&self, headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
        if self.is_empty() {
            return Vec::new();
        }
        let headers: Vec<(&str, &str)> = headers.into_iter().collect();
        let hop_options: Vec<String> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .map(|o| o.trim().to_ascii_lowercase())
            .collect();
        headers
            .into_iter()
            .filter(|(n, _)| self.allows(n) && !hop_options.iter().any(|o| o.eq_ignore_ascii_case(n)))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
            .collect()
    }
}

/// The options the `Connection` header names: headers of that hop only (lowercase).
fn connection_options(headers: &[(&str, &str)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .map(|o| o.trim().to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_set_headers_are_seen_by_the_first_hop_and_forwarded_only_when_allow_listed() {
        let inbound = [
            ("X-Tenant", "acme"),
            ("X-Secret", "s"),
            ("X-Unlisted", "u"),
            ("Authorization", "Bearer t"),
            ("Content-Type", "a/b"),
            ("Connection", "x-hop"),
            ("X-Hop", "h"),
            ("Toolmesh-Caller-Headers", "x-tenant, X-Secret, authorization, content-type, x-hop, toolmesh-caller-headers"),
        ];
        let list = HeaderAllowList::parse("x-tenant");
        let (seen, hop_only) = list.capture_inbound(inbound);
        assert_eq!(
            seen,
            vec![("x-tenant".into(), "acme".into()), ("x-secret".into(), "s".into())],
            "not the unlisted, credential, protocol or hop headers"
        );
        assert_eq!(hop_only, ["x-secret"]);
        let context = RequestContext { headers: seen, hop_only, ..RequestContext::default() };
        assert_eq!(context.onward_headers().collect::<Vec<_>>(), [&("x-tenant".to_owned(), "acme".to_owned())]);
        // Credentials set on purpose: seen only when the allow-list names them, and then forwarded.
        let (seen, hop_only) = HeaderAllowList::parse("authorization").capture_inbound(inbound);
        assert_eq!(
            seen,
            vec![("authorization".into(), "Bearer t".into()), ("x-tenant".into(), "acme".into()), ("x-secret".into(), "s".into())]
        );
        assert_eq!(hop_only, ["x-tenant", "x-secret"]);
        // Without the list, only the allow-list decides (as before).
        let (seen, hop_only) = list.capture_inbound(inbound[..5].iter().copied());
        assert_eq!((seen, hop_only), (vec![("x-tenant".into(), "acme".into())], vec![]));
    }

    #[test]
    fn call_headers_join_the_onward_headers_set_on_purpose_inner_scopes_winning() {
        let pairs = |list: &[(&str, &str)]| list.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
        // A handler's context: x-tenant allow-listed, x-secret set on purpose for this hop only.
        let handler = RequestContext {
            headers: pairs(&[("x-tenant", "acme"), ("x-secret", "s"), ("x-plan", "gold")]),
            hop_only: vec!["x-secret".into()],
            trace: Some(TraceContext::new_root()),
            ..RequestContext::default()
        };
        let scoped = pairs(&[("X-Scoped", "outer"), ("x-plan", "platinum"), ("x-scoped", "inner")]);
        let call = RequestContext::with_call_headers(Some(&handler), &scoped).unwrap();
        assert_eq!(
            call.headers,
            pairs(&[("x-tenant", "acme"), ("x-plan", "platinum"), ("x-scoped", "inner")]),
            "onward, then the scope's; inner wins"
        );
        assert_eq!(call.caller_set_names(), ["x-plan", "x-scoped"], "only the scope's are listed as set on purpose");
        assert_eq!(call.trace, handler.trace);
        // Outside a handler: the scope's headers only; no scope, no change.
        let alone = RequestContext::with_call_headers(None, &pairs(&[("x-a", "1")])).unwrap();
        assert_eq!((alone.headers, alone.set_on_purpose), (pairs(&[("x-a", "1")]), vec!["x-a".to_owned()]));
        assert!(RequestContext::for_call(None, &[]).unwrap().is_none());
        // Received on the other side, by an agent whose allow-list names only x-tenant.
        let listed = call.caller_set_names().join(", ");
        let wire = call.onward_headers().map(|(n, v)| (n.as_str(), v.as_str())).chain([(CALLER_HEADERS, listed.as_str())]);
        let (seen, hop_only) = HeaderAllowList::parse("x-tenant").capture_inbound(wire);
        assert_eq!(seen, pairs(&[("x-tenant", "acme"), ("x-plan", "platinum"), ("x-scoped", "inner")]));
        assert_eq!(hop_only, ["x-plan", "x-scoped"], "seen there, forwarded no further");
    }

    #[test]
    fn bad_call_headers_are_refused_naming_the_header() {
        let one = |n: &str, v: &str| RequestContext::with_call_headers(None, &[(n.to_owned(), v.to_owned())]).map(|_| ()).unwrap_err();
        for (name, value, says) in [
            ("x tenant", "a", "call header 'x tenant' is not a valid HTTP header name"),
            ("", "a", "call header '' is not a valid HTTP header name"),
            ("x-note", "line\nbreak", "the value of call header 'x-note' is not a valid HTTP header value"),
            ("Content-Type", "a/b", "call header 'Content-Type' cannot be set: the request sets it itself"),
            ("traceparent", "00-x", "call header 'traceparent' cannot be set"),
            ("toolmesh-caller-headers", "x", "call header 'toolmesh-caller-headers' cannot be set"),
            ("Connection", "close", "call header 'Connection' cannot be set"),
        ] {
            let error = one(name, value);
            assert_eq!(error.kind(), crate::ErrorKind::InvalidArguments, "{name}");
            assert!(error.message().starts_with(says), "{name}: {}", error.message());
        }
        let many: Vec<(String, String)> = (0..=MAX_CALLER_HEADERS).map(|i| (format!("x-h{i}"), "v".to_owned())).collect();
        assert!(RequestContext::with_call_headers(None, &many).unwrap_err().message().contains("at most 32"));
        let big = [("x-big".to_owned(), "v".repeat(MAX_CALLER_HEADER_BYTES + 1))];
        assert!(RequestContext::with_call_headers(None, &big).unwrap_err().message().contains("bytes"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_view_bindings_show_handlers() {
        let trace = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Some("a=b")).unwrap();
        let context = RequestContext {
            headers: vec![("x-tenant".into(), "acme".into())],
            trace: Some(trace),
            deadline: Some(Instant::now() + std::time::Duration::from_millis(1500)),
            caller: Some("spiffe://toolmesh.local/agent/a".into()),
            client_capabilities: Some(std::sync::Arc::new(serde_json::json!({"sampling": {}}))),
            ..RequestContext::default()
        };
        assert_eq!(
            context.view_json(),
            serde_json::json!({
                "headers": {"x-tenant": "acme"},
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "00f067aa0ba902b7",
                "sampled": true,
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "tracestate": "a=b",
                "remaining_ms": 1500,
                "caller": "spiffe://toolmesh.local/agent/a",
                "client_capabilities": {"sampling": {}},
                "input_responses": null,
                "request_state": null,
            })
        );
        tokio::time::advance(std::time::Duration::from_millis(2000)).await;
        assert_eq!(context.remaining_ms(), Some(0), "a passed deadline leaves nothing");
        let empty = RequestContext::default().view_json();
        assert_eq!(
            empty,
            serde_json::json!({"headers": {}, "trace_id": null, "span_id": null, "sampled": false,
            "traceparent": null, "tracestate": null, "remaining_ms": null, "caller": null, "client_capabilities": null,
            "input_responses": null, "request_state": null})
        );
    }

    #[test]
    fn caller_set_headers_are_capped() {
        let names: Vec<String> = (0..40).map(|i| format!("x-h{i}")).collect();
        let big = "v".repeat(1000);
        let mut inbound: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), big.as_str())).collect();
        let listed = names.join(",");
        inbound.push((CALLER_HEADERS, &listed));
        let (seen, hop_only) = HeaderAllowList::default().capture_inbound(inbound.iter().copied());
        assert_eq!(hop_only.len(), MAX_CALLER_HEADER_BYTES / 1000);
        assert_eq!(seen.len(), hop_only.len());
        let small: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).chain([(CALLER_HEADERS, listed.as_str())]).collect();
        assert_eq!(HeaderAllowList::default().capture_inbound(small).1.len(), MAX_CALLER_HEADERS);
    }

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let root = TraceContext::new_root();
        let traceparent = root.traceparent();
        let parts: Vec<&str> = traceparent.as_str().split('-').collect();
        assert_eq!(parts, ["00", root.trace_id(), root.span_id(), "01"]);
        assert!(root.trace_id().len() == 32 && root.span_id().len() == 16);
        assert!(root.trace_id().bytes().chain(root.span_id().bytes()).all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        let parsed = TraceContext::parse(traceparent.as_str(), None).unwrap();
        assert_eq!(parsed, root);
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
    }

    #[test]
    fn ids_become_the_bytes_their_hex_digits_write() {
        let parsed = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None).unwrap();
        assert_eq!(
            parsed.trace_id_bytes(),
            [0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36]
        );
        assert_eq!(parsed.span_id_bytes(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    }

    #[test]
    fn invalid_traceparents_are_rejected() {
        for bad in [
            "",
            "00-abc-def-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            // The right length, the dashes elsewhere; flags that are not hex.
            "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
        ] {
            assert!(TraceContext::parse(bad, None).is_none(), "{bad}");
        }
        let ok = TraceContext::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-00", Some("a=b")).unwrap();
        assert_eq!(ok.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!ok.sampled);
        assert_eq!(ok.tracestate.as_deref(), Some("a=b"));
    }

    #[test]
    fn allow_list_matches_exact_names_and_prefixes_case_insensitively() {
        let list = HeaderAllowList::parse(" X-Tenant-Id , x-audit-*,, ");
        assert!(list.allows("x-tenant-id"));
        assert!(list.allows("X-TENANT-ID"));
        assert!(list.allows("X-Audit-User"));
        assert!(!list.allows("x-tenant"));
        assert!(!list.allows("x-tenant-id-2"));
        assert!(!list.allows("authorization"));
        let captured = list.capture([("X-Tenant-Id", "t1"), ("Cookie", "c"), ("x-audit-a", "1")]);
        assert_eq!(captured, vec![("x-tenant-id".into(), "t1".into()), ("x-audit-a".into(), "1".into())]);
        assert!(HeaderAllowList::parse("").capture([("x", "y")]).is_empty());
    }

    #[test]
    fn hop_by_hop_body_protocol_and_trace_headers_are_never_propagated() {
        let inbound = [
            ("Host", "a:1"),
            ("Content-Length", "42"),
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
            ("Accept", "*/*"),
            ("Accept-Encoding", "gzip"),
            ("Connection", "keep-alive, X-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Trailer", "x"),
            ("Upgrade", "h2c"),
            ("Expect", "100-continue"),
            ("Proxy-Authorization", "Basic x"),
            ("Proxy-Connection", "close"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "add"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Session-Id", "s"),
            ("traceparent", "00-x"),
            ("tracestate", "a=b"),
            ("X-Hop", "only this hop"),
            ("Authorization", "Bearer t"),
            ("Cookie", "c=1"),
            ("X-Tenant", "acme"),
            ("Baggage", "k=v"),
            ("Accept-Language", "de"),
        ];
        let everything = HeaderAllowList::parse("*");
        let captured = everything.capture(inbound);
        let names: Vec<&str> = captured.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-tenant", "baggage", "accept-language"]);
        // Even when named exactly, a hop's or the protocol's own header is not propagated.
        let named = HeaderAllowList::parse("host, content-length, content-type, mcp-name, traceparent, x-hop, connection, te");
        assert!(named.capture(inbound).is_empty());
        // Credentials: only when named exactly, never through a prefix.
        for spec in ["*", "a*", "co*", "authorization*"] {
            let list = HeaderAllowList::parse(spec);
            assert!(!list.allows("Authorization") && !list.allows("cookie"), "{spec}");
        }
        let explicit = HeaderAllowList::parse("Authorization, cookie");
        assert_eq!(explicit.capture(inbound), vec![("authorization".into(), "Bearer t".into()), ("cookie".into(), "c=1".into())]);
        assert!(HeaderAllowList::parse("x-*").allows("X-Authorization"));
    }
}
