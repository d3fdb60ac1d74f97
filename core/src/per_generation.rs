//! A value built for one generation of something that changes now and then (our certificate,
//! the trust anchors) and built afresh once that moves on: the connection cache and the TLS
//! session cache of a client, which must not outlive the certificate they present.

use std::sync::{Arc, RwLock};

pub(crate) struct PerGeneration<G, T> {
    current: RwLock<(G, Arc<T>)>,
}

impl<G: Copy + PartialEq, T> PerGeneration<G, T> {
    pub(crate) fn new(generation: G, value: T) -> Self {
        PerGeneration { current: RwLock::new((generation, Arc::new(value))) }
    }

    /// The value of `generation`, replacing one built under another with `fresh()`. Holders of
    /// the old value keep it until they drop it.
    pub(crate) fn get(&self, generation: G, fresh: impl FnOnce() -> T) -> Arc<T> {
        {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            if current.0 == generation {
                return current.1.clone();
            }
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if current.0 != generation {
            *current = (generation, Arc::new(fresh()));
        }
        current.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_kept_within_a_generation_and_rebuilt_after_it() {
        let cache = PerGeneration::new(0, "first".to_owned());
        let same = cache.get(0, || unreachable!("same generation"));
        assert_eq!(*same, "first");
        let next = cache.get(1, || "second".to_owned());
        assert_eq!((same.as_str(), next.as_str()), ("first", "second"));
        assert!(Arc::ptr_eq(&next, &cache.get(1, || unreachable!("same generation"))));
    }
}
