//! The standings of the chains verified under one set of trust anchors, so that a caller's
//! requests cost a hash lookup rather than an ECDSA verification each (bench/FINDINGS.md §3).
//! Each anchor set owns its cache: a change of the anchors (an entity added or revoked) starts
//! an empty one, so no chain is accepted before it was verified under the anchors in force.
//!
//! The cache knows nothing of what a standing is (it is generic over it), so it depends on no
//! other module of the registry: `trust` uses it, never the other way round.

use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::Mutex;

/// Room for the certificates of a large mesh (10,000 agents and their renewals).
pub const CAPACITY: usize = 65_536;

/// A standing as verified, and until when it holds: the earliest `not_after` in the chain
/// (seconds since the epoch).
#[derive(Debug, Clone)]
pub struct Verified<S> {
    pub standing: S,
    pub valid_until: u64,
}

pub struct StandingCache<S> {
    capacity: usize,
    /// Keyed by the SHA-256 of the whole chain: the standing follows from the path, not the leaf alone.
    entries: Mutex<HashMap<[u8; 32], Verified<S>>>,
}

impl<S: Clone> StandingCache<S> {
    pub fn new(capacity: usize) -> Self {
        StandingCache { capacity, entries: Mutex::new(HashMap::new()) }
    }

    /// The standing of `chain` at `now` (seconds since the epoch): remembered while its
    /// certificates are valid, else from `verify`. Refusals are not remembered: they are rare,
    /// and a chain that is not valid yet may become valid.
    pub fn get_or_verify(&self, chain: &[CertificateDer<'_>], now: u64, verify: impl FnOnce() -> Option<Verified<S>>) -> Option<S> {
        let key = key(chain);
        if let Some(known) = self.lock().get(&key).filter(|known| now < known.valid_until) {
            return Some(known.standing.clone());
        }
        let verified = verify()?;
        let standing = verified.standing.clone();
        if now < verified.valid_until {
            let mut entries = self.lock();
            if entries.len() >= self.capacity {
                // Expired certificates go first; a map still mostly live starts again empty,
                // which costs each caller one verification more rather than a scan per miss.
                entries.retain(|_, known| now < known.valid_until);
                if entries.len() >= self.capacity * 3 / 4 {
                    entries.clear();
                }
            }
            entries.insert(key, verified);
        }
        Some(standing)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Verified<S>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(chain: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for cert in chain {
        digest.update(&(cert.len() as u64).to_be_bytes());
        digest.update(cert);
    }
    digest.finish().as_ref().try_into().expect("a SHA-256 digest has 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A standing as the registry's trust has them.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Standing {
        Mesh,
        Entity(String),
    }

    fn chain(leaf: &[u8]) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(leaf.to_vec()), CertificateDer::from(b"intermediate".to_vec())]
    }

    /// A verifier that counts its calls and answers `standing` valid until `valid_until`.
    fn counting(calls: &Cell<u32>, standing: Option<Standing>, valid_until: u64) -> impl FnOnce() -> Option<Verified<Standing>> + '_ {
        move || {
            calls.set(calls.get() + 1);
            standing.map(|standing| Verified { standing, valid_until })
        }
    }

    #[test]
    fn a_standing_is_verified_once_and_reused_until_the_chain_expires() {
        let cache = StandingCache::new(CAPACITY);
        let calls = Cell::new(0);
        let mesh = Some(Standing::Mesh);
        assert_eq!(cache.get_or_verify(&chain(b"a"), 100, counting(&calls, mesh.clone(), 200)), mesh);
        assert_eq!(cache.get_or_verify(&chain(b"a"), 199, counting(&calls, None, 0)), mesh, "remembered");
        assert_eq!(calls.get(), 1);

        let entity = Some(Standing::Entity("partner".into()));
        assert_eq!(cache.get_or_verify(&chain(b"b"), 100, counting(&calls, entity.clone(), 200)), entity, "another chain");
        assert_eq!(calls.get(), 2);

        assert_eq!(cache.get_or_verify(&chain(b"a"), 200, counting(&calls, None, 0)), None, "verified again once expired");
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn the_whole_chain_is_the_key_and_refusals_are_not_remembered() {
        let cache = StandingCache::new(CAPACITY);
        let calls = Cell::new(0);
        cache.get_or_verify(&chain(b"a"), 100, counting(&calls, Some(Standing::Mesh), 200));
        let other_path = [CertificateDer::from(b"a".to_vec()), CertificateDer::from(b"other".to_vec())];
        assert_eq!(cache.get_or_verify(&other_path, 100, counting(&calls, None, 0)), None);
        assert_eq!(cache.get_or_verify(&other_path, 100, counting(&calls, Some(Standing::Mesh), 200)), Some(Standing::Mesh));
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_then_starts_again() {
        let cache = StandingCache::new(4);
        let calls = Cell::new(0);
        for (leaf, valid_until) in [(b"1", 150), (b"2", 150), (b"3", 300), (b"4", 300)] {
            cache.get_or_verify(&chain(leaf), 100, counting(&calls, Some(Standing::Mesh), valid_until));
        }
        cache.get_or_verify(&chain(b"5"), 200, counting(&calls, Some(Standing::Mesh), 300));
        assert_eq!(cache.lock().len(), 3, "the two expired ones made room");
        cache.get_or_verify(&chain(b"6"), 200, counting(&calls, Some(Standing::Mesh), 300));
        cache.get_or_verify(&chain(b"7"), 200, counting(&calls, Some(Standing::Mesh), 300));
        assert_eq!(cache.lock().len(), 1, "full of live entries: emptied, then the new one");
        assert_eq!(calls.get(), 7);
    }
}
