//! The worker lcore loop: rx burst from its queue on every port and from
//! the rings other workers hand packets over on -> pipeline -> per-port tx
//! buffers and per-worker handoff buffers -> flush; timers every
//! millisecond; a new configuration snapshot picked up between bursts.
//! What is for the host kernel goes on a ring to the twin pump
//! (`twin_pump`), never through a system call here.
//! Everything it touches on the packet path is its own: the queues, the
//! ring ends and the pipeline are values it owns.

use super::counters::{Counter, Counters};
use super::pipeline::{Io, PacketBuf, Pipeline, RxChecksum, Shared};
use super::publish::SnapshotReader;
use super::query::{Query, Reply};
use super::stats::{SharedCounters, PUBLISH_MS};
use crate::dpdk::{self, Mbuf, Mempool, RingConsumer, RingProducer, RxQueue, TxQueue, BURST};
use crate::lb::Proto;
use arrayvec::ArrayVec;
use crossbeam::channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

    #[inline]
    fn rx_ip_checksum(&self) -> RxChecksum {
        match self.rx_ip_checksum_good() {
            Some(true) => RxChecksum::Good,
            Some(false) => RxChecksum::Bad,
            None => RxChecksum::Unchecked,
        }
    }
}

/// Bursts taken from the kernel twins' ring per timer tick at most: the
/// way down is for the host's own traffic (checks, routing protocols,
/// ssh), not bulk.
const TWIN_BURSTS_PER_TICK: usize = 8;

/// What a worker needs to run; everything in it is the worker's own.
pub struct WorkerSetup {
    /// This worker's index among the workers.
    pub index: u16,
    /// Its (rx, tx) queue on every port, by port id.
    pub queues: Vec<(RxQueue, TxQueue)>,
    /// Its rings to and from the kernel twins' pump (None without twins;
    /// only worker 0 gets frames down).
    pub kernel_up: Option<RingProducer>,
    pub kernel_down: Option<RingConsumer>,
    pub pool: Arc<Mempool>,
    /// Where its configuration snapshots come from.
    pub snapshots: SnapshotReader,
    /// What every worker is given alike: persistence templates, the owner
    /// key, the pending-ARP budget.
    pub shared: Shared,
    /// Rings other workers hand packets to this one on.
    pub inbox: Vec<RingConsumer>,
    /// `outbox[w]`: the ring to worker w; None for itself.
    pub outbox: Vec<Option<RingProducer>>,
    /// Where this worker publishes its counters for live statistics.
    pub stats: Arc<SharedCounters>,
    /// Questions from the control side, and the answers.
    pub queries: Receiver<Query>,
    pub replies: Sender<Reply>,
    /// The TSC at which every worker's millisecond clock starts (shared, so
    /// persistence templates compare across workers).
    pub start_tsc: u64,
    /// Set by the main lcore to stop the loop.
    pub stop: Arc<AtomicBool>,
    /// Counted up once the worker has built its tables and polls its
    /// queues: sluice is ready only when every worker is (a table for
    /// millions of sessions takes seconds to build).
    pub running: Arc<AtomicUsize>,
}

/// A worker's output side: per-port tx buffers, per-worker handoff buffers,
/// and its buffer source.
struct WorkerIo<'a> {
    pool: &'a Mempool,
    /// Indexed by port id.
    tx: Vec<(TxQueue, ArrayVec<Mbuf, BURST>)>,
    /// Indexed by worker; with the ring each flushes into.
    handoff: Vec<(ArrayVec<Mbuf, BURST>, Option<RingProducer>)>,
    /// The way up to the kernel twins (each frame marked with its port).
    kernel: Option<(RingProducer, ArrayVec<Mbuf, BURST>)>,
    sent: u64,
    tx_dropped: u64,
    ring_dropped: u64,
    kernel_dropped: u64,
}

impl WorkerIo<'_> {
    /// Sends what is buffered for `port`; whatever the queue refuses after a
    /// few tries is freed and counted.
    #[inline]
    fn flush_port(&mut self, port: u16) {
        let Some((queue, buf)) = self.tx.get_mut(port as usize) else {
            return;
        };
        for _ in 0..4 {
            if buf.is_empty() {
                return;
            }
            self.sent += queue.burst(buf) as u64;
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

    /// Puts what is buffered for the kernel twins on the ring up; what the
    /// ring has no room for is freed and counted.
    fn flush_kernel(&mut self) {
        let Some((ring, buf)) = self.kernel.as_mut() else {
            return;
        };
        if buf.is_empty() {
            return;
        }
        ring.enqueue(buf);
        self.kernel_dropped += buf.len() as u64;
        buf.clear();
    }

    fn flush_all(&mut self) {
        for port in 0..self.tx.len() as u16 {
            self.flush_port(port);
        }
        self.flush_kernel();
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
        counters.add(
            Counter::DropKernelQueueFull,
            std::mem::take(&mut self.kernel_dropped),
        );
    }
}

impl Io<Mbuf> for WorkerIo<'_> {
    #[inline]
    fn send(&mut self, port: u16, pkt: Mbuf) {
        let full = match self.tx.get(port as usize) {
            Some((_, buf)) => buf.is_full(),
            None => {
                self.tx_dropped += 1;
                return;
            }
        };
        if full {
            self.flush_port(port);
        }
        // After a flush there is room (the flush frees what it cannot send).
        if let Err(e) = self.tx[port as usize].1.try_push(pkt) {
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

    #[inline]
    fn to_kernel(&mut self, port: u16, mut pkt: Mbuf) {
        // The pump reads which twin from the mbuf.
        pkt.set_port(port);
        let full = match &self.kernel {
            Some((_, buf)) => buf.is_full(),
            // The pipeline only sends here for ports with a twin.
            None => {
                self.kernel_dropped += 1;
                return;
            }
        };
        if full {
            self.flush_kernel();
        }
        if let Some((_, buf)) = self.kernel.as_mut() {
            if let Err(e) = buf.try_push(pkt) {
                drop(e.element());
                self.kernel_dropped += 1;
            }
        }
    }
}

/// Runs the worker loop until `setup.stop` is set; returns its counters.
pub fn run(setup: WorkerSetup) -> Counters {
    let WorkerSetup {
        index,
        queues,
        kernel_up,
        mut kernel_down,
        pool,
        mut snapshots,
        shared,
        mut inbox,
        outbox,
        stats,
        queries,
        replies,
        start_tsc,
        stop,
        running,
    } = setup;
    let (mut rx, tx): (Vec<RxQueue>, Vec<TxQueue>) = queues.into_iter().unzip();
    let snapshot = snapshots.current();
    let mut pipeline: Pipeline<Mbuf> = Pipeline::with_shared(snapshot, index, shared);
    let mut io = WorkerIo {
        pool: &pool,
        tx: tx.into_iter().map(|q| (q, ArrayVec::new())).collect(),
        handoff: outbox.into_iter().map(|r| (ArrayVec::new(), r)).collect(),
        kernel: kernel_up.map(|r| (r, ArrayVec::new())),
        sent: 0,
        tx_dropped: 0,
        ring_dropped: 0,
        kernel_dropped: 0,
    };

    let hz = dpdk::tsc_hz().max(1000);
    let ticks_per_ms = hz / 1000;
    let mut next_timer = dpdk::tsc();
    let mut next_publish = next_timer;

    pipeline.announce(&mut io);
    io.flush_all();
    running.fetch_add(1, Ordering::Release);

    let mut burst: ArrayVec<Mbuf, BURST> = ArrayVec::new();
    while !stop.load(Ordering::Relaxed) {
        let tsc = dpdk::tsc();
        let now_ms = tsc.saturating_sub(start_tsc) / ticks_per_ms;
        // A new configuration, between bursts: one atomic load when none.
        if snapshots.refresh(|s| pipeline.switch(s, &mut io)) {
            io.flush_all();
        }
        let mut work = 0;
        for queue in rx.iter_mut() {
            if queue.burst(&mut burst) == 0 {
                continue;
            }
            let port = queue.port();
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
        for ring in inbox.iter_mut() {
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
            if let Some(ring) = kernel_down.as_mut() {
                for _ in 0..TWIN_BURSTS_PER_TICK {
                    if ring.dequeue(&mut burst) == 0 {
                        break;
                    }
                    for m in burst.drain(..) {
                        let port = m.port();
                        pipeline.from_kernel(port, m, &mut io);
                    }
                }
            }
            io.flush_all();
            // Kernel traffic may come with no rx work in the loop.
            io.settle(pipeline.counters_mut());
            if let Ok(q) = queries.try_recv() {
                // The control side waits for this answer; if it gave up,
                // the answer is simply dropped.
                let _ = replies.try_send(pipeline.answer(q, now_ms));
            }
            next_timer = tsc + ticks_per_ms;
            if tsc >= next_publish {
                let live = pipeline.sessions().len() as u64;
                pipeline.counters_mut().set(Counter::SessionsLive, live);
                stats.publish(pipeline.counters());
                stats.publish_laddrs(pipeline.laddrs_in_use());
                stats.publish_reals(pipeline.real_stats(), snapshots.epoch());
                for c in pipeline.take_conflict_reports() {
                    stats.report_conflict(&c);
                }
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
    stats.publish(pipeline.counters());
    stats.publish_laddrs(pipeline.laddrs_in_use());
    stats.publish_reals(pipeline.real_stats(), snapshots.epoch());
    pipeline.counters().clone()
}
