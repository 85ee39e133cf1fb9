//! A small per-worker cache of complete forwarding decisions: destination
//! address -> (port, next hop, next hop's MAC). Most packets go to a handful
//! of real servers and gateways; the cache spares them the longest-prefix
//! match and the neighbour lookup (two or three hash probes) per packet.
//!
//! It is direct-mapped and never authoritative: the owner bumps its
//! generation whenever what it caches may have changed (an ARP frame was
//! learned) and at least once a second, so an entry is never more than a
//! second old and the neighbour table still sees every destination in use
//! (keeping it fresh and probed) once a second.

use super::MacAddr;
use std::net::Ipv4Addr;

const SLOTS: usize = 256;

#[derive(Clone, Copy, Default)]
struct Slot {
    dst: u32,
    /// 0 = empty (the generation starts at 1).
    generation: u32,
    next_hop: u32,
    port: u16,
    mac: MacAddr,
}

/// A cached forwarding decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub port: u16,
    pub next_hop: Ipv4Addr,
    pub mac: MacAddr,
}

pub struct NextHopCache {
    slots: Box<[Slot]>,
    generation: u32,
}

impl Default for NextHopCache {
    fn default() -> Self {
        NextHopCache {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            generation: 1,
        }
    }
}

impl NextHopCache {
    #[inline]
    fn index(dst: u32) -> usize {
        (dst.wrapping_mul(0x9e37_79b1) >> 24) as usize % SLOTS
    }

    #[inline]
    pub fn get(&self, dst: Ipv4Addr) -> Option<Resolved> {
        let dst = u32::from(dst);
        let s = &self.slots[Self::index(dst)];
        (s.dst == dst && s.generation == self.generation).then(|| Resolved {
            port: s.port,
            next_hop: Ipv4Addr::from(s.next_hop),
            mac: s.mac,
        })
    }

    #[inline]
    pub fn insert(&mut self, dst: Ipv4Addr, r: Resolved) {
        let dst = u32::from(dst);
        self.slots[Self::index(dst)] = Slot {
            dst,
            generation: self.generation,
            next_hop: u32::from(r.next_hop),
            port: r.port,
            mac: r.mac,
        };
    }

    /// Forgets every entry, in O(1).
    pub fn invalidate(&mut self) {
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.generation == 1 {
            // Wrapped: old slots could look current again; clear them.
            self.slots.fill(Slot::default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(port: u16, last: u8) -> Resolved {
        Resolved {
            port,
            next_hop: Ipv4Addr::new(10, 0, 0, last),
            mac: [2, 0, 0, 0, 0, last],
        }
    }

    #[test]
    fn hit_miss_and_invalidate() {
        let mut c = NextHopCache::default();
        let a = Ipv4Addr::new(192, 168, 10, 2);
        assert_eq!(c.get(a), None);
        c.insert(a, r(1, 2));
        assert_eq!(c.get(a), Some(r(1, 2)));
        assert_eq!(c.get(Ipv4Addr::new(192, 168, 10, 3)), None);
        c.invalidate();
        assert_eq!(c.get(a), None);
        // A colliding address replaces the slot, never aliases it.
        c.insert(a, r(1, 2));
        for i in 0..=255u8 {
            let b = Ipv4Addr::new(172, 16, i, 9);
            c.insert(b, r(0, 254));
            assert_eq!(c.get(b), Some(r(0, 254)));
        }
        assert!(c.get(a).is_none() || c.get(a) == Some(r(1, 2)));
    }

    #[test]
    fn generation_wrap_clears() {
        let mut c = NextHopCache::default();
        let a = Ipv4Addr::new(10, 1, 1, 1);
        c.insert(a, r(0, 1));
        c.generation = u32::MAX;
        c.invalidate();
        assert_eq!(c.generation, 1);
        assert_eq!(c.get(a), None);
    }
}
