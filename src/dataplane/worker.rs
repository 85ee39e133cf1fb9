//! The worker lcore loop: rx burst from every port (this worker's queue)
//! and from the rings other workers hand packets over on -> pipeline ->
//! per-port tx buffers and per-worker handoff buffers -> flush; timers every
//! millisecond. Everything it touches on the packet path is its own.

use super::counters::{Counter, Counters};
use super::pipeline::{Io, PacketBuf, Pipeline};
use super::snapshot::Snapshot;
use super::stats::{SharedCounters, PUBLISH_MS};
use crate::dpdk::{self, Mbuf, Mempool, Ring, BURST};
use crate::lb::Proto;
use arrayvec::ArrayVec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }

    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        Mbuf::set_len(self, len)
    }

    #[inline]
    fn request_tx_checksums(&mut self, l3_len: usize, proto: Proto) {
        Mbuf::request_tx_checksums(self, 14, l3_len, proto == Proto::Tcp)
    }
}

/// What a worker needs to run.
pub struct WorkerSetup {
    /// This worker's index: its rx/tx queue on every port.
    pub index: u16,
    /// DPDK port ids to poll; each is also a tx port.
    pub ports: Vec<u16>,
    pub pool: Arc<Mempool>,
    pub snapshot: Arc<Snapshot>,
    /// Rings other workers hand packets to this one on (consumer end).
    pub inbox: Vec<Arc<Ring>>,
    /// `outbox[w]`: the ring to worker w (producer end); None for itself.
    pub outbox: Vec<Option<Arc<Ring>>>,
    /// Where this worker publishes its counters for live statistics.
    pub stats: Arc<SharedCounters>,
    /// Set by the main lcore to stop the loop.
    pub stop: Arc<AtomicBool>,
}

/// A worker's output side: per-port tx buffers, per-worker handoff buffers,
/// and its buffer source.
struct WorkerIo<'a> {
    queue: u16,
    pool: &'a Mempool,
    /// Indexed by port id; allocated once at start.
    tx: Vec<ArrayVec<Mbuf, BURST>>,
    /// Indexed by worker; with the ring each flushes into.
    handoff: Vec<(ArrayVec<Mbuf, BURST>, Option<Arc<Ring>>)>,
    sent: u64,
    tx_dropped: u64,
    ring_dropped: u64,
}

impl WorkerIo<'_> {
    /// Sends what is buffered for `port`; whatever the queue refuses after a
    /// few tries is freed and counted.
    #[inline]
    fn flush_port(&mut self, port: u16) {
        let Some(buf) = self.tx.get_mut(port as usize) else {
            return;
        };
        for _ in 0..4 {
            if buf.is_empty() {
                return;
            }
            self.sent += dpdk::tx_burst(port, self.queue, buf) as u64;
        }
        self.tx_dropped += buf.len() as u64;
        buf.clear();
    }

    #[inline]
    fn flush_handoff(&mut self, worker: u16) {
        let Some((buf, ring)) = self.handoff.get_mut(worker as usize) else {
            return;
        };
        if let Some(ring) = ring {
            ring.enqueue(buf);
        }
        self.ring_dropped += buf.len() as u64;
        buf.clear();
    }

    fn flush_all(&mut self) {
        for port in 0..self.tx.len() as u16 {
            self.flush_port(port);
        }
        for w in 0..self.handoff.len() as u16 {
            self.flush_handoff(w);
        }
    }

    /// Moves the tx figures into the worker's counters.
    fn settle(&mut self, counters: &mut Counters) {
        counters.add(Counter::TxPackets, std::mem::take(&mut self.sent));
        counters.add(Counter::DropTxFull, std::mem::take(&mut self.tx_dropped));
        counters.add(
            Counter::DropHandoffRingFull,
            std::mem::take(&mut self.ring_dropped),
        );
    }
}

impl Io<Mbuf> for WorkerIo<'_> {
    #[inline]
    fn send(&mut self, port: u16, pkt: Mbuf) {
        let full = match self.tx.get(port as usize) {
            Some(buf) => buf.is_full(),
            None => {
                self.tx_dropped += 1;
                return;
            }
        };
        if full {
            self.flush_port(port);
        }
        // After a flush there is room (the flush frees what it cannot send).
        if let Err(e) = self.tx[port as usize].try_push(pkt) {
            drop(e.element());
            self.tx_dropped += 1;
        }
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        Mbuf::alloc(self.pool)
    }

    #[inline]
    fn handoff(&mut self, worker: u16, in_port: u16, mut pkt: Mbuf) {
        // The receiver reads the receive port from the mbuf (copies made
        // for sharing ARP have none yet).
        pkt.set_port(in_port);
        let full = match self.handoff.get(worker as usize) {
            Some((buf, Some(_))) => buf.is_full(),
            _ => {
                self.ring_dropped += 1;
                return;
            }
        };
        if full {
            self.flush_handoff(worker);
        }
        if let Err(e) = self.handoff[worker as usize].0.try_push(pkt) {
            drop(e.element());
            self.ring_dropped += 1;
        }
    }
}

/// Runs the worker loop until `setup.stop` is set; returns its counters.
pub fn run(setup: WorkerSetup) -> Counters {
    let mut pipeline: Pipeline<Mbuf> = Pipeline::new(Arc::clone(&setup.snapshot), setup.index);
    let max_port = setup.ports.iter().copied().max().unwrap_or(0) as usize;
    let mut io = WorkerIo {
        queue: setup.index,
        pool: &setup.pool,
        tx: (0..=max_port).map(|_| ArrayVec::new()).collect(),
        handoff: setup
            .outbox
            .iter()
            .map(|r| (ArrayVec::new(), r.clone()))
            .collect(),
        sent: 0,
        tx_dropped: 0,
        ring_dropped: 0,
    };

    let hz = dpdk::tsc_hz().max(1000);
    let ticks_per_ms = hz / 1000;
    let start = dpdk::tsc();
    let mut next_timer = start;
    let mut next_publish = start;

    pipeline.announce(&mut io);
    io.flush_all();

    let mut burst: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    while !setup.stop.load(Ordering::Relaxed) {
        let tsc = dpdk::tsc();
        let now_ms = (tsc - start) / ticks_per_ms;
        let mut work = 0;
        for &port in &setup.ports {
            if dpdk::rx_burst(port, setup.index, &mut burst) == 0 {
                continue;
            }
            work += burst.len();
            // Bring every packet's headers in before touching the first, so
            // their cache misses overlap.
            for m in &burst {
                m.prefetch();
            }
            // Frames never exceed one mbuf at our MTU; a chain is something
            // we do not parse.
            let before = burst.len();
            burst.retain(|m| !m.is_chained());
            let chained = (before - burst.len()) as u64;
            if chained > 0 {
                pipeline.counters_mut().add(Counter::RxPackets, chained);
                pipeline
                    .counters_mut()
                    .add(Counter::DropMalformedEth, chained);
            }
            pipeline.process_burst(port, &mut burst, now_ms, &mut io);
        }
        for ring in &setup.inbox {
            if ring.dequeue(&mut burst) == 0 {
                continue;
            }
            work += burst.len();
            for m in burst.drain(..) {
                let port = m.port();
                pipeline.process_handoff(port, m, now_ms, &mut io);
            }
        }
        io.flush_all();
        if tsc >= next_timer {
            pipeline.poll(now_ms, &mut io);
            io.flush_all();
            next_timer = tsc + ticks_per_ms;
            if tsc >= next_publish {
                let live = pipeline.sessions().len() as u64;
                pipeline.counters_mut().set(Counter::SessionsLive, live);
                setup.stats.publish(pipeline.counters());
                next_publish = tsc + PUBLISH_MS * ticks_per_ms;
            }
        }
        if work > 0 {
            let cycles = dpdk::tsc() - tsc;
            io.settle(pipeline.counters_mut());
            pipeline.counters_mut().add(Counter::BusyCycles, cycles);
        }
    }
    let live = pipeline.sessions().len() as u64;
    pipeline.counters_mut().set(Counter::SessionsLive, live);
    io.flush_all();
    io.settle(pipeline.counters_mut());
    pipeline.counters().clone()
}
