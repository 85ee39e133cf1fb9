//! ARP: answering for our addresses, learning neighbours, asking for next
//! hops, announcing VIPs and local addresses, defending them, and sharing
//! what a frame teaches with the other workers.
//!
//! The rules, after Linux's `arp_process` and RFC 5227:
//! - a neighbour is learned only from a sender on one of the receiving
//!   port's connected subnets, into that port's table (an entry's port
//!   never changes), and created only by a frame that talks to us
//!   (arp_accept=0); static entries never change;
//! - our own addresses are never learned: a frame whose sender address is
//!   ours comes from a station claiming it (a conflict), which is counted,
//!   reported to the control side (logged there at most once per 10 s per
//!   address) and answered with a gratuitous ARP on the port it came from
//!   (at most once a second per address and port), so neighbours that
//!   believed the claim are corrected;
//! - each port accepts at most `dataplane.arp_rate_limit` frames a second
//!   per worker, so an ARP flood costs a bounded share of a core and of
//!   the copies below;
//! - worker 0 announces every VIP and local address at start, every
//!   `dataplane.garp_interval` and when a change adds one.

use super::*;

/// How often a conflict on one address is reported (and so logged).
const CONFLICT_REPORT_MS: u64 = 10_000;
/// How often a conflict on one address is answered with a gratuitous ARP.
const CONFLICT_DEFEND_MS: u64 = 1_000;
/// Addresses whose conflicts are remembered at once (the oldest goes).
const CONFLICTS_TRACKED: usize = 32;
/// Conflict reports waiting for the worker to publish them.
pub const CONFLICT_REPORTS: usize = 8;

/// A station claiming one of our addresses, for the control side's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictReport {
    pub addr: Ipv4Addr,
    /// The port the claim arrived on.
    pub port: u16,
    /// The claimant's MAC (the ARP sender hardware address).
    pub mac: EthernetAddress,
}

/// When a conflict on `addr` seen on `port` was last reported and last
/// defended.
struct Conflict {
    addr: Ipv4Addr,
    port: u16,
    reported: Option<u64>,
    defended: Option<u64>,
}

/// A token bucket in thousandths of a frame, refilled by the millisecond
/// clock the pipeline runs on: no syscall, no float.
#[derive(Clone, Copy)]
struct TokenBucket {
    millis: u64,
    last: u64,
}

impl TokenBucket {
    const FRAME: u64 = 1000;

    /// Takes one frame's token; false when there is none. `rate` frames a
    /// second, at most `depth` at once.
    #[inline]
    fn take(&mut self, now: u64, rate: u32, depth: u64) -> bool {
        let elapsed = now.saturating_sub(self.last);
        if elapsed > 0 {
            // `rate` frames a second is `rate` thousandths a millisecond.
            self.millis =
                (self.millis + elapsed.saturating_mul(u64::from(rate))).min(depth * Self::FRAME);
            self.last = now;
        }
        if self.millis >= Self::FRAME {
            self.millis -= Self::FRAME;
            true
        } else {
            false
        }
    }
}

/// One worker's ARP defences: rate limits, conflicts, the announce timer.
pub(super) struct ArpGuard {
    /// By port id.
    buckets: Vec<TokenBucket>,
    conflicts: ArrayVec<Conflict, CONFLICTS_TRACKED>,
    reports: ArrayVec<ConflictReport, CONFLICT_REPORTS>,
    /// When worker 0 next announces everything.
    next_garp: u64,
}

impl ArpGuard {
    pub(super) fn new(snap: &Snapshot) -> ArpGuard {
        let full = TokenBucket {
            millis: bucket_depth(snap.arp_rate_limit) * TokenBucket::FRAME,
            last: 0,
        };
        ArpGuard {
            buckets: vec![full; snap.ports.len()],
            conflicts: ArrayVec::new(),
            reports: ArrayVec::new(),
            next_garp: snap.garp_interval_ms,
        }
    }

    /// Whether the port's bucket lets one more ARP frame in.
    #[inline]
    fn admit(&mut self, port: u16, now: u64, rate: u32) -> bool {
        if rate == 0 {
            return true;
        }
        match self.buckets.get_mut(port as usize) {
            Some(b) => b.take(now, rate, bucket_depth(rate)),
            None => true,
        }
    }

    /// Records a conflict on `addr` seen on `port`: returns (report it?,
    /// defend it?).
    fn conflict(&mut self, addr: Ipv4Addr, port: u16, now: u64) -> (bool, bool) {
        let due =
            |last: Option<u64>, every: u64| last.is_none_or(|t| now.saturating_sub(t) >= every);
        let i = match self
            .conflicts
            .iter()
            .position(|c| c.addr == addr && c.port == port)
        {
            Some(i) => i,
            None => {
                if self.conflicts.is_full() {
                    // Forget the address reported longest ago.
                    let oldest = (0..self.conflicts.len())
                        .min_by_key(|&i| self.conflicts[i].reported)
                        .unwrap_or(0);
                    self.conflicts.swap_remove(oldest);
                }
                self.conflicts.push(Conflict {
                    addr,
                    port,
                    reported: None,
                    defended: None,
                });
                self.conflicts.len() - 1
            }
        };
        let c = &mut self.conflicts[i];
        let report = due(c.reported, CONFLICT_REPORT_MS);
        let defend = due(c.defended, CONFLICT_DEFEND_MS);
        if report {
            c.reported = Some(now);
        }
        if defend {
            c.defended = Some(now);
        }
        (report, defend)
    }
}

/// Frames a bucket holds at most: a tenth of a second's worth, so a burst
/// passes but a flood is cut within 100 ms.
fn bucket_depth(rate: u32) -> u64 {
    (u64::from(rate) / 10).max(16)
}

impl<P: PacketBuf> Pipeline<P> {
    /// Gratuitous ARP for every VIP and local address, on the ports whose
    /// subnet holds it (all ports if none does), so switches and neighbours
    /// learn where it lives. Worker 0 only: one announcement is enough.
    pub fn announce(&mut self, io: &mut impl Io<P>) {
        let addrs = self.snap.announced_addrs();
        self.announce_addrs(&addrs, io);
    }

    /// Gratuitous ARP for `addrs` (worker 0 only).
    pub(super) fn announce_addrs(&mut self, addrs: &[Ipv4Addr], io: &mut impl Io<P>) {
        if self.worker != 0 {
            return;
        }
        let snap = Arc::clone(&self.snap);
        for &addr in addrs {
            for port in snap.announce_ports(addr) {
                self.send_garp(port, addr, io);
            }
        }
    }

    /// One gratuitous ARP (a request for `addr` from `addr`, broadcast).
    fn send_garp(&mut self, port: u16, addr: Ipv4Addr, io: &mut impl Io<P>) {
        let repr = ArpRepr {
            operation: operation::REQUEST,
            sender_hw: self.snap.ports[port as usize].mac,
            sender_ip: addr,
            target_hw: EthernetAddress([0; 6]),
            target_ip: addr,
        };
        if self.send_arp(port, EthernetAddress::BROADCAST, &repr, io) {
            self.counters.inc(Counter::GarpSent);
        }
    }

    /// The ARP side of the timers: the periodic announcement (worker 0),
    /// and what the neighbour table counted on its own.
    pub(super) fn arp_timers(&mut self, now: u64, io: &mut impl Io<P>) {
        let counts = self.neighbours.take_counts();
        self.counters
            .add(Counter::NeighbourEvictions, counts.evictions);
        self.counters
            .add(Counter::DropNeighbourEvicted, counts.evicted_packets);
        let every = self.snap.garp_interval_ms;
        if self.worker == 0 && every > 0 && now >= self.arp_guard.next_garp {
            self.arp_guard.next_garp = now.saturating_add(every);
            self.announce(io);
        }
    }

    /// Conflicts on our addresses seen since the last call (each address at
    /// most once per 10 s), for the worker to publish.
    pub fn take_conflict_reports(&mut self) -> ArrayVec<ConflictReport, CONFLICT_REPORTS> {
        std::mem::take(&mut self.arp_guard.reports)
    }

    // Rare next to IPv4: kept out of `finish`, whose every packet would
    // otherwise pay for this function's registers and stack.
    #[inline(never)]
    pub(super) fn arp(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        now: u64,
        io: &mut impl Io<P>,
        source: Source,
    ) -> Verdict {
        // Copies from other workers were admitted where they arrived.
        if source == Source::Rx && !self.arp_guard.admit(in_port, now, self.snap.arp_rate_limit) {
            return Verdict::Drop(Counter::DropArpRate);
        }
        let Ok(arp) = ArpPacket::new_checked(&frame[ETH_LEN..]) else {
            return Verdict::Drop(Counter::DropMalformedArp);
        };
        let req = ArpRepr::parse(&arp);
        let port_mac = self.snap.ports[in_port as usize].mac;
        // One of our own frames come back through the L2 from another port
        // (the receiving port's own MAC was refused with the Ethernet
        // header): nothing to learn, no conflict.
        if self.snap.is_own_mac(req.sender_hw) {
            return Verdict::Drop(Counter::DropOwnFrame);
        }
        if self.snap.is_own_addr(req.sender_ip) {
            if source == Source::Rx {
                self.on_conflict(in_port, &req, now, io);
            }
            return Verdict::Drop(Counter::ArpConflicts);
        }
        let ours = self.snap.answers_arp(in_port, req.target_ip);
        let unicast_sender = !req.sender_ip.is_unspecified() && req.sender_hw.is_unicast();
        let on_subnet = self.snap.ports[in_port as usize].is_neighbour_addr(req.sender_ip);
        if unicast_sender && !on_subnet && source == Source::Rx {
            self.counters.inc(Counter::ArpOffSubnet);
        }
        let learnable = unicast_sender && on_subnet;

        // Neighbour tables are per worker: whoever receives a frame that
        // may teach an entry shares it with the others (copies, learn
        // only): frames to us, gratuitous ARP (a failover's announcement)
        // and replies. Requests between other hosts are not copied (a busy
        // LAN's chatter, which only confirms entries). The rate limit
        // above bounds the copies.
        let teaches = ours || req.sender_ip == req.target_ip || req.operation == operation::REPLY;
        if source == Source::Rx && self.workers > 1 && learnable && teaches {
            self.share_arp(in_port, frame, io);
        }
        // Learn the sender, creating an entry only when it talks to us (as
        // Linux does), so a chatty LAN cannot fill the table.
        if learnable {
            // A neighbour may have moved: forget cached decisions.
            self.nexthops.invalidate();
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
                // An answer to the host kernel's own request (it asks from
                // an interface address, through the twin): its neighbour
                // table must resolve too.
                let to_interface = self.snap.destination(req.target_ip) == Destination::Interface;
                if to_interface && self.snap.ports[in_port as usize].kernel_twin {
                    Verdict::Kernel
                } else {
                    Verdict::Consumed
                }
            }
            _ => Verdict::Drop(Counter::DropMalformedArp),
        }
    }

    /// Another station claims `req.sender_ip`, one of our addresses: note
    /// it for the log and put the neighbours on that port right.
    fn on_conflict(&mut self, in_port: u16, req: &ArpRepr, now: u64, io: &mut impl Io<P>) {
        let (report, defend) = self.arp_guard.conflict(req.sender_ip, in_port, now);
        if report {
            // Full only if the worker stopped publishing; then the oldest
            // reports are the ones kept.
            let _ = self.arp_guard.reports.try_push(ConflictReport {
                addr: req.sender_ip,
                port: in_port,
                mac: req.sender_hw,
            });
        }
        if defend {
            self.send_garp(in_port, req.sender_ip, io);
        }
    }

    /// Sends a copy of an ARP frame to every other worker.
    pub(super) fn share_arp(&mut self, in_port: u16, frame: &[u8], io: &mut impl Io<P>) {
        for w in (0..self.workers).filter(|&w| w != self.worker) {
            let Some(mut copy) = io.alloc() else {
                self.counters.inc(Counter::DropMbufExhausted);
                continue;
            };
            if copy.set_len(frame.len()) {
                copy.data_mut().copy_from_slice(frame);
                self.counters.inc(Counter::ArpCopies);
                io.handoff(w, in_port, copy);
            } else {
                self.counters.inc(Counter::DropMbufExhausted);
            }
        }
    }

    /// Sends an ARP request for `target` out of `port` (broadcast, or
    /// unicast to `to` when re-probing a known neighbour).
    pub(super) fn send_arp_request(
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

    pub(super) fn send_arp(
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_passes_the_rate_and_a_bounded_burst() {
        let mut b = TokenBucket {
            millis: 16 * TokenBucket::FRAME,
            last: 0,
        };
        let passed = (0..100).filter(|_| b.take(0, 100, 16)).count();
        assert_eq!(passed, 16, "the burst");
        // 100 a second: one every 10 ms.
        let mut passed = 0;
        for now in 1..=1000 {
            for _ in 0..10 {
                passed += usize::from(b.take(now, 100, 16));
            }
        }
        assert_eq!(passed, 100);
        // Idle for long: refilled to the depth, not beyond.
        let passed = (0..100).filter(|_| b.take(1_000_000, 100, 16)).count();
        assert_eq!(passed, 16);
    }
}
