//! ARP: answering for our addresses, learning neighbours, asking for next
//! hops, announcing VIPs and local addresses, and sharing what a frame
//! teaches with the other workers.

use super::*;

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

    pub(super) fn arp(
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
                Verdict::Consumed
            }
            _ => Verdict::Drop(Counter::DropMalformedArp),
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
                io.handoff(w, in_port, copy);
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
