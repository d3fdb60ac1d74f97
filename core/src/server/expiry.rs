//! When the certificate chain that opened a connection stops being valid: the connection must
//! not outlive it.

use rustls::pki_types::CertificateDer;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The earliest `notAfter` of the chain the peer presented (its certificate and intermediates)
/// and of the trust anchor in `anchors` that issued the chain's last certificate; `None` for an
/// empty chain. A certificate that cannot be parsed here was not verified either, so it is skipped.
pub(crate) fn chain_not_after(chain: &[CertificateDer<'_>], anchors: &[CertificateDer<'_>]) -> Option<SystemTime> {
    let parsed: Vec<_> = chain.iter().filter_map(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok().map(|(_, c)| c)).collect();
    let issuer_of_last = parsed.last().map(|last| last.issuer().as_raw().to_vec());
    let anchor = anchors
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok().map(|(_, c)| c))
        .find(|anchor| issuer_of_last.as_deref() == Some(anchor.subject().as_raw()));
    parsed
        .iter()
        .chain(anchor.as_ref())
        .map(|cert| cert.validity().not_after.timestamp())
        .min()
        .map(|seconds| UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
}

/// `at` on the runtime's clock, which is what timers sleep on.
pub(crate) fn instant_of(at: SystemTime) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    match at.duration_since(SystemTime::now()) {
        Ok(remaining) => now.checked_add(remaining).unwrap_or(now + Duration::from_secs(86_400 * 365 * 100)),
        Err(_) => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use toolmesh_ca::{CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};

    #[test]
    fn the_earliest_expiry_of_leaf_and_issuing_anchor_wins() {
        let ca = CertificateAuthority::generate("expiry test CA", 30).unwrap();
        let leaf = ca.issue(&LeafRequest::new("a", Role::Agent, DEFAULT_TRUST_DOMAIN, 5)).unwrap();
        let leaf_der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        let leaf_only = chain_not_after(std::slice::from_ref(&leaf_der), &[]).unwrap();
        let with_anchor = chain_not_after(&[leaf_der], &[ca_der]).unwrap();
        let days = |t: SystemTime| t.duration_since(SystemTime::now()).unwrap().as_secs() / 86_400;
        assert_eq!(days(leaf_only), 4, "five days from issue, less the seconds since");
        assert_eq!(leaf_only, with_anchor, "the CA outlives the leaf");
        assert_eq!(chain_not_after(&[], &[]), None);
    }
}
