//! `sh`: source hashing (IPVS `ip_vs_sh.c`). A 256-bucket table is filled
//! with the real servers in order, each repeated `weight` times, round after
//! round until it is full; a client's bucket is a hash of its address (and
//! port, with the `port` flag), so a client keeps its real server for as
//! long as the configuration does not change.
//!
//! Both the fill and the hash are IPVS's, so a client lands in the same
//! bucket as under the kernel's sh, and on the same real server when the
//! real servers are listed in the same order with the same weights. Like
//! IPVS's, the table is not consistent: adding, removing or reweighting a
//! real server shifts the buckets after it (use mh for that), and the
//! weights only set the shares when they sum to at most 256; a real server
//! that comes after the 256th bucket gets none.

use std::net::Ipv4Addr;

use super::SchedTable;

/// IPVS's default `CONFIG_IP_VS_SH_TAB_BITS`.
const TABLE_BITS: u32 = 8;
const TABLE_SIZE: usize = 1 << TABLE_BITS;

/// The Linux kernel's `GOLDEN_RATIO_32` (`include/linux/hash.h`), the
/// multiplier of its `hash_32` (Fibonacci hashing).
const GOLDEN_RATIO_32: u32 = 0x61c8_8647;

/// The buckets for `n` real servers: real `i` repeated `weight(i)` times,
/// in order, cycling until the 256 buckets are full; empty when `n` is 0.
/// A real server with weight 0 still takes one bucket per round, as in
/// IPVS (its count check `++count >= weight` passes at once): that bucket's
/// clients get no real server, or with `fallback` another one.
pub(super) fn build(n: usize, weight: impl Fn(usize) -> u32) -> Box<[u32]> {
    let mut buckets = Vec::with_capacity(TABLE_SIZE);
    // `n` fits a u32: SchedTable caps the number of real servers.
    let reals = (0..n).zip(0u32..);
    while n > 0 && buckets.len() < TABLE_SIZE {
        for (i, real) in reals.clone() {
            let repeat = weight(i).max(1) as usize;
            let room = TABLE_SIZE - buckets.len();
            buckets.extend(std::iter::repeat_n(real, repeat.min(room)));
        }
    }
    buckets.into_boxed_slice()
}

/// IPVS's `ip_vs_sh_hashkey`: the kernel's `hash_32` (the top bits of a
/// Fibonacci multiplication) of address + port, plus `offset`, modulo the
/// table size.
fn bucket(client: Ipv4Addr, port: u16, offset: usize) -> usize {
    let key = u32::from(client).wrapping_add(u32::from(port));
    let hash = key.wrapping_mul(GOLDEN_RATIO_32) >> (32 - TABLE_BITS);
    (offset + hash as usize) % TABLE_SIZE
}

/// The real server in the client's bucket. When it is unavailable (weight
/// 0): without `fallback`, None; with it, as IPVS's
/// `ip_vs_sh_get_fallback`, re-hash with offsets 0..256 starting from the
/// original bucket number and take the first available real server. That
/// walks the buckets in order from bucket `2 * first`, visiting each once
/// (at most 256 steps); with the in-order fill it hands an unavailable real
/// server's clients to one or two of its neighbours, not to all the others
/// (mh's fallback does spread them).
pub(super) fn pick(table: &SchedTable, client: Ipv4Addr, client_port: u16) -> Option<usize> {
    let port = if table.flags.port { client_port } else { 0 };
    let first = bucket(client, port, 0);
    let real = *table.lookup.get(first)?;
    if table.is_available(real) {
        return Some(real as usize);
    }
    if !table.flags.fallback || !table.lookup_has_available {
        return None;
    }
    (0..TABLE_SIZE)
        .map(|step| bucket(client, port, (first + step) % TABLE_SIZE))
        .filter_map(|b| table.lookup.get(b).copied())
        .find(|&real| table.is_available(real))
        .map(|real| real as usize)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{clients, reals, table};
    use super::super::{pick as pick_any, NoConns, SchedFlags, SchedState, SchedTable};
    use super::super::{SchedulerKind::Sh, DEFAULT_MH_TABLE_SIZE};
    use super::*;

    fn sh_table(flags: SchedFlags, weights: &[u32]) -> SchedTable {
        SchedTable::new(Sh, flags, &reals(weights), DEFAULT_MH_TABLE_SIZE)
    }

    fn pick_one(t: &SchedTable, client: Ipv4Addr, port: u16) -> Option<usize> {
        pick_any(t, &mut SchedState::new(t), client, port, &NoConns)
    }

    #[test]
    fn fill_follows_ipvs() {
        let t = table(Sh, &[2, 0, 1]);
        assert_eq!(t.lookup.len(), 256);
        // Weight 0 still takes one bucket per round.
        assert_eq!(t.lookup[..12], [0, 0, 1, 2, 0, 0, 1, 2, 0, 0, 1, 2]);
        let t = table(Sh, &[1, 1, 1]);
        assert_eq!(t.lookup[..7], [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(t.lookup[255], 0);
        // A weight of 256 or more fills the whole table in the first round.
        let t = table(Sh, &[300, 1]);
        assert!(t.lookup.iter().all(|&r| r == 0));
        assert_eq!(table(Sh, &[]).lookup.len(), 0);
    }

    #[test]
    fn hash_is_the_kernels() {
        // hash_32(x, 8) = (x * 0x61c88647 mod 2^32) >> 24, worked by hand
        // for 10.0.0.1 = 0x0a000001: 0x61c88647 + (0x0a * 0x47 mod 256) *
        // 2^24 = 0x61c88647 + 0xc6000000 = 0x27c88647 mod 2^32 -> 0x27.
        assert_eq!(bucket(Ipv4Addr::new(10, 0, 0, 1), 0, 0), 0x27);
        assert_eq!(bucket(Ipv4Addr::new(0, 0, 0, 1), 0, 0), 0x61);
        // The port is added to the address; the offset to the bucket.
        assert_eq!(bucket(Ipv4Addr::new(0, 0, 0, 0), 1, 0), 0x61);
        assert_eq!(
            bucket(Ipv4Addr::new(0, 0, 0, 1), 0, 200),
            (0x61 + 200) % 256
        );
    }

    #[test]
    fn golden() {
        // Weights 1, 1, 1: bucket b holds real b % 3.
        let t = table(Sh, &[1, 1, 1]);
        assert_eq!(pick_one(&t, Ipv4Addr::new(10, 0, 0, 1), 0), Some(0x27 % 3));
        assert_eq!(pick_one(&t, Ipv4Addr::new(0, 0, 0, 1), 0), Some(0x61 % 3));
    }

    #[test]
    fn same_client_same_real() {
        let t = table(Sh, &[1, 2, 3, 4]);
        for client in clients(1000, 10) {
            let first = pick_one(&t, client, 1);
            assert!(first.is_some());
            for port in [2, 1000, 65535] {
                // Without the port flag the port does not matter.
                assert_eq!(pick_one(&t, client, port), first);
            }
        }
    }

    #[test]
    fn port_flag_spreads_one_client() {
        let flags = SchedFlags {
            port: true,
            ..SchedFlags::default()
        };
        let t = sh_table(flags, &[1, 1, 1, 1]);
        let client = Ipv4Addr::new(198, 51, 100, 7);
        let mut seen = [0usize; 4];
        for port in 1024..2048 {
            seen[pick_one(&t, client, port).unwrap()] += 1;
        }
        assert!(seen.iter().all(|&n| n >= 200), "{seen:?}");
    }

    #[test]
    fn spreads_clients_evenly() {
        let n = 10;
        let t = table(Sh, &vec![1; n]);
        let clients = clients(100_000, 11);
        let mut seen = vec![0usize; n];
        for &c in &clients {
            seen[pick_one(&t, c, 0).unwrap()] += 1;
        }
        let equal = clients.len() / n;
        // 256 buckets over 10 reals: 25 or 26 each, so up to 2.3% from
        // equal before any hashing noise.
        for &count in &seen {
            assert!(count.abs_diff(equal) * 100 < equal * 5, "{seen:?}");
        }
        // Weights 1:3 give 64 and 192 buckets: a quarter and three.
        let t = table(Sh, &[1, 3]);
        let heavy = clients
            .iter()
            .filter(|&&c| pick_one(&t, c, 0) == Some(1))
            .count();
        let share = heavy as f64 / clients.len() as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }

    #[test]
    fn fallback() {
        // Real 1 (weight 0) holds every third bucket.
        let weights = [1, 0, 1];
        let plain = sh_table(SchedFlags::default(), &weights);
        let fallback = sh_table(
            SchedFlags {
                fallback: true,
                ..SchedFlags::default()
            },
            &weights,
        );
        let all = table(Sh, &[1, 1, 1]);
        let clients = clients(30_000, 12);
        let (mut refused, mut moved) = (0, [0usize; 3]);
        for &c in &clients {
            let home = pick_one(&all, c, 0).unwrap();
            let got = pick_one(&fallback, c, 0);
            if home == 1 {
                refused += 1;
                assert_eq!(pick_one(&plain, c, 0), None);
                moved[got.unwrap()] += 1;
            } else {
                // Clients of available reals stay where they are.
                assert_eq!(pick_one(&plain, c, 0), Some(home));
                assert_eq!(got, Some(home));
            }
        }
        assert!(refused > 8_000, "{refused}");
        // IPVS's walk is linear from bucket 2 * first: with the reals
        // filled in order, every bucket of real 1 falls through to real 2.
        // (mh's fallback spreads them.)
        assert_eq!(moved, [0, 0, refused]);
    }
}
