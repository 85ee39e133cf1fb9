//! One worker's counters per real server slot: IPVS's per-destination
//! figures (Conns, InPkts, OutPkts, InBytes, OutBytes, ActiveConn,
//! InActConn). Written by the worker only, on the packet path, so plain
//! integers; the worker copies them out for the control side every few
//! milliseconds (`dataplane::stats`). Service figures are the sums of their
//! reals'.

use super::scheduler::ConnCounts;
use super::service::RealServer;
use super::tcp_state::Direction;

/// What the control side says about a slot (from the snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotState {
    /// Changes when the slot goes to another real: zero its counters.
    pub generation: u32,
    /// End this slot's sessions on their next packet (a removed real with
    /// IPVS's `expire_nodest_conn` on).
    pub expire: bool,
}

/// The counters of one slot: one cache line, touched once per packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct RealCounters {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    /// Sessions in ESTABLISHED (IPVS ActiveConn).
    pub active: u32,
    /// Every other live session, UDP included (IPVS InActConn).
    pub inactive: u32,
    pub generation: u32,
    pub expire: bool,
}

impl RealCounters {
    /// Live sessions on this slot.
    pub fn sessions(&self) -> u64 {
        u64::from(self.active) + u64::from(self.inactive)
    }

    /// A packet of `bytes` (IP header included) forwarded going `dir`.
    #[inline]
    pub fn count(&mut self, dir: Direction, bytes: u64) {
        match dir {
            Direction::Inbound => {
                self.in_pkts += 1;
                self.in_bytes += bytes;
            }
            Direction::Outbound => {
                self.out_pkts += 1;
                self.out_bytes += bytes;
            }
        }
    }
}

/// A worker's counters, indexed by slot.
pub struct RealStats {
    slots: Box<[RealCounters]>,
}

impl RealStats {
    pub fn new(slots: usize) -> RealStats {
        RealStats {
            slots: vec![RealCounters::default(); slots].into_boxed_slice(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    #[inline]
    pub fn get(&self, slot: u32) -> Option<&RealCounters> {
        self.slots.get(slot as usize)
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> Option<&mut RealCounters> {
        self.slots.get_mut(slot as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &RealCounters)> + '_ {
        self.slots.iter().enumerate().map(|(i, c)| (i as u32, c))
    }

    /// Takes the control side's view of the slots: a slot given to another
    /// real starts from zero; expiry flags are copied.
    pub fn sync(&mut self, states: &[SlotState]) {
        for (c, s) in self.slots.iter_mut().zip(states) {
            if c.generation != s.generation {
                *c = RealCounters {
                    generation: s.generation,
                    ..RealCounters::default()
                };
            }
            c.expire = s.expire;
        }
    }

    /// A session to `slot` was created (inactive until ESTABLISHED).
    #[inline]
    pub fn opened(&mut self, slot: u32) {
        if let Some(c) = self.get_mut(slot) {
            c.conns += 1;
            c.inactive += 1;
        }
    }

    /// A session to `slot` ended; `active`: it was ESTABLISHED.
    #[inline]
    pub fn closed(&mut self, slot: u32, active: bool) {
        if let Some(c) = self.get_mut(slot) {
            if active {
                c.active = c.active.saturating_sub(1);
            } else {
                c.inactive = c.inactive.saturating_sub(1);
            }
        }
    }

    /// A session moved between ActiveConn and InActConn.
    #[inline]
    pub fn changed(&mut self, slot: u32, was_active: bool, active: bool) {
        if was_active != active {
            self.closed(slot, was_active);
            if let Some(c) = self.get_mut(slot) {
                if active {
                    c.active += 1;
                } else {
                    c.inactive += 1;
                }
            }
        }
    }
}

/// A service's connection counts on this worker, for the schedulers that
/// weigh them (lc, wlc, sed, nq): real `i` of the service is slot
/// `reals[i].slot`.
pub struct ServiceConns<'a> {
    pub reals: &'a [RealServer],
    pub stats: &'a RealStats,
}

impl ConnCounts for ServiceConns<'_> {
    #[inline]
    fn active(&self, real: usize) -> u32 {
        self.reals
            .get(real)
            .and_then(|r| self.stats.get(r.slot))
            .map_or(0, |c| c.active)
    }

    #[inline]
    fn inactive(&self, real: usize) -> u32 {
        self.reals
            .get(real)
            .and_then(|r| self.stats.get(r.slot))
            .map_or(0, |c| c.inactive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_sessions_and_reset_on_a_new_generation() {
        let mut s = RealStats::new(4);
        s.opened(1);
        s.opened(1);
        s.changed(1, false, true);
        assert_eq!(
            (s.get(1).unwrap().active, s.get(1).unwrap().inactive),
            (1, 1)
        );
        s.closed(1, true);
        s.closed(1, false);
        assert_eq!(s.get(1).unwrap().sessions(), 0);
        assert_eq!(s.get(1).unwrap().conns, 2);
        // Out of range: ignored, never a panic.
        s.opened(9);
        let mut states = [SlotState::default(); 4];
        s.sync(&states);
        assert_eq!(s.get(1).unwrap().conns, 2, "same generation: kept");
        states[1] = SlotState {
            generation: 1,
            expire: true,
        };
        s.sync(&states);
        assert_eq!(s.get(1).unwrap().conns, 0);
        assert!(s.get(1).unwrap().expire);
        assert_eq!(std::mem::size_of::<RealCounters>(), 64);
    }
}
