//! `--tls-auto`: the registry keeps a CA and a join token in its store, issues its own certificate
//! from the CA, writes the CA certificate, the join token and an operator certificate to its
//! state directory for operators and local agents (secrets 0600), and signs the certificate
//! signing requests of agents that present the token.

use crate::store::{AutoTlsState, Store};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use toolmesh_ca::{
    ca_common_name, write_file_atomic, write_pair, CertificateAuthority, CertificateSummary, LeafRequest, Role, DEFAULT_CA_DAYS,
    DEFAULT_LEAF_DAYS,
};
use toolmesh_core::auto_tls::{JoinToken, JOIN_TOKEN_FILE};
use toolmesh_core::registry_api::BootstrapRequest;
use toolmesh_core::tls::Identity;
use toolmesh_core::{Error, ErrorKind, Result};

/// Failed join-token attempts a source may make within [`JOIN_FAILURE_WINDOW`]...
pub const JOIN_FAILURES_ALLOWED: u32 = 5;
pub const JOIN_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// ...before its bootstrap requests are refused for this long (`429` with `Retry-After`).
pub const JOIN_COOLDOWN: Duration = Duration::from_secs(60);
/// Sources remembered at most; beyond, the oldest are forgotten.
const JOIN_SOURCES_KEPT: usize = 4096;

/// The registry's own certificate by default: renewed in place at two thirds of its lifetime.
pub const REGISTRY_CERT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Certificates are valid from a little before they are issued, for clocks that lag.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// The CA and token of a `--tls-auto` registry.
pub struct AutoIssuer {
    ca: CertificateAuthority,
    token: JoinToken,
    trust_domain: String,
    agent_cert_lifetime: Duration,
    /// The lifetime of the registry's own certificate ([`REGISTRY_CERT_LIFETIME`] unless set).
    registry_cert_lifetime: Duration,
    /// Where the registry is reached; its own certificate names these.
    registry_hosts: Vec<String>,
    pub token_file: PathBuf,
    pub state_dir: PathBuf,
    /// Failed join-token attempts per source.
    throttle: JoinThrottle,
}

impl std::fmt::Debug for AutoIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoIssuer").field("state_dir", &self.state_dir).field("trust_domain", &self.trust_domain).finish_non_exhaustive()
    }
}

impl AutoIssuer {
    /// Loads the CA and join token from the store in `state_dir`, creating them (and the
    /// directory, 0700) on first use; writes the CA certificate and the token to the directory
    /// when they are not there as stored, and (re)writes the operator certificate when it is
    /// missing or past two thirds of its life.
    pub fn prepare(state_dir: &Path, trust_domain: &str, agent_cert_lifetime: Duration, registry_hosts: Vec<String>) -> Result<AutoIssuer> {
        let store = crate::store::Embedded::open(state_dir)?;
        Self::prepare_in(store.as_ref(), state_dir, trust_domain, agent_cert_lifetime, registry_hosts)
    }

    /// [`AutoIssuer::prepare`] with the CA and join token kept in `store` (PostgreSQL, shared by
    /// replicas: the first replica's CA is every replica's); `state_dir` gets the copies for
    /// operators and local agents. Blocks on the store: call it off the async workers.
    pub fn prepare_in(
        store: &dyn Store,
        state_dir: &Path,
        trust_domain: &str,
        agent_cert_lifetime: Duration,
        registry_hosts: Vec<String>,
    ) -> Result<AutoIssuer> {
        crate::mesh_dir::make_private(state_dir)?;
        let from = store.describe();
        if store.load()?.auto_tls.is_none() {
            // A directory another mesh's registry wrote (with certificate files) holds no CA:
            // a new one here would make a new mesh inherit that mesh's entities.
            let recorded = crate::mesh_dir::recorded(state_dir)?;
            if !recorded.is_empty() {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "the state directory {} belongs to the mesh whose CA is {} (SHA-256) but holds no CA of its own, so \
                         --tls-auto cannot use it; choose another with --state-dir (or none: the default is {})",
                        state_dir.display(),
                        recorded.into_iter().collect::<Vec<_>>().join(", "),
                        toolmesh_core::auto_tls::default_state_dir()
                            .map(|d| d.display().to_string())
                            .unwrap_or_else(|| "~/.toolmesh/registry".into()),
                    ),
                ));
            }
            let ca = CertificateAuthority::generate(&ca_common_name(trust_domain), DEFAULT_CA_DAYS)?;
            let fresh = AutoTlsState {
                ca_cert: ca.cert_pem().to_owned(),
                ca_key: ca.key_pem().to_owned(),
                join_token: JoinToken::generate(&ca.fingerprint()).reveal(),
            };
            // Only when still none is stored: of replicas starting at once, the first one's CA wins.
            let mut created = false;
            store.change(&mut |state| {
                if state.auto_tls.is_none() {
                    state.auto_tls = Some(fresh.clone());
                    created = true;
                }
            })?;
            if created {
                tracing::info!(store = %from, "created the registry's CA");
            }
        }
        let stored =
            store.load()?.auto_tls.ok_or_else(|| Error::new(ErrorKind::Internal, format!("{from} holds no CA right after storing one")))?;
        let ca = CertificateAuthority::from_pem(&stored.ca_cert, &stored.ca_key, &from, &from)
            .map_err(|e| e.context(format!("the registry's CA in {from}")))?;
        let token = JoinToken::parse(&stored.join_token).map_err(|e| e.context(format!("the join token in {from}")))?;
        let token_file = state_dir.join(JOIN_TOKEN_FILE);
        write_if_changed(&state_dir.join("ca.pem"), ca.cert_pem(), 0o644)?;
        write_if_changed(&token_file, &format!("{}\n", token.reveal()), 0o600)?;
        let issuer = AutoIssuer {
            ca,
            token,
            trust_domain: trust_domain.to_owned(),
            agent_cert_lifetime,
            registry_cert_lifetime: REGISTRY_CERT_LIFETIME,
            registry_hosts,
            token_file,
            state_dir: state_dir.to_owned(),
            throttle: JoinThrottle::new(JOIN_FAILURES_ALLOWED, JOIN_FAILURE_WINDOW, JOIN_COOLDOWN),
        };
        issuer.write_operator_certificate()?;
        Ok(issuer)
    }

    /// Sets the lifetime of the registry's own certificates (tests renew within seconds).
    pub fn with_registry_cert_lifetime(mut self, lifetime: Duration) -> AutoIssuer {
        self.registry_cert_lifetime = lifetime;
        self
    }

    /// Sets how many failed join-token attempts a source may make within `window` before it is
    /// refused (`429`) for `cooldown` (default: 5 a minute, then a minute).
    pub fn with_join_throttle(mut self, failures: u32, window: Duration, cooldown: Duration) -> AutoIssuer {
        self.throttle = JoinThrottle::new(failures, window, cooldown);
        self
    }

    /// The failed join-token attempts of each source.
    pub fn join_throttle(&self) -> &JoinThrottle {
        &self.throttle
    }

    pub fn registry_cert_lifetime(&self) -> Duration {
        self.registry_cert_lifetime
    }

    pub fn token(&self) -> &JoinToken {
        &self.token
    }

    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The registry's own identity: a certificate whose chain carries the CA too, so agents
    /// holding only the token's fingerprint can verify it.
    pub fn registry_identity(&self) -> Result<Arc<Identity>> {
        let (chain, key, _) = self.registry_certificate()?;
        Identity::from_pem(&chain, &key, self.ca.cert_pem())
    }

    /// A new certificate and key for the registry itself: (chain PEM, key PEM, how long it is
    /// valid from now).
    pub fn registry_certificate(&self) -> Result<(String, String, Duration)> {
        let mut request = self.registry_request()?;
        let valid_for = self.set_lifetime(&mut request, self.registry_cert_lifetime);
        let issued = self.ca.issue(&request)?;
        Ok((format!("{}{}", issued.cert_pem, self.ca.cert_pem()), issued.key_pem, valid_for))
    }

    /// What the registry's own certificates name: `registry`, `localhost`, the loopback
    /// addresses and the hosts it is reached at.
    fn registry_request(&self) -> Result<LeafRequest> {
        let mut request = LeafRequest::new("registry", Role::Registry, &self.trust_domain, 0);
        for host in &self.registry_hosts {
            add_host(&mut request, host).map_err(|e| Error::new(ErrorKind::InvalidConfig, e))?;
        }
        Ok(request)
    }

    /// The DNS names of the registry's own certificate that no agent certificate may carry:
    /// all of them but `localhost` (lower case, without a trailing dot).
    fn reserved_dns_names(&self) -> Vec<String> {
        let names = self.registry_request().map(|r| r.dns_names).unwrap_or_default();
        let mut names: Vec<String> = names
            .iter()
            .chain(&self.registry_hosts)
            .map(|n| normalized_host(n))
            .filter(|n| n != "localhost" && n.parse::<IpAddr>().is_err() && !n.is_empty())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Signs an agent's request: (certificate PEM, SPIFFE ID, how long it is valid from now).
    ///
    /// The join token is a credential as strong as the power to issue agent identities: its
    /// holder may choose any agent name and the hosts it is reached at. What it may not choose:
    /// another role than agent, a name of the registry's or operator's roles, or a DNS name the
    /// registry's own certificate carries (its name `registry`, `--host`, the machine's host
    /// name, every `--san`). IP addresses and `localhost` are shared by the processes of one
    /// machine (every agent certificate names `localhost` and the loopback addresses); the
    /// agent's `spiffe://TD/agent/NAME` still tells it from the registry, whose clients require
    /// `spiffe://TD/registry/...`.
    pub fn issue_agent(&self, request: &BootstrapRequest) -> std::result::Result<(String, String, Duration), String> {
        let name = &request.name;
        let valid_name = (1..=63).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with(['-', '.']);
        if !valid_name {
            return Err(format!("agent name '{name}' cannot name a certificate: use 1-63 letters, digits, '-', '_' or '.'"));
        }
        if [Role::Registry, Role::Operator].iter().any(|role| name.eq_ignore_ascii_case(role.as_str())) {
            return Err(format!("agent name '{name}' is reserved for the registry's own certificates; choose another name"));
        }
        let reserved = self.reserved_dns_names();
        // The name is a DNS SAN of the certificate too.
        if let Some(host) = std::iter::once(name).chain(&request.hosts).find(|h| reserved.contains(&normalized_host(h))) {
            return Err(format!(
                "host '{host}' is one of the registry's own names ({}); an agent certificate may not name it (it would let \
                 the agent pose as the registry): advertise the agent under its own name or its IP address",
                reserved.join(", ")
            ));
        }
        let mut leaf = LeafRequest::new(name, Role::Agent, &self.trust_domain, 0);
        for host in &request.hosts {
            add_host(&mut leaf, host)?;
        }
        let valid_for = self.set_lifetime(&mut leaf, self.agent_cert_lifetime);
        let spiffe_id = leaf.uris[0].clone();
        let certificate = self.ca.sign_request(&request.csr, &leaf).map_err(|e| e.message().to_owned())?;
        Ok((certificate, spiffe_id, valid_for))
    }

    /// Sets the validity and answers how long it lasts from now: X.509 times have whole
    /// seconds, so a short lifetime is shorter than asked by up to a second.
    fn set_lifetime(&self, request: &mut LeafRequest, lifetime: Duration) -> Duration {
        let now = time::OffsetDateTime::now_utc();
        request.not_before = now - CLOCK_SKEW;
        request.not_after = (now + lifetime).replace_nanosecond(0).unwrap_or(now + lifetime);
        Duration::try_from(request.not_after - now).unwrap_or_default()
    }

    fn write_operator_certificate(&self) -> Result<()> {
        let cert = self.state_dir.join("operator.pem");
        let fresh =
            std::fs::read_to_string(&cert).ok().and_then(|pem| CertificateSummary::parse_pem(&pem, "operator.pem").ok()).is_some_and(|s| {
                let now = time::OffsetDateTime::now_utc();
                s.issuer == CertificateSummary::parse_pem(self.ca.cert_pem(), "ca.pem").map(|ca| ca.subject).unwrap_or_default()
                    && (s.not_after - now) > (s.not_after - s.not_before) / 3
            });
        if !fresh {
            let issued = self.ca.issue(&LeafRequest::new("operator", Role::Operator, &self.trust_domain, DEFAULT_LEAF_DAYS))?;
            write_pair(&self.state_dir, "operator", &issued, true)?;
        }
        Ok(())
    }
}

/// Writes `contents` to `path` unless it holds them already (the CA certificate and the join
/// token are copies of the store's, for operators and local agents).
fn write_if_changed(path: &Path, contents: &str, mode: u32) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|current| current == contents) {
        return Ok(());
    }
    write_file_atomic(path, contents.as_bytes(), mode)
}

/// A host as certificates compare it: lower case, without brackets or a trailing dot.
fn normalized_host(host: &str) -> String {
    host.trim().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

/// An IP address becomes an IP SAN, anything else a DNS SAN.
fn add_host(request: &mut LeafRequest, host: &str) -> std::result::Result<(), String> {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => {}
        Ok(ip) => request.add_ip(ip),
        Err(_) => {
            let valid = !host.is_empty() && host.len() <= 253 && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
            if !valid {
                return Err(format!("host '{host}' is neither an IP address nor a DNS name"));
            }
            request.add_dns(&host.to_ascii_lowercase());
        }
    }
    Ok(())
}

/// Counts failed join-token attempts per source (an IPv4 address, or an IPv6 /64, which one
/// host commonly holds whole) and cools a source down once it failed too often: guessing the
/// 256-bit secret is hopeless anyway, but a flood of attempts is an attack or a misconfigured
/// agent, and either should be slowed and seen. While a source cools down every bootstrap
/// request from it is refused, one with the right token too, so that the answer tells an
/// attacker nothing.
pub struct JoinThrottle {
    allowed: u32,
    window: Duration,
    cooldown: Duration,
    sources: Mutex<HashMap<IpAddr, Failures>>,
}

struct Failures {
    count: u32,
    since: Instant,
    cooling_until: Option<Instant>,
}

impl JoinThrottle {
    pub fn new(allowed: u32, window: Duration, cooldown: Duration) -> JoinThrottle {
        JoinThrottle { allowed: allowed.max(1), window, cooldown, sources: Mutex::new(HashMap::new()) }
    }

    /// How long `source` must still wait, when it is cooling down.
    pub fn cooling_down(&self, source: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        sources.get(&key(source))?.cooling_until.filter(|until| *until > now).map(|until| until - now)
    }

    /// Counts a failed attempt of `source`: answers its failures in the current window and,
    /// when this one starts a cooldown, how long it lasts.
    pub fn failed(&self, source: IpAddr) -> (u32, Option<Duration>) {
        let now = Instant::now();
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.len() >= JOIN_SOURCES_KEPT && !sources.contains_key(&key(source)) {
            let (window, cooldown) = (self.window, self.cooldown);
            sources.retain(|_, f| now.duration_since(f.since) < window.max(cooldown) || f.cooling_until.is_some_and(|u| u > now));
            if sources.len() >= JOIN_SOURCES_KEPT {
                if let Some(oldest) = sources.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| *k) {
                    sources.remove(&oldest);
                }
            }
        }
        let failures = sources.entry(key(source)).or_insert(Failures { count: 0, since: now, cooling_until: None });
        if now.duration_since(failures.since) >= self.window {
            *failures = Failures { count: 0, since: now, cooling_until: failures.cooling_until };
        }
        failures.count += 1;
        let count = failures.count;
        if count >= self.allowed {
            failures.cooling_until = Some(now + self.cooldown);
            failures.count = 0;
            failures.since = now;
            return (count, Some(self.cooldown));
        }
        (count, None)
    }

    /// Forgets the failures of `source` after it presented the right token.
    pub fn succeeded(&self, source: IpAddr) {
        self.sources.lock().unwrap_or_else(|p| p.into_inner()).remove(&key(source));
    }
}

fn key(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
        v4 => v4,
    }
}
