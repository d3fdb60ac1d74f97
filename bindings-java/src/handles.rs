//! Tables of native objects that Java refers to by number.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Java holds a `long` handle; the object stays here. Handles start at 1, so 0 can mean "none".
pub(crate) struct HandleTable<T> {
    next: AtomicI64,
    entries: Mutex<BTreeMap<i64, T>>,
}

impl<T> HandleTable<T> {
    pub(crate) const fn new() -> Self {
        HandleTable { next: AtomicI64::new(1), entries: Mutex::new(BTreeMap::new()) }
    }

    pub(crate) fn insert(&self, value: T) -> i64 {
        let handle = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(handle, value);
        handle
    }

    pub(crate) fn remove(&self, handle: i64) -> Option<T> {
        self.lock().remove(&handle)
    }

    pub(crate) fn get(&self, handle: i64) -> Option<T>
    where
        T: Clone,
    {
        self.lock().get(&handle).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, T>> {
        // A panic while the lock was held cannot leave a map half-updated: every operation is one call.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_unique_nonzero_and_removed_once() {
        let table = HandleTable::new();
        let (a, b) = (table.insert("a"), table.insert("b"));
        assert!(a > 0 && b > 0 && a != b);
        assert_eq!(table.get(a), Some("a"));
        assert_eq!(table.remove(a), Some("a"));
        assert_eq!(table.remove(a), None);
        assert_eq!(table.get(0), None);
    }
}
