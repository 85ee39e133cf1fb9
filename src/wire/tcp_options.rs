//! TCP options (RFC 9293 3.2, RFC 7323, RFC 2018): reading them off a
//! segment, writing the set a SYN or SYN-ACK carries, and finding the ones
//! a sequence-number translation must rewrite in place (timestamps, SACK
//! blocks).
//!
//! Options come from the network: every reader is bounded by the option
//! area and stops at the first malformed option (a length below 2 or past
//! the end), never panics, and never loops more than once per byte.

/// Option kinds.
pub mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
    /// TOA ("TCP option address"), as the TOA kernel module of Alibaba's
    /// FULLNAT and DPVS reads it: the client's port and IPv4 address.
    pub const TOA: u8 = 254;
}

/// A TOA option's length: kind, length, port (2), IPv4 address (4).
pub const TOA_LEN: usize = 8;

/// The most option bytes a TCP header holds (data offset 15 words).
pub const MAX_AREA: usize = 40;

/// The TOA option naming `client`, in network order.
pub fn toa(client: std::net::SocketAddrV4) -> [u8; TOA_LEN] {
    let [p0, p1] = client.port().to_be_bytes();
    let [a, b, c, d] = client.ip().octets();
    [kind::TOA, TOA_LEN as u8, p0, p1, a, b, c, d]
}

/// The client a well-formed TOA option in `area` names.
pub fn toa_client(area: &[u8]) -> Option<std::net::SocketAddrV4> {
    let f = walk(area).find(|f| f.kind == kind::TOA && f.len == TOA_LEN)?;
    let o = &area[f.at..f.at + TOA_LEN];
    Some(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::new(o[4], o[5], o[6], o[7]),
        u16_at(o, 2),
    ))
}

/// Offset, within `area`, of the value of a well-formed MSS option.
pub fn mss_at(area: &[u8]) -> Option<usize> {
    walk(area)
        .find(|f| f.kind == kind::MSS && f.len == 4)
        .map(|f| f.at + 2)
}

/// The largest window scale (RFC 7323 2.3).
pub const MAX_WINDOW_SCALE: u8 = 14;

/// One option as found in the option area, with its offset there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub kind: u8,
    /// Offset of the kind byte within the option area.
    pub at: usize,
    /// Total length (kind and length bytes included); 1 for NOP.
    pub len: usize,
}

/// Walks the options in `area` (the bytes between the fixed header and the
/// data). Stops at END, at the end of the area, or at a malformed option.
pub fn walk(area: &[u8]) -> impl Iterator<Item = Found> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let &k = area.get(at)?;
        match k {
            kind::END => None,
            kind::NOP => {
                at += 1;
                Some(Found {
                    kind: k,
                    at: at - 1,
                    len: 1,
                })
            }
            _ => {
                let len = usize::from(*area.get(at + 1)?);
                if len < 2 || at + len > area.len() {
                    return None;
                }
                let found = Found { kind: k, at, len };
                at += len;
                Some(found)
            }
        }
    })
}

/// What a SYN or SYN-ACK negotiates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl SynOptions {
    /// Reads the options of `area`; what is malformed or of the wrong
    /// length is ignored.
    pub fn parse(area: &[u8]) -> SynOptions {
        let mut o = SynOptions::default();
        for f in walk(area) {
            let at = f.at;
            match (f.kind, f.len) {
                (kind::MSS, 4) => o.mss = Some(u16_at(area, at + 2)),
                (kind::WINDOW_SCALE, 3) => {
                    o.window_scale = Some(area[at + 2].min(MAX_WINDOW_SCALE));
                }
                (kind::SACK_PERMITTED, 2) => o.sack_permitted = true,
                (kind::TIMESTAMP, 10) => {
                    o.timestamp = Some((u32_at(area, at + 2), u32_at(area, at + 6)))
                }
                _ => {}
            }
        }
        o
    }

    /// The option area's length once written by `emit` (a multiple of 4).
    pub fn len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        // SACK-permitted and timestamps share 12 bytes when both are there.
        n += match (self.sack_permitted, self.timestamp.is_some()) {
            (true, true) => 12,
            (false, true) => 12,
            (true, false) => 4,
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            n += 4;
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the options into `out` (at least `len()` bytes) in Linux's
    /// order and padding; returns the length written.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        let mut at = 0;
        if let Some(mss) = self.mss {
            out[at..at + 4].copy_from_slice(&[kind::MSS, 4, (mss >> 8) as u8, mss as u8]);
            at += 4;
        }
        match (self.sack_permitted, self.timestamp) {
            (sack, Some((tsval, tsecr))) => {
                if sack {
                    out[at..at + 2].copy_from_slice(&[kind::SACK_PERMITTED, 2]);
                } else {
                    out[at..at + 2].copy_from_slice(&[kind::NOP, kind::NOP]);
                }
                out[at + 2] = kind::TIMESTAMP;
                out[at + 3] = 10;
                out[at + 4..at + 8].copy_from_slice(&tsval.to_be_bytes());
                out[at + 8..at + 12].copy_from_slice(&tsecr.to_be_bytes());
                at += 12;
            }
            (true, None) => {
                out[at..at + 4].copy_from_slice(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]);
                at += 4;
            }
            (false, None) => {}
        }
        if let Some(ws) = self.window_scale {
            out[at..at + 4].copy_from_slice(&[kind::NOP, kind::WINDOW_SCALE, 3, ws]);
            at += 4;
        }
        at
    }
}

/// Offset, within `area`, of the TSval of a well-formed timestamp option.
pub fn timestamp_at(area: &[u8]) -> Option<usize> {
    walk(area)
        .find(|f| f.kind == kind::TIMESTAMP && f.len == 10)
        .map(|f| f.at + 2)
}

/// The SACK option's blocks: offset of the first edge within `area` and the
/// number of blocks (each two 32-bit edges).
pub fn sack_blocks(area: &[u8]) -> Option<(usize, usize)> {
    walk(area)
        .find(|f| f.kind == kind::SACK && f.len >= 10 && (f.len - 2) % 8 == 0)
        .map(|f| (f.at + 2, (f.len - 2) / 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Linux SYN's options: MSS 1460, SACK-permitted, timestamps, NOP,
    /// window scale 7.
    const LINUX_SYN: [u8; 20] = [
        2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0x00, 0x01, 0xe2, 0x40, 0, 0, 0, 0, 1, 3, 3, 7,
    ];

    #[test]
    fn reads_and_writes_a_linux_syn() {
        let o = SynOptions::parse(&LINUX_SYN);
        assert_eq!(
            o,
            SynOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamp: Some((123456, 0)),
            }
        );
        let mut out = [0u8; 20];
        assert_eq!(o.emit(&mut out), 20);
        assert_eq!(out, LINUX_SYN, "the same bytes back");
        assert_eq!(timestamp_at(&LINUX_SYN), Some(8));
    }

    #[test]
    fn every_combination_fits_its_length_and_reads_back() {
        for mss in [None, Some(536)] {
            for ws in [None, Some(0), Some(14)] {
                for sack in [false, true] {
                    for ts in [None, Some((1, 2))] {
                        let o = SynOptions {
                            mss,
                            window_scale: ws,
                            sack_permitted: sack,
                            timestamp: ts,
                        };
                        let mut out = [0u8; 40];
                        let n = o.emit(&mut out);
                        assert_eq!(n, o.len());
                        assert_eq!(n % 4, 0);
                        assert_eq!(SynOptions::parse(&out[..n]), o);
                    }
                }
            }
        }
    }

    #[test]
    fn malformed_options_stop_the_walk_without_panic() {
        for area in [
            &[2u8][..],
            &[2, 0, 5, 5],
            &[2, 40],
            &[8, 10, 1, 2, 3],
            &[1, 1, 1, 5, 1],
            &[255, 2, 2, 4, 5, 180],
        ] {
            let _ = SynOptions::parse(area);
            let _ = sack_blocks(area);
            assert!(walk(area).count() <= area.len());
        }
        // Unknown kinds are skipped by their length.
        let area = [254, 4, 0, 0, 2, 4, 2, 0];
        assert_eq!(SynOptions::parse(&area).mss, Some(512));
        // TOA and MSS where they are, and nowhere else.
        let area = [1, 1, 254, 8, 0x9c, 0x40, 10, 10, 0, 2, 2, 4, 5, 0xb4];
        assert_eq!(toa_client(&area), Some("10.10.0.2:40000".parse().unwrap()));
        assert_eq!(mss_at(&area), Some(12));
        assert_eq!(toa_client(&area[..9]), None, "cut short");
        assert_eq!(
            toa("10.10.0.2:40000".parse().unwrap()),
            [254, 8, 0x9c, 0x40, 10, 10, 0, 2]
        );
        // A SACK of two blocks behind two NOPs.
        let sack = [1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
        assert_eq!(sack_blocks(&sack), Some((4, 2)));
    }
}
