//! Live statistics: each worker publishes a copy of its counters every
//! `PUBLISH_MS` (relaxed atomic stores, off the packet path) so the main
//! lcore can report rates while the workers run, without locks.

use super::counters::{Counter, Counters};
use std::sync::atomic::{AtomicU64, Ordering};

/// How often a worker publishes its counters.
pub const PUBLISH_MS: u64 = 100;

/// One worker's published counters. Single writer (the worker), any reader.
pub struct SharedCounters {
    values: [AtomicU64; Counter::COUNT],
}

impl Default for SharedCounters {
    fn default() -> Self {
        SharedCounters {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl SharedCounters {
    pub fn publish(&self, counters: &Counters) {
        for (slot, &c) in self.values.iter().zip(Counter::ALL) {
            slot.store(counters.get(c), Ordering::Relaxed);
        }
    }

    pub fn read(&self) -> Counters {
        let mut out = Counters::default();
        for (slot, &c) in self.values.iter().zip(Counter::ALL) {
            out.add(c, slot.load(Ordering::Relaxed));
        }
        out
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
