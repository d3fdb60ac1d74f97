//! The access policy the registry holds and distributes: the document an admin applied
//! (`PUT /v1/policy`), compiled, with its version (1 for the first, one more for each apply).
//! Kept in the registry's store (see `store`) so it survives restarts.
//!
//! Version 0 means none was applied: the registry then announces no policy version (each agent
//! enforces its own policy file or the built-in default) and decides with the built-in
//! allow-mesh default itself.

use crate::store::Store;
use std::sync::{Arc, Mutex, RwLock};
use toolmesh_core::policy::{Policy, PolicyDocument};
use toolmesh_core::registry_api::StoredPolicy;
use toolmesh_core::{Error, ErrorKind, Result};

/// Why an apply was refused.
#[derive(Debug)]
pub enum PolicyError {
    /// The document does not compile; the message names the rule and field.
    Invalid(String),
    /// It could not be stored (and so is not in force).
    Storage(Error),
}

pub struct PolicyStore {
    store: Arc<dyn Store>,
    /// The applied policy; `None` while none was.
    current: RwLock<Option<Arc<Policy>>>,
    /// One apply at a time, so that versions are consecutive and the file matches what is in force.
    changing: Mutex<()>,
}

impl PolicyStore {
    /// The policy loaded from `store` (`None` when none was applied), where applies are stored;
    /// a stored policy that does not compile refuses the start, naming the store and the fix.
    pub fn load(stored: Option<StoredPolicy>, store: Arc<dyn Store>) -> Result<PolicyStore> {
        let current = stored.map(|stored| compile_stored(stored, &store.describe()).map(Arc::new)).transpose()?;
        if let Some(policy) = &current {
            tracing::info!(version = policy.version(), rules = policy.document().rules.len(), "access policy loaded from the store");
        }
        Ok(PolicyStore { store, current: RwLock::new(current), changing: Mutex::new(()) })
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
        let mut outcome = None;
        // The next version after the stored one (with replicas sharing the store, another may
        // have applied one since this one's).
        self.store
            .change(&mut |state| {
                let version = state.policy.as_ref().map_or(0, |p| p.version) + 1;
                let compiled = Policy::compile(document.clone(), version).map_err(|e| PolicyError::Invalid(e.message().to_owned()));
                if let Ok(policy) = &compiled {
                    state.policy = Some(StoredPolicy { version, policy: policy.document().clone() });
                }
                outcome = Some(compiled);
            })
            .map_err(PolicyError::Storage)?;
        let policy = Arc::new(outcome.expect("the store ran the edit")?);
        let stored = StoredPolicy { version: policy.version(), policy: policy.document().clone() };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(policy.clone());
        then(policy);
        Ok(stored)
    }

    /// Puts `stored` in force when it is newer than the policy in force (another replica sharing
    /// the store applied it); `then` runs with it, as after an apply. Answers whether it was newer.
    pub fn adopt(&self, stored: Option<StoredPolicy>, then: impl FnOnce(Arc<Policy>)) -> Result<bool> {
        let _one_apply_at_a_time = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let Some(stored) = stored.filter(|s| s.version > self.current().map_or(0, |p| p.version())) else {
            return Ok(false);
        };
        let policy = Arc::new(compile_stored(stored, &self.store.describe())?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(policy.clone());
        then(policy);
        Ok(true)
    }
}

fn compile_stored(stored: StoredPolicy, store: &str) -> Result<Policy> {
    let corrupt = |what: String| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "the policy stored in {store} is not valid ({what}); restore the store from a backup, or apply a valid policy                  to a registry on it with `toolmesh policy apply FILE`"
            ),
        )
    };
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
        let open = || -> Arc<dyn Store> { crate::store::Embedded::open(dir.path()).expect("open") };
        let store = open();
        let policies = PolicyStore::load(None, store.clone()).expect("load");
        assert_eq!(policies.announced_version(), None);
        let mut seen = Vec::new();
        policies.apply(document("default: deny\n"), |p| seen.push(p.version())).expect("apply");
        policies.apply(document("rules:\n  - name: all\n"), |p| seen.push(p.version())).expect("apply");
        assert_eq!(seen, [1, 2]);
        let invalid = policies.apply(document("rules:\n  - name: all\n    phases: []\n"), |_| panic!("not applied"));
        assert!(matches!(&invalid, Err(PolicyError::Invalid(m)) if m.contains("rules[0] ('all')")), "{invalid:?}");
        let control = policies.apply(document("rules:\n  - name: ok\n    target: {tools: [\"a\\u001b\"]}\n"), |_| panic!("not applied"));
        assert!(matches!(&control, Err(PolicyError::Invalid(m)) if m.contains("policy.rules[0].target.tools[0]")), "{control:?}");
        drop((policies, store));
        let store = open();
        let again = PolicyStore::load(store.load().expect("load").policy, store).expect("reload");
        assert_eq!(again.stored().map(|s| (s.version, s.policy.rules.len())), Some((2, 1)));

        let zero = StoredPolicy { version: 0, policy: document("default: deny\n") };
        let refused = PolicyStore::load(Some(zero), open()).err().expect("version 0 refuses the start");
        assert!(refused.message().contains("registry-state.json") && refused.message().contains("toolmesh policy apply"), "{refused}");
    }
}
