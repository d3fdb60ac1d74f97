//! A minimal HTTPS client for the baselines and the load generator: one TLS connection per
//! worker (HTTP/1.1 keep-alive) or one shared HTTP/2 connection, plain hyper and rustls, no pool.

use crate::common::{AnyError, Caller};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;

pub enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Opens a TLS connection to `addr` (loopback only), offering `h2` or `http/1.1` by ALPN.
pub async fn connect_tls(
    addr: &str,
    server_name: &str,
    tls: Arc<rustls::ClientConfig>,
    h2: bool,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, AnyError> {
    let socket: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    if !socket.ip().is_loopback() {
        return Err(format!("{addr} is not a loopback address: the benchmarks only load this machine").into());
    }
    let mut tls = (*tls).clone();
    tls.alpn_protocols = vec![if h2 { b"h2".to_vec() } else { b"http/1.1".to_vec() }];
    let tcp = TcpStream::connect(socket).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(server_name.to_owned())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp).await?;
    Ok(TokioIo::new(stream))
}

/// Opens a TLS connection to `addr` (loopback only) and speaks HTTP/1.1 or HTTP/2 on it.
pub async fn connect(addr: &str, server_name: &str, tls: Arc<rustls::ClientConfig>, h2: bool) -> Result<Sender, AnyError> {
    let io = connect_tls(addr, server_name, tls, h2).await?;
    if h2 {
        let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(connection);
        Ok(Sender::H2(sender))
    } else {
        let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        Ok(Sender::H1(sender))
    }
}

/// The request target as an HTTP/1.1 server expects it (`/mcp`, not `https://host/mcp`): the
/// connection-level client sends the URI as given.
pub fn origin_form(uri: &http::Uri) -> http::Uri {
    uri.path_and_query().map_or_else(|| http::Uri::from_static("/"), |p| p.as_str().parse().expect("a path is a URI"))
}

impl Sender {
    /// Another handle on the same HTTP/2 connection (HTTP/1.1 connections are not shared).
    pub fn share(&self) -> Option<Sender> {
        match self {
            Sender::H2(s) => Some(Sender::H2(s.clone())),
            Sender::H1(_) => None,
        }
    }

    pub async fn send(&mut self, mut request: http::Request<Full<Bytes>>) -> Result<(http::StatusCode, Bytes), String> {
        if let Sender::H1(_) = self {
            if !request.headers().contains_key(http::header::HOST) {
                if let Some(authority) = request.uri().authority() {
                    let host = http::HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?;
                    request.headers_mut().insert(http::header::HOST, host);
                }
            }
            *request.uri_mut() = origin_form(request.uri());
        }
        let response = match self {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| format!("connection lost: {e}"))?;
                s.send_request(request).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| format!("connection lost: {e}"))?;
                s.send_request(request).await
            }
        }
        .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| format!("body failed: {e}"))?.to_bytes();
        Ok((status, body))
    }
}

/// The raw baseline: POSTs a fixed body and expects it echoed.
pub struct EchoCaller {
    pub sender: Sender,
    pub uri: http::Uri,
    pub body: Bytes,
}

impl Caller for EchoCaller {
    async fn call(&mut self) -> Result<(), String> {
        let request = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(self.body.clone()))
            .map_err(|e| e.to_string())?;
        let (status, body) = self.sender.send(request).await?;
        if status != http::StatusCode::OK || body.len() != self.body.len() {
            return Err(format!("echo answered {status} with {} bytes", body.len()));
        }
        Ok(())
    }
}

/// An MCP client that does one thing: a stateless `tools/call` POST (legacy revision
/// 2025-06-18, which both toolmesh and MCP Mesh serve without a session), checking the answer.
pub struct McpCallCaller {
    pub sender: Sender,
    pub uri: http::Uri,
    pub tool: String,
    pub arguments: String,
    /// The text the result's first content item must hold, when set.
    pub expect: Option<String>,
    pub ids: Arc<AtomicU64>,
}

impl Caller for McpCallCaller {
    async fn call(&mut self) -> Result<(), String> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{}","arguments":{}}}}}"#,
            self.tool, self.arguments
        );
        let request = http::Request::post(self.uri.clone())
            .header(http::header::HOST, self.uri.authority().map(|a| a.as_str()).unwrap_or("localhost"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let (status, body) = self.sender.send(request).await?;
        check_tool_result(status, &body, self.expect.as_deref())
    }
}

/// A JSON-RPC answer, plain or as the last SSE `data:` message, must hold a result that is
/// not an error (and, with `expect`, whose first text content is `expect`).
pub fn check_tool_result(status: http::StatusCode, body: &[u8], expect: Option<&str>) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if status != http::StatusCode::OK {
        return Err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()));
    }
    let json_text = if text.trim_start().starts_with('{') {
        text.to_string()
    } else {
        text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).rfind(|l| !l.is_empty()).unwrap_or_default().to_owned()
    };
    let message: serde_json::Value =
        serde_json::from_str(&json_text).map_err(|e| format!("not JSON ({e}): {}", text.chars().take(200).collect::<String>()))?;
    let result = message.get("result").ok_or_else(|| format!("no result: {message}"))?;
    if result.get("isError").and_then(serde_json::Value::as_bool) == Some(true) {
        return Err(format!("tool error: {result}"));
    }
    if let Some(expect) = expect {
        let first = result.pointer("/content/0/text").and_then(serde_json::Value::as_str).unwrap_or_default();
        if first.trim() != expect {
            return Err(format!("expected {expect}, got {result}"));
        }
    }
    Ok(())
}
