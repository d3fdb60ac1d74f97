//! What identities a certificate names, and the one rule for whether it names a registry.

use crate::spiffe_id::{SpiffeId, SCHEME};
use rustls::pki_types::CertificateDer;

/// The identity a certificate names: its first `spiffe://` URI SAN, else any URI SAN, else its
/// subject CN, else `unknown`.
pub fn peer_identity(cert: &CertificateDer<'_>) -> String {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return "unknown".to_owned();
    };
    let uris = uris_of(&parsed);
    if let Some(spiffe) = uris.iter().find(|u| u.starts_with(SCHEME)).or(uris.first()) {
        return spiffe.clone();
    }
    let cn = parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    cn.unwrap_or_else(|| "unknown".to_owned())
}

/// Every `spiffe://` URI a certificate names, valid SPIFFE ID or not: its `spiffe://` URI SANs,
/// and its identity as the mesh reads it ([`peer_identity`]) when that is one. What an anchor
/// must be allowed to vouch for (an invalid one it cannot vouch for).
pub fn spiffe_uris(cert: &CertificateDer<'_>) -> Vec<String> {
    let mut ids: Vec<String> = x509_parser::parse_x509_certificate(cert.as_ref()).map(|(_, parsed)| uris_of(&parsed)).unwrap_or_default();
    ids.push(peer_identity(cert));
    ids.retain(|id| id.starts_with(SCHEME));
    ids.dedup();
    ids
}

/// The one rule for "this certificate names a registry", for every client of the registry
/// (bootstrap and afterwards): its identity is a SPIFFE ID of role registry,
/// `spiffe://TRUST-DOMAIN/registry/NAME`. A certificate without a SPIFFE ID (CN only) carries no
/// role, so it could as well be an agent's naming the registry's address: it is refused too.
/// The error is the reason, for the caller's refusal.
pub(crate) fn check_names_a_registry(cert: &CertificateDer<'_>) -> Result<(), String> {
    let id = peer_identity(cert);
    match SpiffeId::parse(&id) {
        Ok(spiffe) if spiffe.is_registry() => Ok(()),
        Ok(_) => Err(format!("its certificate names '{id}', not a registry (spiffe://TRUST-DOMAIN/registry/NAME); check the registry URL")),
        Err(_) => Err(format!(
            "its certificate names '{id}', which is no SPIFFE ID, so not a registry: the registry's certificate must name \
             spiffe://TRUST-DOMAIN/registry/NAME (`toolmesh certs issue registry --role registry`); check the registry URL"
        )),
    }
}

fn uris_of(parsed: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    parsed
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
        .unwrap_or_default()
}
