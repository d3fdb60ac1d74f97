//! FxHash, the multiply-and-rotate hash rustc uses, for the small maps every call looks up
//! (dependencies, providers, round-robin cursors, connections by peer): SipHash costs several
//! times more per lookup there. Only for keys this agent or its registry chose (tool names,
//! capabilities, endpoints), never for keys a peer sends: FxHash does not resist flooding.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` hashed with [`FxHasher`].
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

/// rustc-hash's multiplier (an odd number close to 2^64 / golden ratio).
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Whole words, then the tail in pieces of 4, 2 and 1 bytes (as rustc-hash does), so that
        // keys differing only by trailing zero bytes still hash apart.
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        let mut rest = words.remainder();
        if let Some((piece, tail)) = rest.split_first_chunk::<4>() {
            self.add(u64::from(u32::from_le_bytes(*piece)));
            rest = tail;
        }
        if let Some((piece, tail)) = rest.split_first_chunk::<2>() {
            self.add(u64::from(u16::from_le_bytes(*piece)));
            rest = tail;
        }
        if let Some(byte) = rest.first() {
            self.add(u64::from(*byte));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn equal_keys_hash_alike_and_different_keys_apart() {
        let build = BuildHasherDefault::<FxHasher>::default();
        assert_eq!(build.hash_one("127.0.0.1:8443"), build.hash_one("127.0.0.1:8443"));
        // Keys that differ only in their tail, past a whole 8-byte word, or by a trailing zero.
        for (a, b) in [("127.0.0.1:8443", "127.0.0.1:8444"), ("calculator", "calculatos"), ("ab", "ab\0")] {
            assert_ne!(build.hash_one(a), build.hash_one(b), "{a} / {b}");
        }
        let mut map: FxHashMap<String, u32> = FxHashMap::default();
        map.insert("add".into(), 1);
        map.insert("sub".into(), 2);
        assert_eq!((map.get("add"), map.get("sub"), map.get("mul")), (Some(&1), Some(&2), None));
    }
}
