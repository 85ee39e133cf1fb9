//! The control plane's side of the health checks. It follows the desired
//! state (which reals are checked, and how), hands the checker its
//! targets, turns the checker's outcomes into each real's rise/fall state,
//! logs every transition once, and says which `Change::SetHealth` would
//! make the state agree with the checks. It never touches a snapshot: the
//! plane applies those changes like any other.
//!
//! A real's health lives as long as the real and its service's check:
//! a change of configuration (ctl, `-R`, reload) keeps it for every real
//! still checked; a changed check (another type, path, port or timing)
//! starts that real's counts again but keeps it up or down.

use super::checker::{Checker, Outcome, TargetId};
use super::machine::{RealHealth, Transition};
use super::probe::Failure;
use super::spec::Target;
use crate::control::api::HealthView;
use crate::control::state::{Change, ServiceKey, State};
use hashbrown::HashMap;
use log::{info, warn};
use std::net::SocketAddrV4;

/// One checked real.
struct Entry {
    id: TargetId,
    target: Target,
    rise: u32,
    fall: u32,
    health: RealHealth,
}

pub struct HealthMonitor {
    reals: HashMap<(ServiceKey, SocketAddrV4), Entry>,
    by_id: HashMap<TargetId, (ServiceKey, SocketAddrV4)>,
    next_id: TargetId,
    /// None: nothing runs the checks (tests feed outcomes by hand).
    checker: Option<Checker>,
    /// Checks done and failed since sluice started (for /metrics).
    checks: u64,
    failed: u64,
}

impl HealthMonitor {
    pub fn new(checker: Option<Checker>) -> HealthMonitor {
        HealthMonitor {
            reals: HashMap::new(),
            by_id: HashMap::new(),
            next_id: 1,
            checker,
            checks: 0,
            failed: 0,
        }
    }

    /// A monitor with its checker thread running.
    pub fn spawn() -> std::io::Result<HealthMonitor> {
        Ok(HealthMonitor::new(Some(Checker::spawn()?)))
    }

    /// Follows `state`: checks start for new reals and changed checks,
    /// stop for removed reals and services without a check.
    pub fn follow(&mut self, state: &State) {
        // The state only ever holds routes the table accepts.
        let routes = state.route_table().unwrap_or_default();
        let mut wanted = HashMap::new();
        for s in &state.services {
            for r in &s.reals {
                if let Some(target) = s.check_target(r, &routes) {
                    wanted.insert(
                        (s.key, r.addr),
                        (target, s.options.check.rise, s.options.check.fall),
                    );
                }
            }
        }
        let mut changed = false;
        let by_id = &mut self.by_id;
        self.reals.retain(|key, e| {
            let keep = wanted.contains_key(key);
            if !keep {
                by_id.remove(&e.id);
                changed = true;
            }
            keep
        });
        for (key, (target, rise, fall)) in wanted {
            match self.reals.get_mut(&key) {
                Some(e) => {
                    e.rise = rise;
                    e.fall = fall;
                    if e.target != target {
                        self.by_id.remove(&e.id);
                        e.id = self.next_id;
                        self.next_id += 1;
                        self.by_id.insert(e.id, key);
                        e.target = target;
                        e.health.restart_counts();
                        changed = true;
                    }
                }
                None => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.by_id.insert(id, key);
                    let mut health = RealHealth::new();
                    // Normally the monitor knew first; keep what the state says.
                    if state.is_down(&key.0, key.1) {
                        health = RealHealth::new_down();
                    }
                    self.reals.insert(
                        key,
                        Entry {
                            id,
                            target,
                            rise,
                            fall,
                            health,
                        },
                    );
                    changed = true;
                }
            }
        }
        if changed {
            if let Some(c) = &self.checker {
                c.set_targets(
                    self.reals
                        .values()
                        .map(|e| (e.id, e.target.clone()))
                        .collect(),
                );
            }
        }
    }

    /// Takes in the outcomes the checker reported since the last call.
    pub fn poll(&mut self) {
        let outcomes: Vec<Outcome> = match &self.checker {
            Some(c) => c.outcomes().collect(),
            None => return,
        };
        for o in outcomes {
            self.record(o.id, o.result);
        }
    }

    /// One outcome of target `id` (an outcome of a check since replaced or
    /// removed is ignored). Logs the transition it causes.
    pub fn record(&mut self, id: TargetId, result: Result<(), Failure>) -> Option<Transition> {
        let key = *self.by_id.get(&id)?;
        let e = self.reals.get_mut(&key)?;
        self.checks += 1;
        self.failed += u64::from(result.is_err());
        let transition = e.health.record(result, e.rise, e.fall)?;
        let (service, real) = key;
        match transition {
            Transition::Down => {
                let reason = e
                    .health
                    .last_failure()
                    .map_or_else(String::new, ToString::to_string);
                let count = e.health.failures();
                warn!(
                    "health: real {real} of {service} is down after {count} failed check{} ({reason}): \
                     no new connections until {} succeed",
                    if count == 1 { "" } else { "s" },
                    e.rise
                );
            }
            Transition::Up => info!(
                "health: real {real} of {service} is up again after {} successful checks",
                e.health.successes()
            ),
        }
        Some(transition)
    }

    /// The changes that make `state` agree with the checks: every real
    /// whose health differs from what the state says.
    pub fn changes(&self, state: &State) -> Vec<Change> {
        let mut out: Vec<Change> = self
            .reals
            .iter()
            .filter(|((key, addr), e)| e.health.is_up() == state.is_down(key, *addr))
            .map(|(&(key, addr), e)| Change::SetHealth {
                key,
                addr,
                up: e.health.is_up(),
            })
            .collect();
        // Deterministic order, for the log and the tests.
        out.sort_by_key(|c| match c {
            Change::SetHealth { key, addr, .. } => (*key, *addr),
            _ => unreachable!("only health changes here"),
        });
        out
    }

    /// The target id of a checked real (tests feed outcomes with it).
    pub fn target_id(&self, key: &ServiceKey, addr: SocketAddrV4) -> Option<TargetId> {
        self.reals.get(&(*key, addr)).map(|e| e.id)
    }

    /// What `-L` and /metrics show of a checked real.
    pub fn view(&self, key: &ServiceKey, addr: SocketAddrV4) -> Option<HealthView> {
        let h = &self.reals.get(&(*key, addr))?.health;
        Some(HealthView {
            up: h.is_up(),
            successes: h.successes(),
            failures: h.failures(),
            last_failure: h.last_failure().map(ToString::to_string),
            checks: h.checks(),
            failed: h.failed(),
        })
    }

    /// Checks done and failed since sluice started.
    pub fn totals(&self) -> (u64, u64) {
        (self.checks, self.failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::config::Config;
    use crate::control::health::machine::Transition;

    const BASE: &str = r#"
[dpdk]
eal = ["-l", "0-1"]
[[interface]]
port = 0
addrs = ["10.10.0.1/24"]
[[interface]]
port = 1
addrs = ["192.168.10.1/24"]
[[service]]
vip = "10.10.0.100:80"
proto = "tcp"
[service.check]
type = "http"
rise = 2
fall = 2
[[service.real]]
addr = "192.168.10.2:8080"
[[service.real]]
addr = "192.168.10.3:8080"
"#;

    fn state(text: &str) -> State {
        Config::parse("t.toml", text).unwrap().state
    }

    fn key() -> ServiceKey {
        state(BASE).services[0].key
    }

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    #[test]
    fn outcomes_become_changes_and_configuration_keeps_them() {
        let mut s = state(BASE);
        let mut m = HealthMonitor::new(None);
        m.follow(&s);
        let (r1, r2) = (sa("192.168.10.2:8080"), sa("192.168.10.3:8080"));
        let id1 = m.target_id(&key(), r1).unwrap();
        assert!(m.changes(&s).is_empty(), "both start up");
        assert_eq!(m.record(id1, Ok(())), None);
        assert_eq!(m.record(id1, Err(Failure::Refused)), None);
        assert_eq!(m.record(id1, Err(Failure::Refused)), Some(Transition::Down));
        let changes = m.changes(&s);
        assert_eq!(
            changes,
            [Change::SetHealth {
                key: key(),
                addr: r1,
                up: false
            }]
        );
        s = s.apply_all(&changes).unwrap();
        assert!(m.changes(&s).is_empty(), "the state agrees");
        let v = m.view(&key(), r1).unwrap();
        assert_eq!(
            (v.up, v.failures, v.last_failure.as_deref()),
            (false, 2, Some("connect: refused"))
        );
        assert_eq!(m.totals(), (3, 2));

        // An operator's change elsewhere (weight, another real) keeps it.
        let edited = state(&BASE.replace(
            "addr = \"192.168.10.3:8080\"",
            "addr = \"192.168.10.3:8080\"\nweight = 5\n[[service.real]]\naddr = \"192.168.10.4:8080\"",
        ));
        let mut next = edited.clone();
        next.keep_health(&s);
        m.follow(&next);
        assert!(next.is_down(&key(), r1));
        assert!(m.changes(&next).is_empty());
        assert_eq!(
            m.target_id(&key(), r1),
            Some(id1),
            "same check, same schedule"
        );
        assert!(
            m.view(&key(), sa("192.168.10.4:8080")).unwrap().up,
            "a new real starts up"
        );

        // A changed check starts the counts again, keeps the state.
        let changed = state(&BASE.replace("type = \"http\"", "type = \"tcp\""));
        let mut next = changed.clone();
        next.keep_health(&s);
        m.follow(&next);
        let id = m.target_id(&key(), r1).unwrap();
        assert_ne!(id, id1, "a new target for the new check");
        assert_eq!(
            m.record(id1, Ok(())),
            None,
            "an old check's outcome is ignored"
        );
        let v = m.view(&key(), r1).unwrap();
        assert_eq!((v.up, v.failures, v.successes), (false, 0, 0));
        assert_eq!(m.record(id, Ok(())), None);
        assert_eq!(m.record(id, Ok(())), Some(Transition::Up));
        assert_eq!(
            m.changes(&next),
            [Change::SetHealth {
                key: key(),
                addr: r1,
                up: true
            }]
        );

        // No check: nothing is checked, nothing is down.
        let off = state(&BASE.replace("type = \"http\"", "type = \"none\""));
        m.follow(&off);
        assert!(m.view(&key(), r1).is_none() && m.view(&key(), r2).is_none());
        assert!(m.changes(&off).is_empty());
    }
}
