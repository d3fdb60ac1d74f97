//! How much of a listener one connection, and one peer address, may hold, and for how long: so
//! that peers that trickle bytes, sit idle or never finish a handshake cannot exhaust the
//! process's file descriptors and starve the honest callers. docs/hardening.md lists them.

use crate::error::{Error, ErrorKind, Result};
use std::time::Duration;

/// The connection limits of one listener (an agent's mTLS port, the registry's, a health port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections open at once (TLS handshakes included); past it new ones are closed at accept.
    pub max_connections: usize,
    /// Connections open at once from one remote IP address: its fair share of the listener.
    pub max_connections_per_peer: usize,
    /// From accept to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// From the first byte of an HTTP/1.1 request to the end of its headers.
    pub header_timeout: Duration,
    /// To read a whole request body; past it the request is answered `408` and the connection closes.
    pub body_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/1.1 keep-alive, and
    /// HTTP/2 with no open stream; HTTP/2 peers are also pinged at this interval).
    pub idle_timeout: Duration,
}

/// Connections of one listener when the file-descriptor limit leaves room for them.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// One remote address may hold at most this many connections (and at most `max_connections`).
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 256;

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: default_max_connections(),
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ServerLimits {
    /// The option keys of [`ServerLimits::set`]: agent options (`TOOLMESH_<KEY>`) and, with dashes,
    /// the registry's flags.
    pub const KEYS: &'static [&'static str] =
        &["max_connections", "max_connections_per_peer", "handshake_timeout_ms", "header_timeout_ms", "body_timeout_ms", "idle_timeout_ms"];

    /// Sets one limit by key; an empty value restores its default.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let value = value.trim();
        let defaults = ServerLimits::default();
        match key {
            "max_connections" => self.max_connections = count(key, value, defaults.max_connections)?,
            "max_connections_per_peer" => self.max_connections_per_peer = count(key, value, defaults.max_connections_per_peer)?,
            "handshake_timeout_ms" => self.handshake_timeout = millis(key, value, defaults.handshake_timeout)?,
            "header_timeout_ms" => self.header_timeout = millis(key, value, defaults.header_timeout)?,
            "body_timeout_ms" => self.body_timeout = millis(key, value, defaults.body_timeout)?,
            "idle_timeout_ms" => self.idle_timeout = millis(key, value, defaults.idle_timeout)?,
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!("unknown connection limit '{other}'; the limits are: {}", Self::KEYS.join(", ")),
                ))
            }
        }
        Ok(())
    }

    /// The share of one remote address, never more than the whole listener.
    pub(crate) fn per_peer(&self) -> usize {
        self.max_connections_per_peer.min(self.max_connections)
    }
}

fn count(key: &str, value: &str, default: usize) -> Result<usize> {
    if value.is_empty() {
        return Ok(default);
    }
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::new(ErrorKind::InvalidConfig, format!("{key} '{value}' must be a positive number of connections"))),
    }
}

fn millis(key: &str, value: &str, default: Duration) -> Result<Duration> {
    if value.is_empty() {
        return Ok(default);
    }
    match value.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(Error::new(ErrorKind::InvalidConfig, format!("{key} '{value}' must be a positive number of milliseconds"))),
    }
}

/// [`DEFAULT_MAX_CONNECTIONS`], or half the process's open-file limit when that is lower: the
/// other half stays for outbound connections, the health port, certificate files and logs.
fn default_max_connections() -> usize {
    match open_file_limit() {
        Some(limit) => DEFAULT_MAX_CONNECTIONS.min(limit / 2).max(1),
        None => DEFAULT_MAX_CONNECTIONS,
    }
}

/// The soft `RLIMIT_NOFILE`, read from `/proc/self/limits` (Linux; `None` elsewhere or unlimited).
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_reset_and_refuse_nonsense() {
        let mut limits = ServerLimits::default();
        assert!(limits.max_connections >= 1 && limits.max_connections <= DEFAULT_MAX_CONNECTIONS);
        limits.set("max_connections", "10").unwrap();
        limits.set("idle_timeout_ms", "1500").unwrap();
        assert_eq!((limits.max_connections, limits.idle_timeout), (10, Duration::from_millis(1500)));
        assert_eq!(limits.per_peer(), 10, "a peer's share never exceeds the listener");
        limits.set("idle_timeout_ms", "").unwrap();
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert!(limits.set("max_connections", "0").unwrap_err().message().contains("positive"));
        assert!(limits.set("body_timeout_ms", "soon").is_err());
        assert!(limits.set("bogus", "1").unwrap_err().message().contains("max_connections_per_peer"));
    }
}
