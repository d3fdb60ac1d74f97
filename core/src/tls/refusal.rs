//! Why a certificate whose chain is valid was still refused, carried through the handshake as a
//! rustls error to [`super::classify_tls`], which turns it into an error saying what to fix.

use rustls::{CertificateError, OtherError};
use std::sync::Arc;

/// Why a certificate whose chain is valid was still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// The peer's identity is not among the allowed ones (or it has no SPIFFE ID).
    IdentityNotAllowed,
    /// During bootstrap: the server is not the registry the join token pins.
    NotThePinnedRegistry,
    /// The chain leads to an entity's CA, which may not vouch for the SPIFFE ID it names.
    IdentityNotAnchored,
    /// Talking to the registry: the server's chain does not lead to the mesh CA, or it names
    /// another role than the registry.
    NotTheRegistry,
    /// The certificate's keyUsage forbids signing, which every TLS handshake needs.
    KeyUsage,
}

#[derive(Debug)]
pub struct CertificateRefused {
    pub reason: RefusalReason,
    pub message: String,
}

impl std::fmt::Display for CertificateRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CertificateRefused {}

/// The rustls error that carries a refusal through the handshake to [`super::classify_tls`].
pub fn refuse(reason: RefusalReason, message: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(CertificateRefused { reason, message }))))
}
