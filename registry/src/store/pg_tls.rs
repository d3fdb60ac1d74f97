//! TLS to PostgreSQL over rustls (the project's TLS stack): a [`MakeTlsConnect`] for
//! `tokio-postgres` that checks the server's certificate against the `sslrootcert` CA, and its
//! name too with `sslmode=verify-full`, and presents `sslcert`/`sslkey` when given.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use toolmesh_core::{Error, ErrorKind, Result};

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Encrypt only (`sslmode=require`): anyone on the path can pose as the server.
    Nothing,
    /// The chain to `sslrootcert` (`sslmode=verify-ca`).
    Chain,
    /// The chain and that the certificate names the host connected to (`sslmode=verify-full`).
    ChainAndName,
}

/// The connector every connection of a store uses; with `sslmode=disable` tokio-postgres
/// never asks it for a handshake.
#[derive(Clone)]
pub struct PgTls {
    config: Option<Arc<ClientConfig>>,
    /// For messages: what the handshake checked the server against.
    checked: Arc<str>,
}

impl PgTls {
    /// The connector of a store that does not speak TLS.
    pub fn plaintext() -> PgTls {
        PgTls { config: None, checked: "".into() }
    }

    /// A connector checking `check` against the CA certificates `roots` (PEM file `roots_path`),
    /// presenting `client` (certificate chain, key) when given.
    pub fn new(
        check: Check,
        roots: Option<(&str, RootCertStore)>,
        client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<PgTls> {
        let provider = toolmesh_core::tls::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| Error::new(ErrorKind::Internal, format!("TLS to PostgreSQL: {e}")))?;
        let (verifier, checked): (Arc<dyn ServerCertVerifier>, String) = match (check, roots) {
            (Check::Nothing, _) => (Arc::new(Unchecked(provider)), "nothing (sslmode=require)".to_owned()),
            (check, Some((path, roots))) => {
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("sslrootcert={path}: {e}")))?;
                match check {
                    Check::Chain => (Arc::new(ChainOnly(webpki)), format!("the CA in sslrootcert={path} (sslmode=verify-ca)")),
                    _ => (webpki, format!("the CA in sslrootcert={path} and the host name (sslmode=verify-full)")),
                }
            }
            (_, None) => return Err(Error::new(ErrorKind::Internal, "a verifying sslmode without sslrootcert".to_owned())),
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let config = match client {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("sslcert/sslkey: {e}; give the key of that certificate")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(PgTls { config: Some(Arc::new(config)), checked: checked.into() })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> MakeTlsConnect<S> for PgTls {
    type Stream = PgTlsStream<S>;
    type TlsConnect = Handshake;
    type Error = Refused;

    fn make_tls_connect(&mut self, host: &str) -> std::result::Result<Handshake, Refused> {
        let Some(config) = self.config.clone() else {
            return Ok(Handshake { config: None, name: None, checked: self.checked.clone() });
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            Refused(format!("'{host}' is not a host name TLS can check; name the server's host (with hostaddr= for its address)"))
        })?;
        Ok(Handshake { config: Some(config), name: Some(name), checked: self.checked.clone() })
    }
}

/// One connection's TLS handshake.
pub struct Handshake {
    config: Option<Arc<ClientConfig>>,
    name: Option<ServerName<'static>>,
    checked: Arc<str>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> TlsConnect<S> for Handshake {
    type Stream = PgTlsStream<S>;
    type Error = Refused;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<PgTlsStream<S>, Refused>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let (Some(config), Some(name)) = (self.config, self.name) else {
                return Err(Refused("TLS is off for this store (sslmode=disable)".to_owned()));
            };
            let host = name.to_str().into_owned();
            tokio_rustls::TlsConnector::from(config).connect(name, stream).await.map(PgTlsStream).map_err(|e| {
                Refused(format!("the TLS handshake with {host} failed: {e}; the server's certificate was checked against {}", self.checked))
            })
        })
    }
}

/// Why TLS to the server failed; a type of its own so that a refused handshake is told apart
/// from a server that is away (which a starting replica waits for).
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PgTlsStream<S> {
    /// SCRAM channel binding (`SCRAM-SHA-256-PLUS`, `tls-server-end-point`): ties the password
    /// exchange to this TLS connection, so that a man in the middle holding another certificate
    /// cannot relay it. PostgreSQL offers it over TLS; tokio-postgres uses it when offered
    /// (`channel_binding=prefer`, its default) or insists (`channel_binding=require` in the URL).
    fn channel_binding(&self) -> ChannelBinding {
        let (_, connection) = self.0.get_ref();
        match connection.peer_certificates().and_then(|chain| chain.first()).and_then(|cert| server_end_point(cert)) {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// RFC 5929's `tls-server-end-point`: the server certificate hashed with the hash of its
/// signature algorithm, SHA-256 for MD5 and SHA-1; `None` for an algorithm with no single hash
/// (Ed25519, RSASSA-PSS), for which PostgreSQL offers no binding either.
fn server_end_point(certificate: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let hash = match parsed.signature_algorithm.algorithm.to_id_string().as_str() {
        // md5WithRSA, sha1WithRSA, ecdsa-with-SHA1, sha256WithRSA, ecdsa-with-SHA256
        "1.2.840.113549.1.1.4" | "1.2.840.113549.1.1.5" | "1.2.840.10045.4.1" | "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" => {
            &ring::digest::SHA256
        }
        // sha384WithRSA, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => &ring::digest::SHA384,
        // sha512WithRSA, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => &ring::digest::SHA512,
        _ => return None,
    };
    Some(ring::digest::digest(hash, certificate.as_ref()).as_ref().to_vec())
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// `sslmode=verify-ca`: the chain must lead to the CA; the name in the certificate may differ
/// from the host connected to (libpq's meaning).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name: a name error means the chain passed.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `sslmode=require`: any certificate, but the handshake's signatures must still be valid.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
