//! Schedulers: choose the real server for a new connection (IPVS `rr` and
//! `wrr`).
//!
//! A `Scheduler` is per-worker mutable state built from a service's weights;
//! each lcore owns its own, so nothing is shared or locked. `pick` is O(number
//! of real servers) and never allocates.

use std::fmt;
use std::str::FromStr;

use super::ParseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    /// Round robin over the real servers with weight > 0.
    Rr,
    /// Weighted round robin: over `sum(weights)` picks each real server is
    /// picked exactly `weight` times, spread out rather than in bursts.
    Wrr,
    Lc,
    Wlc,
    Sed,
    Nq,
    Sh,
    Mh,
}

const NAMES: [(SchedulerKind, &str); 8] = [
    (SchedulerKind::Rr, "rr"),
    (SchedulerKind::Wrr, "wrr"),
    (SchedulerKind::Lc, "lc"),
    (SchedulerKind::Wlc, "wlc"),
    (SchedulerKind::Sed, "sed"),
    (SchedulerKind::Nq, "nq"),
    (SchedulerKind::Sh, "sh"),
    (SchedulerKind::Mh, "mh"),
];

impl SchedulerKind {
    pub fn as_str(self) -> &'static str {
        NAMES
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("?", |(_, n)| n)
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
        NAMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s))
            .map(|(k, _)| *k)
            .ok_or_else(|| ParseError::new("scheduler", s, "rr, wrr, lc, wlc, sed, nq, sh, mh"))
    }
}

/// One worker's scheduling state for one service.
#[derive(Debug, Clone)]
pub struct Scheduler {
    kind: SchedulerKind,
    weights: Box<[u32]>,
    /// wrr: nginx "smooth weighted round robin" running scores, one per real
    /// server. i64 cannot overflow: every score stays within
    /// [-sum(weights), sum(weights)] and the sum of u32 weights of at most
    /// u32::MAX servers fits.
    current: Box<[i64]>,
    /// rr: index to try first on the next pick.
    next: usize,
}

impl Scheduler {
    /// `weights[i]` is the weight of real server `i`; 0 quiesces it.
    pub fn new(kind: SchedulerKind, weights: &[u32]) -> Scheduler {
        let current = match kind {
            SchedulerKind::Wrr => vec![0; weights.len()].into_boxed_slice(),
            _ => Box::default(),
        };
        Scheduler {
            kind,
            weights: weights.into(),
            current,
            next: 0,
        }
    }

    pub fn kind(&self) -> SchedulerKind {
        self.kind
    }

    /// The index of the real server for the next connection; `None` when
    /// there are no real servers or all have weight 0.
    pub fn pick(&mut self) -> Option<usize> {
        match self.kind {
            SchedulerKind::Wrr => self.pick_wrr(),
            _ => self.pick_rr(),
        }
    }

    fn pick_rr(&mut self) -> Option<usize> {
        let n = self.weights.len();
        let start = if self.next < n { self.next } else { 0 };
        let i = (start..n).chain(0..start).find(|&i| self.weights[i] > 0)?;
        self.next = i + 1;
        Some(i)
    }

    /// Smooth weighted round robin (as in nginx): every server's score grows
    /// by its weight, the highest score wins and pays back the total. Over
    /// `sum(weights)` picks every score returns to 0, so each server is
    /// picked exactly `weight` times per cycle (IPVS `wrr` shares), and a
    /// heavy server's picks are interleaved with the others' instead of
    /// coming in a burst as with IPVS's gcd/max-weight stepping.
    fn pick_wrr(&mut self) -> Option<usize> {
        let mut total: i64 = 0;
        // (index, score) of the highest score so far; ties go to the lower
        // index.
        let mut best: Option<(usize, i64)> = None;
        for (i, (&weight, score)) in self.weights.iter().zip(self.current.iter_mut()).enumerate() {
            if weight == 0 {
                continue;
            }
            *score += i64::from(weight);
            total += i64::from(weight);
            if best.is_none_or(|(_, best_score)| *score > best_score) {
                best = Some((i, *score));
            }
        }
        let (best, _) = best?;
        if let Some(score) = self.current.get_mut(best) {
            *score -= total;
        }
        Some(best)
    }
}

// ---- Interim API (the full set of schedulers replaces this file) ----

/// ipvsadm `--sched-flags` for sh and mh: fall back to another real when
/// the chosen one is unavailable, and hash the client port too.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchedFlags {
    pub fallback: bool,
    pub port: bool,
}

impl SchedFlags {
    /// ipvsadm's `--sched-flags` text ("sh-fallback,sh-port").
    pub fn parse(kind: SchedulerKind, text: &str) -> Result<SchedFlags, ParseError> {
        let mut flags = SchedFlags::default();
        let prefix = match kind {
            SchedulerKind::Sh => "sh-",
            SchedulerKind::Mh => "mh-",
            _ => "",
        };
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word.strip_prefix(prefix).filter(|_| !prefix.is_empty()) {
                Some("fallback") => flags.fallback = true,
                Some("port") => flags.port = true,
                _ => {
                    return Err(ParseError::new(
                        "scheduler flag",
                        word,
                        "sh-fallback, sh-port (sh), mh-fallback, mh-port (mh)",
                    ))
                }
            }
        }
        Ok(flags)
    }
}

/// The default Maglev lookup table size (a prime).
pub const DEFAULT_MH_TABLE_SIZE: u32 = 65537;

/// Immutable per-service scheduling data.
#[derive(Debug, Clone)]
pub struct SchedTable {
    kind: SchedulerKind,
    flags: SchedFlags,
    weights: Box<[u32]>,
}

impl SchedTable {
    pub fn new(
        kind: SchedulerKind,
        flags: SchedFlags,
        reals: &[(std::net::SocketAddrV4, u32)],
        _mh_size: u32,
    ) -> SchedTable {
        SchedTable {
            kind,
            flags,
            weights: reals.iter().map(|r| r.1).collect(),
        }
    }
    pub fn kind(&self) -> SchedulerKind {
        self.kind
    }
    pub fn flags(&self) -> SchedFlags {
        self.flags
    }
}

/// Per-worker mutable state for one service.
#[derive(Debug, Clone)]
pub struct SchedState(Scheduler);

impl SchedState {
    pub fn new(table: &SchedTable) -> SchedState {
        SchedState(Scheduler::new(table.kind, &table.weights))
    }
}

/// Connection counts of this worker by real index.
pub trait ConnCounts {
    fn active(&self, real: usize) -> u32;
    fn inactive(&self, real: usize) -> u32;
}

pub fn pick(
    _table: &SchedTable,
    state: &mut SchedState,
    _client: std::net::Ipv4Addr,
    _client_port: u16,
    _conns: &impl ConnCounts,
) -> Option<usize> {
    state.0.pick()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::alloc_count::allocations_during;

    fn picks(kind: SchedulerKind, weights: &[u32], n: usize) -> Vec<usize> {
        let mut s = Scheduler::new(kind, weights);
        (0..n).map(|_| s.pick().unwrap()).collect()
    }

    fn counts(picks: &[usize], servers: usize) -> Vec<usize> {
        let mut c = vec![0; servers];
        for &p in picks {
            c[p] += 1;
        }
        c
    }

    fn longest_run(picks: &[usize], server: usize) -> usize {
        picks
            .split(|&p| p != server)
            .map(<[usize]>::len)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn names() {
        assert_eq!("rr".parse::<SchedulerKind>(), Ok(SchedulerKind::Rr));
        assert_eq!("WRR".parse::<SchedulerKind>(), Ok(SchedulerKind::Wrr));
        assert!("xx".parse::<SchedulerKind>().is_err());
        assert_eq!(SchedulerKind::Wrr.as_str(), "wrr");
    }

    #[test]
    fn rr_cycles() {
        assert_eq!(
            picks(SchedulerKind::Rr, &[1, 1, 1], 7),
            [0, 1, 2, 0, 1, 2, 0]
        );
        // rr ignores the size of a weight, only whether it is 0.
        assert_eq!(picks(SchedulerKind::Rr, &[5, 1], 4), [0, 1, 0, 1]);
    }

    #[test]
    fn rr_skips_quiesced() {
        assert_eq!(
            picks(SchedulerKind::Rr, &[0, 3, 0, 1, 0], 6),
            [1, 3, 1, 3, 1, 3]
        );
    }

    #[test]
    fn wrr_shares_follow_weights_exactly() {
        let p = picks(SchedulerKind::Wrr, &[1, 3], 400);
        assert_eq!(counts(&p, 2), [100, 300]);
        // Exact within every cycle of sum(weights) picks, not just overall.
        for cycle in p.chunks(4) {
            assert_eq!(counts(cycle, 2), [1, 3]);
        }
        let p = picks(SchedulerKind::Wrr, &[5, 3, 2], 1000);
        for cycle in p.chunks(10) {
            assert_eq!(counts(cycle, 3), [5, 3, 2]);
        }
    }

    #[test]
    fn wrr_interleaves() {
        let p = picks(SchedulerKind::Wrr, &[1, 1], 100);
        assert_eq!(longest_run(&p, 0), 1);
        assert_eq!(longest_run(&p, 1), 1);
        // 5:3:2 -- the heavy server never takes more than 2 in a row, where
        // IPVS's stepping would give it 3 in a row at the top of each cycle.
        let p = picks(SchedulerKind::Wrr, &[5, 3, 2], 100);
        assert!(longest_run(&p, 0) <= 2, "{p:?}");
        assert_eq!(longest_run(&p, 1), 1);
        assert_eq!(longest_run(&p, 2), 1);
        // 1:3 -- the light server is never starved for longer than a cycle.
        let p = picks(SchedulerKind::Wrr, &[1, 3], 400);
        assert!(longest_run(&p, 1) <= 3);
    }

    #[test]
    fn wrr_skips_quiesced() {
        let p = picks(SchedulerKind::Wrr, &[0, 2, 0, 1], 300);
        assert_eq!(counts(&p, 4), [0, 200, 0, 100]);
    }

    #[test]
    fn wrr_large_weights() {
        let p = picks(SchedulerKind::Wrr, &[u32::MAX, u32::MAX, 1], 10);
        assert_eq!(counts(&p, 3)[2], 0);
        assert_eq!(longest_run(&p, 0), 1);
    }

    #[test]
    fn nothing_to_pick() {
        for kind in [SchedulerKind::Rr, SchedulerKind::Wrr] {
            assert_eq!(Scheduler::new(kind, &[]).pick(), None);
            let mut s = Scheduler::new(kind, &[0, 0, 0]);
            assert_eq!(s.pick(), None);
            assert_eq!(s.pick(), None);
        }
    }

    #[test]
    fn pick_does_not_allocate() {
        for kind in [SchedulerKind::Rr, SchedulerKind::Wrr] {
            let mut s = Scheduler::new(kind, &[3, 0, 2, 1]);
            let (_, allocations) = allocations_during(|| {
                for _ in 0..1000 {
                    assert!(s.pick().is_some());
                }
            });
            assert_eq!(allocations, 0);
        }
    }
}
