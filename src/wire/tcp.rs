//! TCP segments (RFC 9293): the header fields a load balancer reads or
//! rewrites, and the checksum over the IPv4 pseudo-header.

use std::net::Ipv4Addr;

use super::ipv4::protocol;
use super::{checksum, read_u16, read_u32, write_u16, write_u32, Field, Result, WireError};

/// Bits of [`TcpPacket::flags`].
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

mod field {
    use super::Field;

    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    /// Data offset in the top 4 bits (the rest is reserved).
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
}

/// A view of a TCP segment. The buffer is exactly the IP payload: the
/// checksum covers all of it and the payload runs to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Length of a header without options.
    pub const HEADER_LEN: usize = field::URGENT.end;

    /// Wraps a buffer without checking it; accessors may panic if it is short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after checking that the header, options included, fits.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if shorter than 20 bytes; `Malformed` if the data offset
    /// is below 5 or points past the end (the buffer is the whole IP
    /// payload, so a header overrunning it is inconsistent, not cut short).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        if header_len < Self::HEADER_LEN || header_len > len {
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

    #[inline]
    pub fn seq_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::SEQ_NUM])
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        read_u32(&self.buffer.as_ref()[field::ACK_NUM])
    }

    /// Header length in bytes (data offset * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The eight flag bits, CWR (0x80) down to FIN (0x01); see [`flags`].
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    #[inline]
    pub fn ece(&self) -> bool {
        self.flags() & flags::ECE != 0
    }

    #[inline]
    pub fn cwr(&self) -> bool {
        self.flags() & flags::CWR != 0
    }

    /// The raw window field (not scaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::WIN_SIZE])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::URGENT])
    }

    /// The options (and padding) between the fixed header and the payload.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..self.header_len()]
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum over the pseudo-header and the whole buffer is
    /// correct.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        checksum::combine(&[
            checksum::pseudo_header(src, dst, protocol::TCP, data.len() as u16),
            checksum::data(data),
        ]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::SRC_PORT], port);
    }

    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(&mut self.buffer.as_mut()[field::DST_PORT], port);
    }

    #[inline]
    pub fn set_seq_number(&mut self, seq: u32) {
        write_u32(&mut self.buffer.as_mut()[field::SEQ_NUM], seq);
    }

    #[inline]
    pub fn set_ack_number(&mut self, ack: u32) {
        write_u32(&mut self.buffer.as_mut()[field::ACK_NUM], ack);
    }

    /// Sets the data offset from a length in bytes: a multiple of 4, 20 to 60.
    /// Clears the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(
            len.is_multiple_of(4) && (20..=60).contains(&len),
            "bad TCP header length {len}"
        );
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }

    /// Sets all eight flag bits at once; see [`flags`].
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    #[inline]
    fn set_flag(&mut self, flag: u8, value: bool) {
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        *b = if value { *b | flag } else { *b & !flag };
    }

    #[inline]
    pub fn set_fin(&mut self, value: bool) {
        self.set_flag(flags::FIN, value);
    }

    #[inline]
    pub fn set_syn(&mut self, value: bool) {
        self.set_flag(flags::SYN, value);
    }

    #[inline]
    pub fn set_rst(&mut self, value: bool) {
        self.set_flag(flags::RST, value);
    }

    #[inline]
    pub fn set_psh(&mut self, value: bool) {
        self.set_flag(flags::PSH, value);
    }

    #[inline]
    pub fn set_ack(&mut self, value: bool) {
        self.set_flag(flags::ACK, value);
    }

    #[inline]
    pub fn set_urg(&mut self, value: bool) {
        self.set_flag(flags::URG, value);
    }

    #[inline]
    pub fn set_ece(&mut self, value: bool) {
        self.set_flag(flags::ECE, value);
    }

    #[inline]
    pub fn set_cwr(&mut self, value: bool) {
        self.set_flag(flags::CWR, value);
    }

    #[inline]
    pub fn set_window_len(&mut self, window: u16) {
        write_u16(&mut self.buffer.as_mut()[field::WIN_SIZE], window);
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], checksum);
    }

    #[inline]
    pub fn set_urgent_at(&mut self, pointer: u16) {
        write_u16(&mut self.buffer.as_mut()[field::URGENT], pointer);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let range = Self::HEADER_LEN..self.header_len();
        &mut self.buffer.as_mut()[range]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes the checksum over the pseudo-header and the whole buffer and
    /// writes it. For a NAT rewrite, prefer the incremental
    /// `checksum::update_addr` / `update_u16` on the existing field.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header(src, dst, protocol::TCP, data.len() as u16),
            checksum::data(data),
        ]);
        self.set_checksum(!sum);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::Ipv4Packet;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const SERVER: Ipv4Addr = Ipv4Addr::new(93, 184, 216, 34);

    /// A SYN from a Linux client (`curl http://93.184.216.34/`), IPv4 header
    /// included, with Linux's usual options.
    pub(crate) static SYN_PACKET: [u8; 60] = [
        // IPv4: IHL 5, total length 60, ident 0x8f3e, DF, TTL 64, TCP,
        // checksum 0xb3f0, 192.168.1.10 -> 93.184.216.34
        0x45, 0x00, 0x00, 0x3c, 0x8f, 0x3e, 0x40, 0x00, 0x40, 0x06, 0xb3, 0xf0, //
        0xc0, 0xa8, 0x01, 0x0a, 0x5d, 0xb8, 0xd8, 0x22, //
        // TCP
        0xc8, 0x22, // source port 51234
        0x00, 0x50, // destination port 80
        0x3c, 0x9a, 0x7f, 0x21, // sequence number
        0x00, 0x00, 0x00, 0x00, // acknowledgment number
        0xa0, // data offset 10 (40 bytes)
        0x02, // flags: SYN
        0xfa, 0xf0, // window 64240
        0x6b, 0xcc, // checksum
        0x00, 0x00, // urgent pointer
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0xa1, 0xb2, 0xc3, 0xd4, 0x00, 0x00, 0x00, 0x00, // timestamps
        0x01, // NOP
        0x03, 0x03, 0x07, // window scale 7
    ];

    /// The same client's first data segment (the IPv4 header left out).
    static GET_SEGMENT_HEADER: [u8; 32] = [
        0xc8, 0x22, // source port 51234
        0x00, 0x50, // destination port 80
        0x3c, 0x9a, 0x7f, 0x22, // sequence number
        0x8d, 0x1e, 0x5b, 0x40, // acknowledgment number
        0x80, // data offset 8 (32 bytes)
        0x18, // flags: PSH, ACK
        0x01, 0xf6, // window 502 (scaled by 2^7)
        0x93, 0x4d, // checksum
        0x00, 0x00, // urgent pointer
        0x01, 0x01, 0x08, 0x0a, 0xa1, 0xb2, 0xc3, 0xe8, 0x5e, 0x6f, 0x70, 0x81, // NOP NOP TS
    ];
    static GET_SEGMENT_PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";

    fn get_segment() -> Vec<u8> {
        [&GET_SEGMENT_HEADER[..], GET_SEGMENT_PAYLOAD].concat()
    }

    /// A reference checksum: naive, byte-wise over pseudo-header + segment.
    fn reference_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 6]);
        bytes.extend_from_slice(&(segment.len() as u16).to_be_bytes());
        bytes.extend_from_slice(segment);
        bytes[12 + 16] = 0;
        bytes[12 + 17] = 0;
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
            reference_checksum(CLIENT, SERVER, &SYN_PACKET[20..]),
            0x6bcc
        );
        assert_eq!(reference_checksum(CLIENT, SERVER, &get_segment()), 0x934d);
        assert!(Ipv4Packet::new_checked(&SYN_PACKET[..])
            .unwrap()
            .verify_checksum());
    }

    #[test]
    fn read_every_field() {
        let ip = Ipv4Packet::new_checked(&SYN_PACKET[..]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (CLIENT, SERVER));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.src_port(), 51234);
        assert_eq!(tcp.dst_port(), 80);
        assert_eq!(tcp.seq_number(), 0x3c9a_7f21);
        assert_eq!(tcp.ack_number(), 0);
        assert_eq!(tcp.header_len(), 40);
        assert_eq!(tcp.flags(), flags::SYN);
        assert!(tcp.syn());
        assert!(!tcp.fin() && !tcp.rst() && !tcp.psh() && !tcp.ack());
        assert!(!tcp.urg() && !tcp.ece() && !tcp.cwr());
        assert_eq!(tcp.window_len(), 64240);
        assert_eq!(tcp.checksum(), 0x6bcc);
        assert_eq!(tcp.urgent_at(), 0);
        assert_eq!(tcp.options(), &SYN_PACKET[40..60]);
        assert!(tcp.payload().is_empty());
        assert!(tcp.verify_checksum(CLIENT, SERVER));
        assert!(!tcp.verify_checksum(CLIENT, Ipv4Addr::new(93, 184, 216, 35)));

        let segment = get_segment();
        let tcp = TcpPacket::new_checked(&segment[..]).unwrap();
        assert_eq!(tcp.seq_number(), 0x3c9a_7f22);
        assert_eq!(tcp.ack_number(), 0x8d1e_5b40);
        assert_eq!(tcp.header_len(), 32);
        assert_eq!(tcp.flags(), flags::PSH | flags::ACK);
        assert!(tcp.psh() && tcp.ack() && !tcp.syn());
        assert_eq!(tcp.window_len(), 502);
        assert_eq!(tcp.payload(), GET_SEGMENT_PAYLOAD);
        assert!(tcp.verify_checksum(CLIENT, SERVER));
    }

    #[test]
    fn build_from_scratch() {
        let mut bytes = [0xa5u8; 40];
        let mut tcp = TcpPacket::new_unchecked(&mut bytes[..]);
        tcp.set_src_port(51234);
        tcp.set_dst_port(80);
        tcp.set_seq_number(0x3c9a_7f21);
        tcp.set_ack_number(0);
        tcp.set_header_len(40);
        tcp.set_flags(0);
        tcp.set_syn(true);
        tcp.set_window_len(64240);
        tcp.set_urgent_at(0);
        tcp.options_mut().copy_from_slice(&SYN_PACKET[40..60]);
        tcp.fill_checksum(CLIENT, SERVER);
        assert_eq!(&bytes[..], &SYN_PACKET[20..]);

        let mut bytes = vec![0xa5u8; GET_SEGMENT_HEADER.len() + GET_SEGMENT_PAYLOAD.len()];
        let mut tcp = TcpPacket::new_unchecked(&mut bytes[..]);
        tcp.set_src_port(51234);
        tcp.set_dst_port(80);
        tcp.set_seq_number(0x3c9a_7f22);
        tcp.set_ack_number(0x8d1e_5b40);
        tcp.set_header_len(32);
        tcp.set_flags(0xff);
        tcp.set_fin(false);
        tcp.set_syn(false);
        tcp.set_rst(false);
        tcp.set_urg(false);
        tcp.set_ece(false);
        tcp.set_cwr(false);
        tcp.set_psh(false);
        tcp.set_ack(false);
        assert_eq!(tcp.flags(), 0);
        tcp.set_psh(true);
        tcp.set_ack(true);
        tcp.set_window_len(502);
        tcp.set_urgent_at(0);
        tcp.options_mut().copy_from_slice(&GET_SEGMENT_HEADER[20..]);
        tcp.payload_mut().copy_from_slice(GET_SEGMENT_PAYLOAD);
        tcp.fill_checksum(CLIENT, SERVER);
        assert_eq!(bytes, get_segment());
    }

    #[test]
    fn rejects_bad_headers() {
        let segment = &SYN_PACKET[20..];
        for len in 0..20 {
            assert_eq!(
                TcpPacket::new_checked(&segment[..len]),
                Err(WireError::Truncated)
            );
        }
        // Options cut off: the data offset points past the end.
        for len in 20..40 {
            assert_eq!(
                TcpPacket::new_checked(&segment[..len]),
                Err(WireError::Malformed)
            );
        }
        // Data offset below 5.
        for off in 0..5u8 {
            let mut bad = [0u8; 40];
            bad.copy_from_slice(segment);
            bad[12] = off << 4;
            assert_eq!(TcpPacket::new_checked(&bad[..]), Err(WireError::Malformed));
        }
        // Data offset 15 (60 bytes) in a 40-byte segment.
        let mut bad = [0u8; 40];
        bad.copy_from_slice(segment);
        bad[12] = 0xf0;
        assert_eq!(TcpPacket::new_checked(&bad[..]), Err(WireError::Malformed));
        // A bare 20-byte header is fine.
        bad[12] = 0x50;
        let tcp = TcpPacket::new_checked(&bad[..20]).unwrap();
        assert!(tcp.options().is_empty() && tcp.payload().is_empty());
    }

    #[test]
    fn no_accessor_panics_on_any_prefix() {
        let segment = get_segment();
        for len in 0..=segment.len() {
            if let Ok(tcp) = TcpPacket::new_checked(&segment[..len]) {
                assert!(len >= 32);
                let _ = (tcp.options(), tcp.payload(), tcp.flags(), tcp.urgent_at());
                let _ = tcp.verify_checksum(CLIENT, SERVER);
            }
        }
    }
}
