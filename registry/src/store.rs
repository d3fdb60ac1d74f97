//! What must survive a registry restart: everything an operator made. The entities (revoking
//! one removes it, so the set is the record of revocations too), the applied access policy,
//! and with `--tls-auto` the registry's CA and join token. Registrations are not kept by a
//! single registry: agents register again when it comes back (answers say `warming_up`
//! meanwhile); replicas on PostgreSQL share them (`pg_agents`).
//!
//! [`Store`] is how the registry reads and changes that state, one backend per place it is kept:
//! `embedded` in one file of the state directory (the default: no other service), `postgres` in
//! a PostgreSQL database shared by registry replicas (`--store postgres://...`), `memory` in
//! the process only (no state directory). `durable` holds the types, `schema` the embedded
//! format, its version and the migrations from older ones, `pg_schema` the PostgreSQL tables,
//! `pg_agents` the registrations replicas on PostgreSQL share, `pg_connect` and `pg_tls` how a
//! replica reaches PostgreSQL (the URL, TLS).
//!
//! Saves block until durable (an fsync, a database round trip): callers run them off the
//! async workers, with `tokio::task::spawn_blocking`.

mod durable;
mod embedded;
mod memory;
mod pg_agents;
mod pg_connect;
mod pg_schema;
mod pg_tls;
mod postgres;
mod schema;

pub use durable::{AutoTlsState, Durable, StoredEntity};
pub use embedded::Embedded;
pub use memory::Memory;
pub use pg_agents::SharedAgents;
pub use postgres::{Postgres, DEFAULT_START_WAIT};
pub use schema::{SCHEMA_VERSION, STATE_FILE};

use toolmesh_core::Result;

/// Where the registry keeps what must survive a restart. Each save replaces one part of the
/// state whole and returns once it is durable: a change the registry answered is never lost.
/// A save that fails leaves the stored state as it was (the caller then keeps the change out
/// of force too).
pub trait Store: Send + Sync {
    /// Where the state is kept, for logs and messages (`/var/lib/toolmesh/registry-state.json`).
    fn describe(&self) -> String;
    /// The state as stored when the registry starts.
    fn load(&self) -> Result<Durable>;
    /// Stores the state `edit` makes of the current one (as stored: with replicas sharing the
    /// store, what another replica changed included); a failed store changes nothing, and an
    /// edit that changes nothing stores nothing.
    fn change(&self, edit: &mut dyn FnMut(&mut Durable)) -> Result<()>;

    /// Counts changes made by others sharing the store (other replicas), for a store that can
    /// be shared: on each, the registry loads the state again. `None` for a store only this
    /// process writes.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Where replicas sharing this store share their registrations; `None` for a store only
    /// this process uses.
    fn shared_agents(&self) -> Option<SharedAgents> {
        None
    }
}
