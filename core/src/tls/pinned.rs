//! The one connection made before an agent has an identity: the bootstrap request to the
//! registry. The agent knows no CA yet, only the CA fingerprint its join token carries, so the
//! registry presents its CA in its chain and the agent accepts the chain only if it leads to a CA
//! with exactly that fingerprint, names the host dialled, and names a registry.

use super::names::check_names_a_registry;
use super::provider;
use super::refusal::RefusalReason;
use super::verify::signatures_by_the_mesh_provider;
use crate::certificate::fingerprint;
use crate::error::Result;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

/// A client configuration (no client certificate) that trusts only the CA whose SHA-256
/// fingerprint is `ca_fingerprint`, and only a server whose SPIFFE ID names a registry.
pub fn pinned_registry_config(ca_fingerprint: &str) -> Result<Arc<ClientConfig>> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(super::VERSIONS)
        .map_err(super::internal)?
        // Not a weaker check: the verifier checks the chain to the pinned CA and the host name.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa { fingerprint: ca_fingerprint.to_ascii_lowercase() }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PinnedCa {
    fingerprint: String,
}

fn refuse(why: String) -> rustls::Error {
    super::refusal::refuse(RefusalReason::NotThePinnedRegistry, why)
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let (pinned, others): (Vec<_>, Vec<_>) = intermediates.iter().partition(|c| fingerprint(c) == self.fingerprint);
        let Some(anchor) = pinned.first() else {
            return Err(refuse(format!(
                "the registry did not present the CA pinned by the join token (sha256 {}); the token belongs to another \
                 registry or its CA changed: take the current token from the registry's state directory",
                self.fingerprint
            )));
        };
        let mut roots = RootCertStore::empty();
        roots.add((*anchor).clone().into_owned())?;
        let others: Vec<CertificateDer<'_>> = others.into_iter().cloned().collect();
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?
            .verify_server_cert(end_entity, &others, server_name, ocsp_response, now)?;
        // The same rule as every later client of the registry (`verify`), so a server passes
        // bootstrap exactly when it would pass afterwards.
        check_names_a_registry(end_entity).map_err(|why| refuse(format!("the server is not a registry: {why}")))?;
        Ok(ServerCertVerified::assertion())
    }

    signatures_by_the_mesh_provider!();
}
