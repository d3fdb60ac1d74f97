//! A registry's state directory belongs to one mesh. Its trusted entities, and with
//! `--tls-auto` its CA and join token, are that mesh's: a registry of another mesh (another CA)
//! must never take them over. So:
//!
//! - the directory records the SHA-256 fingerprints of the mesh CA it was written for in
//!   [`MESH_CA_FILE`], and a registry refuses to start on a directory recorded for another CA;
//!   a directory without the file (written before it existed) is adopted: the file is written;
//! - the default directory of a registry with certificate files is keyed by its CA
//!   ([`default_state_dir_for`]), so two meshes on one account never share one;
//! - the directory is private: created 0700 whatever the umask, and an existing one with
//!   permissions for its group or others is tightened to 0700 (with a warning), or refused when
//!   that is not possible (the directory belongs to another user).

use rustls::pki_types::CertificateDer;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use toolmesh_ca::{fingerprint, write_file_atomic};
use toolmesh_core::{Error, ErrorKind, Result};

/// The file in a state directory naming the mesh CA(s) it belongs to, one SHA-256 (of the DER,
/// hex) per line.
pub const MESH_CA_FILE: &str = "mesh-ca.sha256";

/// How many hex digits of the mesh CA's fingerprint name its default state directory.
const KEY_DIGITS: usize = 16;

/// The default state directory of a registry whose mesh CA is `mesh_ca`:
/// `<base>/meshes/<first 16 hex digits of the CA's SHA-256>`, so that each mesh has its own.
pub fn default_state_dir_for(base: &Path, mesh_ca: &CertificateDer<'_>) -> PathBuf {
    base.join("meshes").join(&fingerprint(mesh_ca)[..KEY_DIGITS])
}

/// The mesh CA fingerprints recorded in `dir` (empty when it records none).
pub fn recorded(dir: &Path) -> Result<BTreeSet<String>> {
    let file = dir.join(MESH_CA_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(Error::new(ErrorKind::InvalidConfig, format!("cannot read {}: {e}", file.display()))),
    };
    let mut prints = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if line.len() != 64 || !line.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "{} is damaged ('{line}' is not a SHA-256 fingerprint); restore it, or remove it to let the registry adopt the \
                     directory for its mesh CA",
                    file.display()
                ),
            ));
        }
        prints.insert(line.to_ascii_lowercase());
    }
    Ok(prints)
}

/// Makes `dir` private and claims it for the mesh whose CA bundle is `mesh_cas`: refuses a
/// directory recorded for another mesh CA, adopts one that records none, and records the
/// current bundle when it shares a CA with the recorded one (a rotation that kept the old CA
/// alongside the new one).
pub fn claim(dir: &Path, mesh_cas: &[CertificateDer<'_>]) -> Result<()> {
    make_private(dir)?;
    let current: BTreeSet<String> = mesh_cas.iter().map(|ca| fingerprint(ca)).collect();
    let recorded = recorded(dir)?;
    if recorded.is_empty() {
        let state = [crate::store::STATE_FILE, "entities.json", "ca.pem", "join-token"].iter().any(|f| dir.join(f).exists());
        if state {
            tracing::info!(dir = %dir.display(), "adopting a state directory that names no mesh CA: it now records this mesh's ({MESH_CA_FILE})");
        }
    } else if recorded.is_disjoint(&current) {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "the state directory {dir} belongs to another mesh: it was written for the mesh CA {theirs}, but this registry's mesh \
                 CA is {ours} (SHA-256 fingerprints); its entities and join token are not this mesh's. Give this registry its own \
                 state directory (--state-dir DIR, or no --state-dir: the default is keyed by the mesh CA), or, if this mesh's CA \
                 was replaced and the directory is really its, remove {file} to adopt it",
                dir = dir.display(),
                theirs = recorded.iter().cloned().collect::<Vec<_>>().join(", "),
                ours = current.iter().cloned().collect::<Vec<_>>().join(", "),
                file = dir.join(MESH_CA_FILE).display(),
            ),
        ));
    } else if recorded == current {
        return Ok(());
    }
    record(dir, &current)
}

/// Records `mesh_cas` as the mesh CA(s) of `dir` (after the CA file was rotated at run time).
pub fn record_cas(dir: &Path, mesh_cas: &[CertificateDer<'_>]) -> Result<()> {
    record(dir, &mesh_cas.iter().map(|ca| fingerprint(ca)).collect())
}

fn record(dir: &Path, prints: &BTreeSet<String>) -> Result<()> {
    let mut text = String::from(
        "# The mesh CA(s) this registry state directory belongs to (SHA-256 of the DER). A registry with another mesh CA\n\
         # refuses to start on this directory. See docs/hardening.md.\n",
    );
    for print in prints {
        text.push_str(print);
        text.push('\n');
    }
    write_file_atomic(&dir.join(MESH_CA_FILE), text.as_bytes(), 0o600)
}

/// Creates `dir` 0700 (whatever the umask), or tightens an existing one to 0700.
pub fn make_private(dir: &Path) -> Result<()> {
    match toolmesh_core::fs_private::tighten_private_dir(dir) {
        Ok(None) => Ok(()),
        Ok(Some(mode)) => {
            tracing::warn!(dir = %dir.display(), was = format!("{mode:o}"), "the registry's state directory was open to its group or others: made it 0700");
            Ok(())
        }
        Err(e) => Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "cannot keep the registry's state directory {} private (0700): {e}; choose a directory of your own with --state-dir",
                dir.display()
            ),
        )),
    }
}
