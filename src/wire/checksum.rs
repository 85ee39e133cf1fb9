//! The Internet checksum: full computation (RFC 1071) and incremental
//! update (RFC 1624), the latter being what NAT uses on every packet.
//!
//! Two kinds of value meet here and are easy to confuse:
//! - a *sum*: the ones' complement sum of some data, as returned by [`data`],
//!   [`pseudo_header`] and [`combine`] (not inverted);
//! - a checksum *field*: the complement of a sum, as stored in a header and as
//!   taken and returned by the `update_*` functions.
//!
//! To fill a field: `!combine(&[pseudo_header(..), data(..)])` with the field
//! zeroed. To verify one: the sum over the data including the field is 0xffff.

use std::net::Ipv4Addr;

/// The plain sum of `data` as big-endian 16-bit words (an odd trailing byte
/// is padded with a zero), not folded.
///
/// Exact for buffers up to 128 KiB, which covers every IP packet; a larger
/// buffer gets a value congruent modulo 0xffff, which folds the same.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        acc += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    match u32::try_from(acc) {
        Ok(acc) => acc,
        Err(_) => u32::from(fold64(acc)),
    }
}

/// Folds the carries of a 32-bit sum back into 16 bits (end-around carry).
///
/// One addition of the halves and its carry added back: an addition that
/// carried left at most 0xfffe, so adding the carry cannot carry again
/// (an add and an add-with-carry; two rounds of mask, shift and add cost
/// twice the instructions). Nonzero sums give 1..=0xffff, zero gives zero.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let (low, carry) = (sum as u16).overflowing_add((sum >> 16) as u16);
    low + u16::from(carry)
}

/// `fold` for a 64-bit sum: to 32 bits the same way, then `fold`.
#[inline]
fn fold64(sum: u64) -> u16 {
    let (low, carry) = (sum as u32).overflowing_add((sum >> 32) as u32);
    fold(low + u32::from(carry))
}

/// The ones' complement sum of `data` (not inverted).
///
/// Sums 32-bit words, half as many additions as 16-bit ones: 2^16 is 1
/// modulo 0xffff, so a word's value is congruent to the sum of its halves,
/// and the fold gives the same 16 bits (an IPv4 header is five words).
#[inline]
pub fn data(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        acc += u64::from(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
    fold64(acc + u64::from(sum(words.remainder())))
}

/// `data` of 20 bytes (an IPv4 header without options), unrolled.
#[inline]
pub fn data_20(b: &[u8; 20]) -> u16 {
    let word = |at: usize| u64::from(u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]));
    fold64(word(0) + word(4) + word(8) + word(12) + word(16))
}

/// The ones' complement sum of the IPv4 pseudo-header used by TCP and UDP
/// (not inverted). `length` is the TCP/UDP length, header included.
#[inline]
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let (src, dst) = (u32::from(src), u32::from(dst));
    fold(
        (src >> 16)
            + (src & 0xffff)
            + (dst >> 16)
            + (dst & 0xffff)
            + u32::from(protocol)
            + u32::from(length),
    )
}

/// The ones' complement sum of several partial sums (not inverted).
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold64(sums.iter().map(|&s| u64::from(s)).sum())
}

/// A checksum field after a 16-bit word it covers changes from `old` to `new`:
/// RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`.
///
/// Eqn. 3 (unlike eqn. 2) gives the same field a full recomputation would,
/// including 0x0000 where the new data sums to 0xffff.
#[inline]
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    Delta::default().word(old, new).apply(checksum)
}

/// [`update_u16`] for a 32-bit field aligned on a 16-bit word (an IPv4
/// address, a TCP sequence number), i.e. for both of its words at once.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    Delta::default().u32(old, new).apply(checksum)
}

/// [`update_u32`] for an IPv4 address: use it on the IPv4 header checksum
/// and, for the pseudo-header, on the TCP/UDP checksum.
#[inline]
pub fn update_addr(checksum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_u32(checksum, u32::from(old), u32::from(new))
}

/// Several changes to the words one checksum field covers, applied to the
/// field at once: RFC 1624 eqn. 3 summed over every change, with a single
/// fold at the end instead of one per change (what a NAT rewrite of two
/// addresses, two ports and a TTL costs). Ones' complement sums are sums
/// modulo 0xffff, so a 32-bit field goes in as one number, and an
/// unchanged field (`!x + x`) adds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delta(u64);

impl Delta {
    /// A 16-bit word changes from `old` to `new`.
    #[inline]
    pub fn word(self, old: u16, new: u16) -> Delta {
        Delta(self.0 + u64::from(!old) + u64::from(new))
    }

    /// A 32-bit field on a 16-bit boundary changes from `old` to `new`.
    #[inline]
    pub fn u32(self, old: u32, new: u32) -> Delta {
        Delta(self.0 + u64::from(!old) + u64::from(new))
    }

    /// An IPv4 address changes from `old` to `new`.
    #[inline]
    pub fn addr(self, old: Ipv4Addr, new: Ipv4Addr) -> Delta {
        self.u32(u32::from(old), u32::from(new))
    }

    /// The checksum field `checksum` after the changes.
    #[inline]
    pub fn apply(self, checksum: u16) -> u16 {
        !fold64(self.0 + u64::from(!checksum))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ipv4, Ipv4Packet, TcpPacket, UdpPacket};

    #[test]
    fn data_20_is_data() {
        let mut x: u32 = 0xdead_beef;
        for _ in 0..1000 {
            let mut h = [0u8; 20];
            for b in &mut h {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            assert_eq!(data_20(&h), data(&h));
        }
        assert_eq!(data_20(&[0; 20]), 0);
        assert_eq!(data_20(&[0xff; 20]), 0xffff);
    }

    #[test]
    fn data_by_words_is_the_sum_by_halves() {
        let bytes: Vec<u8> = (0..67u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..bytes.len() {
            let d = &bytes[..len];
            assert_eq!(data(d), fold(sum(d)), "{len} bytes");
        }
        assert_eq!(data(&[0xff; 20]), 0xffff);
        assert_eq!(data(&[0; 20]), 0);
    }

    #[test]
    fn delta_is_eqn3_word_by_word() {
        // Pseudo-random fields and changes, against RFC 1624 eqn. 3 applied
        // one 16-bit word at a time, folding after each.
        let eqn3 =
            |c: u16, old: u16, new: u16| !fold(u32::from(!c) + u32::from(!old) + u32::from(new));
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..10_000 {
            let field = next() as u16;
            let (a_old, a_new) = (next() as u32, next() as u32);
            let (w_old, w_new) = (next() as u16, next() as u16);
            let halves = eqn3(field, (a_old >> 16) as u16, (a_new >> 16) as u16);
            let halves = eqn3(halves, a_old as u16, a_new as u16);
            let one_by_one = eqn3(halves, w_old, w_new);
            let delta = Delta::default()
                .addr(Ipv4Addr::from(a_old), Ipv4Addr::from(a_new))
                .word(w_old, w_new)
                .apply(field);
            assert_eq!(delta, one_by_one);
        }
        // Nothing changed: the field stays.
        assert_eq!(Delta::default().word(7, 7).apply(0x1234), 0x1234);
    }

    /// A deliberately naive reference: byte by byte, carries folded at the end.
    fn reference_field(chunks: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = chunks.concat();
        let mut s: u64 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            s += if i % 2 == 0 {
                u64::from(b) << 8
            } else {
                u64::from(b)
            };
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    fn pseudo_bytes(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&src.octets());
        v.extend_from_slice(&dst.octets());
        v.extend_from_slice(&[0, protocol]);
        v.extend_from_slice(&(len as u16).to_be_bytes());
        v
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn addr(&mut self) -> Ipv4Addr {
            Ipv4Addr::from(self.next() as u32)
        }
    }

    #[test]
    fn folds_are_the_sum_modulo_0xffff() {
        // What a fold must give: the sum modulo 0xffff, as 1..=0xffff for
        // a nonzero sum (0xffff is ones' complement's "minus zero").
        fn reference(sum: u64) -> u16 {
            match sum {
                0 => 0,
                s => match (s % 0xffff) as u16 {
                    0 => 0xffff,
                    r => r,
                },
            }
        }
        let edges = [
            0u64,
            1,
            0xfffe,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0xffff_ffff,
            0x1_0000_0000,
            0xffff_ffff_0000_0001,
            0xffff_fffe_ffff_ffff,
            u64::MAX,
        ];
        let spread = (0..200_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for sum in edges.into_iter().chain(spread) {
            assert_eq!(fold64(sum), reference(sum), "{sum:#x}");
            let low = sum as u32;
            assert_eq!(fold(low), reference(u64::from(low)), "{low:#x}");
        }
    }

    #[test]
    fn sum_and_fold() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[0xff; 8]), 4 * 0xffff);
        assert_eq!(fold(0x0001_fffe), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0), 0);
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(
            data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
        assert_eq!(combine(&[0xffff, 0xffff, 0x0001]), 0x0001);
        assert_eq!(combine(&[]), 0);
        // Beyond what a u32 holds exactly, still congruent.
        let big = vec![0xffu8; 300_000];
        assert_eq!(data(&big), 0xffff);
        let big = vec![0x01u8; 300_001];
        assert_eq!(!data(&big), reference_field(&[&big]));
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        for _ in 0..1000 {
            let (src, dst) = (rng.addr(), rng.addr());
            let len = (rng.next() & 0xffff) as usize;
            let proto = rng.next() as u8;
            assert_eq!(
                !pseudo_header(src, dst, proto, len as u16),
                reference_field(&[&pseudo_bytes(src, dst, proto, len)])
            );
        }
    }

    #[test]
    fn rfc1624_corner_case() {
        // RFC 1624 section 3: the other header words sum to 0xcd7a and a
        // field changes from 0x5555 to 0x3285. Eqn. 3 gives 0x0000 (what a
        // full recomputation gives); eqn. 2 would have given 0xffff.
        let before = !fold(0xcd7a + 0x5555);
        assert_eq!(before, 0xdd2f);
        assert_eq!(update_u16(before, 0x5555, 0x3285), 0x0000);
        assert_eq!(!fold(0xcd7a + 0x3285), 0x0000);
        // And back.
        assert_eq!(update_u16(0x0000, 0x3285, 0x5555), 0xdd2f);
        // The same through update_u32, with the other half unchanged.
        assert_eq!(update_u32(before, 0x5555_0000, 0x3285_0000), 0x0000);
        // An unchanged field leaves a (non-degenerate) checksum as it is.
        for c in [0x0000u16, 0x0001, 0x1234, 0xfffe] {
            assert_eq!(update_u16(c, 0xabcd, 0xabcd), c);
        }
    }

    #[test]
    fn update_matches_recompute_on_random_words() {
        // Random 20-byte "headers" with the checksum field at 10..12; rewrite
        // one other word at random, every fourth time choosing the new value
        // so that the data sums to 0xffff (full checksum 0x0000).
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        let mut zero_fields = 0;
        for round in 0..20_000 {
            let mut hdr = [0u8; 20];
            for b in hdr.iter_mut() {
                *b = rng.next() as u8;
            }
            hdr[10..12].fill(0);
            let field = !data(&hdr);
            hdr[10..12].copy_from_slice(&field.to_be_bytes());
            let at = [0, 2, 4, 6, 8, 12, 14, 16, 18][(rng.next() % 9) as usize];
            let old = u16::from_be_bytes([hdr[at], hdr[at + 1]]);
            let new = if round % 4 == 0 {
                let mut others = hdr;
                others[10..12].fill(0);
                others[at..at + 2].fill(0);
                !data(&others)
            } else {
                rng.next() as u16
            };
            hdr[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let incremental = update_u16(field, old, new);
            hdr[10..12].fill(0);
            let full = !data(&hdr);
            assert_eq!(incremental, full, "round {round}");
            assert_eq!(full, reference_field(&[&hdr]));
            zero_fields += usize::from(full == 0);
        }
        assert!(
            zero_fields >= 4000,
            "corner case exercised {zero_fields} times"
        );
    }

    /// Rewrites addresses, TTL and ports the way NAT does, updating the
    /// checksums incrementally, and checks them against full recomputation.
    fn nat_rewrites(ip_bytes: &[u8], seed: u64) {
        let mut rng = XorShift(seed);
        let mut buf = ip_bytes.to_vec();
        for _ in 0..5000 {
            let mut ip = Ipv4Packet::new_checked(&mut buf[..]).unwrap();
            let (old_src, old_dst) = (ip.src_addr(), ip.dst_addr());
            let (new_src, new_dst) = (rng.addr(), rng.addr());
            let old_ttl_word = u16::from_be_bytes([ip.ttl(), ip.protocol()]);
            let new_ttl = rng.next() as u8;
            let new_ttl_word = u16::from_be_bytes([new_ttl, ip.protocol()]);

            let mut c = ip.checksum();
            c = update_addr(c, old_src, new_src);
            c = update_addr(c, old_dst, new_dst);
            c = update_u16(c, old_ttl_word, new_ttl_word);
            ip.set_src_addr(new_src);
            ip.set_dst_addr(new_dst);
            ip.set_ttl(new_ttl);
            ip.set_checksum(c);
            assert!(ip.verify_checksum());
            let incremental = ip.checksum();
            ip.fill_checksum();
            assert_eq!(incremental, ip.checksum());

            let protocol = ip.protocol();
            let (new_sport, new_dport) = (rng.next() as u16, rng.next() as u16);
            let payload = ip.payload_mut();
            match protocol {
                ipv4::protocol::TCP => {
                    let mut tcp = TcpPacket::new_checked(payload).unwrap();
                    let mut c = tcp.checksum();
                    c = update_addr(c, old_src, new_src);
                    c = update_addr(c, old_dst, new_dst);
                    c = update_u16(c, tcp.src_port(), new_sport);
                    c = update_u16(c, tcp.dst_port(), new_dport);
                    tcp.set_src_port(new_sport);
                    tcp.set_dst_port(new_dport);
                    tcp.set_checksum(c);
                    assert!(tcp.verify_checksum(new_src, new_dst));
                    tcp.fill_checksum(new_src, new_dst);
                    assert_eq!(c, tcp.checksum());
                    let bytes = tcp.into_inner();
                    let mut zeroed = bytes.to_vec();
                    zeroed[16] = 0;
                    zeroed[17] = 0;
                    let pseudo = pseudo_bytes(new_src, new_dst, 6, bytes.len());
                    assert_eq!(c, reference_field(&[&pseudo, &zeroed]));
                }
                ipv4::protocol::UDP => {
                    let mut udp = UdpPacket::new_checked(payload).unwrap();
                    let mut c = udp.checksum();
                    c = update_addr(c, old_src, new_src);
                    c = update_addr(c, old_dst, new_dst);
                    c = update_u16(c, udp.src_port(), new_sport);
                    c = update_u16(c, udp.dst_port(), new_dport);
                    // UDP sends a computed 0 as 0xffff (0 means "no checksum").
                    if c == 0 {
                        c = 0xffff;
                    }
                    udp.set_src_port(new_sport);
                    udp.set_dst_port(new_dport);
                    udp.set_checksum(c);
                    assert!(udp.verify_checksum(new_src, new_dst));
                    udp.fill_checksum(new_src, new_dst);
                    assert_eq!(c, udp.checksum());
                }
                _ => unreachable!(),
            }
            let ip = Ipv4Packet::new_checked(&buf[..]).unwrap();
            let mut header = buf[..ip.header_len()].to_vec();
            header[10] = 0;
            header[11] = 0;
            assert_eq!(ip.checksum(), reference_field(&[&header]));
        }
    }

    #[test]
    fn nat_rewrite_tcp_matches_recompute() {
        nat_rewrites(&crate::wire::tcp::tests::SYN_PACKET, 0x0123_4567_89ab_cdef);
    }

    #[test]
    fn nat_rewrite_udp_matches_recompute() {
        nat_rewrites(&crate::wire::udp::tests::DNS_PACKET, 0xfedc_ba98_7654_3210);
    }
}
