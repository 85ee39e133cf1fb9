//! Counter slots of real servers.
//!
//! Each worker keeps its per-real counters (connections, packets, bytes,
//! active and inactive connections) in a fixed array, indexed by the real's
//! slot; sessions remember the slot of their real. A slot outlives the real
//! it was given to: when a real is removed, its sessions carry on (IPVS's
//! `expire_nodest_conn=0`) and still count against it, so the slot drains.
//! A real added back while its slot drains gets that slot again, with its
//! sessions and counters, as IPVS revives a destination from its trash.
//! Only once every worker has moved to a snapshot without the real and no
//! session uses the slot any more is it free for another real; its
//! generation then changes, which tells the workers to zero it.

use crate::control::state::{ServiceKey, State};
use hashbrown::HashMap;
use std::net::SocketAddrV4;

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotUse {
    Free,
    /// A real of the current state.
    Live {
        service: ServiceKey,
        real: SocketAddrV4,
    },
    /// A removed real whose sessions may live on; removed from the state
    /// published at `since` (a snapshot epoch).
    Draining {
        service: ServiceKey,
        real: SocketAddrV4,
        since: u64,
    },
}

#[derive(Debug, Clone)]
pub struct RealSlots {
    uses: Vec<SlotUse>,
    generations: Vec<u32>,
    by_real: HashMap<(ServiceKey, SocketAddrV4), u32>,
    /// Free slots, lowest last (so they are handed out in order).
    free: Vec<u32>,
}

impl RealSlots {
    pub fn new(capacity: usize) -> RealSlots {
        RealSlots {
            uses: vec![SlotUse::Free; capacity],
            generations: vec![0; capacity],
            by_real: HashMap::new(),
            free: (0..capacity as u32).rev().collect(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.uses.len()
    }

    /// Gives every real of `state` a slot (its own, a draining one it had,
    /// or a free one), and starts draining the slots of reals no longer in
    /// it as of snapshot `epoch`. On error (no free slot: removed reals
    /// still hold them with live sessions) nothing changes.
    pub fn assign(&mut self, state: &State, epoch: u64) -> Result<(), String> {
        let mut next = self.clone();
        let mut wanted: HashMap<(ServiceKey, SocketAddrV4), ()> = HashMap::new();
        for s in &state.services {
            for r in &s.reals {
                wanted.insert((s.key, r.addr), ());
            }
        }
        // Removed reals start draining.
        for (slot, u) in next.uses.iter_mut().enumerate() {
            if let SlotUse::Live { service, real } = *u {
                if !wanted.contains_key(&(service, real)) {
                    *u = SlotUse::Draining {
                        service,
                        real,
                        since: epoch,
                    };
                    debug_assert_eq!(next.by_real.get(&(service, real)), Some(&(slot as u32)));
                }
            }
        }
        for s in &state.services {
            for r in &s.reals {
                let key = (s.key, r.addr);
                let slot = match next.by_real.get(&key) {
                    Some(&slot) => slot,
                    None => {
                        let draining = next
                            .uses
                            .iter()
                            .filter(|u| matches!(u, SlotUse::Draining { .. }))
                            .count();
                        let slot = next.free.pop().ok_or_else(|| {
                            format!(
                                "no free real server slot (dataplane.max_reals = {}; {draining} removed real(s) still have sessions)",
                                next.uses.len()
                            )
                        })?;
                        next.by_real.insert(key, slot);
                        slot
                    }
                };
                next.uses[slot as usize] = SlotUse::Live {
                    service: s.key,
                    real: r.addr,
                };
            }
        }
        *self = next;
        Ok(())
    }

    /// The slot of a real of the current state.
    pub fn slot(&self, service: &ServiceKey, real: SocketAddrV4) -> Option<u32> {
        self.by_real.get(&(*service, real)).copied()
    }

    pub fn get(&self, slot: u32) -> SlotUse {
        self.uses
            .get(slot as usize)
            .copied()
            .unwrap_or(SlotUse::Free)
    }

    /// Changes whenever the slot is given to another real: a worker that
    /// sees a new generation zeroes its counters.
    pub fn generation(&self, slot: u32) -> u32 {
        self.generations.get(slot as usize).copied().unwrap_or(0)
    }

    /// Frees draining slots that no session uses any more. `settled`: the
    /// oldest snapshot epoch any worker's published counters come from;
    /// `sessions(slot)`: the sessions on a slot summed over the workers,
    /// from those same counters. Returns the slots freed, with the service
    /// they belonged to.
    pub fn reclaim(
        &mut self,
        settled: u64,
        sessions: impl Fn(u32) -> u64,
    ) -> Vec<(u32, ServiceKey)> {
        let mut freed = Vec::new();
        for (slot, u) in self.uses.iter_mut().enumerate() {
            let slot = slot as u32;
            if let SlotUse::Draining {
                service,
                real,
                since,
            } = *u
            {
                if since <= settled && sessions(slot) == 0 {
                    *u = SlotUse::Free;
                    self.by_real.remove(&(service, real));
                    self.generations[slot as usize] =
                        self.generations[slot as usize].wrapping_add(1);
                    self.free.push(slot);
                    freed.push((slot, service));
                }
            }
        }
        // Keep handing out the lowest free slot first.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        freed
    }

    /// Every slot in use, live or draining.
    pub fn in_use(&self) -> impl Iterator<Item = (u32, SlotUse)> + '_ {
        self.uses
            .iter()
            .enumerate()
            .filter(|(_, u)| **u != SlotUse::Free)
            .map(|(i, u)| (i as u32, *u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::config::InterfaceConfig;
    use crate::control::state::{Change, RealSpec, ServiceOptions};
    use crate::lb::scheduler::{SchedFlags, SchedulerKind};
    use crate::lb::service::ForwardMode;
    use crate::lb::Proto;

    fn key() -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            vip: "10.0.0.1:80".parse().unwrap(),
        }
    }

    fn state(reals: &[&str]) -> State {
        let mut changes = vec![Change::AddService {
            key: key(),
            options: ServiceOptions {
                scheduler: SchedulerKind::Rr,
                flags: SchedFlags::default(),
                persistence: None,
                synproxy: Default::default(),
                check: Default::default(),
                client_address: Default::default(),
            },
        }];
        for r in reals {
            changes.push(Change::AddReal {
                key: key(),
                real: RealSpec {
                    addr: r.parse().unwrap(),
                    weight: 1,
                    mode: ForwardMode::Nat,
                    check_port: None,
                },
            });
        }
        State::new(
            vec![InterfaceConfig {
                port: 0,
                addrs: vec!["10.0.0.254/24".parse().unwrap()],
                rp_filter: Default::default(),
                kernel: None,
            }],
            2,
        )
        .apply_all(&changes)
        .unwrap()
    }

    #[test]
    fn removed_reals_drain_then_free_their_slot() {
        let a: SocketAddrV4 = "10.0.1.1:80".parse().unwrap();
        let mut slots = RealSlots::new(2);
        slots
            .assign(&state(&["10.0.1.1:80", "10.0.1.2:80"]), 1)
            .unwrap();
        assert_eq!(slots.slot(&key(), a), Some(0));
        // Removed at epoch 2: drains while it has sessions.
        slots.assign(&state(&["10.0.1.2:80"]), 2).unwrap();
        assert!(matches!(slots.get(0), SlotUse::Draining { since: 2, .. }));
        // No room for a third real while it drains.
        let err = slots
            .assign(&state(&["10.0.1.2:80", "10.0.1.3:80"]), 3)
            .unwrap_err();
        assert!(err.contains("still have sessions"), "{err}");
        // Workers not all past epoch 2, or sessions left: kept.
        assert!(slots.reclaim(1, |_| 0).is_empty());
        assert!(slots.reclaim(2, |s| u64::from(s == 0)).is_empty());
        let g = slots.generation(0);
        assert_eq!(slots.reclaim(2, |_| 0), vec![(0, key())]);
        assert_ne!(slots.generation(0), g, "a freed slot gets a new generation");
        slots
            .assign(&state(&["10.0.1.2:80", "10.0.1.3:80"]), 3)
            .unwrap();
        assert_eq!(slots.slot(&key(), "10.0.1.3:80".parse().unwrap()), Some(0));
    }

    #[test]
    fn a_real_added_back_while_draining_gets_its_slot_again() {
        let mut slots = RealSlots::new(4);
        slots
            .assign(&state(&["10.0.1.1:80", "10.0.1.2:80"]), 1)
            .unwrap();
        let b: SocketAddrV4 = "10.0.1.2:80".parse().unwrap();
        let slot = slots.slot(&key(), b).unwrap();
        slots.assign(&state(&["10.0.1.1:80"]), 2).unwrap();
        slots
            .assign(&state(&["10.0.1.1:80", "10.0.1.2:80"]), 3)
            .unwrap();
        assert_eq!(slots.slot(&key(), b), Some(slot));
        assert!(matches!(slots.get(slot), SlotUse::Live { .. }));
        assert!(slots.reclaim(3, |_| 0).is_empty());
    }
}
