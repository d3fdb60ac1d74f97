//! The mTLS HTTP client: one handshake per connection, then keep-alive reuse. Peers speak
//! HTTP/1.1 (one request at a time per connection, idle connections kept per peer) or, when
//! they offer only it by ALPN, HTTP/2 (one connection carries every request). Used for peer
//! calls and for the registry.
//!
//! The connection cache is our own rather than hyper-util's pooled client: a call checks out a
//! connection-level sender directly, which costs a fraction of the pooled client's checkout.

use crate::error::{Error, ErrorKind};
use crate::fx_hash::FxHashMap;
use crate::metrics::{TlsMetrics, TlsSide};
use crate::per_generation::PerGeneration;
use crate::tls::{classify_error_chain, Identity};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How many idle HTTP/1.1 connections are kept per peer (the rest close after their request).
const MAX_IDLE_PER_PEER: usize = 64;
/// How long a request that failed on a new connection waits for the connection's task to end
/// and tell why (it ends at once when the connection did).
const CLOSE_REASON_WAIT: Duration = Duration::from_secs(1);
/// How long a second connection waits for the peer's verdict on our certificate.
const VERDICT_WAIT: Duration = Duration::from_millis(500);

/// A failed request, and whether the peer may have seen it (only undelivered ones are retried).
#[derive(Debug, Clone)]
pub struct RequestError {
    pub error: Error,
    pub delivered: bool,
}

/// The identity the server's certificate names (its SPIFFE ID, else its CN), verified by the
/// handshake of the connection that carried a response: an extension on every response
/// [`HttpsClient::send`] returns, read once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity(pub Arc<str>);

impl PeerIdentity {
    fn of(tls: &rustls::ClientConnection) -> Option<PeerIdentity> {
        tls.peer_certificates().and_then(<[_]>::first).map(|leaf| PeerIdentity(crate::tls::peer_identity(leaf).into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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
    handshakes: Arc<TlsMetrics>,
}

impl HttpsClient {
    pub fn new(identity: &Arc<Identity>) -> crate::Result<Self> {
        Self::counting(identity, Arc::default())
    }

    /// [`HttpsClient::new`], counting its handshakes (and those that failed) in `handshakes`.
    pub fn counting(identity: &Arc<Identity>, handshakes: Arc<TlsMetrics>) -> crate::Result<Self> {
        Ok(Self::build(identity.client_config()?, Some(identity.clone()), handshakes))
    }

    /// A client for the registry: the server must be the mesh's registry, chained to the mesh CA
    /// ([`Identity::registry_client_config`]), not merely a peer the trust bundle vouches for.
    pub fn for_registry(identity: &Arc<Identity>) -> crate::Result<Self> {
        Ok(Self::build(identity.registry_client_config()?, Some(identity.clone()), Arc::default()))
    }

    /// A client with its own TLS configuration (the bootstrap client, which pins a CA).
    pub fn with_tls(tls: Arc<rustls::ClientConfig>) -> Self {
        Self::build(tls, None, Arc::default())
    }

    fn build(tls: Arc<rustls::ClientConfig>, identity: Option<Arc<Identity>>, handshakes: Arc<TlsMetrics>) -> Self {
        let generation = identity.as_ref().map_or(0, |i| i.certificate_generation());
        let connections = PerGeneration::new(generation, Connections::default());
        HttpsClient { shared: Arc::new(Shared { tls: tokio_rustls::TlsConnector::from(tls), identity, connections, handshakes }) }
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

    /// Sends a request and reads the whole response body; the response carries the server's
    /// verified [`PeerIdentity`] as an extension.
    pub async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<http::Response<Bytes>, RequestError> {
        self.send_observed(request, None).await
    }

    /// [`HttpsClient::send`], handing `observe` each piece of the response body as it arrives
    /// (a stream of events is read while it is still coming).
    pub async fn send_observed(
        &self,
        request: http::Request<Full<Bytes>>,
        mut observe: Option<&mut (dyn FnMut(&Bytes) + Send)>,
    ) -> Result<http::Response<Bytes>, RequestError> {
        let peer = Peer::of(request.uri())?;
        let connections = self.connections();
        let mut request = request;
        loop {
            // `task` is the new connection's task, whose end tells why a new connection failed.
            // The handshake's and the failure's futures are boxed: they are large and rare, and
            // held inline they would make every request's future as large, which is moved
            // (copied) each time it is nested in its caller's.
            let (mut sender, task) = match connections.checkout(peer.authority()).await {
                Some(sender) => (sender, None),
                None => {
                    let (sender, task) = Box::pin(self.connect(&peer, &connections)).await?;
                    (sender, Some(task))
                }
            };
            let response = match sender.send(request, &peer).await {
                Ok(response) => response,
                Err(mut e) => match (e.take_message(), task) {
                    // A kept connection the peer closed meanwhile: the request never left; try
                    // the next one (the cache only holds so many).
                    (Some(unsent), None) => {
                        request = unsent;
                        continue;
                    }
                    (unsent, Some(task)) => return Err(Box::pin(self.new_connection_failed(&e, unsent.is_some(), task, &peer)).await),
                    // A kept connection that fails once the request is written is not retried:
                    // the peer may have read and acted on it (a tools/call is not idempotent),
                    // and its close cannot be told from a crash in the middle of the call. A
                    // close that reached us before the request left is caught at checkout.
                    (None, None) => return Err(classify_send_error(e.error(), peer.authority())),
                },
            };
            let (mut parts, body) = response.into_parts();
            if let Some(identity) = sender.identity() {
                parts.extensions.insert(identity.clone());
            }
            let body = crate::server::gather(body, observe.as_deref_mut()).await.map_err(|e| RequestError {
                error: Error::new(ErrorKind::ConnectionLost, format!("{} broke the connection while answering: {e}", peer.authority())),
                delivered: true,
            })?;
            connections.checkin(peer.authority(), sender);
            return Ok(http::Response::from_parts(parts, body));
        }
    }

    /// Opens a connection (TCP, then the mTLS handshake) and starts HTTP on it; also returns the
    /// connection's task.
    async fn connect(&self, peer: &Peer, connections: &Connections) -> Result<(Sender, ConnectionTask), RequestError> {
        let authority = peer.authority();
        let stream = self.handshake(peer).await?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let identity = PeerIdentity::of(stream.get_ref().1);
        // Only HTTP/1.1 connections wait idle between requests, to be peeked before reuse.
        let socket = (!h2).then(|| stream.get_ref().0.watch());
        let io = TokioIo::new(stream);
        let broken = |e: hyper::Error| {
            RequestError::undelivered(
                classify_error_chain(&e, authority)
                    .unwrap_or_else(|| Error::new(ErrorKind::ConnectionLost, format!("HTTP with {authority} failed to start: {e}"))),
            )
        };
        match socket {
            None => {
                let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await.map_err(broken)?;
                let task = tokio::spawn(connection);
                let sender = Http2 { sender, identity };
                connections.share_multiplexed(authority, sender.clone());
                Ok((Sender::Http2(sender), task))
            }
            Some(socket) => {
                let (sender, connection) = http1::handshake(io).await.map_err(broken)?;
                // The connection owns the only strong handle on its socket: when its task ends,
                // the connection (and the socket with it) is dropped and the watch sees it gone.
                let task = tokio::spawn(connection);
                // The same on every request: a connection serves one authority.
                let host = http::HeaderValue::from_str(authority).ok();
                Ok((Sender::Http1(Http1 { sender, socket, identity, host }), task))
            }
        }
    }

    /// TCP, then the mTLS handshake.
    async fn handshake(&self, peer: &Peer) -> Result<tokio_rustls::client::TlsStream<SharedTcp>, RequestError> {
        let authority = peer.authority();
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((peer.host(), peer.port)))
            .await
            .map_err(|_| Error::new(ErrorKind::ConnectFailed, format!("connecting to {authority} timed out")))
            .and_then(|r| r.map_err(|e| Error::new(ErrorKind::ConnectFailed, format!("cannot connect to {authority}: {e}"))))
            .map_err(RequestError::undelivered)?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(peer.host().to_owned()).map_err(|e| {
            RequestError::undelivered(Error::new(ErrorKind::InvalidConfig, format!("'{}' is not a valid host name: {e}", peer.host())))
        })?;
        let handshakes = &self.shared.handshakes;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, self.shared.tls.connect(name, SharedTcp(Arc::new(tcp))))
            .await
            .map_err(|_| {
                handshakes.failed(TlsSide::Client, "timeout");
                Error::new(ErrorKind::TlsHandshake, format!("TLS handshake with {authority} timed out"))
            })
            .and_then(|r| {
                r.map_err(|e| {
                    let error = classify_error_chain(&e, authority)
                        .unwrap_or_else(|| Error::new(ErrorKind::TlsHandshake, format!("TLS with {authority} failed: {e}")));
                    handshakes.failed(TlsSide::Client, error.kind().name());
                    error
                })
            })
            .map_err(RequestError::undelivered)?;
        handshakes.completed(TlsSide::Client);
        tracing::debug!(
            peer = %stream.get_ref().1.peer_certificates().and_then(<[_]>::first).map(crate::tls::peer_identity).unwrap_or_default(),
            %authority,
            version = ?stream.get_ref().1.protocol_version(),
            "TLS handshake done"
        );
        Ok(stream)
    }

    /// A request that failed on a new connection. In TLS 1.3 a server refuses our certificate
    /// after our side of the handshake is done, so the refusal races the first request: it may
    /// come back with the request's error, only with the end of the connection's task (when the
    /// connection was gone before the request was handed to it), or not at all (when writing
    /// into the refused connection failed before the alert was read, as HTTP/2's several writes
    /// do). Whichever way the race went, it is reported as the refusal.
    async fn new_connection_failed(&self, e: &TrySendError, unsent: bool, task: ConnectionTask, peer: &Peer) -> RequestError {
        let authority = peer.authority();
        let mut tls = classify_error_chain(e.error(), authority);
        // Only a connection that ended says more (not, say, an HTTP/2 stream the peer reset).
        let ended = unsent || connection_ended(e.error());
        if tls.is_none() && ended {
            if let Ok(Ok(Err(ended))) = tokio::time::timeout(CLOSE_REASON_WAIT, task).await {
                tls = classify_error_chain(&ended, authority);
            }
        }
        tls = self.count_refusal(tls);
        if tls.is_none() && ended {
            tls = self.verdict(peer).await;
        }
        match tls {
            Some(error) if unsent => RequestError::undelivered(error),
            Some(error) => tls_send_error(error),
            None if unsent => RequestError::undelivered(Error::new(
                ErrorKind::ConnectionLost,
                format!("the new connection to {authority} closed at once"),
            )),
            None => classify_send_error(e.error(), authority),
        }
    }

    /// Why a new connection broke when it did not tell: a second handshake, then a read without
    /// writing, which yields the peer's alert if it refuses our certificate (and times out if it
    /// accepts it). Only ever run on that failure, never on a working connection.
    async fn verdict(&self, peer: &Peer) -> Option<Error> {
        use tokio::io::AsyncReadExt;
        let mut stream = match self.handshake(peer).await {
            Ok(connected) => connected,
            Err(e) => return matches!(e.error.kind(), ErrorKind::PeerRejectedCertificate | ErrorKind::TlsHandshake).then_some(e.error),
        };
        match tokio::time::timeout(VERDICT_WAIT, stream.read(&mut [0u8; 1])).await {
            Ok(Err(e)) => self.count_refusal(classify_error_chain(&e, peer.authority())),
            _ => None,
        }
    }

    /// In TLS 1.3 the server refuses our certificate after our side of the handshake is done
    /// (and counted as completed): a refusal found on the connection is counted as a failure.
    fn count_refusal(&self, error: Option<Error>) -> Option<Error> {
        if let Some(refused) = error.as_ref().filter(|e| e.kind() == ErrorKind::PeerRejectedCertificate) {
            self.shared.handshakes.failed(TlsSide::Client, refused.kind().name());
        }
        error
    }
}

/// Where a request goes, from its URI; only `https://` is ever spoken.
struct Peer {
    /// The URI's authority, shared with it (read on every request: not copied).
    written: http::uri::Authority,
    /// `host:port` when the URI does not write it so (no port, or user information).
    formatted: Option<Box<str>>,
    port: u16,
}

impl Peer {
    fn of(uri: &http::Uri) -> Result<Peer, RequestError> {
        let invalid = |text: String| RequestError::undelivered(Error::new(ErrorKind::InvalidConfig, text));
        if uri.scheme_str() != Some("https") {
            return Err(invalid(format!("refusing to call {uri} without TLS: toolmesh only speaks https://")));
        }
        let written = uri.authority().filter(|a| !a.host().is_empty()).ok_or_else(|| invalid(format!("{uri} has no host")))?.clone();
        // Each of the authority's accessors parses it again: the port is read once.
        let written_port = written.port_u16();
        let port = written_port.unwrap_or(443);
        let formatted = (written_port.is_none() || written.as_str().contains('@')).then(|| {
            format!("{}:{port}", crate::server::bracket_ipv6(written.host().trim_start_matches('[').trim_end_matches(']'))).into()
        });
        Ok(Peer { written, formatted, port })
    }

    /// `host:port`, the key of the connection cache.
    fn authority(&self) -> &str {
        self.formatted.as_deref().unwrap_or(self.written.as_str())
    }

    /// The host, without an IPv6 address's brackets.
    fn host(&self) -> &str {
        self.written.host().trim_start_matches('[').trim_end_matches(']')
    }
}

/// The task that drives a connection; it ends with the connection, with its error.
type ConnectionTask = tokio::task::JoinHandle<hyper::Result<()>>;

/// A connection's TCP socket, shared so that the connection cache can look at it without
/// reading it (a [`SocketWatch`]) while the connection reads and writes it, on one descriptor.
/// Reads and writes go through the `&self` readiness API of tokio's `TcpStream`, as its own
/// `AsyncRead`/`AsyncWrite` do.
struct SharedTcp(Arc<TcpStream>);

/// A weak handle on a connection's socket, to look at it without reading it; it no longer
/// upgrades once the connection's task has ended and dropped the socket, which closed it.
type SocketWatch = std::sync::Weak<TcpStream>;

impl SharedTcp {
    fn watch(&self) -> SocketWatch {
        Arc::downgrade(&self.0)
    }
}

impl tokio::io::AsyncRead for SharedTcp {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        use std::io::{ErrorKind::WouldBlock, Read};
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let room = unfilled.len();
            // A read that leaves room in the buffer has drained the socket, so its readiness is
            // cleared with it, as tokio's own `poll_read` does: otherwise the next poll's read
            // is a system call that only says `WouldBlock` (one per response). `try_io` clears
            // it only if no newer readiness arrived since this read began, so none is lost.
            let mut drained = None;
            let read = self.0.try_io(tokio::io::Interest::READABLE, || {
                let read = (&*socket2::SockRef::from(&*self.0)).read(unfilled)?;
                if read > 0 && read < room {
                    drained = Some(read);
                    return Err(WouldBlock.into());
                }
                Ok(read)
            });
            match (read, drained) {
                (_, Some(read)) | (Ok(read), None) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                (Err(e), None) if e.kind() == WouldBlock => continue,
                (Err(e), None) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl tokio::io::AsyncWrite for SharedTcp {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Writes go straight to the socket: nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Ends our direction of the stream, as tokio's `TcpStream` does.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}

/// A connection-level sender of either HTTP version.
enum Sender {
    Http1(Http1),
    Http2(Http2),
}

/// An HTTP/1.1 connection's sender, a watch on its socket, and whom its handshake verified.
struct Http1 {
    sender: http1::SendRequest<Full<Bytes>>,
    socket: SocketWatch,
    identity: Option<PeerIdentity>,
    /// The `Host` header of its requests.
    host: Option<http::HeaderValue>,
}

/// An HTTP/2 connection's sender (shared by every request to its peer), and whom its handshake
/// verified.
#[derive(Clone)]
struct Http2 {
    sender: http2::SendRequest<Full<Bytes>>,
    identity: Option<PeerIdentity>,
}

impl Http1 {
    /// Whether the peer closed this idle connection (or sent on it, which on an idle HTTP/1.1
    /// connection is only ever a TLS close or alert), as the socket shows it at once: the
    /// connection's task may not have seen it yet, so `ready()` would still pass and the request
    /// would be written into a dead connection. That is what a peer that exited leaves us.
    fn peer_closed(&self) -> bool {
        let Some(socket) = self.socket.upgrade() else { return true };
        // A peek on the connection's own descriptor, which is non-blocking; it bypasses tokio's
        // readiness, so the connection's task still waits and wakes as before.
        let peeked = socket2::SockRef::from(&*socket).peek(&mut [std::mem::MaybeUninit::uninit(); 1]);
        !matches!(peeked, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

type TrySendError = hyper::client::conn::TrySendError<http::Request<Full<Bytes>>>;
type Sent = Result<http::Response<hyper::body::Incoming>, TrySendError>;

impl Sender {
    /// Waits until the connection can take a request; an error means it closed.
    async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::Http1(s) => s.sender.ready().await,
            Sender::Http2(s) => s.sender.ready().await,
        }
    }

    fn identity(&self) -> Option<&PeerIdentity> {
        match self {
            Sender::Http1(s) => s.identity.as_ref(),
            Sender::Http2(s) => s.identity.as_ref(),
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
                    if let Some(host) = &s.host {
                        request.headers_mut().insert(http::header::HOST, host.clone());
                    }
                }
                if let Ok(origin) = http::Uri::from_parts(uri) {
                    *request.uri_mut() = origin;
                }
                s.sender.try_send_request(request).await
            }
            Sender::Http2(s) => {
                uri.scheme = Some(http::uri::Scheme::HTTPS);
                uri.authority = peer.authority().parse().ok();
                if let Ok(absolute) = http::Uri::from_parts(uri) {
                    *request.uri_mut() = absolute;
                }
                s.sender.try_send_request(request).await
            }
        }
    }
}

/// The open connections of one certificate generation, by peer (`host:port`).
#[derive(Default)]
struct Connections {
    peers: Mutex<FxHashMap<String, PeerConnections>>,
}

#[derive(Default)]
struct PeerConnections {
    /// HTTP/1.1 connections waiting for a request, the most recently used last.
    idle: Vec<(Http1, Instant)>,
    /// An HTTP/2 connection carries every request to its peer at once.
    multiplexed: Option<Http2>,
}

impl Connections {
    fn peers(&self) -> std::sync::MutexGuard<'_, FxHashMap<String, PeerConnections>> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept connection to `authority` that is ready for a request, if there is one.
    async fn checkout(&self, authority: &str) -> Option<Sender> {
        loop {
            let mut candidate = {
                let mut peers = self.peers();
                let peer = peers.get_mut(authority)?;
                match &peer.multiplexed {
                    Some(h2) if !h2.sender.is_closed() => Sender::Http2(h2.clone()),
                    _ => {
                        peer.multiplexed = None;
                        let (connection, since) = peer.idle.pop()?;
                        if since.elapsed() > IDLE_TIMEOUT {
                            // The rest are older still.
                            peer.idle.clear();
                            return None;
                        }
                        Sender::Http1(connection)
                    }
                }
            };
            if matches!(&candidate, Sender::Http1(c) if c.peer_closed()) {
                continue;
            }
            // Usually at once; a connection that closed meanwhile is dropped for the next one.
            if candidate.ready().await.is_ok() {
                return Some(candidate);
            }
        }
    }

    /// Keeps an HTTP/1.1 connection for the next request to `authority`.
    fn checkin(&self, authority: &str, sender: Sender) {
        let Sender::Http1(connection) = sender else { return };
        if connection.sender.is_closed() {
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
        peer.idle.push((connection, now));
    }

    fn share_multiplexed(&self, authority: &str, sender: Http2) {
        self.peers().entry(authority.to_owned()).or_default().multiplexed = Some(sender);
    }
}

/// Whether a request failed because its connection ended: closed before the answer, or an I/O
/// error (a reset, a broken pipe), as HTTP/1.1 or HTTP/2 reports it.
fn connection_ended(e: &hyper::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(e) = cur {
        let io = e.is::<std::io::Error>() || e.downcast_ref::<h2::Error>().is_some_and(h2::Error::is_io);
        if io || e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_incomplete_message) {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A TLS failure of a request handed to an open connection.
fn tls_send_error(error: Error) -> RequestError {
    // In TLS 1.3 a server refuses our certificate after our side of the handshake is done,
    // so the refusal arrives with the first request, which it did not serve.
    let delivered = !matches!(error.kind(), ErrorKind::PeerRejectedCertificate | ErrorKind::TlsHandshake);
    RequestError { error, delivered }
}

/// A request that failed after it was handed to an open connection.
fn classify_send_error(e: &hyper::Error, peer: &str) -> RequestError {
    if let Some(tm) = classify_error_chain(e, peer) {
        return tls_send_error(tm);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_keyed_by_host_and_port_however_its_uri_writes_them() {
        let of = |uri: &str| Peer::of(&uri.parse().unwrap()).ok().map(|p| (p.authority().to_owned(), p.host().to_owned(), p.port));
        let peer = |authority: &str, host: &str, port| Some((authority.to_owned(), host.to_owned(), port));
        assert_eq!(of("https://127.0.0.1:8443/mcp"), peer("127.0.0.1:8443", "127.0.0.1", 8443));
        assert_eq!(of("https://[::1]:8443/mcp"), peer("[::1]:8443", "::1", 8443));
        assert_eq!(of("https://agent.example/mcp"), peer("agent.example:443", "agent.example", 443));
        assert_eq!(of("https://user@agent.example:9/mcp"), peer("agent.example:9", "agent.example", 9));
        assert_eq!(of("http://agent.example:9/mcp"), None);
    }
}
