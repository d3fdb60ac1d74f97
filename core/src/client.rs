//! The pooled mTLS HTTP client: one handshake per peer, then keep-alive reuse (HTTP/2 when the
//! peer offers it by ALPN). Used for peer calls and for the registry.

use crate::error::{Error, ErrorKind};
use crate::tls::{classify_error_chain, Identity};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed request, and whether the peer may have seen it (only undelivered ones are retried).
#[derive(Debug, Clone)]
pub struct RequestError {
    pub error: Error,
    pub delivered: bool,
}

/// An HTTPS client that presents our identity and verifies the peer's chain and host name.
/// Clones share one pool. When our certificate changes (renewed, reloaded), the pool is retired:
/// new requests open connections that present the new certificate, while requests in flight
/// finish on the old ones, which then close, long before the old certificate expires.
#[derive(Clone)]
pub struct HttpsClient {
    shared: Arc<Shared>,
}

struct Shared {
    connector: TlsConnector,
    /// Whose certificate generation the pool follows (`None`: a fixed configuration).
    identity: Option<Arc<Identity>>,
    pool: RwLock<Arc<Pool>>,
}

struct Pool {
    certificate_generation: u64,
    client: hyper_util::client::legacy::Client<TlsConnector, Full<Bytes>>,
}

impl Pool {
    fn new(connector: &TlsConnector, certificate_generation: u64) -> Arc<Pool> {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build(connector.clone());
        Arc::new(Pool { certificate_generation, client })
    }
}

impl HttpsClient {
    pub fn new(identity: &Arc<Identity>) -> crate::Result<Self> {
        Ok(Self::build(identity.client_config()?, Some(identity.clone())))
    }

    /// A client with its own TLS configuration (the bootstrap client, which pins a CA).
    pub fn with_tls(tls: Arc<rustls::ClientConfig>) -> Self {
        Self::build(tls, None)
    }

    fn build(tls: Arc<rustls::ClientConfig>, identity: Option<Arc<Identity>>) -> Self {
        let connector = TlsConnector { tls: tokio_rustls::TlsConnector::from(tls) };
        let generation = identity.as_ref().map_or(0, |i| i.certificate_generation());
        let pool = RwLock::new(Pool::new(&connector, generation));
        HttpsClient { shared: Arc::new(Shared { connector, identity, pool }) }
    }

    /// The pool for our current certificate, replacing the one of an older certificate.
    fn pool(&self) -> Arc<Pool> {
        let shared = &*self.shared;
        let current = shared.pool.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(generation) = shared.identity.as_ref().map(|i| i.certificate_generation()) else { return current };
        if current.certificate_generation == generation {
            return current;
        }
        let mut pool = shared.pool.write().unwrap_or_else(|p| p.into_inner());
        if pool.certificate_generation != generation {
            tracing::debug!("our certificate changed: retiring the connections that present the old one");
            *pool = Pool::new(&shared.connector, generation);
        }
        pool.clone()
    }

    /// Sends a request and reads the whole response body.
    pub async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<http::Response<Bytes>, RequestError> {
        let peer = request.uri().authority().map(|a| a.to_string()).unwrap_or_default();
        let response = self.pool().client.request(request).await.map_err(|e| classify_request_error(&e, &peer))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| RequestError {
            error: Error::new(ErrorKind::ConnectionLost, format!("{peer} broke the connection while answering: {e}")),
            delivered: true,
        })?;
        Ok(http::Response::from_parts(parts, body.to_bytes()))
    }
}

fn classify_request_error(e: &hyper_util::client::legacy::Error, peer: &str) -> RequestError {
    use std::error::Error as _;
    if let Some(tm) = e.source().and_then(|s| classify_error_chain(s, peer)) {
        let delivered = !e.is_connect() && !matches!(tm.kind(), ErrorKind::PeerRejectedCertificate | ErrorKind::TlsHandshake);
        return RequestError { error: tm, delivered };
    }
    if e.is_connect() {
        return RequestError {
            error: Error::new(ErrorKind::ConnectFailed, format!("cannot connect to {peer}: {}", source_text(e))),
            delivered: false,
        };
    }
    let canceled = e.source().and_then(|s| s.downcast_ref::<hyper::Error>()).is_some_and(|h| h.is_canceled());
    RequestError {
        error: Error::new(ErrorKind::ConnectionLost, format!("the connection to {peer} broke: {}", source_text(e))),
        delivered: !canceled,
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

#[derive(Clone)]
struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
}

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = TlsConnection;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<TlsConnection, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            if uri.scheme_str() != Some("https") {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("refusing to call {uri} without TLS: toolmesh only speaks https://"),
                ));
            }
            let host = uri.host().ok_or_else(|| Error::new(ErrorKind::InvalidConfig, format!("{uri} has no host")))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let peer = format!("{}:{port}", crate::server::bracket_ipv6(&host));
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
                .await
                .map_err(|_| Error::new(ErrorKind::ConnectFailed, format!("connecting to {peer} timed out")))?
                .map_err(|e| Error::new(ErrorKind::ConnectFailed, format!("cannot connect to {peer}: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(host.clone())
                .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("'{host}' is not a valid host name: {e}")))?;
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(name, tcp))
                .await
                .map_err(|_| Error::new(ErrorKind::TlsHandshake, format!("TLS handshake with {peer} timed out")))?
                .map_err(|e| {
                    classify_error_chain(&e, &peer)
                        .unwrap_or_else(|| Error::new(ErrorKind::TlsHandshake, format!("TLS with {peer} failed: {e}")))
                })?;
            Ok(TlsConnection(TokioIo::new(stream)))
        })
    }
}

struct TlsConnection(TokioIo<TlsStream<TcpStream>>);

impl Connection for TlsConnection {
    fn connected(&self) -> Connected {
        let h2 = self.0.inner().get_ref().1.alpn_protocol() == Some(b"h2");
        if h2 {
            Connected::new().negotiated_h2()
        } else {
            Connected::new()
        }
    }
}

impl hyper::rt::Read for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
