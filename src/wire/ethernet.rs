//! Ethernet II frames (untagged) and MAC addresses.

use core::fmt;
use core::str::FromStr;

use super::{read_u16, write_u16, Field, Rest, Result, WireError};

/// EtherType values sluice looks at.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    /// An 802.1Q tag; such frames are not parsed further.
    pub const VLAN: u16 = 0x8100;
}

/// A 48-bit MAC address.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// `bytes` must be exactly 6 bytes long (the views slice with a `Field`).
    #[inline]
    pub(super) fn from_field(bytes: &[u8]) -> EthernetAddress {
        let mut addr = [0; 6];
        addr.copy_from_slice(bytes);
        EthernetAddress(addr)
    }

    #[inline]
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit set (broadcast included).
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    #[inline]
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<[u8; 6]> for EthernetAddress {
    fn from(bytes: [u8; 6]) -> Self {
        EthernetAddress(bytes)
    }
}

/// A MAC address that did not parse (from a config file or the CLI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEthernetAddressError {
    input: String,
}

impl fmt::Display for ParseEthernetAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid MAC address {:?}: expected six two-digit hex bytes separated by ':' \
             or '-', like aa:bb:cc:dd:ee:ff",
            self.input
        )
    }
}

impl std::error::Error for ParseEthernetAddressError {}

serde_as_text!(EthernetAddress);

impl FromStr for EthernetAddress {
    type Err = ParseEthernetAddressError;

    /// Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff`, any case.
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let err = || ParseEthernetAddressError {
            input: s.to_owned(),
        };
        let separator = if s.contains('-') { '-' } else { ':' };
        let mut addr = [0u8; 6];
        let mut parts = s.split(separator);
        for byte in addr.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            // from_str_radix alone would also take "+f" or "f".
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(EthernetAddress(addr))
    }
}

mod field {
    use super::{Field, Rest};

    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
}

/// A view of an Ethernet II frame. The payload is everything after the
/// header, including any padding the sender added to reach 60 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub const HEADER_LEN: usize = field::PAYLOAD.start;

    /// Wraps a buffer without checking it; accessors may panic if it is short.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> EthernetFrame<T> {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after checking it holds a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<EthernetFrame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Fails with `Truncated` if the buffer is shorter than the header.
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

    #[inline]
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_field(&self.buffer.as_ref()[field::DESTINATION])
    }

    #[inline]
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_field(&self.buffer.as_ref()[field::SOURCE])
    }

    #[inline]
    pub fn ethertype(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::ETHERTYPE])
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        write_u16(&mut self.buffer.as_mut()[field::ETHERTYPE], ethertype);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for EthernetFrame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ARP request from a Linux host as captured on the wire: broadcast,
    /// padded to the 60-byte minimum (the NIC adds the FCS).
    pub(crate) static FRAME: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination: broadcast
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // source: 52:54:00:12:34:56
        0x08, 0x06, // ethertype: ARP
        // ARP: who has 192.168.1.1? tell 192.168.1.10 (see arp::tests)
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x01, 0x0a, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01, //
        // padding to 60 bytes
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    ];

    const SRC: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    #[test]
    fn read_every_field() {
        let frame = EthernetFrame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(frame.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(frame.src_addr(), SRC);
        assert_eq!(frame.ethertype(), ethertype::ARP);
        assert_eq!(frame.payload(), &FRAME[14..]);
        assert_eq!(frame.payload().len(), 46);
    }

    #[test]
    fn build_from_scratch() {
        let mut bytes = [0xa5u8; 60];
        let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
        frame.set_dst_addr(EthernetAddress::BROADCAST);
        frame.set_src_addr(SRC);
        frame.set_ethertype(ethertype::ARP);
        frame.payload_mut().copy_from_slice(&FRAME[14..]);
        assert_eq!(frame.into_inner(), &FRAME[..]);
    }

    #[test]
    fn rejects_truncated() {
        for len in 0..EthernetFrame::<&[u8]>::HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&FRAME[..len]),
                Err(WireError::Truncated)
            );
        }
        let header_only = EthernetFrame::new_checked(&FRAME[..14]).unwrap();
        assert!(header_only.payload().is_empty());
    }

    #[test]
    fn address_kinds() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        assert!(!EthernetAddress::BROADCAST.is_unicast());
        let mcast = EthernetAddress([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
        assert!(mcast.is_multicast() && !mcast.is_broadcast() && !mcast.is_unicast());
        assert!(SRC.is_unicast() && !SRC.is_multicast() && !SRC.is_broadcast());
        assert_eq!(EthernetAddress::default(), EthernetAddress([0; 6]));
    }

    #[test]
    fn address_display_and_parse() {
        assert_eq!(SRC.to_string(), "52:54:00:12:34:56");
        assert_eq!(format!("{:?}", SRC), "52:54:00:12:34:56");
        assert_eq!(EthernetAddress::BROADCAST.to_string(), "ff:ff:ff:ff:ff:ff");
        assert_eq!("52:54:00:12:34:56".parse(), Ok(SRC));
        assert_eq!("52-54-00-12-34-56".parse(), Ok(SRC));
        assert_eq!("FF:ff:fF:Ff:ff:ff".parse(), Ok(EthernetAddress::BROADCAST));
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52:54:00:12:34:5",
            "52:54:00:12:34:+5",
            "52:54:00:12:34:567",
            "52:54:00:12:34:5g",
            "52:54-00:12:34:56",
            "52:54:00:12:34:56:",
            "5254.0012.3456",
        ] {
            let err = bad.parse::<EthernetAddress>().unwrap_err();
            assert!(err.to_string().contains("invalid MAC address"), "{bad}");
        }
    }
}
