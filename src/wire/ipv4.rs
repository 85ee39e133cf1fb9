//! IPv4 packets (RFC 791).

use std::net::Ipv4Addr;

use super::{checksum, read_ipv4, read_u16, write_ipv4, write_u16, Field, Result, WireError};

/// IP protocol numbers sluice handles.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

mod field {
    use super::Field;

    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet. The buffer may be longer than the packet
/// (Ethernet padding): [`Ipv4Packet::payload`] ends at `total_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Length of a header without options.
    pub const HEADER_LEN: usize = field::DST_ADDR.end;

    /// Wraps a buffer without checking it; accessors may panic if it is short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after checking the version and that the header and the
    /// `total_len` bytes it announces are all in the buffer.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Wraps the original datagram quoted in an ICMP error, which usually
    /// ends a few bytes into its payload: checks as [`Ipv4Packet::new_checked`]
    /// does, except that the buffer may end before `total_len` (but not
    /// inside the header). [`Ipv4Packet::payload`] then holds what is there.
    #[inline]
    pub fn new_checked_quoted(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_header()?;
        Ok(packet)
    }

    /// - `Truncated`: fewer than 20 bytes, or fewer than `total_len`;
    /// - `Malformed`: version is not 4, IHL < 5, or `total_len` < header length.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        if usize::from(self.total_len()) > self.buffer.as_ref().len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Everything `check_len` checks but that the whole packet is there.
    #[inline]
    fn check_header(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < Self::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        if self.version() != 4
            || header_len < Self::HEADER_LEN
            || usize::from(self.total_len()) < header_len
        {
            return Err(WireError::Malformed);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// End of the packet in the buffer: `total_len`, or the end of the buffer
    /// for a quoted datagram (the `min` costs a conditional move and keeps
    /// `payload` panic-free for both constructors).
    #[inline]
    fn payload_end(&self) -> usize {
        usize::from(self.total_len()).min(self.buffer.as_ref().len())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The former TOS byte: DSCP in the top 6 bits, ECN in the low 2.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Length of the packet, header included.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LENGTH])
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::IDENT])
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        read_u16(&self.buffer.as_ref()[field::FLG_OFF]) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        read_u16(&self.buffer.as_ref()[field::FLG_OFF]) & FLAG_MF != 0
    }

    /// Fragment offset in **bytes** (the field's 8-byte units times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (read_u16(&self.buffer.as_ref()[field::FLG_OFF]) & OFFSET_MASK) << 3
    }

    /// Any fragment, first one included: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        read_u16(&self.buffer.as_ref()[field::FLG_OFF]) & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// See [`protocol`].
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::CHECKSUM])
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// Options (and padding) between the fixed header and the payload.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[Self::HEADER_LEN..self.header_len()]
    }

    /// Whether the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len()];
        // Nearly every header has no options: five words, no loop.
        let sum = match <&[u8; 20]>::try_from(header) {
            Ok(fixed) => checksum::data_20(fixed),
            Err(_) => checksum::data(header),
        };
        sum == 0xffff
    }

    /// The bytes from the end of the header to `total_len` (not to the end
    /// of the buffer, which may hold Ethernet padding); for a view made by
    /// `new_checked_quoted`, only those present.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let range = self.header_len()..self.payload_end();
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets IHL from a length in bytes: a multiple of 4, from 20 to 60.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(
            len.is_multiple_of(4) && (20..=60).contains(&len),
            "bad IPv4 header length {len}"
        );
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        write_u16(&mut self.buffer.as_mut()[field::LENGTH], len);
    }

    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        write_u16(&mut self.buffer.as_mut()[field::IDENT], ident);
    }

    #[inline]
    fn set_flg_off_bits(&mut self, mask: u16, bits: u16) {
        let f = &mut self.buffer.as_mut()[field::FLG_OFF];
        write_u16(f, (read_u16(f) & !mask) | (bits & mask));
    }

    /// Clears the three flag bits (reserved, DF, MF), keeping the offset.
    #[inline]
    pub fn clear_flags(&mut self) {
        self.set_flg_off_bits(!OFFSET_MASK, 0);
    }

    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flg_off_bits(FLAG_DF, if value { FLAG_DF } else { 0 });
    }

    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flg_off_bits(FLAG_MF, if value { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset from a value in **bytes** (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, bytes: u16) {
        debug_assert!(
            bytes.is_multiple_of(8),
            "fragment offset {bytes} is not a multiple of 8"
        );
        self.set_flg_off_bits(OFFSET_MASK, bytes >> 3);
    }

    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    #[inline]
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        write_u16(&mut self.buffer.as_mut()[field::CHECKSUM], checksum);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        write_ipv4(&mut self.buffer.as_mut()[field::SRC_ADDR], addr);
    }

    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        write_ipv4(&mut self.buffer.as_mut()[field::DST_ADDR], addr);
    }

    /// Decrements the TTL (saturating at 0) and updates the header checksum
    /// incrementally. The caller checks `ttl() > 1` first and answers with
    /// ICMP time exceeded otherwise.
    #[inline]
    pub fn decrement_ttl(&mut self) {
        let data = self.buffer.as_mut();
        // The TTL shares its checksum word with the protocol.
        let old = u16::from_be_bytes([data[field::TTL], data[field::PROTOCOL]]);
        data[field::TTL] = data[field::TTL].saturating_sub(1);
        let new = u16::from_be_bytes([data[field::TTL], data[field::PROTOCOL]]);
        let sum = checksum::update_u16(read_u16(&data[field::CHECKSUM]), old, new);
        write_u16(&mut data[field::CHECKSUM], sum);
    }

    /// Computes the header checksum and writes it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        let sum = checksum::data(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(!sum);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let range = Self::HEADER_LEN..self.header_len();
        &mut self.buffer.as_mut()[range]
    }

    /// See [`Ipv4Packet::payload`].
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..self.payload_end();
        &mut self.buffer.as_mut()[range]
    }
}

/// The fields sluice sets when it writes an IPv4 header of its own (e.g. for
/// an ICMP error): no options, DSCP/ECN 0, DF set and ident 0 (RFC 6864
/// allows any ident on an atomic datagram).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    /// See [`protocol`].
    pub protocol: u8,
    /// Payload bytes after the header; at most 65515.
    pub payload_len: usize,
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Reads the fields above from a checked packet (options are skipped).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Ipv4Repr {
        Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload().len(),
            ttl: packet.ttl(),
        }
    }

    /// Bytes the header takes: always 20.
    #[inline]
    pub const fn header_len(&self) -> usize {
        field::DST_ADDR.end
    }

    /// Bytes the whole packet takes.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes a 20-byte header, checksum included. The payload is left to
    /// the caller (its checksum may depend on the addresses written here).
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version(4);
        packet.set_header_len(self.header_len());
        packet.set_dscp_ecn(0);
        packet.set_total_len(self.buffer_len() as u16);
        packet.set_ident(0);
        write_u16(&mut packet.buffer.as_mut()[field::FLG_OFF], FLAG_DF);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IGMPv2 membership report for 224.0.0.251 (mDNS) from a Linux host:
    /// an IPv4 header with an option (Router Alert), so IHL = 6.
    static IGMP_PACKET: [u8; 32] = [
        0x46, // version 4, IHL 6 (24 bytes)
        0xc0, // DSCP CS6 (network control), ECN 0
        0x00, 0x20, // total length 32
        0x00, 0x00, // ident 0
        0x40, 0x00, // flags DF, fragment offset 0
        0x01, // TTL 1
        0x02, // protocol IGMP
        0x41, 0x6a, // header checksum
        0xc0, 0xa8, 0x01, 0x0a, // source 192.168.1.10
        0xe0, 0x00, 0x00, 0xfb, // destination 224.0.0.251
        0x94, 0x04, 0x00, 0x00, // option: Router Alert (RFC 2113)
        // IGMP: v2 membership report (0x16), checksum 0x0904, group 224.0.0.251
        0x16, 0x00, 0x09, 0x04, 0xe0, 0x00, 0x00, 0xfb,
    ];

    /// The plain 20-byte header of the ICMP echo request in icmpv4::tests.
    static ECHO_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x54, // v4, IHL 5, DSCP/ECN 0, total length 84
        0x4c, 0x7a, 0x40, 0x00, // ident 0x4c7a, DF, offset 0
        0x40, 0x01, 0x2a, 0x7b, // TTL 64, ICMP, checksum 0x2a7b
        0xc0, 0xa8, 0x01, 0x0a, // source 192.168.1.10
        0x01, 0x01, 0x01, 0x01, // destination 1.1.1.1
    ];

    /// A reference header checksum: naive, byte-wise, folded at the end.
    fn reference_checksum(header: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for (i, &b) in header.iter().enumerate() {
            if i != 10 && i != 11 {
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
        assert_eq!(reference_checksum(&IGMP_PACKET[..24]), 0x416a);
        assert_eq!(reference_checksum(&ECHO_HEADER), 0x2a7b);
    }

    #[test]
    fn read_every_field() {
        let p = Ipv4Packet::new_checked(&IGMP_PACKET[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.dscp_ecn(), 0xc0);
        assert_eq!(p.total_len(), 32);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 1);
        assert_eq!(p.protocol(), 2);
        assert_eq!(p.checksum(), 0x416a);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(224, 0, 0, 251));
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &IGMP_PACKET[24..]);
        assert_eq!(
            Ipv4Repr::parse(&p),
            Ipv4Repr {
                src_addr: Ipv4Addr::new(192, 168, 1, 10),
                dst_addr: Ipv4Addr::new(224, 0, 0, 251),
                protocol: 2,
                payload_len: 8,
                ttl: 1,
            }
        );
    }

    #[test]
    fn build_from_scratch() {
        let mut bytes = [0xa5u8; 32];
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_version(4);
        p.set_header_len(24);
        p.set_dscp_ecn(0xc0);
        p.set_total_len(32);
        p.set_ident(0);
        p.clear_flags();
        p.set_dont_frag(true);
        p.set_more_frags(false);
        p.set_frag_offset(0);
        p.set_ttl(1);
        p.set_protocol(2);
        p.set_src_addr(Ipv4Addr::new(192, 168, 1, 10));
        p.set_dst_addr(Ipv4Addr::new(224, 0, 0, 251));
        p.options_mut().copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        p.payload_mut().copy_from_slice(&IGMP_PACKET[24..]);
        p.fill_checksum();
        assert_eq!(bytes, IGMP_PACKET);
    }

    #[test]
    fn emit_repr() {
        let repr = Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 168, 1, 10),
            dst_addr: Ipv4Addr::new(1, 1, 1, 1),
            protocol: protocol::ICMP,
            payload_len: 64,
            ttl: 64,
        };
        assert_eq!(repr.buffer_len(), 84);
        let mut bytes = [0xa5u8; 84];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut bytes[..]));
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p), repr);
        // Same as the captured header but for the ident Linux picked.
        let mut expected = ECHO_HEADER;
        expected[4..6].fill(0);
        let sum = reference_checksum(&expected);
        expected[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(&bytes[..20], &expected);
    }

    #[test]
    fn fragments() {
        let mut bytes = ECHO_HEADER;
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_dont_frag(false);
        p.set_more_frags(true);
        assert!(p.is_fragment() && p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 0);
        p.set_more_frags(false);
        p.set_frag_offset(1480);
        assert!(p.is_fragment() && !p.more_frags());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(&bytes[6..8], &[0x00, 0xb9]);
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.set_frag_offset(65528);
        p.set_more_frags(true);
        p.set_dont_frag(true);
        assert_eq!(p.frag_offset(), 65528);
        assert_eq!(&bytes[6..8], &[0x7f, 0xff]);
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.clear_flags();
        assert_eq!(p.frag_offset(), 65528);
        assert!(!p.dont_frag() && !p.more_frags());
        assert_eq!(&bytes[6..8], &[0x1f, 0xff]);
    }

    #[test]
    fn decrement_ttl_keeps_checksum_right() {
        let mut bytes = ECHO_HEADER;
        for ttl in (0..64).rev() {
            let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
            p.decrement_ttl();
            assert_eq!(p.ttl(), ttl);
            assert!(p.verify_checksum());
            assert_eq!(p.checksum(), reference_checksum(&bytes));
        }
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        p.decrement_ttl();
        assert_eq!(p.ttl(), 0);
        assert!(p.verify_checksum());
    }

    #[test]
    fn padding_is_not_payload() {
        let mut padded = [0u8; 46];
        padded[..32].copy_from_slice(&IGMP_PACKET);
        let p = Ipv4Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload(), &IGMP_PACKET[24..]);
    }

    #[test]
    fn rejects_bad_headers() {
        use WireError::*;
        let check = |bytes: &[u8]| Ipv4Packet::new_checked(bytes).map(|_| ());
        for len in 0..20 {
            assert_eq!(check(&IGMP_PACKET[..len]), Err(Truncated));
        }
        // Options or payload cut off.
        for len in 20..32 {
            assert_eq!(check(&IGMP_PACKET[..len]), Err(Truncated), "len {len}");
        }
        let with = |at: usize, value: u8| {
            let mut b = IGMP_PACKET;
            b[at] = value;
            b
        };
        // Version 6, 0, 15.
        for v in [0x66, 0x06, 0xf6] {
            assert_eq!(check(&with(0, v)), Err(Malformed));
        }
        // IHL below 5.
        for v in [0x40, 0x41, 0x44] {
            assert_eq!(check(&with(0, v)), Err(Malformed));
        }
        // IHL 15 (60 bytes) beyond a 32-byte total length: malformed; with a
        // total length that covers it but a short buffer: truncated.
        assert_eq!(check(&with(0, 0x4f)), Err(Malformed));
        let mut b = with(0, 0x4f);
        b[3] = 60;
        assert_eq!(check(&b), Err(Truncated));
        // Total length beyond the buffer.
        assert_eq!(check(&with(3, 33)), Err(Truncated));
        let mut b = IGMP_PACKET;
        b[2] = 0x05;
        assert_eq!(check(&b), Err(Truncated));
        // Total length shorter than the header.
        assert_eq!(check(&with(3, 23)), Err(Malformed));
        assert_eq!(check(&with(3, 0)), Err(Malformed));
        // Header only, no payload: fine.
        let header_only = with(3, 24);
        let p = Ipv4Packet::new_checked(&header_only[..]).unwrap();
        assert!(p.payload().is_empty());
    }

    #[test]
    fn quoted_datagrams() {
        // Cut anywhere after the header: accepted, payload is what is there.
        for len in 24..=32 {
            let p = Ipv4Packet::new_checked_quoted(&IGMP_PACKET[..len]).unwrap();
            assert_eq!(p.payload(), &IGMP_PACKET[24..len]);
            assert!(p.verify_checksum());
        }
        // Cut inside the header (options included): refused.
        for len in 0..24 {
            assert_eq!(
                Ipv4Packet::new_checked_quoted(&IGMP_PACKET[..len]),
                Err(WireError::Truncated)
            );
        }
        // The same validity rules otherwise.
        let mut bad = IGMP_PACKET;
        bad[3] = 20;
        assert_eq!(
            Ipv4Packet::new_checked_quoted(&bad[..]),
            Err(WireError::Malformed)
        );
        bad[3] = 32;
        bad[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked_quoted(&bad[..]),
            Err(WireError::Malformed)
        );
        bad[0] = 0x56;
        assert_eq!(
            Ipv4Packet::new_checked_quoted(&bad[..]),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn no_accessor_panics_on_any_prefix() {
        for len in 0..=IGMP_PACKET.len() {
            if let Ok(p) = Ipv4Packet::new_checked(&IGMP_PACKET[..len]) {
                assert_eq!(len, 32);
                let _ = (p.version(), p.header_len(), p.options(), p.payload());
                let _ = (
                    p.verify_checksum(),
                    p.frag_offset(),
                    p.src_addr(),
                    p.dst_addr(),
                );
            }
            if let Ok(p) = Ipv4Packet::new_checked_quoted(&IGMP_PACKET[..len]) {
                let _ = (p.version(), p.header_len(), p.options(), p.payload());
                let _ = (p.verify_checksum(), Ipv4Repr::parse(&p));
            }
        }
    }
}
