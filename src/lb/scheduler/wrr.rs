//! `wrr`: weighted round robin with IPVS's shares (`ip_vs_wrr.c`: each real
//! server picked `weight` times per `sum(weights)` picks) in nginx's
//! "smooth" order, which interleaves the picks instead of IPVS's bursts.

/// Smooth weighted round robin (as in nginx): every real server's score
/// grows by its weight, the highest score wins and pays back the total.
/// Over `sum(weights)` picks every score returns to 0, so each real server
/// is picked exactly `weight` times per cycle (IPVS `wrr` shares), and a
/// heavy real server's picks are interleaved with the others' instead of
/// coming in a burst as with IPVS's gcd/max-weight stepping.
///
/// `scores` is this worker's state, one per real server. i64 cannot
/// overflow: every score stays within [-sum(weights), sum(weights)], and
/// the sum of u32 weights of at most u32::MAX real servers fits.
pub(super) fn pick(weights: &[u32], scores: &mut [i64]) -> Option<usize> {
    let mut total: i64 = 0;
    for (&weight, score) in weights.iter().zip(scores.iter_mut()) {
        *score += i64::from(weight);
        total += i64::from(weight);
    }
    let best = highest(weights, scores, |_, _| 0)?;
    if let Some(score) = scores.get_mut(best) {
        *score -= total;
    }
    Some(best)
}

/// What the next two `pick`s would choose, without changing `scores`: the
/// first is the highest score with every weight added; the second, the
/// highest with the weights added twice and the total taken off the first.
pub(super) fn peek_two(weights: &[u32], scores: &[i64]) -> Option<(usize, usize)> {
    let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
    let first = highest(weights, scores, |_, w| w)?;
    let second = highest(weights, scores, |i, w| {
        2 * w - if i == first { total } else { 0 }
    })?;
    Some((first, second))
}

/// The real server with the highest score, `bonus(index, weight)` added to
/// each; real servers of weight 0 never win, ties go to the lower index.
fn highest(weights: &[u32], scores: &[i64], bonus: impl Fn(usize, i64) -> i64) -> Option<usize> {
    let mut best: Option<(usize, i64)> = None;
    for (i, (&weight, &score)) in weights.iter().zip(scores).enumerate() {
        if weight == 0 {
            continue;
        }
        let score = score + bonus(i, i64::from(weight));
        if best.is_none_or(|(_, best_score)| score > best_score) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{counts, picks};
    use super::super::SchedulerKind::Wrr;

    fn longest_run(picks: &[usize], server: usize) -> usize {
        picks
            .split(|&p| p != server)
            .map(<[usize]>::len)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn shares_follow_weights_exactly() {
        let p = picks(Wrr, &[1, 3], 400);
        assert_eq!(counts(&p, 2), [100, 300]);
        // Exact within every cycle of sum(weights) picks, not just overall.
        for cycle in p.chunks(4) {
            assert_eq!(counts(cycle, 2), [1, 3]);
        }
        let p = picks(Wrr, &[5, 3, 2], 1000);
        for cycle in p.chunks(10) {
            assert_eq!(counts(cycle, 3), [5, 3, 2]);
        }
    }

    #[test]
    fn interleaves() {
        let p = picks(Wrr, &[1, 1], 100);
        assert_eq!(longest_run(&p, 0), 1);
        assert_eq!(longest_run(&p, 1), 1);
        // 5:3:2 -- the heavy server never takes more than 2 in a row, where
        // IPVS's stepping would give it 3 in a row at the top of each cycle.
        let p = picks(Wrr, &[5, 3, 2], 100);
        assert!(longest_run(&p, 0) <= 2, "{p:?}");
        assert_eq!(longest_run(&p, 1), 1);
        assert_eq!(longest_run(&p, 2), 1);
        // 1:3 -- the light server is never starved for longer than a cycle.
        let p = picks(Wrr, &[1, 3], 400);
        assert!(longest_run(&p, 1) <= 3);
    }

    #[test]
    fn skips_quiesced() {
        let p = picks(Wrr, &[0, 2, 0, 1], 300);
        assert_eq!(counts(&p, 4), [0, 200, 0, 100]);
    }

    #[test]
    fn large_weights() {
        let p = picks(Wrr, &[u32::MAX, u32::MAX, 1], 10);
        assert_eq!(counts(&p, 3)[2], 0);
        assert_eq!(longest_run(&p, 0), 1);
    }
}
