//! How peers are verified: the chain always, then the address (`hostname` mode) or the SPIFFE
//! ID (`spiffe` mode), optionally limited to allowed trust domains or IDs. There is no mode that
//! skips verification.

use super::{peer_identity, provider, Identity};
use crate::error::{Error, ErrorKind, Result};
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::client::WebPkiServerVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{CertificateError, DistinguishedName, OtherError, RootCertStore};
use std::sync::Arc;

/// The handshake-signature methods every verifier of the mesh shares: checked with the mesh's
/// one crypto provider.
macro_rules! signatures_by_the_mesh_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &$crate::tls::provider().signature_verification_algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &$crate::tls::provider().signature_verification_algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            $crate::tls::provider().signature_verification_algorithms.supported_schemes()
        }
    };
}
pub(crate) use signatures_by_the_mesh_provider;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerifyMode {
    /// Chain + the DNS/IP SAN of the address dialled.
    #[default]
    Hostname,
    /// Chain + the URI SAN identity; the host name is not checked.
    Spiffe,
}

/// The verification mode and the peer identities accepted (`spiffe://domain` admits a whole
/// trust domain, a full ID admits one workload; empty admits every identity the bundle signs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyPolicy {
    pub mode: VerifyMode,
    pub allowed: Vec<String>,
}

impl VerifyPolicy {
    pub fn parse_mode(mode: &str) -> Result<VerifyMode> {
        match mode.trim().to_ascii_lowercase().as_str() {
            "" | "hostname" => Ok(VerifyMode::Hostname),
            "spiffe" => Ok(VerifyMode::Spiffe),
            other => Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("TLS verification mode '{other}' is not known: use 'hostname' (chain + DNS/IP SAN) or 'spiffe' (chain + SPIFFE ID); there is no mode that skips verification"),
            )),
        }
    }

    pub fn parse_allowed(list: &str) -> Result<Vec<String>> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|id| match id.strip_prefix("spiffe://") {
                Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(id.trim_end_matches('/').to_owned()),
                _ => Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("allowed identity '{id}' is not a SPIFFE ID: write spiffe://TRUST-DOMAIN or spiffe://TRUST-DOMAIN/PATH"),
                )),
            })
            .collect()
    }

    /// Whether a peer with this URI SAN may connect.
    pub fn admits(&self, id: &str) -> bool {
        self.allowed.is_empty()
            || self.allowed.iter().any(|allowed| {
                if allowed["spiffe://".len()..].contains('/') {
                    id == allowed
                } else {
                    id.strip_prefix(allowed.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                }
            })
    }

    pub(super) fn check(&self, cert: &CertificateDer<'_>) -> std::result::Result<(), rustls::Error> {
        if self.mode == VerifyMode::Hostname && self.allowed.is_empty() {
            return Ok(());
        }
        let id = peer_identity(cert);
        if !id.starts_with("spiffe://") && self.mode == VerifyMode::Spiffe {
            return Err(not_allowed(format!("the certificate carries no spiffe:// URI SAN (it names '{id}')")));
        }
        if !self.admits(&id) {
            return Err(not_allowed(format!("identity '{id}' is not among the allowed ones ({})", self.allowed.join(", "))));
        }
        Ok(())
    }
}

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

/// What certificates chaining to one trust anchor may speak for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The configured CA bundle and the mesh CA: every identity, the registry included.
    Mesh,
    /// An entity's CA: only SPIFFE IDs of its trust domains, and never the registry.
    Entity { name: String, trust_domains: Vec<String> },
}

impl Scope {
    /// Whether a certificate (chained to this scope's anchor) may carry the identities it names:
    /// its identity as the mesh reads it ([`peer_identity`]) and every `spiffe://` URI SAN.
    fn admits(&self, cert: &CertificateDer<'_>) -> std::result::Result<(), rustls::Error> {
        let Scope::Entity { name, trust_domains } = self else { return Ok(()) };
        for id in super::spiffe_ids(cert) {
            let domain = super::trust_domain_of(&id);
            if !trust_domains.iter().any(|allowed| allowed == domain) {
                let may = match trust_domains.as_slice() {
                    [] => "no SPIFFE trust domain (the registry sent no anchors: update it)".to_owned(),
                    tds => tds.iter().map(|td| format!("spiffe://{td}")).collect::<Vec<_>>().join(", "),
                };
                return Err(refuse(
                    RefusalReason::IdentityNotAnchored,
                    format!(
                        "its certificate names '{id}' but chains to the CA of entity '{name}', which may vouch only for {may}; \
                         an entity's agents carry IDs of its own trust domain (`toolmesh entity add --trust-domain`)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The trust anchors of one scope, with the verifiers built on them.
pub(super) struct AnchorSet {
    pub(super) scope: Scope,
    pub(super) roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<WebPkiServerVerifier>,
}

impl AnchorSet {
    pub(super) fn new(scope: Scope, roots: RootCertStore) -> Result<AnchorSet> {
        let roots = Arc::new(roots);
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build().map_err(|e| {
            Error::new(ErrorKind::CertificateFile, format!("the trust bundle cannot verify client certificates: {e}"))
        })?;
        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider()).build().map_err(|e| {
            Error::new(ErrorKind::CertificateFile, format!("the trust bundle cannot verify server certificates: {e}"))
        })?;
        Ok(AnchorSet { scope, roots, client_verifier, server_verifier })
    }

    pub(super) fn verify_client(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<(), rustls::Error> {
        self.client_verifier.verify_client_cert(end_entity, intermediates, now).map(|_| ())
    }
}

/// Verifies a chain against each anchor set in turn (the mesh's first) and answers the scope of
/// the first whose anchors the chain leads to and which may vouch for the identity it names.
/// One merged store could not tell which anchor a chain led to, so an entity's CA could vouch
/// for the mesh's own identities.
pub(super) fn anchored<'a>(
    sets: &'a [AnchorSet],
    end_entity: &CertificateDer<'_>,
    verify: impl Fn(&AnchorSet) -> std::result::Result<(), rustls::Error>,
) -> std::result::Result<&'a Scope, rustls::Error> {
    let mut chain_error: Option<rustls::Error> = None;
    let mut refusal: Option<rustls::Error> = None;
    for set in sets {
        match verify(set).and_then(|()| set.scope.admits(end_entity)) {
            Ok(()) => {
                check_key_usage(end_entity)?;
                return Ok(&set.scope);
            }
            Err(e @ rustls::Error::InvalidCertificate(CertificateError::Other(_))) => {
                refusal.get_or_insert(e);
            }
            // An unknown issuer only says the chain leads elsewhere; any other error (expired, a
            // wrong name) says more about the chain that did lead to these anchors.
            Err(e) => {
                let unknown = |e: &rustls::Error| matches!(e, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
                if chain_error.as_ref().is_none_or(unknown) {
                    chain_error = Some(e);
                }
            }
        }
    }
    Err(refusal.or(chain_error).unwrap_or(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)))
}

/// webpki checks the extended key usage but not the keyUsage bits of a leaf: a certificate whose
/// keyUsage is present and lacks digitalSignature was issued not to sign, and a TLS handshake
/// is a signature (RFC 5280 4.2.1.3, RFC 8446 4.4.2.4).
fn check_key_usage(cert: &CertificateDer<'_>) -> std::result::Result<(), rustls::Error> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else { return Ok(()) };
    match parsed.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() => Err(refuse(
            RefusalReason::KeyUsage,
            format!(
                "the certificate of '{}' has a keyUsage without digitalSignature ({}), so it may not sign TLS handshakes; \
                 reissue it with `toolmesh certs issue`",
                peer_identity(cert),
                ku.value
            ),
        )),
        _ => Ok(()),
    }
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
pub(super) fn refuse(reason: RefusalReason, message: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(CertificateRefused { reason, message }))))
}

fn not_allowed(why: String) -> rustls::Error {
    refuse(RefusalReason::IdentityNotAllowed, why)
}

/// Verifies peers against the identity's current trust bundle and policy, in both directions.
#[derive(Debug)]
pub(super) struct PeerVerifier(pub(super) Arc<Identity>, pub(super) Peer);

/// Whom a verifier expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Peer {
    /// Any agent the trust bundle vouches for.
    Agent,
    /// The registry: chained to the mesh CA (never an entity's), and when its certificate
    /// carries a SPIFFE ID, one of role registry (`spiffe://TD/registry/...`).
    Registry,
}

/// The registry's certificate must come from the mesh and name a registry: a partner's CA, or
/// an agent of the mesh whose certificate names the registry's address, is not the registry.
fn check_registry(scope: &Scope, cert: &CertificateDer<'_>) -> std::result::Result<(), rustls::Error> {
    if let Scope::Entity { name, .. } = scope {
        return Err(refuse(
            RefusalReason::NotTheRegistry,
            format!("its certificate chains to the CA of entity '{name}', not to the mesh CA; only the mesh CA vouches for the registry"),
        ));
    }
    let id = peer_identity(cert);
    let path = id.strip_prefix("spiffe://").map(|rest| rest.split_once('/').map_or("", |(_, path)| path));
    match path {
        Some(path) if !path.starts_with("registry/") => Err(refuse(
            RefusalReason::NotTheRegistry,
            format!("its certificate names '{id}', not a registry (spiffe://TRUST-DOMAIN/registry/NAME); check the registry URL"),
        )),
        _ => Ok(()),
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The bundle can change under us; without hints every client presents its one certificate.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.0.state().verify_client(end_entity, intermediates, now)?;
        self.0.policy.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    signatures_by_the_mesh_provider!();
}

/// The registry's verifier when its bootstrap route is open: a client certificate, when one is
/// presented, is verified exactly as [`PeerVerifier`] does; a client without one gets through the
/// handshake unauthenticated, and the HTTP layer decides what it may do (only bootstrap).
#[derive(Debug)]
pub(super) struct OptionalClientAuth(pub(super) PeerVerifier);

impl ClientCertVerifier for OptionalClientAuth {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        ClientCertVerifier::root_hint_subjects(&self.0)
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now)
    }

    signatures_by_the_mesh_provider!();
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let state = self.0.state();
        let scope = anchored(&state.anchors, end_entity, |set| {
            match self.0.policy.mode {
                VerifyMode::Hostname => {
                    set.server_verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
                }
                VerifyMode::Spiffe => {
                    let cert = ParsedCertificate::try_from(end_entity)?;
                    rustls::client::verify_server_cert_signed_by_trust_anchor(
                        &cert,
                        &set.roots,
                        intermediates,
                        now,
                        provider().signature_verification_algorithms.all,
                    )?;
                }
            }
            Ok(())
        })?;
        if self.1 == Peer::Registry {
            check_registry(scope, end_entity)?;
        }
        self.0.policy.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    signatures_by_the_mesh_provider!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_ids_admit_trust_domains_and_exact_ids() {
        let policy = VerifyPolicy {
            mode: VerifyMode::Spiffe,
            allowed: VerifyPolicy::parse_allowed("spiffe://prod.example, spiffe://partner.example/agent/billing").unwrap(),
        };
        assert!(policy.admits("spiffe://prod.example/agent/a"));
        assert!(!policy.admits("spiffe://prod.example.evil/agent/a"));
        assert!(policy.admits("spiffe://partner.example/agent/billing"));
        assert!(!policy.admits("spiffe://partner.example/agent/other"));
        assert!(VerifyPolicy::default().admits("anything"));
        assert!(VerifyPolicy::parse_allowed("https://x").is_err());
        assert!(VerifyPolicy::parse_allowed("spiffe://").is_err());
        assert!(VerifyPolicy::parse_mode("none").unwrap_err().message().contains("no mode that skips"));
    }
}
