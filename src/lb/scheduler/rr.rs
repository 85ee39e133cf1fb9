//! `rr`: round robin (IPVS `ip_vs_rr.c`). Each pick takes the next real
//! server after the previous pick that has weight > 0; the size of a weight
//! does not matter, only whether it is 0.

/// `next` is this worker's position: the index to try first.
pub(super) fn pick(weights: &[u32], next: &mut usize) -> Option<usize> {
    let n = weights.len();
    // A position past the end (a state kept from a longer table) restarts.
    let start = if *next < n { *next } else { 0 };
    let i = (start..n).chain(0..start).find(|&i| weights[i] > 0)?;
    *next = i + 1;
    Some(i)
}

/// What the next two `pick`s would choose from `next`, without moving on.
pub(super) fn peek_two(weights: &[u32], next: usize) -> Option<(usize, usize)> {
    let mut next = next;
    let first = pick(weights, &mut next)?;
    Some((first, pick(weights, &mut next)?))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::picks;
    use super::super::SchedulerKind::Rr;

    #[test]
    fn cycles() {
        assert_eq!(picks(Rr, &[1, 1, 1], 7), [0, 1, 2, 0, 1, 2, 0]);
        // rr ignores the size of a weight, only whether it is 0.
        assert_eq!(picks(Rr, &[5, 1], 4), [0, 1, 0, 1]);
    }

    #[test]
    fn skips_quiesced() {
        assert_eq!(picks(Rr, &[0, 3, 0, 1, 0], 6), [1, 3, 1, 3, 1, 3]);
    }
}
