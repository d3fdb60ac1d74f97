//! The PostgreSQL store's tables and their migrations. `toolmesh_schema` records each applied
//! version; a registry applies the missing ones at start, one replica at a time (under an
//! advisory lock), and refuses a database a newer toolmesh migrated further.
//!
//! Version 1: `toolmesh_entities` (one row per entity), `toolmesh_policy` and
//! `toolmesh_auto_tls` (one row at most each, the `one` column pinning it).
//! Version 2: `toolmesh_agents`, the registrations replicas share (see `pg_agents`).

use super::{AutoTlsState, Durable, StoredEntity};
use tokio_postgres::Transaction;
use toolmesh_core::registry_api::StoredPolicy;
use toolmesh_core::{Error, ErrorKind, Result};

/// Each migration takes the database one version up; the last one's version is the one this
/// registry writes and the newest it reads.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE toolmesh_entities (
        name text PRIMARY KEY,
        ca_cert text NOT NULL,
        added_at text NOT NULL,
        trust_domain text
    );
    CREATE TABLE toolmesh_policy (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        version bigint NOT NULL,
        document jsonb NOT NULL
    );
    CREATE TABLE toolmesh_auto_tls (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        ca_cert text NOT NULL,
        ca_key text NOT NULL,
        join_token text NOT NULL
    );
",
    "
    CREATE TABLE toolmesh_agents (
        agent_id text PRIMARY KEY,
        identity text NOT NULL,
        entity text,
        registration text NOT NULL,
        last_seen timestamptz NOT NULL DEFAULT now()
    );
",
];

pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Advisory lock keys (any two numbers no other user of the database takes): migrations, and
/// changes of the operator-made state.
const MIGRATION_LOCK: i64 = 0x746f_6f6c_6d65_7368;
pub const STATE_LOCK: i64 = 0x746f_6f6c_6d65_7369;

/// Brings the database to [`SCHEMA_VERSION`]; answers the versions applied.
pub async fn migrate(tx: &Transaction<'_>) -> Result<Vec<i32>> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(failed("lock the schema"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS toolmesh_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(failed("create toolmesh_schema"))?;
    let row =
        tx.query_one("SELECT coalesce(max(version), 0) FROM toolmesh_schema", &[]).await.map_err(failed("read the schema version"))?;
    let current: i32 = row.get(0);
    if current > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "the database has toolmesh schema version {current}, migrated by a newer toolmesh; this one reads up to version \
                 {SCHEMA_VERSION}: run the newer toolmesh registry"
            ),
        ));
    }
    let mut applied = Vec::new();
    for (version, sql) in (1..).zip(MIGRATIONS).skip(current as usize) {
        tx.batch_execute(sql).await.map_err(failed(&format!("migrate to schema version {version}")))?;
        tx.execute("INSERT INTO toolmesh_schema (version) VALUES ($1)", &[&version]).await.map_err(failed("record the schema version"))?;
        applied.push(version);
    }
    Ok(applied)
}

/// The operator-made state as stored.
pub async fn read(tx: &Transaction<'_>) -> Result<Durable> {
    let entities = tx
        .query("SELECT name, ca_cert, added_at, trust_domain FROM toolmesh_entities ORDER BY added_at, name", &[])
        .await
        .map_err(failed("read the entities"))?
        .iter()
        .map(|row| StoredEntity { name: row.get(0), ca_cert: row.get(1), added_at: row.get(2), trust_domain: row.get(3) })
        .collect();
    let policy = match tx.query_opt("SELECT version, document::text FROM toolmesh_policy", &[]).await.map_err(failed("read the policy"))? {
        Some(row) => {
            let (version, document): (i64, String) = (row.get(0), row.get(1));
            let policy = serde_json::from_str(&document).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("the policy in toolmesh_policy is not a policy document ({e}); apply a valid one"),
                )
            })?;
            Some(StoredPolicy { version: u64::try_from(version).unwrap_or(0), policy })
        }
        None => None,
    };
    let auto_tls = tx
        .query_opt("SELECT ca_cert, ca_key, join_token FROM toolmesh_auto_tls", &[])
        .await
        .map_err(failed("read the auto-TLS CA"))?
        .map(|row| AutoTlsState { ca_cert: row.get(0), ca_key: row.get(1), join_token: row.get(2) });
    Ok(Durable { entities, policy, auto_tls })
}

/// Writes the parts of `next` that differ from `current`.
pub async fn write(tx: &Transaction<'_>, current: &Durable, next: &Durable) -> Result<()> {
    if next.entities != current.entities {
        tx.execute("DELETE FROM toolmesh_entities", &[]).await.map_err(failed("replace the entities"))?;
        for e in &next.entities {
            tx.execute(
                "INSERT INTO toolmesh_entities (name, ca_cert, added_at, trust_domain) VALUES ($1, $2, $3, $4)",
                &[&e.name, &e.ca_cert, &e.added_at, &e.trust_domain],
            )
            .await
            .map_err(failed("store an entity"))?;
        }
    }
    if next.policy != current.policy {
        tx.execute("DELETE FROM toolmesh_policy", &[]).await.map_err(failed("replace the policy"))?;
        if let Some(stored) = &next.policy {
            let document = serde_json::to_string(&stored.policy).expect("a policy document serializes");
            let version = i64::try_from(stored.version).unwrap_or(i64::MAX);
            tx.execute("INSERT INTO toolmesh_policy (version, document) VALUES ($1, $2::text::jsonb)", &[&version, &document])
                .await
                .map_err(failed("store the policy"))?;
        }
    }
    if next.auto_tls != current.auto_tls {
        tx.execute("DELETE FROM toolmesh_auto_tls", &[]).await.map_err(failed("replace the auto-TLS CA"))?;
        if let Some(a) = &next.auto_tls {
            tx.execute(
                "INSERT INTO toolmesh_auto_tls (ca_cert, ca_key, join_token) VALUES ($1, $2, $3)",
                &[&a.ca_cert, &a.ca_key, &a.join_token],
            )
            .await
            .map_err(failed("store the auto-TLS CA"))?;
        }
    }
    Ok(())
}

/// Names what failed; the database's own words follow. The database being away (no connection,
/// or SQLSTATE class 08 connection, 53 resources, 57 operator intervention: shutting down,
/// starting) is `RegistryUnavailable`, which the API answers 503 (retry later); anything else
/// the database refused is `Internal`.
pub fn failed(what: &str) -> impl FnOnce(tokio_postgres::Error) -> Error + '_ {
    move |e| {
        let away = e.as_db_error().is_none_or(|db| ["08", "53", "57"].iter().any(|class| db.code().code().starts_with(class)));
        let kind = if away { ErrorKind::RegistryUnavailable } else { ErrorKind::Internal };
        Error::new(kind, format!("PostgreSQL: cannot {what}: {}", describe(&e)))
    }
}

/// The server's message when it sent one, else the client's (connection refused, closed).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        // The client's words, then its cause's (`connection refused`).
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}
