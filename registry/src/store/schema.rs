//! The embedded store's format: one JSON file, `registry-state.json`, whose `schema_version`
//! says how to read it, and the migrations that bring older state up to [`SCHEMA_VERSION`].
//!
//! Version 1 is the layout before the store: one file per concern in the state directory
//! (`entities.json`, `policy.json`, and with `--tls-auto` `ca.pem`, `ca.key`, `join-token`).
//! A directory without the state file is read as version 1; after the state file is written
//! the version 1 files it replaced are removed (`ca.pem` and `join-token` stay: they are the
//! CA and token handed to operators and local agents, written from the store at each start).

use super::{AutoTlsState, Durable, StoredEntity};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toolmesh_core::auto_tls::{JoinToken, JOIN_TOKEN_FILE};
use toolmesh_core::registry_api::StoredPolicy;
use toolmesh_core::{Error, ErrorKind, Result};

/// The version this registry writes, and the newest it reads.
pub const SCHEMA_VERSION: u32 = 2;
pub const STATE_FILE: &str = "registry-state.json";

/// Version 1's files, which the state file replaces.
const V1_ENTITIES: &str = "entities.json";
const V1_POLICY: &str = "policy.json";
const V1_CA_KEY: &str = "ca.key";
const V1_CA_CERT: &str = "ca.pem";

#[derive(Serialize, Deserialize)]
struct StateFile {
    schema_version: u32,
    #[serde(flatten)]
    state: Durable,
}

/// The state file's bytes for `state`, at the current version.
pub fn encode(state: &Durable) -> Vec<u8> {
    let file = StateFile { schema_version: SCHEMA_VERSION, state: state.clone() };
    serde_json::to_vec_pretty(&file).expect("the registry state serializes")
}

/// What is stored in `dir`: the state file, else version 1's files. The second value names
/// the version 1 files read, which the caller removes once the state file holds them.
pub fn read(dir: &Path) -> Result<(Durable, Vec<PathBuf>)> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok((decode(&path, &bytes)?, Vec::new())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => read_v1(dir),
        Err(e) => Err(Error::new(ErrorKind::InvalidConfig, format!("cannot read {}: {e}", path.display()))),
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Durable> {
    let corrupt = |what: String| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "{} is not a valid registry state ({what}); restore it from a backup (it holds the entities, the applied policy \
                 and the --tls-auto CA), or move it away to start with none",
                path.display()
            ),
        )
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let version = value.get("schema_version").and_then(serde_json::Value::as_u64).ok_or_else(|| corrupt("no schema_version".into()))?;
    if version > u64::from(SCHEMA_VERSION) {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "{} has schema version {version}, written by a newer toolmesh; this one reads up to version {SCHEMA_VERSION}: \
                 run the newer toolmesh registry",
                path.display()
            ),
        ));
    }
    if version < 2 {
        return Err(corrupt(format!("schema version {version} is never written to a state file; version 1 is the separate files")));
    }
    // Versions after 2 add their upgrade steps here, each taking the value one version up.
    let file: StateFile = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    Ok(file.state)
}

/// Version 1: one file per concern.
fn read_v1(dir: &Path) -> Result<(Durable, Vec<PathBuf>)> {
    #[derive(Deserialize)]
    struct Entities {
        entities: Vec<StoredEntity>,
    }
    let mut read_files = Vec::new();
    let mut state = Durable::default();
    if let Some(text) = read_optional(&dir.join(V1_ENTITIES))? {
        let entities: Entities = serde_json::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "{} is not a valid entities file ({e}); restore it or remove it to start without entities",
                    dir.join(V1_ENTITIES).display()
                ),
            )
        })?;
        state.entities = entities.entities;
        read_files.push(dir.join(V1_ENTITIES));
    }
    if let Some(text) = read_optional(&dir.join(V1_POLICY))? {
        let policy: StoredPolicy = serde_json::from_str(&text).map_err(|e| {
            Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "{} is not a valid stored policy ({e}); restore it from a backup, or remove it to start with no policy \
                     (agents then enforce their own) and apply one again with `toolmesh policy apply FILE`",
                    dir.join(V1_POLICY).display()
                ),
            )
        })?;
        state.policy = Some(policy);
        read_files.push(dir.join(V1_POLICY));
    }
    let (ca_cert, ca_key) = (dir.join(V1_CA_CERT), dir.join(V1_CA_KEY));
    if ca_key.exists() {
        // Loading checks that the key is the certificate's, naming the file that is not right.
        let ca = toolmesh_ca::CertificateAuthority::load(&ca_cert, &ca_key)
            .map_err(|e| e.context(format!("the registry's CA in {}", dir.display())))?;
        let token = JoinToken::read(&dir.join(JOIN_TOKEN_FILE))
            .ok()
            .filter(|token| token.ca_fingerprint() == ca.fingerprint())
            .unwrap_or_else(|| JoinToken::generate(&ca.fingerprint()));
        state.auto_tls =
            Some(AutoTlsState { ca_cert: ca.cert_pem().to_owned(), ca_key: ca.key_pem().to_owned(), join_token: token.reveal() });
        read_files.push(ca_key);
    }
    Ok((state, read_files))
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::new(ErrorKind::InvalidConfig, format!("cannot read {}: {e}", path.display()))),
    }
}
