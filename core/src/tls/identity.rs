//! The identity of a process: our certificate and key and the anchors peers must chain to,
//! swapped whole on reload, renewal or a new trust bundle, and the TLS configurations built on it.

use super::anchors::{distributed_anchors, Distributed, Scope};
use super::load::{FileStamp, TlsFiles};
use super::state::State;
use super::verify::{OptionalClientAuth, Peer, PeerVerifier};
use super::{internal, provider, resumption, VerifyPolicy, ALPN, VERSIONS};
use crate::error::Result;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A checked identity: our certificate and key, and the trust bundle peers must chain to.
/// Both sit behind a lock and are swapped whole when the files change, so new handshakes use
/// the new material while pooled connections carry on undisturbed.
pub struct Identity {
    state: RwLock<Arc<State>>,
    files: Option<TlsFiles>,
    policy: VerifyPolicy,
    name: String,
    /// The mesh trust bundle the registry distributes (mesh CA + entity CAs, each with what it
    /// may vouch for), trusted besides the configured CA bundle; replaced whole when the registry
    /// announces a new version.
    distributed: RwLock<Vec<Distributed>>,
    /// Counts every change of the trust anchors, so servers know when a peer verified under
    /// older anchors must be verified again.
    trust_generation: AtomicU64,
    /// Counts every change of our own certificate, so clients retire connections that present
    /// the old one before it expires.
    certificate_generation: AtomicU64,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads and checks an identity from files; every failure names the file and the fix.
    pub fn load(files: &TlsFiles) -> Result<Arc<Identity>> {
        Self::load_with(files, VerifyPolicy::default())
    }

    pub fn load_with(files: &TlsFiles, policy: VerifyPolicy) -> Result<Arc<Identity>> {
        let state = State::from_files(files, &[])?;
        Ok(Identity::new(state, Some(files.clone()), policy))
    }

    fn new(state: State, files: Option<TlsFiles>, policy: VerifyPolicy) -> Arc<Identity> {
        let name = state.name();
        Arc::new(Identity {
            state: RwLock::new(Arc::new(state)),
            files,
            policy,
            name,
            distributed: RwLock::new(Vec::new()),
            trust_generation: AtomicU64::new(0),
            certificate_generation: AtomicU64::new(0),
        })
    }

    /// Builds an identity from PEM text (tests, automatic certificates).
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Arc<Identity>> {
        Self::from_pem_with(cert_pem, key_pem, ca_pem, VerifyPolicy::default())
    }

    pub fn from_pem_with(cert_pem: &str, key_pem: &str, ca_pem: &str, policy: VerifyPolicy) -> Result<Arc<Identity>> {
        let names = ("certificate", "key", "CA");
        let state = State::from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), ca_pem.as_bytes(), names, None, &[])?;
        Ok(Identity::new(state, None, policy))
    }

    /// The workload identity of our certificate (its `spiffe://` URI SAN, else its CN).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn policy(&self) -> &VerifyPolicy {
        &self.policy
    }

    pub(super) fn state(&self) -> Arc<State> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.state().certified.clone()
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        self.state().roots.clone()
    }

    /// The configured CA bundle (without the distributed one).
    pub fn configured_roots(&self) -> Vec<CertificateDer<'static>> {
        self.state().configured_roots.clone()
    }

    /// Every trusted CA certificate: the configured bundle and the distributed one (entity CAs).
    pub fn anchor_certificates(&self) -> Vec<CertificateDer<'static>> {
        let mut anchors = self.configured_roots();
        anchors.extend(self.distributed().into_iter().map(|d| d.cert));
        anchors
    }

    /// Increases whenever the trust anchors change (a reload, a new distributed bundle).
    pub fn trust_generation(&self) -> u64 {
        self.trust_generation.load(Ordering::Acquire)
    }

    /// Increases whenever our certificate changes (a reload, a renewal).
    pub fn certificate_generation(&self) -> u64 {
        self.certificate_generation.load(Ordering::Acquire)
    }

    /// The trusted partner entity whose CA vouches for `trust_domain`, if one does (a peer of
    /// that trust domain verified only because it chains to that entity's CA).
    pub fn entity_of_trust_domain(&self, trust_domain: &str) -> Option<String> {
        self.distributed.read().unwrap_or_else(|p| p.into_inner()).iter().find_map(|d| match &d.scope {
            Scope::Entity { name, trust_domains } if trust_domains.iter().any(|td| td == trust_domain) => Some(name.clone()),
            _ => None,
        })
    }

    fn distributed(&self) -> Vec<Distributed> {
        self.distributed.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn swap_state(&self, state: State) {
        let new_certificate = {
            let mut current = self.state.write().unwrap_or_else(|p| p.into_inner());
            let changed = current.certified.cert != state.certified.cert;
            *current = Arc::new(state);
            changed
        };
        self.trust_generation.fetch_add(1, Ordering::AcqRel);
        if new_certificate {
            self.certificate_generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Trusts the mesh trust bundle the registry distributes (the mesh CA and the CAs of its
    /// entities, each bound to what it may vouch for) besides the configured CA bundle,
    /// replacing the previous distributed one. Our own certificate and key stay; peers that
    /// chained only to a removed CA stop being accepted by new handshakes and, through
    /// [`Identity::verify_peer`], by open connections.
    pub fn replace_trust_bundle(&self, bundle: &crate::registry_api::TrustBundle) -> Result<()> {
        let distributed = distributed_anchors(bundle)?;
        let current = self.state();
        let state = State::with_anchors(current.certified.clone(), current.configured_roots.clone(), &distributed, current.stamp.clone())?;
        *self.distributed.write().unwrap_or_else(|p| p.into_inner()) = distributed;
        self.swap_state(state);
        Ok(())
    }

    /// Verifies a client's chain against the current trust anchors and policy: how a server
    /// re-checks a peer of an open connection after the anchors changed.
    pub fn verify_peer(&self, chain: &[CertificateDer<'static>]) -> std::result::Result<(), rustls::Error> {
        let (end_entity, intermediates) = chain.split_first().ok_or(rustls::Error::NoCertificatesPresented)?;
        self.state().verify_client(end_entity, intermediates, UnixTime::now())?;
        self.policy.check(end_entity)
    }

    /// Re-reads the files when they changed since the last load. A set that does not check out
    /// (say, a certificate written before its key) leaves the current identity in place.
    pub fn reload_if_changed(&self) -> Result<bool> {
        let Some(files) = &self.files else { return Ok(false) };
        let stamp = FileStamp::of(files);
        if self.state().stamp.as_ref() == Some(&stamp) {
            return Ok(false);
        }
        let state = State::from_files(files, &self.distributed())?;
        let name = state.name();
        if name != self.name {
            tracing::warn!(old = %self.name, new = %name, "the reloaded certificate names another identity; peers authorize the new one");
        }
        self.swap_state(state);
        Ok(true)
    }

    /// Swaps in new PEM material (automatic certificates); the distributed bundle stays trusted.
    pub fn replace_pem(&self, cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<()> {
        let names = ("certificate", "key", "CA");
        let state = State::from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), ca_pem.as_bytes(), names, None, &self.distributed())?;
        self.swap_state(state);
        Ok(())
    }

    /// Polls the files every `interval` and reloads them when they change; ends when the
    /// identity is dropped.
    pub fn spawn_reloader(self: &Arc<Self>, interval: std::time::Duration) -> Option<tokio::task::JoinHandle<()>> {
        self.spawn_reloader_then(interval, |_| {})
    }

    /// As `spawn_reloader`, running `after_reload` after each reload that took effect.
    pub fn spawn_reloader_then(
        self: &Arc<Self>,
        interval: std::time::Duration,
        after_reload: impl Fn(&Arc<Identity>) + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.files.as_ref()?;
        let weak = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(interval).await;
                let Some(identity) = weak.upgrade() else { return };
                match identity.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!(identity = %identity.name, "certificate files changed: new handshakes use the new certificate");
                        failing = false;
                        after_reload(&identity);
                    }
                    Ok(false) => failing = false,
                    Err(e) if !failing => {
                        tracing::warn!("the changed certificate files are not usable yet, keeping the current ones: {e}");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        }))
    }

    /// Server side: TLS 1.3/1.2, a client certificate is required and must chain to the bundle.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>> {
        self.server_config_verifying(Arc::new(PeerVerifier(self.clone(), Peer::Agent)))
    }

    /// Like [`Identity::server_config`], but a client may connect without a certificate: for the
    /// registry, whose bootstrap route serves agents that do not have one yet. Every other route
    /// must then refuse requests whose [`crate::server::PeerInfo`] is unauthenticated.
    pub fn server_config_optional_client_auth(self: &Arc<Self>) -> Result<Arc<ServerConfig>> {
        self.server_config_verifying(Arc::new(OptionalClientAuth(PeerVerifier(self.clone(), Peer::Agent))))
    }

    fn server_config_verifying(self: &Arc<Self>, clients: Arc<dyn ClientCertVerifier>) -> Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(internal)?
            .with_client_cert_verifier(clients)
            .with_cert_resolver(Arc::new(CurrentCert(self.clone())));
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Client side: verifies the peer's chain and, by the policy, its DNS/IP SAN or its SPIFFE
    /// ID; presents our certificate.
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<ClientConfig>> {
        self.client_config_for(Peer::Agent)
    }

    /// Client side, for talking to the registry: as [`Identity::client_config`], and the server
    /// must chain to the mesh CA (configured or distributed, never an entity's) and, when its
    /// certificate carries a SPIFFE ID, be of role registry. Its TLS sessions are its own.
    pub fn registry_client_config(self: &Arc<Self>) -> Result<Arc<ClientConfig>> {
        self.client_config_for(Peer::Registry)
    }

    fn client_config_for(self: &Arc<Self>, peer: Peer) -> Result<Arc<ClientConfig>> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(internal)?
            // Not a weaker check: the verifier below checks the chain, plus the name or the ID.
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerVerifier(self.clone(), peer)))
            .with_client_cert_resolver(Arc::new(CurrentCert(self.clone())));
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        config.resumption = rustls::client::Resumption::store(Arc::new(resumption::ClientSessions::new(self.clone())));
        Ok(Arc::new(config))
    }
}

struct CurrentCert(Arc<Identity>);

impl std::fmt::Debug for CurrentCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CurrentCert")
    }
}

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }
}

impl ResolvesClientCert for CurrentCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
