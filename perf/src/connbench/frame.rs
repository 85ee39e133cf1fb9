//! The frames connbench sends and reads: TCP segments over IPv4 over
//! Ethernet, and ARP. Byte slices only (no DPDK), through `sluice::wire`.

use sluice::wire::arp::{operation, ArpPacket, ArpRepr};
use sluice::wire::ethernet::ethertype;
use sluice::wire::ipv4::protocol;
use sluice::wire::{EthernetAddress, EthernetFrame, Ipv4Packet, Ipv4Repr, TcpPacket};
use std::net::{Ipv4Addr, SocketAddrV4};

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const TCP_LEN: usize = 20;
/// Ethernet + IPv4 + TCP headers, no options.
pub const TCP_FRAME_HEADERS: usize = ETH_LEN + IPV4_LEN + TCP_LEN;
/// Ethernet + ARP.
pub const ARP_FRAME_LEN: usize = ETH_LEN + 28;
const TTL: u8 = 64;
const WINDOW: u16 = 65535;

/// One TCP segment to write: addresses, numbers, flags, payload.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub src_mac: EthernetAddress,
    pub dst_mac: EthernetAddress,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    /// `sluice::wire::tcp::flags` bits.
    pub flags: u8,
    pub payload: &'a [u8],
}

impl Segment<'_> {
    pub fn frame_len(&self) -> usize {
        TCP_FRAME_HEADERS + self.payload.len()
    }

    /// Writes the whole frame, IPv4 and TCP checksums included, into the
    /// first `frame_len()` bytes of `buf` (which must be that long).
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.frame_len();
        let buf = &mut buf[..len];
        let mut eth = EthernetFrame::new_unchecked(&mut *buf);
        eth.set_dst_addr(self.dst_mac);
        eth.set_src_addr(self.src_mac);
        eth.set_ethertype(ethertype::IPV4);
        let repr = Ipv4Repr {
            src_addr: *self.src.ip(),
            dst_addr: *self.dst.ip(),
            protocol: protocol::TCP,
            payload_len: TCP_LEN + self.payload.len(),
            ttl: TTL,
        };
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[ETH_LEN..]));
        let seg = &mut buf[ETH_LEN + IPV4_LEN..];
        seg[TCP_LEN..].copy_from_slice(self.payload);
        let mut tcp = TcpPacket::new_unchecked(seg);
        tcp.set_src_port(self.src.port());
        tcp.set_dst_port(self.dst.port());
        tcp.set_seq_number(self.seq);
        tcp.set_ack_number(self.ack);
        tcp.set_header_len(TCP_LEN);
        tcp.set_flags(self.flags);
        tcp.set_window_len(WINDOW);
        tcp.set_urgent_at(0);
        tcp.fill_checksum(*self.src.ip(), *self.dst.ip());
    }
}

/// What connbench reads from a received TCP segment. The payload is given
/// as an offset and length into the frame so the frame can be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    pub src_mac: EthernetAddress,
    pub dst_mac: EthernetAddress,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload_start: usize,
    pub payload_len: usize,
}

/// A received frame, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Tcp(TcpInfo),
    Arp(ArpRepr),
    /// IPv4 TCP whose IPv4 or TCP checksum is wrong (what sluice's
    /// incremental updates must never produce).
    BadChecksum,
    /// Anything else (other ethertypes, other protocols, malformed).
    Other,
}

/// Parses and validates a frame: lengths through `new_checked`, both
/// checksums verified.
pub fn parse(frame: &[u8]) -> Received {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Received::Other;
    };
    match eth.ethertype() {
        ethertype::ARP => match ArpPacket::new_checked(eth.payload()) {
            Ok(arp) => Received::Arp(ArpRepr::parse(&arp)),
            Err(_) => Received::Other,
        },
        ethertype::IPV4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return Received::Other;
            };
            if ip.protocol() != protocol::TCP || ip.is_fragment() {
                return Received::Other;
            }
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
                return Received::Other;
            };
            if !ip.verify_checksum() || !tcp.verify_checksum(src, dst) {
                return Received::BadChecksum;
            }
            let payload_start = ETH_LEN + ip.header_len() + tcp.header_len();
            Received::Tcp(TcpInfo {
                src_mac: eth.src_addr(),
                dst_mac: eth.dst_addr(),
                src: SocketAddrV4::new(src, tcp.src_port()),
                dst: SocketAddrV4::new(dst, tcp.dst_port()),
                seq: tcp.seq_number(),
                ack: tcp.ack_number(),
                flags: tcp.flags(),
                payload_start,
                payload_len: tcp.payload().len(),
            })
        }
        _ => Received::Other,
    }
}

/// Writes an ARP frame (`ARP_FRAME_LEN` bytes) carrying `repr` to `dst_mac`.
pub fn emit_arp(buf: &mut [u8], dst_mac: EthernetAddress, repr: &ArpRepr) {
    let buf = &mut buf[..ARP_FRAME_LEN];
    let mut eth = EthernetFrame::new_unchecked(&mut *buf);
    eth.set_dst_addr(dst_mac);
    eth.set_src_addr(repr.sender_hw);
    eth.set_ethertype(ethertype::ARP);
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[ETH_LEN..]));
}

/// The reply to ARP request `req` for an address we own, from `our_mac`.
pub fn arp_reply(req: &ArpRepr, our_mac: EthernetAddress) -> ArpRepr {
    ArpRepr {
        operation: operation::REPLY,
        sender_hw: our_mac,
        sender_ip: req.target_ip,
        target_hw: req.sender_hw,
        target_ip: req.sender_ip,
    }
}

/// "Who has `target`? Tell `sender`".
pub fn arp_request(our_mac: EthernetAddress, sender: Ipv4Addr, target: Ipv4Addr) -> ArpRepr {
    ArpRepr {
        operation: operation::REQUEST,
        sender_hw: our_mac,
        sender_ip: sender,
        target_hw: EthernetAddress([0; 6]),
        target_ip: target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::wire::tcp::flags;

    const A: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const B: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    #[test]
    fn emitted_segment_parses_back_with_valid_checksums() {
        let seg = Segment {
            src_mac: A,
            dst_mac: B,
            src: "10.10.0.2:1024".parse().unwrap(),
            dst: "10.10.0.100:80".parse().unwrap(),
            seq: 0xdead_beef,
            ack: 7,
            flags: flags::PSH | flags::ACK,
            payload: b"GET / HTTP/1.0\r\n\r\n",
        };
        let mut buf = vec![0u8; 128];
        seg.emit(&mut buf);
        let frame = &buf[..seg.frame_len()];
        let Received::Tcp(t) = parse(frame) else {
            panic!("not parsed as TCP: {:?}", parse(frame));
        };
        assert_eq!((t.src_mac, t.dst_mac), (A, B));
        assert_eq!((t.src, t.dst), (seg.src, seg.dst));
        assert_eq!((t.seq, t.ack, t.flags), (seg.seq, seg.ack, seg.flags));
        assert_eq!(
            &frame[t.payload_start..t.payload_start + t.payload_len],
            seg.payload
        );
        // One flipped bit anywhere in IP/TCP is caught.
        let mut bad = frame.to_vec();
        bad[ETH_LEN + IPV4_LEN + 5] ^= 0x10;
        assert_eq!(parse(&bad), Received::BadChecksum);
    }

    #[test]
    fn arp_request_and_reply() {
        let req = arp_request(
            A,
            "10.10.0.2".parse().unwrap(),
            "10.10.0.100".parse().unwrap(),
        );
        let mut buf = [0u8; ARP_FRAME_LEN];
        emit_arp(&mut buf, EthernetAddress::BROADCAST, &req);
        assert_eq!(parse(&buf), Received::Arp(req));
        let rep = arp_reply(&req, B);
        assert_eq!(rep.sender_ip, req.target_ip);
        assert_eq!(rep.target_hw, A);
        assert_eq!(rep.operation, operation::REPLY);
    }
}
