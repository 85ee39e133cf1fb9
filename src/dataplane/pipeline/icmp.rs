//! ICMP: echo requests to our addresses, and errors about our sessions;
//! the rest of what is for an interface address goes to the kernel twin
//! (echo replies to the host's pings, errors about the host's own flows).

use super::*;

impl<P: PacketBuf> Pipeline<P> {
    pub(super) fn icmp(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        ip: &Ipv4Info,
        dest: Destination,
        now: u64,
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
                match self.icmp_error(frame, ip, now, source) {
                    // About none of our sessions: maybe a flow of the host's.
                    Verdict::Drop(Counter::DropIcmpUnhandled) if dest == Destination::Interface => {
                        self.for_kernel(in_port, frame, ip, None, Counter::DropIcmpUnhandled)
                    }
                    v => v,
                }
            }
            _ if dest == Destination::Foreign => Verdict::Drop(Counter::DropNotServed),
            _ if dest == Destination::Interface => {
                self.for_kernel(in_port, frame, ip, None, Counter::DropIcmpUnhandled)
            }
            _ => Verdict::Drop(Counter::DropIcmpUnhandled),
        }
    }

    /// An echo request to one of our addresses, answered in place.
    pub(super) fn echo_reply(&mut self, in_port: u16, frame: &mut [u8], ip: &Ipv4Info) -> Verdict {
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
    pub(super) fn icmp_error(
        &mut self,
        frame: &mut [u8],
        ip: &Ipv4Info,
        now: u64,
        source: Source,
    ) -> Verdict {
        let Some(q) = icmp_error::quoted_flow(&frame[ip.l4_start..ip.l4_end]) else {
            return Verdict::Drop(Counter::DropIcmpUnhandled);
        };
        if self.workers > 1 {
            // The quoted packet is one we sent: toward the client (from the
            // VIP), or toward a real server (from a local address in
            // FULLNAT, from the client in NAT).
            let owner = if self.snap.services.is_vip(q.src) {
                self.client_owner(q.dst, q.dport)
            } else if self.snap.destination(q.src) == Destination::Laddr {
                laddr::owner_of_port(q.sport, self.workers)
            } else {
                self.client_owner(q.src, q.sport)
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
        let route = match self.resolve(outer_dst, now) {
            Ok(route) => route,
            Err(reason) => return Verdict::Drop(reason),
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
        Verdict::Forward(route, None)
    }
}
