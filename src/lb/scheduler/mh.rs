//! `mh`: Maglev hashing (IPVS `ip_vs_mh.c`; Eisenbud et al., "Maglev: A
//! Fast and Reliable Software Network Load Balancer", NSDI 2016, section
//! 3.4).
//!
//! Every real server has its own order of preference over the M slots of
//! the lookup table (M prime): slot `(offset + j * skip) mod M` for j = 0,
//! 1, ..., with `offset` in [0, M) and `skip` in [1, M) from two hashes of
//! its address:port; since M is prime that visits every slot once. The
//! table fills in rounds: each real server in turn takes its next preferred
//! slot that is still free, until none is. A client's real server is the
//! one in the slot named by a hash of its address (and port, with the
//! `port` flag): O(1), and nearly equal shares. Because the preferences do
//! not depend on the other real servers, adding or removing one moves
//! little more than the clients that must move (the disruption tests below
//! measure it).
//!
//! Weights as in IPVS: per round a real server takes `weight / gcd` slots
//! instead of one, scaled down (by a right shift, at least 1) so that no
//! real takes more than about sqrt(M) slots in a round, which would skew
//! the shares of the last, partial round; weight-0 real servers are left
//! out.
//!
//! Deterministic from the configuration alone: the hashes are fixed
//! functions with fixed keys and the fill goes in address order, so every
//! worker and every sluice node with the same real servers and weights (in
//! any order) and table size builds the same table and picks the same real
//! for the same client. The constants below are therefore part of
//! sluice's behaviour: changing any of them moves almost every client.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::SchedTable;

/// The Maglev paper's table size, a prime.
pub const DEFAULT_MH_TABLE_SIZE: u32 = 65537;

/// The largest table size accepted (the largest prime below 2^24): 64 MiB
/// of table for one service.
pub const MAX_MH_TABLE_SIZE: u32 = 16_777_213;

/// Whether `size` can be used as the Maglev table size: a prime (so every
/// real server's preferences cover the whole table) no larger than
/// [`MAX_MH_TABLE_SIZE`].
pub fn is_valid_mh_table_size(size: u32) -> bool {
    size <= MAX_MH_TABLE_SIZE && is_prime(size)
}

fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    (3u32..)
        .step_by(2)
        .take_while(|&d| u64::from(d) * u64::from(d) <= u64::from(n))
        .all(|d| !n.is_multiple_of(d))
}

/// The table size used for a requested one: itself when valid, else the
/// next prime up within [2, MAX_MH_TABLE_SIZE] (which ends there, as that
/// bound is prime).
fn table_size(requested: u32) -> u32 {
    let mut size = requested.clamp(2, MAX_MH_TABLE_SIZE);
    while !is_prime(size) {
        size += 1;
    }
    size
}

/// Keys of the three hashes: the first 64 bits of the fractional parts of
/// the square roots of 2, 3 and 5 (as in SHA-512's initial values), chosen
/// only to be fixed and unrelated.
const KEY_OFFSET: u64 = 0x6a09_e667_f3bc_c908;
const KEY_SKIP: u64 = 0xbb67_ae85_84ca_a73b;
const KEY_CLIENT: u64 = 0x3c6e_f372_fe94_f82b;
/// Spreads the fallback offsets over the key space (2^64 / golden ratio,
/// odd, so distinct offsets give distinct inputs).
const OFFSET_STEP: u64 = 0x9e37_79b9_7f4a_7c15;

/// MurmurHash3's 64-bit finalizer (`fmix64`): a bijection on u64 in which
/// every input bit flips each output bit with probability about 1/2, so
/// neighbouring addresses get unrelated hashes. Fixed, unlike std's
/// `RandomState`, which is seeded per process.
fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// Address and port in the low 48 bits.
fn key(addr: Ipv4Addr, port: u16) -> u64 {
    (u64::from(u32::from(addr)) << 16) | u64::from(port)
}

/// The client's hash; `offset` 0 is its slot, the others re-hash it for
/// the fallback (as IPVS adds the offset to the hashed value).
fn client_hash(key: u64, offset: u32) -> u64 {
    mix64((key ^ KEY_CLIENT).wrapping_add(u64::from(offset).wrapping_mul(OFFSET_STEP)))
}

/// Maps a hash onto [0, n) with a multiply and a shift rather than a
/// division (Lemire's reduction of its top 32 bits).
fn reduce(hash: u64, n: u32) -> u32 {
    (((hash >> 32) * u64::from(n)) >> 32) as u32
}

/// One real server's walk through its preferences while the table fills.
struct Preferences {
    addr: SocketAddrV4,
    real: u32,
    /// Its next preferred slot (the paper's `permutation[i][next[i]]`).
    slot: usize,
    skip: usize,
    /// Slots taken per round.
    turns: u32,
}

impl Preferences {
    fn new(addr: SocketAddrV4, real: u32, turns: u32, size: u32) -> Preferences {
        let key = key(*addr.ip(), addr.port());
        Preferences {
            addr,
            real,
            slot: reduce(mix64(key ^ KEY_OFFSET), size) as usize,
            // In [1, size): never 0, so the walk moves.
            skip: reduce(mix64(key ^ KEY_SKIP), size - 1) as usize + 1,
            turns,
        }
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Number of bits of `x` (the kernel's `fls`).
fn bit_len(x: u32) -> u32 {
    u32::BITS - x.leading_zeros()
}

/// The most bits a real server's turns per round may have: half the bits
/// that number the table's slots (ceil(log2(size))), rounded down. This is
/// IPVS's `IP_VS_MH_TAB_BITS` for
/// each of its table sizes (6 for its default 4093), carried over to any
/// size: 8 for 65537, so at most 255 turns a round.
fn turn_bits(size: u32) -> u32 {
    bit_len(size - 1) / 2
}

/// The Maglev table for `reals` laid out from `table_weight(i)` (those
/// with weight 0 are left out), of the size [`table_size`] makes of
/// `requested_size`; empty when every weight is 0. With more real servers
/// than slots, the last in address order get none.
pub(super) fn build(
    reals: &[(SocketAddrV4, u32)],
    table_weight: impl Fn(usize) -> u32,
    requested_size: u32,
) -> Box<[u32]> {
    let size = table_size(requested_size);
    let weights = || (0..reals.len()).map(&table_weight);
    let gcd = weights().fold(0, gcd);
    if gcd == 0 {
        return Box::default();
    }
    let max_turns = weights().max().unwrap_or(0) / gcd;
    let shift = bit_len(max_turns).saturating_sub(turn_bits(size));
    let mut prefs: Vec<Preferences> = reals
        .iter()
        .zip(weights())
        .zip(0u32..)
        .filter(|&((_, weight), _)| weight > 0)
        .map(|((&(addr, _), weight), real)| {
            let turns = ((weight / gcd) >> shift).max(1);
            Preferences::new(addr, real, turns, size)
        })
        .collect();
    // The fill order breaks ties between real servers that want the same
    // slot: make it independent of the configuration's order.
    prefs.sort_by_key(|p| p.addr);

    const FREE: u32 = u32::MAX;
    let m = size as usize;
    let mut lookup = vec![FREE; m];
    let mut filled = 0;
    // Every round takes at least one slot (there is at least one real
    // server, with at least one turn), so the fill ends; and each walk
    // finds a free slot, as a prime size makes it visit them all.
    'fill: loop {
        for p in &mut prefs {
            for _ in 0..p.turns {
                while lookup[p.slot] != FREE {
                    p.slot = (p.slot + p.skip) % m;
                }
                lookup[p.slot] = p.real;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
    }
    lookup.into_boxed_slice()
}

/// The real server in the client's slot. When it is unavailable (weight 0,
/// possible only for a table laid out with other weights): without
/// `fallback`, None; with it, as IPVS's `ip_vs_mh_get_fallback`, re-hash the
/// client with offsets running through every value from its slot number
/// on, and take the first available real server found. Each probe lands on
/// a random slot, so an unavailable real server's clients spread over all
/// the others in proportion to their shares; the walk is bounded by the
/// table size and expected to end within (table size / available slots)
/// probes.
pub(super) fn pick(table: &SchedTable, client: Ipv4Addr, client_port: u16) -> Option<usize> {
    // Fits: the size is at most MAX_MH_TABLE_SIZE.
    let size = table.lookup.len() as u32;
    let port = if table.flags.port { client_port } else { 0 };
    let key = key(client, port);
    let first = reduce(client_hash(key, 0), size);
    let real = *table.lookup.get(first as usize)?;
    if table.is_available(real) {
        return Some(real as usize);
    }
    if !table.flags.fallback || !table.lookup_has_available {
        return None;
    }
    (0..size)
        .map(|step| reduce(client_hash(key, (first + step) % size), size))
        .filter_map(|slot| table.lookup.get(slot as usize).copied())
        .find(|&real| table.is_available(real))
        .map(|real| real as usize)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{clients, real_addr, reals};
    use super::super::{pick as pick_any, NoConns, SchedFlags, SchedState, SchedulerKind::Mh};
    use super::*;

    fn mh_table(reals: &[(SocketAddrV4, u32)], size: u32) -> SchedTable {
        SchedTable::new(Mh, SchedFlags::default(), reals, size)
    }

    fn pick_one(t: &SchedTable, client: Ipv4Addr, port: u16) -> Option<usize> {
        pick_any(t, &mut SchedState::new(t), client, port, &NoConns)
    }

    /// The address each client is sent to (comparable across tables whose
    /// real server indices differ).
    fn assignment(
        reals: &[(SocketAddrV4, u32)],
        t: &SchedTable,
        clients: &[Ipv4Addr],
    ) -> Vec<SocketAddrV4> {
        clients
            .iter()
            .map(|&c| reals[pick_one(t, c, 0).unwrap()].0)
            .collect()
    }

    fn slot_counts(t: &SchedTable, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &r in t.lookup.iter() {
            counts[r as usize] += 1;
        }
        counts
    }

    /// FNV-1a over the table's entries, to pin a whole table in a test.
    fn digest(lookup: &[u32]) -> u64 {
        lookup
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .fold(0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    }

    #[test]
    fn sizes() {
        assert!(is_valid_mh_table_size(DEFAULT_MH_TABLE_SIZE));
        assert!(is_valid_mh_table_size(MAX_MH_TABLE_SIZE));
        assert!(is_valid_mh_table_size(251));
        assert!(is_valid_mh_table_size(2));
        for bad in [0, 1, 4, 65536, 65535, 16_777_259] {
            assert!(!is_valid_mh_table_size(bad), "{bad}");
        }
        assert_eq!(table_size(65537), 65537);
        assert_eq!(table_size(65536), 65537);
        assert_eq!(table_size(4092), 4093);
        assert_eq!(table_size(0), 2);
        assert_eq!(table_size(u32::MAX), MAX_MH_TABLE_SIZE);
        let t = mh_table(&reals(&[1, 1]), 1000);
        assert_eq!(t.lookup.len(), 1009);
        // IPVS's turn bits for its table sizes.
        for (size, bits) in [(251, 4), (4093, 6), (65521, 8), (131_071, 8), (65537, 8)] {
            assert_eq!(turn_bits(size), bits, "{size}");
        }
    }

    #[test]
    fn deterministic() {
        let r = reals(&[1, 2, 3, 1, 5]);
        let a = mh_table(&r, DEFAULT_MH_TABLE_SIZE);
        let b = mh_table(&r.clone(), DEFAULT_MH_TABLE_SIZE);
        assert_eq!(a, b);
        assert!(a.lookup == b.lookup);
        // The order in which the real servers are listed does not matter.
        let mut shuffled = r.clone();
        shuffled.reverse();
        shuffled.swap(0, 2);
        let c = mh_table(&shuffled, DEFAULT_MH_TABLE_SIZE);
        let clients = clients(20_000, 20);
        assert_eq!(
            assignment(&r, &a, &clients),
            assignment(&shuffled, &c, &clients)
        );
    }

    #[test]
    fn golden() {
        // Three real servers 10.0.0.1:80..10.0.0.3:80 of weight 1. The
        // expected values were computed by a separate implementation of
        // this file's description (Python), not by this code.
        let r: Vec<_> = (1..=3)
            .map(|i| (SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, i), 80), 1))
            .collect();
        let offsets: Vec<_> = r
            .iter()
            .map(|&(a, _)| Preferences::new(a, 0, 1, DEFAULT_MH_TABLE_SIZE))
            .map(|p| (p.slot, p.skip))
            .collect();
        assert_eq!(offsets, GOLDEN_PREFERENCES);
        let t = mh_table(&r, 251);
        assert_eq!(t.lookup[..16], GOLDEN_251_HEAD);
        assert_eq!(digest(&t.lookup), GOLDEN_251_DIGEST);
        let t = mh_table(&r, DEFAULT_MH_TABLE_SIZE);
        assert_eq!(digest(&t.lookup), GOLDEN_65537_DIGEST);
        let picks: Vec<_> = [
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            Ipv4Addr::new(198, 51, 100, 77),
            Ipv4Addr::new(203, 0, 113, 200),
            Ipv4Addr::new(10, 1, 2, 3),
            Ipv4Addr::new(8, 8, 8, 8),
        ]
        .into_iter()
        .map(|c| pick_one(&t, c, 0).unwrap())
        .collect();
        assert_eq!(picks, GOLDEN_PICKS);
        let flags = SchedFlags {
            port: true,
            ..SchedFlags::default()
        };
        let t = SchedTable::new(Mh, flags, &r, DEFAULT_MH_TABLE_SIZE);
        let picks: Vec<_> = (40000..40006)
            .map(|port| pick_one(&t, Ipv4Addr::new(192, 0, 2, 1), port).unwrap())
            .collect();
        assert_eq!(picks, GOLDEN_PORT_PICKS);
    }

    /// (offset, skip) of each real server for the default table size.
    const GOLDEN_PREFERENCES: [(usize, usize); 3] =
        [(47682, 64914), (40701, 33155), (63091, 65407)];
    const GOLDEN_251_HEAD: [u32; 16] = [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1];
    const GOLDEN_251_DIGEST: u64 = 0xbc6d_b6fb_80b6_b927;
    const GOLDEN_65537_DIGEST: u64 = 0xc51c_d5ea_ea83_bcc7;
    const GOLDEN_PICKS: [usize; 6] = [1, 1, 2, 1, 1, 2];
    const GOLDEN_PORT_PICKS: [usize; 6] = [2, 0, 0, 0, 2, 2];

    #[test]
    fn equal_weights_equal_shares() {
        for n in [3, 10, 50] {
            let t = mh_table(&reals(&vec![1; n]), DEFAULT_MH_TABLE_SIZE);
            // One slot per real per round: the shares differ by at most one
            // slot.
            let slots = slot_counts(&t, n);
            let (min, max) = (slots.iter().min().unwrap(), slots.iter().max().unwrap());
            assert!(max - min <= 1, "{slots:?}");
            let clients = clients(100_000, 21);
            let mut seen = vec![0usize; n];
            for &c in &clients {
                seen[pick_one(&t, c, 0).unwrap()] += 1;
            }
            let equal = clients.len() / n;
            // Hashing noise only: 5 standard deviations for n = 50.
            for &count in &seen {
                assert!(count.abs_diff(equal) * 100 < equal * 7, "{n}: {seen:?}");
            }
        }
    }

    #[test]
    fn weighted_shares() {
        let cases: [&[u32]; 4] = [&[1, 3], &[100, 3], &[2, 4, 6], &[60001, 50000]];
        for weights in cases {
            let n = weights.len();
            let t = mh_table(&reals(weights), DEFAULT_MH_TABLE_SIZE);
            let slots = slot_counts(&t, n);
            let total: u32 = weights.iter().sum();
            for (i, &w) in weights.iter().enumerate() {
                let want = f64::from(w) / f64::from(total);
                let got = slots[i] as f64 / t.lookup.len() as f64;
                assert!(
                    (got - want).abs() < 0.01 * want.max(0.1),
                    "{weights:?}: {slots:?}"
                );
            }
        }
        // Beyond 8 bits of weight/gcd the turns are shifted down, as IPVS
        // does at 6 bits for its table: 1000:1 takes 250:1 turns.
        let t = mh_table(&reals(&[1000, 1]), DEFAULT_MH_TABLE_SIZE);
        let slots = slot_counts(&t, 2);
        assert!(
            (slots[0] as f64 / slots[1] as f64 - 250.0).abs() < 5.0,
            "{slots:?}"
        );
    }

    #[test]
    fn weight_zero_is_left_out() {
        // Quiescing a real server with `new` is the same as removing it.
        let r = reals(&[1, 1, 0, 1]);
        let without: Vec<_> = r.iter().copied().filter(|&(_, w)| w > 0).collect();
        let clients = clients(20_000, 22);
        let a = mh_table(&r, DEFAULT_MH_TABLE_SIZE);
        let b = mh_table(&without, DEFAULT_MH_TABLE_SIZE);
        assert!(a.lookup.iter().all(|&real| real != 2));
        assert_eq!(
            assignment(&r, &a, &clients),
            assignment(&without, &b, &clients)
        );
    }

    #[test]
    fn fallback_spreads_an_unavailable_reals_clients() {
        let n = 10;
        let mut r = reals(&vec![1; n]);
        r[3].1 = 0;
        let layout = vec![1; n];
        let build = |fallback| {
            let flags = SchedFlags {
                fallback,
                ..SchedFlags::default()
            };
            SchedTable::with_table_weights(Mh, flags, &r, &layout, DEFAULT_MH_TABLE_SIZE)
        };
        let (plain, fallback) = (build(false), build(true));
        let all = mh_table(&reals(&vec![1; n]), DEFAULT_MH_TABLE_SIZE);
        let clients = clients(100_000, 23);
        let mut moved = vec![0usize; n];
        for &c in &clients {
            let home = pick_one(&all, c, 0).unwrap();
            if home == 3 {
                assert_eq!(pick_one(&plain, c, 0), None);
                moved[pick_one(&fallback, c, 0).unwrap()] += 1;
            } else {
                // Nobody else moves.
                assert_eq!(pick_one(&plain, c, 0), Some(home));
                assert_eq!(pick_one(&fallback, c, 0), Some(home));
            }
        }
        let refused: usize = moved.iter().sum();
        assert_eq!(moved[3], 0);
        let equal = refused / (n - 1);
        for (i, &count) in moved.iter().enumerate().filter(|&(i, _)| i != 3) {
            assert!(count.abs_diff(equal) * 100 < equal * 20, "{i}: {moved:?}");
        }
    }

    #[test]
    fn port_flag_spreads_one_client() {
        let flags = SchedFlags {
            port: true,
            ..SchedFlags::default()
        };
        let t = SchedTable::new(Mh, flags, &reals(&[1, 1, 1, 1]), DEFAULT_MH_TABLE_SIZE);
        let plain = mh_table(&reals(&[1, 1, 1, 1]), DEFAULT_MH_TABLE_SIZE);
        let client = Ipv4Addr::new(198, 51, 100, 7);
        let mut seen = [0usize; 4];
        for port in 1024..2048 {
            seen[pick_one(&t, client, port).unwrap()] += 1;
            assert_eq!(pick_one(&plain, client, port), pick_one(&plain, client, 1));
        }
        assert!(seen.iter().all(|&n| n >= 200), "{seen:?}");
    }

    #[test]
    fn more_reals_than_slots() {
        let r = reals(&[1; 5]);
        for size in [2, 3] {
            let t = mh_table(&r, size);
            assert_eq!(t.lookup.len(), size as usize);
            for c in clients(100, 24) {
                assert!(pick_one(&t, c, 0).is_some_and(|i| i < 5));
            }
        }
    }

    /// Shares of the clients that change real server when one of `n` equal
    /// real servers is removed, and when one is added.
    struct Disruption {
        removal: f64,
        /// Of `removal`, those that were on the removed real server.
        removal_from_removed: f64,
        addition: f64,
        /// Of `addition`, those that went to the new real server.
        addition_to_new: f64,
    }

    fn disruption(n: u32, clients: &[Ipv4Addr]) -> Disruption {
        let before: Vec<_> = (1..=n).map(|i| (real_addr(i), 1)).collect();
        let t_before = mh_table(&before, DEFAULT_MH_TABLE_SIZE);
        let a_before = assignment(&before, &t_before, clients);
        let share = |moved: usize| moved as f64 / clients.len() as f64;

        // Remove a real server from the middle.
        let removed = real_addr(n / 2 + 1);
        let after: Vec<_> = before
            .iter()
            .copied()
            .filter(|&(a, _)| a != removed)
            .collect();
        let t_after = mh_table(&after, DEFAULT_MH_TABLE_SIZE);
        let a_after = assignment(&after, &t_after, clients);
        let mut moved = 0;
        for (old, new) in a_before.iter().zip(&a_after) {
            // Every client of the removed real server moves; count the
            // others that move too.
            assert_ne!(*new, removed);
            moved += usize::from(old != new);
        }
        let from_removed = a_before.iter().filter(|&&a| a == removed).count();
        let removal = share(moved);

        // Add a real server.
        let added = real_addr(n + 1);
        let mut grown = before.clone();
        grown.push((added, 1));
        let t_grown = mh_table(&grown, DEFAULT_MH_TABLE_SIZE);
        let a_grown = assignment(&grown, &t_grown, clients);
        let moved = a_before
            .iter()
            .zip(&a_grown)
            .filter(|(o, n)| o != n)
            .count();
        let to_new = a_grown.iter().filter(|&&a| a == added).count();
        assert!(to_new <= moved);
        Disruption {
            removal,
            removal_from_removed: share(from_removed),
            addition: share(moved),
            addition_to_new: share(to_new),
        }
    }

    #[test]
    fn disruption_is_minimal() {
        let clients = clients(100_000, 25);
        for n in [3u32, 10, 50] {
            let d = disruption(n, &clients);
            let ideal_remove = 1.0 / f64::from(n);
            let ideal_add = 1.0 / f64::from(n + 1);
            eprintln!(
                "mh disruption, {n} equal reals, 100000 clients: remove one -> {:.2}% moved \
                 ({:.2}% were its own, ideal {:.2}%); add one -> {:.2}% moved (ideal {:.2}%), {:.2}% to the new one",
                d.removal * 100.0,
                d.removal_from_removed * 100.0,
                ideal_remove * 100.0,
                d.addition * 100.0,
                ideal_add * 100.0,
                d.addition_to_new * 100.0,
            );
            assert!(d.removal <= ideal_remove + 0.03, "{n}: {}", d.removal);
            assert!(d.addition <= ideal_add + 0.03, "{n}: {}", d.addition);
        }
    }
}
