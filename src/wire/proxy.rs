//! The PROXY protocol, version 2 (HAProxy's specification): a binary header
//! a proxy puts at the start of a TCP stream so that the server behind it
//! learns the original connection's addresses. sluice writes the one form it
//! needs, the PROXY command for TCP over IPv4, always 28 bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 0..12 | signature `\r\n\r\n\0\r\nQUIT\n` |
//! | 12 | version 2 (high nibble), command PROXY (1) |
//! | 13 | family AF_INET (1, high nibble), transport STREAM (1) |
//! | 14..16 | length of what follows: 12 |
//! | 16..20 | source address (the client) |
//! | 20..24 | destination address (the VIP) |
//! | 24..26 | source port |
//! | 26..28 | destination port |
//!
//! All in network order. The view reads any v2 header far enough to check
//! it (tests and tools read what sluice wrote); `ProxyV2Repr` emits ours.

use super::{read_u16, write_u16, Field, Result, WireError};
use std::net::{Ipv4Addr, SocketAddrV4};

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Version 2, command PROXY.
pub const V2_PROXY: u8 = 0x21;
/// Version 2, command LOCAL (the proxy's own connection: no addresses).
pub const V2_LOCAL: u8 = 0x20;
/// AF_INET over STREAM (TCP over IPv4).
pub const TCP4: u8 = 0x11;

/// The length of a TCP-over-IPv4 header, the only one sluice writes.
pub const TCP4_LEN: usize = 28;

mod field {
    use super::Field;
    pub const SIGNATURE: Field = 0..12;
    pub const VER_CMD: usize = 12;
    pub const FAMILY: usize = 13;
    pub const LEN: Field = 14..16;
    pub const SRC_ADDR: Field = 16..20;
    pub const DST_ADDR: Field = 20..24;
    pub const SRC_PORT: Field = 24..26;
    pub const DST_PORT: Field = 26..28;
}

/// The fixed part before the addresses.
pub const HEADER_LEN: usize = 16;

/// A view of a PROXY protocol v2 header at the start of a buffer.
#[derive(Debug, Clone)]
pub struct ProxyV2Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ProxyV2Header<T> {
    pub fn new_unchecked(buffer: T) -> ProxyV2Header<T> {
        ProxyV2Header { buffer }
    }

    /// Checks the signature, the version and that the buffer holds the
    /// whole header (fixed part and the length it announces); a TCP4 header
    /// must announce at least its 12 address bytes.
    pub fn new_checked(buffer: T) -> Result<ProxyV2Header<T>> {
        let h = ProxyV2Header::new_unchecked(buffer);
        let b = h.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::SIGNATURE] != SIGNATURE || b[field::VER_CMD] >> 4 != 2 {
            return Err(WireError::Malformed);
        }
        if b.len() < h.total_len() {
            return Err(WireError::Truncated);
        }
        if h.family() == TCP4 && usize::from(h.addresses_len()) < TCP4_LEN - HEADER_LEN {
            return Err(WireError::Malformed);
        }
        Ok(h)
    }

    /// Version (high nibble) and command (low nibble).
    pub fn version_command(&self) -> u8 {
        self.buffer.as_ref()[field::VER_CMD]
    }

    /// Address family (high nibble) and transport (low nibble).
    pub fn family(&self) -> u8 {
        self.buffer.as_ref()[field::FAMILY]
    }

    /// Bytes after the fixed part (addresses and any TLVs).
    pub fn addresses_len(&self) -> u16 {
        read_u16(&self.buffer.as_ref()[field::LEN])
    }

    /// The whole header's length: what the server strips off the stream.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.addresses_len())
    }

    /// The original source and destination, for a TCP4 PROXY header.
    pub fn tcp4_addresses(&self) -> Option<(SocketAddrV4, SocketAddrV4)> {
        if self.version_command() != V2_PROXY || self.family() != TCP4 {
            return None;
        }
        let b = self.buffer.as_ref();
        let addr =
            |f: Field| Ipv4Addr::new(b[f.start], b[f.start + 1], b[f.start + 2], b[f.start + 3]);
        Some((
            SocketAddrV4::new(addr(field::SRC_ADDR), read_u16(&b[field::SRC_PORT])),
            SocketAddrV4::new(addr(field::DST_ADDR), read_u16(&b[field::DST_PORT])),
        ))
    }
}

/// The header sluice sends: PROXY, TCP over IPv4, from the client to the
/// VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyV2Repr {
    pub client: SocketAddrV4,
    pub vip: SocketAddrV4,
}

impl ProxyV2Repr {
    /// Writes the 28 bytes.
    pub fn emit(&self, out: &mut [u8; TCP4_LEN]) {
        out[field::SIGNATURE].copy_from_slice(&SIGNATURE);
        out[field::VER_CMD] = V2_PROXY;
        out[field::FAMILY] = TCP4;
        write_u16(&mut out[field::LEN], (TCP4_LEN - HEADER_LEN) as u16);
        out[field::SRC_ADDR].copy_from_slice(&self.client.ip().octets());
        out[field::DST_ADDR].copy_from_slice(&self.vip.ip().octets());
        write_u16(&mut out[field::SRC_PORT], self.client.port());
        write_u16(&mut out[field::DST_PORT], self.vip.port());
    }

    pub fn bytes(&self) -> [u8; TCP4_LEN] {
        let mut out = [0u8; TCP4_LEN];
        self.emit(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header for client 10.10.0.2:40000 to VIP 10.10.0.100:80, byte by
    /// byte as the specification lays it out.
    const CLIENT_TO_VIP: [u8; 28] = [
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, // signature
        0x21, // v2, PROXY
        0x11, // AF_INET, STREAM
        0x00, 0x0c, // 12 address bytes
        10, 10, 0, 2, // source address
        10, 10, 0, 100, // destination address
        0x9c, 0x40, // source port 40000
        0x00, 0x50, // destination port 80
    ];

    #[test]
    fn builds_the_specified_bytes() {
        let repr = ProxyV2Repr {
            client: "10.10.0.2:40000".parse().unwrap(),
            vip: "10.10.0.100:80".parse().unwrap(),
        };
        assert_eq!(repr.bytes(), CLIENT_TO_VIP);
    }

    #[test]
    fn reads_every_field() {
        let h = ProxyV2Header::new_checked(&CLIENT_TO_VIP[..]).unwrap();
        assert_eq!(h.version_command(), V2_PROXY);
        assert_eq!(h.family(), TCP4);
        assert_eq!(h.addresses_len(), 12);
        assert_eq!(h.total_len(), 28);
        assert_eq!(
            h.tcp4_addresses(),
            Some((
                "10.10.0.2:40000".parse().unwrap(),
                "10.10.0.100:80".parse().unwrap()
            ))
        );
    }

    #[test]
    fn refuses_what_is_not_a_whole_v2_header() {
        for len in 0..28 {
            assert_eq!(
                ProxyV2Header::new_checked(&CLIENT_TO_VIP[..len]).err(),
                Some(WireError::Truncated),
                "{len} bytes"
            );
        }
        let mut v1 = CLIENT_TO_VIP;
        v1[..6].copy_from_slice(b"PROXY ");
        assert_eq!(
            ProxyV2Header::new_checked(&v1[..]).err(),
            Some(WireError::Malformed)
        );
        let mut local = CLIENT_TO_VIP;
        local[12] = V2_LOCAL;
        let h = ProxyV2Header::new_checked(&local[..]).unwrap();
        assert_eq!(h.tcp4_addresses(), None, "LOCAL carries no addresses");
    }
}
