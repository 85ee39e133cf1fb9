//! ICMPv4 messages (RFC 792): echo, and the errors a load balancer must
//! translate (destination unreachable, time exceeded) along with the
//! original header they carry.

use super::{checksum, read_u16, read_u32, write_u16, write_u32, Field, Rest, Result, WireError};

/// Message types sluice handles.
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
}

/// Codes of [`msg_type::DST_UNREACHABLE`].
pub mod dst_unreachable_code {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set: `next_hop_mtu()` says the MTU.
    pub const FRAG_NEEDED: u8 = 4;
}

/// Codes of [`msg_type::TIME_EXCEEDED`].
pub mod time_exceeded_code {
    pub const TTL_EXPIRED: u8 = 0;
    pub const REASSEMBLY: u8 = 1;
}

mod field {
    use super::{Field, Rest};

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    /// The second word, whose meaning depends on the type.
    pub const REST_OF_HEADER: Field = 4..8;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ_NO: Field = 6..8;
    pub const NEXT_HOP_MTU: Field = 6..8;
    pub const DATA: Rest = 8..;
}

/// A view of an ICMPv4 message. The buffer is exactly the IP payload: the
/// checksum covers all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub const HEADER_LEN: usize = field::DATA.start;

    /// Wraps a buffer without checking it; accessors may panic if it is short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps a buffer after checking it holds the 8-byte header. The data
    /// of an error message is not checked here: parse it with
    /// `Ipv4Packet::new_checked_quoted`, and expect only the first 8 bytes
    /// of its transport header (the ports, the TCP sequence number).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if shorter than 8 bytes.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// See [`msg_type`].
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// Echo request/reply identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_IDENT])
    }

    /// Echo request/reply sequence number.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ECHO_SEQ_NO])
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::NEXT_HOP_MTU])
    }

    /// The whole second word (unused, and zero, in most error messages).
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::REST_OF_HEADER])
    }

    /// The bytes after the 8-byte header: the echo data, or for an error
    /// the original IP header and at least 8 bytes of its payload.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// Whether the checksum over the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], checksum);
    }

    #[inline]
    pub fn set_echo_ident(&mut self, ident: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ECHO_IDENT], ident);
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, seq_no: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ECHO_SEQ_NO], seq_no);
    }

    #[inline]
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        write_u16(&mut self.buffer.as_mut()[field::NEXT_HOP_MTU], mtu);
    }

    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        write_u32(&mut self.buffer.as_mut()[field::REST_OF_HEADER], value);
    }

    /// See [`Icmpv4Packet::data`].
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes the checksum over the whole buffer and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{ipv4, Ipv4Packet, UdpPacket};
    use std::net::Ipv4Addr;

    /// `ping -c 1 1.1.1.1` from Linux (iputils), IPv4 header included: 56
    /// bytes of data, a 16-byte timestamp then the bytes 0x10..=0x37.
    pub(crate) static ECHO_PACKET: [u8; 84] = [
        // IPv4: IHL 5, total length 84, ident 0x4c7a, DF, TTL 64, ICMP,
        // checksum 0x2a7b, 192.168.1.10 -> 1.1.1.1
        0x45, 0x00, 0x00, 0x54, 0x4c, 0x7a, 0x40, 0x00, 0x40, 0x01, 0x2a, 0x7b, //
        0xc0, 0xa8, 0x01, 0x0a, 0x01, 0x01, 0x01, 0x01, //
        // ICMP
        0x08, // type: echo request
        0x00, // code 0
        0x83, 0xc5, // checksum
        0x1f, 0x2e, // identifier
        0x00, 0x01, // sequence number 1
        // timestamp (struct timeval, little-endian): 1700000000 s, 123456 us
        0x00, 0xf1, 0x53, 0x65, 0x00, 0x00, 0x00, 0x00, //
        0x40, 0xe2, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // fill pattern
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, //
        0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, //
        0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, //
    ];

    /// 8.8.4.4 answering a DNS query to its port 53 with "port unreachable":
    /// the original IPv4 header and the first 8 bytes of its UDP datagram.
    pub(crate) static UNREACHABLE_PACKET: [u8; 56] = [
        // IPv4: IHL 5, total length 56, ident 0, no flags, TTL 118, ICMP,
        // checksum 0x7707, 8.8.4.4 -> 192.168.1.10
        0x45, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00, 0x00, 0x76, 0x01, 0x77, 0x07, //
        0x08, 0x08, 0x04, 0x04, 0xc0, 0xa8, 0x01, 0x0a, //
        // ICMP
        0x03, // type: destination unreachable
        0x03, // code: port unreachable
        0xb4, 0x8a, // checksum
        0x00, 0x00, 0x00, 0x00, // unused
        // original IPv4 header: total length 57, ident 0x5c22, TTL 64, UDP,
        // checksum 0x50d4, 192.168.1.10 -> 8.8.4.4
        0x45, 0x00, 0x00, 0x39, 0x5c, 0x22, 0x00, 0x00, 0x40, 0x11, 0x50, 0xd4, //
        0xc0, 0xa8, 0x01, 0x0a, 0x08, 0x08, 0x04, 0x04, //
        // original UDP header: 45678 -> 53, length 37, checksum 0x95a9
        0xb2, 0x6e, 0x00, 0x35, 0x00, 0x25, 0x95, 0xa9,
    ];

    /// A reference checksum: naive, byte-wise, field bytes 2..4 skipped.
    fn reference_checksum(message: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for (i, &b) in message.iter().enumerate() {
            if i != 2 && i != 3 {
                s += if i % 2 == 0 {
                    u32::from(b) << 8
                } else {
                    u32::from(b)
                };
            }
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn captured_checksums_are_right() {
        assert_eq!(reference_checksum(&ECHO_PACKET[20..]), 0x83c5);
        assert_eq!(reference_checksum(&UNREACHABLE_PACKET[20..]), 0xb48a);
        for packet in [&ECHO_PACKET[..], &UNREACHABLE_PACKET[..]] {
            assert!(Ipv4Packet::new_checked(packet).unwrap().verify_checksum());
        }
    }

    #[test]
    fn read_every_field() {
        let ip = Ipv4Packet::new_checked(&ECHO_PACKET[..]).unwrap();
        assert_eq!(ip.protocol(), ipv4::protocol::ICMP);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(icmp.msg_code(), 0);
        assert_eq!(icmp.checksum(), 0x83c5);
        assert_eq!(icmp.echo_ident(), 0x1f2e);
        assert_eq!(icmp.echo_seq_no(), 1);
        assert_eq!(icmp.rest_of_header(), 0x1f2e_0001);
        assert_eq!(icmp.data(), &ECHO_PACKET[28..]);
        assert_eq!(icmp.data().len(), 56);
        assert!(icmp.verify_checksum());

        let ip = Ipv4Packet::new_checked(&UNREACHABLE_PACKET[..]).unwrap();
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), msg_type::DST_UNREACHABLE);
        assert_eq!(icmp.msg_code(), dst_unreachable_code::PORT);
        assert_eq!(icmp.checksum(), 0xb48a);
        assert_eq!(icmp.rest_of_header(), 0);
        assert_eq!(icmp.next_hop_mtu(), 0);
        assert!(icmp.verify_checksum());
        // The embedded original datagram, as NAT must find it.
        let inner = Ipv4Packet::new_checked_quoted(icmp.data()).unwrap();
        assert_eq!(inner.src_addr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(inner.dst_addr(), Ipv4Addr::new(8, 8, 4, 4));
        assert_eq!(inner.protocol(), ipv4::protocol::UDP);
        assert!(inner.verify_checksum());
        // Only 8 bytes of the 37-byte datagram are quoted.
        assert_eq!(inner.total_len(), 57);
        assert_eq!(icmp.data().len(), 28);
    }

    #[test]
    fn quoted_datagram_is_short() {
        // The quoted datagram ends 8 bytes into its payload: the strict
        // constructor refuses it, the quoted one gives what is there.
        let icmp = Icmpv4Packet::new_checked(&UNREACHABLE_PACKET[20..]).unwrap();
        assert_eq!(
            Ipv4Packet::new_checked(icmp.data()).map(|_| ()),
            Err(WireError::Truncated)
        );
        let inner = Ipv4Packet::new_checked_quoted(icmp.data()).unwrap();
        assert_eq!(inner.payload().len(), 8);
        // Only the first 8 bytes of the transport header are there: enough
        // for the ports, read through an unchecked view after a length check.
        assert!(inner.payload().len() >= 8);
        let udp = UdpPacket::new_unchecked(inner.payload());
        assert_eq!((udp.src_port(), udp.dst_port()), (45678, 53));
        assert_eq!(
            UdpPacket::new_checked(inner.payload()),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn build_from_scratch() {
        let mut bytes = [0xa5u8; 64];
        let mut icmp = Icmpv4Packet::new_unchecked(&mut bytes[..]);
        icmp.set_msg_type(msg_type::ECHO_REQUEST);
        icmp.set_msg_code(0);
        icmp.set_echo_ident(0x1f2e);
        icmp.set_echo_seq_no(1);
        icmp.data_mut().copy_from_slice(&ECHO_PACKET[28..]);
        icmp.fill_checksum();
        assert_eq!(&bytes[..], &ECHO_PACKET[20..]);

        let mut bytes = [0xa5u8; 36];
        let mut icmp = Icmpv4Packet::new_unchecked(&mut bytes[..]);
        icmp.set_msg_type(msg_type::DST_UNREACHABLE);
        icmp.set_msg_code(dst_unreachable_code::PORT);
        icmp.set_rest_of_header(0);
        icmp.data_mut().copy_from_slice(&UNREACHABLE_PACKET[28..]);
        icmp.fill_checksum();
        assert_eq!(&bytes[..], &UNREACHABLE_PACKET[20..]);

        let mut bytes = [0u8; 8];
        let mut icmp = Icmpv4Packet::new_unchecked(&mut bytes[..]);
        icmp.set_msg_type(msg_type::DST_UNREACHABLE);
        icmp.set_msg_code(dst_unreachable_code::FRAG_NEEDED);
        icmp.set_next_hop_mtu(1500);
        assert_eq!(icmp.next_hop_mtu(), 1500);
        assert_eq!(icmp.rest_of_header(), 1500);
        assert_eq!(time_exceeded_code::TTL_EXPIRED, 0);
    }

    #[test]
    fn rejects_truncated() {
        for len in 0..8 {
            assert_eq!(
                Icmpv4Packet::new_checked(&ECHO_PACKET[20..20 + len]),
                Err(WireError::Truncated)
            );
        }
        let bare = Icmpv4Packet::new_checked(&ECHO_PACKET[20..28]).unwrap();
        assert!(bare.data().is_empty());
        assert!(!bare.verify_checksum());
    }

    #[test]
    fn no_accessor_panics_on_any_prefix() {
        let message = &ECHO_PACKET[20..];
        for len in 0..=message.len() {
            if let Ok(icmp) = Icmpv4Packet::new_checked(&message[..len]) {
                assert!(len >= 8);
                let _ = (icmp.data(), icmp.verify_checksum(), icmp.echo_seq_no());
            }
        }
    }
}
