//! The `synproxy_adjust` target: a spliced session's rewrite of one
//! segment, `lb::synproxy::adjust::apply`.
//!
//! Input: client_seq (the bytes sluice inserted into the client's stream,
//! e.g. a PROXY header), server_seq, ts, inserted_at (u32 LE each),
//! window_in, window_out
//! (i8), a control byte (bit 0: outbound, else inbound; bit 1: fill the
//! segment's checksum first; bit 2: SYN/ACK flags from bits 3-4), then
//! the TCP segment.
//!
//! Invariants: no panic on any segment; the segment's length never
//! changes; of a well-formed segment (header length within it) whose
//! checksum was valid, the checksum stays valid; and with windows left as
//! they are, the inverse offsets restore every byte (the checksum field
//! up to the two forms of ones' complement zero, 0x0000 and 0xffff),
//! except toward the client after an insert, where acks inside the
//! inserted bytes are floored (not invertible by design).

use crate::net::{self, Reader};
use sluice::lb::synproxy::adjust::{apply, Adjust, Insert, Splice};
use std::net::Ipv4Addr;

const A: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 2);

fn pseudo_sum(len: usize) -> u64 {
    net::sum(&A.octets()) + net::sum(&B.octets()) + u64::from(net::TCP) + len as u64
}

fn checksum_valid(seg: &[u8]) -> bool {
    net::fold(pseudo_sum(seg.len()) + net::sum(seg)) == 0xffff
}

fn well_formed(seg: &[u8]) -> bool {
    seg.len() >= 20 && (20..=seg.len()).contains(&(usize::from(seg[12] >> 4) * 4))
}

/// The adjustment that undoes `adj` (windows aside).
fn inverse(adj: &Adjust) -> Adjust {
    Adjust {
        seq: adj.seq.wrapping_neg(),
        ack: adj.ack.wrapping_neg(),
        tsval: adj.tsval.wrapping_neg(),
        tsecr: adj.tsecr.wrapping_neg(),
        window_shift: 0,
        insert: match adj.insert {
            Insert::Seq(len) => Insert::Seq(len.wrapping_neg()),
            other => other,
        },
    }
}

pub fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let splice = Splice {
        client_seq: r.u32(),
        server_seq: r.u32(),
        ts: r.u32(),
        inserted_at: r.u32(),
        window_in: r.u8() as i8,
        window_out: r.u8() as i8,
    };
    let control = r.u8();
    let mut seg = r.rest().to_vec();
    if control & 4 != 0 && seg.len() > 13 {
        let syn = (control >> 3) & 1;
        let ack = (control >> 4) & 1;
        seg[13] = (seg[13] & !0x12) | syn << 1 | ack << 4;
    }
    if control & 2 != 0 && seg.len() >= 20 {
        seg[16..18].copy_from_slice(&[0, 0]);
        let c = !net::fold(pseudo_sum(seg.len()) + net::sum(&seg));
        seg[16..18].copy_from_slice(&c.to_be_bytes());
    }
    let adj = if control & 1 != 0 {
        splice.outbound()
    } else {
        splice.inbound()
    };
    let orig = seg.clone();
    let valid = well_formed(&seg) && checksum_valid(&seg);
    apply(&mut seg, &adj);
    assert_eq!(seg.len(), orig.len());
    if valid {
        assert!(
            checksum_valid(&seg),
            "the checksum went bad: {adj:?}\n{orig:02x?}\n{seg:02x?}"
        );
    }
    if !well_formed(&orig) {
        return;
    }
    if adj.window_shift == 0 && !matches!(adj.insert, Insert::Ack { .. }) {
        apply(&mut seg, &inverse(&adj));
        let field = |s: &[u8]| u16::from_be_bytes([s[16], s[17]]);
        let zero = |v: u16| v == 0 || v == 0xffff;
        let (a, b) = (field(&orig), field(&seg));
        assert!(
            a == b || zero(a) && zero(b),
            "the checksum field is not restored: {a:04x} -> {b:04x}"
        );
        seg[16..18].copy_from_slice(&orig[16..18]);
        assert_eq!(
            seg, orig,
            "the inverse offsets do not restore the segment: {adj:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_valid_segment_with_every_option_passes() {
        let opts = [
            1u8, 1, 8, 10, 0, 0, 0x10, 0, 0, 0, 0x20, 0, 1, 1, 5, 10, 0, 0, 0x30, 0, 0, 0, 0x40, 0,
        ];
        let mut seg = vec![0u8; 20];
        seg[12] = (((20 + opts.len()) / 4) << 4) as u8;
        seg[13] = 0x10;
        seg.extend_from_slice(&opts);
        seg.extend_from_slice(b"data");
        let mut input = Vec::new();
        for v in [30u32, 0xffff_fff0, 1_000_000, 7_000] {
            input.extend_from_slice(&v.to_le_bytes());
        }
        input.extend_from_slice(&[0, 0xfe, 2]);
        input.extend_from_slice(&seg);
        super::run(&input);
        input[18] = 3;
        super::run(&input);
    }
}
