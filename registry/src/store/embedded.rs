//! The default store: the registry's durable state in one file of its state directory
//! (`registry-state.json`, 0600), replaced whole at every change by writing a temporary file,
//! syncing it, renaming it over the old one and syncing the directory, so that a crash at any
//! moment leaves either the old state or the new one, never a mix. Changes are rare (an
//! operator's), so rewriting the file whole costs nothing worth a database.
//!
//! One registry writes the directory: the auto-TLS issuer opens the store only to prepare the
//! CA before the registry starts, and the registry opens it again (reading what was prepared).

use super::schema::{self, STATE_FILE};
use super::{Durable, Store};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use toolmesh_core::{Error, ErrorKind, Result};

pub struct Embedded {
    dir: PathBuf,
    /// What the file holds; changed only after the file was written.
    state: Mutex<Durable>,
}

impl Embedded {
    /// The store in `dir` (created 0700 when missing): reads the state file, or an older layout,
    /// which it migrates to the state file at once.
    pub fn open(dir: &Path) -> Result<Arc<Embedded>> {
        crate::mesh_dir::make_private(dir)?;
        let (state, replaced) = schema::read(dir)?;
        let store = Arc::new(Embedded { dir: dir.to_owned(), state: Mutex::new(state) });
        if !replaced.is_empty() {
            store.write(&store.state.lock().unwrap_or_else(|p| p.into_inner()))?;
            for file in &replaced {
                std::fs::remove_file(file).map_err(|e| {
                    Error::new(ErrorKind::InvalidConfig, format!("cannot remove {} after migrating it: {e}", file.display()))
                })?;
            }
            tracing::info!(
                file = %store.path().display(),
                schema_version = schema::SCHEMA_VERSION,
                migrated = ?replaced.iter().filter_map(|f| f.file_name()).collect::<Vec<_>>(),
                "migrated the registry's state to one file"
            );
        }
        Ok(store)
    }

    fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn write(&self, state: &Durable) -> Result<()> {
        let path = self.path();
        let storage =
            |e: std::io::Error| Error::new(ErrorKind::Internal, format!("cannot store the registry's state in {}: {e}", path.display()));
        toolmesh_core::fs_private::create_private_dir(&self.dir).map_err(storage)?;
        toolmesh_ca::write_file_atomic(&path, &schema::encode(state), 0o600)?;
        // The rename is durable once the directory is.
        #[cfg(unix)]
        std::fs::File::open(&self.dir).and_then(|dir| dir.sync_all()).map_err(storage)?;
        Ok(())
    }
}

impl Store for Embedded {
    fn describe(&self) -> String {
        self.path().display().to_string()
    }

    fn load(&self) -> Result<Durable> {
        Ok(self.state.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Writes the state `edit` makes, then holds it; a failed write changes nothing.
    fn change(&self, edit: &mut dyn FnMut(&mut Durable)) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = state.clone();
        edit(&mut next);
        if next == *state {
            return Ok(());
        }
        self.write(&next)?;
        *state = next;
        Ok(())
    }
}
