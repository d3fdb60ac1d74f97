//! Agent configuration: `TOOLMESH_*` environment variables, overridden by the options a binding
//! passes (the same keys, lowercase, without the prefix). Parsed once, here, for every language.

use crate::context::HeaderAllowList;
use crate::error::{Error, ErrorKind, Result};
use crate::registry_endpoints;
use crate::server::ServerLimits;
use crate::tls::{TlsFiles, VerifyPolicy};
use std::path::PathBuf;
use std::time::Duration;

/// Every option an agent takes. Keys of [`AgentConfig::set`] are these names; the environment
/// variable is `TOOLMESH_` + the key in upper case.
pub const KEYS: &[&str] = &[
    // Overrides the name given in code, so replicas of one program can run under distinct names.
    "name",
    "registry_url",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "host",
    "advertise_host",
    "port",
    "propagate_headers",
    "heartbeat_interval_ms",
    "call_timeout_ms",
    "tls_verify",
    "tls_allowed_ids",
    "tls_reload_interval_ms",
    "health_host",
    "health_port",
    "metrics",
    "tls",
    "join_token",
    "join_token_file",
    "policy_file",
    "max_tasks",
];

/// Every option key: [`KEYS`], and the connection limits of the mTLS and health listeners
/// ([`ServerLimits::KEYS`]).
pub fn all_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().chain(ServerLimits::KEYS).copied()
}

/// Where an agent's identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files (`tls_cert`, `tls_key`, `tls_ca`), reloaded when they change.
    Files,
    /// Short-lived certificates from the registry's CA, requested with a join token and renewed
    /// in the background; the private key never leaves memory.
    Auto,
}

/// A secret setting: never printed, not even by `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[secret]")
    }
}

/// Where the plain-HTTP health listener goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthPort {
    /// The mTLS port + 1000 (any free port when the mTLS port is chosen by the system).
    Offset,
    Fixed(u16),
    Off,
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub name: String,
    /// `None`: a standalone agent (serves its tools; its dependencies stay unresolved).
    pub registry_url: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1).
    pub host: String,
    /// Host name peers dial (default: `host`, or 127.0.0.1 when listening on every address).
    pub advertise_host: Option<String>,
    /// 0 picks a free port.
    pub port: u16,
    pub propagate_headers: HeaderAllowList,
    pub heartbeat_interval: Duration,
    /// Default per-dependency call timeout.
    pub call_timeout: Duration,
    /// How peers are verified (`hostname` or `spiffe`, and the allowed identities).
    pub tls_policy: VerifyPolicy,
    /// How often the certificate files are checked for a rotation.
    pub tls_reload_interval: Duration,
    /// Where `/health` and `/ready` are served, without TLS (loopback by default).
    pub health_host: String,
    pub health_port: HealthPort,
    /// Whether calls are timed and counted for `/metrics` (`on` by default; `off` spares the
    /// call path the recording and answers `/metrics` with 404).
    pub metrics: bool,
    /// `files` (default) or `auto`.
    pub tls_source: TlsSource,
    /// The registry's join token, for `tls = auto`.
    pub join_token: Option<Secret>,
    /// A file holding the join token (default: the registry's default state directory on this
    /// machine, `$HOME/.toolmesh/registry/join-token`).
    pub join_token_file: Option<PathBuf>,
    /// An access policy (JSON or YAML) enforced before the registry sends one, and always by an
    /// agent without a registry; without it, the built-in `allow-mesh` default.
    pub policy_file: Option<PathBuf>,
    /// Connection limits and timeouts of the mTLS and health listeners.
    pub server_limits: ServerLimits,
    /// How many tasks (the MCP tasks extension) the agent keeps for all its callers together;
    /// each caller may hold 128 of them.
    pub max_tasks: usize,
}

impl AgentConfig {
    /// Defaults, then the `TOOLMESH_*` environment.
    pub fn from_env(name: &str) -> Result<Self> {
        let mut config = AgentConfig {
            name: name.to_owned(),
            registry_url: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            host: "127.0.0.1".to_owned(),
            advertise_host: None,
            port: 0,
            propagate_headers: HeaderAllowList::default(),
            heartbeat_interval: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            tls_policy: VerifyPolicy::default(),
            tls_reload_interval: Duration::from_secs(1),
            health_host: "127.0.0.1".to_owned(),
            health_port: HealthPort::Offset,
            metrics: true,
            tls_source: TlsSource::Files,
            join_token: None,
            join_token_file: None,
            policy_file: None,
            server_limits: ServerLimits::default(),
            max_tasks: crate::mcp::server::DEFAULT_MAX_TASKS,
        };
        for key in all_keys() {
            let var = format!("TOOLMESH_{}", key.to_ascii_uppercase());
            if let Ok(value) = std::env::var(&var) {
                config.set(key, &value).map_err(|e| e.context(format!("environment variable {var}")))?;
            }
        }
        if config.name.trim().is_empty() {
            return Err(Error::new(ErrorKind::InvalidConfig, "an agent needs a non-empty name"));
        }
        Ok(config)
    }

    /// Sets one option by key (see [`all_keys`]). Empty values reset optional settings.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let value = value.trim();
        let path = || (!value.is_empty()).then(|| PathBuf::from(value));
        match key {
            "name" if !value.is_empty() => self.name = value.to_owned(),
            "name" => {}
            "registry_url" => {
                self.registry_url = if value.is_empty() { None } else { Some(registry_endpoints::parse(value)?.join(",")) };
            }
            "tls_cert" => self.tls_cert = path(),
            "tls_key" => self.tls_key = path(),
            "tls_ca" => self.tls_ca = path(),
            "host" => self.host = if value.is_empty() { "127.0.0.1".to_owned() } else { value.to_owned() },
            "advertise_host" => self.advertise_host = (!value.is_empty()).then(|| value.to_owned()),
            "port" => {
                self.port = value.parse().map_err(|_| {
                    Error::new(ErrorKind::InvalidConfig, format!("port '{value}' is not a number from 0 to 65535 (0 picks a free port)"))
                })?
            }
            "propagate_headers" => self.propagate_headers = HeaderAllowList::parse(value),
            "heartbeat_interval_ms" => self.heartbeat_interval = millis(key, value)?,
            "call_timeout_ms" => self.call_timeout = millis(key, value)?,
            "tls_verify" => self.tls_policy.mode = VerifyPolicy::parse_mode(value)?,
            "tls_allowed_ids" => self.tls_policy.allowed = VerifyPolicy::parse_allowed(value)?,
            "tls_reload_interval_ms" => self.tls_reload_interval = millis(key, value)?,
            "health_host" => self.health_host = if value.is_empty() { "127.0.0.1".to_owned() } else { value.to_owned() },
            "health_port" => {
                self.health_port = match value {
                    "" => HealthPort::Offset,
                    "off" => HealthPort::Off,
                    port => HealthPort::Fixed(port.parse().map_err(|_| {
                        Error::new(ErrorKind::InvalidConfig, format!("health_port '{value}' must be a port number, 0 for any free port, or 'off'"))
                    })?),
                }
            }
            "metrics" => {
                self.metrics = match value {
                    "" | "on" => true,
                    "off" => false,
                    other => return Err(Error::new(ErrorKind::InvalidConfig, format!("metrics '{other}' must be 'on' or 'off'"))),
                }
            }
            "tls" => {
                self.tls_source = match value.to_ascii_lowercase().as_str() {
                    "" | "files" => TlsSource::Files,
                    "auto" => TlsSource::Auto,
                    other => {
                        return Err(Error::new(
                            ErrorKind::InvalidConfig,
                            format!("tls '{other}' is not known: use 'files' (TOOLMESH_TLS_CERT/KEY/CA) or 'auto' (certificates from the registry's CA, with TOOLMESH_JOIN_TOKEN)"),
                        ))
                    }
                }
            }
            "join_token" => self.join_token = (!value.is_empty()).then(|| Secret(value.to_owned())),
            "join_token_file" => self.join_token_file = path(),
            "policy_file" => self.policy_file = path(),
            "max_tasks" => {
                self.max_tasks = match value {
                    "" => crate::mcp::server::DEFAULT_MAX_TASKS,
                    value => value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        Error::new(ErrorKind::InvalidConfig, format!("max_tasks '{value}' must be a positive number of tasks"))
                    })?,
                }
            }
            limit if ServerLimits::KEYS.contains(&limit) => self.server_limits.set(limit, value)?,
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("unknown option '{other}'; the options are: {}", all_keys().collect::<Vec<_>>().join(", ")),
                ))
            }
        }
        Ok(())
    }

    /// The TLS files, or an error that says how to provide them.
    pub fn tls_files(&self) -> Result<TlsFiles> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Ok(TlsFiles { cert: cert.clone(), key: key.clone(), ca: ca.clone() }),
            _ => {
                let missing: Vec<&str> = [
                    (self.tls_cert.is_none(), "TOOLMESH_TLS_CERT"),
                    (self.tls_key.is_none(), "TOOLMESH_TLS_KEY"),
                    (self.tls_ca.is_none(), "TOOLMESH_TLS_CA"),
                ]
                .into_iter()
                .filter_map(|(m, n)| m.then_some(n))
                .collect();
                Err(Error::new(
                    ErrorKind::CertificateFile,
                    format!(
                        "agent '{}' has no TLS identity: set {} (or the tls_cert/tls_key/tls_ca options); \
                         `toolmesh certs init --dir certs --agents {}` creates a development set. toolmesh never runs without mTLS",
                        self.name,
                        missing.join(", "),
                        self.name
                    ),
                ))
            }
        }
    }

    /// The host peers dial to reach this agent.
    pub fn advertised_host(&self) -> String {
        match &self.advertise_host {
            Some(h) => h.clone(),
            None if self.host == "0.0.0.0" || self.host == "::" => "127.0.0.1".to_owned(),
            None => self.host.clone(),
        }
    }
}

fn millis(key: &str, value: &str) -> Result<Duration> {
    match value.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(Error::new(ErrorKind::InvalidConfig, format!("{key} '{value}' must be a positive number of milliseconds"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_override_defaults_and_reject_bad_values() {
        let mut c = AgentConfig::from_env("calc").unwrap();
        c.set("port", "9000").unwrap();
        c.set("propagate_headers", "x-tenant, x-audit-*").unwrap();
        c.set("registry_url", "https://127.0.0.1:8443/").unwrap();
        assert_eq!(c.port, 9000);
        assert!(c.propagate_headers.allows("X-Audit-Id"));
        assert_eq!(c.registry_url.as_deref(), Some("https://127.0.0.1:8443"));
        assert_eq!(c.set("registry_url", "http://x").unwrap_err().kind(), ErrorKind::RegistryUrlNotHttps);
        assert_eq!(c.set("port", "http").unwrap_err().kind(), ErrorKind::InvalidConfig);
        c.set("tls_verify", "spiffe").unwrap();
        c.set("tls_allowed_ids", "spiffe://prod.example").unwrap();
        assert_eq!(c.tls_policy.mode, crate::tls::VerifyMode::Spiffe);
        assert_eq!(c.set("tls_verify", "off").unwrap_err().kind(), ErrorKind::InvalidConfig);
        c.set("health_port", "off").unwrap();
        assert_eq!(c.health_port, HealthPort::Off);
        assert!(c.set("health_port", "x").is_err());
        c.set("max_connections", "100").unwrap();
        c.set("header_timeout_ms", "2500").unwrap();
        assert_eq!(c.server_limits.max_connections, 100);
        assert_eq!(c.server_limits.header_timeout, Duration::from_millis(2500));
        assert!(c.set("idle_timeout_ms", "0").is_err());
        assert!(c.set("bogus", "1").unwrap_err().message().contains("unknown option 'bogus'"));
        c.set("tls", "auto").unwrap();
        c.set("join_token", "tmjoin1.secret").unwrap();
        assert_eq!(c.tls_source, TlsSource::Auto);
        assert!(!format!("{c:?}").contains("tmjoin1.secret"), "the token never reaches a log line");
        assert!(c.set("tls", "none").unwrap_err().message().contains("'auto'"));
        let e = c.tls_files().unwrap_err();
        assert!(e.message().contains("TOOLMESH_TLS_CERT"), "{}", e.message());
    }
}
