//! One real server's health as its checks show it: keepalived's up/down
//! with haproxy-style `rise`/`fall` counts. Pure: a check's outcome in, a
//! transition out.
//!
//! A real starts up, as keepalived starts its reals (without `alpha`): a
//! load balancer that restarts must not refuse every connection until its
//! checks have run. Until its first successful check, though, a real is
//! only presumed up, and its first failure takes it out at once (haproxy's
//! initial health does the same): a real that is dead when sluice starts,
//! or when it is added, gets connections for one check at most, not for
//! `fall` of them.

use super::probe::Failure;

/// What a check's outcome did to a real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Taken out of scheduling.
    Down,
    /// Back, with its configured weight.
    Up,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealHealth {
    up: bool,
    /// A check has succeeded since the real (or its service's check)
    /// appeared.
    proven: bool,
    /// Consecutive successes, and consecutive failures; one of them is 0.
    successes: u32,
    failures: u32,
    last_failure: Option<Failure>,
    /// Checks done and checks failed, ever.
    checks: u64,
    failed: u64,
}

impl Default for RealHealth {
    fn default() -> Self {
        RealHealth::new()
    }
}

impl RealHealth {
    /// Up, not yet proven.
    pub fn new() -> RealHealth {
        RealHealth {
            up: true,
            proven: false,
            successes: 0,
            failures: 0,
            last_failure: None,
            checks: 0,
            failed: 0,
        }
    }

    /// Down, as a real the state already holds out (its checks resume).
    pub fn new_down() -> RealHealth {
        RealHealth {
            up: false,
            ..RealHealth::new()
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn successes(&self) -> u32 {
        self.successes
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn last_failure(&self) -> Option<&Failure> {
        self.last_failure.as_ref()
    }

    pub fn checks(&self) -> u64 {
        self.checks
    }

    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// The check changed: the counts start again, the state stays.
    pub fn restart_counts(&mut self) {
        self.successes = 0;
        self.failures = 0;
    }

    /// One check's outcome under `rise`/`fall`; the transition it caused.
    pub fn record(
        &mut self,
        outcome: Result<(), Failure>,
        rise: u32,
        fall: u32,
    ) -> Option<Transition> {
        self.checks += 1;
        match outcome {
            Ok(()) => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if self.up {
                    self.proven = true;
                    None
                } else if self.successes >= rise {
                    self.up = true;
                    self.proven = true;
                    Some(Transition::Up)
                } else {
                    None
                }
            }
            Err(failure) => {
                self.failed += 1;
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                self.last_failure = Some(failure);
                if self.up && (self.failures >= fall || !self.proven) {
                    self.up = false;
                    Some(Transition::Down)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(h: &mut RealHealth, outcomes: &str, rise: u32, fall: u32) -> Vec<Option<Transition>> {
        outcomes
            .chars()
            .map(|c| {
                let o = if c == '+' {
                    Ok(())
                } else {
                    Err(Failure::Refused)
                };
                h.record(o, rise, fall)
            })
            .collect()
    }

    #[test]
    fn starts_up_and_an_unproven_real_falls_at_its_first_failure() {
        let mut h = RealHealth::new();
        assert!(h.is_up());
        assert_eq!(run(&mut h, "-", 2, 3), [Some(Transition::Down)]);
        assert!(!h.is_up());
        assert_eq!(h.last_failure(), Some(&Failure::Refused));
        // Back after `rise` successes, and from then on it takes `fall`.
        assert_eq!(run(&mut h, "++", 2, 3), [None, Some(Transition::Up)]);
        assert_eq!(
            run(&mut h, "--+---", 2, 3),
            [None, None, None, None, None, Some(Transition::Down)]
        );
        assert_eq!((h.failures(), h.successes()), (3, 0));
        assert_eq!((h.checks(), h.failed()), (9, 6));
    }

    #[test]
    fn fall_counts_consecutive_failures_and_rise_consecutive_successes() {
        let mut h = RealHealth::new();
        assert_eq!(run(&mut h, "+", 2, 2), [None]);
        // A success between failures starts the count again.
        assert_eq!(run(&mut h, "-+-", 2, 2), [None, None, None]);
        assert!(h.is_up());
        assert_eq!(run(&mut h, "-", 2, 2), [Some(Transition::Down)]);
        assert_eq!(run(&mut h, "+-+", 2, 2), [None, None, None]);
        assert!(!h.is_up());
        assert_eq!(run(&mut h, "+", 2, 2), [Some(Transition::Up)]);
        // rise = fall = 1: every change of outcome is a transition.
        assert_eq!(
            run(&mut h, "-+-+", 1, 1),
            [
                Some(Transition::Down),
                Some(Transition::Up),
                Some(Transition::Down),
                Some(Transition::Up)
            ]
        );
    }

    #[test]
    fn a_changed_check_keeps_the_state_and_restarts_the_counts() {
        let mut h = RealHealth::new();
        run(&mut h, "+--", 2, 2);
        assert!(!h.is_up());
        h.restart_counts();
        assert_eq!((h.failures(), h.successes()), (0, 0));
        assert!(!h.is_up(), "still down");
        assert_eq!(run(&mut h, "++", 2, 2), [None, Some(Transition::Up)]);
        // Proven before the change: still takes `fall` failures.
        h.restart_counts();
        assert_eq!(run(&mut h, "--", 2, 2), [None, Some(Transition::Down)]);
    }
}
