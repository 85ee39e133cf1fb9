//! A fast hasher for the small integer keys of the per-packet lookups
//! (IPv4 addresses as u32: routes, neighbours, our own addresses).
//!
//! The tables these serve are filled from configuration or by ARP for
//! addresses that talk to us, never from arbitrary packet contents, so
//! there is no flooding attack to defend against and a keyed hash buys
//! nothing but cycles. One 64x64->128 multiply, folded, mixes every input bit
//! into both the low bits (bucket) and the high bits (hashbrown's tag).

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IntHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let p = u128::from(self.0) * u128::from(K);
        (p as u64) ^ ((p >> 64) as u64)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 << 32) ^ u64::from(n);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// `HashMap<K, V, FastInt>` for u32/u64 keys.
pub type FastInt = BuildHasherDefault<IntHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn network_addresses_spread_over_buckets() {
        // /24 networks: the low 8 bits are all zero, yet the low bits of the
        // hash (the bucket) must differ.
        let h = FastInt::default();
        let mut low: Vec<u64> = (0..256u32)
            .map(|i| h.hash_one(0x0a00_0000 | (i << 8)) & 0xff)
            .collect();
        low.sort();
        low.dedup();
        assert!(
            low.len() > 150,
            "only {} distinct buckets of 256",
            low.len()
        );
        // High bits (hashbrown's tag) too.
        let mut high: Vec<u64> = (0..256u32)
            .map(|i| h.hash_one(0x0a00_0000 | i) >> 57)
            .collect();
        high.sort();
        high.dedup();
        assert!(high.len() > 64);
    }
}
