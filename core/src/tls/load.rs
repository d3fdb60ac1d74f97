//! Loading our own certificate, key and CA bundle, and checking that peers will accept them;
//! every failure names the file and the fix.

use super::{internal, pem, provider};
use crate::error::{Error, ErrorKind, Result};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where an identity lives on disk: PEM certificate (chain), private key, and the CA bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// What a change of the identity files is detected by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileStamp(Vec<(Option<std::time::SystemTime>, u64)>);

impl FileStamp {
    pub(super) fn of(files: &TlsFiles) -> FileStamp {
        FileStamp(
            [&files.cert, &files.key, &files.ca]
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| (m.modified().ok(), m.len())).unwrap_or((None, 0)))
                .collect(),
        )
    }
}

/// The permission bits of a private key file that let others than its owner read it (`mode &
/// 0o077`), when there are any; always `None` where files have no Unix modes.
pub fn key_file_exposure(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// A key others can read is a key others may hold: loaded anyway, with a warning that says how
/// to close it.
pub(super) fn warn_if_key_exposed(path: &Path) {
    if let Some(mode) = key_file_exposure(path) {
        tracing::warn!(
            key = %path.display(),
            mode = format!("{mode:o}"),
            "the private key file is readable by its group or others; restrict it with `chmod 600 {}`",
            path.display()
        );
    }
}

pub(super) fn read(path: &Path, what: &str, env: &str) -> Result<Vec<u8>> {
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

pub(super) fn parse_roots(ca_pem: &[u8], ca_name: &str) -> Result<Vec<CertificateDer<'static>>> {
    pem::certificates_required(ca_pem, &format!("the CA bundle '{ca_name}'"))
}

pub(super) fn parse_certified_key(cert_pem: &[u8], key_pem: &[u8], cert_name: &str, key_name: &str) -> Result<CertifiedKey> {
    let chain = pem::certificates_required(cert_pem, &format!("the certificate file '{cert_name}'"))?;
    let key = pem::private_key(key_pem, key_name)?;
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
pub(super) fn check_chain(certified: &CertifiedKey, roots: &Arc<RootCertStore>, cert_name: &str, ca_name: &str) -> Result<()> {
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
                format!(
                    "the certificate '{cert_name}' {}; issue a new one (`toolmesh certs issue NAME --dir DIR --force`)",
                    validity_text(&err)
                ),
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
        Err(other) => {
            Err(Error::new(ErrorKind::CertificateUntrusted, format!("the certificate '{cert_name}' cannot be verified: {other}")))
        }
    }
}

pub(crate) fn validity_text(err: &CertificateError) -> String {
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
