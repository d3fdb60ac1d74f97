//! Mutual TLS, one file per concern:
//!
//! - [`identity`](Identity): our certificate, key and anchors, swapped whole, and the TLS
//!   configurations built on them; `state` is one loaded generation of it, `load` reads and
//!   checks the files.
//! - `anchors`: which anchor a chain leads to and what that anchor may vouch for (shared with the
//!   registry); `names`: what identities a certificate names, and whether it names a registry.
//! - `verify`: the peer verifiers and the verification policy; `pinned`: the bootstrap client's
//!   verifier; `refusal`: why a valid chain was refused; `diagnose`: handshake failures as errors
//!   that say what to fix; `resumption`: TLS sessions; `pem`: reading and writing PEM.

use crate::error::{Error, ErrorKind};
use rustls::crypto::CryptoProvider;
use std::sync::Arc;

mod anchors;
mod diagnose;
mod identity;
mod load;
mod names;
pub mod pem;
mod pinned;
mod refusal;
mod resumption;
mod state;
mod verify;

pub use anchors::{verify_client_chain, AnchorSet, Scope};
pub use diagnose::{classify_error_chain, classify_tls};
pub use identity::Identity;
use load::validity_text;
pub use load::{key_file_exposure, TlsFiles};
pub use names::{peer_identity, spiffe_uris};
pub use pinned::pinned_registry_config;
pub use verify::{VerifyMode, VerifyPolicy};

/// The one crypto provider of the mesh (ring), so every process negotiates the same suites.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
/// Both are served; HTTP/1.1 is preferred (rustls picks by the server's order). Between peers,
/// hyper's HTTP/1.1 over a keep-alive pool costs about half the CPU per call of its HTTP/2
/// (bench/FINDINGS.md); clients that offer only h2 still get it.
const ALPN: &[&[u8]] = &[b"http/1.1", b"h2"];

fn internal(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Internal, format!("TLS configuration: {e}"))
}
