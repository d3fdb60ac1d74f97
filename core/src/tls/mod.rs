//! Mutual TLS: loading and checking an identity, the server and client configurations, the peer
//! identity, and turning handshake failures into errors that say what to fix.

use crate::error::{Error, ErrorKind, Result};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

mod diagnose;
mod pinned;
mod resumption;
mod verify;

pub use diagnose::{classify_error_chain, classify_tls};
pub use pinned::pinned_registry_config;
pub use verify::{VerifyMode, VerifyPolicy};
use verify::{anchored, AnchorSet, OptionalClientAuth, Peer, PeerVerifier, Scope};

/// Where an identity lives on disk: PEM certificate (chain), private key, and the CA bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

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

/// One CA of the distributed bundle and what certificates chaining to it may speak for.
#[derive(Debug, Clone)]
struct Distributed {
    cert: CertificateDer<'static>,
    scope: Scope,
}

/// One loaded, checked generation of the identity.
struct State {
    certified: Arc<CertifiedKey>,
    /// The configured CA bundle (file or PEM), without the distributed one.
    configured_roots: Vec<CertificateDer<'static>>,
    /// Every anchor, configured and distributed, in one store.
    roots: Arc<RootCertStore>,
    /// The same anchors by what they may vouch for: the configured bundle and the mesh CA first
    /// (every identity), then one set per entity (its trust domains only).
    anchors: Vec<AnchorSet>,
    stamp: Option<FileStamp>,
}

/// What a change of the identity files is detected by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(Vec<(Option<std::time::SystemTime>, u64)>);

impl FileStamp {
    fn of(files: &TlsFiles) -> FileStamp {
        FileStamp(
            [&files.cert, &files.key, &files.ca]
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| (m.modified().ok(), m.len())).unwrap_or((None, 0)))
                .collect(),
        )
    }
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

    fn state(&self) -> Arc<State> {
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

impl State {
    fn from_files(files: &TlsFiles, distributed: &[Distributed]) -> Result<State> {
        let stamp = FileStamp::of(files);
        let cert = read(&files.cert, "certificate", "TOOLMESH_TLS_CERT")?;
        let key = read(&files.key, "private key", "TOOLMESH_TLS_KEY")?;
        warn_if_key_exposed(&files.key);
        let ca = read(&files.ca, "CA bundle", "TOOLMESH_TLS_CA")?;
        let names = (files.cert.display().to_string(), files.key.display().to_string(), files.ca.display().to_string());
        Self::from_pem(&cert, &key, &ca, (&names.0, &names.1, &names.2), Some(stamp), distributed)
    }

    fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
        names: (&str, &str, &str),
        stamp: Option<FileStamp>,
        distributed: &[Distributed],
    ) -> Result<State> {
        let (cert_name, key_name, ca_name) = names;
        let configured_roots = parse_roots(ca_pem, ca_name)?;
        let certified = parse_certified_key(cert_pem, key_pem, cert_name, key_name)?;
        let state = Self::with_anchors(Arc::new(certified), configured_roots, distributed, stamp)?;
        check_chain(&state.certified, &state.roots, cert_name, ca_name)?;
        Ok(state)
    }

    fn with_anchors(
        certified: Arc<CertifiedKey>,
        configured_roots: Vec<CertificateDer<'static>>,
        distributed: &[Distributed],
        stamp: Option<FileStamp>,
    ) -> Result<State> {
        let all: Vec<CertificateDer<'static>> = distributed.iter().map(|d| d.cert.clone()).collect();
        let roots = Arc::new(merge_roots(&configured_roots, &all, "the distributed trust bundle")?);
        let mesh: Vec<_> = distributed.iter().filter(|d| d.scope == Scope::Mesh).map(|d| d.cert.clone()).collect();
        // A CA the registry names as an entity's vouches only for that entity, even when the
        // configured bundle holds it too (a partner's own agents, a CA file from before entities);
        // the CAs of a bundle without anchors (an older registry) only for what is not configured.
        let entities: Vec<&Distributed> = distributed
            .iter()
            .filter(|d| match &d.scope {
                Scope::Mesh => false,
                Scope::Entity { name, .. } if name.is_empty() => !configured_roots.contains(&d.cert) && !mesh.contains(&d.cert),
                Scope::Entity { .. } => !mesh.contains(&d.cert),
            })
            .collect();
        let mesh_roots: Vec<_> = configured_roots.iter().filter(|c| !entities.iter().any(|e| &e.cert == *c)).cloned().collect();
        let mut anchors = vec![AnchorSet::new(Scope::Mesh, merge_roots(&mesh_roots, &mesh, "the mesh CA")?)?];
        for anchor in entities {
            let what = match &anchor.scope {
                Scope::Entity { name, .. } => format!("the CA of entity '{name}'"),
                Scope::Mesh => unreachable!("filtered above"),
            };
            anchors.push(AnchorSet::new(anchor.scope.clone(), merge_roots(std::slice::from_ref(&anchor.cert), &[], &what)?)?);
        }
        Ok(State { certified, configured_roots, roots, anchors, stamp })
    }

    /// Verifies a client chain; answers the scope of the anchor it led to.
    fn verify_client(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<&Scope, rustls::Error> {
        anchored(&self.anchors, end_entity, |set| set.verify_client(end_entity, intermediates, now))
    }

    fn name(&self) -> String {
        self.certified.end_entity_cert().map(|c| peer_identity(c)).unwrap_or_default()
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

/// The anchors of a distributed bundle with what each may vouch for. An entity may not claim a
/// trust domain the bundle gives the mesh CA.
fn distributed_anchors(bundle: &crate::registry_api::TrustBundle) -> Result<Vec<Distributed>> {
    let parse = |pem: &str| -> Result<Vec<CertificateDer<'static>>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("the distributed trust bundle is not valid PEM: {e}")))
    };
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

/// The permission bits of a private key file that let others than its owner read it (`mode &
/// 0o077`), when there are any; always `None` where files have no Unix modes.
pub fn key_file_exposure(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// A key others can read is a key others may hold: loaded anyway, with a warning that says how
/// to close it.
fn warn_if_key_exposed(path: &Path) {
    if let Some(mode) = key_file_exposure(path) {
        tracing::warn!(
            key = %path.display(),
            mode = format!("{mode:o}"),
            "the private key file is readable by its group or others; restrict it with `chmod 600 {}`",
            path.display()
        );
    }
}

fn read(path: &Path, what: &str, env: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::new(
            ErrorKind::CertificateFile,
            format!(
                "cannot read the TLS {what} '{}': {e}. Set {env} (or the matching option) to a readable PEM file; \
                 `toolmesh certs init --dir DIR` creates a development set",
                path.display()
            ),
        )
    })
}

fn parse_roots(ca_pem: &[u8], ca_name: &str) -> Result<Vec<CertificateDer<'static>>> {
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("the CA bundle '{ca_name}' is not valid PEM: {e}")))?;
    if roots.is_empty() {
        return Err(Error::new(
            ErrorKind::CertificateFile,
            format!("the CA bundle '{ca_name}' contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)"),
        ));
    }
    Ok(roots)
}

/// The trust anchors of the configured bundle and the distributed one together.
fn merge_roots(configured: &[CertificateDer<'static>], distributed: &[CertificateDer<'static>], name: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in configured.iter().chain(distributed) {
        roots.add(cert.clone()).map_err(|e| {
            Error::new(ErrorKind::CertificateFile, format!("the CA bundle '{name}' holds an unusable certificate: {e}"))
        })?;
    }
    Ok(roots)
}

fn parse_certified_key(cert_pem: &[u8], key_pem: &[u8], cert_name: &str, key_name: &str) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::new(ErrorKind::CertificateFile, format!("the certificate '{cert_name}' is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(Error::new(
            ErrorKind::CertificateFile,
            format!("the certificate file '{cert_name}' contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)"),
        ));
    }
    // An encrypted key would read as "no key" (PKCS#8) or as garbage (PEM with Proc-Type): name it.
    let text = String::from_utf8_lossy(key_pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(Error::new(
            ErrorKind::CertificateFile,
            format!(
                "the key file '{key_name}' is an encrypted private key; toolmesh needs it unencrypted (decrypt it with \
                 `openssl pkey -in {key_name} -out {key_name}.plain`, keep that file readable by the agent only, and point \
                 TOOLMESH_TLS_KEY at it)"
            ),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        Error::new(
            ErrorKind::CertificateFile,
            format!(
                "the key file '{key_name}' holds no PEM private key (PKCS#8, SEC1 or PKCS#1): {e}; point TOOLMESH_TLS_KEY \
                 (or the tls_key option) at the key issued with the certificate, which starts with -----BEGIN PRIVATE KEY----- \
                 (`toolmesh certs issue NAME --dir DIR` issues a new pair)"
            ),
        )
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => Error::new(
            ErrorKind::KeyMismatch,
            format!("the private key '{key_name}' does not belong to the certificate '{cert_name}'; use the key that was issued with that certificate"),
        ),
        other => Error::new(
            ErrorKind::CertificateFile,
            format!("the private key '{key_name}' cannot be used: {other}; keys must be ECDSA P-256/P-384, Ed25519 or RSA"),
        ),
    })
}

/// Our own certificate must be one peers accept: chained to the bundle, valid now.
fn check_chain(certified: &CertifiedKey, roots: &Arc<RootCertStore>, cert_name: &str, ca_name: &str) -> Result<()> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build().map_err(internal)?;
    let (ee, intermediates) = certified.cert.split_first().expect("chain checked non-empty");
    match verifier.verify_client_cert(ee, intermediates, UnixTime::now()) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(err)) => Err(match err {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => Error::new(
                ErrorKind::CertificateUntrusted,
                format!(
                    "the certificate '{cert_name}' is not signed by the CA in '{ca_name}'; issue it from that CA \
                     (`toolmesh certs issue NAME --dir DIR`) or point TOOLMESH_TLS_CA at the CA that signed it"
                ),
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Error::new(
                ErrorKind::CertificateExpired,
                format!("the certificate '{cert_name}' {}; issue a new one (`toolmesh certs issue NAME --dir DIR --force`)", validity_text(&err)),
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => Error::new(
                ErrorKind::CertificateExpired,
                format!("the certificate '{cert_name}' {}; check the clock or issue a new one", validity_text(&err)),
            ),
            other => Error::new(
                ErrorKind::CertificateUntrusted,
                format!("the certificate '{cert_name}' would be refused by peers: {other:?}; issue it with `toolmesh certs issue`"),
            ),
        }),
        Err(other) => Err(Error::new(ErrorKind::CertificateUntrusted, format!("the certificate '{cert_name}' cannot be verified: {other}"))),
    }
}

pub(crate) fn validity_text(err: &CertificateError) -> String {
    match err {
        CertificateError::ExpiredContext { time, not_after } => {
            format!("expired at {} (now {})", rfc3339(*not_after), rfc3339(*time))
        }
        CertificateError::NotValidYetContext { time, not_before } => {
            format!("is not valid until {} (now {})", rfc3339(*not_before), rfc3339(*time))
        }
        CertificateError::NotValidYet => "is not valid yet".to_owned(),
        _ => "has expired".to_owned(),
    }
}

fn rfc3339(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.as_secs() as i64)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{}s after the epoch", t.as_secs()))
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Internal, format!("TLS configuration: {e}"))
}

/// The identity a certificate names: its first `spiffe://` URI SAN, else any URI SAN, else its
/// subject CN, else `unknown`.
pub fn peer_identity(cert: &CertificateDer<'_>) -> String {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return "unknown".to_owned();
    };
    let uris = uris_of(&parsed);
    if let Some(spiffe) = uris.iter().find(|u| u.starts_with("spiffe://")).or(uris.first()) {
        return spiffe.clone();
    }
    let cn = parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    cn.unwrap_or_else(|| "unknown".to_owned())
}


/// Every SPIFFE ID a certificate names: its `spiffe://` URI SANs, and its identity as the mesh
/// reads it ([`peer_identity`]) when that is one. What an anchor must be allowed to vouch for.
pub fn spiffe_ids(cert: &CertificateDer<'_>) -> Vec<String> {
    let mut ids: Vec<String> = x509_parser::parse_x509_certificate(cert.as_ref()).map(|(_, parsed)| uris_of(&parsed)).unwrap_or_default();
    ids.push(peer_identity(cert));
    ids.retain(|id| id.starts_with("spiffe://"));
    ids.dedup();
    ids
}

/// The trust domain of a SPIFFE ID: `spiffe://td/path` → `td`.
pub fn trust_domain_of(id: &str) -> &str {
    let rest = id.strip_prefix("spiffe://").unwrap_or(id);
    rest.split('/').next().unwrap_or(rest)
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
