//! The mesh's trust: the mesh CA the registry was configured with, the CAs of the entities
//! (other organisations) added by an admin, and the bundle of both that agents trust. Entities
//! are kept in the registry's store (see `store`), so they survive restarts.
//!
//! Who a caller is follows from its verified chain alone: a chain that verifies against the mesh
//! CA belongs to the mesh, one that verifies against an entity's CA belongs to that entity, and
//! only if every SPIFFE ID it names is of the entity's trust domain (recorded at `entity add`):
//! an entity's CA cannot vouch for the mesh's identities. The bundle carries the same binding
//! to agents. Each anchor set remembers the standings it verified (see `standing_cache`).
//!
//! Which anchor a chain leads to and what that anchor may vouch for is decided by core's
//! `toolmesh_core::tls::verify_client_chain`, the same code agents verify their peers with.

use crate::standing_cache::{StandingCache, Verified, CAPACITY};
use crate::store::{Store, StoredEntity};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::RootCertStore;
use std::sync::{Arc, Mutex, RwLock};
use toolmesh_ca::{ca_trust_domain, fingerprint, CertificateSummary};
use toolmesh_core::registry_api::{Entity, EntityList, TrustAnchor, TrustBundle};
use toolmesh_core::spiffe_id::{is_valid_trust_domain, SCHEME};
use toolmesh_core::tls::{pem, verify_client_chain, AnchorSet, Scope};
use toolmesh_core::{Error, ErrorKind, Result};

/// How the mesh's trust answers for one caller's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Chains to the mesh CA.
    Mesh,
    /// Chains to this entity's CA.
    Entity(String),
}

/// Why an entity change was refused.
#[derive(Debug)]
pub enum EntityError {
    Invalid(String),
    Exists(String),
    Unknown(String),
    Storage(Error),
}

/// The trust domain `entity` vouches for: the recorded one, or (in files from before trust
/// domains were recorded) the default for its name.
fn trust_domain_of(entity: &StoredEntity) -> String {
    entity.trust_domain.clone().unwrap_or_else(|| {
        let ca = CertificateSummary::parse_pem(&entity.ca_cert, &entity.name).ok();
        default_trust_domain(&entity.name, ca.as_ref())
    })
}

/// The trust domain of an entity added without one: the one its CA was made for (`toolmesh certs
/// ca --trust-domain`, or a SPIFFE URI on the CA), else its name in lower case (`Partner` →
/// `spiffe://partner/...`; entity names are valid trust domains once lowered).
fn default_trust_domain(entity: &str, ca: Option<&CertificateSummary>) -> String {
    ca.and_then(ca_trust_domain).unwrap_or_else(|| entity.to_ascii_lowercase())
}

struct Anchors {
    /// The configured mesh CA bundle; it follows the registry's CA file when that is rotated.
    mesh: Vec<CertificateDer<'static>>,
    /// The mesh's trust domain (from the registry's own SPIFFE ID), which no entity may take.
    mesh_trust_domain: Option<String>,
    entities: Vec<StoredEntity>,
    /// The anchor sets, each with what it may vouch for: the mesh CA first (every identity), then
    /// each entity in order (its trust domain).
    sets: Vec<AnchorSet>,
    bundle: TrustBundle,
    /// Dropped with these anchors, so nothing verified under older ones is reused.
    standings: StandingCache<Standing>,
}

pub struct Trust {
    store: Arc<dyn Store>,
    anchors: RwLock<Arc<Anchors>>,
    /// Held from reading the entity set to storing the changed one, so that of two concurrent
    /// changes neither is lost.
    changing: Mutex<()>,
}

impl Trust {
    /// The mesh CA bundle and trust domain, and the `entities` loaded from `store`, where
    /// changes are stored.
    pub fn load(
        mesh: Vec<CertificateDer<'static>>,
        mesh_trust_domain: Option<String>,
        entities: Vec<StoredEntity>,
        store: Arc<dyn Store>,
    ) -> Result<Trust> {
        let anchors = build(mesh, mesh_trust_domain, entities)?;
        Ok(Trust { store, anchors: RwLock::new(Arc::new(anchors)), changing: Mutex::new(()) })
    }

    fn anchors(&self) -> Arc<Anchors> {
        self.anchors.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Which CA a verified chain leads to; `None` when it leads to none any more (a revoked
    /// entity, an expired certificate) or only to an entity's CA while naming a SPIFFE ID outside
    /// that entity's trust domain. Verified once per anchor set and certificate lifetime.
    pub fn standing(&self, chain: &[CertificateDer<'static>]) -> Option<Standing> {
        self.standing_at(chain, UnixTime::now())
    }

    fn standing_at(&self, chain: &[CertificateDer<'static>], now: UnixTime) -> Option<Standing> {
        let (end_entity, intermediates) = chain.split_first()?;
        let anchors = self.anchors();
        anchors.standings.get_or_verify(chain, now.as_secs(), || {
            let standing = match verify_client_chain(&anchors.sets, end_entity, intermediates, now).ok()? {
                Scope::Mesh => Standing::Mesh,
                Scope::Entity { name, .. } => Standing::Entity(name.clone()),
            };
            Some(Verified { standing, valid_until: valid_until(chain) })
        })
    }

    pub fn bundle(&self) -> TrustBundle {
        self.anchors().bundle.clone()
    }

    pub fn list(&self) -> EntityList {
        EntityList { entities: self.anchors().entities.iter().map(describe).collect() }
    }

    /// Adds an entity whose certificates name `trust_domain` (default: its CA's, else its name in
    /// lower case) and stores the new set; answers the entity as listed.
    pub fn add(&self, name: &str, ca_pem: &str, trust_domain: Option<&str>) -> std::result::Result<Entity, EntityError> {
        check_entity_name(name).map_err(EntityError::Invalid)?;
        let ca = &pem::single_certificate(ca_pem.as_bytes(), "ca_cert").map_err(|e| EntityError::Invalid(e.message().to_owned()))?;
        let summary = CertificateSummary::parse_der(ca, "ca_cert").map_err(|e| EntityError::Invalid(e.message().to_owned()))?;
        if !summary.is_ca {
            return Err(EntityError::Invalid(format!(
                "ca_cert ('{}') is not a CA certificate (basicConstraints CA:FALSE)",
                summary.subject
            )));
        }
        // What parses as X.509 may still be refused as a trust anchor (found by fuzzing): a
        // client error, said before anything is stored.
        RootCertStore::empty().add(ca.clone()).map_err(|e| {
            EntityError::Invalid(format!(
                "ca_cert ('{}') is not usable as a trust anchor ({e}); give the CA certificate as its CA issued it",
                summary.subject
            ))
        })?;
        let domain = trust_domain.map(|td| td.trim().trim_start_matches(SCHEME).trim_end_matches('/').to_owned());
        let effective = domain.clone().unwrap_or_else(|| default_trust_domain(name, Some(&summary)));
        check_trust_domain(&effective).map_err(EntityError::Invalid)?;
        let print = fingerprint(ca);
        let canonical = pem::encode_certificate(ca);
        self.change(|current, stored| {
            if stored.iter().any(|e| e.name == name) {
                return Err(EntityError::Exists(name.to_owned()));
            }
            if current.mesh_trust_domain.as_deref() == Some(effective.as_str()) {
                return Err(EntityError::Invalid(format!(
                    "the trust domain '{effective}' is the mesh's own: an entity's CA may not vouch for the mesh's identities; \
                     give the entity its own (`toolmesh entity add {name} --trust-domain TD`)"
                )));
            }
            if let Some(other) = stored.iter().find(|e| trust_domain_of(e) == effective) {
                return Err(EntityError::Invalid(format!(
                    "the trust domain '{effective}' belongs to entity '{}'; give '{name}' its own (--trust-domain TD)",
                    other.name
                )));
            }
            if current.mesh.iter().any(|m| fingerprint(m) == print) || stored.iter().any(|e| entity_fingerprint(e) == print) {
                return Err(EntityError::Invalid(format!(
                    "the CA '{}' is already trusted (the mesh CA or another entity's)",
                    summary.subject
                )));
            }
            let added_at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            let mut entities = stored.to_vec();
            entities.push(StoredEntity {
                name: name.to_owned(),
                ca_cert: canonical.clone(),
                added_at,
                trust_domain: Some(effective.clone()),
            });
            let entity = describe(entities.last().expect("just pushed"));
            Ok((entities, entity))
        })
    }

    /// Removes an entity and stores the new set; answers the removed entity.
    pub fn revoke(&self, name: &str) -> std::result::Result<Entity, EntityError> {
        self.change(|_, stored| {
            let Some(removed) = stored.iter().find(|e| e.name == name) else {
                return Err(EntityError::Unknown(name.to_owned()));
            };
            Ok((stored.iter().filter(|e| e.name != name).cloned().collect(), describe(removed)))
        })
    }

    /// Puts `entities` in force, as another replica sharing the store stored them; answers
    /// whether they differ from those in force.
    pub fn adopt(&self, entities: Vec<StoredEntity>) -> Result<bool> {
        let _one_change_at_a_time = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.anchors();
        if current.entities == entities {
            return Ok(false);
        }
        let anchors = build(current.mesh.clone(), current.mesh_trust_domain.clone(), entities)?;
        *self.anchors.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(anchors);
        Ok(true)
    }

    /// Takes `mesh` as the mesh CA bundle when it differs from the current one (the registry's
    /// CA file was rotated): chains to the old CA lose their standing, chains to the new one
    /// gain it, entities stay. Answers whether anything changed.
    pub fn follow_mesh_ca(&self, mesh: Vec<CertificateDer<'static>>) -> Result<bool> {
        let _one_change_at_a_time = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.anchors();
        if current.mesh == mesh {
            return Ok(false);
        }
        let anchors = build(mesh, current.mesh_trust_domain.clone(), current.entities.clone())?;
        *self.anchors.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(anchors);
        Ok(true)
    }

    /// Edits the entity set as stored (with replicas sharing the store, what another one
    /// stored included), stores the edited set, and puts it in force; `edit` answers the new set
    /// and what to answer. Stores first, then swaps: a set that could not be stored is not in
    /// force either.
    fn change<T>(
        &self,
        edit: impl Fn(&Anchors, &[StoredEntity]) -> std::result::Result<(Vec<StoredEntity>, T), EntityError>,
    ) -> std::result::Result<T, EntityError> {
        let _one_change_at_a_time = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.anchors();
        let mut outcome = None;
        self.store
            .change(&mut |state| {
                let attempt = edit(&current, &state.entities).and_then(|(entities, answer)| {
                    let anchors = build(current.mesh.clone(), current.mesh_trust_domain.clone(), entities).map_err(EntityError::Storage)?;
                    state.entities = anchors.entities.clone();
                    Ok((anchors, answer))
                });
                outcome = Some(attempt);
            })
            .map_err(EntityError::Storage)?;
        let (anchors, answer) = outcome.expect("the store ran the edit")?;
        *self.anchors.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(anchors);
        Ok(answer)
    }
}

fn build(mesh: Vec<CertificateDer<'static>>, mesh_trust_domain: Option<String>, entities: Vec<StoredEntity>) -> Result<Anchors> {
    let mut sets = vec![AnchorSet::from_certificates(Scope::Mesh, &mesh, "the mesh CA")?];
    let mut anchors: Vec<TrustAnchor> = mesh
        .iter()
        .map(|der| TrustAnchor {
            ca_cert: pem::encode_certificate(der),
            entity: None,
            trust_domains: mesh_trust_domain.iter().cloned().collect(),
        })
        .collect();
    for entity in &entities {
        let what = format!("the stored CA of entity '{}'", entity.name);
        let certs = pem::certificates(entity.ca_cert.as_bytes(), &what).map_err(|e| Error::new(ErrorKind::InvalidConfig, e.message()))?;
        let domain = trust_domain_of(entity);
        let scope = Scope::Entity { name: entity.name.clone(), trust_domains: vec![domain.clone()] };
        sets.push(AnchorSet::from_certificates(scope, &certs, &format!("the CA of entity '{}'", entity.name))?);
        anchors.push(TrustAnchor { ca_cert: entity.ca_cert.clone(), entity: Some(entity.name.clone()), trust_domains: vec![domain] });
    }
    let pem = anchors.iter().map(|a| a.ca_cert.as_str()).collect::<String>();
    // The version names the content (the CAs and the trust domains each may vouch for, not the
    // entities' names, which agents do not verify by), so it is the same across restarts and
    // replicas, and changes whenever what agents must verify does.
    let mut named = pem.clone();
    for anchor in &anchors {
        named.push_str(&format!("\n{}:{}", anchor.entity.is_some(), anchor.trust_domains.join(",")));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, named.as_bytes());
    let version = u64::from_be_bytes(digest.as_ref()[..8].try_into().expect("a SHA-256 digest has 8 bytes")) >> 1;
    let bundle = TrustBundle { version, pem, anchors };
    Ok(Anchors { mesh, mesh_trust_domain, entities, sets, bundle, standings: StandingCache::new(CAPACITY) })
}

/// The earliest `not_after` in the chain (seconds since the epoch); 0, never reused, when one
/// cannot be read.
fn valid_until(chain: &[CertificateDer<'static>]) -> u64 {
    chain
        .iter()
        .map(|der| {
            let not_after = CertificateSummary::parse_der(der, "peer certificate").map(|c| c.not_after.unix_timestamp());
            not_after.ok().and_then(|secs| u64::try_from(secs).ok()).unwrap_or(0)
        })
        .min()
        .unwrap_or(0)
}

fn entity_fingerprint(entity: &StoredEntity) -> String {
    pem::single_certificate(entity.ca_cert.as_bytes(), "the entity's CA").map(|der| fingerprint(&der)).unwrap_or_default()
}

fn describe(entity: &StoredEntity) -> Entity {
    let summary = CertificateSummary::parse_pem(&entity.ca_cert, &entity.name).ok();
    Entity {
        name: entity.name.clone(),
        ca_fingerprint: entity_fingerprint(entity),
        ca_subject: summary.as_ref().map(|s| s.subject.clone()).unwrap_or_default(),
        ca_not_after: summary.and_then(|s| s.not_after.format(&time::format_description::well_known::Rfc3339).ok()).unwrap_or_default(),
        added_at: entity.added_at.clone(),
        trust_domain: trust_domain_of(entity),
    }
}

fn check_trust_domain(domain: &str) -> std::result::Result<(), String> {
    if is_valid_trust_domain(domain) {
        Ok(())
    } else {
        Err(format!("trust domain '{domain}' is not valid: use lower-case letters, digits, '.', '-' or '_' (like partner.example)"))
    }
}

/// Entity names travel in URL paths and the `list` table.
fn check_entity_name(name: &str) -> std::result::Result<(), String> {
    let valid = (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['-', '.']);
    if valid {
        Ok(())
    } else {
        Err(format!("entity name '{name}' is not valid: use 1-63 letters, digits, '-', '_' or '.', not starting with '-' or '.'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use toolmesh_ca::{CertificateAuthority, LeafRequest, Role, DEFAULT_TRUST_DOMAIN};

    fn memory() -> Arc<dyn Store> {
        Arc::new(crate::store::Memory::default())
    }

    fn leaf(ca: &CertificateAuthority, name: &str) -> Vec<CertificateDer<'static>> {
        leaf_in(ca, name, DEFAULT_TRUST_DOMAIN)
    }

    fn leaf_in(ca: &CertificateAuthority, name: &str, trust_domain: &str) -> Vec<CertificateDer<'static>> {
        let issued = ca.issue(&LeafRequest::new(name, Role::Agent, trust_domain, 1)).expect("issue");
        pem::certificates(issued.cert_pem.as_bytes(), "leaf").expect("PEM")
    }

    #[test]
    fn concurrent_entity_changes_are_all_kept() {
        let mesh = CertificateAuthority::generate("mesh CA", 1).expect("CA");
        let trust =
            Trust::load(vec![pem::single_certificate(mesh.cert_pem().as_bytes(), "mesh CA").expect("PEM")], None, Vec::new(), memory())
                .expect("trust");
        let cas: Vec<String> =
            (0..6).map(|i| CertificateAuthority::generate(&format!("CA {i}"), 1).expect("CA").cert_pem().to_owned()).collect();
        std::thread::scope(|scope| {
            for (i, ca) in cas.iter().enumerate() {
                let trust = &trust;
                scope.spawn(move || trust.add(&format!("partner-{i}"), ca, None).expect("add"));
            }
        });
        assert_eq!(trust.list().entities.len(), 6);
    }

    #[test]
    fn remembered_standings_follow_entity_changes_and_expiry() {
        let mesh = CertificateAuthority::generate("mesh CA", 1).expect("CA");
        let partner = CertificateAuthority::generate("partner CA", 1).expect("CA");
        let trust =
            Trust::load(vec![pem::single_certificate(mesh.cert_pem().as_bytes(), "mesh CA").expect("PEM")], None, Vec::new(), memory())
                .expect("trust");
        let (ours, theirs) = (leaf(&mesh, "ours"), leaf_in(&partner, "theirs", "partner"));

        assert_eq!(trust.standing(&ours), Some(Standing::Mesh));
        assert_eq!(trust.standing(&theirs), None);
        trust.add("partner", partner.cert_pem(), None).expect("add");
        assert_eq!(trust.standing(&theirs), Some(Standing::Entity("partner".into())));
        let version = trust.bundle().version;
        trust.revoke("partner").expect("revoke");
        assert_eq!(trust.standing(&theirs), None, "revoked at once");
        // The same CA and trust domain under another name: the bundle's version is the same (it
        // names what agents verify), the standing is not.
        trust.add("renamed", partner.cert_pem(), Some("partner")).expect("add");
        assert_eq!(trust.bundle().version, version);
        assert_eq!(trust.standing(&theirs), Some(Standing::Entity("renamed".into())));
        assert_eq!(trust.standing(&ours), Some(Standing::Mesh));

        let not_after = valid_until(&ours);
        let at = |secs: u64| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        assert_eq!(trust.standing_at(&ours, at(not_after - 1)), Some(Standing::Mesh));
        assert_eq!(trust.standing_at(&ours, at(not_after + 1)), None, "an expired certificate is refused though remembered");
    }

    #[test]
    fn an_entity_ca_vouches_only_for_its_own_trust_domain() {
        let mesh = CertificateAuthority::generate("mesh CA", 1).expect("CA");
        let partner = CertificateAuthority::generate("partner CA", 1).expect("CA");
        let mesh_der = vec![pem::single_certificate(mesh.cert_pem().as_bytes(), "mesh CA").expect("PEM")];
        let trust = Trust::load(mesh_der, Some(DEFAULT_TRUST_DOMAIN.to_owned()), Vec::new(), memory()).expect("trust");
        let refused = trust.add("sneaky", partner.cert_pem(), Some(DEFAULT_TRUST_DOMAIN)).expect_err("the mesh's trust domain");
        assert!(matches!(&refused, EntityError::Invalid(m) if m.contains("the mesh's own")), "{refused:?}");
        let entity = trust.add("Partner", partner.cert_pem(), None).expect("add");
        assert_eq!(entity.trust_domain, "partner", "the default is the name in lower case");
        assert!(matches!(trust.add("other", mesh.cert_pem(), Some("partner")), Err(EntityError::Invalid(_))));

        let impostor = leaf_in(&partner, "x", DEFAULT_TRUST_DOMAIN);
        assert_eq!(trust.standing(&impostor), None, "a partner's CA cannot vouch for spiffe://{DEFAULT_TRUST_DOMAIN}/agent/x");
        assert_eq!(trust.standing(&leaf_in(&partner, "x", "partner")), Some(Standing::Entity("Partner".into())));
        assert_eq!(trust.standing(&leaf(&mesh, "x")), Some(Standing::Mesh));
        let bundle = trust.bundle();
        assert_eq!(bundle.anchors.len(), 2);
        assert_eq!(
            (bundle.anchors[0].entity.as_deref(), bundle.anchors[0].trust_domains.as_slice()),
            (None, [DEFAULT_TRUST_DOMAIN.to_owned()].as_slice())
        );
        assert_eq!(
            (bundle.anchors[1].entity.as_deref(), bundle.anchors[1].trust_domains.as_slice()),
            (Some("Partner"), ["partner".to_owned()].as_slice())
        );
    }

    /// A leaf of `ca` naming exactly `uri`, whose keyUsage is `usages`: what `toolmesh certs`
    /// refuses to issue.
    fn leaf_with(ca: &CertificateAuthority, uri: &str, usages: Vec<rcgen::KeyUsagePurpose>) -> Vec<CertificateDer<'static>> {
        let issuer = rcgen::Issuer::from_ca_cert_pem(ca.cert_pem(), rcgen::KeyPair::from_pem(ca.key_pem()).expect("key")).expect("issuer");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.subject_alt_names.push(rcgen::SanType::URI(uri.try_into().expect("URI")));
        params.key_usages = usages;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let pem = params.signed_by(&rcgen::KeyPair::generate().expect("key"), &issuer).expect("sign").pem();
        pem::certificates(pem.as_bytes(), "leaf").expect("PEM")
    }

    #[test]
    fn standings_follow_the_anchor_rules_agents_verify_by() {
        // The registry verifies with core's anchors (tls::verify_client_chain), so it refuses what
        // agents refuse: an entity's CA vouching for an invalid SPIFFE ID, a leaf that may not sign.
        let mesh = CertificateAuthority::generate("mesh CA", 1).expect("CA");
        let partner = CertificateAuthority::generate("partner CA", 1).expect("CA");
        let mesh_der = vec![pem::single_certificate(mesh.cert_pem().as_bytes(), "mesh CA").expect("PEM")];
        let trust = Trust::load(mesh_der, Some(DEFAULT_TRUST_DOMAIN.to_owned()), Vec::new(), memory()).expect("trust");
        trust.add("partner", partner.cert_pem(), Some("partner.example")).expect("add");
        let signing = || vec![rcgen::KeyUsagePurpose::DigitalSignature];

        let theirs = leaf_with(&partner, "spiffe://partner.example/agent/x", signing());
        assert_eq!(trust.standing(&theirs), Some(Standing::Entity("partner".into())));
        for invalid in ["spiffe://partner.example/agent/x/", "spiffe://Partner.example/agent/x", "spiffe://partner.example/agent/%78"] {
            assert_eq!(trust.standing(&leaf_with(&partner, invalid, signing())), None, "{invalid}");
        }
        let ours = leaf_with(&mesh, &format!("spiffe://{DEFAULT_TRUST_DOMAIN}/agent/x"), signing());
        assert_eq!(trust.standing(&ours), Some(Standing::Mesh));
        for ca in [&mesh, &partner] {
            let may_not_sign = leaf_with(ca, "spiffe://partner.example/agent/y", vec![rcgen::KeyUsagePurpose::KeyEncipherment]);
            assert_eq!(trust.standing(&may_not_sign), None, "a leaf whose keyUsage lacks digitalSignature");
        }
    }

    #[test]
    fn an_entity_added_without_a_trust_domain_takes_its_cas() {
        let mesh = CertificateAuthority::generate("mesh CA", 1).expect("CA");
        // What `toolmesh certs ca --trust-domain partner.example` makes.
        let partner = CertificateAuthority::generate(&toolmesh_ca::ca_common_name("partner.example"), 1).expect("CA");
        let mesh_der = vec![pem::single_certificate(mesh.cert_pem().as_bytes(), "mesh CA").expect("PEM")];
        let trust = Trust::load(mesh_der, Some(DEFAULT_TRUST_DOMAIN.to_owned()), Vec::new(), memory()).expect("trust");
        let entity = trust.add("partner", partner.cert_pem(), None).expect("add");
        assert_eq!(entity.trust_domain, "partner.example");
        assert_eq!(trust.standing(&leaf_in(&partner, "x", "partner.example")), Some(Standing::Entity("partner".into())));
    }

    #[test]
    fn a_ca_that_parses_but_is_no_usable_anchor_is_a_client_error() {
        // Found by fuzzing: the subject key identifier's OID tag damaged (06 -> 0f) still parses
        // as X.509 but is refused as a trust anchor; that was a 500 and must be a 400.
        let mesh = CertificateAuthority::generate("mesh CA", 1).expect("CA");
        let partner = CertificateAuthority::generate("partner CA", 1).expect("CA");
        let mut der = pem::single_certificate(partner.cert_pem().as_bytes(), "partner CA").expect("PEM").to_vec();
        let at = der.windows(6).position(|w| w == [0x1d, 0x06, 0x03, 0x55, 0x1d, 0x0e]).expect("a subject key identifier");
        der[at + 1] = 0x0f;
        let damaged = pem::encode_certificate(&der);
        let trust =
            Trust::load(vec![pem::single_certificate(mesh.cert_pem().as_bytes(), "mesh CA").expect("PEM")], None, Vec::new(), memory())
                .expect("trust");
        match trust.add("partner", &damaged, None) {
            Err(EntityError::Invalid(message)) => assert!(message.contains("not usable as a trust anchor"), "{message}"),
            Err(other) => panic!("expected a client error, got {other:?}"),
            Ok(_) => panic!("a damaged CA was trusted"),
        }
        assert!(trust.list().entities.is_empty());
    }
}
