//! Turning TLS failures into errors that say what went wrong and what to do about it.

use super::refusal::{CertificateRefused, RefusalReason};
use super::validity_text;
use crate::error::{Error, ErrorKind};
use rustls::{AlertDescription, CertificateError};

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
        E::InvalidCertificate(CertificateError::Other(other)) if other.0.downcast_ref::<CertificateRefused>().is_some_and(|r| r.reason == RefusalReason::IdentityNotAllowed) => Error::new(
            ErrorKind::PeerIdentityNotAllowed,
            format!("{peer} was refused: {}; add it to TOOLMESH_TLS_ALLOWED_IDS or call another peer", other.0),
        ),
        E::InvalidCertificate(CertificateError::Other(other)) if other.0.downcast_ref::<CertificateRefused>().is_some_and(|r| r.reason == RefusalReason::IdentityNotAnchored) => Error::new(
            ErrorKind::PeerIdentityNotAllowed,
            format!("{peer} was refused: {}", other.0),
        ),
        E::InvalidCertificate(CertificateError::Other(other)) if other.0.downcast_ref::<CertificateRefused>().is_some_and(|r| r.reason == RefusalReason::NotTheRegistry) => Error::new(
            ErrorKind::PeerCertificateUntrusted,
            format!("{peer} is not the mesh's registry: {}", other.0),
        ),
        E::InvalidCertificate(CertificateError::Other(other)) if other.0.downcast_ref::<CertificateRefused>().is_some_and(|r| r.reason == RefusalReason::KeyUsage) => Error::new(
            ErrorKind::PeerCertificateUntrusted,
            format!("{peer} was refused: {}", other.0),
        ),
        E::InvalidCertificate(CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. }) => Error::new(
            ErrorKind::PeerCertificateUntrusted,
            format!("the certificate presented by {peer} lacks the extended key usage for TLS (serverAuth/clientAuth); reissue it with `toolmesh certs issue`"),
        ),
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
