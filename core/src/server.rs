//! The HTTPS listener shared by agents and the registry: TLS with a mandatory client
//! certificate, HTTP/1.1 and HTTP/2 by ALPN, a clear answer to plaintext, graceful shutdown.

use crate::error::{Error, ErrorKind, Result};
use crate::metrics::{TlsMetrics, TlsSide};
use crate::policy::Principal;
use crate::tls::{peer_identity, Identity};
use bytes::Bytes;
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::CertificateDer;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub(crate) mod activity;
pub(crate) mod admission;
mod body;
pub(crate) mod expiry;
mod limits;
pub(crate) mod linger;

use activity::{Activity, Lifetime, Watched};
use admission::{Admission, RateLimitedWarning, Refused, Slot};
use expiry::{chain_not_after, instant_of};
pub use limits::ServerLimits;
use linger::LingeringClose;
pub use linger::{LINGER_MAX_BYTES, LINGER_TIMEOUT};

pub use body::{gather, Body, Event};

/// Who is on the other end of an inbound request, from its verified certificate.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Shared as it is by the span of every request on the connection.
    pub identity: Arc<str>,
    pub remote: SocketAddr,
    /// The chain the peer presented and the handshake verified; empty when the peer presented
    /// none, which only a server with optional client authentication (the registry's bootstrap)
    /// lets through.
    pub chain: Vec<CertificateDer<'static>>,
    /// The remote IP address as text, written once per connection for the span of every request
    /// on it.
    address_value: Arc<str>,
    /// Where the trust domain and the agent name lie in `identity` (empty, and `None`, when it
    /// is no SPIFFE ID or names no agent): read once per connection, not once per request
    /// authorized.
    trust_domain: Range<usize>,
    agent: Option<Range<usize>>,
}

impl PeerInfo {
    pub fn new(identity: &str, remote: SocketAddr, chain: Vec<CertificateDer<'static>>) -> Self {
        let principal = Principal::new(identity, None);
        // Slices of `identity`: their places in it, by address (no unsafe code needed).
        let place = |part: &str| {
            if part.is_empty() {
                return 0..0;
            }
            let start = part.as_ptr() as usize - identity.as_ptr() as usize;
            start..start + part.len()
        };
        let (trust_domain, agent) = (place(principal.trust_domain), principal.agent_name().map(place));
        PeerInfo { identity: Arc::from(identity), remote, chain, address_value: Arc::from(remote.ip().to_string()), trust_domain, agent }
    }

    /// The trust domain of the peer's SPIFFE ID; `None` when its identity is not one.
    pub fn trust_domain(&self) -> Option<&str> {
        Some(&self.identity[self.trust_domain.clone()]).filter(|domain| !domain.is_empty())
    }

    /// The peer as the policy sees it, vouched for by `entity` (`None`: the mesh's own CA).
    pub fn principal<'a>(&'a self, entity: Option<&'a str>) -> Principal<'a> {
        let agent = self.agent.clone().map(|range| &self.identity[range]);
        Principal::from_parts(&self.identity, &self.identity[self.trust_domain.clone()], entity, agent)
    }

    /// The remote IP address as text, shared (a span attribute's value).
    pub fn address_value(&self) -> Arc<str> {
        self.address_value.clone()
    }

    /// Whether the peer holds a verified client certificate.
    pub fn is_authenticated(&self) -> bool {
        !self.chain.is_empty()
    }
}

/// The answer to a plaintext HTTP request on the TLS port.
pub const PLAINTEXT_ANSWER: &str = "toolmesh: this port speaks HTTPS with mutual TLS only. \
Retry with https:// and a client certificate issued by the mesh CA \
(TOOLMESH_TLS_CERT / TOOLMESH_TLS_KEY, or `toolmesh certs issue NAME`).\n";

/// Binds a TCP listener, turning "address in use" into an error that says what to do.
pub async fn bind(host: &str, port: u16) -> Result<TcpListener> {
    let addr = format!("{}:{port}", bracket_ipv6(host));
    TcpListener::bind(&addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error::new(
                ErrorKind::AddressInUse,
                format!("cannot listen on {addr}: the port is already in use; stop the other process or choose another port (TOOLMESH_PORT / --port; 0 picks a free one)"),
            )
        } else {
            Error::new(ErrorKind::AddressInUse, format!("cannot listen on {addr}: {e}; check TOOLMESH_HOST / --host"))
        }
    })
}

pub fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// A running HTTPS server.
pub struct HttpsServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HttpsServer {
    /// Serves `handler` on `listener` until [`HttpsServer::shutdown`], with the default limits.
    pub fn spawn<F, Fut>(listener: TcpListener, tls: Arc<rustls::ServerConfig>, handler: F) -> Result<HttpsServer>
    where
        F: Fn(http::Request<Incoming>, Arc<PeerInfo>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = http::Response<Body>> + Send + 'static,
    {
        Self::spawn_limited(listener, tls, None, ServerLimits::default(), Arc::default(), handler)
    }

    /// Like [`HttpsServer::spawn`], and when `identity`'s trust anchors change (a CA removed
    /// from the trust bundle, say a revoked entity), every open connection's peer is verified
    /// again before its next request is served: a peer that no longer verifies gets `403`.
    pub fn spawn_checked<F, Fut>(
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        identity: Arc<Identity>,
        handler: F,
    ) -> Result<HttpsServer>
    where
        F: Fn(http::Request<Incoming>, Arc<PeerInfo>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = http::Response<Body>> + Send + 'static,
    {
        Self::spawn_limited(listener, tls, Some(identity), ServerLimits::default(), Arc::default(), handler)
    }

    /// Serves with these connection `limits`, counting handshakes in `handshakes`; with
    /// `identity`, peers are verified again when its trust anchors change (see
    /// [`HttpsServer::spawn_checked`]).
    pub fn spawn_limited<F, Fut>(
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        identity: Option<Arc<Identity>>,
        limits: ServerLimits,
        handshakes: Arc<TlsMetrics>,
        handler: F,
    ) -> Result<HttpsServer>
    where
        F: Fn(http::Request<Incoming>, Arc<PeerInfo>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = http::Response<Body>> + Send + 'static,
    {
        let local_addr = listener.local_addr().map_err(|e| Error::new(ErrorKind::AddressInUse, format!("listener has no address: {e}")))?;
        let (stop, stopped) = watch::channel(false);
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // Pings find HTTP/2 peers that vanished with a stream open.
        builder.http2().timer(TokioTimer::new()).keep_alive_interval(limits.idle_timeout);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let served = Arc::new(Served { acceptor, identity, handler, limits, handshakes, builder, stopped });
        let task = tokio::spawn(accept_loop(listener, served));
        Ok(HttpsServer { local_addr, stop, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes connections as they go idle, without waiting.
    pub fn stop_now(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then closes.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let task = self.task;
        tokio::pin!(task);
        if tokio::time::timeout(grace + Duration::from_millis(100), &mut task).await.is_err() {
            task.abort();
        }
        // Connections still open after the grace period are dropped with the task.
    }
}

/// What every connection of one listener shares.
struct Served<F> {
    acceptor: tokio_rustls::TlsAcceptor,
    identity: Option<Arc<Identity>>,
    handler: F,
    limits: ServerLimits,
    handshakes: Arc<TlsMetrics>,
    builder: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    stopped: watch::Receiver<bool>,
}

/// How long to wait after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one warning per this interval about refused connections or failed accepts.
const WARNING_INTERVAL: Duration = Duration::from_secs(10);

async fn accept_loop<F, Fut>(listener: TcpListener, served: Arc<Served<F>>)
where
    F: Fn(http::Request<Incoming>, Arc<PeerInfo>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Body>> + Send + 'static,
{
    let admission = Admission::new(served.limits.max_connections, served.limits.per_peer());
    let refused_warning = RateLimitedWarning::new(WARNING_INTERVAL);
    let accept_warning = RateLimitedWarning::new(WARNING_INTERVAL);
    let mut stopped = served.stopped.clone();
    // Aborting this task (at the end of a shutdown's grace) drops every connection with it.
    let mut connections = JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors (EMFILE) most likely: pause instead of spinning.
                    accept_warning.warn(|held_back| tracing::warn!(held_back, "accept failed: {e}; retrying in {ACCEPT_RETRY:?}"));
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = stopped.changed() => break,
        };
        // Never stop accepting: a connection over a limit is accepted and closed at once, so the
        // backlog keeps moving and the peer learns right away.
        let slot = match admission.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                refused_warning.warn(|held_back| {
                    let (limit, max) = match refused {
                        Refused::ListenerFull => ("max_connections", served.limits.max_connections),
                        Refused::PeerFull => ("max_connections_per_peer", served.limits.per_peer()),
                    };
                    tracing::warn!(%remote, held_back, "refused a connection: {limit} ({max}) reached");
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(served.clone(), stream, remote, slot));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// One connection, from the TLS handshake until a limit, the peer or a shutdown closes it.
async fn serve_connection<F, Fut>(served: Arc<Served<F>>, stream: TcpStream, remote: SocketAddr, _slot: Slot)
where
    F: Fn(http::Request<Incoming>, Arc<PeerInfo>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Body>> + Send + 'static,
{
    let limits = &served.limits;
    // Anchors that change during the handshake are caught by the first request's check.
    let generation = served.identity.as_ref().map_or(0, |i| i.trust_generation());
    let Some(tls) = handshake(stream, remote, &served.acceptor, limits.handshake_timeout, &served.handshakes).await else { return };
    // A resumed session skipped verification: the peer's certificate may have expired
    // or lost its CA since, so it is verified before the first request.
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let verified_under = Arc::new(AtomicU64::new(if resumed { NOT_VERIFIED } else { generation }));
    let chain: Vec<CertificateDer<'static>> = tls.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
    let anchors = served.identity.as_ref().map(|i| i.anchor_certificates()).unwrap_or_default();
    let expiry = chain_not_after(&chain, &anchors).map(instant_of);
    let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let name = chain.first().map(peer_identity).unwrap_or_else(|| "unknown".to_owned());
    let peer = Arc::new(PeerInfo::new(&name, remote, chain));
    // Who, never what keys: the identity its certificate names (SPIFFE ID, else its CN).
    tracing::debug!(peer = %peer.identity, %remote, resumed, version = ?tls.get_ref().1.protocol_version(), "TLS handshake accepted");

    let activity = Activity::new(!http2, limits);
    let service = {
        let (activity, identity, handler, body_timeout) =
            (activity.clone(), served.identity.clone(), served.handler.clone(), limits.body_timeout);
        let peer = peer.clone();
        hyper::service::service_fn(move |req| {
            let in_flight = activity.request_started();
            let checked = check_peer(identity.as_deref(), &peer, &verified_under, expiry).map_err(|why| no_longer_trusted(&peer, &why));
            let outcome = checked.map(|()| BODY_DEADLINE.scope(tokio::time::Instant::now() + body_timeout, handler(req, peer.clone())));
            async move {
                let response = match outcome {
                    Ok(served) => served.await,
                    Err(refusal) => refusal,
                };
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let io = TokioIo::new(Watched::new(LingeringClose::new(tls), activity.clone()));
    let conn = served.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let lifetime = Lifetime { activity: &activity, expiry, remote, stopped: Some(served.stopped.clone()) };
    lifetime.supervise(conn, |conn| conn.graceful_shutdown()).await;
}

tokio::task_local! {
    /// When the body of the request being handled must have arrived (see [`read_body`]).
    static BODY_DEADLINE: tokio::time::Instant;
}

/// The trust generation of a peer not verified yet (no generation reaches it).
const NOT_VERIFIED: u64 = u64::MAX;

/// Refuses a peer whose certificate chain expired since the handshake (the connection is about
/// to be cut), and verifies it again when the trust anchors changed since it was last verified.
fn check_peer(
    identity: Option<&Identity>,
    peer: &PeerInfo,
    verified_under: &AtomicU64,
    expiry: Option<tokio::time::Instant>,
) -> std::result::Result<(), rustls::Error> {
    if expiry.is_some_and(|at| tokio::time::Instant::now() >= at) {
        return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired));
    }
    let Some(identity) = identity else { return Ok(()) };
    let generation = identity.trust_generation();
    if !peer.is_authenticated() || verified_under.load(Ordering::Acquire) == generation {
        return Ok(());
    }
    identity.verify_peer(&peer.chain)?;
    verified_under.store(generation, Ordering::Release);
    Ok(())
}

/// The answer to a peer whose certificate no longer verifies; the connection closes after it.
fn no_longer_trusted(peer: &PeerInfo, why: &rustls::Error) -> http::Response<Body> {
    tracing::info!(peer = %peer.identity, remote = %peer.remote, "refused a request: the peer's certificate no longer verifies ({why})");
    let mut refusal = text_response(
        http::StatusCode::FORBIDDEN,
        format!(
            "toolmesh: the client certificate of {} no longer verifies against the mesh trust bundle ({why}); \
             its CA was removed (a revoked entity?) or it expired: get a certificate from a trusted CA\n",
            peer.identity
        ),
    );
    refusal.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    refusal
}

/// Answers plaintext with a readable error; returns the TLS stream when the handshake succeeds
/// within `timeout` of the accept. Counts the handshake, or why it failed, in `handshakes`.
async fn handshake(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    timeout: Duration,
    handshakes: &TlsMetrics,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(_) => return None,
        Err(_) => {
            tracing::debug!(%remote, "closed a connection that sent nothing within the handshake timeout ({timeout:?})");
            return None;
        }
    }
    // Every TLS connection starts with a handshake record (content type 22).
    if first[0] != 0x16 {
        tracing::info!(%remote, "refused a plaintext request on the TLS port");
        handshakes.failed(TlsSide::Server, "plaintext");
        let _ = tokio::time::timeout_at(deadline, answer_plaintext(stream)).await;
        return None;
    }
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            handshakes.completed(TlsSide::Server);
            Some(tls)
        }
        Ok(Err(e)) => {
            tracing::info!(%remote, "refused a TLS connection: {e}");
            let reason = crate::tls::classify_error_chain(&e, "the client").map_or(ErrorKind::TlsHandshake, |e| e.kind());
            handshakes.failed(TlsSide::Server, reason.name());
            None
        }
        Err(_) => {
            tracing::info!(%remote, "TLS handshake timed out ({timeout:?})");
            handshakes.failed(TlsSide::Server, "timeout");
            None
        }
    }
}

async fn answer_plaintext(mut stream: TcpStream) {
    // Read the request head first: closing with unread data would reset the connection and the
    // client would never see the answer.
    let mut buf = vec![0u8; 16 * 1024];
    let mut seen = 0;
    while seen < buf.len() {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf[seen..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => seen += n,
        }
        if buf[..seen].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{}",
        PLAINTEXT_ANSWER.len(),
        PLAINTEXT_ANSWER
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    // Drain briefly so the close is orderly.
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
}

/// Reads a request body of at most `limit` bytes; `Err` carries the ready answer: `413` when it
/// is larger, `408` when it did not arrive within the listener's body timeout, `400` otherwise.
pub async fn read_body(body: Incoming, limit: usize) -> std::result::Result<Bytes, http::Response<Body>> {
    let collecting = gather(Limited::new(body, limit), None);
    let collected = match BODY_DEADLINE.try_with(|deadline| *deadline) {
        Ok(deadline) => match tokio::time::timeout_at(deadline, collecting).await {
            Ok(collected) => collected,
            Err(_) => {
                let mut answer =
                    text_response(http::StatusCode::REQUEST_TIMEOUT, "the request body did not arrive within the body timeout");
                answer.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                return Err(answer);
            }
        },
        // Called outside a server's handler (a test, a proxy): no deadline.
        Err(_) => collecting.await,
    };
    match collected {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(text_response(http::StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {limit} bytes")))
        }
        Err(e) => Err(text_response(http::StatusCode::BAD_REQUEST, format!("cannot read request body: {e}"))),
    }
}

pub fn text_response(status: http::StatusCode, text: impl Into<String>) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"))
        .body(Body::from(text.into()))
        .expect("static response parts are valid")
}

pub fn json_response(status: http::StatusCode, body: &impl serde::Serialize) -> http::Response<Body> {
    // Room for a tool's usual answer at once: `to_vec` starts at 128 bytes and regrows (copies)
    // its buffer twice on the way to one.
    let mut bytes = Vec::with_capacity(512);
    serde_json::to_writer(&mut bytes, body).expect("response bodies always serialize");
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"))
        .body(Body::from(bytes))
        .expect("static response parts are valid")
}

#[cfg(test)]
mod tests {
    use super::PeerInfo;

    #[test]
    fn a_peer_names_the_trust_domain_of_its_spiffe_id_and_none_without_one() {
        let remote = "127.0.0.1:9".parse().unwrap();
        let peer = PeerInfo::new("spiffe://partner.example/agent/a", remote, Vec::new());
        assert_eq!(peer.trust_domain(), Some("partner.example"));
        assert_eq!(PeerInfo::new("bench-a", remote, Vec::new()).trust_domain(), None);
        assert_eq!(PeerInfo::new("spiffe://", remote, Vec::new()).trust_domain(), None);
    }

    #[test]
    fn a_peer_is_the_principal_its_identity_makes() {
        let remote = "127.0.0.1:9".parse().unwrap();
        for identity in [
            "spiffe://partner.example/agent/a",
            "spiffe://toolmesh.local/registry",
            "spiffe://toolmesh.local",
            "spiffe://",
            "spiffe://BAD/agent/x",
            "bench-a",
            "unknown",
            "",
        ] {
            let peer = PeerInfo::new(identity, remote, Vec::new());
            for entity in [None, Some("partner")] {
                assert_eq!(peer.principal(entity), crate::policy::Principal::new(identity, entity), "{identity:?}");
            }
        }
    }
}
