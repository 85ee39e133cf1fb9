//! Schedulers: choose the real server for a new connection, with the
//! semantics of IPVS's `rr`, `wrr`, `lc`, `wlc`, `sed`, `nq`, `sh` and `mh`.
//!
//! Scheduling data is split by who writes it:
//! - [`SchedTable`], per service: immutable, built on the control side (it
//!   may allocate: the sh buckets, the Maglev table) and shared read-only by
//!   every worker.
//! - [`SchedState`], per worker and service: the little that changes on
//!   every pick (the rr position, the wrr scores). Each worker owns its own,
//!   so nothing is shared or locked.
//! - [`ConnCounts`], per worker: its connection counts by real server (IPVS
//!   ActiveConn/InActConn), read by lc, wlc, sed and nq.
//!
//! [`pick`] never allocates and never panics. It is O(reals) for rr, wrr,
//! lc, wlc, sed and nq, and O(1) for sh and mh; their `fallback` flag adds a
//! walk bounded by the table size, taken only when the hashed real is
//! unavailable.
//!
//! As in IPVS, a real server with weight 0 gets no new connections from any
//! scheduler. sh and mh depend only on the configuration and the client, so
//! every worker and every sluice node with the same real servers picks the
//! same real for the same client; the others depend on per-worker state.
//!
//! One file per family: `rr`, `wrr`, `conns` (lc, wlc, sed, nq), `sh`,
//! `mh`, and `flags` for `ipvsadm --sched-flags`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use super::ParseError;

mod conns;
mod flags;
mod mh;
mod rr;
mod sh;
mod wrr;

pub use flags::SchedFlags;
pub use mh::{is_valid_mh_table_size, DEFAULT_MH_TABLE_SIZE, MAX_MH_TABLE_SIZE};

/// A scheduling method, named as ipvsadm names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// Round robin over the real servers with weight > 0 (IPVS
    /// `ip_vs_rr.c`).
    Rr,
    /// Weighted round robin: over `sum(weights)` picks each real server is
    /// picked exactly `weight` times, spread out rather than in bursts
    /// (IPVS `ip_vs_wrr.c` shares, nginx's smooth order).
    Wrr,
    /// Least connections: the fewest `active * 256 + inactive` (IPVS
    /// `ip_vs_lc.c`).
    Lc,
    /// Weighted least connections: the least `(active * 256 + inactive) /
    /// weight` (IPVS `ip_vs_wlc.c`; ipvsadm's default).
    Wlc,
    /// Shortest expected delay: the least `(active + 1) / weight` (IPVS
    /// `ip_vs_sed.c`).
    Sed,
    /// Never queue: a real server with no active connection if there is
    /// one, else as sed (IPVS `ip_vs_nq.c`).
    Nq,
    /// Source hashing: a 256-bucket table indexed by a hash of the client
    /// address (IPVS `ip_vs_sh.c`).
    Sh,
    /// Maglev hashing: consistent hashing of the client address over a
    /// large prime-sized table (IPVS `ip_vs_mh.c`).
    Mh,
}

impl SchedulerKind {
    /// Every scheduler, in ipvsadm's documentation order.
    pub const ALL: [SchedulerKind; 8] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Sh,
        SchedulerKind::Mh,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Mh => "mh",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

serde_as_text!(SchedulerKind);

impl FromStr for SchedulerKind {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<SchedulerKind, ParseError> {
        SchedulerKind::ALL
            .into_iter()
            .find(|kind| s.eq_ignore_ascii_case(kind.as_str()))
            .ok_or_else(|| ParseError::new("scheduler", s, "rr, wrr, lc, wlc, sed, nq, sh, mh"))
    }
}

/// Immutable per-service scheduling data, built on the control side (may
/// allocate, e.g. the Maglev table); shared read-only by every worker.
#[derive(Clone, PartialEq, Eq)]
pub struct SchedTable {
    kind: SchedulerKind,
    flags: SchedFlags,
    /// Effective weight of each real server, by index; 0 = not available
    /// for new connections.
    weights: Box<[u32]>,
    /// sh: the 256 buckets; mh: the Maglev lookup table; empty for the
    /// other schedulers, and for sh and mh when no real server is in the
    /// table. Each entry is an index into `weights`.
    lookup: Box<[u32]>,
    /// Whether `lookup` holds at least one available real server, so the
    /// fallback walk can give up at once rather than probe the whole table
    /// for nothing.
    lookup_has_available: bool,
    /// Whether any real server may take new connections.
    any_available: bool,
}

impl SchedTable {
    /// `reals[i]` = (address:port, effective weight; 0 = not available for
    /// new connections). `mh_size` must be prime (default 65537); see
    /// [`is_valid_mh_table_size`].
    ///
    /// Never fails: an `mh_size` that is not a prime in
    /// `2..=MAX_MH_TABLE_SIZE` is replaced by the next prime up (within that
    /// range), deterministically, so a bad value can neither hang the
    /// Maglev fill nor exhaust memory; configuration should reject it first.
    /// `flags` are kept as given and ignored by schedulers that take none.
    pub fn new(
        kind: SchedulerKind,
        flags: SchedFlags,
        reals: &[(SocketAddrV4, u32)],
        mh_size: u32,
    ) -> SchedTable {
        let weights: Vec<u32> = reals.iter().map(|&(_, weight)| weight).collect();
        SchedTable::with_table_weights(kind, flags, reals, &weights, mh_size)
    }

    /// As [`SchedTable::new`], but the sh and mh tables are laid out from
    /// `table_weights[i]` (missing entries count as 0) while availability
    /// still comes from the effective weights in `reals`.
    ///
    /// `new` lays the tables out from the effective weights, which is what
    /// IPVS does for sh, and for mh when a real server is added with weight
    /// 0: setting a weight to 0 reshapes the table. IPVS's mh instead keeps
    /// each real server's latest non-zero weight (`last_weight`) for the
    /// layout, so a quiesced or failed real keeps its slots: its clients get
    /// no real, or with `fallback` are spread over the others, while every
    /// other client stays where it was, and all return when it does. Pass
    /// those weights here to get that behaviour.
    pub fn with_table_weights(
        kind: SchedulerKind,
        flags: SchedFlags,
        reals: &[(SocketAddrV4, u32)],
        table_weights: &[u32],
        mh_size: u32,
    ) -> SchedTable {
        // Lookup entries are u32 indices, and u32::MAX marks an empty slot
        // while the Maglev table fills. A service cannot have that many
        // real servers anyway (`ServiceTable` checks the count fits a u32).
        let reals = &reals[..reals.len().min(u32::MAX as usize)];
        let weights: Box<[u32]> = reals.iter().map(|&(_, weight)| weight).collect();
        let table_weight = |i: usize| table_weights.get(i).copied().unwrap_or(0);
        let lookup = match kind {
            SchedulerKind::Sh => sh::build(reals.len(), table_weight),
            SchedulerKind::Mh => mh::build(reals, table_weight, mh_size),
            _ => Box::default(),
        };
        let any_available = weights.iter().any(|&w| w > 0);
        let mut table = SchedTable {
            kind,
            flags,
            weights,
            lookup,
            lookup_has_available: false,
            any_available,
        };
        table.lookup_has_available = table.lookup.iter().any(|&r| table.is_available(r));
        table
    }

    pub fn kind(&self) -> SchedulerKind {
        self.kind
    }

    pub fn flags(&self) -> SchedFlags {
        self.flags
    }

    /// Whether some real server may take new connections (none: every new
    /// connection is refused).
    #[inline]
    pub fn has_available(&self) -> bool {
        self.any_available
    }

    /// Whether real server `real` may take new connections.
    fn is_available(&self, real: u32) -> bool {
        self.weights
            .get(real as usize)
            .is_some_and(|&weight| weight > 0)
    }
}

impl fmt::Debug for SchedTable {
    // The Maglev table has 65537 entries by default: show its size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedTable")
            .field("kind", &self.kind)
            .field("flags", &self.flags)
            .field("weights", &self.weights)
            .field("lookup_len", &self.lookup.len())
            .field("lookup_has_available", &self.lookup_has_available)
            .finish()
    }
}

/// Per-worker mutable state for one service (rr position, wrr scores).
/// Cheap to build.
#[derive(Debug, Clone)]
pub struct SchedState {
    /// rr: index to try first on the next pick.
    next: usize,
    /// wrr: the smooth weighted round robin scores, one per real server;
    /// empty for every other scheduler.
    scores: Box<[i64]>,
}

impl SchedState {
    pub fn new(table: &SchedTable) -> SchedState {
        let scores = match table.kind {
            SchedulerKind::Wrr => vec![0; table.weights.len()].into_boxed_slice(),
            _ => Box::default(),
        };
        SchedState { next: 0, scores }
    }
}

/// Connection counts of this worker, by real index (IPVS
/// ActiveConn/InActConn). Read by lc, wlc, sed and nq only.
pub trait ConnCounts {
    /// Connections in an active state (TCP established) to real `real`.
    fn active(&self, real: usize) -> u32;
    /// Other connections to real `real` (TCP closing or closed, UDP).
    fn inactive(&self, real: usize) -> u32;
}

/// No connections anywhere: for callers of the schedulers that do not read
/// counts (rr, wrr, sh, mh).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConns;

impl ConnCounts for NoConns {
    fn active(&self, _real: usize) -> u32 {
        0
    }

    fn inactive(&self, _real: usize) -> u32 {
        0
    }
}

/// The real (index into `reals`) for a new connection from
/// `client`:`client_port`; None when nothing is available. Never allocates,
/// never panics (even given a `state` built for another table).
pub fn pick(
    table: &SchedTable,
    state: &mut SchedState,
    client: Ipv4Addr,
    client_port: u16,
    conns: &impl ConnCounts,
) -> Option<usize> {
    let weights = &table.weights;
    match table.kind {
        SchedulerKind::Rr => rr::pick(weights, &mut state.next),
        SchedulerKind::Wrr => wrr::pick(weights, &mut state.scores),
        SchedulerKind::Lc => conns::pick_lc(weights, conns),
        SchedulerKind::Wlc => conns::pick_wlc(weights, conns),
        SchedulerKind::Sed => conns::pick_sed(weights, conns),
        SchedulerKind::Nq => conns::pick_nq(weights, conns),
        SchedulerKind::Sh => sh::pick(table, client, client_port),
        SchedulerKind::Mh => mh::pick(table, client, client_port),
    }
}

/// The reals the next two `pick`s will choose whoever the client is,
/// without choosing them: for rr and wrr, whose picks follow a sequence.
/// None for the schedulers that look at the client or at connection
/// counts, whose picks cannot be told in advance. A hint for prefetching
/// only.
pub fn peek_two(table: &SchedTable, state: &SchedState) -> Option<(usize, usize)> {
    let weights = &table.weights;
    match table.kind {
        SchedulerKind::Rr => rr::peek_two(weights, state.next),
        SchedulerKind::Wrr => wrr::peek_two(weights, &state.scores),
        _ => None,
    }
}

/// Helpers shared by the tests of every scheduler file.
#[cfg(test)]
mod test_util {
    use super::*;

    /// Connection counts given as (active, inactive) per real.
    pub(super) struct Counts(pub(super) Vec<(u32, u32)>);

    impl ConnCounts for Counts {
        fn active(&self, real: usize) -> u32 {
            self.0.get(real).map_or(0, |c| c.0)
        }

        fn inactive(&self, real: usize) -> u32 {
            self.0.get(real).map_or(0, |c| c.1)
        }
    }

    /// Real servers 192.168.0.1:80, 192.168.0.2:80, ... with these weights.
    pub(super) fn reals(weights: &[u32]) -> Vec<(SocketAddrV4, u32)> {
        weights
            .iter()
            .zip(1u32..)
            .map(|(&w, i)| (real_addr(i), w))
            .collect()
    }

    pub(super) fn real_addr(i: u32) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(0xc0a8_0000 + i), 80)
    }

    pub(super) fn table(kind: SchedulerKind, weights: &[u32]) -> SchedTable {
        SchedTable::new(
            kind,
            SchedFlags::default(),
            &reals(weights),
            DEFAULT_MH_TABLE_SIZE,
        )
    }

    /// `n` picks with no connections, from client 0.0.0.0:0.
    pub(super) fn picks(kind: SchedulerKind, weights: &[u32], n: usize) -> Vec<usize> {
        let t = table(kind, weights);
        let mut s = SchedState::new(&t);
        (0..n)
            .map(|_| pick(&t, &mut s, Ipv4Addr::UNSPECIFIED, 0, &NoConns).unwrap())
            .collect()
    }

    pub(super) fn counts(picks: &[usize], servers: usize) -> Vec<usize> {
        let mut c = vec![0; servers];
        for &p in picks {
            c[p] += 1;
        }
        c
    }

    /// Deterministic pseudo-random client addresses (splitmix64), so the
    /// statistical tests give the same figures on every run.
    pub(super) fn clients(n: usize, seed: u64) -> Vec<Ipv4Addr> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                Ipv4Addr::from((z >> 32) as u32)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use crate::lb::alloc_count::allocations_during;

    #[test]
    fn names() {
        for kind in SchedulerKind::ALL {
            assert_eq!(kind.as_str().parse::<SchedulerKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!("WRR".parse::<SchedulerKind>(), Ok(SchedulerKind::Wrr));
        assert_eq!("Mh".parse::<SchedulerKind>(), Ok(SchedulerKind::Mh));
        let err = "lblc".parse::<SchedulerKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown scheduler \"lblc\" (expected one of: rr, wrr, lc, wlc, sed, nq, sh, mh)"
        );
    }

    #[test]
    fn nothing_to_pick() {
        for kind in SchedulerKind::ALL {
            for weights in [&[][..], &[0, 0, 0][..]] {
                let t = table(kind, weights);
                let mut s = SchedState::new(&t);
                for client in clients(50, 1) {
                    assert_eq!(pick(&t, &mut s, client, 1, &NoConns), None, "{kind}");
                }
            }
            // With the fallback flag too.
            let flags = SchedFlags {
                fallback: true,
                port: true,
            };
            let t = SchedTable::new(kind, flags, &reals(&[0, 0]), DEFAULT_MH_TABLE_SIZE);
            let mut s = SchedState::new(&t);
            assert_eq!(pick(&t, &mut s, Ipv4Addr::LOCALHOST, 1, &NoConns), None);
        }
    }

    #[test]
    fn weight_zero_is_never_picked() {
        let counts = Counts(vec![(9, 9), (0, 0), (9, 9)]);
        for kind in SchedulerKind::ALL {
            let t = table(kind, &[1, 0, 1]);
            let mut s = SchedState::new(&t);
            for client in clients(2000, 2) {
                let real = pick(&t, &mut s, client, 7, &counts);
                // sh without fallback refuses the clients of the quiesced
                // real's bucket; everyone else gets a real.
                assert_ne!(real, Some(1), "{kind}");
                if kind != SchedulerKind::Sh {
                    assert!(real.is_some(), "{kind}");
                }
            }
        }
    }

    #[test]
    fn state_from_another_table_does_not_panic() {
        for kind in SchedulerKind::ALL {
            let small = table(kind, &[1]);
            let big = table(kind, &[1, 2, 3, 4]);
            let mut s = SchedState::new(&small);
            for client in clients(20, 3) {
                let real = pick(&big, &mut s, client, 0, &NoConns);
                assert!(real.is_some_and(|r| r < 4), "{kind}");
            }
            let mut s = SchedState::new(&big);
            for _ in 0..20 {
                assert_eq!(
                    pick(&small, &mut s, Ipv4Addr::LOCALHOST, 0, &NoConns),
                    Some(0)
                );
            }
        }
    }

    #[test]
    fn pick_does_not_allocate() {
        let counts = Counts(vec![(3, 1), (0, 0), (5, 2), (1, 9)]);
        for kind in SchedulerKind::ALL {
            for fallback in [false, true] {
                let flags = SchedFlags {
                    fallback,
                    port: true,
                };
                // Real 1 is laid out in the table but unavailable, so the
                // sh and mh fallback walks run too.
                let t = SchedTable::with_table_weights(
                    kind,
                    flags,
                    &reals(&[3, 0, 2, 1]),
                    &[3, 3, 2, 1],
                    DEFAULT_MH_TABLE_SIZE,
                );
                let mut s = SchedState::new(&t);
                let clients = clients(1000, 4);
                let (_, allocations) = allocations_during(|| {
                    for (&client, port) in clients.iter().zip(1000u16..) {
                        let _ = pick(&t, &mut s, client, port, &counts);
                    }
                });
                assert_eq!(allocations, 0, "{kind}");
            }
        }
    }

    #[test]
    fn peek_two_tells_what_rr_and_wrr_pick_next_and_nothing_else() {
        for kind in SchedulerKind::ALL {
            for weights in [&[5, 0, 3, 2, 1][..], &[1, 3], &[2, 2, 2], &[0, 4]] {
                let t = table(kind, weights);
                let mut s = SchedState::new(&t);
                for _ in 0..50 {
                    let peeked = peek_two(&t, &s);
                    let mut ahead = s.clone();
                    let first = pick(&t, &mut ahead, Ipv4Addr::UNSPECIFIED, 0, &NoConns);
                    let second = pick(&t, &mut ahead, Ipv4Addr::UNSPECIFIED, 0, &NoConns);
                    match kind {
                        SchedulerKind::Rr | SchedulerKind::Wrr => {
                            assert_eq!(peeked, first.zip(second), "{kind} {weights:?}")
                        }
                        _ => assert_eq!(peeked, None, "{kind}"),
                    }
                    pick(&t, &mut s, Ipv4Addr::UNSPECIFIED, 0, &NoConns);
                }
            }
        }
        // Nothing to pick: nothing to peek.
        let t = table(SchedulerKind::Wrr, &[0, 0]);
        assert_eq!(peek_two(&t, &SchedState::new(&t)), None);
    }
}
