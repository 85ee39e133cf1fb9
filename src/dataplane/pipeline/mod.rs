//! The per-packet pipeline: classify a frame, answer what is addressed to
//! sluice (ARP, ICMP echo), translate what belongs to a virtual service,
//! pick the next hop, drop the rest with a named reason.
//!
//! No DPDK in here: packets are any `PacketBuf` (an mbuf in production, a
//! Vec in tests) and the outside world is an `Io`, so unit tests, fuzzers
//! and benchmarks drive exactly the code that runs on the workers.

mod arp;
mod client_address;
mod established;
mod icmp;
mod kernel;
mod parse;
mod prefetch;
mod refuse;
mod source;
mod synproxy;
mod translate;

use super::counters::{Counter, Counters};
use super::query::{NeighbourInfo, Query, Reply, SessionInfo, SESSION_SCAN};
use super::snapshot::{Destination, Snapshot};
pub use super::steering::OwnerHash;
use crate::lb::icmp_error;
use crate::lb::laddr::{self, LocalPools};
use crate::lb::nat;
use crate::lb::persistence::Templates;
use crate::lb::scheduler::SchedState;
use crate::lb::service::{ForwardMode, SynProxyMode};
use crate::lb::session::{ConnState, FlowKey, FlowTag, InsertError, Session, SessionTable};
use crate::lb::stats::RealStats;
use crate::lb::tcp_state::{self, Direction, TcpFlags, TcpState};
use crate::lb::Proto;
use crate::net::hash::FastInt;
use crate::net::neighbour::{
    Enqueue, NeighbourConfig, NeighbourEvent, NeighbourTable, MAX_PENDING,
};
use crate::net::nexthop_cache::{NextHopCache, Resolved};
use crate::net::MacAddr;
use crate::wire::arp::{operation, ArpPacket, ArpRepr};
use crate::wire::ethernet::ethertype;
use crate::wire::icmpv4::{msg_type, Icmpv4Packet};
use crate::wire::ipv4::protocol;
use crate::wire::{checksum, EthernetAddress, EthernetFrame, Ipv4Packet, TcpPacket, UdpPacket};
use arrayvec::ArrayVec;
use hashbrown::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use arp::ArpGuard;
pub use arp::ConflictReport;
pub use kernel::KernelBudget;
use parse::{flow_key, parse_ipv4, parse_l4};
use prefetch::BurstPrefetch;
use translate::SessionEnds;

/// A packet buffer the pipeline can read and rewrite.
pub trait PacketBuf {
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Sets the length of a fresh buffer; false if it does not fit.
    fn set_len(&mut self, len: usize) -> bool;
    /// Asks the NIC to compute the IPv4 header checksum and the TCP/UDP
    /// checksum on transmit. The pipeline has zeroed the former and put the
    /// pseudo-header sum in the latter, as DPDK's offload expects.
    fn request_tx_checksums(&mut self, l3_len: usize, proto: Proto);
    /// What the NIC found of the IPv4 header checksum on receive, where
    /// it checks (`RTE_MBUF_F_RX_IP_CKSUM_*`).
    #[inline]
    fn rx_ip_checksum(&self) -> RxChecksum {
        RxChecksum::Unchecked
    }
}

/// A receive checksum as the NIC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxChecksum {
    /// Not checked: sluice checks it.
    Unchecked,
    Good,
    Bad,
}

/// Where the pipeline's output goes.
pub trait Io<P> {
    /// Queues `pkt` for transmission on `port`.
    fn send(&mut self, port: u16, pkt: P);
    /// A new empty buffer for a packet sluice originates (ARP).
    fn alloc(&mut self) -> Option<P>;
    /// Hands `pkt`, received on `in_port`, to `worker`, the worker that
    /// owns its session (through a lock-free ring).
    fn handoff(&mut self, worker: u16, in_port: u16, pkt: P);
    /// Hands `pkt`, received on `port`, to the host kernel through the
    /// port's kernel twin.
    fn to_kernel(&mut self, port: u16, pkt: P);
}

/// What to do with a frame once it has been looked at.
enum Verdict {
    /// Complete frame (L2 included): send on this port.
    Transmit(u16),
    /// Rewritten IPv4 packet: send it along `Route` (after ARP if its MAC
    /// is not known yet); `offload` = (l3_len, proto) when the NIC computes
    /// the checksums.
    Forward(Route, Option<(usize, Proto)>),
    /// As `Forward`, once what sluice adds for the client's address
    /// (`lb::client_address`) is added: in the packet's buffer, or as a
    /// segment of its own.
    ForwardWith(Route, Option<(usize, Proto)>, client_address::Addition),
    /// Another worker owns this packet's session.
    Handoff(u16),
    /// Fully handled (e.g. an ARP reply that was learned); free it.
    Consumed,
    /// For the host kernel: up to the receiving port's twin.
    Kernel,
    Drop(Counter),
    /// SYN proxy: answer the client's SYN with this SYN-ACK, in its buffer.
    SynAck(synproxy::SynAck),
    /// SYN proxy: hold this client segment of session `u32` while its real
    /// server answers (and send the real the SYN).
    Hold(u32),
    /// SYN proxy: the real's SYN-ACK spliced session `u32`; free it and
    /// process the segment held for the session.
    Release(u32),
    /// No real server can take this new connection: answer with this
    /// (a RST, an ICMP port unreachable), in its buffer.
    Refuse(refuse::Refusal),
}

/// Where a routed packet goes.
#[derive(Clone, Copy)]
struct Route {
    port: u16,
    next_hop: Ipv4Addr,
    /// None while ARP has not resolved the next hop.
    mac: Option<MacAddr>,
}

/// The parts of a validated IPv4 header the pipeline needs.
#[derive(Clone, Copy)]
struct Ipv4Info {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// Offset of the L4 header within the frame, and end of the IP packet.
    l4_start: usize,
    l4_end: usize,
    /// Received on a port where the local kernel may have left the TCP/UDP
    /// checksum partial (`PortState::rx_partial_checksums`).
    maybe_partial: bool,
}

/// TCP/UDP ports and TCP flags of a validated L4 header.
#[derive(Clone, Copy)]
struct L4Info {
    proto: Proto,
    sport: u16,
    dport: u16,
    flags: TcpFlags,
}

/// A TCP/UDP packet parsed and checked once, for the session stage.
#[derive(Clone, Copy)]
struct Flow {
    ip: Ipv4Info,
    l4: L4Info,
    /// To a VIP (a client's packet); else a real server's reply.
    inbound: bool,
    /// Its 5-tuple's hash in the session table, toward `inbound`'s index.
    tag: FlowTag,
}

/// A session lookup's result: the session's id, or none.
type Found = Option<u32>;

/// What the first stage (`Pipeline::front`) made of a frame.
enum Front {
    /// For the session stage.
    Flow(Flow),
    Icmp(Ipv4Info, Destination),
    Arp,
    /// Decided already (a drop, a handoff, for the kernel).
    Done(Verdict),
}

/// Where a frame came from: a port's rx queue, or another worker's ring.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Rx,
    Handoff,
}

/// Ethernet + ARP for IPv4, as sluice sends it (padded to the minimum frame).
const ARP_FRAME_LEN: usize = 60;
const ETH_LEN: usize = EthernetFrame::<&[u8]>::HEADER_LEN;
/// TTL of packets sluice originates (echo replies).
const DEFAULT_TTL: u8 = 64;
/// Sessions reclaimed per `poll` at most, so a mass expiry cannot stall rx.
const EXPIRE_BUDGET: usize = 4096;
/// Longest a cached forwarding decision is used before the route and
/// neighbour tables are asked again.
const NEXTHOP_CACHE_MS: u64 = 1000;

/// Live sessions from which a burst's session lookups are prefetched ahead
/// of its frames (`process_burst`, `BurstPrefetch`). Below, the tables stay
/// in the caches, and the prefetches would only add their own work (175
/// instructions a frame). On this project's machine (pipebench FULLNAT,
/// perf/RESULTS.md), frames without them took 2-25% fewer cycles at 8K to
/// 32K sessions; with them, 48K sessions cost 18-63% less.
pub const STAGE_FROM: usize = 32_768;

/// Templates a pipeline made on its own has room for (tests, tools).
const DEFAULT_TEMPLATES: usize = 4096;

/// What the runtime gives every worker's pipeline alike.
#[derive(Clone)]
pub struct Shared {
    /// Persistence templates, shared by all workers.
    pub templates: Arc<Templates>,
    /// The key of the client -> worker mapping: one per process, the same
    /// for every worker (docs/steering.md).
    pub owner: OwnerHash,
    /// Packets one worker may hold waiting for ARP, over all neighbours
    /// (its share of the mbufs set aside for them).
    pub pending_budget: usize,
    /// Each worker's share of the way up to the kernel twins.
    pub kernel_budget: KernelBudget,
}

/// One worker's mutable state for one service (aligned with the
/// snapshot's services, rebuilt when a new snapshot arrives).
struct ServiceState {
    sched: SchedState,
    /// FULLNAT: this service's local addresses' pools (`LocalPools::ensure`).
    pools: Vec<usize>,
    /// Where the round robin over local addresses resumes.
    next_laddr: usize,
}

/// One worker's pipeline: its sessions, neighbours, scheduling state,
/// local address pools and per-real counters, and the configuration
/// snapshot it runs on.
pub struct Pipeline<P> {
    snap: Arc<Snapshot>,
    /// This worker's index and the number of workers.
    worker: u16,
    workers: u16,
    services: Vec<ServiceState>,
    /// FULLNAT local address pools, one per local address.
    pools: LocalPools,
    sessions: SessionTable,
    neighbours: NeighbourTable<P>,
    /// Recent forwarding decisions; refreshed every `NEXTHOP_CACHE_MS`.
    nexthops: NextHopCache,
    nexthops_refreshed: u64,
    /// Per real server slot.
    stats: RealStats,
    /// Persistence templates, shared with every other worker.
    templates: Arc<Templates>,
    /// SYN proxy: client segments held while their real servers answer,
    /// by session id, with the port they came in on.
    held: HashMap<u32, (u16, P), FastInt>,
    /// Sessions in NONE or SYN_RECV (embryonic): bounded by
    /// `syn_recv_budget`, and a sign of a SYN flood.
    embryonic: usize,
    /// New TCP connections in the current 100 ms window (the SYN rate).
    syn_window: (u64, u32),
    /// "auto" SYN proxy services answer SYNs with cookies until then (ms).
    synproxy_until: u64,
    /// ICMP port unreachables sent in the current second (start ms, count).
    unreachable_window: (u64, u32),
    /// Which worker owns a client's sessions.
    owner: OwnerHash,
    /// ARP rate limits, address conflicts, the gratuitous ARP timer (boxed:
    /// cold, and a kilobyte the hot fields need not be spread around).
    arp_guard: Box<ArpGuard>,
    /// Frames this worker may still hand to the kernel twins: a bucket per
    /// port and class (`kernel::BudgetClass`), so that a flood on one side
    /// or of one kind cannot spend what the kernel's other traffic needs.
    kernel_budgets: Vec<[KernelBudget; 2]>,
    counters: Counters,
    /// Live sessions from which bursts are prefetched (`STAGE_FROM`).
    stage_from: usize,
    /// Tests turn the established fast path off, to hold it against the
    /// general path.
    #[cfg(test)]
    established_path: bool,
}

impl<P: PacketBuf> Pipeline<P> {
    /// A pipeline on its own (one worker, tests, tools): persistence
    /// templates of its own, a random owner key, a pending-ARP budget as
    /// large as the neighbour table. Several workers need one `Shared`.
    pub fn new(snap: Arc<Snapshot>, worker: u16) -> Self {
        let pending_budget = snap.max_neighbours * MAX_PENDING;
        Pipeline::with_shared(
            snap,
            worker,
            Shared {
                templates: Arc::new(Templates::new(DEFAULT_TEMPLATES)),
                owner: OwnerHash::random(),
                pending_budget,
                kernel_budget: KernelBudget::default(),
            },
        )
    }

    /// The pipeline of worker `worker` out of `snap.workers`.
    pub fn with_shared(snap: Arc<Snapshot>, worker: u16, shared: Shared) -> Self {
        let workers = snap.workers;
        let neighbours = NeighbourTable::new(NeighbourConfig {
            capacity: snap.max_neighbours,
            pending_budget: shared.pending_budget,
            ..NeighbourConfig::default()
        });
        let mut p = Pipeline {
            sessions: SessionTable::with_capacity(snap.max_sessions),
            worker,
            workers,
            services: Vec::new(),
            pools: LocalPools::new(snap.local_port_range.clone(), worker, workers),
            neighbours,
            nexthops: NextHopCache::default(),
            nexthops_refreshed: 0,
            stats: RealStats::new(snap.slots.len()),
            held: HashMap::with_capacity_and_hasher(snap.synproxy.hold, FastInt::default()),
            embryonic: 0,
            syn_window: (0, 0),
            synproxy_until: 0,
            unreachable_window: (0, 0),
            templates: shared.templates,
            owner: shared.owner,
            arp_guard: Box::new(ArpGuard::new(&snap)),
            kernel_budgets: vec![
                [shared.kernel_budget.clone(), shared.kernel_budget.clone()];
                snap.ports.len()
            ],
            counters: Counters::default(),
            stage_from: STAGE_FROM,
            snap: Arc::clone(&snap),
            #[cfg(test)]
            established_path: true,
        };
        p.adopt(&snap, None);
        p
    }

    /// Sets the live session count from which bursts are prefetched
    /// (`STAGE_FROM` by default): tests, fuzzers and benchmarks hold
    /// both ways of `process_burst` to the same results.
    pub fn stage_bursts_from(&mut self, sessions: usize) {
        self.stage_from = sessions;
    }

    /// The worker that owns the sessions of a client (address, port). Both
    /// directions of a NAT session can compute it: inbound packets carry
    /// the client as source, replies as destination. FULLNAT replies are
    /// steered by their local port instead (`laddr::owner_of_port`).
    #[inline]
    fn client_owner(&self, addr: Ipv4Addr, port: u16) -> u16 {
        self.owner.owner(addr, port, self.workers)
    }

    /// Moves onto a new configuration snapshot. Sessions, neighbours, local
    /// ports in use and counters carry over; what the snapshot changed
    /// (services, schedulers, routes, static neighbours, real server slots)
    /// takes effect for the next packet. New VIPs and local addresses are
    /// announced. Called between bursts, never per packet; it may allocate
    /// (a new local address's pool).
    pub fn switch(&mut self, snap: Arc<Snapshot>, io: &mut impl Io<P>) {
        let old = std::mem::replace(&mut self.snap, Arc::clone(&snap));
        self.adopt(&snap, Some(&old));
        let added: Vec<Ipv4Addr> = snap
            .announced_addrs()
            .into_iter()
            .filter(|a| !matches!(old.destination(*a), Destination::Vip | Destination::Laddr))
            .collect();
        self.announce_addrs(&added, io);
    }

    fn adopt(&mut self, snap: &Snapshot, old: Option<&Snapshot>) {
        // Pools first: dropping unused ones renumbers them.
        self.pools
            .retain(|a| snap.destination(a) == Destination::Laddr);
        let pools = &mut self.pools;
        self.services = snap
            .services
            .iter()
            .map(|(_, s)| ServiceState {
                sched: SchedState::new(&s.sched),
                pools: if s.mode == ForwardMode::FullNat {
                    s.laddrs.iter().map(|a| pools.ensure(*a)).collect()
                } else {
                    Vec::new()
                },
                next_laddr: 0,
            })
            .collect();
        // Static neighbours: gone ones forgotten, new or changed ones set.
        if let Some(old) = old {
            for n in &old.neighbours {
                if !snap.neighbours.contains(n) {
                    self.neighbours.remove(n.addr, n.port);
                }
            }
        }
        for n in &snap.neighbours {
            if old.is_none_or(|o| !o.neighbours.contains(n)) {
                // The snapshot validated ports; a full table only refuses extras.
                let _ = self.neighbours.add_static(n.addr, n.mac.0, n.port);
            }
        }
        self.nexthops.invalidate();
        self.stats.sync(&snap.slots);
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    pub fn neighbours(&self) -> &NeighbourTable<P> {
        &self.neighbours
    }

    /// Free (local address, port) pairs over service `service`'s local
    /// addresses; None for a NAT service.
    pub fn laddr_available(&self, service: u32) -> Option<usize> {
        let s = self.snap.services.get(service)?;
        (s.mode == ForwardMode::FullNat).then(|| self.pools.available(&s.laddrs))
    }

    /// Answers a question of the control side (bounded work, no allocation:
    /// the buffer comes with the question).
    pub fn answer(&self, query: Query, now: u64) -> Reply {
        match query {
            Query::Sessions { from, mut buf } => {
                for (_, s) in self.sessions.iter_slots(from, SESSION_SCAN) {
                    if buf.len() == buf.capacity() {
                        break;
                    }
                    buf.push(SessionInfo {
                        proto: s.inbound.proto,
                        client: SocketAddrV4::new(s.inbound.src, s.inbound.sport),
                        vip: SocketAddrV4::new(s.inbound.dst, s.inbound.dport),
                        local: SocketAddrV4::new(s.outbound.dst, s.outbound.dport),
                        real: SocketAddrV4::new(s.outbound.src, s.outbound.sport),
                        state: s.state,
                        expires_in_ms: s.expires.saturating_sub(now),
                        worker: self.worker,
                    });
                }
                let next = from + SESSION_SCAN;
                Reply::Sessions {
                    next: (next < self.sessions.capacity()).then_some(next),
                    buf,
                }
            }
            Query::Neighbours { mut buf } => {
                for (addr, n) in self.neighbours.iter() {
                    if buf.len() == buf.capacity() {
                        break;
                    }
                    buf.push(NeighbourInfo {
                        addr,
                        mac: n.mac.map(EthernetAddress),
                        port: n.port,
                        state: n.state,
                        worker: self.worker,
                    });
                }
                Reply::Neighbours { buf }
            }
        }
    }

    /// Each local address pool's address and the pairs in use.
    pub fn laddrs_in_use(&self) -> impl Iterator<Item = (Ipv4Addr, usize)> + '_ {
        self.pools.in_use()
    }

    /// Client segments the SYN proxy holds while their reals answer.
    pub fn synproxy_held(&self) -> usize {
        self.held.len()
    }

    /// This worker's per-real counters, by slot.
    pub fn real_stats(&self) -> &RealStats {
        &self.stats
    }

    /// The snapshot this worker runs on.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }

    /// Handles one frame received on `in_port`.
    #[inline]
    pub fn process(&mut self, in_port: u16, pkt: P, now: u64, io: &mut impl Io<P>) {
        self.counters.inc(Counter::RxPackets);
        self.handle(in_port, pkt, now, io, Source::Rx);
    }

    /// Handles a burst received on `in_port`, frame by frame from start to
    /// end. Above `STAGE_FROM` live sessions, the burst's session lookups
    /// are prefetched ahead of the frames (`BurstPrefetch`), so that their
    /// cache misses overlap instead of stalling one frame after another
    /// (without them, a packet at a million sessions costs four times as
    /// many cycles in pipebench). The frames are handled the same either
    /// way.
    pub fn process_burst<const N: usize>(
        &mut self,
        in_port: u16,
        pkts: &mut ArrayVec<P, N>,
        now: u64,
        io: &mut impl Io<P>,
    ) {
        self.counters.add(Counter::RxPackets, pkts.len() as u64);
        if self.sessions.len() < self.stage_from {
            // The tables fit in the caches: the prefetches would only add
            // their own work (see `STAGE_FROM`).
            for p in pkts.drain(..) {
                self.handle(in_port, p, now, io, Source::Rx);
            }
            return;
        }
        let mut prefetch = BurstPrefetch::<N>::start(&self.sessions, &self.snap, pkts);
        for (i, p) in pkts.drain(..).enumerate() {
            prefetch.before(&self.sessions, i);
            self.handle(in_port, p, now, io, Source::Rx);
        }
    }

    /// Handles a frame another worker handed over (it was received on
    /// `in_port` and this worker owns its session).
    #[inline]
    pub fn process_handoff(&mut self, in_port: u16, pkt: P, now: u64, io: &mut impl Io<P>) {
        self.handle(in_port, pkt, now, io, Source::Handoff);
    }

    /// One frame from start to end: `front`, then the fast path, else the
    /// session work and its verdict carried out. Inlined into the burst
    /// loop: called, its prologue and epilogue (six saved registers, a
    /// stack frame) cost 31 instructions a packet of 726 (callgrind,
    /// pipebench FULLNAT 1K).
    #[inline(always)]
    fn handle(&mut self, in_port: u16, mut pkt: P, now: u64, io: &mut impl Io<P>, source: Source) {
        let sum = pkt.rx_ip_checksum();
        let front = self.front(in_port, pkt.data_mut(), sum, source);
        let Some((mut pkt, found)) = self.try_established(pkt, &front, now, io) else {
            return;
        };
        let verdict = self.finish(in_port, pkt.data_mut(), front, found, now, io, source);
        self.dispatch(in_port, pkt, verdict, now, io);
    }

    /// Carries out what was decided for `pkt`, received on `in_port`.
    #[inline]
    fn dispatch(
        &mut self,
        in_port: u16,
        mut pkt: P,
        verdict: Verdict,
        now: u64,
        io: &mut impl Io<P>,
    ) {
        match verdict {
            Verdict::Transmit(port) => io.send(port, pkt),
            Verdict::Forward(route, offload) => {
                if let Some((l3_len, proto)) = offload {
                    pkt.request_tx_checksums(l3_len, proto);
                }
                self.forward(route, pkt, now, io)
            }
            Verdict::ForwardWith(route, offload, addition) => {
                self.forward_with(route, offload, addition, pkt, now, io)
            }
            Verdict::Handoff(worker) => {
                self.counters.inc(Counter::SteerHandoffs);
                io.handoff(worker, in_port, pkt);
            }
            Verdict::Consumed => {}
            Verdict::Kernel => self.up_to_kernel(in_port, pkt, now, io),
            Verdict::Drop(reason) => self.counters.inc(reason),
            Verdict::SynAck(plan) => {
                if self.emit_synack(in_port, &mut pkt, &plan) {
                    io.send(in_port, pkt);
                } else {
                    self.counters.inc(Counter::DropMbufExhausted);
                }
            }
            Verdict::Refuse(answer) => {
                if self.emit_refusal(in_port, &mut pkt, &answer) {
                    io.send(in_port, pkt);
                } else {
                    self.counters.inc(Counter::DropNoRealServer);
                }
            }
            Verdict::Hold(id) => self.hold(in_port, id, pkt, now, io),
            Verdict::Release(id) => {
                drop(pkt);
                self.release(id, now, io);
            }
        }
    }

    /// Timers, called every few milliseconds (never per packet): session
    /// expiry (returning FULLNAT local ports to their pool) and ARP
    /// retransmission/aging.
    pub fn poll(&mut self, now: u64, io: &mut impl Io<P>) {
        if now.saturating_sub(self.nexthops_refreshed) >= NEXTHOP_CACHE_MS {
            self.nexthops.invalidate();
            self.nexthops_refreshed = now;
        }
        self.synproxy_watch(now);
        let mut ends = SessionEnds {
            pools: &mut self.pools,
            stats: &mut self.stats,
            templates: &self.templates,
            snap: &self.snap,
            held: &mut self.held,
            embryonic: &mut self.embryonic,
            now,
        };
        let counters = &mut self.counters;
        self.sessions.expire(now, EXPIRE_BUDGET, |id, s| {
            counters.inc(Counter::SessionsExpired);
            ends.end(id, s);
        });

        // Collect first: the events borrow the table, the sends need self.
        let mut requests: ArrayVec<(Ipv4Addr, u16, Option<[u8; 6]>), 64> = ArrayVec::new();
        let counters = &mut self.counters;
        self.neighbours.poll(now, |event| match event {
            NeighbourEvent::SendRequest {
                ip,
                port,
                target_mac,
            } => {
                // Past 64 in one poll, the rest are retried on the next one.
                let _ = requests.try_push((ip, port, target_mac));
            }
            NeighbourEvent::Unresolved(pkt) => {
                drop(pkt);
                counters.inc(Counter::DropNeighbourUnresolved);
            }
        });
        for (ip, port, mac) in requests {
            self.send_arp_request(port, ip, mac.map(EthernetAddress), io);
        }
        self.arp_timers(now, io);
    }

    /// "auto" SYN proxy: every 100 ms, engage (for at least 10 s) when the
    /// new-connection rate or the embryonic sessions pass their thresholds.
    fn synproxy_watch(&mut self, now: u64) {
        const WINDOW_MS: u64 = 100;
        const HOLD_ON_MS: u64 = 10_000;
        let (start, count) = self.syn_window;
        if now.saturating_sub(start) < WINDOW_MS {
            return;
        }
        let elapsed = now.saturating_sub(start).max(1);
        let rate = u64::from(count) * 1000 / elapsed;
        let s = &self.snap.synproxy;
        if rate > u64::from(s.auto_syn_rate) || self.embryonic >= s.auto_syn_recv {
            if now >= self.synproxy_until {
                self.counters.inc(Counter::SynproxyEngaged);
            }
            self.synproxy_until = now + HOLD_ON_MS;
        }
        self.syn_window = (now, 0);
    }

    /// The first stage of a frame: every check that needs no session and
    /// sends nothing.
    #[inline]
    fn front(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        ip_sum: RxChecksum,
        source: Source,
    ) -> Front {
        let Some(port) = self.snap.ports.get(in_port as usize) else {
            return Front::Done(Verdict::Drop(Counter::DropNotForUs));
        };
        let port_mac = port.mac;
        let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
            return Front::Done(Verdict::Drop(Counter::DropMalformedEth));
        };
        let (src_mac, dst_mac, ethertype) = (eth.src_addr(), eth.dst_addr(), eth.ethertype());
        if src_mac == port_mac {
            return Front::Done(Verdict::Drop(Counter::DropOwnFrame));
        }
        if dst_mac != port_mac && !dst_mac.is_broadcast() {
            return Front::Done(Verdict::Drop(Counter::DropNotForUs));
        }
        match ethertype {
            ethertype::IPV4 => self.ipv4_front(in_port, frame, ip_sum, source),
            ethertype::ARP => Front::Arp,
            _ => Front::Done(Verdict::Drop(Counter::DropUnknownEthertype)),
        }
    }

    /// The second stage: sessions, answers, ARP. A TCP/UDP packet's
    /// session is looked up here unless the fast path did (`looked_up`).
    // Eight arguments: the lookup rides along rather than in `front`, whose
    // moves cost a handshake 3% more instructions (callgrind, pipebench).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn finish(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        front: Front,
        looked_up: Option<Found>,
        now: u64,
        io: &mut impl Io<P>,
        source: Source,
    ) -> Verdict {
        match front {
            Front::Flow(f) => {
                let found = looked_up.unwrap_or_else(|| self.lookup(&f));
                match f.inbound {
                    true => self.inbound(frame, &f, found, now),
                    false => self.outbound(frame, &f, found, now),
                }
            }
            Front::Icmp(info, dest) => self.icmp(in_port, frame, &info, dest, now, source),
            Front::Arp => self.arp(in_port, frame, now, io, source),
            Front::Done(verdict) => verdict,
        }
    }

    /// Whether packets of established sessions take their fast path:
    /// always, but in tests that hold it against the general one.
    #[inline(always)]
    fn established_path(&self) -> bool {
        #[cfg(test)]
        return self.established_path;
        #[cfg(not(test))]
        true
    }

    /// The session of a TCP/UDP packet, by its key on the side it comes
    /// from.
    #[inline(always)]
    fn lookup(&self, flow: &Flow) -> Found {
        let key = flow_key(&flow.ip, &flow.l4);
        match flow.inbound {
            true => self.sessions.lookup_inbound_tagged(&key, flow.tag),
            false => self.sessions.lookup_outbound_tagged(&key, flow.tag),
        }
    }

    #[inline]
    fn ipv4_front(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        ip_sum: RxChecksum,
        source: Source,
    ) -> Front {
        let maybe_partial = self.snap.ports[in_port as usize].rx_partial_checksums;
        let info = match parse_ipv4(frame, ip_sum, maybe_partial) {
            Ok(info) => info,
            Err(reason) => return Front::Done(Verdict::Drop(reason)),
        };
        if source == Source::Rx {
            if let Err(reason) = self.check_source(in_port, info.src) {
                return Front::Done(Verdict::Drop(reason));
            }
        }
        let proto = frame[ETH_LEN + 9];
        let dest = self.snap.destination(info.dst);
        match proto {
            protocol::TCP | protocol::UDP => {
                let l4 = match parse_l4(frame, &info, proto) {
                    Ok(l4) => l4,
                    Err(reason) => return Front::Done(Verdict::Drop(reason)),
                };
                if dest == Destination::Interface {
                    // The host's own traffic: any worker can pass it up.
                    return Front::Done(self.for_kernel(
                        in_port,
                        frame,
                        &info,
                        Some(l4.proto),
                        Counter::DropNoService,
                    ));
                }
                if self.workers > 1 {
                    let owner = match dest {
                        Destination::Laddr => laddr::owner_of_port(l4.dport, self.workers),
                        Destination::Vip | Destination::Interface => {
                            self.client_owner(info.src, l4.sport)
                        }
                        Destination::Foreign => self.client_owner(info.dst, l4.dport),
                    };
                    if let Some(v) = self.steer(owner, source) {
                        return Front::Done(v);
                    }
                }
                // To a VIP: a client's; to a local address or a client
                // (Laddr, Foreign): a real server's reply.
                let inbound = dest == Destination::Vip;
                let tag = self.sessions.tag(&flow_key(&info, &l4));
                Front::Flow(Flow {
                    ip: info,
                    l4,
                    inbound,
                    tag,
                })
            }
            protocol::ICMP => Front::Icmp(info, dest),
            _ if dest == Destination::Foreign => Front::Done(Verdict::Drop(Counter::DropNotServed)),
            _ if dest == Destination::Interface => Front::Done(self.for_kernel(
                in_port,
                frame,
                &info,
                None,
                Counter::DropUnsupportedL4,
            )),
            _ => Front::Done(Verdict::Drop(Counter::DropUnsupportedL4)),
        }
    }

    /// None when this worker owns the packet; otherwise where it goes.
    #[inline]
    fn steer(&self, owner: u16, source: Source) -> Option<Verdict> {
        if owner == self.worker {
            None
        } else if source == Source::Handoff {
            // Handed over by a worker that computed a different owner: a
            // steering bug, never a packet to process here.
            Some(Verdict::Drop(Counter::SteerMisses))
        } else {
            Some(Verdict::Handoff(owner))
        }
    }
}

/// Addresses a frame that `front` validated. Through the header as an
/// array, the two writes need no bounds checks of their own.
#[inline]
fn write_l2(frame: &mut [u8], src: EthernetAddress, dst: EthernetAddress) {
    if let Some(header) = frame.first_chunk_mut::<{ EthernetFrame::<&[u8]>::HEADER_LEN }>() {
        let mut eth = EthernetFrame::new_unchecked(header);
        eth.set_src_addr(src);
        eth.set_dst_addr(dst);
    }
}

#[cfg(test)]
mod tests;
