//! Mutual TLS: loading and checking an identity, the server and client configurations, the peer
//! identity, and turning handshake failures into errors that say what to fix.

use crate::error::{Error, ErrorKind, Result};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Where an identity lives on disk: PEM certificate (chain), private key, and the CA bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The one crypto provider of the mesh (ring), so every process negotiates the same suites.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A checked identity: our certificate and key, and the trust bundle peers must chain to.
/// The certificate sits behind a lock so it can be replaced without rebuilding connections.
pub struct Identity {
    current: RwLock<Arc<CertifiedKey>>,
    roots: Arc<RootCertStore>,
    name: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads and checks an identity from files; every failure names the file and the fix.
    pub fn load(files: &TlsFiles) -> Result<Arc<Identity>> {
        let cert = read(&files.cert, "certificate", "TOOLMESH_TLS_CERT")?;
        let key = read(&files.key, "private key", "TOOLMESH_TLS_KEY")?;
        let ca = read(&files.ca, "CA bundle", "TOOLMESH_TLS_CA")?;
        Self::from_pem_with_names(
            &cert,
            &key,
            &ca,
            &files.cert.display().to_string(),
            &files.key.display().to_string(),
            &files.ca.display().to_string(),
        )
    }

    /// Builds an identity from PEM text (tests, automatic certificates).
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Arc<Identity>> {
        Self::from_pem_with_names(cert_pem.as_bytes(), key_pem.as_bytes(), ca_pem.as_bytes(), "certificate", "key", "CA")
    }

    fn from_pem_with_names(
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
        cert_name: &str,
        key_name: &str,
        ca_name: &str,
    ) -> Result<Arc<Identity>> {
        let roots = Arc::new(parse_roots(ca_pem, ca_name)?);
        let certified = parse_certified_key(cert_pem, key_pem, cert_name, key_name)?;
        check_chain(&certified, &roots, cert_name, ca_name)?;
        let name = certified.end_entity_cert().map(|c| peer_identity(c)).unwrap_or_default();
        Ok(Arc::new(Identity { current: RwLock::new(Arc::new(certified)), roots, name }))
    }

    /// The workload identity of our certificate (its `spiffe://` URI SAN, else its CN).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.current.read().expect("identity lock poisoned").clone()
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }

    /// Server side: TLS 1.3/1.2, a client certificate is required and must chain to the bundle.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>> {
        let verifier = self.client_verifier()?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(internal)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(CurrentCert(self.clone())));
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Client side: verifies the peer's chain and its DNS/IP SAN, presents our certificate.
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<ClientConfig>> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(internal)?
            .with_root_certificates(self.roots.clone())
            .with_client_cert_resolver(Arc::new(CurrentCert(self.clone())));
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    fn client_verifier(&self) -> Result<Arc<dyn ClientCertVerifier>> {
        WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider()).build().map_err(|e| {
            Error::new(ErrorKind::CertificateFile, format!("the CA bundle cannot verify client certificates: {e}"))
        })
    }

    /// Checks that a server certificate for `host` would be accepted by our client config
    /// (tests and diagnostics).
    pub fn verify_server(&self, chain: &[CertificateDer<'static>], host: &str) -> Result<()> {
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider())
            .build()
            .map_err(internal)?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("'{host}' is not a host name: {e}")))?;
        let (ee, rest) = chain.split_first().ok_or_else(|| Error::new(ErrorKind::TlsHandshake, "empty chain"))?;
        verifier
            .verify_server_cert(ee, rest, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| classify_tls(&e, host))
    }
}

struct CurrentCert(Arc<Identity>);

impl std::fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CurrentCert")
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn read(path: &Path, what: &str, env: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::new(
            ErrorKind::CertificateFile,
            format!(
                "cannot read the TLS {what} '{}': {e}. Set {env} (or the matching option) to a readable PEM file; \
                 `toolmesh certs init --dir DIR` creates a development set",
                path.display()
            ),
        )
    })
}

fn parse_roots(ca_pem: &[u8], ca_name: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| {
            Error::new(ErrorKind::CertificateFile, format!("the CA bundle '{ca_name}' is not valid PEM: {e}"))
        })?;
        roots.add(cert).map_err(|e| {
            Error::new(ErrorKind::CertificateFile, format!("the CA bundle '{ca_name}' holds an unusable certificate: {e}"))
        })?;
    }
    if roots.is_empty() {
        return Err(Error::new(
            ErrorKind::CertificateFile,
            format!("the CA bundle '{ca_name}' contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)"),
        ));
    }
    Ok(roots)
}

fn parse_certified_key(cert_pem: &[u8], key_pem: &[u8], cert_name: &str, key_name: &str) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("the certificate '{cert_name}' is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(Error::new(
            ErrorKind::CertificateFile,
            format!("the certificate file '{cert_name}' contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)"),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        Error::new(
            ErrorKind::CertificateFile,
            format!("the key file '{key_name}' holds no PEM private key (PKCS#8, SEC1 or PKCS#1): {e}"),
        )
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => Error::new(
            ErrorKind::KeyMismatch,
            format!("the private key '{key_name}' does not belong to the certificate '{cert_name}'; use the key that was issued with that certificate"),
        ),
        other => Error::new(
            ErrorKind::CertificateFile,
            format!("the private key '{key_name}' cannot be used: {other}; keys must be ECDSA P-256/P-384, Ed25519 or RSA"),
        ),
    })
}

/// Our own certificate must be one peers accept: chained to the bundle, valid now.
fn check_chain(certified: &CertifiedKey, roots: &Arc<RootCertStore>, cert_name: &str, ca_name: &str) -> Result<()> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build().map_err(internal)?;
    let (ee, intermediates) = certified.cert.split_first().expect("chain checked non-empty");
    match verifier.verify_client_cert(ee, intermediates, UnixTime::now()) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(err)) => Err(match err {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => Error::new(
                ErrorKind::CertificateUntrusted,
                format!(
                    "the certificate '{cert_name}' is not signed by the CA in '{ca_name}'; issue it from that CA \
                     (`toolmesh certs issue NAME --dir DIR`) or point TOOLMESH_TLS_CA at the CA that signed it"
                ),
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Error::new(
                ErrorKind::CertificateExpired,
                format!("the certificate '{cert_name}' {}; issue a new one (`toolmesh certs issue NAME --dir DIR --force`)", validity_text(&err)),
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => Error::new(
                ErrorKind::CertificateExpired,
                format!("the certificate '{cert_name}' {}; check the clock or issue a new one", validity_text(&err)),
            ),
            other => Error::new(
                ErrorKind::CertificateUntrusted,
                format!("the certificate '{cert_name}' would be refused by peers: {other:?}; issue it with `toolmesh certs issue`"),
            ),
        }),
        Err(other) => Err(Error::new(ErrorKind::CertificateUntrusted, format!("the certificate '{cert_name}' cannot be verified: {other}"))),
    }
}

fn validity_text(err: &CertificateError) -> String {
    match err {
        CertificateError::ExpiredContext { time, not_after } => {
            format!("expired at {} (now {})", rfc3339(*not_after), rfc3339(*time))
        }
        CertificateError::NotValidYetContext { time, not_before } => {
            format!("is not valid until {} (now {})", rfc3339(*not_before), rfc3339(*time))
        }
        CertificateError::NotValidYet => "is not valid yet".to_owned(),
        _ => "has expired".to_owned(),
    }
}

fn rfc3339(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.as_secs() as i64)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{}s after the epoch", t.as_secs()))
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Internal, format!("TLS configuration: {e}"))
}

/// The identity a certificate names: its first `spiffe://` URI SAN, else any URI SAN, else its
/// subject CN, else `unknown`.
pub fn peer_identity(cert: &CertificateDer<'_>) -> String {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return "unknown".to_owned();
    };
    let uris: Vec<String> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(spiffe) = uris.iter().find(|u| u.starts_with("spiffe://")).or(uris.first()) {
        return spiffe.clone();
    }
    let cn = parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    cn.unwrap_or_else(|| "unknown".to_owned())
}

/// Turns a rustls failure on a connection to `peer` into an error that says what to fix.
pub fn classify_tls(err: &rustls::Error, peer: &str) -> Error {
    use rustls::Error as E;
    match err {
        E::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => Error::new(
            ErrorKind::PeerCertificateUntrusted,
            format!("the certificate presented by {peer} is not signed by a CA in the mesh trust bundle; give the peer a certificate from the mesh CA or add its CA as an entity"),
        ),
        E::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => {
            Error::new(
                ErrorKind::PeerHostnameMismatch,
                format!("the certificate presented by {peer} does not name that host in its DNS/IP SANs; reissue it with the address it is reached at"),
            )
        }
        E::InvalidCertificate(
            e @ (CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. }),
        ) => Error::new(ErrorKind::CertificateExpired, format!("the certificate presented by {peer} {}", validity_text(e))),
        E::AlertReceived(alert) if REJECTION_ALERTS.contains(alert) => Error::new(
            ErrorKind::PeerRejectedCertificate,
            format!("{peer} refused our client certificate (TLS alert: {alert:?}); use a certificate issued by the CA that {peer} trusts"),
        ),
        other => Error::new(ErrorKind::TlsHandshake, format!("TLS with {peer} failed: {other}")),
    }
}

/// Finds a rustls or toolmesh error in an error's source chain and classifies it.
pub fn classify_error_chain(err: &(dyn std::error::Error + 'static), peer: &str) -> Option<Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(tm) = e.downcast_ref::<Error>() {
            return Some(tm.clone());
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(classify_tls(tls, peer));
        }
        // io::Error and h2::Error skip their wrapped error in `source()`; look inside them.
        let io = e.downcast_ref::<std::io::Error>().or_else(|| e.downcast_ref::<h2::Error>().and_then(h2::Error::get_io));
        if let Some(io) = io {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return Some(classify_tls(tls, peer));
                }
                if let Some(tm) = inner.downcast_ref::<Error>() {
                    return Some(tm.clone());
                }
            }
        }
        cur = e.source();
    }
    // h2 keeps I/O errors as kind + text, so over HTTP/2 a TLS alert arrives only as its text.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        if let Some(alert) = text.split("received fatal alert: ").nth(1) {
            let alert = alert.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or_default();
            if let Some(a) = REJECTION_ALERTS.iter().find(|a| format!("{a:?}") == alert) {
                return Some(classify_tls(&rustls::Error::AlertReceived(*a), peer));
            }
        }
        cur = e.source();
    }
    None
}

/// The alerts a server sends when it refuses the client's certificate.
const REJECTION_ALERTS: &[AlertDescription] = &[
    AlertDescription::CertificateRequired,
    AlertDescription::BadCertificate,
    AlertDescription::UnknownCA,
    AlertDescription::CertificateUnknown,
    AlertDescription::CertificateExpired,
    AlertDescription::CertificateRevoked,
    AlertDescription::UnsupportedCertificate,
    AlertDescription::AccessDenied,
    // rustls answers a client certificate whose signature does not verify with this one.
    AlertDescription::DecryptError,
];
