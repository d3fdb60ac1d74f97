//! Streaming through a chain against MCP Mesh (issue 14): one client for both systems. Each call
//! is a stateless MCP `tools/call` POST (legacy revision 2025-06-18, which toolmesh and MCP Mesh
//! both serve without a session) carrying `_meta.progressToken`, on a fresh mTLS HTTP/1.1
//! connection opened before the clock starts. The answer's body is read as it arrives: each
//! server-sent event is parsed when it is complete, so the time of the first and the last
//! `notifications/progress` and of the result are known, and the count of notifications is
//! checked against what the last hop sent. A short count is reported, not hidden.
//!
//! Cancellation (with `--cancels`): the tool is called with `{"hang": S}` (its last hop sends one
//! notification, then waits S seconds); once that notification arrived the client closes the
//! connection and reads CLOCK_MONOTONIC; the last hop writes `cancelled T` to `--cancel-file`,
//! T the CLOCK_MONOTONIC seconds at which its handler saw the cancellation (the difference is
//! cancel-to-stop), or `finished T` when its wait ran out uncancelled.

use crate::common::{print_json, AnyError};
use crate::http::{check_tool_result, connect_tls, origin_form};
use crate::load::AgentArgs;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct StreamCallsArgs {
    #[command(flatten)]
    agent: AgentArgs,
    #[arg(long)]
    tool: String,
    /// Notifications asked of the last hop per call (`{"n": N}`).
    #[arg(long, default_value_t = 500)]
    n: u64,
    /// The text the result must be.
    #[arg(long)]
    expect: String,
    /// Measured calls, one after the other.
    #[arg(long, default_value_t = 3)]
    calls: usize,
    /// Calls made first and not reported.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Cancellations timed after the calls (needs `--cancel-file`).
    #[arg(long, default_value_t = 0)]
    cancels: usize,
    /// Where the last hop writes the CLOCK_MONOTONIC seconds at which it saw its call cancelled.
    #[arg(long)]
    cancel_file: Option<PathBuf>,
    /// How long the last hop waits for its cancellation (`{"hang": S}`).
    #[arg(long, default_value_t = 10.0)]
    hang: f64,
    #[arg(long, default_value_t = 120.0)]
    call_timeout: f64,
}

/// One streamed call, times from just before the request was sent.
#[derive(Serialize, Default)]
struct Streamed {
    notifications: u64,
    first_ms: Option<f64>,
    last_ms: Option<f64>,
    result_ms: Option<f64>,
    /// Notifications ÷ the call's time (request sent → result parsed).
    per_second: Option<f64>,
    /// `text/event-stream` or `application/json` (no stream at all).
    content_type: String,
    /// Why the answer is not right (wrong result, error, timeout), if it is not.
    error: Option<String>,
}

#[derive(Serialize)]
struct Cancel {
    /// Close of the connection → the last hop saw its call cancelled; none when it never did.
    cancel_ms: Option<f64>,
    first_ms: Option<f64>,
    error: Option<String>,
}

struct Target {
    addr: String,
    server_name: String,
    uri: http::Uri,
    tls: Arc<rustls::ClientConfig>,
    tool: String,
}

pub async fn stream_calls(args: StreamCallsArgs) -> Result<(), AnyError> {
    let (uri, addr, tls) = args.agent.resolve()?;
    let target = Target { addr, server_name: args.agent.server_name().to_owned(), uri, tls, tool: args.tool.clone() };
    let bound = Duration::from_secs_f64(args.call_timeout);
    let arguments = json!({"n": args.n});
    for _ in 0..args.warmup {
        let warm = streamed_call(&target, &arguments, args.n, &args.expect, bound, false).await;
        if let Some(error) = warm.0.error {
            eprintln!("warm-up call: {error}");
        }
    }
    let mut calls = Vec::with_capacity(args.calls);
    for _ in 0..args.calls {
        calls.push(streamed_call(&target, &arguments, args.n, &args.expect, bound, false).await.0);
    }
    let mut cancels = Vec::with_capacity(args.cancels);
    if args.cancels > 0 {
        let file = args.cancel_file.as_ref().ok_or("--cancels needs --cancel-file")?;
        for _ in 0..args.cancels {
            cancels.push(cancel_call(&target, file, bound, args.hang).await);
        }
    }
    print_json(&json!({"tool": args.tool, "n": args.n, "calls": calls, "cancels": cancels}));
    Ok(())
}

/// One call read event by event. With `cancel`, returns after the first notification with the
/// connection closed (the CLOCK_MONOTONIC seconds of the close beside it).
async fn streamed_call(target: &Target, arguments: &Value, n: u64, expect: &str, bound: Duration, cancel: bool) -> (Streamed, Option<f64>) {
    let mut out = Streamed::default();
    let connection = match connect_tls(&target.addr, &target.server_name, target.tls.clone(), false).await {
        Ok(io) => hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io).await,
        Err(e) => {
            out.error = Some(format!("connect: {e}"));
            return (out, None);
        }
    };
    let (mut sender, connection) = match connection {
        Ok(pair) => pair,
        Err(e) => {
            out.error = Some(format!("handshake: {e}"));
            return (out, None);
        }
    };
    // Aborting this task drops the TLS stream: the server sees its connection close.
    let connection = tokio::spawn(connection);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": target.tool, "arguments": arguments, "_meta": {"progressToken": "bench"}}});
    let request = http::Request::post(origin_form(&target.uri))
        .header(http::header::HOST, target.uri.authority().map_or("localhost", |a| a.as_str()))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid request");
    let started = Instant::now();
    let ms = |at: Instant| at.saturating_duration_since(started).as_secs_f64() * 1000.0;
    let read = async {
        let response = sender.send_request(request).await.map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        out.content_type = response.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let mut body = response.into_body();
        let mut buffer: Vec<u8> = Vec::new();
        let mut whole: Vec<u8> = Vec::new();
        let event_stream = out.content_type.starts_with("text/event-stream");
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("body failed after {} notifications: {e}", out.notifications))?;
            let Some(data) = frame.data_ref() else { continue };
            if !event_stream {
                whole.extend_from_slice(data);
                continue;
            }
            buffer.extend(data.iter().filter(|b| **b != b'\r'));
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buffer.drain(..end + 2).collect();
                let data: Vec<&str> = std::str::from_utf8(&event)
                    .unwrap_or("")
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                let text = data.join("\n");
                // Events without data (a stream's priming event, comments) carry no message.
                if text.trim().is_empty() {
                    continue;
                }
                let message: Value = serde_json::from_str(&text).map_err(|e| format!("an event that is not JSON ({e}): {text}"))?;
                if message.get("method").and_then(Value::as_str) == Some("notifications/progress") {
                    let now = ms(Instant::now());
                    out.notifications += 1;
                    out.first_ms.get_or_insert(now);
                    out.last_ms = Some(now);
                    if cancel {
                        return Ok(true);
                    }
                } else if message.get("id").is_some() {
                    out.result_ms = Some(ms(Instant::now()));
                    check_tool_result(status, text.as_bytes(), Some(expect))?;
                    return Ok(false);
                }
            }
        }
        if !event_stream {
            out.result_ms = Some(ms(Instant::now()));
            check_tool_result(status, &whole, Some(expect))?;
            return Ok(false);
        }
        Err(format!("the stream ended without a result after {} notifications (HTTP {status})", out.notifications))
    };
    let outcome = tokio::time::timeout(bound, read).await.unwrap_or_else(|_| Err(format!("no answer within {bound:?}")));
    let closed_at = matches!(outcome, Ok(true)).then(monotonic_seconds);
    connection.abort();
    if let Err(e) = outcome {
        out.error = Some(e);
    }
    if let Some(result_ms) = out.result_ms {
        out.per_second = Some(out.notifications as f64 / (result_ms / 1000.0));
    }
    if !cancel && out.error.is_none() && out.notifications != n {
        out.error = Some(format!("{} of {n} notifications arrived", out.notifications));
    }
    (out, closed_at)
}

async fn cancel_call(target: &Target, file: &Path, bound: Duration, hang: f64) -> Cancel {
    let _ = std::fs::remove_file(file);
    let (streamed, closed_at) = streamed_call(target, &json!({"n": 1, "hang": hang}), 1, "", bound, true).await;
    let Some(closed_at) = closed_at else {
        let error = streamed.error.unwrap_or_else(|| "the call answered before it was cancelled".to_owned());
        return Cancel { cancel_ms: None, first_ms: streamed.first_ms, error: Some(error) };
    };
    // The last hop writes its line when it saw the cancellation, or when its wait ran out.
    let deadline = Instant::now() + Duration::from_secs_f64(hang + 5.0);
    while Instant::now() < deadline {
        let line = std::fs::read_to_string(file).unwrap_or_default();
        let (what, at) = line.trim().split_once(' ').unwrap_or_default();
        if let Ok(at) = at.parse::<f64>() {
            let error = (what != "cancelled")
                .then(|| format!("never cancelled: the last hop waited its whole {hang} s and answered a caller that was gone"));
            let cancel_ms = error.is_none().then_some((at - closed_at) * 1000.0);
            return Cancel { cancel_ms, first_ms: streamed.first_ms, error };
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Cancel { cancel_ms: None, first_ms: streamed.first_ms, error: Some(format!("the last hop wrote nothing within {} s", hang + 5.0)) }
}

/// CLOCK_MONOTONIC in seconds: the clock Python's `time.monotonic()` reads on Linux.
fn monotonic_seconds() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}
