//! TLS session resumption that never outlives what was verified. A resumed session skips
//! certificate verification on both sides, so a client forgets its sessions whenever our
//! certificate or the trust anchors change (a renewed certificate is presented on the next
//! connection, a revoked peer is not resumed), and a server verifies the peer of a resumed
//! session again before serving it (see `crate::server`).

use super::Identity;
use crate::per_generation::PerGeneration;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;
use std::sync::Arc;

/// As many sessions as rustls keeps by default.
const SESSIONS: usize = 256;

/// The client's session cache, emptied when what the sessions were established with changes.
pub(super) struct ClientSessions {
    identity: Arc<Identity>,
    /// By the certificate and trust generations the sessions were established under.
    sessions: PerGeneration<(u64, u64), ClientSessionMemoryCache>,
}

impl ClientSessions {
    pub(super) fn new(identity: Arc<Identity>) -> ClientSessions {
        let sessions = PerGeneration::new(generations(&identity), ClientSessionMemoryCache::new(SESSIONS));
        ClientSessions { identity, sessions }
    }

    fn cache(&self) -> Arc<ClientSessionMemoryCache> {
        self.sessions.get(generations(&self.identity), || ClientSessionMemoryCache::new(SESSIONS))
    }
}

fn generations(identity: &Identity) -> (u64, u64) {
    (identity.certificate_generation(), identity.trust_generation())
}

impl std::fmt::Debug for ClientSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSessions")
    }
}

impl ClientSessionStore for ClientSessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.cache().set_kx_hint(server_name, group)
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.cache().kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: rustls::client::Tls12ClientSessionValue) {
        self.cache().set_tls12_session(server_name, value)
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.cache().tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.cache().remove_tls12_session(server_name)
    }

    fn insert_tls13_ticket(&self, server_name: ServerName<'static>, value: rustls::client::Tls13ClientSessionValue) {
        self.cache().insert_tls13_ticket(server_name, value)
    }

    fn take_tls13_ticket(&self, server_name: &ServerName<'static>) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.cache().take_tls13_ticket(server_name)
    }
}
