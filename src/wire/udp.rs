//! UDP datagrams (RFC 768) and their checksum over the IPv4 pseudo-header.
//!
//! A checksum field of 0 means "not computed" on IPv4, so a computed 0 is
//! sent as 0xffff. Code that updates the field incrementally (NAT) must
//! leave a 0 field alone and turn an updated result of 0 into 0xffff.

use std::net::Ipv4Addr;

use super::ipv4::protocol;
use super::{checksum, read_u16, write_u16, Field, Rest, Result, WireError};

mod field {
    use super::{Field, Rest};

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: Rest = 8..;
}

/// A view of a UDP datagram. The datagram is the first `len()` bytes of the
/// buffer; the payload and the checksum stop there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const HEADER_LEN: usize = field::PAYLOAD.start;

    /// Wraps a buffer without checking it; accessors may panic if it is short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after checking the header and the length field.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if shorter than 8 bytes; `Malformed` if the length field
    /// is below 8 or beyond the buffer (the buffer is the whole IP payload,
    /// so a longer length field is inconsistent, not cut short).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let buffer_len = self.buffer.as_ref().len();
        if buffer_len < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(self.len());
        if len < Self::HEADER_LEN || len > buffer_len {
            return Err(WireError::Malformed);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::SRC_PORT])
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::DST_PORT])
    }

    /// The length field: header and payload, in bytes.
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    /// The bytes after the header, up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum is correct; a 0 field (none sent) counts as
    /// correct.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let len = self.len();
        let datagram = &self.buffer.as_ref()[..usize::from(len)];
        checksum::combine(&[
            checksum::pseudo_header(src, dst, protocol::UDP, len),
            checksum::data(datagram),
        ]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], port);
    }

    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], port);
    }

    #[inline]
    pub fn set_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], checksum);
    }

    /// See [`UdpPacket::payload`].
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[Self::HEADER_LEN..end]
    }

    /// Computes the checksum over the pseudo-header and the datagram and
    /// writes it (0xffff for a computed 0).
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = self.len();
        let datagram = &self.buffer.as_ref()[..usize::from(len)];
        let sum = checksum::combine(&[
            checksum::pseudo_header(src, dst, protocol::UDP, len),
            checksum::data(datagram),
        ]);
        // !sum is 0 exactly when sum is 0xffff; then send 0xffff, the other
        // ones' complement zero, since 0 would mean "no checksum".
        self.set_checksum(if sum == 0xffff { 0xffff } else { !sum });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::Ipv4Packet;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const RESOLVER: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

    /// `host -t A example.com 8.8.8.8` from a Linux client: a DNS query,
    /// IPv4 header included. Odd length, so the checksum pads a byte.
    pub(crate) static DNS_PACKET: [u8; 57] = [
        // IPv4: IHL 5, total length 57, ident 0x5c21, no flags, TTL 64, UDP,
        // checksum 0x4cd1, 192.168.1.10 -> 8.8.8.8
        0x45, 0x00, 0x00, 0x39, 0x5c, 0x21, 0x00, 0x00, 0x40, 0x11, 0x4c, 0xd1, //
        0xc0, 0xa8, 0x01, 0x0a, 0x08, 0x08, 0x08, 0x08, //
        // UDP
        0xb2, 0x6e, // source port 45678
        0x00, 0x35, // destination port 53
        0x00, 0x25, // length 37
        0x91, 0xa5, // checksum
        // DNS: id 0x1a2b, flags RD, 1 question, no other records
        0x1a, 0x2b, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        // example.com, type A, class IN
        0x07, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0x03, b'c', b'o', b'm', 0x00, //
        0x00, 0x01, 0x00, 0x01,
    ];

    /// A reference checksum: naive, byte-wise over pseudo-header + datagram.
    fn reference_checksum(src: Ipv4Addr, dst: Ipv4Addr, datagram: &[u8]) -> u16 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 17]);
        bytes.extend_from_slice(&(datagram.len() as u16).to_be_bytes());
        bytes.extend_from_slice(datagram);
        bytes[12 + 6] = 0;
        bytes[12 + 7] = 0;
        let mut s: u32 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            s += if i % 2 == 0 {
                u32::from(b) << 8
            } else {
                u32::from(b)
            };
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn captured_checksums_are_right() {
        assert_eq!(
            reference_checksum(CLIENT, RESOLVER, &DNS_PACKET[20..]),
            0x91a5
        );
        assert!(Ipv4Packet::new_checked(&DNS_PACKET[..])
            .unwrap()
            .verify_checksum());
    }

    #[test]
    fn read_every_field() {
        let ip = Ipv4Packet::new_checked(&DNS_PACKET[..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (CLIENT, RESOLVER));
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.src_port(), 45678);
        assert_eq!(udp.dst_port(), 53);
        assert_eq!(udp.len(), 37);
        assert_eq!(udp.checksum(), 0x91a5);
        assert_eq!(udp.payload(), &DNS_PACKET[28..]);
        assert_eq!(udp.payload().len(), 29);
        assert!(udp.verify_checksum(CLIENT, RESOLVER));
        assert!(!udp.verify_checksum(CLIENT, Ipv4Addr::new(8, 8, 4, 4)));
    }

    #[test]
    fn build_from_scratch() {
        let mut bytes = [0xa5u8; 37];
        let mut udp = UdpPacket::new_unchecked(&mut bytes[..]);
        udp.set_src_port(45678);
        udp.set_dst_port(53);
        udp.set_len(37);
        udp.payload_mut().copy_from_slice(&DNS_PACKET[28..]);
        udp.fill_checksum(CLIENT, RESOLVER);
        assert_eq!(&bytes[..], &DNS_PACKET[20..]);
    }

    #[test]
    fn zero_checksum() {
        // 0 in the field: not computed, accepted as is.
        let mut bytes = [0u8; 37];
        bytes.copy_from_slice(&DNS_PACKET[20..]);
        let mut udp = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        udp.set_checksum(0);
        assert!(udp.verify_checksum(CLIENT, Ipv4Addr::new(1, 2, 3, 4)));

        // Choose the payload's last word so the datagram sums to 0xffff: the
        // computed checksum is 0, which must go out as 0xffff.
        let mut bytes = [0u8; 10];
        let mut udp = UdpPacket::new_unchecked(&mut bytes[..]);
        udp.set_src_port(1000);
        udp.set_dst_port(2000);
        udp.set_len(10);
        let partial = checksum::combine(&[
            checksum::pseudo_header(CLIENT, RESOLVER, protocol::UDP, 10),
            checksum::data(&bytes[..8]),
        ]);
        bytes[8..].copy_from_slice(&(!partial).to_be_bytes());
        let mut udp = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        udp.fill_checksum(CLIENT, RESOLVER);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum(CLIENT, RESOLVER));
        assert_eq!(reference_checksum(CLIENT, RESOLVER, &bytes), 0x0000);
    }

    #[test]
    fn trailing_bytes_are_not_datagram() {
        let mut bytes = [0xeeu8; 40];
        bytes[..37].copy_from_slice(&DNS_PACKET[20..]);
        let udp = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(udp.payload(), &DNS_PACKET[28..]);
        assert!(udp.verify_checksum(CLIENT, RESOLVER));
    }

    #[test]
    fn rejects_bad_headers() {
        let datagram = &DNS_PACKET[20..];
        for len in 0..8 {
            assert_eq!(
                UdpPacket::new_checked(&datagram[..len]),
                Err(WireError::Truncated)
            );
        }
        // Length field beyond the buffer.
        for len in 8..datagram.len() {
            assert_eq!(
                UdpPacket::new_checked(&datagram[..len]),
                Err(WireError::Malformed)
            );
        }
        // Length field below the header length.
        for field in 0..8u8 {
            let mut bad = [0u8; 37];
            bad.copy_from_slice(datagram);
            bad[4] = 0;
            bad[5] = field;
            assert_eq!(UdpPacket::new_checked(&bad[..]), Err(WireError::Malformed));
        }
        // A bare header is fine.
        let mut bare = [0u8; 8];
        bare.copy_from_slice(&datagram[..8]);
        bare[5] = 8;
        assert!(UdpPacket::new_checked(&bare[..])
            .unwrap()
            .payload()
            .is_empty());
    }

    #[test]
    fn no_accessor_panics_on_any_prefix() {
        let datagram = &DNS_PACKET[20..];
        for len in 0..=datagram.len() {
            if let Ok(udp) = UdpPacket::new_checked(&datagram[..len]) {
                assert_eq!(len, 37);
                let _ = (udp.payload(), udp.verify_checksum(CLIENT, RESOLVER));
            }
        }
    }
}
