//! Persistence templates (IPVS's persistent services, `ipvsadm -p`): which
//! real server a client network was last sent to by a service, shared by
//! every worker.
//!
//! A client's connections are spread over the workers by their source port,
//! so a template that lived in one worker's tables would let two workers
//! send the same client to two reals: that is not persistence. The
//! templates therefore live in one table that every worker reads and
//! writes, lock-free: each entry is a single `AtomicU64` (a tag of the
//! (service, client network) hash, the real's slot and the expiry time), so
//! a read is one load and a write one compare-and-swap, and no entry is ever
//! seen half written. Workers touch it only when a connection of a
//! persistent service starts or ends, never per packet.
//!
//! The table is set-associative: the hash picks a set of 8 entries (one
//! cache line), its other bits are the tag. Two workers that schedule the
//! same new client at the same instant both aim at the same free entry (the
//! first of the set, in order): one wins the compare-and-swap and the other
//! finds its entry on the retry, so both send the client to one real. A
//! full set evicts the entry that expires first. Two clients whose tags
//! collide in one set (one chance in 16 million per set) would share a
//! template; they would only share a real server.

use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::service::ServiceKey;

const WAYS: usize = 8;
const TAG_BITS: u32 = 24;
const SLOT_BITS: u32 = 16;
const TIME_BITS: u32 = 24;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// Expiry times are seconds modulo 2^24 (194 days); an entry is live while
/// its expiry is less than half that ahead of now.
const HALF_RANGE: u64 = 1 << (TIME_BITS - 1);
/// The longest persistence timeout the encoding holds with room to spare.
pub const MAX_TIMEOUT: u32 = 30 * 24 * 3600;

#[repr(align(64))]
struct Set([AtomicU64; WAYS]);

/// The templates of every persistent service. See the module documentation.
pub struct Templates {
    sets: Box<[Set]>,
    seed: u64,
}

/// A template's key: which service, which client network. Hashed once per
/// new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateKey(u64);

impl TemplateKey {
    /// The key of `client` (masked with the service's persistence netmask)
    /// for `service`.
    pub fn new(
        templates: &Templates,
        service: &ServiceKey,
        client: Ipv4Addr,
        netmask: Ipv4Addr,
    ) -> TemplateKey {
        let mut h = FoldHasher(templates.seed);
        h.write_u32(u32::from(client) & u32::from(netmask));
        h.write_u32(u32::from(*service.vip.ip()));
        h.write_u32(u32::from(service.vip.port()) << 8 | service.proto as u32);
        TemplateKey(h.finish())
    }

    fn tag(self) -> u64 {
        // Never 0: 0 is an empty entry.
        ((self.0 >> 40) & ((1 << TAG_BITS) - 1)).max(1)
    }
}

fn pack(tag: u64, slot: u32, expires: u64) -> u64 {
    tag << (SLOT_BITS + TIME_BITS) | u64::from(slot) << TIME_BITS | (expires & TIME_MASK)
}

fn tag_of(entry: u64) -> u64 {
    entry >> (SLOT_BITS + TIME_BITS)
}

fn slot_of(entry: u64) -> u32 {
    ((entry >> TIME_BITS) & ((1 << SLOT_BITS) - 1)) as u32
}

impl Templates {
    /// Room for about `capacity` templates (rounded up to whole sets).
    pub fn new(capacity: usize) -> Templates {
        let sets = capacity.div_ceil(WAYS).next_power_of_two().max(1);
        let random = std::collections::hash_map::RandomState::new();
        Templates {
            sets: (0..sets)
                .map(|_| Set(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
            seed: random.hash_one(0x7e3a_u64),
        }
    }

    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    fn set(&self, key: TemplateKey) -> &Set {
        &self.sets[(key.0 as usize) & (self.sets.len() - 1)]
    }

    /// The slot of the real `key` was sent to, if its template is live at
    /// `now` (seconds on the workers' shared clock).
    #[inline]
    pub fn lookup(&self, key: TemplateKey, now: u64) -> Option<u32> {
        let tag = key.tag();
        self.set(key).0.iter().find_map(|e| {
            let v = e.load(Ordering::Acquire);
            (tag_of(v) == tag && live_entry(v, now)).then(|| slot_of(v))
        })
    }

    /// Records that `key` goes to `slot` until `expires` (seconds), or
    /// pushes an existing template's expiry there. Returns the slot the
    /// client is bound to: `slot`, or the one another worker bound it to an
    /// instant earlier (the caller should then use that one).
    pub fn bind(&self, key: TemplateKey, slot: u32, now: u64, expires: u64) -> u32 {
        let tag = key.tag();
        let set = &self.set(key).0;
        for _ in 0..4 {
            // An existing live template for the client wins.
            if let Some((e, v)) = set
                .iter()
                .map(|e| (e, e.load(Ordering::Acquire)))
                .find(|&(_, v)| tag_of(v) == tag && live_entry(v, now))
            {
                let bound = slot_of(v);
                let refreshed = pack(tag, bound, expires);
                let _ = e.compare_exchange(v, refreshed, Ordering::AcqRel, Ordering::Relaxed);
                return bound;
            }
            // Else the first free or expired entry, or the one expiring
            // first; every worker picks the same one.
            let (e, v) = set
                .iter()
                .map(|e| (e, e.load(Ordering::Acquire)))
                .find(|&(_, v)| !live_entry(v, now))
                .unwrap_or_else(|| {
                    set.iter()
                        .map(|e| (e, e.load(Ordering::Acquire)))
                        .min_by_key(|&(_, v)| remaining(v, now))
                        .unwrap_or((&set[0], set[0].load(Ordering::Acquire)))
                });
            if e.compare_exchange(
                v,
                pack(tag, slot, expires),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
            {
                return slot;
            }
        }
        slot
    }

    /// Points `key`'s template at `slot` (its real no longer takes new
    /// connections), or makes one.
    pub fn replace(&self, key: TemplateKey, slot: u32, now: u64, expires: u64) {
        let tag = key.tag();
        for e in &self.set(key).0 {
            let v = e.load(Ordering::Acquire);
            if tag_of(v) == tag && live_entry(v, now) {
                let _ = e.compare_exchange(
                    v,
                    pack(tag, slot, expires),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                return;
            }
        }
        self.bind(key, slot, now, expires);
    }

    /// Pushes the expiry of `key`'s template to `expires` if it still
    /// points at `slot` (a connection of it ended: IPVS keeps a template
    /// for its timeout after the last connection).
    pub fn touch(&self, key: TemplateKey, slot: u32, now: u64, expires: u64) {
        let tag = key.tag();
        for e in &self.set(key).0 {
            let v = e.load(Ordering::Acquire);
            if tag_of(v) == tag && slot_of(v) == slot && live_entry(v, now) {
                let _ = e.compare_exchange(
                    v,
                    pack(tag, slot, expires),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                return;
            }
        }
    }

    /// Live templates (O(capacity): for listing, not the packet path).
    pub fn live(&self, now: u64) -> usize {
        self.sets
            .iter()
            .flat_map(|s| s.0.iter())
            .filter(|e| live_entry(e.load(Ordering::Relaxed), now))
            .count()
    }
}

/// Seconds until an entry expires (0 when it has).
fn remaining(entry: u64, now: u64) -> u64 {
    if live_entry(entry, now) {
        (entry.wrapping_sub(now)) & TIME_MASK
    } else {
        0
    }
}

/// Whether an entry is live at `now`: its expiry (seconds mod 2^24) is
/// ahead of now by less than half the range.
fn live_entry(entry: u64, now: u64) -> bool {
    if entry == 0 {
        return false;
    }
    let ahead = (entry.wrapping_sub(now)) & TIME_MASK;
    ahead != 0 && ahead < HALF_RANGE
}

/// A small keyed hasher (folded multiply) for template keys: the client
/// address comes from the network, so the table is seeded per process.
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        let x = u128::from(self.0 ^ 0x9e37_79b9_7f4a_7c15) * u128::from(0xa076_1d64_78bd_642f_u64);
        (x as u64) ^ ((x >> 64) as u64)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u8(*b);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        let x = u128::from(self.0 ^ i) * u128::from(0x5851_f42d_4c95_7f2d_u64);
        self.0 = (x as u64) ^ ((x >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::Proto;
    use std::sync::Arc;

    fn service(port: u16) -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            vip: std::net::SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), port),
        }
    }

    const ALL: Ipv4Addr = Ipv4Addr::BROADCAST;

    #[test]
    fn a_client_stays_with_its_real_until_the_template_expires() {
        let t = Templates::new(1024);
        let c = Ipv4Addr::new(10, 1, 1, 1);
        let k = TemplateKey::new(&t, &service(80), c, ALL);
        assert_eq!(t.lookup(k, 100), None);
        assert_eq!(t.bind(k, 7, 100, 400), 7);
        assert_eq!(t.lookup(k, 399), Some(7));
        assert_eq!(t.lookup(k, 400), None, "expired");
        // Another service, or another client, has its own template.
        assert_eq!(
            t.lookup(TemplateKey::new(&t, &service(81), c, ALL), 200),
            None
        );
        assert_eq!(
            t.lookup(
                TemplateKey::new(&t, &service(80), Ipv4Addr::new(10, 1, 1, 2), ALL),
                200
            ),
            None
        );
        // The netmask groups a client network.
        let mask: Ipv4Addr = "255.255.255.0".parse().unwrap();
        let k24 = TemplateKey::new(&t, &service(80), c, mask);
        t.bind(k24, 3, 100, 400);
        let other = TemplateKey::new(&t, &service(80), Ipv4Addr::new(10, 1, 1, 99), mask);
        assert_eq!(t.lookup(other, 150), Some(3));
        // A connection ending pushes the expiry.
        t.touch(k, 7, 300, 600);
        assert_eq!(t.lookup(k, 500), Some(7));
        // Binding again keeps the first real.
        assert_eq!(t.bind(k, 9, 500, 800), 7);
    }

    #[test]
    fn the_clock_may_wrap() {
        let t = Templates::new(64);
        let k = TemplateKey::new(&t, &service(80), Ipv4Addr::new(10, 1, 1, 1), ALL);
        let now = TIME_MASK - 10;
        t.bind(k, 5, now, now + 300);
        assert_eq!(t.lookup(k, now + 100), Some(5));
        assert_eq!(t.lookup(k, now + 300), None);
    }

    #[test]
    fn a_full_set_evicts_what_expires_first() {
        let t = Templates::new(8);
        assert_eq!(t.capacity(), 8);
        let keys: Vec<_> = (0..9u32)
            .map(|i| TemplateKey::new(&t, &service(80), Ipv4Addr::from(0x0a00_0000 + i), ALL))
            .collect();
        for (i, k) in keys.iter().take(8).enumerate() {
            t.bind(*k, i as u32, 0, 100 + i as u64);
        }
        t.bind(keys[8], 8, 0, 500);
        assert_eq!(t.lookup(keys[0], 1), None, "the soonest to expire went");
        assert_eq!(t.lookup(keys[8], 1), Some(8));
        assert_eq!(t.lookup(keys[7], 1), Some(7));
        assert_eq!(t.live(1), 8);
    }

    #[test]
    fn workers_binding_one_client_at_once_agree() {
        for round in 0..200u32 {
            let t = Arc::new(Templates::new(1024));
            let k = TemplateKey::new(&t, &service(80), Ipv4Addr::from(round), ALL);
            let threads: Vec<_> = (0..4u32)
                .map(|w| {
                    let t = Arc::clone(&t);
                    std::thread::spawn(move || t.bind(k, w, 10, 310))
                })
                .collect();
            let bound: Vec<u32> = threads.into_iter().map(|h| h.join().unwrap()).collect();
            assert!(
                bound.iter().all(|&b| b == bound[0]),
                "round {round}: {bound:?}"
            );
            assert_eq!(t.lookup(k, 11), Some(bound[0]));
        }
    }
}
