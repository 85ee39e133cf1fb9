//! The poll loop (one lcore): rx from both ports -> clients / responder /
//! ARP -> per-port tx buffers -> flush; new connections into free slots;
//! retransmission timers; counters published every 100 ms.
//!
//! Phases, timed by the TSC: wait until the VIP's MAC is known (ARP), warm
//! up, measure, then drain (no new connections; wait for the ones in flight,
//! bounded) and return.

use super::client::{ClientSegment, Clients};
use super::frame::{self, Received, Segment};
use super::server::{Server, ServerSegment};
use super::stats::{Counters, SharedCounters, Stat};
use arrayvec::ArrayVec;
use sluice::dpdk::{self, Mbuf, Mempool, RxQueue, TxQueue, BURST};
use sluice::wire::arp::{operation, ArpRepr};
use sluice::wire::EthernetAddress;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

/// Retransmission-timer slots looked at per loop iteration.
const TIMER_SCAN: usize = 64;
/// How long to wait for the VIP's MAC before giving up, seconds. sluice
/// answers ARP only once its worker has built its session table, which for
/// 16M sessions has taken 16-20 s on a host whose memory was fragmented (no
/// transparent huge pages to be had); with zero-copy memif connbench starts
/// first and its clock runs all that time. Longer than connbench.sh's 30 s
/// wait for sluice's "ready", so that a slow start is reported there.
const ARP_GIVE_UP_S: u64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Resolving = 0,
    Warmup = 1,
    Measure = 2,
    Drain = 3,
    Done = 4,
}

impl Phase {
    pub fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Resolving,
            1 => Phase::Warmup,
            2 => Phase::Measure,
            3 => Phase::Drain,
            _ => Phase::Done,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolving => "arp",
            Phase::Warmup => "warmup",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
            Phase::Done => "done",
        }
    }
}

/// What the engine needs; the ports are started and the pool made.
pub struct EngineSetup {
    pub client_port: u16,
    /// The client and server ports' queue pairs, owned by the engine's lcore.
    pub client_queues: (RxQueue, TxQueue),
    pub server_queues: (RxQueue, TxQueue),
    pub client_mac: EthernetAddress,
    pub server_mac: EthernetAddress,
    pub pool: Arc<Mempool>,
    pub clients: Clients,
    pub server: Server,
    /// Resolved at start: the MAC every client segment goes to.
    pub vip: Ipv4Addr,
    /// The client address the ARP request for the VIP comes from.
    pub arp_sender: Ipv4Addr,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub drain_s: f64,
    pub shared: Arc<SharedCounters>,
    pub phase: Arc<AtomicU8>,
    pub stop: Arc<AtomicBool>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Counters over the measured window only.
    pub measured: Counters,
    pub measured_secs: f64,
    /// Counters since start (warm-up and drain included), at the end.
    pub total: Counters,
    pub tsc_hz: u64,
    /// Stopped by a signal before the end of the measured window.
    pub interrupted: bool,
    pub error: Option<String>,
    pub vip_mac: Option<EthernetAddress>,
}

/// Per-port tx buffer, flushed when full and once per loop iteration.
struct Tx {
    queue: TxQueue,
    buf: ArrayVec<Mbuf, BURST>,
}

impl Tx {
    #[inline]
    fn push(&mut self, m: Mbuf, c: &mut Counters) {
        if self.buf.is_full() {
            self.flush(c);
        }
        if let Err(e) = self.buf.try_push(m) {
            drop(e.element());
            c.inc(Stat::TxDropped);
        }
    }

    #[inline]
    fn flush(&mut self, c: &mut Counters) {
        for _ in 0..4 {
            if self.buf.is_empty() {
                return;
            }
            c.add(Stat::TxPackets, self.queue.burst(&mut self.buf) as u64);
        }
        c.add(Stat::TxDropped, self.buf.len() as u64);
        self.buf.clear();
    }
}

/// Writes `seg` into `m` (resized to fit); false if it does not fit.
#[inline]
fn write_segment(m: &mut Mbuf, seg: &Segment) -> bool {
    if !m.set_len(seg.frame_len()) {
        return false;
    }
    seg.emit(m.data_mut());
    true
}

fn client_frame(
    s: &ClientSegment,
    mac: EthernetAddress,
    vip_mac: EthernetAddress,
    vip: std::net::SocketAddrV4,
) -> Segment<'static> {
    Segment {
        src_mac: mac,
        dst_mac: vip_mac,
        src: s.src,
        dst: vip,
        seq: s.seq,
        ack: s.ack,
        flags: s.flags,
        payload: s.payload,
    }
}

fn server_frame(s: &ServerSegment, mac: EthernetAddress, to: EthernetAddress) -> Segment<'static> {
    Segment {
        src_mac: mac,
        dst_mac: to,
        src: s.src,
        dst: s.dst,
        seq: s.seq,
        ack: s.ack,
        flags: s.flags,
        payload: s.payload,
    }
}

/// Answers an ARP request for an address we emulate, in place. Returns the
/// frame to send, or gives it back.
fn arp_answer(mut m: Mbuf, req: &ArpRepr, mac: EthernetAddress, c: &mut Counters) -> Option<Mbuf> {
    let reply = frame::arp_reply(req, mac);
    if !m.set_len(frame::ARP_FRAME_LEN) {
        return None;
    }
    frame::emit_arp(m.data_mut(), req.sender_hw, &reply);
    c.inc(Stat::ArpAnswered);
    Some(m)
}

/// Runs until the drain ends or `stop` is set.
pub fn run(mut s: EngineSetup) -> Outcome {
    // The queues move out; the rest of the setup is used field by field.
    let (mut rx_client, client_tx) = s.client_queues;
    let (mut rx_server, server_tx) = s.server_queues;
    let hz = dpdk::tsc_hz().max(1);
    let secs = |x: f64| (x * hz as f64) as u64;
    let mut c = Counters::default();
    let mut tx_client = Tx {
        queue: client_tx,
        buf: ArrayVec::new(),
    };
    let mut tx_server = Tx {
        queue: server_tx,
        buf: ArrayVec::new(),
    };
    let vip_addr = s.clients.vip();
    let start = dpdk::tsc();
    let mut vip_mac: Option<EthernetAddress> = None;
    let mut phase = Phase::Resolving;
    let mut phase_end = start + secs(ARP_GIVE_UP_S as f64);
    let mut next_arp = start;
    let mut next_publish = start;
    let mut base = Counters::default();
    let mut measured: Option<(Counters, u64)> = None;
    let mut measure_start = start;
    let mut interrupted = false;
    let mut error = None;
    let mut rx: ArrayVec<Mbuf, BURST> = ArrayVec::new();

    s.phase.store(phase as u8, Ordering::Relaxed);
    loop {
        let now = dpdk::tsc();
        if s.stop.load(Ordering::Relaxed) {
            interrupted = phase <= Phase::Measure;
            break;
        }
        // Phase changes.
        match phase {
            Phase::Resolving if vip_mac.is_some() => {
                phase = Phase::Warmup;
                phase_end = now + secs(s.warmup_s);
            }
            Phase::Resolving if now >= phase_end => {
                error = Some(format!(
                    "no ARP reply for the VIP {} on port {} within {ARP_GIVE_UP_S} s",
                    s.vip, s.client_port
                ));
                break;
            }
            Phase::Warmup if now >= phase_end => {
                phase = Phase::Measure;
                base = c.clone();
                measure_start = now;
                phase_end = now + secs(s.duration_s);
            }
            Phase::Measure if now >= phase_end => {
                phase = Phase::Drain;
                measured = Some((c.since(&base), now - measure_start));
                phase_end = now + secs(s.drain_s);
            }
            Phase::Drain if now >= phase_end || s.clients.in_flight() == 0 => break,
            _ => {}
        }
        s.phase.store(phase as u8, Ordering::Relaxed);

        // Client side: ARP, and the server's segments via sluice.
        if rx_client.burst(&mut rx) > 0 {
            c.add(Stat::RxPackets, rx.len() as u64);
            for m in &rx {
                m.prefetch();
            }
            for mut m in rx.drain(..) {
                match frame::parse(m.data()) {
                    Received::Tcp(info) => {
                        let Some(out) = s.clients.on_segment(&info, now, &mut c) else {
                            continue;
                        };
                        let Some(to) = vip_mac else { continue };
                        if write_segment(&mut m, &client_frame(&out, s.client_mac, to, vip_addr)) {
                            tx_client.push(m, &mut c);
                        }
                    }
                    Received::Arp(arp) => {
                        // sluice's MAC: from its answer to our request, its
                        // gratuitous ARP for the VIP, or its own requests.
                        if arp.sender_hw.is_unicast() && arp.sender_ip == s.vip {
                            vip_mac = Some(arp.sender_hw);
                        }
                        if arp.operation == operation::REQUEST && s.clients.owns(arp.target_ip) {
                            if vip_mac.is_none() && arp.sender_hw.is_unicast() {
                                // Whoever asks for our clients is sluice.
                                vip_mac = Some(arp.sender_hw);
                            }
                            if let Some(m) = arp_answer(m, &arp, s.client_mac, &mut c) {
                                tx_client.push(m, &mut c);
                            }
                        } else if arp.operation != operation::REPLY {
                            c.inc(Stat::RxOther);
                        }
                    }
                    Received::BadChecksum => c.inc(Stat::BadChecksum),
                    Received::Other => c.inc(Stat::RxOther),
                }
            }
        }

        // Server side: the responder.
        if rx_server.burst(&mut rx) > 0 {
            c.add(Stat::RxPackets, rx.len() as u64);
            for m in &rx {
                m.prefetch();
            }
            for mut m in rx.drain(..) {
                match frame::parse(m.data()) {
                    Received::Tcp(info) => {
                        let Some(out) = s.server.answer(&info, &mut c) else {
                            continue;
                        };
                        if write_segment(&mut m, &server_frame(&out, s.server_mac, info.src_mac)) {
                            tx_server.push(m, &mut c);
                        }
                    }
                    Received::Arp(arp)
                        if arp.operation == operation::REQUEST && s.server.owns(arp.target_ip) =>
                    {
                        if let Some(m) = arp_answer(m, &arp, s.server_mac, &mut c) {
                            tx_server.push(m, &mut c);
                        }
                    }
                    Received::Arp(_) | Received::Other => c.inc(Stat::RxOther),
                    Received::BadChecksum => c.inc(Stat::BadChecksum),
                }
            }
        }

        if let Some(to) = vip_mac {
            // New connections into the free slots (not while draining).
            if matches!(phase, Phase::Warmup | Phase::Measure) {
                for _ in 0..BURST {
                    let Some(mut m) = Mbuf::alloc(&s.pool) else {
                        c.inc(Stat::MbufExhausted);
                        break;
                    };
                    let Some(syn) = s.clients.open(now, &mut c) else {
                        break;
                    };
                    if write_segment(&mut m, &client_frame(&syn, s.client_mac, to, vip_addr)) {
                        tx_client.push(m, &mut c);
                    }
                }
            }
            let pool = &s.pool;
            let mac = s.client_mac;
            s.clients.poll_timers(now, TIMER_SCAN, &mut c, |seg, c| {
                let Some(mut m) = Mbuf::alloc(pool) else {
                    c.inc(Stat::MbufExhausted);
                    return;
                };
                if write_segment(&mut m, &client_frame(&seg, mac, to, vip_addr)) {
                    tx_client.push(m, c);
                }
            });
        } else if now >= next_arp {
            next_arp = now + hz / 10;
            if let Some(mut m) = Mbuf::alloc(&s.pool) {
                if m.set_len(frame::ARP_FRAME_LEN) {
                    let req = frame::arp_request(s.client_mac, s.arp_sender, s.vip);
                    frame::emit_arp(m.data_mut(), EthernetAddress::BROADCAST, &req);
                    c.inc(Stat::ArpRequestsSent);
                    tx_client.push(m, &mut c);
                }
            }
        }

        tx_client.flush(&mut c);
        tx_server.flush(&mut c);

        if now >= next_publish {
            next_publish = now + hz / 10;
            c.set(Stat::InFlight, s.clients.in_flight());
            s.shared.publish(&c);
        }
    }
    tx_client.flush(&mut c);
    tx_server.flush(&mut c);
    c.set(Stat::InFlight, s.clients.in_flight());
    s.shared.publish(&c);
    s.phase.store(Phase::Done as u8, Ordering::Relaxed);
    let (measured, ticks) = match measured {
        Some(m) => m,
        // Interrupted (or failed) before the end of the window: what there is.
        None if phase == Phase::Measure => (c.since(&base), dpdk::tsc() - measure_start),
        None => (Counters::default(), 0),
    };
    Outcome {
        measured,
        measured_secs: ticks as f64 / hz as f64,
        total: c,
        tsc_hz: hz,
        interrupted,
        error,
        vip_mac,
    }
}
