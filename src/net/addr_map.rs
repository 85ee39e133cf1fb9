//! A map from IPv4 addresses to a small value, built once and then only
//! read: what classifies every packet's destination (a VIP, a local
//! address, an interface address, or none of ours) and checks every
//! packet's source (one of ours must not arrive from the wire).
//!
//! Why not a `HashMap`: a lookup here is a multiply, a shift and, for the
//! addresses that are not ours (nearly every source), one load that finds
//! an empty slot: about a third of the instructions hashbrown's group
//! probe costs. Open addressing with linear probing at a load factor of at
//! most 1/4 keeps clusters short, and a lookup never goes past the end of
//! its cluster, whatever address a packet carries.
//!
//! The keys are our own addresses, from configuration, never from packets,
//! so nobody outside can lengthen a probe: a plain multiplicative hash is
//! enough.

use std::net::Ipv4Addr;

/// Slots per entry, at least: a load factor of at most 1/4.
const SLOTS_PER_ENTRY: usize = 4;
/// The fewest slots: a map of a few addresses still spreads them.
const MIN_SLOTS: usize = 16;

/// An immutable map `Ipv4Addr -> V`.
#[derive(Debug, Clone)]
pub struct AddrMap<V: Copy> {
    /// `None`: an empty slot, which ends a probe.
    slots: Box<[Option<(u32, V)>]>,
    /// `slots.len() - 1` (a power of two less one).
    mask: usize,
    /// log2 of `slots.len()`: the hash's top bits index the slots.
    bits: u32,
}

impl<V: Copy> AddrMap<V> {
    /// The map of `entries`; a later entry for the same address wins.
    pub fn new(entries: impl IntoIterator<Item = (Ipv4Addr, V)>) -> AddrMap<V> {
        let entries: Vec<(Ipv4Addr, V)> = entries.into_iter().collect();
        let slots = (entries.len() * SLOTS_PER_ENTRY)
            .next_power_of_two()
            .max(MIN_SLOTS);
        let mut map = AddrMap {
            slots: vec![None; slots].into_boxed_slice(),
            mask: slots - 1,
            bits: slots.trailing_zeros(),
        };
        for (addr, value) in entries {
            map.insert(u32::from(addr), value);
        }
        map
    }

    fn insert(&mut self, addr: u32, value: V) {
        let mut i = self.home(addr);
        loop {
            match &mut self.slots[i] {
                Some((a, v)) if *a == addr => {
                    *v = value;
                    return;
                }
                Some(_) => i = (i + 1) & self.mask,
                empty @ None => {
                    *empty = Some((addr, value));
                    return;
                }
            }
        }
    }

    /// The most slots a lookup looks at: a probe stops at the first empty
    /// slot after its home (there is always one), so at most the longest
    /// run of full slots, wrapping around the end, and that empty one.
    #[cfg(test)]
    fn max_probe(&self) -> usize {
        let n = self.slots.len();
        let (mut longest, mut run) = (0, 0);
        // Twice around, so that a run across the end is counted whole.
        for i in 0..2 * n {
            if self.slots[i % n].is_some() {
                run += 1;
                longest = longest.max(run.min(n));
            } else {
                run = 0;
            }
        }
        longest + 1
    }

    /// Where the probe for `addr` starts: Fibonacci hashing, the top bits
    /// of the product, so that addresses differing only in their high bits
    /// (a /24's hosts differ in the low ones) still spread.
    #[inline(always)]
    fn home(&self, addr: u32) -> usize {
        (addr.wrapping_mul(0x9e37_79b1) >> (32 - self.bits)) as usize
    }

    /// The value of `addr`, if it is in the map.
    #[inline(always)]
    pub fn get(&self, addr: Ipv4Addr) -> Option<V> {
        let addr = u32::from(addr);
        let mut i = self.home(addr);
        // Ends: there is always an empty slot (load factor <= 1/4), at
        // most `max_probe` slots on, which the tests keep short.
        loop {
            match self.slots.get(i) {
                Some(Some((a, v))) if *a == addr => return Some(*v),
                Some(Some(_)) => i = (i + 1) & self.mask,
                _ => return None,
            }
        }
    }

    /// Whether `addr` is in the map.
    #[inline(always)]
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.get(addr).is_some()
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, V)> + '_ {
        self.slots
            .iter()
            .flatten()
            .map(|&(a, v)| (Ipv4Addr::from(a), v))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.iter().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn addr(a: u32) -> Ipv4Addr {
        Ipv4Addr::from(a)
    }

    #[test]
    fn finds_what_it_holds_and_nothing_else() {
        // A /24's hosts, other networks' addresses and the edges of the space.
        let ours: Vec<u32> = (1..=254u32)
            .map(|h| 0x0a0a_0000 | h)
            .chain([0xc0a8_0001, 0x0000_0001, 0xffff_fffe, 0x0a0b_0000])
            .collect();
        let map = AddrMap::new(ours.iter().enumerate().map(|(i, &a)| (addr(a), i)));
        assert_eq!(map.len(), ours.len());
        for (i, &a) in ours.iter().enumerate() {
            assert_eq!(map.get(addr(a)), Some(i), "{}", addr(a));
        }
        // Two million other addresses, spread over the whole space.
        for a in (0..2_000_000u32).map(|i| i.wrapping_mul(2_654_435_761)) {
            if !ours.contains(&a) {
                assert_eq!(map.get(addr(a)), None, "{}", addr(a));
                assert!(!map.contains(addr(a)));
            }
        }
        let mut listed: Vec<(Ipv4Addr, usize)> = map.iter().collect();
        listed.sort();
        let mut expected: Vec<(Ipv4Addr, usize)> = ours
            .iter()
            .enumerate()
            .map(|(i, &a)| (addr(a), i))
            .collect();
        expected.sort();
        assert_eq!(listed, expected);
    }

    #[test]
    fn a_later_entry_wins_as_in_a_hashmap() {
        let entries = [(1u32, 'a'), (2, 'b'), (1, 'c'), (3, 'd'), (2, 'e')];
        let map = AddrMap::new(entries.iter().map(|&(a, v)| (addr(a), v)));
        let reference: HashMap<u32, char> = entries.iter().copied().collect();
        assert_eq!(map.len(), reference.len());
        for (a, v) in reference {
            assert_eq!(map.get(addr(a)), Some(v));
        }
    }

    #[test]
    fn an_empty_map_answers_none() {
        let map: AddrMap<u8> = AddrMap::new([]);
        assert_eq!(map.len(), 0);
        assert_eq!(map.get(addr(0)), None);
        assert_eq!(map.get(addr(0x0a00_0001)), None);
        assert_eq!(map.iter().count(), 0);
    }

    #[test]
    fn probes_stay_short_and_bounded() {
        // Addresses that collide most for a multiplicative hash: a stride
        // of a power of two (a /16 of .0 addresses).
        let map = AddrMap::new((0..4096u32).map(|i| (addr(0x0a00_0000 | (i << 8)), ())));
        assert_eq!(map.len(), 4096);
        assert!(map.slots.len() >= 4 * 4096);
        assert!(map.max_probe() <= 8, "longest probe {}", map.max_probe());
        assert!((0..4096u32).all(|i| map.contains(addr(0x0a00_0000 | (i << 8)))));
    }
}
