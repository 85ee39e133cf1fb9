//! How a packet reaches the worker that owns its session.
//!
//! Sessions live in per-worker tables (shared nothing). The owner of a
//! session is computable from either direction of its packets:
//! - NAT: the client's address and port, which inbound packets carry as
//!   source and replies as destination, through a keyed hash
//!   ([`OwnerHash`]) so that clients cannot choose tuples that all land on
//!   one worker;
//! - FULLNAT: inbound as NAT; replies by their destination (local) port,
//!   since each worker only hands out local ports equal to its index modulo
//!   the number of workers (`lb::laddr::owner_of_port`).
//!
//! A NIC with rte_flow can deliver FULLNAT replies straight to the owner's
//! queue: one rule per (local address, worker) matching the destination
//! port's low bits. Whatever still lands on another worker's queue (NAT
//! replies, which RSS hashes differently, and everything on ports without
//! rte_flow such as net_af_packet) is handed to its owner through a
//! single-producer/single-consumer ring. See docs/steering.md.

use super::snapshot::Snapshot;
use crate::dpdk::{flow, Port};
use crate::lb::service::ForwardMode;
use log::info;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::Ipv4Addr;

/// Which worker owns the sessions of a client (address, port): SipHash-1-3
/// of the pair under a 128-bit key drawn at start, mapped onto the workers
/// by a multiply-shift. Every worker of a process holds the same key (the
/// runtime makes one and gives each a copy), so both directions of a NAT
/// session agree: inbound packets carry the client as source, replies as
/// destination.
///
/// Unkeyed, the owner was a fixed multiplicative hash anyone could invert:
/// a client could pick source ports that all land on one worker and load
/// a single core with the whole attack. With a secret key the mapping is a
/// pseudo-random function the client cannot predict (SipHash is a PRF for
/// short inputs; -1-3 is the variant Rust's own `HashMap` uses).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OwnerHash {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for OwnerHash {
    // The key is a secret: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnerHash(..)")
    }
}

impl OwnerHash {
    /// A fresh key from the operating system's randomness (std's
    /// `RandomState` is seeded from it; its output under two inputs is 128
    /// bits no one outside the process knows).
    pub fn random() -> OwnerHash {
        let state = RandomState::new();
        OwnerHash {
            k0: state.hash_one(0x736c_7569_6365_u64),
            k1: state.hash_one(0x6f77_6e65_7273_u64),
        }
    }

    /// A fixed key, for tests and tools that need reproducible owners.
    pub const fn with_key(k0: u64, k1: u64) -> OwnerHash {
        OwnerHash { k0, k1 }
    }

    /// A fixed key written as 32 hexadecimal digits (`k0` then `k1`, most
    /// significant digit first), as `dataplane.owner_key` and
    /// `pcapgen --owner-key` take it. `None` unless it is exactly that.
    pub fn from_hex(text: &str) -> Option<OwnerHash> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let k0 = u64::from_str_radix(&text[..16], 16).ok()?;
        let k1 = u64::from_str_radix(&text[16..], 16).ok()?;
        Some(OwnerHash { k0, k1 })
    }

    /// The worker (of `workers`) owning the sessions of client
    /// `addr`:`port`. `workers` of 0 is taken as 1.
    #[inline]
    pub fn owner(&self, addr: Ipv4Addr, port: u16, workers: u16) -> u16 {
        let h = siphash::<1, 3>(
            self.k0,
            self.k1,
            (u64::from(u32::from(addr)) << 16) | u64::from(port),
        );
        ((u128::from(h) * u128::from(workers.max(1))) >> 64) as u16
    }
}

/// SipHash-C-D of one 8-byte message `m` (its little-endian bytes), under
/// key (`k0`, `k1`): the reference algorithm with the message fixed at one
/// word, so no buffering.
#[inline]
fn siphash<const C: usize, const D: usize>(k0: u64, k1: u64, m: u64) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    // The message block, then the final block: the length (8) in the top
    // byte and no tail bytes.
    for block in [m, 8u64 << 56] {
        v[3] ^= block;
        for _ in 0..C {
            round(&mut v);
        }
        v[0] ^= block;
    }
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Installs the FULLNAT reply rules on `port` if it takes them. Returns how
/// many rules were installed (0 when the port has no usable rte_flow, in
/// which case the software hop does the job).
pub fn install_fullnat_rules(port: &Port, snap: &Snapshot) -> usize {
    let workers = snap.workers;
    if workers < 2 {
        return 0;
    }
    if !workers.is_power_of_two() {
        info!(
            "port {}: {workers} workers is not a power of two: FULLNAT replies reach their worker by software hop",
            port.id()
        );
        return 0;
    }
    let mask = workers - 1;
    let mut installed = 0;
    for (_, service) in snap
        .services
        .iter()
        .filter(|(_, s)| s.mode == ForwardMode::FullNat)
    {
        for &laddr in &service.laddrs {
            for worker in 0..workers {
                if let Err(e) =
                    flow::steer_by_dst_port(port.id(), laddr, service.proto(), worker, mask, worker)
                {
                    info!(
                        "port {} ({}): no rte_flow steering ({e}): FULLNAT replies reach their worker by software hop",
                        port.id(),
                        port.info().driver
                    );
                    return installed;
                }
                installed += 1;
            }
        }
    }
    if installed > 0 {
        info!(
            "port {}: {installed} rte_flow rule(s) steer FULLNAT replies to their worker's queue",
            port.id()
        );
    }
    installed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    #[test]
    fn siphash_matches_the_reference() {
        // std's (deprecated) SipHasher is SipHash-2-4 with explicit keys:
        // the same rounds with C = 2, D = 4 must give the same value.
        for (k0, k1, m) in [
            (0u64, 0u64, 0u64),
            (
                0x0706_0504_0302_0100,
                0x0f0e_0d0c_0b0a_0908,
                0x0706_0504_0302_0100,
            ),
            (u64::MAX, 1, 0x0a0a_0002_9c40),
        ] {
            #[allow(deprecated)]
            let mut reference = std::hash::SipHasher::new_with_keys(k0, k1);
            reference.write(&m.to_le_bytes());
            assert_eq!(siphash::<2, 4>(k0, k1, m), reference.finish());
        }
        // The published test vector for the 8-byte message 00..07 under
        // the key 00..0f (SipHash-2-4, Aumasson and Bernstein).
        assert_eq!(
            siphash::<2, 4>(
                0x0706_0504_0302_0100,
                0x0f0e_0d0c_0b0a_0908,
                0x0706_0504_0302_0100
            ),
            0x93f5_f579_9a93_2462
        );
    }

    #[test]
    fn owners_spread_evenly_and_depend_on_the_key() {
        let a = OwnerHash::with_key(1, 2);
        let b = OwnerHash::with_key(3, 4);
        let client = Ipv4Addr::new(10, 10, 0, 2);
        let mut counts = [0u32; 4];
        let mut differ = 0;
        for port in 0..40_000u16 {
            let w = a.owner(client, port, 4);
            counts[w as usize] += 1;
            differ += u32::from(w != b.owner(client, port, 4));
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
        // Another key: three quarters of the clients move (as for any two
        // independent mappings onto 4 workers).
        assert!((29_000..31_000).contains(&differ), "{differ}");
        assert_eq!(a.owner(client, 1, 1), 0);
        assert_eq!(a.owner(client, 1, 0), 0, "0 workers taken as 1");
    }

    #[test]
    fn hex_keys() {
        assert_eq!(
            OwnerHash::from_hex("0123456789abcdefFEDCBA9876543210"),
            Some(OwnerHash::with_key(
                0x0123_4567_89ab_cdef,
                0xfedc_ba98_7654_3210
            ))
        );
        for bad in [
            "",
            "0123",
            "0123456789abcdef0123456789abcdef0",
            "+123456789abcdef0123456789abcdef",
            "0123456789abcdeg0123456789abcdef",
            "0x23456789abcdef0123456789abcdef",
        ] {
            assert_eq!(OwnerHash::from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(OwnerHash::random(), OwnerHash::random());
    }

    #[test]
    fn an_attacker_who_knew_the_old_hash_gets_no_advantage() {
        // The ports the unkeyed hash sent to worker 0 of 2 (what an attacker
        // would pick) are spread evenly under a keyed one.
        let unkeyed = |addr: Ipv4Addr, port: u16| {
            let x = (u32::from(addr) ^ (u32::from(port) << 16 | u32::from(port)))
                .wrapping_mul(0x9e37_79b1);
            ((u64::from(x) * 2) >> 32) as u16
        };
        let client = Ipv4Addr::new(203, 0, 113, 7);
        let chosen: Vec<u16> = (1024..=65535u16)
            .filter(|&p| unkeyed(client, p) == 0)
            .collect();
        let keyed = OwnerHash::random();
        let on_0 = chosen
            .iter()
            .filter(|&&p| keyed.owner(client, p, 2) == 0)
            .count();
        let share = on_0 as f64 / chosen.len() as f64;
        assert!((0.48..0.52).contains(&share), "{share}");
    }
}
