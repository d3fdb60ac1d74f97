//! The store of a registry without a state directory: its state lives as long as the process.

use super::{Durable, Store};
use std::sync::Mutex;
use toolmesh_core::Result;

#[derive(Default)]
pub struct Memory {
    state: Mutex<Durable>,
}

impl Store for Memory {
    fn describe(&self) -> String {
        "memory (no state directory: nothing survives a restart)".to_owned()
    }

    fn load(&self) -> Result<Durable> {
        Ok(self.state.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn change(&self, edit: &mut dyn FnMut(&mut Durable)) -> Result<()> {
        edit(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(())
    }
}
