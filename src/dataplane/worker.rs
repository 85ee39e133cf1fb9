//! The worker lcore loop: rx burst from every port -> pipeline -> per-port
//! tx buffers -> flush; timers every millisecond. One per worker lcore;
//! everything it touches on the packet path is its own.

use super::counters::{Counter, Counters};
use super::pipeline::{Io, PacketBuf, Pipeline};
use super::snapshot::Snapshot;
use crate::dpdk::{self, Mbuf, Mempool, BURST};
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
}

/// What a worker needs to run.
pub struct WorkerSetup {
    /// DPDK port ids to poll; each is also a tx port.
    pub ports: Vec<u16>,
    /// This worker's rx/tx queue on every port.
    pub queue: u16,
    pub pool: Arc<Mempool>,
    pub snapshot: Arc<Snapshot>,
    /// Set by the main lcore to stop the loop.
    pub stop: Arc<AtomicBool>,
}

/// Per-port tx buffers of one worker, and its buffer source.
struct TxIo<'a> {
    queue: u16,
    pool: &'a Mempool,
    /// Indexed by port id; allocated once at start.
    pending: Vec<ArrayVec<Mbuf, BURST>>,
    sent: u64,
    dropped: u64,
}

impl TxIo<'_> {
    /// Sends what is buffered for `port`; whatever the queue refuses after a
    /// few tries is freed and counted.
    #[inline]
    fn flush(&mut self, port: u16) {
        let Some(buf) = self.pending.get_mut(port as usize) else {
            return;
        };
        for _ in 0..4 {
            if buf.is_empty() {
                return;
            }
            self.sent += dpdk::tx_burst(port, self.queue, buf) as u64;
        }
        self.dropped += buf.len() as u64;
        buf.clear();
    }

    fn flush_all(&mut self) {
        for port in 0..self.pending.len() as u16 {
            self.flush(port);
        }
    }

    /// Moves the tx figures into the worker's counters.
    fn settle(&mut self, counters: &mut Counters) {
        counters.add(Counter::TxPackets, std::mem::take(&mut self.sent));
        counters.add(Counter::DropTxFull, std::mem::take(&mut self.dropped));
    }
}

impl Io<Mbuf> for TxIo<'_> {
    #[inline]
    fn send(&mut self, port: u16, pkt: Mbuf) {
        let Some(buf) = self.pending.get_mut(port as usize) else {
            self.dropped += 1;
            return;
        };
        if buf.is_full() {
            self.flush(port);
        }
        // After a flush there is room (the flush frees what it cannot send).
        if let Err(e) = self.pending[port as usize].try_push(pkt) {
            drop(e.element());
            self.dropped += 1;
        }
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        Mbuf::alloc(self.pool)
    }
}

/// Runs the worker loop until `setup.stop` is set; returns its counters.
pub fn run(setup: WorkerSetup) -> Counters {
    let mut pipeline: Pipeline<Mbuf> = Pipeline::new(Arc::clone(&setup.snapshot));
    let max_port = setup.ports.iter().copied().max().unwrap_or(0) as usize;
    let mut io = TxIo {
        queue: setup.queue,
        pool: &setup.pool,
        pending: (0..=max_port).map(|_| ArrayVec::new()).collect(),
        sent: 0,
        dropped: 0,
    };

    let hz = dpdk::tsc_hz().max(1000);
    let ticks_per_ms = hz / 1000;
    let start = dpdk::tsc();
    let mut next_timer = start;

    pipeline.announce(&mut io);
    io.flush_all();

    let mut rx: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    while !setup.stop.load(Ordering::Relaxed) {
        let tsc = dpdk::tsc();
        let now_ms = (tsc - start) / ticks_per_ms;
        for &port in &setup.ports {
            if dpdk::rx_burst(port, setup.queue, &mut rx) == 0 {
                continue;
            }
            for m in rx.drain(..) {
                m.prefetch();
                if m.is_chained() {
                    // Frames never exceed one mbuf at our MTU; a chain is
                    // something we do not parse.
                    pipeline.counters_mut().inc(Counter::RxPackets);
                    pipeline.counters_mut().inc(Counter::DropMalformedEth);
                    continue;
                }
                pipeline.process(port, m, now_ms, &mut io);
            }
        }
        io.flush_all();
        if tsc >= next_timer {
            pipeline.poll(now_ms, &mut io);
            io.flush_all();
            next_timer = tsc + ticks_per_ms;
        }
        io.settle(pipeline.counters_mut());
    }
    io.flush_all();
    io.settle(pipeline.counters_mut());
    pipeline.counters().clone()
}
