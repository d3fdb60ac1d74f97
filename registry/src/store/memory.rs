//! The store of a registry without a state directory: its state lives as long as the process.

use super::{AutoTlsState, Durable, Store, StoredEntity};
use std::sync::Mutex;
use toolmesh_core::registry_api::StoredPolicy;
use toolmesh_core::Result;

#[derive(Default)]
pub struct Memory {
    state: Mutex<Durable>,
}

impl Memory {
    fn change(&self, change: impl FnOnce(&mut Durable)) -> Result<()> {
        change(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(())
    }
}

impl Store for Memory {
    fn describe(&self) -> String {
        "memory (no state directory: nothing survives a restart)".to_owned()
    }

    fn load(&self) -> Result<Durable> {
        Ok(self.state.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn save_entities(&self, entities: &[StoredEntity]) -> Result<()> {
        self.change(|state| state.entities = entities.to_vec())
    }

    fn save_policy(&self, policy: &StoredPolicy) -> Result<()> {
        self.change(|state| state.policy = Some(policy.clone()))
    }

    fn save_auto_tls(&self, auto_tls: &AutoTlsState) -> Result<()> {
        self.change(|state| state.auto_tls = Some(auto_tls.clone()))
    }
}
