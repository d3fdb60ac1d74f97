//! Trust anchors and what each may vouch for: the one place that decides which anchor a chain
//! leads to and whether that anchor may speak for the identities the certificate names. Agents
//! (through [`super::Identity`]) and the registry (its `trust` module) both verify with it.
//!
//! | anchor | may vouch for |
//! |---|---|
//! | the configured CA bundle and the mesh CA | every identity, the registry included |
//! | an entity's CA | valid SPIFFE IDs of the entity's trust domains only; never the registry |
//!
//! Whatever the anchor, a leaf whose keyUsage forbids signing is refused: a TLS handshake is a
//! signature.

use super::names::{peer_identity, spiffe_uris};
use super::provider;
use super::refusal::{refuse, RefusalReason};
use crate::error::{Error, ErrorKind, Result};
use crate::spiffe_id::SpiffeId;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};
use std::sync::Arc;

/// What certificates chaining to one trust anchor may speak for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The configured CA bundle and the mesh CA: every identity, the registry included.
    Mesh,
    /// An entity's CA: only SPIFFE IDs of its trust domains, and never the registry.
    Entity { name: String, trust_domains: Vec<String> },
}

impl Scope {
    /// Whether a certificate (chained to this scope's anchor) may carry the identities it names:
    /// its identity as the mesh reads it ([`peer_identity`]) and every `spiffe://` URI SAN. An
    /// entity's CA vouches only for valid SPIFFE IDs of its trust domains; a certificate that
    /// names none (CN only) is left to the verification mode.
    pub fn may_vouch_for(&self, cert: &CertificateDer<'_>) -> std::result::Result<(), rustls::Error> {
        let Scope::Entity { name, trust_domains } = self else { return Ok(()) };
        let may = || match trust_domains.as_slice() {
            [] => "no SPIFFE trust domain (the registry sent no anchors: update it)".to_owned(),
            tds => tds.iter().map(|td| format!("spiffe://{td}")).collect::<Vec<_>>().join(", "),
        };
        for uri in spiffe_uris(cert) {
            let refusal = match SpiffeId::parse(&uri) {
                Ok(id) if trust_domains.iter().any(|allowed| allowed == id.trust_domain()) => continue,
                Ok(_) => format!(
                    "its certificate names '{uri}' but chains to the CA of entity '{name}', which may vouch only for {}; \
                     an entity's agents carry IDs of its own trust domain (`toolmesh entity add --trust-domain`)",
                    may()
                ),
                Err(invalid) => format!(
                    "its certificate names '{uri}', which is not a valid SPIFFE ID ({}), and chains to the CA of entity \
                     '{name}', which may vouch only for valid SPIFFE IDs of {}",
                    invalid.why,
                    may()
                ),
            };
            return Err(refuse(RefusalReason::IdentityNotAnchored, refusal));
        }
        Ok(())
    }
}

/// The trust anchors of one scope, with the verifiers built on them.
pub struct AnchorSet {
    scope: Scope,
    pub(super) roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    pub(super) server_verifier: Arc<WebPkiServerVerifier>,
}

impl std::fmt::Debug for AnchorSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnchorSet").field("scope", &self.scope).field("anchors", &self.roots.len()).finish_non_exhaustive()
    }
}

impl AnchorSet {
    pub fn new(scope: Scope, roots: RootCertStore) -> Result<AnchorSet> {
        let roots = Arc::new(roots);
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("the trust bundle cannot verify client certificates: {e}")))?;
        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("the trust bundle cannot verify server certificates: {e}")))?;
        Ok(AnchorSet { scope, roots, client_verifier, server_verifier })
    }

    /// The anchors `certs` (`what` names them in errors: "the CA of entity 'partner'") for `scope`.
    pub fn from_certificates(scope: Scope, certs: &[CertificateDer<'static>], what: &str) -> Result<AnchorSet> {
        AnchorSet::new(scope, roots_of(certs, what)?)
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    fn verify_client(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<(), rustls::Error> {
        self.client_verifier.verify_client_cert(end_entity, intermediates, now).map(|_| ())
    }
}

/// Verifies a client's chain against each anchor set in turn and answers the scope of the first
/// whose anchors it leads to and which may vouch for what it names (see [`anchored`]).
pub fn verify_client_chain<'a>(
    sets: &'a [AnchorSet],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> std::result::Result<&'a Scope, rustls::Error> {
    anchored(sets, end_entity, |set| set.verify_client(end_entity, intermediates, now))
}

/// Verifies a chain (by `verify`, client or server side) against each anchor set in turn (the
/// mesh's first) and answers the scope of the first whose anchors the chain leads to and which
/// may vouch for the identity it names. One merged store could not tell which anchor a chain led
/// to, so an entity's CA could vouch for the mesh's own identities.
pub(super) fn anchored<'a>(
    sets: &'a [AnchorSet],
    end_entity: &CertificateDer<'_>,
    verify: impl Fn(&AnchorSet) -> std::result::Result<(), rustls::Error>,
) -> std::result::Result<&'a Scope, rustls::Error> {
    let mut chain_error: Option<rustls::Error> = None;
    let mut refusal: Option<rustls::Error> = None;
    for set in sets {
        match verify(set).and_then(|()| set.scope.may_vouch_for(end_entity)) {
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

/// One store of the anchors `certs`; `what` names them in the error.
fn roots_of<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'static>>, what: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert.clone()).map_err(|e| {
            Error::new(ErrorKind::CertificateFile, format!("{what} holds a certificate that is no usable trust anchor: {e}"))
        })?;
    }
    Ok(roots)
}

/// One CA of the distributed bundle and what certificates chaining to it may speak for.
#[derive(Debug, Clone)]
pub(super) struct Distributed {
    pub(super) cert: CertificateDer<'static>,
    pub(super) scope: Scope,
}

/// The anchors of a distributed bundle with what each may vouch for. An entity may not claim a
/// trust domain the bundle gives the mesh CA.
pub(super) fn distributed_anchors(bundle: &crate::registry_api::TrustBundle) -> Result<Vec<Distributed>> {
    let parse = |pem: &str| super::pem::certificates(pem.as_bytes(), "the distributed trust bundle");
    if bundle.anchors.is_empty() {
        let legacy = Scope::Entity { name: String::new(), trust_domains: Vec::new() };
        return Ok(parse(&bundle.pem)?.into_iter().map(|cert| Distributed { cert, scope: legacy.clone() }).collect());
    }
    let mesh_domains: Vec<&String> = bundle.anchors.iter().filter(|a| a.entity.is_none()).flat_map(|a| &a.trust_domains).collect();
    let mut anchors = Vec::new();
    for anchor in &bundle.anchors {
        let scope = match &anchor.entity {
            None => Scope::Mesh,
            Some(name) => Scope::Entity {
                name: name.clone(),
                trust_domains: anchor.trust_domains.iter().filter(|td| !mesh_domains.contains(td)).cloned().collect(),
            },
        };
        anchors.extend(parse(&anchor.ca_cert)?.into_iter().map(|cert| Distributed { cert, scope: scope.clone() }));
    }
    Ok(anchors)
}

/// Every anchor of an identity in one store (for checking our own chain), and the same anchors
/// by what they may vouch for: the configured bundle and the mesh CA first (every identity), then
/// one set per entity (its trust domains only).
pub(super) fn anchor_sets(configured: &[CertificateDer<'static>], distributed: &[Distributed]) -> Result<(RootCertStore, Vec<AnchorSet>)> {
    let all = roots_of(configured.iter().chain(distributed.iter().map(|d| &d.cert)), "the distributed trust bundle")?;
    let mesh: Vec<_> = distributed.iter().filter(|d| d.scope == Scope::Mesh).map(|d| d.cert.clone()).collect();
    // A CA the registry names as an entity's vouches only for that entity, even when the
    // configured bundle holds it too (a partner's own agents, a CA file from before entities);
    // the CAs of a bundle without anchors (an older registry) only for what is not configured.
    let entities: Vec<&Distributed> = distributed
        .iter()
        .filter(|d| match &d.scope {
            Scope::Mesh => false,
            Scope::Entity { name, .. } if name.is_empty() => !configured.contains(&d.cert) && !mesh.contains(&d.cert),
            Scope::Entity { .. } => !mesh.contains(&d.cert),
        })
        .collect();
    let mesh_roots = configured.iter().filter(|c| !entities.iter().any(|e| &e.cert == *c)).chain(&mesh);
    let mut sets = vec![AnchorSet::new(Scope::Mesh, roots_of(mesh_roots, "the mesh CA")?)?];
    for anchor in entities {
        let what = match &anchor.scope {
            Scope::Entity { name, .. } => format!("the CA of entity '{name}'"),
            Scope::Mesh => unreachable!("filtered above"),
        };
        sets.push(AnchorSet::from_certificates(anchor.scope.clone(), std::slice::from_ref(&anchor.cert), &what)?);
    }
    Ok((all, sets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use toolmesh_ca::{CertificateAuthority, LeafRequest, Role};

    fn der(pem: &str) -> Vec<CertificateDer<'static>> {
        super::super::pem::certificates(pem.as_bytes(), "test").unwrap()
    }

    fn leaf(ca: &CertificateAuthority, name: &str, trust_domain: &str) -> Vec<CertificateDer<'static>> {
        der(&ca.issue(&LeafRequest::new(name, Role::Agent, trust_domain, 1)).unwrap().cert_pem)
    }

    fn sets(mesh: &CertificateAuthority, partner: &CertificateAuthority) -> Vec<AnchorSet> {
        let entity = Scope::Entity { name: "partner".into(), trust_domains: vec!["partner.example".into()] };
        vec![
            AnchorSet::from_certificates(Scope::Mesh, &der(mesh.cert_pem()), "the mesh CA").unwrap(),
            AnchorSet::from_certificates(entity, &der(partner.cert_pem()), "the CA of entity 'partner'").unwrap(),
        ]
    }

    fn refusal(err: rustls::Error) -> (RefusalReason, String) {
        match err {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                let refused = other.0.downcast_ref::<super::super::refusal::CertificateRefused>().expect("a refusal");
                (refused.reason, refused.message.clone())
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_chain_is_judged_by_the_anchor_it_leads_to() {
        let mesh = CertificateAuthority::generate("anchors mesh CA", 1).unwrap();
        let partner = CertificateAuthority::generate("anchors partner CA", 1).unwrap();
        let sets = sets(&mesh, &partner);
        let now = UnixTime::now();
        let verify = |chain: &[CertificateDer<'static>]| verify_client_chain(&sets, &chain[0], &chain[1..], now);

        assert_eq!(verify(&leaf(&mesh, "a", "toolmesh.local")).unwrap(), &Scope::Mesh);
        assert_eq!(verify(&leaf(&mesh, "a", "partner.example")).unwrap(), &Scope::Mesh, "the mesh CA vouches for every identity");
        assert!(matches!(verify(&leaf(&partner, "b", "partner.example")).unwrap(), Scope::Entity { name, .. } if name == "partner"));

        let (reason, message) = refusal(verify(&leaf(&partner, "b", "toolmesh.local")).unwrap_err());
        assert_eq!(reason, RefusalReason::IdentityNotAnchored);
        assert!(message.contains("may vouch only for spiffe://partner.example"), "{message}");

        let stranger = CertificateAuthority::generate("anchors stranger CA", 1).unwrap();
        let unknown = verify(&leaf(&stranger, "c", "partner.example")).unwrap_err();
        assert!(matches!(unknown, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)), "{unknown:?}");
    }

    /// A leaf of `ca` with exactly `uri` as its URI SAN and `usages` as its keyUsage: what
    /// `toolmesh certs` refuses to issue.
    fn leaf_with(ca: &CertificateAuthority, uri: &str, usages: Vec<rcgen::KeyUsagePurpose>) -> Vec<CertificateDer<'static>> {
        let issuer = rcgen::Issuer::from_ca_cert_pem(ca.cert_pem(), rcgen::KeyPair::from_pem(ca.key_pem()).unwrap()).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(uri.try_into().unwrap()));
        params.key_usages = usages;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        der(&params.signed_by(&rcgen::KeyPair::generate().unwrap(), &issuer).unwrap().pem())
    }

    #[test]
    fn an_entity_ca_vouches_for_no_invalid_spiffe_id_and_no_anchor_for_a_leaf_that_may_not_sign() {
        let mesh = CertificateAuthority::generate("anchors mesh CA", 1).unwrap();
        let partner = CertificateAuthority::generate("anchors partner CA", 1).unwrap();
        let sets = sets(&mesh, &partner);
        let now = UnixTime::now();
        let verify = |chain: &[CertificateDer<'static>]| verify_client_chain(&sets, &chain[0], &chain[1..], now);
        let signing = || vec![rcgen::KeyUsagePurpose::DigitalSignature];

        assert!(verify(&leaf_with(&partner, "spiffe://partner.example/agent/b", signing())).is_ok());
        for invalid in ["spiffe://partner.example/agent/b/", "spiffe://Partner.example/agent/b", "spiffe://partner.example/a//b"] {
            let (reason, message) = refusal(verify(&leaf_with(&partner, invalid, signing())).unwrap_err());
            assert_eq!(reason, RefusalReason::IdentityNotAnchored, "{invalid}");
            assert!(message.contains("is not a valid SPIFFE ID"), "{message}");
        }
        assert!(verify(&leaf_with(&mesh, "spiffe://toolmesh.local/agent/b/", signing())).is_ok(), "the mesh CA vouches for what it signed");

        for ca in [&mesh, &partner] {
            let chain = leaf_with(ca, "spiffe://partner.example/agent/c", vec![rcgen::KeyUsagePurpose::KeyEncipherment]);
            let (reason, message) = refusal(verify(&chain).unwrap_err());
            assert_eq!(reason, RefusalReason::KeyUsage);
            assert!(message.contains("without digitalSignature"), "{message}");
        }
    }
}
