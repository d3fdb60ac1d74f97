//! The HTTP rules both eras share, checked before the body is read: Origin, Accept and
//! Content-Type.

use super::reply::RpcError;
use crate::mcp::codes;
use http::{HeaderMap, StatusCode};

/// Origin, Accept and Content-Type rules shared by both eras.
///
/// There is no `Host` allow-list (§7.3 asks for one on loopback listeners, against DNS rebinding):
/// this endpoint only speaks mTLS, and a browser led to it under a rebound name fails the TLS
/// handshake, as the agent's certificate names no attacker's domain and the browser does not trust
/// the mesh CA. Agents are reached by IPs, service names and load-balancer names that the agent
/// cannot list, so an allow-list would only refuse legitimate callers.
pub(super) fn check_http_headers(headers: &HeaderMap) -> Option<RpcError> {
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !is_loopback_origin(origin) {
            return Some(RpcError::new(StatusCode::FORBIDDEN, codes::INVALID_REQUEST, format!("Invalid Origin header: {origin}")));
        }
    }
    // Like the SDKs (python-sdk answers 406 to `Accept: application/json` alone, and to none):
    // the client must be ready for either kind of answer.
    let accept = headers.get_all(http::header::ACCEPT).iter().filter_map(|v| v.to_str().ok());
    // What the SDKs and our own clients send, answered without reading it range by range.
    let usual = headers.get(http::header::ACCEPT).is_some_and(|v| v.as_bytes() == b"application/json, text/event-stream");
    let (mut json, mut sse) = (usual, usual);
    for range in accept.flat_map(|v| v.split(',')) {
        if json && sse {
            break;
        }
        let (json_ok, sse_ok) = accepts(range);
        json |= json_ok;
        sse |= sse_ok;
    }
    if !(json && sse) {
        return Some(RpcError::new(
            StatusCode::NOT_ACCEPTABLE,
            codes::INVALID_REQUEST,
            "Not Acceptable: the client must accept both application/json and text/event-stream (send Accept: application/json, text/event-stream)",
        ));
    }
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type != "application/json" && !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Some(RpcError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::INVALID_REQUEST,
            "Unsupported Media Type: Content-Type must be application/json",
        ));
    }
    None
}

/// Whether one media range of an `Accept` header covers application/json and text/event-stream;
/// wildcards count, and `q=0` means "not acceptable".
fn accepts(range: &str) -> (bool, bool) {
    let mut parts = range.split(';');
    let media = parts.next().unwrap_or("").trim();
    let refused = parts.any(|p| {
        let p = p.trim();
        p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")).is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
    });
    if refused {
        return (false, false);
    }
    let is = |t: &str| media.eq_ignore_ascii_case(t);
    (is("application/json") || is("application/*") || is("*/*"), is("text/event-stream") || is("text/*") || is("*/*"))
}

pub(super) fn is_loopback_origin(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) else {
        return false;
    };
    let host = if rest.starts_with('[') {
        rest.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
    } else {
        rest.split(':').next().unwrap_or("").to_owned()
    };
    matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]")
}
