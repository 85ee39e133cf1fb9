//! Frame building and checking for the fuzz targets, written apart from
//! sluice's own `wire` module so that the checksums of what sluice sends
//! are judged by an independent implementation.

use std::net::Ipv4Addr;

pub const ETH_LEN: usize = 14;
pub const IPV4: u16 = 0x0800;
pub const ARP: u16 = 0x0806;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

/// The ones' complement sum of `data` as big-endian 16-bit words (an odd
/// last byte padded with zero), not folded.
pub fn sum(data: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        s += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = chunks.remainder() {
        s += u64::from(*b) << 8;
    }
    s
}

pub fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The checksum field that makes `data` (its field zeroed) sum to 0xffff.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u64 {
    sum(&src.octets()) + sum(&dst.octets()) + u64::from(proto) + len as u64
}

/// Whether the data, checksum field included, verifies.
fn verifies(s: u64) -> bool {
    fold(s) == 0xffff
}

/// The IPv4 packet of an Ethernet frame, cut at its total length, if its
/// header is structurally sound (version 4, lengths consistent).
pub fn ipv4_of(frame: &[u8]) -> Option<&[u8]> {
    if frame.len() < ETH_LEN + 20 || u16::from_be_bytes([frame[12], frame[13]]) != IPV4 {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() {
        return None;
    }
    Some(&ip[..total])
}

fn addrs(ip: &[u8]) -> (Ipv4Addr, Ipv4Addr) {
    (
        Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
    )
}

/// Why the checksums of a frame are not valid, if they are not: the IPv4
/// header's, and the TCP, UDP (0 = none is valid) or ICMP one of an
/// unfragmented packet. Frames that are not IPv4 have none (valid).
pub fn checksum_fault(frame: &[u8]) -> Option<&'static str> {
    if frame.len() >= ETH_LEN && u16::from_be_bytes([frame[12], frame[13]]) != IPV4 {
        return None;
    }
    let Some(ip) = ipv4_of(frame) else {
        return Some("malformed IPv4");
    };
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if !verifies(sum(&ip[..ihl])) {
        return Some("IPv4 header checksum");
    }
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if fragment {
        return None;
    }
    let (src, dst) = addrs(ip);
    let l4 = &ip[ihl..];
    match ip[9] {
        TCP if l4.len() >= 20 => {
            (!verifies(pseudo(src, dst, TCP, l4.len()) + sum(l4))).then_some("TCP checksum")
        }
        TCP => Some("short TCP"),
        UDP if l4.len() >= 8 => {
            let field = u16::from_be_bytes([l4[6], l4[7]]);
            let len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            if len < 8 || len > l4.len() {
                return Some("UDP length");
            }
            (field != 0 && !verifies(pseudo(src, dst, UDP, len) + sum(&l4[..len])))
                .then_some("UDP checksum")
        }
        UDP => Some("short UDP"),
        ICMP if l4.len() >= 8 => (!verifies(sum(l4))).then_some("ICMP checksum"),
        ICMP => Some("short ICMP"),
        _ => None,
    }
}

/// Recomputes whatever checksums the frame's structure allows (after a
/// mutation that should leave them valid).
pub fn fix_checksums(frame: &mut [u8]) {
    let Some(total) = ipv4_of(frame).map(<[u8]>::len) else {
        return;
    };
    let ip = &mut frame[ETH_LEN..ETH_LEN + total];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&ip[..ihl]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return;
    }
    let (src, dst) = addrs(ip);
    let proto = ip[9];
    let l4 = &mut ip[ihl..];
    match proto {
        TCP if l4.len() >= 20 => {
            l4[16..18].copy_from_slice(&[0, 0]);
            let c = !fold(pseudo(src, dst, TCP, l4.len()) + sum(l4));
            l4[16..18].copy_from_slice(&c.to_be_bytes());
        }
        UDP if l4.len() >= 8 => {
            let len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            if (8..=l4.len()).contains(&len) {
                l4[6..8].copy_from_slice(&[0, 0]);
                let c = !fold(pseudo(src, dst, UDP, len) + sum(&l4[..len]));
                let c = if c == 0 { 0xffff } else { c };
                l4[6..8].copy_from_slice(&c.to_be_bytes());
            }
        }
        ICMP if l4.len() >= 8 => {
            l4[2..4].copy_from_slice(&[0, 0]);
            let c = checksum(l4);
            l4[2..4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

/// What a NIC with tx checksum offload does to a frame the pipeline asked
/// it to checksum: the IPv4 header checksum from scratch; the TCP/UDP one
/// from the pseudo-header sum the driver expects in the field.
pub fn nic_offload(frame: &mut [u8], l3_len: usize, proto: u8) {
    if frame.len() < ETH_LEN + l3_len || l3_len < 20 {
        return;
    }
    let total = frame.len();
    let ip = &mut frame[ETH_LEN..];
    ip[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&ip[..l3_len]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let ip_total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(total - ETH_LEN);
    if ip_total < l3_len {
        return;
    }
    let l4 = &mut ip[l3_len..ip_total];
    let at = match proto {
        TCP if l4.len() >= 20 => 16,
        UDP if l4.len() >= 8 => 6,
        _ => return,
    };
    // The field holds the pseudo-header sum; the NIC sums the segment
    // with it and stores the complement.
    let c = !fold(sum(l4));
    let c = if proto == UDP && c == 0 { 0xffff } else { c };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// The pseudo-header sum a driver expects in the TCP/UDP field of a frame
/// whose checksums the NIC computes (folded, not complemented).
pub fn pseudo_field(frame: &[u8], l3_len: usize, proto: u8) -> Option<u16> {
    let ip = frame.get(ETH_LEN..)?;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let (src, dst) = addrs(ip.get(..20)?);
    let len = total.checked_sub(l3_len)?;
    Some(fold(pseudo(src, dst, proto, len)))
}

pub fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_LEN + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 packet (no options, DF set) around `l4`, checksums done.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = ttl;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p.extend_from_slice(l4);
    p
}

/// A whole frame: Ethernet, IPv4 and `l4`, every checksum filled.
pub fn frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = eth(dst_mac, src_mac, IPV4, &ipv4(src, dst, proto, 64, l4));
    fix_checksums(&mut f);
    f
}

/// A TCP segment (checksum left for `fix_checksums`).
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let opts_len = options.len().div_ceil(4) * 4;
    let mut t = vec![0u8; 20 + opts_len];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = (((20 + opts_len) / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&window.to_be_bytes());
    t[20..20 + options.len()].copy_from_slice(options);
    t.extend_from_slice(payload);
    t
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

pub fn icmp(kind: u8, code: u8, rest: u32, data: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(data);
    m
}

/// An ARP frame for IPv4 over Ethernet, padded to the minimum frame.
pub fn arp(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    op: u16,
    sender: ([u8; 6], Ipv4Addr),
    target: ([u8; 6], Ipv4Addr),
) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sender.0);
    a.extend_from_slice(&sender.1.octets());
    a.extend_from_slice(&target.0);
    a.extend_from_slice(&target.1.octets());
    a.resize(46, 0);
    eth(dst_mac, src_mac, ARP, &a)
}

/// TCP option bytes.
pub mod opt {
    pub fn mss(v: u16) -> [u8; 4] {
        let b = v.to_be_bytes();
        [2, 4, b[0], b[1]]
    }
    pub fn ws(shift: u8) -> [u8; 4] {
        [1, 3, 3, shift]
    }
    pub const SACK_OK: [u8; 4] = [1, 1, 4, 2];
    pub fn ts(val: u32, ecr: u32) -> [u8; 12] {
        let (v, e) = (val.to_be_bytes(), ecr.to_be_bytes());
        [1, 1, 8, 10, v[0], v[1], v[2], v[3], e[0], e[1], e[2], e[3]]
    }
    /// NOP NOP SACK with these blocks.
    pub fn sack(blocks: &[(u32, u32)]) -> Vec<u8> {
        let mut o = vec![1, 1, 5, (2 + 8 * blocks.len()) as u8];
        for (l, r) in blocks {
            o.extend_from_slice(&l.to_be_bytes());
            o.extend_from_slice(&r.to_be_bytes());
        }
        o
    }
}

/// TSval of a TCP segment's timestamp option, if it has a well-formed one.
pub fn tcp_tsval(tcp: &[u8]) -> Option<u32> {
    let hl = usize::from(*tcp.get(12)? >> 4) * 4;
    let mut o = tcp.get(20..hl)?;
    while let Some(&k) = o.first() {
        match k {
            0 => return None,
            1 => o = &o[1..],
            _ => {
                let len = usize::from(*o.get(1)?);
                if len < 2 || len > o.len() {
                    return None;
                }
                if k == 8 && len == 10 {
                    return Some(u32::from_be_bytes([o[2], o[3], o[4], o[5]]));
                }
                o = &o[len..];
            }
        }
    }
    None
}

/// A little-endian reader over fuzz input that yields zeros once it is
/// exhausted (so every input decodes to something).
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (b, rest) = self.data.split_at(n);
        self.data = rest;
        b
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_verify_and_a_flipped_bit_does_not() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        for (proto, l4) in [
            (TCP, tcp(1, 2, 3, 4, 0x12, 5, &opt::mss(1460), b"abc")),
            (UDP, udp(1, 2, b"hello")),
            (ICMP, icmp(8, 0, 7, b"ping")),
        ] {
            let mut f = frame(mac(1), mac(2), a, b, proto, &l4);
            assert_eq!(checksum_fault(&f), None);
            let last = f.len() - 1;
            f[last] ^= 1;
            assert!(checksum_fault(&f).is_some());
        }
    }

    #[test]
    fn the_nic_emulation_completes_a_pseudo_header_sum() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let mut f = frame(
            mac(1),
            mac(2),
            a,
            b,
            TCP,
            &tcp(1, 2, 3, 4, 0x10, 5, &[], b"xyz"),
        );
        let good = f.clone();
        let p = pseudo_field(&f, 20, TCP).unwrap();
        f[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&[0, 0]);
        f[ETH_LEN + 36..ETH_LEN + 38].copy_from_slice(&p.to_be_bytes());
        nic_offload(&mut f, 20, TCP);
        assert_eq!(f, good);
    }
}
