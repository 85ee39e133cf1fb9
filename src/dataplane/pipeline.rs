//! The per-packet pipeline: classify a frame, answer what is addressed to
//! sluice (ARP, ICMP echo), translate what belongs to a virtual service,
//! pick the next hop, drop the rest with a named reason.
//!
//! No DPDK in here: packets are any `PacketBuf` (an mbuf in production, a
//! Vec in tests) and the outside world is an `Io`, so unit tests, fuzzers
//! and benchmarks drive exactly the code that runs on the workers.

use super::counters::{Counter, Counters};
use super::snapshot::{Destination, Snapshot};
use crate::lb::icmp_error;
use crate::lb::laddr::{self, LocalPool};
use crate::lb::nat;
use crate::lb::scheduler::Scheduler;
use crate::lb::service::ForwardMode;
use crate::lb::session::{ConnState, FlowKey, InsertError, Session, SessionTable};
use crate::lb::tcp_state::{self, Direction, TcpFlags, TcpState};
use crate::lb::Proto;
use crate::net::neighbour::{Enqueue, NeighbourConfig, NeighbourEvent, NeighbourTable};
use crate::net::route::NextHop;
use crate::wire::arp::{operation, ArpPacket, ArpRepr};
use crate::wire::ethernet::ethertype;
use crate::wire::icmpv4::{msg_type, Icmpv4Packet};
use crate::wire::ipv4::protocol;
use crate::wire::{checksum, EthernetAddress, EthernetFrame, Ipv4Packet, TcpPacket, UdpPacket};
use arrayvec::ArrayVec;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

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
}

/// What to do with a frame once it has been looked at.
enum Verdict {
    /// Complete frame (L2 included): send on this port.
    Transmit(u16),
    /// Rewritten IPv4 packet: resolve the next hop's MAC, then send;
    /// `offload` = (l3_len, proto) when the NIC computes the checksums.
    Forward(NextHop, Option<(usize, Proto)>),
    /// Another worker owns this packet's session.
    Handoff(u16),
    /// Fully handled (e.g. an ARP reply that was learned); free it.
    Consumed,
    Drop(Counter),
}

/// The parts of a validated IPv4 header the pipeline needs.
#[derive(Clone, Copy)]
struct Ipv4Info {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// Offset of the L4 header within the frame, and end of the IP packet.
    l4_start: usize,
    l4_end: usize,
}

/// TCP/UDP ports and TCP flags of a validated L4 header.
#[derive(Clone, Copy)]
struct L4Info {
    proto: Proto,
    sport: u16,
    dport: u16,
    flags: TcpFlags,
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

/// The worker that owns the sessions of a client (address, port). Both
/// directions of a NAT session can compute it: inbound packets carry the
/// client as source, replies as destination. FULLNAT replies are steered by
/// their local port instead (`laddr::owner_of_port`).
#[inline]
pub fn client_owner(addr: Ipv4Addr, port: u16, workers: u16) -> u16 {
    let x = (u32::from(addr) ^ (u32::from(port) << 16 | u32::from(port))).wrapping_mul(0x9e37_79b1);
    ((u64::from(x) * u64::from(workers)) >> 32) as u16
}

/// One worker's pipeline: its sessions, neighbours, schedulers and local
/// address pools, and the configuration snapshot it runs on.
pub struct Pipeline<P> {
    snap: Arc<Snapshot>,
    /// This worker's index and the number of workers.
    worker: u16,
    workers: u16,
    /// Per-service scheduler state, owned by this worker.
    schedulers: Vec<Scheduler>,
    /// Per-service FULLNAT local address pools (None for NAT services).
    pools: Vec<Option<LocalPool>>,
    sessions: SessionTable,
    neighbours: NeighbourTable<P>,
    counters: Counters,
}

impl<P: PacketBuf> Pipeline<P> {
    /// The pipeline of worker `worker` out of `snap.workers`.
    pub fn new(snap: Arc<Snapshot>, worker: u16) -> Self {
        let workers = snap.workers;
        let schedulers = snap
            .services
            .iter()
            .map(|(_, s)| Scheduler::new(s.scheduler, &s.weights().collect::<Vec<_>>()))
            .collect();
        let pools = snap
            .services
            .iter()
            .map(|(_, s)| {
                (s.mode == ForwardMode::FullNat).then(|| {
                    LocalPool::new(&s.laddrs, snap.local_port_range.clone(), worker, workers)
                })
            })
            .collect();
        let mut neighbours = NeighbourTable::new(NeighbourConfig {
            capacity: snap.max_neighbours,
            ..NeighbourConfig::default()
        });
        for n in &snap.neighbours {
            // The snapshot validated ports; a full table only refuses extras.
            let _ = neighbours.add_static(n.addr, n.mac.0, n.port);
        }
        Pipeline {
            sessions: SessionTable::with_capacity(snap.max_sessions),
            worker,
            workers,
            schedulers,
            pools,
            neighbours,
            counters: Counters::default(),
            snap,
        }
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

    /// Free (local address, port) pairs of service `service`'s pool.
    pub fn laddr_available(&self, service: u32) -> Option<usize> {
        self.pools
            .get(service as usize)?
            .as_ref()
            .map(|p| p.available())
    }

    /// Handles one frame received on `in_port`.
    #[inline]
    pub fn process(&mut self, in_port: u16, pkt: P, now: u64, io: &mut impl Io<P>) {
        self.counters.inc(Counter::RxPackets);
        self.handle(in_port, pkt, now, io, Source::Rx);
    }

    /// Handles a burst received on `in_port`. Before processing, it works
    /// out where each packet's session lives and prefetches it in two steps
    /// (index bucket, then the session), so the cache misses of the whole
    /// burst overlap instead of stalling one packet after another. This is
    /// what keeps a million live sessions close to the speed of a thousand.
    pub fn process_burst<const N: usize>(
        &mut self,
        in_port: u16,
        pkts: &mut ArrayVec<P, N>,
        now: u64,
        io: &mut impl Io<P>,
    ) {
        let mut hints: ArrayVec<Option<(bool, FlowKey)>, N> = ArrayVec::new();
        for p in pkts.iter() {
            let hint = self.session_hint(p.data());
            if let Some((inbound, key)) = &hint {
                self.sessions.prefetch_bucket(*inbound, key);
            }
            hints.push(hint);
        }
        for (inbound, key) in hints.iter().flatten() {
            self.sessions.prefetch_session(*inbound, key);
        }
        for p in pkts.drain(..) {
            self.process(in_port, p, now, io);
        }
    }

    /// A guess, without validation, of the session table entry a frame
    /// will look up: (inbound?, key). Only a hint for prefetching; the
    /// frame is parsed and checked properly when it is processed.
    #[inline]
    fn session_hint(&self, f: &[u8]) -> Option<(bool, FlowKey)> {
        let ip = f.get(ETH_LEN..)?;
        if f.get(12..14)? != [0x08, 0x00] || ip.len() < 20 {
            return None;
        }
        let proto = Proto::from_ip_protocol(ip[9])?;
        let l4 = ip.get(usize::from(ip[0] & 0x0f) * 4..)?.get(..4)?;
        let key = FlowKey {
            proto,
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            sport: u16::from_be_bytes([l4[0], l4[1]]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            dport: u16::from_be_bytes([l4[2], l4[3]]),
        };
        match self.snap.destination(key.dst) {
            Destination::Vip => Some((true, key)),
            Destination::Laddr | Destination::Foreign => Some((false, key)),
            Destination::Interface => None,
        }
    }

    /// Handles a frame another worker handed over (it was received on
    /// `in_port` and this worker owns its session).
    #[inline]
    pub fn process_handoff(&mut self, in_port: u16, pkt: P, now: u64, io: &mut impl Io<P>) {
        self.handle(in_port, pkt, now, io, Source::Handoff);
    }

    #[inline]
    fn handle(&mut self, in_port: u16, mut pkt: P, now: u64, io: &mut impl Io<P>, source: Source) {
        match self.classify(in_port, pkt.data_mut(), now, io, source) {
            Verdict::Transmit(port) => io.send(port, pkt),
            Verdict::Forward(nh, offload) => {
                if let Some((l3_len, proto)) = offload {
                    pkt.request_tx_checksums(l3_len, proto);
                }
                self.forward(nh, pkt, now, io)
            }
            Verdict::Handoff(worker) => {
                self.counters.inc(Counter::SteerHandoffs);
                io.handoff(worker, in_port, pkt);
            }
            Verdict::Consumed => {}
            Verdict::Drop(reason) => self.counters.inc(reason),
        }
    }

    /// Timers, called every few milliseconds (never per packet): session
    /// expiry (returning FULLNAT local ports to their pool) and ARP
    /// retransmission/aging.
    pub fn poll(&mut self, now: u64, io: &mut impl Io<P>) {
        let counters = &mut self.counters;
        let pools = &mut self.pools;
        self.sessions.expire(now, EXPIRE_BUDGET, |s| {
            counters.inc(Counter::SessionsExpired);
            release_local(pools, s);
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
    }

    /// Gratuitous ARP for every VIP and local address, on the ports whose
    /// subnet holds it (all ports if none does), so switches and neighbours
    /// learn where it lives. Worker 0 only: one announcement is enough.
    pub fn announce(&mut self, io: &mut impl Io<P>) {
        if self.worker != 0 {
            return;
        }
        let snap = Arc::clone(&self.snap);
        for addr in snap.announced_addrs() {
            for port in snap.announce_ports(addr) {
                let repr = ArpRepr {
                    operation: operation::REQUEST,
                    sender_hw: snap.ports[port as usize].mac,
                    sender_ip: addr,
                    target_hw: EthernetAddress([0; 6]),
                    target_ip: addr,
                };
                if self.send_arp(port, EthernetAddress::BROADCAST, &repr, io) {
                    self.counters.inc(Counter::GarpSent);
                }
            }
        }
    }

    fn classify(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        now: u64,
        io: &mut impl Io<P>,
        source: Source,
    ) -> Verdict {
        let Some(port) = self.snap.ports.get(in_port as usize) else {
            return Verdict::Drop(Counter::DropNotForUs);
        };
        let port_mac = port.mac;
        let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
            return Verdict::Drop(Counter::DropMalformedEth);
        };
        let (src_mac, dst_mac, ethertype) = (eth.src_addr(), eth.dst_addr(), eth.ethertype());
        if src_mac == port_mac {
            return Verdict::Drop(Counter::DropOwnFrame);
        }
        if dst_mac != port_mac && !dst_mac.is_broadcast() {
            return Verdict::Drop(Counter::DropNotForUs);
        }
        match ethertype {
            ethertype::IPV4 => self.ipv4(in_port, frame, now, source),
            ethertype::ARP => self.arp(in_port, frame, now, io, source),
            _ => Verdict::Drop(Counter::DropUnknownEthertype),
        }
    }

    // ---- ARP ----

    fn arp(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        now: u64,
        io: &mut impl Io<P>,
        source: Source,
    ) -> Verdict {
        let Ok(arp) = ArpPacket::new_checked(&frame[ETH_LEN..]) else {
            return Verdict::Drop(Counter::DropMalformedArp);
        };
        let req = ArpRepr::parse(&arp);
        let port_mac = self.snap.ports[in_port as usize].mac;
        let ours = self.snap.answers_arp(in_port, req.target_ip);

        // Neighbour tables are per worker: whoever receives an ARP frame
        // shares what it teaches with the others (copies, learn only).
        if source == Source::Rx && self.workers > 1 && ours {
            self.share_arp(in_port, frame, io);
        }
        // Learn the sender, creating an entry only when it talks to us (as
        // Linux does), so a chatty LAN cannot fill the table.
        if !req.sender_ip.is_unspecified() && req.sender_hw.is_unicast() {
            let released =
                self.neighbours
                    .learn(req.sender_ip, req.sender_hw.0, in_port, now, ours);
            for mut pkt in released {
                write_l2(pkt.data_mut(), port_mac, req.sender_hw);
                io.send(in_port, pkt);
            }
        }
        if source == Source::Handoff {
            return Verdict::Consumed;
        }
        if !ours {
            return Verdict::Drop(Counter::DropArpNotOurs);
        }
        match req.operation {
            operation::REQUEST => {
                let reply = ArpRepr {
                    operation: operation::REPLY,
                    sender_hw: port_mac,
                    sender_ip: req.target_ip,
                    target_hw: req.sender_hw,
                    target_ip: req.sender_ip,
                };
                reply.emit(&mut ArpPacket::new_unchecked(&mut frame[ETH_LEN..]));
                let src = EthernetFrame::new_unchecked(&*frame).src_addr();
                write_l2(frame, port_mac, src);
                self.counters.inc(Counter::ArpRequestsAnswered);
                Verdict::Transmit(in_port)
            }
            operation::REPLY => {
                self.counters.inc(Counter::ArpRepliesLearned);
                Verdict::Consumed
            }
            _ => Verdict::Drop(Counter::DropMalformedArp),
        }
    }

    /// Sends a copy of an ARP frame to every other worker.
    fn share_arp(&mut self, in_port: u16, frame: &[u8], io: &mut impl Io<P>) {
        for w in (0..self.workers).filter(|&w| w != self.worker) {
            let Some(mut copy) = io.alloc() else {
                self.counters.inc(Counter::DropMbufExhausted);
                continue;
            };
            if copy.set_len(frame.len()) {
                copy.data_mut().copy_from_slice(frame);
                io.handoff(w, in_port, copy);
            }
        }
    }

    /// Sends an ARP request for `target` out of `port` (broadcast, or
    /// unicast to `to` when re-probing a known neighbour).
    fn send_arp_request(
        &mut self,
        port: u16,
        target: Ipv4Addr,
        to: Option<EthernetAddress>,
        io: &mut impl Io<P>,
    ) {
        let Some(sender_ip) = self.snap.source_addr(port, target) else {
            return;
        };
        let repr = ArpRepr {
            operation: operation::REQUEST,
            sender_hw: self.snap.ports[port as usize].mac,
            sender_ip,
            target_hw: EthernetAddress([0; 6]),
            target_ip: target,
        };
        if self.send_arp(port, to.unwrap_or(EthernetAddress::BROADCAST), &repr, io) {
            self.counters.inc(Counter::ArpRequestsSent);
        }
    }

    fn send_arp(
        &mut self,
        port: u16,
        dst: EthernetAddress,
        repr: &ArpRepr,
        io: &mut impl Io<P>,
    ) -> bool {
        let Some(mut pkt) = io.alloc() else {
            self.counters.inc(Counter::DropMbufExhausted);
            return false;
        };
        if !pkt.set_len(ARP_FRAME_LEN) {
            self.counters.inc(Counter::DropMbufExhausted);
            return false;
        }
        let frame = pkt.data_mut();
        frame.fill(0);
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(dst);
        eth.set_src_addr(self.snap.ports[port as usize].mac);
        eth.set_ethertype(ethertype::ARP);
        let mut arp = ArpPacket::new_unchecked(&mut frame[ETH_LEN..]);
        arp.set_header();
        repr.emit(&mut arp);
        io.send(port, pkt);
        true
    }

    // ---- IPv4 ----

    fn ipv4(&mut self, in_port: u16, frame: &mut [u8], now: u64, source: Source) -> Verdict {
        let info = match parse_ipv4(frame) {
            Ok(info) => info,
            Err(reason) => return Verdict::Drop(reason),
        };
        let proto = frame[ETH_LEN + 9];
        let dest = self.snap.destination(info.dst);
        match proto {
            protocol::TCP | protocol::UDP => {
                let l4 = match parse_l4(frame, &info, proto) {
                    Ok(l4) => l4,
                    Err(reason) => return Verdict::Drop(reason),
                };
                if self.workers > 1 {
                    let owner = match dest {
                        Destination::Laddr => laddr::owner_of_port(l4.dport, self.workers),
                        Destination::Vip | Destination::Interface => {
                            client_owner(info.src, l4.sport, self.workers)
                        }
                        Destination::Foreign => client_owner(info.dst, l4.dport, self.workers),
                    };
                    if let Some(v) = self.steer(owner, source) {
                        return v;
                    }
                }
                match dest {
                    Destination::Vip => self.inbound(frame, &info, &l4, now),
                    Destination::Laddr | Destination::Foreign => {
                        self.outbound(frame, &info, &l4, now)
                    }
                    Destination::Interface => Verdict::Drop(Counter::DropNoService),
                }
            }
            protocol::ICMP => self.icmp(in_port, frame, &info, dest, source),
            _ if dest == Destination::Foreign => Verdict::Drop(Counter::DropNotServed),
            _ => Verdict::Drop(Counter::DropUnsupportedL4),
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

    /// Client -> VIP: find or create the session, translate toward the real
    /// server (DNAT; FULLNAT also SNATs to a local address).
    fn inbound(&mut self, frame: &mut [u8], ip: &Ipv4Info, l4: &L4Info, now: u64) -> Verdict {
        let key = FlowKey {
            proto: l4.proto,
            src: ip.src,
            sport: l4.sport,
            dst: ip.dst,
            dport: l4.dport,
        };
        let id = match self.sessions.lookup_inbound(&key) {
            Some(id) => id,
            None => match self.new_session(key, l4, now) {
                Ok(id) => id,
                Err(reason) => return Verdict::Drop(reason),
            },
        };
        self.translate(id, Direction::Inbound, frame, ip, l4, now)
    }

    fn new_session(&mut self, key: FlowKey, l4: &L4Info, now: u64) -> Result<u32, Counter> {
        let Some(svc_id) = self
            .snap
            .services
            .find(key.proto, SocketAddrV4::new(key.dst, key.dport))
        else {
            return Err(Counter::DropNoService);
        };
        // IPVS creates TCP sessions only on a SYN: anything else for an
        // unknown connection is stale or forged.
        if l4.proto == Proto::Tcp && !(l4.flags.syn && !l4.flags.ack && !l4.flags.rst) {
            return Err(Counter::DropNoSession);
        }
        let Some(real_idx) = self.schedulers[svc_id as usize].pick() else {
            return Err(Counter::DropNoRealServer);
        };
        let Some(real) = self
            .snap
            .services
            .get(svc_id)
            .and_then(|s| s.reals.get(real_idx))
        else {
            return Err(Counter::DropNoRealServer);
        };
        let real = real.addr;
        // NAT: the real server answers the client itself (through us).
        // FULLNAT: it answers a local address and port from this worker's
        // pool, whose port tells which worker owns the session.
        let local = match self.pools.get_mut(svc_id as usize) {
            Some(Some(pool)) => pool.alloc(real).ok_or(Counter::DropLaddrExhausted)?,
            _ => SocketAddrV4::new(key.src, key.sport),
        };
        let state = match l4.proto {
            Proto::Tcp => ConnState::Tcp(TcpState::None),
            Proto::Udp => ConnState::Udp,
        };
        let session = Session {
            inbound: key,
            outbound: FlowKey {
                proto: key.proto,
                src: *real.ip(),
                sport: real.port(),
                dst: *local.ip(),
                dport: local.port(),
            },
            service: svc_id,
            real: real_idx as u32,
            state,
            expires: now,
            in_pkts: 0,
            out_pkts: 0,
        };
        match self.sessions.insert(session) {
            Ok(id) => {
                self.counters.inc(Counter::Conns);
                Ok(id)
            }
            Err(e) => {
                release_local(&mut self.pools, &session);
                Err(match e {
                    InsertError::Full => Counter::DropSessionTableFull,
                    InsertError::Exists => Counter::DropSessionConflict,
                })
            }
        }
    }

    /// Real server -> client (NAT) or -> local address (FULLNAT): translate
    /// back to VIP -> client. Without a session the packet is not ours to
    /// forward.
    fn outbound(&mut self, frame: &mut [u8], ip: &Ipv4Info, l4: &L4Info, now: u64) -> Verdict {
        let key = FlowKey {
            proto: l4.proto,
            src: ip.src,
            sport: l4.sport,
            dst: ip.dst,
            dport: l4.dport,
        };
        let Some(id) = self.sessions.lookup_outbound(&key) else {
            return Verdict::Drop(Counter::DropNotServed);
        };
        self.translate(id, Direction::Outbound, frame, ip, l4, now)
    }

    /// Moves session `id`'s state and timer on for a packet going `dir`,
    /// then rewrites the packet: inbound packets become the reverse of the
    /// reply key (toward the real server), replies the reverse of the
    /// client's key (from the VIP to the client).
    fn translate(
        &mut self,
        id: u32,
        dir: Direction,
        frame: &mut [u8],
        ip: &Ipv4Info,
        l4: &L4Info,
        now: u64,
    ) -> Verdict {
        let timeouts = &self.snap.timeouts;
        let Some(s) = self.sessions.get_mut(id) else {
            return Verdict::Drop(Counter::DropNotServed);
        };
        s.state = next_state(s.state, dir, l4.flags);
        let (toward, counter) = match dir {
            Direction::Inbound => {
                s.in_pkts += 1;
                (s.outbound, Counter::InPkts)
            }
            Direction::Outbound => {
                s.out_pkts += 1;
                (s.inbound, Counter::OutPkts)
            }
        };
        let expires = now + timeout_ms(timeouts, s.state);
        self.sessions.set_expires(id, expires);
        self.counters.inc(counter);
        let src = SocketAddrV4::new(toward.dst, toward.dport);
        let dst = SocketAddrV4::new(toward.src, toward.sport);
        self.rewrite_and_route(frame, ip, l4.proto, src, dst)
    }

    fn rewrite_and_route(
        &mut self,
        frame: &mut [u8],
        ip: &Ipv4Info,
        proto: Proto,
        src: SocketAddrV4,
        dst: SocketAddrV4,
    ) -> Verdict {
        let Some(nh) = self.snap.routes.lookup(*dst.ip()) else {
            return Verdict::Drop(Counter::DropNoRoute);
        };
        let packet = &mut frame[ETH_LEN..ip.l4_end];
        if !nat::decrement_ttl(packet) {
            return Verdict::Drop(Counter::DropTtlExceeded);
        }
        let l3_len = ip.l4_start - ETH_LEN;
        if self.snap.ports[nh.port as usize].tx_checksum_offload {
            nat::translate_for_offload(packet, l3_len, proto, src, dst);
            Verdict::Forward(nh, Some((l3_len, proto)))
        } else {
            nat::translate(packet, l3_len, proto, src, dst);
            Verdict::Forward(nh, None)
        }
    }

    /// Sends a routed packet once the next hop's MAC is known; queues it
    /// (bounded) behind an ARP request otherwise.
    fn forward(&mut self, nh: NextHop, mut pkt: P, now: u64, io: &mut impl Io<P>) {
        let port_mac = self.snap.ports[nh.port as usize].mac;
        if let Some(mac) = self.neighbours.lookup(nh.addr, now) {
            write_l2(pkt.data_mut(), port_mac, EthernetAddress(mac));
            io.send(nh.port, pkt);
            return;
        }
        match self.neighbours.enqueue(nh.addr, nh.port, pkt, now) {
            Enqueue::Queued { send_request } => {
                if send_request {
                    self.send_arp_request(nh.port, nh.addr, None, io);
                }
            }
            Enqueue::QueueFull(pkt) => {
                drop(pkt);
                self.counters.inc(Counter::DropNeighbourQueueFull);
            }
            Enqueue::TableFull(pkt) => {
                drop(pkt);
                self.counters.inc(Counter::DropNeighbourTableFull);
            }
        }
    }

    // ---- ICMP ----

    fn icmp(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        ip: &Ipv4Info,
        dest: Destination,
        source: Source,
    ) -> Verdict {
        let Ok(icmp) = Icmpv4Packet::new_checked(&frame[ip.l4_start..ip.l4_end]) else {
            return Verdict::Drop(Counter::DropMalformedL4);
        };
        match icmp.msg_type() {
            msg_type::ECHO_REQUEST if dest != Destination::Foreign => {
                self.echo_reply(in_port, frame, ip)
            }
            msg_type::DST_UNREACHABLE | msg_type::TIME_EXCEEDED => {
                self.icmp_error(frame, ip, source)
            }
            _ if dest == Destination::Foreign => Verdict::Drop(Counter::DropNotServed),
            _ => Verdict::Drop(Counter::DropIcmpUnhandled),
        }
    }

    /// An echo request to one of our addresses, answered in place.
    fn echo_reply(&mut self, in_port: u16, frame: &mut [u8], ip: &Ipv4Info) -> Verdict {
        let mut icmp = Icmpv4Packet::new_unchecked(&mut frame[ip.l4_start..ip.l4_end]);
        // Type and code share one checksummed word; only the type changes.
        let word = |t: u8, code: u8| u16::from_be_bytes([t, code]);
        let code = icmp.msg_code();
        let sum = checksum::update_u16(
            icmp.checksum(),
            word(msg_type::ECHO_REQUEST, code),
            word(msg_type::ECHO_REPLY, code),
        );
        icmp.set_msg_type(msg_type::ECHO_REPLY);
        icmp.set_checksum(sum);

        let mut pkt = Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..ip.l4_end]);
        pkt.set_src_addr(ip.dst);
        pkt.set_dst_addr(ip.src);
        pkt.set_ttl(DEFAULT_TTL);
        pkt.fill_checksum();

        let port_mac = self.snap.ports[in_port as usize].mac;
        let peer = EthernetFrame::new_unchecked(&*frame).src_addr();
        write_l2(frame, port_mac, peer);
        self.counters.inc(Counter::IcmpEchoAnswered);
        Verdict::Transmit(in_port)
    }

    /// Destination unreachable (fragmentation needed included) and time
    /// exceeded about a packet of one of our sessions are translated, the
    /// quoted packet too, and passed to the other side, as IPVS does.
    fn icmp_error(&mut self, frame: &mut [u8], ip: &Ipv4Info, source: Source) -> Verdict {
        let Some(q) = icmp_error::quoted_flow(&frame[ip.l4_start..ip.l4_end]) else {
            return Verdict::Drop(Counter::DropIcmpUnhandled);
        };
        if self.workers > 1 {
            // The quoted packet is one we sent: toward the client (from the
            // VIP), or toward a real server (from a local address in
            // FULLNAT, from the client in NAT).
            let owner = if self.snap.services.is_vip(q.src) {
                client_owner(q.dst, q.dport, self.workers)
            } else if self.snap.destination(q.src) == Destination::Laddr {
                laddr::owner_of_port(q.sport, self.workers)
            } else {
                client_owner(q.src, q.sport, self.workers)
            };
            if let Some(v) = self.steer(owner, source) {
                return v;
            }
        }
        // The quoted packet's reverse is the key its answers would have.
        let reverse = FlowKey {
            proto: q.proto,
            src: q.dst,
            sport: q.dport,
            dst: q.src,
            dport: q.sport,
        };
        let (outer_src, outer_dst, inner_src, inner_dst) =
            if let Some(id) = self.sessions.lookup_outbound(&reverse) {
                // From the real server's side, about a packet we sent it:
                // becomes VIP -> client, quoting client -> VIP.
                let Some(s) = self.sessions.get(id) else {
                    return Verdict::Drop(Counter::DropIcmpUnhandled);
                };
                let i = s.inbound;
                (
                    i.dst,
                    i.src,
                    SocketAddrV4::new(i.src, i.sport),
                    SocketAddrV4::new(i.dst, i.dport),
                )
            } else if let Some(id) = self.sessions.lookup_inbound(&reverse) {
                // From the client's side, about a reply we sent it: becomes
                // local (or client) -> real, quoting real -> local.
                let Some(s) = self.sessions.get(id) else {
                    return Verdict::Drop(Counter::DropIcmpUnhandled);
                };
                let o = s.outbound;
                (
                    o.dst,
                    o.src,
                    SocketAddrV4::new(o.src, o.sport),
                    SocketAddrV4::new(o.dst, o.dport),
                )
            } else {
                return Verdict::Drop(Counter::DropIcmpUnhandled);
            };
        let Some(nh) = self.snap.routes.lookup(outer_dst) else {
            return Verdict::Drop(Counter::DropNoRoute);
        };
        let packet = &mut frame[ETH_LEN..ip.l4_end];
        if !nat::decrement_ttl(packet) {
            return Verdict::Drop(Counter::DropTtlExceeded);
        }
        if !icmp_error::translate(
            packet,
            ip.l4_start - ETH_LEN,
            outer_src,
            outer_dst,
            inner_src,
            inner_dst,
        ) {
            return Verdict::Drop(Counter::DropIcmpUnhandled);
        }
        self.counters.inc(Counter::IcmpErrorsTranslated);
        Verdict::Forward(nh, None)
    }
}

/// Returns a FULLNAT session's local address and port to its pool.
fn release_local(pools: &mut [Option<LocalPool>], s: &Session) {
    if let Some(Some(pool)) = pools.get_mut(s.service as usize) {
        pool.free(
            SocketAddrV4::new(s.outbound.dst, s.outbound.dport),
            SocketAddrV4::new(s.outbound.src, s.outbound.sport),
        );
    }
}

#[inline]
fn write_l2(frame: &mut [u8], src: EthernetAddress, dst: EthernetAddress) {
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_src_addr(src);
    eth.set_dst_addr(dst);
}

/// Validates the IPv4 header (lengths, checksum, no fragments).
#[inline]
fn parse_ipv4(frame: &[u8]) -> Result<Ipv4Info, Counter> {
    let ip = Ipv4Packet::new_checked(&frame[ETH_LEN..]).map_err(|_| Counter::DropMalformedIpv4)?;
    if !ip.verify_checksum() {
        return Err(Counter::DropBadIpv4Checksum);
    }
    if ip.is_fragment() {
        return Err(Counter::DropFragment);
    }
    Ok(Ipv4Info {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        l4_start: ETH_LEN + ip.header_len(),
        l4_end: ETH_LEN + ip.total_len() as usize,
    })
}

/// Validates the TCP/UDP header and reads its ports (and TCP flags).
#[inline]
fn parse_l4(frame: &[u8], ip: &Ipv4Info, proto: u8) -> Result<L4Info, Counter> {
    let l4 = &frame[ip.l4_start..ip.l4_end];
    if proto == protocol::TCP {
        let tcp = TcpPacket::new_checked(l4).map_err(|_| Counter::DropMalformedL4)?;
        Ok(L4Info {
            proto: Proto::Tcp,
            sport: tcp.src_port(),
            dport: tcp.dst_port(),
            flags: TcpFlags {
                syn: tcp.syn(),
                ack: tcp.ack(),
                fin: tcp.fin(),
                rst: tcp.rst(),
            },
        })
    } else {
        let udp = UdpPacket::new_checked(l4).map_err(|_| Counter::DropMalformedL4)?;
        Ok(L4Info {
            proto: Proto::Udp,
            sport: udp.src_port(),
            dport: udp.dst_port(),
            flags: TcpFlags::default(),
        })
    }
}

#[inline]
fn next_state(state: ConnState, dir: Direction, flags: TcpFlags) -> ConnState {
    match state {
        ConnState::Tcp(s) => ConnState::Tcp(tcp_state::transition(s, dir, flags)),
        ConnState::Udp => ConnState::Udp,
    }
}

#[inline]
fn timeout_ms(t: &tcp_state::Timeouts, state: ConnState) -> u64 {
    let secs = match state {
        ConnState::Tcp(s) => t.tcp(s),
        ConnState::Udp => t.udp,
    };
    secs as u64 * 1000
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
