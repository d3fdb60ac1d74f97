//! The mTLS HTTP client: one handshake per connection, then keep-alive reuse. Peers speak
//! HTTP/1.1 (one request at a time per connection, idle connections kept per peer) or, when
//! they offer only it by ALPN, HTTP/2 (one connection carries every request). Used for peer
//! calls and for the registry.
//!
//! The connection cache is our own rather than hyper-util's pooled client: a call checks out a
//! connection-level sender directly, which costs a fraction of the pooled client's checkout.

use crate::error::{Error, ErrorKind};
use crate::per_generation::PerGeneration;
use crate::tls::{classify_error_chain, Identity};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How many idle HTTP/1.1 connections are kept per peer (the rest close after their request).
const MAX_IDLE_PER_PEER: usize = 64;

/// A failed request, and whether the peer may have seen it (only undelivered ones are retried).
#[derive(Debug, Clone)]
pub struct RequestError {
    pub error: Error,
    pub delivered: bool,
}

impl RequestError {
    fn undelivered(error: Error) -> Self {
        RequestError { error, delivered: false }
    }
}

/// An HTTPS client that presents our identity and verifies the peer's chain and host name.
/// Clones share one connection cache. When our certificate changes (renewed, reloaded), the
/// cache is retired: new requests open connections that present the new certificate, while
/// requests in flight finish on the old ones, which then close, long before the old
/// certificate expires.
#[derive(Clone)]
pub struct HttpsClient {
    shared: Arc<Shared>,
}

struct Shared {
    tls: tokio_rustls::TlsConnector,
    /// Whose certificate generation the cache follows (`None`: a fixed configuration).
    identity: Option<Arc<Identity>>,
    connections: PerGeneration<u64, Connections>,
}

impl HttpsClient {
    pub fn new(identity: &Arc<Identity>) -> crate::Result<Self> {
        Ok(Self::build(identity.client_config()?, Some(identity.clone())))
    }

    /// A client for the registry: the server must be the mesh's registry, chained to the mesh CA
    /// ([`Identity::registry_client_config`]), not merely a peer the trust bundle vouches for.
    pub fn for_registry(identity: &Arc<Identity>) -> crate::Result<Self> {
        Ok(Self::build(identity.registry_client_config()?, Some(identity.clone())))
    }

    /// A client with its own TLS configuration (the bootstrap client, which pins a CA).
    pub fn with_tls(tls: Arc<rustls::ClientConfig>) -> Self {
        Self::build(tls, None)
    }

    fn build(tls: Arc<rustls::ClientConfig>, identity: Option<Arc<Identity>>) -> Self {
        let generation = identity.as_ref().map_or(0, |i| i.certificate_generation());
        let connections = PerGeneration::new(generation, Connections::default());
        HttpsClient { shared: Arc::new(Shared { tls: tokio_rustls::TlsConnector::from(tls), identity, connections }) }
    }

    fn certificate_generation(&self) -> u64 {
        self.shared.identity.as_ref().map_or(0, |i| i.certificate_generation())
    }

    /// The connections of our current certificate, replacing those of an older certificate.
    fn connections(&self) -> Arc<Connections> {
        self.shared.connections.get(self.certificate_generation(), || {
            tracing::debug!("our certificate changed: retiring the connections that present the old one");
            Connections::default()
        })
    }

    /// Sends a request and reads the whole response body.
    pub async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<http::Response<Bytes>, RequestError> {
        let peer = Peer::of(request.uri())?;
        let connections = self.connections();
        let mut request = request;
        loop {
            let (mut sender, reused) = match connections.checkout(&peer.authority).await {
                Some(sender) => (sender, true),
                None => (self.connect(&peer, &connections).await?, false),
            };
            let response = match sender.send(request, &peer).await {
                Ok(response) => response,
                Err(mut e) => match e.take_message() {
                    // A kept connection the peer closed meanwhile: the request never left; try
                    // the next one (the cache only holds so many).
                    Some(unsent) if reused => {
                        request = unsent;
                        continue;
                    }
                    Some(_) => {
                        let error = Error::new(ErrorKind::ConnectionLost, format!("the new connection to {} closed at once", peer.authority));
                        return Err(RequestError::undelivered(error));
                    }
                    None => return Err(classify_send_error(&e.into_error(), &peer.authority)),
                },
            };
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| RequestError {
                error: Error::new(ErrorKind::ConnectionLost, format!("{} broke the connection while answering: {e}", peer.authority)),
                delivered: true,
            })?;
            connections.checkin(&peer.authority, sender);
            return Ok(http::Response::from_parts(parts, body.to_bytes()));
        }
    }

    /// Opens a connection (TCP, then the mTLS handshake) and starts HTTP on it.
    async fn connect(&self, peer: &Peer, connections: &Connections) -> Result<Sender, RequestError> {
        let authority = &peer.authority;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((peer.host.as_str(), peer.port)))
            .await
            .map_err(|_| Error::new(ErrorKind::ConnectFailed, format!("connecting to {authority} timed out")))
            .and_then(|r| r.map_err(|e| Error::new(ErrorKind::ConnectFailed, format!("cannot connect to {authority}: {e}"))))
            .map_err(RequestError::undelivered)?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(peer.host.clone()).map_err(|e| {
            RequestError::undelivered(Error::new(ErrorKind::InvalidConfig, format!("'{}' is not a valid host name: {e}", peer.host)))
        })?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, self.shared.tls.connect(name, tcp))
            .await
            .map_err(|_| Error::new(ErrorKind::TlsHandshake, format!("TLS handshake with {authority} timed out")))
            .and_then(|r| {
                r.map_err(|e| {
                    classify_error_chain(&e, authority)
                        .unwrap_or_else(|| Error::new(ErrorKind::TlsHandshake, format!("TLS with {authority} failed: {e}")))
                })
            })
            .map_err(RequestError::undelivered)?;
        tracing::debug!(
            peer = %stream.get_ref().1.peer_certificates().and_then(<[_]>::first).map(crate::tls::peer_identity).unwrap_or_default(),
            %authority,
            version = ?stream.get_ref().1.protocol_version(),
            "TLS handshake done"
        );
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        let broken = |e: hyper::Error| {
            RequestError::undelivered(Error::new(ErrorKind::ConnectionLost, format!("HTTP with {authority} failed to start: {e}")))
        };
        if h2 {
            let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await.map_err(broken)?;
            tokio::spawn(connection);
            connections.share_multiplexed(authority, sender.clone());
            Ok(Sender::Http2(sender))
        } else {
            let (sender, connection) = http1::handshake(io).await.map_err(broken)?;
            tokio::spawn(connection);
            Ok(Sender::Http1(sender))
        }
    }
}

/// Where a request goes, from its URI; only `https://` is ever spoken.
struct Peer {
    /// `host:port`, the key of the connection cache.
    authority: String,
    host: String,
    port: u16,
}

impl Peer {
    fn of(uri: &http::Uri) -> Result<Peer, RequestError> {
        let invalid = |text: String| RequestError::undelivered(Error::new(ErrorKind::InvalidConfig, text));
        if uri.scheme_str() != Some("https") {
            return Err(invalid(format!("refusing to call {uri} without TLS: toolmesh only speaks https://")));
        }
        let host = uri.host().ok_or_else(|| invalid(format!("{uri} has no host")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(443);
        Ok(Peer { authority: format!("{}:{port}", crate::server::bracket_ipv6(&host)), host, port })
    }
}

/// A connection-level sender of either HTTP version.
enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

type Sent = Result<http::Response<hyper::body::Incoming>, hyper::client::conn::TrySendError<http::Request<Full<Bytes>>>>;

impl Sender {
    /// Waits until the connection can take a request; an error means it closed.
    async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(s) => s.ready().await,
        }
    }

    /// Sends `request`, in origin form with a `Host` header on HTTP/1.1 and in absolute form
    /// on HTTP/2; an unsent request comes back in the error.
    async fn send(&mut self, mut request: http::Request<Full<Bytes>>, peer: &Peer) -> Sent {
        let mut uri = http::uri::Parts::default();
        uri.path_and_query = Some(request.uri().path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")));
        match self {
            Sender::Http1(s) => {
                if !request.headers().contains_key(http::header::HOST) {
                    if let Ok(host) = http::HeaderValue::from_str(&peer.authority) {
                        request.headers_mut().insert(http::header::HOST, host);
                    }
                }
                if let Ok(origin) = http::Uri::from_parts(uri) {
                    *request.uri_mut() = origin;
                }
                s.try_send_request(request).await
            }
            Sender::Http2(s) => {
                uri.scheme = Some(http::uri::Scheme::HTTPS);
                uri.authority = peer.authority.parse().ok();
                if let Ok(absolute) = http::Uri::from_parts(uri) {
                    *request.uri_mut() = absolute;
                }
                s.try_send_request(request).await
            }
        }
    }
}

/// The open connections of one certificate generation, by peer (`host:port`).
#[derive(Default)]
struct Connections {
    peers: Mutex<HashMap<String, PeerConnections>>,
}

#[derive(Default)]
struct PeerConnections {
    /// HTTP/1.1 connections waiting for a request, the most recently used last.
    idle: Vec<(http1::SendRequest<Full<Bytes>>, Instant)>,
    /// An HTTP/2 connection carries every request to its peer at once.
    multiplexed: Option<http2::SendRequest<Full<Bytes>>>,
}

impl Connections {
    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<String, PeerConnections>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept connection to `authority` that is ready for a request, if there is one.
    async fn checkout(&self, authority: &str) -> Option<Sender> {
        loop {
            let mut candidate = {
                let mut peers = self.peers();
                let peer = peers.get_mut(authority)?;
                match &peer.multiplexed {
                    Some(h2) if !h2.is_closed() => Sender::Http2(h2.clone()),
                    _ => {
                        peer.multiplexed = None;
                        let (sender, since) = peer.idle.pop()?;
                        if since.elapsed() > IDLE_TIMEOUT {
                            // The rest are older still.
                            peer.idle.clear();
                            return None;
                        }
                        Sender::Http1(sender)
                    }
                }
            };
            // Usually at once; a connection that closed meanwhile is dropped for the next one.
            if candidate.ready().await.is_ok() {
                return Some(candidate);
            }
        }
    }

    /// Keeps an HTTP/1.1 connection for the next request to `authority`.
    fn checkin(&self, authority: &str, sender: Sender) {
        let Sender::Http1(sender) = sender else { return };
        if sender.is_closed() {
            return;
        }
        let mut peers = self.peers();
        if !peers.contains_key(authority) {
            peers.insert(authority.to_owned(), PeerConnections::default());
        }
        let Some(peer) = peers.get_mut(authority) else { return };
        let now = Instant::now();
        // Oldest first: close the ones idle too long, and the oldest beyond the limit.
        let expired = peer.idle.iter().take_while(|(_, since)| now - *since > IDLE_TIMEOUT).count();
        let excess = (peer.idle.len() - expired + 1).saturating_sub(MAX_IDLE_PER_PEER);
        peer.idle.drain(..expired + excess);
        peer.idle.push((sender, now));
    }

    fn share_multiplexed(&self, authority: &str, sender: http2::SendRequest<Full<Bytes>>) {
        self.peers().entry(authority.to_owned()).or_default().multiplexed = Some(sender);
    }
}

/// A request that failed after it was handed to an open connection.
fn classify_send_error(e: &hyper::Error, peer: &str) -> RequestError {
    if let Some(tm) = classify_error_chain(e, peer) {
        // In TLS 1.3 a server refuses our certificate after our side of the handshake is done,
        // so the refusal arrives with the first request, which it did not serve.
        let delivered = !matches!(tm.kind(), ErrorKind::PeerRejectedCertificate | ErrorKind::TlsHandshake);
        return RequestError { error: tm, delivered };
    }
    RequestError {
        error: Error::new(ErrorKind::ConnectionLost, format!("the connection to {peer} broke: {}", source_text(e))),
        delivered: !e.is_canceled(),
    }
}

fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}
