//! Live statistics: each worker publishes a copy of its counters (the
//! process-wide ones and those of every real server slot) every
//! `PUBLISH_MS`, with relaxed atomic stores off the packet path, so the main
//! lcore can report totals and rates while the workers run, without locks
//! and without a shared write on the packet path.

use super::counters::{Counter, Counters};
use super::pipeline::ConflictReport;
use crate::lb::stats::{RealCounters, RealStats};
use crate::wire::EthernetAddress;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// Address conflicts a worker keeps published for the control side to log
/// (the latest ones; the control side reads them every few milliseconds).
pub const CONFLICT_SLOTS: usize = 8;

/// One published conflict: a sequence number (0: none yet) written last,
/// so a reader that sees the same one before and after reading the fields
/// has read one report whole.
#[derive(Default)]
struct SharedConflict {
    seq: AtomicU64,
    /// Address << 16 | port.
    addr_port: AtomicU64,
    mac: AtomicU64,
}

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
    conflicts: [SharedConflict; CONFLICT_SLOTS],
    /// Conflicts reported so far (the writer's count).
    conflict_seq: AtomicU64,
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
            conflicts: Default::default(),
            conflict_seq: AtomicU64::new(0),
        }
    }

    /// Publishes one address conflict (worker side).
    pub fn report_conflict(&self, c: &ConflictReport) {
        let seq = self.conflict_seq.load(Ordering::Relaxed) + 1;
        self.conflict_seq.store(seq, Ordering::Relaxed);
        let slot = &self.conflicts[(seq as usize) % CONFLICT_SLOTS];
        slot.seq.store(0, Ordering::Release);
        slot.addr_port.store(
            (u64::from(u32::from(c.addr)) << 16) | u64::from(c.port),
            Ordering::Relaxed,
        );
        let mut mac = [0u8; 8];
        mac[2..].copy_from_slice(&c.mac.0);
        slot.mac.store(u64::from_be_bytes(mac), Ordering::Relaxed);
        slot.seq.store(seq, Ordering::Release);
    }

    /// The conflicts published after sequence number `after`, oldest first,
    /// with the last sequence number read (control side). Reports
    /// overwritten before they were read are skipped.
    pub fn conflicts_since(&self, after: u64) -> (Vec<ConflictReport>, u64) {
        let mut out: Vec<(u64, ConflictReport)> = Vec::new();
        for slot in &self.conflicts {
            let seq = slot.seq.load(Ordering::Acquire);
            if seq <= after {
                continue;
            }
            let addr_port = slot.addr_port.load(Ordering::Relaxed);
            let mac = slot.mac.load(Ordering::Relaxed).to_be_bytes();
            if slot.seq.load(Ordering::Acquire) != seq {
                continue; // rewritten while read: the next read gets it
            }
            let mut m = [0u8; 6];
            m.copy_from_slice(&mac[2..]);
            out.push((
                seq,
                ConflictReport {
                    addr: Ipv4Addr::from((addr_port >> 16) as u32),
                    port: addr_port as u16,
                    mac: EthernetAddress(m),
                },
            ));
        }
        out.sort_by_key(|(seq, _)| *seq);
        let last = out.last().map_or(after, |(seq, _)| *seq);
        (out.into_iter().map(|(_, c)| c).collect(), last)
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

/// The control side's reader of the workers' conflict reports: what is new
/// since the last look, each address at most once per `period` over all
/// workers (each worker already reports an address at most once per 10 s).
pub struct ConflictLog {
    /// Per worker: the last sequence number read.
    seen: Vec<u64>,
    last_logged: HashMap<Ipv4Addr, Instant>,
    period: Duration,
}

impl ConflictLog {
    pub fn new(workers: usize, period: Duration) -> ConflictLog {
        ConflictLog {
            seen: vec![0; workers],
            last_logged: HashMap::new(),
            period,
        }
    }

    /// The reports to log now.
    pub fn poll<'a>(
        &mut self,
        workers: impl Iterator<Item = &'a SharedCounters>,
        now: Instant,
    ) -> Vec<ConflictReport> {
        let mut out = Vec::new();
        for (seen, shared) in self.seen.iter_mut().zip(workers) {
            let (reports, last) = shared.conflicts_since(*seen);
            *seen = last;
            for r in reports {
                let due = self
                    .last_logged
                    .get(&r.addr)
                    .is_none_or(|&t| now.duration_since(t) >= self.period);
                if due {
                    self.last_logged.insert(r.addr, now);
                    out.push(r);
                }
            }
        }
        // Bounded: forget addresses quiet for a period.
        let period = self.period;
        self.last_logged
            .retain(|_, &mut t| now.duration_since(t) < period);
        out
    }
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

    #[test]
    fn conflicts_are_read_once_in_order() {
        let shared = SharedCounters::default();
        let report = |last: u8| ConflictReport {
            addr: Ipv4Addr::new(10, 10, 0, last),
            port: 1,
            mac: EthernetAddress([2, 0, 0, 0, 0, last]),
        };
        assert_eq!(shared.conflicts_since(0), (vec![], 0));
        shared.report_conflict(&report(100));
        shared.report_conflict(&report(101));
        let (got, last) = shared.conflicts_since(0);
        assert_eq!((got, last), (vec![report(100), report(101)], 2));
        assert_eq!(shared.conflicts_since(2), (vec![], 2));
        // More than the slots between two reads: the latest ones survive.
        for i in 0..20 {
            shared.report_conflict(&report(i));
        }
        let (got, last) = shared.conflicts_since(2);
        assert_eq!(last, 22);
        assert_eq!(got.len(), CONFLICT_SLOTS);
        assert_eq!(got.last(), Some(&report(19)));
    }

    #[test]
    fn the_log_names_an_address_once_per_period_over_all_workers() {
        let workers = [SharedCounters::default(), SharedCounters::default()];
        let claim = ConflictReport {
            addr: Ipv4Addr::new(10, 10, 0, 100),
            port: 0,
            mac: EthernetAddress([2, 0, 0, 0, 0, 0x66]),
        };
        let mut log = ConflictLog::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        workers[0].report_conflict(&claim);
        workers[1].report_conflict(&claim);
        assert_eq!(log.poll(workers.iter(), t0), vec![claim]);
        assert!(log.poll(workers.iter(), t0).is_empty(), "read once");
        workers[1].report_conflict(&claim);
        assert!(log
            .poll(workers.iter(), t0 + Duration::from_secs(9))
            .is_empty());
        workers[0].report_conflict(&claim);
        assert_eq!(
            log.poll(workers.iter(), t0 + Duration::from_secs(10)),
            vec![claim]
        );
    }
}
