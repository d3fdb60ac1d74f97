//! The legacy `tools/call` requests in flight, by who sent them and their JSON-RPC id, so that
//! a later `notifications/cancelled` (legacy revisions; the modern era cancels by closing the
//! stream) reaches the request it names. A stateless server has no session to scope ids with:
//! the caller's verified identity does, so one workload can cancel only its own requests. Two
//! requests of one identity in flight under the same id (two clients with one certificate) are
//! both cancelled.

use crate::fx_hash::FxHashMap;
use crate::report::Reporter;
use std::sync::{Arc, Mutex, Weak};

/// (caller identity, request id as its JSON text)
type Key = (Arc<str>, Box<str>);

#[derive(Default)]
pub(super) struct InFlight {
    requests: Mutex<FxHashMap<Key, Vec<Weak<Reporter>>>>,
}

/// A request's place in [`InFlight`], given up when dropped (the request was answered or
/// abandoned).
pub(super) struct Registered {
    table: Arc<InFlight>,
    key: Key,
    reporter: Weak<Reporter>,
}

impl InFlight {
    /// Records the request `id` (its JSON text) of `caller`, cancelled through `reporter`.
    pub(super) fn register(table: &Arc<InFlight>, caller: &str, id: &str, reporter: &Arc<Reporter>) -> Registered {
        let key: Key = (Arc::from(caller), Box::from(id.trim()));
        let reporter = Arc::downgrade(reporter);
        table.requests.lock().expect("in-flight lock").entry(key.clone()).or_default().push(reporter.clone());
        Registered { table: table.clone(), key, reporter }
    }

    /// Cancels `caller`'s requests in flight under `id` (its JSON text); how many there were.
    pub(super) fn cancel(&self, caller: &str, id: &str) -> usize {
        let key: Key = (Arc::from(caller), Box::from(id.trim()));
        let reporters: Vec<Arc<Reporter>> = match self.requests.lock().expect("in-flight lock").get(&key) {
            Some(list) => list.iter().filter_map(Weak::upgrade).collect(),
            None => return 0,
        };
        for reporter in &reporters {
            reporter.cancel();
        }
        reporters.len()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.requests.lock().expect("in-flight lock").len()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut requests = self.table.requests.lock().expect("in-flight lock");
        if let Some(list) = requests.get_mut(&self.key) {
            list.retain(|r| !r.ptr_eq(&self.reporter));
            if list.is_empty() {
                requests.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_reaches_only_the_named_request_of_that_caller_while_it_is_in_flight() {
        let table = Arc::new(InFlight::default());
        let reporter = || Arc::new(Reporter::new(None, None).0);
        let (one, two, other) = (reporter(), reporter(), reporter());
        let a = InFlight::register(&table, "spiffe://m/a", "7", &one);
        let b = InFlight::register(&table, "spiffe://m/a", r#""x""#, &two);
        let c = InFlight::register(&table, "spiffe://m/b", "7", &other);
        assert_eq!(table.cancel("spiffe://m/a", "8"), 0);
        assert_eq!(table.cancel("spiffe://m/a", " 7"), 1);
        assert!(one.is_cancelled() && !two.is_cancelled() && !other.is_cancelled(), "another caller's id 7 is its own");
        drop((a, b, c));
        assert_eq!(table.len(), 0, "answered requests leave the table");
        assert_eq!(table.cancel("spiffe://m/b", "7"), 0);
        assert!(!other.is_cancelled());
    }
}
