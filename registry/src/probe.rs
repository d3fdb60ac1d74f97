//! Whether an agent's endpoint takes connections: the registry's own check before it lists an
//! agent `unreachable` (see [`crate::state`]). A bare TCP connection, closed at once without a
//! byte: the agent's server drops it silently, and a refusal (or no answer in time) is proof
//! enough that nothing serves there any more.

use crate::state::{Probe, Registry};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Probes each agent in the background and marks those that do not take a connection.
pub fn spawn(registry: &Arc<Registry>, probes: Vec<Probe>) {
    spawn_with_rechecks(registry, probes, &[]);
}

/// How long after a first probe that connected an abandoned long poll's agent is probed again.
pub const DYING_RECHECK: Duration = Duration::from_millis(200);

/// As [`spawn`], probing again after each of `rechecks` while the agent still takes connections:
/// a dying process's sockets close one by one, and a probe sent when its first one closed can
/// still reach its listener.
pub fn spawn_with_rechecks(registry: &Arc<Registry>, probes: Vec<Probe>, rechecks: &'static [Duration]) {
    for probe in probes {
        let registry = registry.clone();
        tokio::spawn(async move {
            let waits = std::iter::once(Duration::ZERO).chain(rechecks.iter().copied());
            for wait in waits {
                tokio::time::sleep(wait).await;
                if let Err(why) = connects(&probe.endpoint, registry.probe_timeout()).await {
                    registry.mark_unreachable(&probe, &why);
                    return;
                }
            }
        });
    }
}

/// `Err(why)` when `endpoint` (`https://host:port/...`) does not take a TCP connection within
/// `timeout`.
async fn connects(endpoint: &str, timeout: Duration) -> Result<(), String> {
    let uri: ::http::Uri = endpoint.parse().map_err(|e| format!("its endpoint {endpoint} is not a URL ({e})"))?;
    let host = uri.host().ok_or_else(|| format!("its endpoint {endpoint} has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(_connected)) => Ok(()),
        Ok(Err(e)) => Err(format!("the registry cannot connect to {endpoint}: {e}")),
        Err(_) => Err(format!("the registry cannot connect to {endpoint}: no answer within {} ms", timeout.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listening_port_connects_and_a_closed_one_does_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(connects(&format!("https://127.0.0.1:{port}/mcp"), Duration::from_secs(1)).await, Ok(()));
        drop(listener);
        let refused = connects(&format!("https://127.0.0.1:{port}/mcp"), Duration::from_secs(1)).await.unwrap_err();
        assert!(refused.starts_with(&format!("the registry cannot connect to https://127.0.0.1:{port}/mcp: ")), "{refused}");
    }
}
