//! The schedulers that read connection counts: `lc` (IPVS `ip_vs_lc.c`),
//! `wlc` (`ip_vs_wlc.c`), `sed` (`ip_vs_sed.c`) and `nq` (`ip_vs_nq.c`).
//!
//! Each is one pass over the real servers, skipping those with weight 0;
//! ties go to the first in order, as in IPVS. The counts are this worker's
//! own (IPVS has one set per host), so with several workers each balances
//! its own share of the connections.

use super::ConnCounts;

/// IPVS's `ip_vs_dest_conn_overhead`: an active connection costs 256 times
/// an inactive one (which holds little more than a table entry). u64: the
/// shift cannot overflow it.
fn conn_overhead(conns: &impl ConnCounts, real: usize) -> u64 {
    (u64::from(conns.active(real)) << 8) + u64::from(conns.inactive(real))
}

/// sed's and nq's expected delay: the connections ahead of a new one, plus
/// itself (`ip_vs_sed_dest_overhead`).
fn expected_delay(conns: &impl ConnCounts, real: usize) -> u64 {
    u64::from(conns.active(real)) + 1
}

/// Whether `overhead / weight` is strictly less than `least_overhead /
/// least_weight`, compared as IPVS does, by cross-multiplication (no
/// division, exact). u128: an overhead of up to 2^41 times a weight of up
/// to 2^32 does not fit a u64.
fn lighter(overhead: u64, weight: u32, least_overhead: u64, least_weight: u32) -> bool {
    u128::from(least_overhead) * u128::from(weight)
        > u128::from(overhead) * u128::from(least_weight)
}

/// `lc`: the least `active * 256 + inactive`, whatever the weight (as long
/// as it is not 0).
pub(super) fn pick_lc(weights: &[u32], conns: &impl ConnCounts) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for (i, _) in weights.iter().enumerate().filter(|(_, &w)| w > 0) {
        let overhead = conn_overhead(conns, i);
        if least.is_none_or(|(_, least_overhead)| overhead < least_overhead) {
            least = Some((i, overhead));
        }
    }
    least.map(|(i, _)| i)
}

/// The real server with the least `overhead(i) / weight`.
fn least_weighted(weights: &[u32], overhead: impl Fn(usize) -> u64) -> Option<usize> {
    // (index, overhead, weight) of the least loaded so far.
    let mut least: Option<(usize, u64, u32)> = None;
    for (i, &weight) in weights.iter().enumerate().filter(|(_, &w)| w > 0) {
        let oh = overhead(i);
        if least
            .is_none_or(|(_, least_oh, least_weight)| lighter(oh, weight, least_oh, least_weight))
        {
            least = Some((i, oh, weight));
        }
    }
    least.map(|(i, _, _)| i)
}

/// `wlc`: the least `(active * 256 + inactive) / weight`.
pub(super) fn pick_wlc(weights: &[u32], conns: &impl ConnCounts) -> Option<usize> {
    least_weighted(weights, |i| conn_overhead(conns, i))
}

/// `sed`: the least `(active + 1) / weight`. Unlike wlc it counts the new
/// connection itself, so among idle real servers the heaviest wins rather
/// than the first.
pub(super) fn pick_sed(weights: &[u32], conns: &impl ConnCounts) -> Option<usize> {
    least_weighted(weights, |i| expected_delay(conns, i))
}

/// `nq`: the first real server with no active connection (a new one need
/// not queue there), else as sed. One pass, as IPVS: it stops at the first
/// idle real server.
pub(super) fn pick_nq(weights: &[u32], conns: &impl ConnCounts) -> Option<usize> {
    let mut least: Option<(usize, u64, u32)> = None;
    for (i, &weight) in weights.iter().enumerate().filter(|(_, &w)| w > 0) {
        if conns.active(i) == 0 {
            return Some(i);
        }
        let oh = expected_delay(conns, i);
        if least
            .is_none_or(|(_, least_oh, least_weight)| lighter(oh, weight, least_oh, least_weight))
        {
            least = Some((i, oh, weight));
        }
    }
    least.map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::test_util::{table, Counts};
    use super::super::{pick, SchedState, SchedulerKind};
    use SchedulerKind::{Lc, Nq, Sed, Wlc};

    fn pick_with(kind: SchedulerKind, weights: &[u32], conns: &[(u32, u32)]) -> Option<usize> {
        let t = table(kind, weights);
        let mut s = SchedState::new(&t);
        pick(&t, &mut s, Ipv4Addr::LOCALHOST, 1, &Counts(conns.to_vec()))
    }

    /// Schedules `n` connections one after another, each staying active,
    /// and returns how many each real server got.
    fn fill(kind: SchedulerKind, weights: &[u32], n: usize) -> Vec<u32> {
        let t = table(kind, weights);
        let mut s = SchedState::new(&t);
        let mut conns = Counts(vec![(0, 0); weights.len()]);
        for _ in 0..n {
            let real = pick(&t, &mut s, Ipv4Addr::LOCALHOST, 1, &conns).unwrap();
            conns.0[real].0 += 1;
        }
        conns.0.iter().map(|c| c.0).collect()
    }

    #[test]
    fn lc_least_overhead() {
        // Overheads 512, 261, 259: an active connection outweighs 255
        // inactive ones.
        assert_eq!(
            pick_with(Lc, &[1, 1, 1], &[(2, 0), (1, 5), (1, 3)]),
            Some(2)
        );
        assert_eq!(pick_with(Lc, &[1, 1], &[(1, 0), (0, 255)]), Some(1));
        assert_eq!(pick_with(Lc, &[1, 1], &[(1, 0), (0, 256)]), Some(0));
        // The weight does not matter, except 0.
        assert_eq!(pick_with(Lc, &[100, 1], &[(2, 0), (1, 0)]), Some(1));
        assert_eq!(pick_with(Lc, &[1, 0], &[(2, 0), (0, 0)]), Some(0));
        // Ties go to the first.
        assert_eq!(
            pick_with(Lc, &[1, 1, 1], &[(1, 1), (0, 3), (0, 3)]),
            Some(1)
        );
        assert_eq!(fill(Lc, &[1, 5, 1], 30), [10, 10, 10]);
    }

    #[test]
    fn wlc_weights_1_3() {
        // (active*256 + inactive) / weight: 256/1 against 768/3 is a tie,
        // which the first wins; one more active on real 1 and it loses, one
        // fewer and it wins.
        assert_eq!(pick_with(Wlc, &[1, 3], &[(1, 0), (3, 0)]), Some(0));
        assert_eq!(pick_with(Wlc, &[1, 3], &[(1, 0), (4, 0)]), Some(0));
        assert_eq!(pick_with(Wlc, &[1, 3], &[(1, 0), (2, 0)]), Some(1));
        // Inactive connections break the tie.
        assert_eq!(pick_with(Wlc, &[1, 3], &[(1, 1), (3, 0)]), Some(1));
        // No connections at all: every load is 0, the first wins.
        assert_eq!(pick_with(Wlc, &[1, 3], &[(0, 0), (0, 0)]), Some(0));
        // Filled from empty, connections follow the weights exactly, in
        // IPVS's order: 0, then 1 until it has three times as many.
        assert_eq!(fill(Wlc, &[1, 3], 400), [100, 300]);
        assert_eq!(fill(Wlc, &[1, 3], 5), [2, 3]);
        assert_eq!(fill(Wlc, &[2, 3, 5], 1000), [200, 300, 500]);
    }

    #[test]
    fn sed_counts_the_new_connection() {
        // Idle: wlc takes the first, sed the heaviest ((0+1)/3 < (0+1)/1).
        assert_eq!(pick_with(Sed, &[1, 3], &[(0, 0), (0, 0)]), Some(1));
        // 2/1 against 4/3: real 1.
        assert_eq!(pick_with(Sed, &[1, 3], &[(1, 0), (3, 0)]), Some(1));
        // 2/1 against 7/3: real 0.
        assert_eq!(pick_with(Sed, &[1, 3], &[(1, 0), (6, 0)]), Some(0));
        // Inactive connections do not count.
        assert_eq!(pick_with(Sed, &[1, 1], &[(1, 0), (1, 1000)]), Some(0));
        assert_eq!(pick_with(Sed, &[1, 1], &[(2, 0), (1, 1000)]), Some(1));
        assert_eq!(fill(Sed, &[1, 3], 400), [100, 300]);
    }

    #[test]
    fn nq_prefers_an_idle_real() {
        assert_eq!(pick_with(Nq, &[1, 3], &[(0, 0), (0, 0)]), Some(0));
        // sed would pick real 0 (2/5 < 1/1); nq takes the idle one.
        assert_eq!(pick_with(Nq, &[5, 1], &[(1, 0), (0, 0)]), Some(1));
        // Idle but quiesced does not count.
        assert_eq!(pick_with(Nq, &[5, 0], &[(1, 0), (0, 0)]), Some(0));
        // Nobody idle: as sed, 3/1 against 2/3.
        assert_eq!(pick_with(Nq, &[1, 3], &[(2, 0), (1, 0)]), Some(1));
        assert_eq!(pick_with(Nq, &[1, 3], &[(2, 0), (8, 0)]), Some(0));
        // Inactive connections do not make a real busy.
        assert_eq!(pick_with(Nq, &[1, 1], &[(1, 0), (0, 50)]), Some(1));
    }

    #[test]
    fn huge_counts_and_weights_do_not_overflow() {
        let max = u32::MAX;
        for kind in [Lc, Wlc, Sed, Nq] {
            let real = pick_with(
                kind,
                &[max, max, 1],
                &[(max, max), (max - 1, max - 1), (max, max)],
            );
            assert_eq!(real, Some(1), "{kind}");
        }
        // wlc: 256*(2^32-1)/1 against 256*(2^32-1)/(2^32-1): the heavy real
        // wins; the products need more than 64 bits.
        assert_eq!(pick_with(Wlc, &[1, max], &[(max, 0), (max, 0)]), Some(1));
        assert_eq!(
            pick_with(Sed, &[1, max], &[(max - 1, 0), (max - 1, 0)]),
            Some(1)
        );
    }
}
