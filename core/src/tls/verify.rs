//! How peers are verified: the chain always, then the address (`hostname` mode) or the SPIFFE
//! ID (`spiffe` mode), optionally limited to allowed trust domains or IDs. There is no mode that
//! skips verification.

use super::anchors::{anchored, Scope};
use super::names::{check_names_a_registry, peer_identity};
use super::refusal::{refuse, RefusalReason};
use super::{provider, Identity};
use crate::error::{Error, ErrorKind, Result};
use crate::spiffe_id::{SpiffeId, SCHEME};
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::DistinguishedName;
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

    /// The allowed identities of a comma-separated list: whole trust domains
    /// (`spiffe://prod.example`) or SPIFFE IDs; a trailing '/' is dropped.
    pub fn parse_allowed(list: &str) -> Result<Vec<String>> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|id| {
                let id = id.trim_end_matches('/');
                SpiffeId::parse(id)
                    .map(|_| id.to_owned())
                    .map_err(|invalid| Error::new(ErrorKind::InvalidConfig, format!("allowed identity {invalid}")))
            })
            .collect()
    }

    /// Whether a peer with this URI SAN may connect: an allowed trust domain admits its valid
    /// SPIFFE IDs, an allowed ID exactly itself.
    pub fn admits(&self, id: &str) -> bool {
        self.allowed.is_empty()
            || self.allowed.iter().any(|allowed| match SpiffeId::parse(allowed) {
                Ok(allowed) if allowed.path().is_empty() => SpiffeId::parse(id).is_ok_and(|id| id.trust_domain() == allowed.trust_domain()),
                _ => id == allowed,
            })
    }

    pub(super) fn check(&self, cert: &CertificateDer<'_>) -> std::result::Result<(), rustls::Error> {
        if self.mode == VerifyMode::Hostname && self.allowed.is_empty() {
            return Ok(());
        }
        let id = peer_identity(cert);
        if !id.starts_with(SCHEME) && self.mode == VerifyMode::Spiffe {
            return Err(not_allowed(format!("the certificate carries no spiffe:// URI SAN (it names '{id}')")));
        }
        if !self.admits(&id) {
            return Err(not_allowed(format!("identity '{id}' is not among the allowed ones ({})", self.allowed.join(", "))));
        }
        Ok(())
    }
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
    /// The registry: chained to the mesh CA (never an entity's), and its certificate names a
    /// SPIFFE ID of role registry (`spiffe://TD/registry/NAME`).
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
    check_names_a_registry(cert).map_err(|why| refuse(RefusalReason::NotTheRegistry, why))
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
        self.0.policy().check(end_entity)?;
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
            match self.0.policy().mode {
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
        self.0.policy().check(end_entity)?;
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

    #[test]
    fn allowed_ids_are_spiffe_ids_and_admit_only_valid_ones() {
        assert_eq!(VerifyPolicy::parse_allowed(" spiffe://td/ , spiffe://td/agent/a").unwrap(), ["spiffe://td", "spiffe://td/agent/a"]);
        for invalid in ["spiffe://TD", "spiffe://td/a//b", "spiffe://td/a?x", "spiffe://td:1"] {
            let e = VerifyPolicy::parse_allowed(invalid).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidConfig);
            assert!(e.message().contains("is not a SPIFFE ID"), "{}", e.message());
        }
        let policy = VerifyPolicy { mode: VerifyMode::Spiffe, allowed: VerifyPolicy::parse_allowed("spiffe://td").unwrap() };
        assert!(policy.admits("spiffe://td") && policy.admits("spiffe://td/agent/a"));
        assert!(!policy.admits("spiffe://td/agent/a/"), "an invalid ID is of no trust domain");
        assert!(!policy.admits("spiffe://tdx/agent/a") && !policy.admits("td"));
    }
}
