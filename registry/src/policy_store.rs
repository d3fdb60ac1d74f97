//! The access policy the registry holds and distributes: the document an admin applied
//! (`PUT /v1/policy`), compiled, with its version (1 for the first, one more for each apply).
//! Kept in `<state-dir>/policy.json` (0600, written atomically) so it survives restarts.
//!
//! Version 0 means none was applied: the registry then announces no policy version (each agent
//! enforces its own policy file or the built-in default) and decides with the built-in
//! allow-mesh default itself.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use toolmesh_core::policy::{Policy, PolicyDocument};
use toolmesh_core::registry_api::StoredPolicy;
use toolmesh_core::{Error, ErrorKind, Result};

pub const POLICY_FILE: &str = "policy.json";

/// Why an apply was refused.
#[derive(Debug)]
pub enum PolicyError {
    /// The document does not compile; the message names the rule and field.
    Invalid(String),
    /// It could not be stored (and so is not in force).
    Storage(Error),
}

pub struct PolicyStore {
    file: Option<PathBuf>,
    /// The applied policy; `None` while none was.
    current: RwLock<Option<Arc<Policy>>>,
    /// One apply at a time, so that versions are consecutive and the file matches what is in force.
    changing: Mutex<()>,
}

impl PolicyStore {
    /// The policy stored in `state_dir`, if any; a file that cannot be read as one refuses the
    /// start, naming the file and the fix.
    pub fn load(state_dir: Option<PathBuf>) -> Result<PolicyStore> {
        let file = state_dir.map(|dir| dir.join(POLICY_FILE));
        let current = match &file {
            Some(path) if path.exists() => Some(Arc::new(read(path)?)),
            _ => None,
        };
        if let Some(policy) = &current {
            tracing::info!(
                version = policy.version(),
                rules = policy.document().rules.len(),
                "access policy loaded from the state directory"
            );
        }
        Ok(PolicyStore { file, current: RwLock::new(current), changing: Mutex::new(()) })
    }

    /// The applied policy, `None` while none was.
    pub fn current(&self) -> Option<Arc<Policy>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The version register and heartbeat answers announce: `None` while none was applied.
    pub fn announced_version(&self) -> Option<u64> {
        self.current().map(|p| p.version())
    }

    pub fn stored(&self) -> Option<StoredPolicy> {
        self.current().map(|p| StoredPolicy { version: p.version(), policy: p.document().clone() })
    }

    /// Checks `document`, gives it the next version, stores it, and puts it in force; `then`
    /// runs with the new policy before the next apply may start (it updates the topologies).
    pub fn apply(&self, document: PolicyDocument, then: impl FnOnce(Arc<Policy>)) -> std::result::Result<StoredPolicy, PolicyError> {
        check_text(&serde_json::to_value(&document).unwrap_or_default(), "policy").map_err(PolicyError::Invalid)?;
        let _one_apply_at_a_time = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let version = self.current().map_or(0, |p| p.version()) + 1;
        let policy = Arc::new(Policy::compile(document, version).map_err(|e| PolicyError::Invalid(e.message().to_owned()))?);
        let stored = StoredPolicy { version, policy: policy.document().clone() };
        if let Some(file) = &self.file {
            if let Some(dir) = file.parent() {
                toolmesh_core::fs_private::create_private_dir(dir)
                    .map_err(|e| PolicyError::Storage(Error::new(ErrorKind::Internal, format!("cannot create {}: {e}", dir.display()))))?;
            }
            let json =
                serde_json::to_vec_pretty(&stored).map_err(|e| PolicyError::Storage(Error::new(ErrorKind::Internal, e.to_string())))?;
            toolmesh_ca::write_file_atomic(file, &json, 0o600).map_err(PolicyError::Storage)?;
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(policy.clone());
        then(policy);
        Ok(stored)
    }
}

fn read(path: &std::path::Path) -> Result<Policy> {
    let corrupt = |what: String| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "{} is not a valid stored policy ({what}); restore it from a backup, or remove it to start with no policy \
                 (agents then enforce their own) and apply one again with `toolmesh policy apply FILE`",
                path.display()
            ),
        )
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("cannot read {}: {e}", path.display())))?;
    let stored: StoredPolicy = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if stored.version == 0 {
        return Err(corrupt("its version is 0; applied policies start at 1".to_owned()));
    }
    Policy::compile(stored.policy, stored.version).map_err(|e| corrupt(e.message().to_owned()))
}

/// Refuses control characters in every string of the document, as every request body of the
/// registry: what it stores is printed and logged as it is. Names the member by its path.
fn check_text(value: &serde_json::Value, path: &str) -> std::result::Result<(), String> {
    match value {
        serde_json::Value::String(s) => match s.chars().enumerate().find(|(_, c)| c.is_control()) {
            Some((at, c)) => Err(format!(
                "{path} has the control character U+{:04X} at character {at}; control characters (U+0000-U+001F, U+007F-U+009F) are not allowed",
                c as u32
            )),
            None => Ok(()),
        },
        serde_json::Value::Array(items) => items.iter().enumerate().try_for_each(|(i, v)| check_text(v, &format!("{path}[{i}]"))),
        serde_json::Value::Object(members) => members.iter().try_for_each(|(k, v)| check_text(v, &format!("{path}.{k}"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(yaml: &str) -> PolicyDocument {
        toolmesh_core::policy::parse_document(yaml).expect("document")
    }

    #[test]
    fn versions_follow_applies_and_survive_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PolicyStore::load(Some(dir.path().to_owned())).expect("load");
        assert_eq!(store.announced_version(), None);
        let mut seen = Vec::new();
        store.apply(document("default: deny\n"), |p| seen.push(p.version())).expect("apply");
        store.apply(document("rules:\n  - name: all\n"), |p| seen.push(p.version())).expect("apply");
        assert_eq!(seen, [1, 2]);
        let invalid = store.apply(document("rules:\n  - name: all\n    phases: []\n"), |_| panic!("not applied"));
        assert!(matches!(&invalid, Err(PolicyError::Invalid(m)) if m.contains("rules[0] ('all')")), "{invalid:?}");
        let control = store.apply(document("rules:\n  - name: ok\n    target: {tools: [\"a\\u001b\"]}\n"), |_| panic!("not applied"));
        assert!(matches!(&control, Err(PolicyError::Invalid(m)) if m.contains("policy.rules[0].target.tools[0]")), "{control:?}");
        let again = PolicyStore::load(Some(dir.path().to_owned())).expect("reload");
        assert_eq!(again.stored().map(|s| (s.version, s.policy.rules.len())), Some((2, 1)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(POLICY_FILE)).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join(POLICY_FILE), "{not json").expect("corrupt");
        let refused = PolicyStore::load(Some(dir.path().to_owned())).err().expect("a corrupt file refuses the start");
        assert!(refused.message().contains("policy.json") && refused.message().contains("toolmesh policy apply"), "{refused}");
    }
}
