//! Address translation of one IPv4 packet, in place: new source and
//! destination (address and port) with every checksum kept right by RFC 1624
//! incremental updates, so the cost does not depend on the payload size.
//!
//! NAT and FULLNAT share this: NAT changes one side, FULLNAT both; unchanged
//! fields cost nothing but a compare.

use crate::lb::Proto;
use crate::wire::checksum::{self, Delta};
use crate::wire::{Ipv4Packet, TcpPacket, UdpPacket};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Decrements the TTL of the IPv4 packet in `packet` (header checksum
/// updated). Returns false, leaving the packet unchanged, when the TTL would
/// reach zero: the packet must not be forwarded.
#[inline]
pub fn decrement_ttl(packet: &mut [u8]) -> bool {
    let mut ip = Ipv4Packet::new_unchecked(fixed::<IPV4_HEADER>(packet));
    if ip.ttl() <= 1 {
        return false;
    }
    ip.decrement_ttl();
    true
}

/// Rewrites the IPv4 `packet` (header validated, `l4_offset` = its header
/// length, TCP or UDP header validated) to `src` -> `dst`.
#[inline]
pub fn translate(
    packet: &mut [u8],
    l4_offset: usize,
    proto: Proto,
    src: SocketAddrV4,
    dst: SocketAddrV4,
) {
    rewrite(packet, l4_offset, proto, src, dst, false);
}

/// What forwarding a translated packet does to it: `decrement_ttl` and
/// `translate` in one pass, each checksum field updated once for all its
/// changes. Returns false, leaving the packet unchanged, when the TTL would
/// reach zero.
#[inline]
pub fn forward(
    packet: &mut [u8],
    l4_offset: usize,
    proto: Proto,
    src: SocketAddrV4,
    dst: SocketAddrV4,
) -> bool {
    rewrite(packet, l4_offset, proto, src, dst, true)
}

/// The fixed part of a header at the start of `bytes`, as an array: one
/// length check, after which every field access through it is at an offset
/// the compiler sees is in bounds. Through slices, the accessors' own
/// bounds checks cost the fast path 12.5 instructions a packet of 684
/// (callgrind, pipebench FULLNAT 1K). The callers validated the headers: a
/// failed check here is a bug, not a bad packet.
#[inline(always)]
fn fixed<const N: usize>(bytes: &mut [u8]) -> &mut [u8; N] {
    match bytes.first_chunk_mut::<N>() {
        Some(header) => header,
        None => unreachable!("a header the caller validated is {N} bytes at least"),
    }
}

const IPV4_HEADER: usize = Ipv4Packet::<&[u8]>::HEADER_LEN;
const TCP_HEADER: usize = TcpPacket::<&[u8]>::HEADER_LEN;
const UDP_HEADER: usize = UdpPacket::<&[u8]>::HEADER_LEN;

/// `translate`, and with `decrement_ttl` `forward`: false, the packet
/// unchanged, when the TTL would reach zero.
#[inline(always)]
fn rewrite(
    packet: &mut [u8],
    l4_offset: usize,
    proto: Proto,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    decrement_ttl: bool,
) -> bool {
    let (head, l4) = packet.split_at_mut(l4_offset);
    let mut ip = Ipv4Packet::new_unchecked(fixed::<IPV4_HEADER>(head));
    if decrement_ttl && ip.ttl() <= 1 {
        return false;
    }
    let (old_src, old_dst) = (ip.src_addr(), ip.dst_addr());
    // The pseudo-header's share of the TCP/UDP checksum is the addresses'.
    let addrs = Delta::default()
        .addr(old_src, *src.ip())
        .addr(old_dst, *dst.ip());
    let mut header = addrs;
    if decrement_ttl {
        // The TTL shares its checksum word with the protocol.
        let old = u16::from_be_bytes([ip.ttl(), ip.protocol()]);
        ip.set_ttl(ip.ttl() - 1);
        header = header.word(old, old - 0x100);
    }
    ip.set_src_addr(*src.ip());
    ip.set_dst_addr(*dst.ip());
    ip.set_checksum(header.apply(ip.checksum()));

    match proto {
        Proto::Tcp => {
            let mut tcp = TcpPacket::new_unchecked(fixed::<TCP_HEADER>(l4));
            let ports = addrs
                .word(tcp.src_port(), src.port())
                .word(tcp.dst_port(), dst.port());
            tcp.set_src_port(src.port());
            tcp.set_dst_port(dst.port());
            tcp.set_checksum(ports.apply(tcp.checksum()));
        }
        Proto::Udp => {
            let mut udp = UdpPacket::new_unchecked(fixed::<UDP_HEADER>(l4));
            let ports = addrs
                .word(udp.src_port(), src.port())
                .word(udp.dst_port(), dst.port());
            udp.set_src_port(src.port());
            udp.set_dst_port(dst.port());
            // A zero UDP checksum means "none" and stays none.
            if udp.checksum() != 0 {
                let sum = ports.apply(udp.checksum());
                udp.set_checksum(if sum == 0 { 0xffff } else { sum });
            }
        }
    }
    true
}

/// `forward` for a port whose NIC computes the checksums (the IPv4 one is
/// zeroed, so the TTL costs no update).
#[inline]
pub fn forward_for_offload(
    packet: &mut [u8],
    l4_offset: usize,
    proto: Proto,
    src: SocketAddrV4,
    dst: SocketAddrV4,
) -> bool {
    let mut ip = Ipv4Packet::new_unchecked(fixed::<IPV4_HEADER>(packet));
    let ttl = ip.ttl();
    if ttl <= 1 {
        return false;
    }
    ip.set_ttl(ttl - 1);
    translate_for_offload(packet, l4_offset, proto, src, dst);
    true
}

/// Rewrites like `translate`, for a port whose NIC computes checksums on
/// transmit: the IPv4 checksum is zeroed and the TCP/UDP checksum field gets
/// the pseudo-header sum of the new addresses, as DPDK's tx offload expects.
#[inline]
pub fn translate_for_offload(
    packet: &mut [u8],
    l4_offset: usize,
    proto: Proto,
    src: SocketAddrV4,
    dst: SocketAddrV4,
) {
    let (head, l4) = packet.split_at_mut(l4_offset);
    let mut ip = Ipv4Packet::new_unchecked(fixed::<IPV4_HEADER>(head));
    ip.set_src_addr(*src.ip());
    ip.set_dst_addr(*dst.ip());
    ip.set_checksum(0);
    let l4_len = (ip.total_len() as usize - l4_offset) as u16;
    let pseudo = checksum::pseudo_header(*src.ip(), *dst.ip(), proto as u8, l4_len);
    match proto {
        Proto::Tcp => {
            let mut tcp = TcpPacket::new_unchecked(fixed::<TCP_HEADER>(l4));
            tcp.set_src_port(src.port());
            tcp.set_dst_port(dst.port());
            tcp.set_checksum(pseudo);
        }
        Proto::Udp => {
            let mut udp = UdpPacket::new_unchecked(fixed::<UDP_HEADER>(l4));
            udp.set_src_port(src.port());
            udp.set_dst_port(dst.port());
            udp.set_checksum(pseudo);
        }
    }
}

/// Completes a TCP/UDP checksum the local kernel left partial, in the IPv4
/// `packet` (header validated, `l4_offset` its length, L4 header validated).
/// Returns whether it was partial.
///
/// A kernel that hands a segment to a device with tx checksum offload (veth,
/// tap) stores only the folded pseudo-header sum in the field
/// (CHECKSUM_PARTIAL) for the NIC to finish; a virtual port delivers it to
/// us that way. Incremental updates would keep such a field partial, and
/// every receiver would drop the packet. The test costs a few additions; a
/// field that merely equals the pseudo-header sum (1 in 65536 complete
/// checksums) costs one pass over the segment, which finds it complete.
#[inline]
pub fn complete_partial_checksum(packet: &mut [u8], l4_offset: usize, proto: Proto) -> bool {
    let ip = Ipv4Packet::new_unchecked(&*packet);
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let l4_end = ip.total_len() as usize;
    let (field_at, l4_len) = match proto {
        Proto::Tcp => (l4_offset + 16, l4_end - l4_offset),
        Proto::Udp => {
            let udp = UdpPacket::new_unchecked(&packet[l4_offset..l4_end]);
            // 0 is "no checksum", never a partial one.
            if udp.checksum() == 0 {
                return false;
            }
            (l4_offset + 6, usize::from(udp.len()))
        }
    };
    let field = u16::from_be_bytes([packet[field_at], packet[field_at + 1]]);
    let pseudo = checksum::pseudo_header(src, dst, proto as u8, l4_len as u16);
    if field != pseudo {
        return false;
    }
    let segment = &packet[l4_offset..l4_offset + l4_len];
    let with_field = checksum::combine(&[pseudo, checksum::data(segment)]);
    if with_field == 0xffff {
        // Verifies as it is: a complete checksum that equals the sum.
        return false;
    }
    // The sum without the field is the sum with it, minus it.
    let sum = checksum::combine(&[with_field, !field]);
    let complete = match !sum {
        0 if proto == Proto::Udp => 0xffff,
        c => c,
    };
    packet[field_at..field_at + 2].copy_from_slice(&complete.to_be_bytes());
    true
}

/// The TCP/UDP checksum after the pseudo-header addresses and the ports
/// change from `old_*` to `new_*`.
#[inline]
pub(crate) fn l4_sum(
    mut sum: u16,
    old_src: (Ipv4Addr, u16),
    old_dst: (Ipv4Addr, u16),
    src: SocketAddrV4,
    dst: SocketAddrV4,
) -> u16 {
    if old_src.0 != *src.ip() {
        sum = checksum::update_addr(sum, old_src.0, *src.ip());
    }
    if old_dst.0 != *dst.ip() {
        sum = checksum::update_addr(sum, old_dst.0, *dst.ip());
    }
    if old_src.1 != src.port() {
        sum = checksum::update_u16(sum, old_src.1, src.port());
    }
    if old_dst.1 != dst.port() {
        sum = checksum::update_u16(sum, old_dst.1, dst.port());
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP SYN 10.10.0.2:40000 -> 10.10.0.100:80 with correct checksums.
    fn syn() -> Vec<u8> {
        let mut p = vec![0u8; 40];
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_total_len(40);
            ip.set_ttl(64);
            ip.set_protocol(6);
            ip.set_src_addr(Ipv4Addr::new(10, 10, 0, 2));
            ip.set_dst_addr(Ipv4Addr::new(10, 10, 0, 100));
            ip.fill_checksum();
        }
        {
            let mut tcp = TcpPacket::new_unchecked(&mut p[20..]);
            tcp.set_src_port(40000);
            tcp.set_dst_port(80);
            tcp.set_seq_number(12345);
            tcp.set_header_len(20);
            tcp.set_syn(true);
            tcp.set_window_len(64240);
            tcp.fill_checksum(Ipv4Addr::new(10, 10, 0, 2), Ipv4Addr::new(10, 10, 0, 100));
        }
        p
    }

    fn assert_valid(p: &[u8]) {
        let ip = Ipv4Packet::new_checked(p).unwrap();
        assert!(ip.verify_checksum());
        let tcp = TcpPacket::new_checked(&p[20..]).unwrap();
        assert!(tcp.verify_checksum(ip.src_addr(), ip.dst_addr()));
    }

    #[test]
    fn dnat_rewrites_destination_and_keeps_checksums_valid() {
        let mut p = syn();
        let client = SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 2), 40000);
        let real = SocketAddrV4::new(Ipv4Addr::new(192, 168, 10, 2), 8080);
        assert!(decrement_ttl(&mut p));
        translate(&mut p, 20, Proto::Tcp, client, real);
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.dst_addr(), *real.ip());
        assert_eq!(ip.src_addr(), *client.ip());
        assert_eq!(ip.ttl(), 63);
        assert_eq!(TcpPacket::new_checked(&p[20..]).unwrap().dst_port(), 8080);
        assert_valid(&p);
    }

    #[test]
    fn forward_is_ttl_and_translation_in_one_pass() {
        let local = SocketAddrV4::new(Ipv4Addr::new(192, 168, 20, 1), 5001);
        let real = SocketAddrV4::new(Ipv4Addr::new(192, 168, 30, 2), 80);
        for ttl in [2u8, 64, 255] {
            let mut two_steps = syn();
            {
                let mut ip = Ipv4Packet::new_unchecked(&mut two_steps[..]);
                ip.set_ttl(ttl);
                ip.fill_checksum();
            }
            let mut one = two_steps.clone();
            assert!(decrement_ttl(&mut two_steps));
            translate(&mut two_steps, 20, Proto::Tcp, local, real);
            assert!(forward(&mut one, 20, Proto::Tcp, local, real));
            assert_eq!(one, two_steps, "ttl {ttl}");
            assert_valid(&one);
            assert_eq!(Ipv4Packet::new_unchecked(&one[..]).ttl(), ttl - 1);
        }
        let mut last_hop = syn();
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut last_hop[..]);
            ip.set_ttl(1);
            ip.fill_checksum();
        }
        let before = last_hop.clone();
        assert!(!forward(&mut last_hop, 20, Proto::Tcp, local, real));
        assert!(!forward_for_offload(
            &mut last_hop,
            20,
            Proto::Tcp,
            local,
            real
        ));
        assert_eq!(
            last_hop, before,
            "a packet that may not be forwarded is left alone"
        );
    }

    #[test]
    fn fullnat_rewrites_both_sides_and_back() {
        let orig = syn();
        let mut p = orig.clone();
        let local = SocketAddrV4::new(Ipv4Addr::new(192, 168, 20, 1), 5001);
        let real = SocketAddrV4::new(Ipv4Addr::new(192, 168, 30, 2), 80);
        translate(&mut p, 20, Proto::Tcp, local, real);
        assert_valid(&p);
        translate(
            &mut p,
            20,
            Proto::Tcp,
            SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 2), 40000),
            SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 100), 80),
        );
        assert_eq!(p, orig, "translating back restores every byte");
    }

    #[test]
    fn offload_leaves_what_the_nic_completes() {
        let mut p = syn();
        let client = SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 2), 40000);
        let real = SocketAddrV4::new(Ipv4Addr::new(192, 168, 10, 2), 8080);
        translate_for_offload(&mut p, 20, Proto::Tcp, client, real);
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.checksum(), 0, "the NIC fills the IPv4 checksum");
        assert_eq!(ip.dst_addr(), *real.ip());
        let tcp = TcpPacket::new_checked(&p[20..]).unwrap();
        assert_eq!(tcp.dst_port(), 8080);
        assert_eq!(
            tcp.checksum(),
            checksum::pseudo_header(*client.ip(), *real.ip(), 6, 20),
            "the pseudo-header sum, not inverted"
        );
        // What the NIC then does gives exactly the software result.
        let mut hw = p.clone();
        Ipv4Packet::new_unchecked(&mut hw[..]).fill_checksum();
        TcpPacket::new_unchecked(&mut hw[20..]).fill_checksum(*client.ip(), *real.ip());
        let mut sw = syn();
        translate(&mut sw, 20, Proto::Tcp, client, real);
        assert_eq!(hw, sw);
    }

    #[test]
    fn a_partial_checksum_is_completed_and_a_complete_one_left_alone() {
        let complete = syn();
        let mut partial = complete.clone();
        let pseudo = checksum::pseudo_header(
            Ipv4Addr::new(10, 10, 0, 2),
            Ipv4Addr::new(10, 10, 0, 100),
            6,
            20,
        );
        TcpPacket::new_unchecked(&mut partial[20..]).set_checksum(pseudo);
        assert!(complete_partial_checksum(&mut partial, 20, Proto::Tcp));
        assert_eq!(partial, complete);
        let mut again = complete.clone();
        assert!(!complete_partial_checksum(&mut again, 20, Proto::Tcp));
        assert_eq!(again, complete);
    }

    #[test]
    fn a_complete_checksum_equal_to_the_pseudo_sum_is_not_partial() {
        // Find a sequence number whose complete checksum happens to equal
        // the pseudo-header sum: the 1-in-65536 case.
        let pseudo = checksum::pseudo_header(
            Ipv4Addr::new(10, 10, 0, 2),
            Ipv4Addr::new(10, 10, 0, 100),
            6,
            20,
        );
        let mut p = syn();
        let found = (0..=u32::from(u16::MAX)).any(|seq| {
            let mut tcp = TcpPacket::new_unchecked(&mut p[20..]);
            tcp.set_seq_number(seq << 16);
            tcp.fill_checksum(Ipv4Addr::new(10, 10, 0, 2), Ipv4Addr::new(10, 10, 0, 100));
            tcp.checksum() == pseudo
        });
        assert!(found);
        let before = p.clone();
        assert!(!complete_partial_checksum(&mut p, 20, Proto::Tcp));
        assert_eq!(p, before);
        assert_valid(&p);
    }

    #[test]
    fn ttl_of_one_is_not_forwarded() {
        let mut p = syn();
        Ipv4Packet::new_unchecked(&mut p[..]).set_ttl(1);
        let before = p.clone();
        assert!(!decrement_ttl(&mut p));
        assert_eq!(p, before);
    }

    #[test]
    fn udp_zero_checksum_stays_zero_and_real_checksum_stays_valid() {
        let mut p = vec![0u8; 28 + 4];
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_total_len(32);
            ip.set_ttl(64);
            ip.set_protocol(17);
            ip.set_src_addr(Ipv4Addr::new(10, 10, 0, 2));
            ip.set_dst_addr(Ipv4Addr::new(10, 10, 0, 100));
            ip.fill_checksum();
            let mut udp = UdpPacket::new_unchecked(&mut p[20..]);
            udp.set_src_port(5000);
            udp.set_dst_port(53);
            udp.set_len(12);
        }
        p[28..].copy_from_slice(b"ping");
        let real = SocketAddrV4::new(Ipv4Addr::new(192, 168, 10, 3), 5353);
        let client = SocketAddrV4::new(Ipv4Addr::new(10, 10, 0, 2), 5000);
        let mut q = p.clone();
        translate(&mut q, 20, Proto::Udp, client, real);
        assert_eq!(UdpPacket::new_checked(&q[20..]).unwrap().checksum(), 0);

        UdpPacket::new_unchecked(&mut p[20..])
            .fill_checksum(Ipv4Addr::new(10, 10, 0, 2), Ipv4Addr::new(10, 10, 0, 100));
        translate(&mut p, 20, Proto::Udp, client, real);
        let udp = UdpPacket::new_checked(&p[20..]).unwrap();
        assert!(udp.verify_checksum(*client.ip(), *real.ip()));
        assert_eq!(udp.dst_port(), 5353);
    }
}
