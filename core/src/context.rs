//! Request context: the data that follows a call across hops. Wrappers capture it from their
//! async-local storage and hand it back to core; it is plain data, never a thread-local.

use rand::RngCore;
use tokio::time::Instant;

/// W3C trace context of one span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: the span this context belongs to.
    pub span_id: String,
    pub sampled: bool,
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Starts a new trace with a fresh root span.
    pub fn new_root() -> Self {
        TraceContext { trace_id: random_hex(16), span_id: random_hex(8), sampled: true, tracestate: None }
    }

    /// A new span in the same trace (one per hop).
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id.clone(),
            span_id: random_hex(8),
            sampled: self.sampled,
            tracestate: self.tracestate.clone(),
        }
    }

    /// Parses a `traceparent` value (version 00); `None` for anything invalid, as the spec says
    /// to restart the trace then.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let is_hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if version != "00" || parts.next().is_some() {
            return None;
        }
        if !is_hex(trace_id, 32) || !is_hex(span_id, 16) || !is_hex(flags, 2) {
            return None;
        }
        if trace_id.bytes().all(|b| b == b'0') || span_id.bytes().all(|b| b == b'0') {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: span_id.to_ascii_lowercase(),
            sampled: flags & 1 == 1,
            tracestate: tracestate.map(str::to_owned).filter(|s| !s.is_empty()),
        })
    }

    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }
}

fn random_hex(bytes: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut raw = [0u8; 16];
    let raw = &mut raw[..bytes];
    let mut rng = rand::rng();
    // An all-zero id is invalid in W3C trace context; draw again (2^-64 at worst).
    while {
        rng.fill_bytes(raw);
        raw.iter().all(|b| *b == 0)
    } {}
    raw.iter().flat_map(|b| [HEX[usize::from(b >> 4)] as char, HEX[usize::from(b & 15)] as char]).collect()
}

/// What a handler runs with, and what flows into the calls it makes.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Propagated headers (lowercase names), already filtered by the allow-list.
    pub headers: Vec<(String, String)>,
    /// The span of the handler that is running (outbound calls become its children).
    pub trace: Option<TraceContext>,
    /// When the inbound request must be answered by; outbound calls never outlive it.
    pub deadline: Option<Instant>,
    /// The verified origin chain the inbound call came with; outbound calls extend it.
    pub origin: Option<std::sync::Arc<crate::origin::VerifiedOrigin>>,
    /// The mTLS identity of the inbound caller: the vouched origin of outbound calls when it
    /// sent no chain of its own.
    pub caller: Option<std::sync::Arc<str>>,
}

impl RequestContext {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

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
    "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "http2-settings", "host", "expect",
    "accept", "accept-encoding", "traceparent", "tracestate", crate::origin::HEADER,
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
        self.exact.contains(&name)
            || (!CREDENTIALS.contains(&name.as_str()) && self.prefixes.iter().any(|p| name.starts_with(p.as_str())))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let root = TraceContext::new_root();
        let parsed = TraceContext::parse(&root.traceparent(), None).unwrap();
        assert_eq!(parsed, root);
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
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
        ] {
            assert!(TraceContext::parse(bad, None).is_none(), "{bad}");
        }
        let ok = TraceContext::parse("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-00", Some("a=b")).unwrap();
        assert_eq!(ok.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
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
            ("Host", "a:1"), ("Content-Length", "42"), ("Content-Type", "application/json"), ("Content-Encoding", "gzip"),
            ("Accept", "*/*"), ("Accept-Encoding", "gzip"), ("Connection", "keep-alive, X-Hop"), ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"), ("TE", "trailers"), ("Trailer", "x"), ("Upgrade", "h2c"), ("Expect", "100-continue"),
            ("Proxy-Authorization", "Basic x"), ("Proxy-Connection", "close"), ("Mcp-Method", "tools/call"), ("Mcp-Name", "add"),
            ("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Session-Id", "s"), ("traceparent", "00-x"), ("tracestate", "a=b"),
            ("X-Hop", "only this hop"), ("Authorization", "Bearer t"), ("Cookie", "c=1"),
            ("X-Tenant", "acme"), ("Baggage", "k=v"), ("Accept-Language", "de"),
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
