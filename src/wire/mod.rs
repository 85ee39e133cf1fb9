//! Packet formats: typed, zero-copy views over byte buffers.
//!
//! This module owns the on-the-wire layout of every header sluice reads or
//! rewrites (Ethernet, ARP, IPv4, TCP, UDP, ICMPv4), the PROXY protocol
//! header it may write ahead of a client's stream, and the Internet
//! checksum. It does no I/O and allocates nothing; the rest of the crate
//! works on byte slices through these views.
//!
//! Every view follows the same pattern (after smoltcp's `wire`):
//! `new_checked(buffer)` validates the lengths once, so that no getter,
//! `payload()` or fill/verify call can panic afterwards, and untrusted input
//! always goes through it. `new_unchecked` is for buffers the caller built
//! itself. Setters never re-validate: writing a length field that points
//! past the buffer (e.g. `Ipv4Packet::set_total_len`) makes later
//! `payload()` calls panic, so only trusted code should change lengths.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod proxy;
pub mod tcp;
pub mod tcp_options;
pub mod udp;

use core::fmt;

pub use self::arp::{ArpPacket, ArpRepr};
pub use self::ethernet::{EthernetAddress, EthernetFrame, ParseEthernetAddressError};
pub use self::icmpv4::Icmpv4Packet;
pub use self::ipv4::{Ipv4Packet, Ipv4Repr};
pub use self::tcp::TcpPacket;
pub use self::udp::UdpPacket;

/// Why a buffer was refused by a `new_checked` constructor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer is shorter than the header (or than a length field says).
    Truncated,
    /// A field has a value this format does not allow.
    Malformed,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated packet"),
            WireError::Malformed => f.write_str("malformed packet"),
        }
    }
}

impl std::error::Error for WireError {}

pub type Result<T> = core::result::Result<T, WireError>;

/// A fixed-size header field, as a byte range.
type Field = core::ops::Range<usize>;
/// Everything from an offset to the end of the buffer.
type Rest = core::ops::RangeFrom<usize>;

// Big-endian loads and stores on slices whose length the caller has already
// fixed by slicing with a `Field`; after inlining the indexing checks fold
// away and these are plain (byte-swapped) loads and stores.

#[inline(always)]
fn read_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

#[inline(always)]
fn read_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[inline(always)]
fn write_u16(b: &mut [u8], value: u16) {
    b[..2].copy_from_slice(&value.to_be_bytes());
}

#[inline(always)]
fn write_u32(b: &mut [u8], value: u32) {
    b[..4].copy_from_slice(&value.to_be_bytes());
}

#[inline(always)]
fn read_ipv4(b: &[u8]) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(read_u32(b))
}

#[inline(always)]
fn write_ipv4(b: &mut [u8], addr: std::net::Ipv4Addr) {
    b[..4].copy_from_slice(&addr.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame around `packet`, with `padding` bytes of trailing
    /// garbage as a NIC may hand it over.
    fn frame(ethertype: u16, packet: &[u8], padding: usize) -> Vec<u8> {
        let mut f = vec![
            0x00, 0x16, 0x3e, 0x7a, 0x1b, 0x2c, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
        ];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(packet);
        f.resize(f.len() + padding, 0xee);
        f
    }

    #[test]
    fn error_display() {
        assert_eq!(WireError::Truncated.to_string(), "truncated packet");
        assert_eq!(WireError::Malformed.to_string(), "malformed packet");
    }

    /// Walks a frame the way the dataplane does, calling every accessor of
    /// every view `new_checked` accepted (transports are tried whatever the
    /// protocol field says). Must never panic. Returns how deep it got:
    /// 1 Ethernet, 2 ARP or IPv4, 3 the transport the protocol field names,
    /// 4 the datagram quoted in an ICMP error.
    fn walk(bytes: &[u8]) -> usize {
        use std::hint::black_box as touch;
        let Ok(eth) = EthernetFrame::new_checked(bytes) else {
            return 0;
        };
        touch((eth.dst_addr(), eth.src_addr(), eth.ethertype()));
        if let Ok(arp) = ArpPacket::new_checked(eth.payload()) {
            touch(ArpRepr::parse(&arp));
            return 2;
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            return 1;
        };
        touch((ip.version(), ip.header_len(), ip.dscp_ecn(), ip.total_len()));
        touch((
            ip.ident(),
            ip.dont_frag(),
            ip.more_frags(),
            ip.frag_offset(),
        ));
        touch((ip.ttl(), ip.protocol(), ip.checksum(), ip.is_fragment()));
        touch((ip.options(), ip.verify_checksum(), Ipv4Repr::parse(&ip)));
        let (src, dst, payload) = (ip.src_addr(), ip.dst_addr(), ip.payload());
        let mut depth = 2;
        if let Ok(tcp) = TcpPacket::new_checked(payload) {
            touch((tcp.src_port(), tcp.dst_port(), tcp.seq_number()));
            touch((tcp.ack_number(), tcp.header_len(), tcp.flags()));
            touch((tcp.fin(), tcp.syn(), tcp.rst(), tcp.psh(), tcp.ack()));
            touch((tcp.urg(), tcp.ece(), tcp.cwr(), tcp.window_len()));
            touch((tcp.checksum(), tcp.urgent_at(), tcp.options()));
            touch((tcp.payload(), tcp.verify_checksum(src, dst)));
            depth += usize::from(ip.protocol() == ipv4::protocol::TCP);
        }
        if let Ok(udp) = UdpPacket::new_checked(payload) {
            touch((udp.src_port(), udp.dst_port(), udp.len(), udp.checksum()));
            touch((udp.payload(), udp.verify_checksum(src, dst)));
            depth += usize::from(ip.protocol() == ipv4::protocol::UDP);
        }
        if let Ok(icmp) = Icmpv4Packet::new_checked(payload) {
            touch((icmp.msg_type(), icmp.msg_code(), icmp.checksum()));
            touch((icmp.echo_ident(), icmp.echo_seq_no(), icmp.next_hop_mtu()));
            touch((icmp.rest_of_header(), icmp.data(), icmp.verify_checksum()));
            if ip.protocol() == ipv4::protocol::ICMP {
                depth += 1;
                if let Ok(quoted) = Ipv4Packet::new_checked_quoted(icmp.data()) {
                    touch((quoted.src_addr(), quoted.payload(), quoted.protocol()));
                    depth += 1;
                }
            }
        }
        depth
    }

    #[test]
    fn no_accessor_panics_on_any_prefix() {
        use ethernet::ethertype::{ARP, IPV4};
        let frames = [
            ethernet::tests::FRAME.to_vec(),
            frame(ARP, &arp::tests::REPLY, 18),
            frame(IPV4, &icmpv4::tests::ECHO_PACKET, 4),
            frame(IPV4, &icmpv4::tests::UNREACHABLE_PACKET, 0),
            frame(IPV4, &tcp::tests::SYN_PACKET, 0),
            frame(IPV4, &udp::tests::DNS_PACKET, 3),
        ];
        for (frame, depth) in frames.iter().zip([2, 2, 3, 4, 3, 3]) {
            for len in 0..=frame.len() {
                walk(&frame[..len]);
            }
            // The whole frame gets through every layer it carries.
            assert_eq!(walk(frame), depth);
        }
        // And arbitrary bytes at every length never panic either.
        let mut junk = [0u8; 80];
        let mut deepest = 0usize;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..2000 {
            for b in junk.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Make a good share of them look like IPv4 so the deeper layers run.
            junk[12] = 0x08;
            junk[13] = if round % 4 == 0 { 0x06 } else { 0x00 };
            junk[14] = 0x40 | (junk[14] & 0x0f);
            junk[16] = 0;
            junk[17] &= 0x3f; // total length within the buffer, often
            junk[23] = [1, 6, 17][round % 3];
            for len in 0..=junk.len() {
                deepest += usize::from(walk(&junk[..len]) >= 3);
            }
        }
        // Enough of them get through Ethernet, IPv4 and a transport header.
        assert!(
            deepest > 1000,
            "only {deepest} random frames reached layer 4"
        );
    }
}
