//! `tls = auto`: an agent with no certificate files gets a short-lived certificate from the
//! registry's CA and renews it in the background.
//!
//! The agent generates its key in memory and sends a certificate signing request to the
//! registry's bootstrap route, authenticated by the join token. The token also carries the
//! fingerprint of the registry's CA, so that first connection verifies the registry by pinning
//! that CA (see [`crate::tls::pinned_registry_config`]); nothing is trusted blindly. The key never
//! touches the disk. Renewal happens at two thirds of the certificate's lifetime and swaps the
//! new certificate and key in place: open connections carry on, new handshakes use the new one.

use crate::certificate::{certificate_request, fingerprint};
use crate::client::{HttpsClient, RequestError};
use crate::config::AgentConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::registry_api::{ApiError, BootstrapRequest, BootstrapResponse, API_PREFIX};
use crate::registry_endpoints::{self, Registries};
use crate::tls::{pinned_registry_config, Identity, VerifyPolicy};
use bytes::Bytes;
use http_body_util::Full;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The file a registry writes its join token to, in its state directory.
pub const JOIN_TOKEN_FILE: &str = "join-token";
const TOKEN_PREFIX: &str = "tmjoin1";
/// How long an agent keeps trying to reach the registry for its first certificate.
const BOOTSTRAP_PATIENCE: Duration = Duration::from_secs(10);
const BOOTSTRAP_RETRY: Duration = Duration::from_millis(200);
const RENEW_RETRY_MIN: Duration = Duration::from_secs(1);
const RENEW_RETRY_MAX: Duration = Duration::from_secs(30);

/// The registry's default state directory: `$HOME/.toolmesh/registry`.
pub fn default_state_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|home| Path::new(&home).join(".toolmesh").join("registry"))
}

/// What lets an agent join: a secret, and the fingerprint of the CA it will trust.
/// Written `tmjoin1.<sha256 of the CA certificate, hex>.<secret, hex>`.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    ca_fingerprint: String,
    secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken").field("ca_fingerprint", &self.ca_fingerprint).field("secret", &"[secret]").finish()
    }
}

impl JoinToken {
    /// A new token with a random 256-bit secret.
    pub fn generate(ca_fingerprint: &str) -> JoinToken {
        let secret: [u8; 32] = rand::random();
        JoinToken { ca_fingerprint: ca_fingerprint.to_owned(), secret: secret.iter().map(|b| format!("{b:02x}")).collect() }
    }

    pub fn parse(text: &str) -> Result<JoinToken> {
        let invalid = || {
            Error::new(
                ErrorKind::InvalidConfig,
                "the join token is not valid: expected tmjoin1.<64 hex digits>.<64 hex digits>, as `toolmesh registry --tls-auto` prints and writes to <state-dir>/join-token",
            )
        };
        let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        match text.trim().split('.').collect::<Vec<_>>().as_slice() {
            [TOKEN_PREFIX, fp, secret] if hex64(fp) && hex64(secret) => {
                Ok(JoinToken { ca_fingerprint: fp.to_ascii_lowercase(), secret: secret.to_ascii_lowercase() })
            }
            _ => Err(invalid()),
        }
    }

    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    /// The token as it is handed to agents. Never log it.
    pub fn reveal(&self) -> String {
        format!("{TOKEN_PREFIX}.{}.{}", self.ca_fingerprint, self.secret)
    }

    /// Whether `presented` is this token; compares in constant time.
    pub fn admits(&self, presented: &str) -> bool {
        let Ok(presented) = JoinToken::parse(presented) else { return false };
        let (ours, theirs) = (self.reveal(), presented.reveal());
        // Same length by construction; fold every byte so the time does not depend on where they differ.
        ours.len() == theirs.len() && ours.bytes().zip(theirs.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
    }

    /// Reads a token file, naming the file and the fix when it cannot.
    pub fn read(path: &Path) -> Result<JoinToken> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!("cannot read the join token file {}: {e}; set TOOLMESH_JOIN_TOKEN or TOOLMESH_JOIN_TOKEN_FILE", path.display()),
            )
        })?;
        JoinToken::parse(&text).map_err(|e| e.context(path.display()))
    }
}

/// When to renew a certificate valid for `lifetime` from now: at two thirds of it, leaving a
/// third for retries while the registry is away.
pub fn renewal_delay(lifetime: Duration) -> Duration {
    lifetime * 2 / 3
}

/// A certificate from the registry's CA, with the key generated for it.
struct Lease {
    cert_pem: String,
    key_pem: String,
    /// The registry's CA (the pinned one), PEM.
    ca_pem: String,
    response: BootstrapResponse,
}

/// The bootstrap and renewal client of one agent.
pub struct AutoTls {
    /// The registries to ask (replicas: each issues from the same CA).
    registries: Registries,
    token: JoinToken,
    request: BootstrapRequest,
    http: HttpsClient,
}

impl AutoTls {
    /// Reads what `tls = auto` needs from the configuration: the registry URL and the join token.
    pub fn from_config(config: &AgentConfig) -> Result<AutoTls> {
        let url = config.registry_url.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidConfig,
                "tls=auto gets the agent's certificate from the registry, but no registry is set: set TOOLMESH_REGISTRY_URL",
            )
        })?;
        let token = match (&config.join_token, &config.join_token_file) {
            (Some(token), _) => JoinToken::parse(token.expose()).map_err(|e| e.context("TOOLMESH_JOIN_TOKEN"))?,
            (None, Some(file)) => JoinToken::read(file)?,
            (None, None) => {
                let default = default_state_dir().map(|dir| dir.join(JOIN_TOKEN_FILE)).filter(|f| f.is_file()).ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidConfig,
                        "tls=auto needs the registry's join token: set TOOLMESH_JOIN_TOKEN (printed by `toolmesh registry --tls-auto`) \
                         or TOOLMESH_JOIN_TOKEN_FILE (on the registry's machine it defaults to ~/.toolmesh/registry/join-token)",
                    )
                })?;
                JoinToken::read(&default)?
            }
        };
        let mut hosts = vec![config.advertised_host()];
        if !matches!(config.host.as_str(), "0.0.0.0" | "::") && !hosts.contains(&config.host) {
            hosts.push(config.host.clone());
        }
        Ok(AutoTls {
            registries: Registries::new(registry_endpoints::parse(url)?),
            http: HttpsClient::with_tls(pinned_registry_config(token.ca_fingerprint())?),
            token,
            request: BootstrapRequest { name: config.name.clone(), csr: String::new(), hosts },
        })
    }

    /// Gets the first certificate (retrying for a few seconds while the registry is not up
    /// yet), builds the identity, and starts renewing it. The task ends with the identity.
    pub async fn start(self, policy: VerifyPolicy) -> Result<(Arc<Identity>, JoinHandle<()>)> {
        let deadline = tokio::time::Instant::now() + BOOTSTRAP_PATIENCE;
        let mut retry = BOOTSTRAP_RETRY;
        let lease = loop {
            match self.lease().await {
                Ok(lease) => break lease,
                Err(e) if e.kind() == ErrorKind::RegistryUnavailable && tokio::time::Instant::now() + retry < deadline => {
                    tracing::debug!("waiting for the registry to issue a certificate: {e}");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        };
        let identity = Identity::from_pem_with(&lease.cert_pem, &lease.key_pem, &lease.ca_pem, policy)?;
        identity.replace_trust_bundle(&lease.response.trust_bundle)?;
        tracing::info!(identity = %lease.response.spiffe_id, lifetime_s = lease.response.lifetime_ms / 1000, "certificate issued by the registry's CA");
        let first_lifetime = Duration::from_millis(lease.response.lifetime_ms);
        let weak = Arc::downgrade(&identity);
        let auto = Arc::new(self);
        let renewal = tokio::spawn(renew_forever(first_lifetime, move || {
            let (weak, auto) = (weak.clone(), auto.clone());
            async move {
                let lease = auto.lease().await?;
                let Some(identity) = weak.upgrade() else { return Ok(None) };
                identity.replace_pem(&lease.cert_pem, &lease.key_pem, &lease.ca_pem)?;
                identity.replace_trust_bundle(&lease.response.trust_bundle)?;
                tracing::info!(identity = %lease.response.spiffe_id, "certificate renewed: new handshakes use the new one");
                Ok(Some(Duration::from_millis(lease.response.lifetime_ms)))
            }
        }));
        Ok((identity, renewal))
    }

    /// One bootstrap request with a new key, to the registry in use; one that does not answer
    /// makes the next one (a replica) the one in use, for the retry.
    async fn lease(&self) -> Result<Lease> {
        let (key, csr) = certificate_request(&self.request.name)?;
        let (index, url) = self.registries.current();
        let lease = self.lease_from(url, key, csr).await;
        if lease.as_ref().is_err_and(|e| e.kind() == ErrorKind::RegistryUnavailable) {
            self.registries.fail_over(index);
        }
        lease
    }

    async fn lease_from(&self, url: &str, key: rcgen::KeyPair, csr: String) -> Result<Lease> {
        let body = BootstrapRequest { csr, ..self.request.clone() };
        let request = http::Request::post(format!("{url}{API_PREFIX}/bootstrap"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::AUTHORIZATION, format!("Bearer {}", self.token.reveal()))
            .body(Full::new(Bytes::from(serde_json::to_vec(&body).expect("bootstrap requests serialize"))))
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("bad bootstrap request: {e}")))?;
        let response = self.http.send(request).await.map_err(|RequestError { error, .. }| match error.kind() {
            ErrorKind::ConnectFailed | ErrorKind::ConnectionLost | ErrorKind::Timeout => Error::new(
                ErrorKind::RegistryUnavailable,
                format!("cannot reach the registry at {url} for a certificate: {}", error.message()),
            ),
            _ => error.context(format!("bootstrap with the registry at {url}")),
        })?;
        let status = response.status();
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(response.body())
                .map(|a| a.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(response.body()).into_owned());
            // A refused token is a configuration problem: the token given is not the registry's current one.
            let kind = if status.is_server_error() { ErrorKind::RegistryUnavailable } else { ErrorKind::InvalidConfig };
            return Err(Error::new(kind, format!("the registry at {url} refused to issue a certificate ({status}): {message}")));
        }
        let response: BootstrapResponse = serde_json::from_slice(response.body())
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("the registry at {url} sent an unreadable certificate answer: {e}")))?;
        let ca_pem = crate::tls::pem::certificates(response.trust_bundle.pem.as_bytes(), "the registry's trust bundle")
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("the registry at {url} sent a broken answer: {}", e.message())))?
            .into_iter()
            .find(|ca| fingerprint(ca) == self.token.ca_fingerprint())
            .map(|ca| crate::tls::pem::encode_certificate(&ca))
            .ok_or_else(|| Error::new(ErrorKind::Protocol, "the registry's trust bundle lacks the CA its join token pins"))?;
        Ok(Lease { cert_pem: response.certificate.clone(), key_pem: key.serialize_pem(), ca_pem, response })
    }
}

/// Renews at two thirds of each lifetime; on failure retries with backoff (1 s doubling to 30 s)
/// until a renewal succeeds. `renew` answers the new lifetime, or `None` when there is nothing
/// left to renew for. The agents' certificates and a `--tls-auto` registry's own use it.
pub async fn renew_forever<F, Fut>(first_lifetime: Duration, mut renew: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<Duration>>>,
{
    let mut delay = renewal_delay(first_lifetime);
    let mut retry = RENEW_RETRY_MIN;
    loop {
        tokio::time::sleep(delay).await;
        match renew().await {
            Ok(Some(lifetime)) => {
                delay = renewal_delay(lifetime);
                retry = RENEW_RETRY_MIN;
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("certificate renewal failed, retrying in {retry:?}: {e}");
                delay = retry;
                retry = (retry * 2).min(RENEW_RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn tokens_round_trip_and_compare_by_value() {
        let token = JoinToken::generate(&"ab".repeat(32));
        let parsed = JoinToken::parse(&token.reveal()).unwrap();
        assert_eq!(parsed, token);
        assert!(token.admits(&format!("  {}\n", token.reveal())));
        assert!(!token.admits(&JoinToken::generate(&"ab".repeat(32)).reveal()));
        assert!(!format!("{token:?}").contains(&token.secret), "Debug never shows the secret");
        for bad in ["", "tmjoin1..", "tmjoin2.aa.bb", &format!("tmjoin1.{}.{}", "a".repeat(64), "z".repeat(64))] {
            assert_eq!(JoinToken::parse(bad).unwrap_err().kind(), ErrorKind::InvalidConfig, "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_happens_at_two_thirds_and_failures_are_retried_with_backoff() {
        let calls = Arc::new(AtomicUsize::new(0));
        let times = Arc::new(std::sync::Mutex::new(Vec::new()));
        let start = tokio::time::Instant::now();
        let task = {
            let (calls, times) = (calls.clone(), times.clone());
            tokio::spawn(renew_forever(Duration::from_secs(90), move || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                times.lock().unwrap().push(start.elapsed());
                async move {
                    match n {
                        // The second renewal fails twice (the registry is away), then works.
                        1 | 2 => Err(Error::new(ErrorKind::RegistryUnavailable, "away")),
                        3 => Ok(None),
                        _ => Ok(Some(Duration::from_secs(30))),
                    }
                }
            }))
        };
        tokio::time::timeout(Duration::from_secs(3600), task).await.expect("the loop ends").unwrap();
        let times = times.lock().unwrap().clone();
        let secs: Vec<u64> = times.iter().map(Duration::as_secs).collect();
        // 60 s (2/3 of 90), then 2/3 of 30 s = 20 s, then retries after 1 s and 2 s.
        assert_eq!(secs, [60, 80, 81, 83]);
    }
}
