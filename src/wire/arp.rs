//! ARP packets, for Ethernet hardware and IPv4 protocol addresses only.

use std::net::Ipv4Addr;

use super::ethernet::{ethertype, EthernetAddress};
use super::{read_ipv4, read_u16, write_ipv4, write_u16, Field, Result, WireError};

/// ARP operation codes.
pub mod operation {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

/// Hardware type for Ethernet.
const HTYPE_ETHERNET: u16 = 1;

mod field {
    use super::Field;

    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

/// A view of an Ethernet/IPv4 ARP packet. The buffer may be longer than
/// [`ArpPacket::LEN`] (Ethernet padding); the extra bytes are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const LEN: usize = field::TPA.end;

    /// Wraps a buffer without checking it; accessors may panic if it is short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after checking it is a whole Ethernet/IPv4 ARP packet.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if shorter than 28 bytes; `Malformed` unless the hardware
    /// is Ethernet (1, 6-byte addresses) and the protocol IPv4 (0x0800, 4).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < Self::LEN {
            return Err(WireError::Truncated);
        }
        if self.hardware_type() != HTYPE_ETHERNET
            || self.protocol_type() != ethertype::IPV4
            || self.hardware_len() != 6
            || self.protocol_len() != 4
        {
            return Err(WireError::Malformed);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::HTYPE])
    }

    #[inline]
    pub fn protocol_type(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::PTYPE])
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// See [`operation`].
    #[inline]
    pub fn operation(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::OPER])
    }

    #[inline]
    pub fn sender_hw_addr(&self) -> EthernetAddress {
        EthernetAddress::from_field(&self.buffer.as_ref()[field::SHA])
    }

    #[inline]
    pub fn sender_proto_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::SPA])
    }

    #[inline]
    pub fn target_hw_addr(&self) -> EthernetAddress {
        EthernetAddress::from_field(&self.buffer.as_ref()[field::THA])
    }

    #[inline]
    pub fn target_proto_addr(&self) -> Ipv4Addr {
        read_ipv4(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes the fixed part: Ethernet hardware, IPv4 protocol, their lengths.
    #[inline]
    pub fn set_header(&mut self) {
        let data = self.buffer.as_mut();
        write_u16(&mut data[field::HTYPE], HTYPE_ETHERNET);
        write_u16(&mut data[field::PTYPE], ethertype::IPV4);
        data[field::HLEN] = 6;
        data[field::PLEN] = 4;
    }

    #[inline]
    pub fn set_operation(&mut self, operation: u16) {
        write_u16(&mut self.buffer.as_mut()[field::OPER], operation);
    }

    #[inline]
    pub fn set_sender_hw_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_sender_proto_addr(&mut self, addr: Ipv4Addr) {
        write_ipv4(&mut self.buffer.as_mut()[field::SPA], addr);
    }

    #[inline]
    pub fn set_target_hw_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_target_proto_addr(&mut self, addr: Ipv4Addr) {
        write_ipv4(&mut self.buffer.as_mut()[field::TPA], addr);
    }
}

/// The meaningful content of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// See [`operation`].
    pub operation: u16,
    pub sender_hw: EthernetAddress,
    pub sender_ip: Ipv4Addr,
    pub target_hw: EthernetAddress,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads a packet. Cannot fail: `ArpPacket::new_checked` has already
    /// refused anything but Ethernet/IPv4. Any operation code is passed
    /// through; the caller decides what to do with it.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> ArpRepr {
        ArpRepr {
            operation: packet.operation(),
            sender_hw: packet.sender_hw_addr(),
            sender_ip: packet.sender_proto_addr(),
            target_hw: packet.target_hw_addr(),
            target_ip: packet.target_proto_addr(),
        }
    }

    /// Bytes needed by [`ArpRepr::emit`].
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        field::TPA.end
    }

    /// Writes the whole 28-byte packet. The buffer must be at least that long.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_header();
        packet.set_operation(self.operation);
        packet.set_sender_hw_addr(self.sender_hw);
        packet.set_sender_proto_addr(self.sender_ip);
        packet.set_target_hw_addr(self.target_hw);
        packet.set_target_proto_addr(self.target_ip);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// "Who has 192.168.1.1? Tell 192.168.1.10", from a Linux host.
    pub(crate) static REQUEST: [u8; 28] = [
        0x00, 0x01, // hardware type: Ethernet
        0x08, 0x00, // protocol type: IPv4
        0x06, // hardware address length
        0x04, // protocol address length
        0x00, 0x01, // operation: request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sender MAC: 52:54:00:12:34:56
        0xc0, 0xa8, 0x01, 0x0a, // sender IP: 192.168.1.10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC: unknown
        0xc0, 0xa8, 0x01, 0x01, // target IP: 192.168.1.1
    ];

    /// "192.168.1.1 is at 00:16:3e:7a:1b:2c", the gateway's answer.
    pub(crate) static REPLY: [u8; 28] = [
        0x00, 0x01, // hardware type: Ethernet
        0x08, 0x00, // protocol type: IPv4
        0x06, // hardware address length
        0x04, // protocol address length
        0x00, 0x02, // operation: reply
        0x00, 0x16, 0x3e, 0x7a, 0x1b, 0x2c, // sender MAC: 00:16:3e:7a:1b:2c
        0xc0, 0xa8, 0x01, 0x01, // sender IP: 192.168.1.1
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // target MAC: 52:54:00:12:34:56
        0xc0, 0xa8, 0x01, 0x0a, // target IP: 192.168.1.10
    ];

    const HOST_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    const GW_MAC: EthernetAddress = EthernetAddress([0x00, 0x16, 0x3e, 0x7a, 0x1b, 0x2c]);
    const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const GW_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);

    fn request_repr() -> ArpRepr {
        ArpRepr {
            operation: operation::REQUEST,
            sender_hw: HOST_MAC,
            sender_ip: HOST_IP,
            target_hw: EthernetAddress::default(),
            target_ip: GW_IP,
        }
    }

    fn reply_repr() -> ArpRepr {
        ArpRepr {
            operation: operation::REPLY,
            sender_hw: GW_MAC,
            sender_ip: GW_IP,
            target_hw: HOST_MAC,
            target_ip: HOST_IP,
        }
    }

    #[test]
    fn read_every_field() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!(p.hardware_len(), 6);
        assert_eq!(p.protocol_len(), 4);
        assert_eq!(p.operation(), operation::REQUEST);
        assert_eq!(p.sender_hw_addr(), HOST_MAC);
        assert_eq!(p.sender_proto_addr(), HOST_IP);
        assert_eq!(p.target_hw_addr(), EthernetAddress([0; 6]));
        assert_eq!(p.target_proto_addr(), GW_IP);
        assert_eq!(ArpRepr::parse(&p), request_repr());

        let p = ArpPacket::new_checked(&REPLY[..]).unwrap();
        assert_eq!(p.operation(), operation::REPLY);
        assert_eq!(p.sender_hw_addr(), GW_MAC);
        assert_eq!(p.sender_proto_addr(), GW_IP);
        assert_eq!(p.target_hw_addr(), HOST_MAC);
        assert_eq!(p.target_proto_addr(), HOST_IP);
        assert_eq!(ArpRepr::parse(&p), reply_repr());
    }

    #[test]
    fn build_from_scratch() {
        let mut bytes = [0xa5u8; 28];
        let mut p = ArpPacket::new_unchecked(&mut bytes[..]);
        p.set_header();
        p.set_operation(operation::REQUEST);
        p.set_sender_hw_addr(HOST_MAC);
        p.set_sender_proto_addr(HOST_IP);
        p.set_target_hw_addr(EthernetAddress([0; 6]));
        p.set_target_proto_addr(GW_IP);
        assert_eq!(bytes, REQUEST);

        let mut bytes = [0xa5u8; 28];
        let repr = reply_repr();
        assert_eq!(repr.buffer_len(), 28);
        repr.emit(&mut ArpPacket::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, REPLY);
    }

    #[test]
    fn inside_a_padded_frame() {
        let frame =
            crate::wire::EthernetFrame::new_checked(&crate::wire::ethernet::tests::FRAME[..])
                .unwrap();
        assert_eq!(frame.payload().len(), 46);
        let p = ArpPacket::new_checked(frame.payload()).unwrap();
        assert_eq!(ArpRepr::parse(&p), request_repr());
    }

    #[test]
    fn rejects_truncated_and_foreign() {
        for len in 0..28 {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..len]),
                Err(WireError::Truncated)
            );
        }
        // (offset, byte) changes that make it something other than Ethernet/IPv4.
        for (at, value) in [
            (1, 6),
            (0, 1),
            (3, 0xdd),
            (2, 0x86),
            (4, 8),
            (5, 16),
            (5, 0),
        ] {
            let mut bad = REQUEST;
            bad[at] = value;
            assert_eq!(ArpPacket::new_checked(&bad[..]), Err(WireError::Malformed));
        }
    }
}
