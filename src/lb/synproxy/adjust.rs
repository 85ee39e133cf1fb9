//! Rewriting the segments of a spliced connection: the client and the real
//! server each chose their own initial sequence number, timestamps clock and
//! window scale, and each must go on seeing only its peer's as it knows
//! them; and sluice may have put bytes of its own ahead of the client's (a
//! PROXY protocol header, `lb::client_address`). Every field moves by a
//! constant offset for the life of the session (window by a constant
//! shift), so a segment costs a few additions and RFC 1624 checksum
//! updates, whatever its payload.
//!
//! The offsets of a session (`Splice`) serve both directions:
//!
//! | field | client -> real | real -> client |
//! |---|---|---|
//! | sequence number | + `client_seq` (not a SYN's) | + `server_seq` |
//! | ack, SACK edges | - `server_seq` | - `client_seq`, floored at `inserted_at` |
//! | TSval | as is | + `ts` |
//! | TSecr | - `ts` | as is |
//! | window | shift `window_in` | shift `window_out` |
//!
//! `server_seq` is the SYN proxy's (its cookie minus the real's ISN);
//! `client_seq` is what sluice inserted into the client's stream (a PROXY
//! protocol header's length) at `inserted_at` (the client's ISN + 1, the
//! same number in both spaces: the real sees the client's own ISN, proxied
//! or not). The client's SYN keeps its ISN, and an ack of the real's that
//! falls inside the inserted bytes acknowledges none of the client's: it
//! reaches the client as `inserted_at`. Both offsets compose: each moves
//! its own stream.

use crate::wire::checksum;
use crate::wire::tcp_options;

/// A spliced session's offsets. 20 bytes, kept in the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Splice {
    /// Bytes sluice inserted ahead of the client's: added to client -> real
    /// sequence numbers past the SYN.
    pub client_seq: u32,
    /// Added to real -> client sequence numbers.
    pub server_seq: u32,
    /// Added to the real's TSvals on their way to the client.
    pub ts: u32,
    /// Where the inserted bytes start: the client's ISN + 1.
    pub inserted_at: u32,
    /// Shift of the window field client -> real (positive: left).
    pub window_in: i8,
    /// Shift of the window field real -> client.
    pub window_out: i8,
}

/// One direction's rewrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Adjust {
    /// Added to the sequence number.
    pub seq: u32,
    /// Subtracted from the ack number and SACK edges.
    pub ack: u32,
    pub tsval: u32,
    pub tsecr: u32,
    pub window_shift: i8,
    /// Bytes sluice inserted into the client's stream, seen from this
    /// direction.
    pub insert: Insert,
}

/// Bytes inserted at the start of the client's stream, as one direction
/// sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Insert {
    #[default]
    None,
    /// Client -> real: this many bytes go before the client's, so every
    /// sequence number but the SYN's moves up by it.
    Seq(u32),
    /// Real -> client: acks and SACK edges move down by `len`; those inside
    /// the inserted bytes (`at..at + len`) acknowledge none of the
    /// client's and become `at`.
    Ack { at: u32, len: u32 },
}

impl Insert {
    /// A real's ack or SACK edge `v` in the client's space.
    #[inline]
    pub fn ack_back(self, v: u32) -> u32 {
        match self {
            Insert::Ack { at, len } if v.wrapping_sub(at) < len => at,
            Insert::Ack { len, .. } => v.wrapping_sub(len),
            _ => v,
        }
    }
}

impl Splice {
    /// Client -> real.
    pub fn inbound(&self) -> Adjust {
        Adjust {
            seq: 0,
            ack: self.server_seq,
            tsval: 0,
            tsecr: self.ts,
            window_shift: self.window_in,
            insert: match self.client_seq {
                0 => Insert::None,
                len => Insert::Seq(len),
            },
        }
    }

    /// Real -> client.
    pub fn outbound(&self) -> Adjust {
        Adjust {
            seq: self.server_seq,
            ack: 0,
            tsval: self.ts,
            tsecr: 0,
            window_shift: self.window_out,
            insert: match self.client_seq {
                0 => Insert::None,
                len => Insert::Ack {
                    at: self.inserted_at,
                    len,
                },
            },
        }
    }
}

impl Adjust {
    pub fn is_identity(&self) -> bool {
        *self == Adjust::default()
    }
}

/// Rewrites `tcp` (a TCP segment whose header, options included, was
/// validated) by `adj`, and updates its checksum field to match. A SYN or
/// RST-only segment is handled like any other; options that are malformed
/// are left as they are.
pub fn apply(tcp: &mut [u8], adj: &Adjust) {
    if adj.is_identity() || tcp.len() < 20 {
        return;
    }
    let mut sum = u16::from_be_bytes([tcp[16], tcp[17]]);
    let syn = tcp[13] & 0x02 != 0;
    let seq = match adj.insert {
        Insert::Seq(len) if !syn => adj.seq.wrapping_add(len),
        _ => adj.seq,
    };
    if seq != 0 {
        let old = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let new = old.wrapping_add(seq);
        tcp[4..8].copy_from_slice(&new.to_be_bytes());
        sum = checksum::update_u32(sum, old, new);
    }
    let has_ack = tcp[13] & 0x10 != 0;
    let acks_back = adj.ack != 0 || matches!(adj.insert, Insert::Ack { .. });
    if acks_back && has_ack {
        let old = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
        let new = adj.insert.ack_back(old.wrapping_sub(adj.ack));
        if new != old {
            tcp[8..12].copy_from_slice(&new.to_be_bytes());
            sum = checksum::update_u32(sum, old, new);
        }
    }
    if adj.window_shift != 0 {
        let old = u16::from_be_bytes([tcp[14], tcp[15]]);
        let new = shift_window(old, adj.window_shift);
        tcp[14..16].copy_from_slice(&new.to_be_bytes());
        sum = checksum::update_u16(sum, old, new);
    }
    let header = usize::from(tcp[12] >> 4) * 4;
    if header > 20 && header <= tcp.len() && ((adj.tsval | adj.tsecr) != 0 || acks_back) {
        let before = checksum::sum(&tcp[20..header]);
        let area = &mut tcp[20..header];
        if adj.tsval | adj.tsecr != 0 {
            if let Some(at) = tcp_options::timestamp_at(area) {
                let tsval = read(area, at).wrapping_add(adj.tsval);
                let tsecr = read(area, at + 4).wrapping_sub(adj.tsecr);
                write(area, at, tsval);
                // TSecr is only meaningful with ACK; rewriting a zero would
                // turn it into garbage.
                if has_ack {
                    write(area, at + 4, tsecr);
                }
            }
        }
        if acks_back {
            if let Some((at, blocks)) = tcp_options::sack_blocks(area) {
                for i in 0..blocks * 2 {
                    let edge = at + 4 * i;
                    let v = adj.insert.ack_back(read(area, edge).wrapping_sub(adj.ack));
                    write(area, edge, v);
                }
            }
        }
        // The option area starts on an even offset and its length is a
        // multiple of 4, so its 16-bit words are the checksum's words.
        let after = checksum::sum(&tcp[20..header]);
        sum = update_sum(sum, before, after);
    }
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
}

/// A checksum field after data whose plain sum was `before` now sums to
/// `after` (RFC 1624 over a whole region).
fn update_sum(field: u16, before: u32, after: u32) -> u16 {
    let before = checksum::fold(before);
    let after = checksum::fold(after);
    !checksum::fold(u32::from(!field) + u32::from(!before) + u32::from(after))
}

fn read(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn write(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// A window field rescaled: `shift` > 0 multiplies (saturating at the
/// field's maximum), < 0 divides.
pub fn shift_window(window: u16, shift: i8) -> u16 {
    if shift >= 0 {
        let w = u32::from(window) << shift.min(16);
        w.min(0xffff) as u16
    } else {
        // In u32: a u16 shifted by 16 overflows (and -(-128) does in i8).
        (u32::from(window) >> shift.unsigned_abs().min(16)) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::TcpPacket;
    use std::net::Ipv4Addr;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A data segment with timestamps and two SACK blocks, checksummed.
    fn segment(seq: u32, ack: u32) -> Vec<u8> {
        let opts = [
            1, 1, 8, 10, 0, 0, 0x10, 0, 0, 0, 0x20, 0, // NOP NOP TS 4096 8192
            1, 1, 5, 18, 0, 0, 0x30, 0, 0, 0, 0x40, 0, 0, 0, 0x50, 0, 0, 0, 0x60, 0,
        ];
        let mut t = vec![0u8; 20 + opts.len() + 5];
        {
            let mut p = TcpPacket::new_unchecked(&mut t[..]);
            p.set_src_port(1000);
            p.set_dst_port(80);
            p.set_seq_number(seq);
            p.set_ack_number(ack);
            p.set_header_len(20 + opts.len());
            p.set_ack(true);
            p.set_window_len(1000);
        }
        t[20..20 + opts.len()].copy_from_slice(&opts);
        t[20 + opts.len()..].copy_from_slice(b"hello");
        TcpPacket::new_unchecked(&mut t[..]).fill_checksum(A, B);
        t
    }

    #[test]
    fn every_field_moves_and_the_checksum_stays_valid() {
        let s = Splice {
            client_seq: 30,
            server_seq: 0xffff_fff0,
            ts: 1_000_000,
            inserted_at: 0,
            window_in: 0,
            window_out: -2,
        };
        let mut t = segment(0x8000_0000, 100);
        apply(&mut t, &s.inbound());
        let p = TcpPacket::new_checked(&t[..]).unwrap();
        assert!(p.verify_checksum(A, B));
        assert_eq!(p.seq_number(), 0x8000_001e);
        assert_eq!(p.ack_number(), 100u32.wrapping_sub(0xffff_fff0));
        let area = &t[20..52];
        assert_eq!(read(area, 4), 4096, "TSval as is client -> real");
        assert_eq!(read(area, 8), 8192u32.wrapping_sub(1_000_000));
        assert_eq!(read(area, 16), 0x3000u32.wrapping_sub(0xffff_fff0));
        assert_eq!(read(area, 28), 0x6000u32.wrapping_sub(0xffff_fff0));

        let mut t = segment(5, 7);
        apply(&mut t, &s.outbound());
        let p = TcpPacket::new_checked(&t[..]).unwrap();
        assert!(p.verify_checksum(A, B));
        assert_eq!(p.window_len(), 250, "1000 >> 2");
        assert_eq!(read(&t[20..52], 4), 4096 + 1_000_000);
    }

    #[test]
    fn in_then_back_restores_every_byte() {
        let s = Splice {
            client_seq: 12,
            server_seq: 0x1234_5678,
            ts: 77,
            inserted_at: 0,
            window_in: 0,
            window_out: 0,
        };
        let orig = segment(1, 2);
        let mut t = orig.clone();
        apply(&mut t, &s.inbound());
        let back = Adjust {
            seq: 0u32.wrapping_sub(12),
            ack: 0u32.wrapping_sub(0x1234_5678),
            tsval: 0,
            tsecr: 0u32.wrapping_sub(77),
            window_shift: 0,
            insert: Insert::None,
        };
        apply(&mut t, &back);
        assert_eq!(t, orig);
    }

    #[test]
    fn inserted_bytes_move_the_clients_stream_and_never_ack_the_client() {
        // 28 bytes at 1001 (the client's ISN was 1000), no SYN proxy.
        let s = Splice {
            client_seq: 28,
            inserted_at: 1001,
            ..Splice::default()
        };
        // The SYN keeps its ISN.
        let mut syn = segment(1000, 0);
        syn[13] = 0x02;
        TcpPacket::new_unchecked(&mut syn[..]).fill_checksum(A, B);
        let before = syn.clone();
        apply(&mut syn, &s.inbound());
        assert_eq!(syn, before);
        // Data moves past the header.
        let mut t = segment(1001, 5000);
        apply(&mut t, &s.inbound());
        let p = TcpPacket::new_checked(&t[..]).unwrap();
        assert!(p.verify_checksum(A, B));
        assert_eq!((p.seq_number(), p.ack_number()), (1029, 5000));
        // The real's acks: inside the header -> the client's first byte;
        // past it -> moved back. SACK edges likewise.
        for (ack, seen) in [
            (1001, 1001),
            (1010, 1001),
            (1028, 1001),
            (1029, 1001),
            (1034, 1006),
        ] {
            let mut t = segment(5000, ack);
            apply(&mut t, &s.outbound());
            let p = TcpPacket::new_checked(&t[..]).unwrap();
            assert!(p.verify_checksum(A, B));
            assert_eq!(p.ack_number(), seen, "ack {ack}");
            assert_eq!(p.seq_number(), 5000);
        }
        let mut t = segment(5000, 1029);
        t[36..52].copy_from_slice(
            &[1001u32, 1029, 2029, 3029]
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect::<Vec<_>>(),
        );
        TcpPacket::new_unchecked(&mut t[..]).fill_checksum(A, B);
        apply(&mut t, &s.outbound());
        assert!(TcpPacket::new_checked(&t[..])
            .unwrap()
            .verify_checksum(A, B));
        let edges: Vec<u32> = (0..4).map(|i| read(&t[36..52], 4 * i)).collect();
        assert_eq!(edges, [1001, 1001, 2001, 3001]);
    }

    #[test]
    fn windows_saturate_and_odd_segments_do_not_panic() {
        assert_eq!(shift_window(0x4000, 3), 0xffff);
        assert_eq!(shift_window(100, 1), 200);
        assert_eq!(shift_window(100, -7), 0);
        // Found by the synproxy_adjust fuzzer: shifts of 16 and more
        // overflowed (in release builds, -16 left the window unchanged).
        assert_eq!(shift_window(0xffff, -16), 0);
        assert_eq!(shift_window(0xffff, -128), 0);
        assert_eq!(shift_window(1, 127), 0xffff);
        let adj = Adjust {
            seq: 1,
            ack: 1,
            tsval: 1,
            tsecr: 1,
            window_shift: 1,
            insert: Insert::Seq(28),
        };
        for len in 0..64 {
            let mut t = vec![0xffu8; len];
            apply(&mut t, &adj);
        }
        // A header length that lies past the buffer: options untouched.
        let mut t = segment(1, 1);
        t[12] = 0xf0;
        t.truncate(40);
        apply(&mut t, &adj);
    }
}
