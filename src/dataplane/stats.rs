//! Live statistics: each worker publishes a copy of its counters (the
//! process-wide ones and those of every real server slot) every
//! `PUBLISH_MS`, with relaxed atomic stores off the packet path, so the main
//! lcore can report totals and rates while the workers run, without locks
//! and without a shared write on the packet path.

use super::counters::{Counter, Counters};
use crate::lb::stats::{RealCounters, RealStats};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// How often a worker publishes its counters.
pub const PUBLISH_MS: u64 = 100;

/// One slot's published counters.
#[derive(Default)]
struct SharedReal {
    conns: AtomicU64,
    in_pkts: AtomicU64,
    out_pkts: AtomicU64,
    in_bytes: AtomicU64,
    out_bytes: AtomicU64,
    active: AtomicU32,
    inactive: AtomicU32,
    generation: AtomicU32,
}

/// Local addresses whose use a worker publishes (more are not shown).
pub const PUBLISHED_LADDRS: usize = 256;

/// One worker's published counters. Single writer (the worker), any reader.
pub struct SharedCounters {
    values: [AtomicU64; Counter::COUNT],
    reals: Box<[SharedReal]>,
    /// (address, sessions using it) of each local address pool; address 0
    /// ends the list.
    laddrs: Box<[(AtomicU32, AtomicU64)]>,
    /// The snapshot epoch the worker ran on when it published; published
    /// last, so counters read after it are at least that recent.
    epoch: AtomicU64,
}

impl Default for SharedCounters {
    fn default() -> Self {
        SharedCounters::new(0)
    }
}

impl SharedCounters {
    /// Room for `slots` real server slots.
    pub fn new(slots: usize) -> SharedCounters {
        SharedCounters {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            reals: (0..slots).map(|_| SharedReal::default()).collect(),
            laddrs: (0..PUBLISHED_LADDRS)
                .map(|_| (AtomicU32::new(0), AtomicU64::new(0)))
                .collect(),
            epoch: AtomicU64::new(0),
        }
    }

    pub fn publish(&self, counters: &Counters) {
        for (slot, &c) in self.values.iter().zip(Counter::ALL) {
            slot.store(counters.get(c), Ordering::Relaxed);
        }
    }

    /// Publishes each local address pool's use.
    pub fn publish_laddrs(&self, in_use: impl Iterator<Item = (Ipv4Addr, usize)>) {
        let mut n = 0;
        for ((addr, used), (a, u)) in in_use.zip(self.laddrs.iter()) {
            u.store(used as u64, Ordering::Relaxed);
            a.store(u32::from(addr), Ordering::Relaxed);
            n += 1;
        }
        if let Some((a, _)) = self.laddrs.get(n) {
            a.store(0, Ordering::Relaxed);
        }
    }

    /// The published local address pools: (address, sessions using it).
    pub fn laddrs(&self) -> Vec<(Ipv4Addr, u64)> {
        self.laddrs
            .iter()
            .map(|(a, u)| (a.load(Ordering::Relaxed), u.load(Ordering::Relaxed)))
            .take_while(|&(a, _)| a != 0)
            .map(|(a, u)| (Ipv4Addr::from(a), u))
            .collect()
    }

    /// Publishes the per-real counters, then the epoch they belong to.
    pub fn publish_reals(&self, reals: &RealStats, epoch: u64) {
        for (shared, (_, c)) in self.reals.iter().zip(reals.iter()) {
            shared.conns.store(c.conns, Ordering::Relaxed);
            shared.in_pkts.store(c.in_pkts, Ordering::Relaxed);
            shared.out_pkts.store(c.out_pkts, Ordering::Relaxed);
            shared.in_bytes.store(c.in_bytes, Ordering::Relaxed);
            shared.out_bytes.store(c.out_bytes, Ordering::Relaxed);
            shared.active.store(c.active, Ordering::Relaxed);
            shared.inactive.store(c.inactive, Ordering::Relaxed);
            shared.generation.store(c.generation, Ordering::Relaxed);
        }
        self.epoch.store(epoch, Ordering::Release);
    }

    pub fn read(&self) -> Counters {
        let mut out = Counters::default();
        for (slot, &c) in self.values.iter().zip(Counter::ALL) {
            out.add(c, slot.load(Ordering::Relaxed));
        }
        out
    }

    /// The epoch of the last published per-real counters.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Slot `slot`'s published counters, if they belong to `generation`.
    pub fn real(&self, slot: u32, generation: u32) -> Option<RealCounters> {
        let s = self.reals.get(slot as usize)?;
        if s.generation.load(Ordering::Relaxed) != generation {
            return None;
        }
        Some(RealCounters {
            conns: s.conns.load(Ordering::Relaxed),
            in_pkts: s.in_pkts.load(Ordering::Relaxed),
            out_pkts: s.out_pkts.load(Ordering::Relaxed),
            in_bytes: s.in_bytes.load(Ordering::Relaxed),
            out_bytes: s.out_bytes.load(Ordering::Relaxed),
            active: s.active.load(Ordering::Relaxed),
            inactive: s.inactive.load(Ordering::Relaxed),
            generation,
            expire: false,
        })
    }
}

/// Rates between two readings of the summed counters, `secs` apart.
pub fn rate_line(prev: &Counters, now: &Counters, secs: f64, elapsed: f64) -> String {
    let d = |c: Counter| now.get(c).saturating_sub(prev.get(c));
    let per_s = |c: Counter| d(c) as f64 / secs;
    let rx = d(Counter::RxPackets);
    let cycles_per_pkt = if rx > 0 {
        d(Counter::BusyCycles) as f64 / rx as f64
    } else {
        0.0
    };
    format!(
        "stats: elapsed={elapsed:.1} rx_pps={:.0} tx_pps={:.0} conns_per_s={:.0} sessions={} handoffs_per_s={:.0} cycles_per_pkt={cycles_per_pkt:.1}",
        per_s(Counter::RxPackets),
        per_s(Counter::TxPackets),
        per_s(Counter::Conns),
        now.get(Counter::SessionsLive),
        per_s(Counter::SteerHandoffs),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_then_read_and_rates() {
        let shared = SharedCounters::default();
        let mut c = Counters::default();
        c.add(Counter::RxPackets, 1000);
        c.add(Counter::BusyCycles, 50_000);
        shared.publish(&c);
        let read = shared.read();
        assert_eq!(read.get(Counter::RxPackets), 1000);
        let line = rate_line(&Counters::default(), &read, 0.5, 1.0);
        assert!(line.contains("rx_pps=2000 "), "{line}");
        assert!(line.contains("cycles_per_pkt=50.0"), "{line}");
    }
}
