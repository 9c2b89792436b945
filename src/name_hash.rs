//! Hashers for the maps a request looks its configured things up in, in
//! place of SipHash. Only configured entries are ever in these maps, so a
//! caller's choice of key can crowd no bucket (what SipHash's keyed hash
//! guards against); what is left of a lookup is its hash, on every request.
//!
//! - [`NameMap`]: by a config name (a client's, a route's), FNV-1a: a few
//!   instructions per byte of a short name, against SipHash's setup and
//!   rounds.
//! - [`DigestMap`]: by a SHA-256 (a client key's), its own bytes folded
//!   into 64 bits: a digest is as uniform as a hash gets.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map by config name.
pub type NameMap<V> = HashMap<String, V, BuildHasherDefault<NameHasher>>;

/// A map by SHA-256 digest.
pub type DigestMap<K, V> = HashMap<K, V, BuildHasherDefault<DigestHasher>>;

/// FNV-1a, 64 bits.
pub struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A digest's bytes folded by 8-byte words.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn fnv1a_is_the_published_function() {
        // FNV-1a 64 test vectors (the reference's "" and "a" and "foobar").
        let hash = |s: &[u8]| {
            let mut h = NameHasher::default();
            h.write(s);
            h.finish()
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn names_and_digests_are_found_again() {
        let mut names: NameMap<usize> = NameMap::default();
        for i in 0..500 {
            names.insert(format!("route-{i}"), i);
        }
        assert!((0..500).all(|i| names.get(&format!("route-{i}")) == Some(&i)));
        assert_eq!(names.get("route-500"), None);
        let mut digests: DigestMap<[u8; 32], usize> = DigestMap::default();
        for i in 0..500u16 {
            let mut d = [0u8; 32];
            d[31] = (i % 256) as u8;
            d[0] = (i / 256) as u8;
            digests.insert(d, usize::from(i));
        }
        assert_eq!(digests.len(), 500);
        let b = BuildHasherDefault::<DigestHasher>::default();
        assert_ne!(b.hash_one([1u8; 32]), b.hash_one([2u8; 32]));
        // A map finds its keys with any hasher; what makes it fast is
        // that they spread: no two of these 500 share a hash.
        let spread = |hashes: Vec<u64>| {
            hashes
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
        };
        let n = BuildHasherDefault::<NameHasher>::default();
        assert_eq!(spread(names.keys().map(|k| n.hash_one(k)).collect()), 500);
        assert_eq!(spread(digests.keys().map(|k| b.hash_one(k)).collect()), 500);
    }
}
