//! ICMP errors that belong to a session: finding the flow an error quotes,
//! and rewriting the error for the other side of the load balancer, as
//! IPVS's `ip_vs_nat_icmp` and DPVS's ICMP handling do.
//!
//! A destination-unreachable or time-exceeded message quotes the start of
//! the packet that caused it: that packet's IPv4 header and at least the
//! first 8 bytes of its TCP/UDP header. The quoted packet is one sluice
//! sent, so the quoted flow *reversed* is the key of the direction the error
//! travels in (`FlowKey::from(flow).reversed()`): an error from a real server
//! about a packet sent to it matches the session's outbound key, an error
//! from the client side about a reply matches its inbound key. `translate`
//! then rewrites the outer addresses and the quoted packet so the error
//! describes the packet as the other side sent it.
//!
//! Checksums are updated with RFC 1624 incremental updates (`wire::checksum`)
//! for every 16-bit word that changes, the ICMP checksum included, rather
//! than recomputed over the quote: the cost does not depend on how much the
//! error quotes (Linux quotes up to 548 bytes), and an error that arrived
//! with a bad checksum still has a bad one, instead of being made valid.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::nat;
use super::session::FlowKey;
use super::Proto;
use crate::wire::icmpv4::msg_type;
use crate::wire::{checksum, ipv4, Icmpv4Packet, Ipv4Packet, TcpPacket, UdpPacket};

/// Offset of the quoted IPv4 header in the ICMP message.
const QUOTE: usize = Icmpv4Packet::<&[u8]>::HEADER_LEN;
/// Bytes of the quoted transport header an error must hold: both ports
/// (RFC 792 guarantees 8).
const PORTS_LEN: usize = 8;
/// A quoted TCP header this long holds the checksum (bytes 16..18).
const TCP_CHECKSUM_END: usize = 18;

/// The flow quoted inside an ICMP error, as it was sent (the packet that
/// caused the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotedFlow {
    pub proto: Proto,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

impl From<QuotedFlow> for FlowKey {
    fn from(flow: QuotedFlow) -> FlowKey {
        FlowKey {
            proto: flow.proto,
            src: flow.src,
            sport: flow.sport,
            dst: flow.dst,
            dport: flow.dport,
        }
    }
}

/// Where an ICMP error's quote is, as offsets in the ICMP message.
struct Quote {
    flow: QuotedFlow,
    /// Start of the quoted transport header.
    l4: usize,
    /// Bytes of the transport header quoted (at least `PORTS_LEN`), up to
    /// the quoted packet's total length.
    l4_len: usize,
}

fn parse_quote(icmp: &[u8]) -> Option<Quote> {
    let message = Icmpv4Packet::new_checked(icmp).ok()?;
    if !matches!(
        message.msg_type(),
        msg_type::DST_UNREACHABLE | msg_type::TIME_EXCEEDED
    ) {
        return None;
    }
    let inner = Ipv4Packet::new_checked_quoted(message.data()).ok()?;
    // Only a first fragment starts with the transport header.
    if inner.frag_offset() != 0 {
        return None;
    }
    let proto = Proto::from_ip_protocol(inner.protocol())?;
    let l4 = inner.payload();
    if l4.len() < PORTS_LEN {
        return None;
    }
    // TCP and UDP headers both start with the source and destination ports.
    let ports = UdpPacket::new_unchecked(l4);
    Some(Quote {
        flow: QuotedFlow {
            proto,
            src: inner.src_addr(),
            sport: ports.src_port(),
            dst: inner.dst_addr(),
            dport: ports.dst_port(),
        },
        l4: QUOTE + inner.header_len(),
        l4_len: l4.len(),
    })
}

/// `icmp` is the whole ICMP message (8-byte header + data). Returns the
/// quoted flow for a destination-unreachable (type 3, any code, including
/// 4 = fragmentation needed) or time-exceeded (type 11) message whose quoted
/// packet is IPv4 TCP/UDP with at least the 8 bytes of ports; None for
/// anything else (other types, truncated or malformed quotes, a quoted
/// fragment that is not the first). The ICMP checksum is not verified.
#[inline]
pub fn quoted_flow(icmp: &[u8]) -> Option<QuotedFlow> {
    parse_quote(icmp).map(|quote| quote.flow)
}

/// Rewrites an ICMP error in place. `packet` is the whole outer IPv4 packet
/// (`l4_offset` = outer IPv4 header length). Sets the outer source and
/// destination to `outer_src`/`outer_dst`, the quoted packet's source
/// address:port to `inner_src` and its destination to `inner_dst`, and keeps
/// every checksum right by incremental updates: the outer IPv4 header, the
/// quoted IPv4 header, the quoted UDP checksum (unless 0, "none") or TCP
/// checksum when the quote holds it, and the ICMP checksum. Everything else
/// (type, code, the MTU of a frag-needed message, TTLs) is left as is.
///
/// Returns false, with the packet untouched, unless the outer header is a
/// valid IPv4 header of `l4_offset` bytes carrying ICMP (not a non-first
/// fragment) and `quoted_flow` accepts its ICMP part.
pub fn translate(
    packet: &mut [u8],
    l4_offset: usize,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    inner_src: SocketAddrV4,
    inner_dst: SocketAddrV4,
) -> bool {
    let (icmp_end, quote) = {
        let Ok(outer) = Ipv4Packet::new_checked(&*packet) else {
            return false;
        };
        if outer.header_len() != l4_offset
            || outer.protocol() != ipv4::protocol::ICMP
            || outer.frag_offset() != 0
        {
            return false;
        }
        let Some(quote) = parse_quote(outer.payload()) else {
            return false;
        };
        (l4_offset + outer.payload().len(), quote)
    };

    let (outer, icmp) = packet[..icmp_end].split_at_mut(l4_offset);
    set_addresses(&mut Ipv4Packet::new_unchecked(outer), outer_src, outer_dst);

    let (icmp_header, quote_bytes) = icmp.split_at_mut(QUOTE);
    let (inner_header, inner_l4) = quote_bytes.split_at_mut(quote.l4 - QUOTE);
    let mut icmp_header = Icmpv4Packet::new_unchecked(icmp_header);
    // Every word of the quote that changes is mirrored in the ICMP sum.
    let mut sum = icmp_header.checksum();

    let mut ip = Ipv4Packet::new_unchecked(inner_header);
    let (old_src, old_dst, old_ip_sum) = (ip.src_addr(), ip.dst_addr(), ip.checksum());
    set_addresses(&mut ip, *inner_src.ip(), *inner_dst.ip());
    sum = updated_addr(sum, old_src, *inner_src.ip());
    sum = updated_addr(sum, old_dst, *inner_dst.ip());
    sum = updated(sum, old_ip_sum, ip.checksum());

    let l4 = &mut inner_l4[..quote.l4_len];
    let new_ports = (inner_src.port(), inner_dst.port());
    let old_ports = (quote.flow.sport, quote.flow.dport);
    sum = updated(sum, old_ports.0, new_ports.0);
    sum = updated(sum, old_ports.1, new_ports.1);
    let old_l4 = ((old_src, old_ports.0), (old_dst, old_ports.1));
    match quote.flow.proto {
        Proto::Tcp => {
            let holds_checksum = l4.len() >= TCP_CHECKSUM_END;
            let mut tcp = TcpPacket::new_unchecked(l4);
            tcp.set_src_port(new_ports.0);
            tcp.set_dst_port(new_ports.1);
            if holds_checksum {
                let old = tcp.checksum();
                let new = nat::l4_sum(old, old_l4.0, old_l4.1, inner_src, inner_dst);
                tcp.set_checksum(new);
                sum = updated(sum, old, new);
            }
        }
        Proto::Udp => {
            let mut udp = UdpPacket::new_unchecked(l4);
            udp.set_src_port(new_ports.0);
            udp.set_dst_port(new_ports.1);
            // A zero UDP checksum means "none" and stays none.
            let old = udp.checksum();
            if old != 0 {
                let new = match nat::l4_sum(old, old_l4.0, old_l4.1, inner_src, inner_dst) {
                    0 => 0xffff,
                    new => new,
                };
                udp.set_checksum(new);
                sum = updated(sum, old, new);
            }
        }
    }
    icmp_header.set_checksum(sum);
    true
}

/// Sets the addresses of an IPv4 header, updating its checksum.
#[inline]
fn set_addresses(ip: &mut Ipv4Packet<&mut [u8]>, src: Ipv4Addr, dst: Ipv4Addr) {
    let mut sum = ip.checksum();
    sum = updated_addr(sum, ip.src_addr(), src);
    sum = updated_addr(sum, ip.dst_addr(), dst);
    ip.set_src_addr(src);
    ip.set_dst_addr(dst);
    ip.set_checksum(sum);
}

/// `checksum::update_u16`, skipped when the word does not change (so that
/// nothing unchanged is touched, not even a degenerate 0xffff field).
#[inline]
fn updated(sum: u16, old: u16, new: u16) -> u16 {
    if old == new {
        sum
    } else {
        checksum::update_u16(sum, old, new)
    }
}

/// `checksum::update_addr`, skipped when the address does not change.
#[inline]
fn updated_addr(sum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    if old == new {
        sum
    } else {
        checksum::update_addr(sum, old, new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::alloc_count::allocations_during;
    use crate::wire::icmpv4::dst_unreachable_code;
    use crate::wire::icmpv4::tests::{ECHO_PACKET, UNREACHABLE_PACKET};
    use crate::wire::tcp::flags;
    use crate::wire::tcp::tests::SYN_PACKET;
    use crate::wire::udp::tests::DNS_PACKET;

    // A FULLNAT service: the client talks to the VIP, sluice talks to the
    // real server from a local address.
    const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 45678);
    const VIP_DNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 53);
    const VIP_WEB: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 80);
    const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 20, 1), 5001);
    const REAL_DNS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 30, 2), 53);
    const REAL_WEB: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 30, 2), 8080);
    /// A router on the client's side and one on the real servers' side.
    const CLIENT_ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const REAL_ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 30, 254);

    /// Linux quotes as much as fits in 576 bytes: 576 - 20 - 8.
    const LINUX_QUOTE: usize = 548;

    /// `datagram` (a whole IPv4 TCP/UDP packet) with new addresses and ports
    /// and every checksum computed from scratch over the whole packet.
    fn readdressed(datagram: &[u8], src: SocketAddrV4, dst: SocketAddrV4) -> Vec<u8> {
        let mut p = datagram.to_vec();
        let mut ip = Ipv4Packet::new_checked(&mut p[..]).unwrap();
        ip.set_src_addr(*src.ip());
        ip.set_dst_addr(*dst.ip());
        ip.fill_checksum();
        let protocol = ip.protocol();
        let l4 = ip.payload_mut();
        match protocol {
            ipv4::protocol::TCP => {
                let mut tcp = TcpPacket::new_checked(l4).unwrap();
                tcp.set_src_port(src.port());
                tcp.set_dst_port(dst.port());
                tcp.fill_checksum(*src.ip(), *dst.ip());
            }
            ipv4::protocol::UDP => {
                let mut udp = UdpPacket::new_checked(l4).unwrap();
                udp.set_src_port(src.port());
                udp.set_dst_port(dst.port());
                udp.fill_checksum(*src.ip(), *dst.ip());
            }
            other => panic!("protocol {other}"),
        }
        p
    }

    /// A TCP segment `src` -> `dst` with ACK|PSH and `len` bytes of data.
    fn tcp_segment(src: SocketAddrV4, dst: SocketAddrV4, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; 40 + len];
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len((40 + len) as u16);
        ip.set_ident(0x3a1c);
        ip.set_dont_frag(true);
        ip.set_ttl(64);
        ip.set_protocol(ipv4::protocol::TCP);
        let mut tcp = TcpPacket::new_unchecked(ip.payload_mut());
        tcp.set_seq_number(0x7f3b_0c11);
        tcp.set_ack_number(0x0011_2233);
        tcp.set_header_len(20);
        tcp.set_flags(flags::ACK | flags::PSH);
        tcp.set_window_len(501);
        for (i, b) in tcp.payload_mut().iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        readdressed(&p, src, dst)
    }

    /// An ICMP error `outer_src` -> `outer_dst` quoting the first
    /// `quote_len` bytes of `datagram`, every checksum computed in full.
    fn icmp_error(
        (outer_src, outer_dst): (Ipv4Addr, Ipv4Addr),
        (msg_type, code, rest_of_header): (u8, u8, u32),
        datagram: &[u8],
        quote_len: usize,
    ) -> Vec<u8> {
        let quote = &datagram[..quote_len.min(datagram.len())];
        let mut p = vec![0u8; 28 + quote.len()];
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_dscp_ecn(0xc0); // Linux sends ICMP errors as CS6
        ip.set_total_len((28 + quote.len()) as u16);
        ip.set_ident(0x9d04);
        ip.set_ttl(63);
        ip.set_protocol(ipv4::protocol::ICMP);
        ip.set_src_addr(outer_src);
        ip.set_dst_addr(outer_dst);
        ip.fill_checksum();
        let mut icmp = Icmpv4Packet::new_unchecked(&mut p[20..]);
        icmp.set_msg_type(msg_type);
        icmp.set_msg_code(code);
        icmp.set_rest_of_header(rest_of_header);
        icmp.data_mut().copy_from_slice(quote);
        icmp.fill_checksum();
        p
    }

    fn flow_of(proto: Proto, src: SocketAddrV4, dst: SocketAddrV4) -> QuotedFlow {
        QuotedFlow {
            proto,
            src: *src.ip(),
            sport: src.port(),
            dst: *dst.ip(),
            dport: dst.port(),
        }
    }

    /// All four checksums of an ICMP error, by full recomputation; the
    /// quoted transport checksum against `full_datagram`, the whole packet
    /// the quote was cut from.
    fn assert_checksums(p: &[u8], full_datagram: &[u8]) {
        let outer = Ipv4Packet::new_checked(p).unwrap();
        assert!(outer.verify_checksum(), "outer IPv4 checksum");
        let icmp = Icmpv4Packet::new_checked(outer.payload()).unwrap();
        assert!(icmp.verify_checksum(), "ICMP checksum");
        let inner = Ipv4Packet::new_checked_quoted(icmp.data()).unwrap();
        assert!(inner.verify_checksum(), "quoted IPv4 checksum");
        let mut full = full_datagram.to_vec();
        let mut full_ip = Ipv4Packet::new_checked(&mut full[..]).unwrap();
        let (src, dst) = (inner.src_addr(), inner.dst_addr());
        match inner.protocol() {
            ipv4::protocol::TCP => {
                let mut tcp = TcpPacket::new_checked(full_ip.payload_mut()).unwrap();
                let quoted = inner.payload();
                tcp.set_src_port(u16::from_be_bytes([quoted[0], quoted[1]]));
                tcp.set_dst_port(u16::from_be_bytes([quoted[2], quoted[3]]));
                tcp.fill_checksum(src, dst);
                if quoted.len() >= 18 {
                    assert_eq!(
                        &quoted[16..18],
                        &tcp.checksum().to_be_bytes(),
                        "TCP checksum"
                    );
                }
            }
            ipv4::protocol::UDP => {
                let mut udp = UdpPacket::new_checked(full_ip.payload_mut()).unwrap();
                let quoted = inner.payload();
                udp.set_src_port(u16::from_be_bytes([quoted[0], quoted[1]]));
                udp.set_dst_port(u16::from_be_bytes([quoted[2], quoted[3]]));
                udp.fill_checksum(src, dst);
                assert_eq!(&quoted[6..8], &udp.checksum().to_be_bytes(), "UDP checksum");
            }
            other => panic!("protocol {other}"),
        }
    }

    /// Builds the error quoting `datagram` (sent `before.1`), translates it
    /// to `after`, and checks the result against the same error built from
    /// scratch with the new addresses, then translates it back.
    fn check_round_trip(
        header: (u8, u8, u32),
        datagram: &[u8],
        quote_len: usize,
        before: ((Ipv4Addr, Ipv4Addr), (SocketAddrV4, SocketAddrV4)),
        after: ((Ipv4Addr, Ipv4Addr), (SocketAddrV4, SocketAddrV4)),
    ) {
        let (outer, (src, dst)) = before;
        let (new_outer, (new_src, new_dst)) = after;
        let original = icmp_error(outer, header, datagram, quote_len);
        let proto = quoted_flow(&original[20..]).unwrap().proto;
        assert_eq!(quoted_flow(&original[20..]), Some(flow_of(proto, src, dst)));
        assert_checksums(&original, datagram);

        let mut p = original.clone();
        let ((), allocations) = allocations_during(|| {
            assert!(translate(
                &mut p,
                20,
                new_outer.0,
                new_outer.1,
                new_src,
                new_dst
            ));
        });
        assert_eq!(allocations, 0);

        let new_datagram = readdressed(datagram, new_src, new_dst);
        assert_checksums(&p, &new_datagram);
        assert_eq!(p, icmp_error(new_outer, header, &new_datagram, quote_len));
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), new_outer);
        assert_eq!(ip.ttl(), 63);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(
            (icmp.msg_type(), icmp.msg_code(), icmp.rest_of_header()),
            header
        );
        assert_eq!(
            quoted_flow(&p[20..]),
            Some(flow_of(proto, new_src, new_dst))
        );

        assert!(translate(&mut p, 20, outer.0, outer.1, src, dst));
        assert_eq!(p, original, "translating back restores every byte");
    }

    #[test]
    fn port_unreachable_quoting_udp() {
        // The real server has nothing on port 53: it tells the local
        // address; the client must hear it from the VIP about its own query.
        let query = readdressed(&DNS_PACKET, LOCAL, REAL_DNS);
        check_round_trip(
            (msg_type::DST_UNREACHABLE, dst_unreachable_code::PORT, 0),
            &query,
            28,
            ((*REAL_DNS.ip(), *LOCAL.ip()), (LOCAL, REAL_DNS)),
            ((*VIP_DNS.ip(), *CLIENT.ip()), (CLIENT, VIP_DNS)),
        );
        // A host quoting the whole datagram (Linux does, up to 548 bytes).
        check_round_trip(
            (msg_type::DST_UNREACHABLE, dst_unreachable_code::PORT, 0),
            &query,
            LINUX_QUOTE,
            ((*REAL_DNS.ip(), *LOCAL.ip()), (LOCAL, REAL_DNS)),
            ((*VIP_DNS.ip(), *CLIENT.ip()), (CLIENT, VIP_DNS)),
        );
    }

    #[test]
    fn captured_port_unreachable() {
        let icmp = &UNREACHABLE_PACKET[20..];
        assert_eq!(
            quoted_flow(icmp),
            Some(QuotedFlow {
                proto: Proto::Udp,
                src: Ipv4Addr::new(192, 168, 1, 10),
                sport: 45678,
                dst: Ipv4Addr::new(8, 8, 4, 4),
                dport: 53,
            })
        );
        let key = FlowKey::from(quoted_flow(icmp).unwrap()).reversed();
        assert_eq!((key.src, key.sport), (Ipv4Addr::new(8, 8, 4, 4), 53));
        // The query as it was sent: DNS_PACKET to 8.8.4.4 (ident 0x5c22).
        let mut query = readdressed(
            &DNS_PACKET,
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), 45678),
            SocketAddrV4::new(Ipv4Addr::new(8, 8, 4, 4), 53),
        );
        let mut ip = Ipv4Packet::new_unchecked(&mut query[..]);
        ip.set_ident(0x5c22);
        ip.fill_checksum();
        assert_eq!(&query[..28], &UNREACHABLE_PACKET[28..]);

        let mut p = UNREACHABLE_PACKET;
        assert!(translate(
            &mut p,
            20,
            *VIP_DNS.ip(),
            *CLIENT.ip(),
            CLIENT,
            VIP_DNS
        ));
        assert_checksums(&p, &readdressed(&query, CLIENT, VIP_DNS));
        assert!(translate(
            &mut p,
            20,
            Ipv4Addr::new(8, 8, 4, 4),
            Ipv4Addr::new(192, 168, 1, 10),
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 10), 45678),
            SocketAddrV4::new(Ipv4Addr::new(8, 8, 4, 4), 53),
        ));
        assert_eq!(p, UNREACHABLE_PACKET);
    }

    #[test]
    fn udp_without_checksum_keeps_none() {
        let mut query = readdressed(&DNS_PACKET, LOCAL, REAL_DNS);
        UdpPacket::new_unchecked(&mut query[20..]).set_checksum(0);
        let header = (msg_type::DST_UNREACHABLE, dst_unreachable_code::PORT, 0);
        let mut p = icmp_error((*REAL_DNS.ip(), *LOCAL.ip()), header, &query, 28);
        assert!(translate(
            &mut p,
            20,
            *VIP_DNS.ip(),
            *CLIENT.ip(),
            CLIENT,
            VIP_DNS
        ));
        let mut expected = readdressed(&query, CLIENT, VIP_DNS);
        UdpPacket::new_unchecked(&mut expected[20..]).set_checksum(0);
        assert_eq!(
            p,
            icmp_error((*VIP_DNS.ip(), *CLIENT.ip()), header, &expected, 28)
        );
        assert_eq!(&p[54..56], &[0, 0]);
    }

    #[test]
    fn frag_needed_quoting_tcp() {
        // A router on the client's side cannot forward a 1500-byte reply
        // (VIP -> client) over its 1400-byte link; the real server, which
        // sent it, must learn the MTU.
        let reply = tcp_segment(VIP_WEB, CLIENT, 1460);
        let header = (
            msg_type::DST_UNREACHABLE,
            dst_unreachable_code::FRAG_NEEDED,
            1400,
        );
        for quote_len in [LINUX_QUOTE, 28, 38, 39] {
            check_round_trip(
                header,
                &reply,
                quote_len,
                ((CLIENT_ROUTER, *VIP_WEB.ip()), (VIP_WEB, CLIENT)),
                ((*LOCAL.ip(), *REAL_WEB.ip()), (REAL_WEB, LOCAL)),
            );
        }
        // With only 8 bytes quoted, the TCP checksum is not there to update.
        let mut p = icmp_error((CLIENT_ROUTER, *VIP_WEB.ip()), header, &reply, 28);
        assert!(translate(
            &mut p,
            20,
            *LOCAL.ip(),
            *REAL_WEB.ip(),
            REAL_WEB,
            LOCAL
        ));
        assert_eq!(p.len(), 56);
        assert_eq!(Icmpv4Packet::new_unchecked(&p[20..]).next_hop_mtu(), 1400);
        assert_eq!(&p[48..56], &readdressed(&reply, REAL_WEB, LOCAL)[20..28]);
    }

    #[test]
    fn time_exceeded_quoting_a_syn() {
        // The SYN toward the real server loops on its side until its TTL
        // runs out; the client hears of it about its own SYN to the VIP.
        let syn = readdressed(&SYN_PACKET, LOCAL, REAL_WEB);
        assert!(TcpPacket::new_checked(&syn[20..]).unwrap().syn());
        check_round_trip(
            (msg_type::TIME_EXCEEDED, 0, 0),
            &syn,
            LINUX_QUOTE,
            ((REAL_ROUTER, *LOCAL.ip()), (LOCAL, REAL_WEB)),
            ((*VIP_WEB.ip(), *CLIENT.ip()), (CLIENT, VIP_WEB)),
        );
        // NAT mode: only the real server's side changes.
        check_round_trip(
            (msg_type::TIME_EXCEEDED, 0, 0),
            &syn,
            28,
            ((REAL_ROUTER, *LOCAL.ip()), (LOCAL, REAL_WEB)),
            ((REAL_ROUTER, *LOCAL.ip()), (LOCAL, VIP_WEB)),
        );
        // And the captured SYN as it is.
        let ip = Ipv4Packet::new_checked(&SYN_PACKET[..]).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let sent = (
            SocketAddrV4::new(ip.src_addr(), tcp.src_port()),
            SocketAddrV4::new(ip.dst_addr(), tcp.dst_port()),
        );
        check_round_trip(
            (msg_type::TIME_EXCEEDED, 0, 0),
            &SYN_PACKET,
            LINUX_QUOTE,
            ((REAL_ROUTER, ip.src_addr()), sent),
            ((*VIP_WEB.ip(), *CLIENT.ip()), (CLIENT, VIP_WEB)),
        );
    }

    #[test]
    fn quoted_header_with_options() {
        // IHL 6 (a Router Alert option): the ports are 24 bytes in.
        let query = readdressed(&DNS_PACKET, LOCAL, REAL_DNS);
        let mut with_options = query[..20].to_vec();
        with_options.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        with_options.extend_from_slice(&query[20..]);
        let mut ip = Ipv4Packet::new_unchecked(&mut with_options[..]);
        ip.set_header_len(24);
        ip.set_total_len(query.len() as u16 + 4);
        let with_options = readdressed(&with_options, LOCAL, REAL_DNS);
        check_round_trip(
            (msg_type::DST_UNREACHABLE, dst_unreachable_code::PORT, 0),
            &with_options,
            32,
            ((*REAL_DNS.ip(), *LOCAL.ip()), (LOCAL, REAL_DNS)),
            ((*VIP_DNS.ip(), *CLIENT.ip()), (CLIENT, VIP_DNS)),
        );
    }

    /// The error quoting `datagram` with its quoted header changed by
    /// `edit` (quoted checksum refreshed), as an ICMP message.
    fn edited_quote(
        datagram: &[u8],
        quote_len: usize,
        edit: impl Fn(&mut Ipv4Packet<&mut [u8]>),
    ) -> Vec<u8> {
        let mut d = datagram.to_vec();
        let mut ip = Ipv4Packet::new_unchecked(&mut d[..]);
        edit(&mut ip);
        if (20..=60).contains(&ip.header_len()) {
            ip.fill_checksum();
        }
        icmp_error((REAL_ROUTER, *LOCAL.ip()), (3, 1, 0), &d, quote_len)[20..].to_vec()
    }

    #[test]
    fn quoted_flow_refuses_what_it_cannot_use() {
        let syn = readdressed(&SYN_PACKET, LOCAL, REAL_WEB);
        let good = edited_quote(&syn, 28, |_| {});
        assert!(quoted_flow(&good).is_some());

        // Echo request and reply, and other types quoting a good datagram.
        assert_eq!(quoted_flow(&ECHO_PACKET[20..]), None);
        let mut reply = ECHO_PACKET[20..].to_vec();
        reply[0] = msg_type::ECHO_REPLY;
        assert_eq!(quoted_flow(&reply), None);
        for other in [0, 4, 5, 8, 12, 13, 255] {
            let mut m = good.clone();
            m[0] = other;
            assert_eq!(quoted_flow(&m), None, "type {other}");
        }
        for code in 0..=15 {
            let mut m = good.clone();
            m[1] = code;
            assert!(quoted_flow(&m).is_some(), "type 3 code {code}");
        }
        // Shorter than ICMP header + IPv4 header + 8.
        for len in 0..36 {
            assert_eq!(quoted_flow(&good[..len]), None, "{len} bytes");
        }
        // A quoted packet that says it is shorter than header + 8.
        assert_eq!(
            quoted_flow(&edited_quote(&syn, 28, |ip| ip.set_total_len(27))),
            None
        );
        assert!(quoted_flow(&edited_quote(&syn, 28, |ip| ip.set_total_len(28))).is_some());
        // Fragments: the first one holds the ports, the others do not.
        assert!(quoted_flow(&edited_quote(&syn, 28, |ip| ip.set_more_frags(true))).is_some());
        assert_eq!(
            quoted_flow(&edited_quote(&syn, 28, |ip| ip.set_frag_offset(1480))),
            None
        );
        assert_eq!(
            quoted_flow(&edited_quote(&syn, 28, |ip| {
                ip.set_frag_offset(8);
                ip.set_more_frags(true)
            })),
            None
        );
        // A quoted ICMP packet (an echo request), and other protocols.
        assert_eq!(quoted_flow(&edited_quote(&ECHO_PACKET, 28, |_| {})), None);
        assert_eq!(
            quoted_flow(&edited_quote(&syn, 28, |ip| ip.set_protocol(132))),
            None
        );
        // Bad IHL: below 5, or past the quote; bad version.
        for ihl in [0u8, 1, 4] {
            let mut m = good.clone();
            m[8] = 0x40 | ihl;
            assert_eq!(quoted_flow(&m), None, "IHL {ihl}");
        }
        let mut m = good.clone();
        m[8] = 0x4f;
        assert_eq!(quoted_flow(&m), None, "IHL 15 in a 28-byte quote");
        m[8] = 0x46;
        assert_eq!(quoted_flow(&m), None, "IHL 6 leaves 4 bytes of ports");
        m[8] = 0x65;
        assert_eq!(quoted_flow(&m), None, "IPv6 version");
    }

    #[test]
    fn translate_refuses_and_leaves_the_packet() {
        let syn = readdressed(&SYN_PACKET, LOCAL, REAL_WEB);
        let good = icmp_error((REAL_ROUTER, *LOCAL.ip()), (11, 0, 0), &syn, 28);
        let args = (*VIP_WEB.ip(), *CLIENT.ip(), CLIENT, VIP_WEB);
        // Wrong header length for the outer packet.
        for l4_offset in [0, 19, 21, 24, 56, 57, 1000] {
            let mut p = good.clone();
            assert!(!translate(
                &mut p, l4_offset, args.0, args.1, args.2, args.3
            ));
            assert_eq!(p, good);
        }
        // Not ICMP, a non-first fragment, a quote it cannot use.
        let mut not_icmp = good.clone();
        not_icmp[9] = ipv4::protocol::UDP;
        let mut later_fragment = good.clone();
        Ipv4Packet::new_unchecked(&mut later_fragment[..]).set_frag_offset(1480);
        let mut echo = good.clone();
        echo[20] = msg_type::ECHO_REQUEST;
        let mut truncated = good[..55].to_vec();
        Ipv4Packet::new_unchecked(&mut truncated[..]).set_total_len(55);
        for bad in [
            not_icmp,
            later_fragment,
            echo,
            truncated,
            ECHO_PACKET.to_vec(),
            Vec::new(),
        ] {
            let mut p = bad.clone();
            assert!(!translate(&mut p, 20, args.0, args.1, args.2, args.3));
            assert_eq!(p, bad);
        }
        // Ethernet padding after the packet is not part of it.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0xee; 6]);
        assert!(translate(&mut padded, 20, args.0, args.1, args.2, args.3));
        assert_eq!(&padded[56..], &[0xee; 6]);
        assert_checksums(&padded[..56], &readdressed(&syn, CLIENT, VIP_WEB));
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn sample_errors() -> Vec<Vec<u8>> {
        let query = readdressed(&DNS_PACKET, LOCAL, REAL_DNS);
        let reply = tcp_segment(VIP_WEB, CLIENT, 1460);
        let syn = readdressed(&SYN_PACKET, LOCAL, REAL_WEB);
        vec![
            icmp_error((*REAL_DNS.ip(), *LOCAL.ip()), (3, 3, 0), &query, 28),
            icmp_error(
                (*REAL_DNS.ip(), *LOCAL.ip()),
                (3, 3, 0),
                &query,
                LINUX_QUOTE,
            ),
            icmp_error(
                (CLIENT_ROUTER, *VIP_WEB.ip()),
                (3, 4, 1400),
                &reply,
                LINUX_QUOTE,
            ),
            icmp_error((CLIENT_ROUTER, *VIP_WEB.ip()), (3, 4, 1400), &reply, 28),
            icmp_error((REAL_ROUTER, *LOCAL.ip()), (11, 0, 0), &syn, LINUX_QUOTE),
            UNREACHABLE_PACKET.to_vec(),
            ECHO_PACKET.to_vec(),
        ]
    }

    #[test]
    fn no_panic_on_any_prefix() {
        for error in sample_errors() {
            for len in 0..=error.len() {
                let accepted = quoted_flow(&error[20.min(len)..len]).is_some();
                // The prefix as a whole packet of that length.
                let mut p = error[..len].to_vec();
                if len >= 4 {
                    Ipv4Packet::new_unchecked(&mut p[..]).set_total_len(len as u16);
                }
                let before = p.clone();
                let translated =
                    translate(&mut p, 20, *VIP_WEB.ip(), *CLIENT.ip(), CLIENT, VIP_WEB);
                assert_eq!(translated, accepted && len >= 20, "{len} bytes");
                if !translated {
                    assert_eq!(p, before);
                }
            }
        }
    }

    #[test]
    fn no_panic_on_random_corruption() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let (new_src, new_dst) = (
            SocketAddrV4::new(Ipv4Addr::new(172, 16, 0, 9), 40001),
            SocketAddrV4::new(Ipv4Addr::new(172, 16, 9, 1), 443),
        );
        let mut translated = 0;
        for error in sample_errors() {
            for _ in 0..3000 {
                let mut p = error.clone();
                for _ in 0..=rng.next() % 3 {
                    let at = (rng.next() as usize) % p.len().min(64);
                    p[at] ^= (rng.next() as u8) | 1;
                }
                let l4_offset = if rng.next().is_multiple_of(8) {
                    (rng.next() % 64) as usize
                } else {
                    20
                };
                // Where a quote is still usable, make the checksums valid
                // again, so their validity afterwards can be checked.
                let quote_at = Ipv4Packet::new_checked(&p[..])
                    .ok()
                    .filter(|ip| ip.header_len() == l4_offset)
                    .and_then(|ip| parse_quote(ip.payload()).map(|q| (ip.payload().len(), q.l4)));
                if let Some((icmp_len, inner_l4)) = quote_at {
                    Ipv4Packet::new_unchecked(&mut p[l4_offset + QUOTE..l4_offset + inner_l4])
                        .fill_checksum();
                    Icmpv4Packet::new_unchecked(&mut p[l4_offset..l4_offset + icmp_len])
                        .fill_checksum();
                    Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
                }
                let before = p.clone();
                let flow_before = Ipv4Packet::new_checked(&p[..])
                    .ok()
                    .and_then(|ip| quoted_flow(ip.payload()));
                if translate(
                    &mut p,
                    l4_offset,
                    *new_src.ip(),
                    *new_dst.ip(),
                    new_src,
                    new_dst,
                ) {
                    translated += 1;
                    let (icmp_len, inner_l4) = quote_at.unwrap();
                    let outer = Ipv4Packet::new_checked(&p[..]).unwrap();
                    assert!(outer.verify_checksum());
                    let icmp = Icmpv4Packet::new_checked(outer.payload()).unwrap();
                    assert!(icmp.verify_checksum());
                    let inner =
                        Ipv4Packet::new_unchecked(&p[l4_offset + QUOTE..l4_offset + inner_l4]);
                    assert!(inner.verify_checksum());
                    assert_eq!(outer.payload().len(), icmp_len);
                    let flow = quoted_flow(outer.payload()).unwrap();
                    assert_eq!(flow, flow_of(flow_before.unwrap().proto, new_src, new_dst));
                } else {
                    assert_eq!(p, before);
                }
            }
        }
        assert!(
            translated > 5000,
            "only {translated} corrupted errors translated"
        );
    }
}
