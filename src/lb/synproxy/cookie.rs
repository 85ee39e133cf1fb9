//! SYN cookies: the initial sequence number of a SYN-ACK that sluice sends
//! without keeping any state, from which the client's ACK proves it saw
//! the SYN-ACK (a spoofed source never does) and recovers what the SYN
//! negotiated.
//!
//! The idea is Linux's (`net/ipv4/syncookies.c`); the construction is ours:
//!
//! ```text
//! cookie = time(8 bits) | mss index(2) | MAC(22)
//! MAC    = keyed hash(client, VIP, ports, client ISN, time, mss index)
//! ```
//!
//! `time` counts 64-second periods; a cookie is accepted for two of them
//! (64 to 128 s), as Linux accepts for two minutes. The MSS is kept as an
//! index into Linux's table. When the client offers timestamps, the
//! window scale and SACK-permitted it asked for ride in the low 6 bits of
//! the TSval of the SYN-ACK, which the client echoes as TSecr in its ACK
//! (again Linux's method); without timestamps a proxied connection has
//! neither. A forged ACK passes with probability 2^-22 per try.

use crate::lb::session::FlowKey;
use crate::wire::tcp_options::MAX_WINDOW_SCALE;

/// The MSS values a cookie can carry (Linux's `msstab` for IPv4); a client
/// MSS is rounded down to one of them.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

const PERIOD_S: u64 = 64;
const MAC_BITS: u32 = 22;
const MAC_MASK: u32 = (1 << MAC_BITS) - 1;

/// The secret every worker makes and checks cookies with (random per
/// process: a cookie does not outlive the sluice that made it).
#[derive(Clone)]
pub struct CookieKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    pub fn random() -> CookieKey {
        use std::hash::BuildHasher;
        let r = std::collections::hash_map::RandomState::new();
        CookieKey {
            k0: r.hash_one(0x5c_0001_u64),
            k1: r.hash_one(0x5c_0002_u64),
        }
    }

    #[cfg(test)]
    pub fn fixed(k0: u64, k1: u64) -> CookieKey {
        CookieKey { k0, k1 }
    }

    fn mac(&self, flow: &FlowKey, isn: u32, time: u32, mss_index: u32) -> u32 {
        let a = (u64::from(u32::from(flow.src)) << 32) | u64::from(u32::from(flow.dst));
        let b = (u64::from(flow.sport) << 48) | (u64::from(flow.dport) << 32) | u64::from(isn);
        let c = (u64::from(time) << 8) | u64::from(mss_index);
        let h = mix(a ^ self.k0, b ^ self.k1 ^ 0x243f_6a88_85a3_08d3);
        let h = mix(h ^ c ^ self.k1, self.k0 ^ 0x9e37_79b9_7f4a_7c15);
        (h ^ (h >> 32)) as u32 & MAC_MASK
    }

    /// The cookie (SYN-ACK ISN) for a SYN of `flow` (client -> VIP) with
    /// sequence number `isn` and MSS `mss`, at `now_s` seconds.
    pub fn make(&self, flow: &FlowKey, isn: u32, mss: u16, now_s: u64) -> u32 {
        let time = ((now_s / PERIOD_S) & 0xff) as u32;
        let index = mss_index(mss);
        (time << 24) | (index << MAC_BITS) | self.mac(flow, isn, time, index)
    }

    /// The MSS the SYN carried, if `cookie` (the ACK's ack number minus 1)
    /// was made by `make` for this flow and client ISN (the ACK's sequence
    /// number minus 1) less than two periods ago.
    pub fn check(&self, flow: &FlowKey, isn: u32, cookie: u32, now_s: u64) -> Option<u16> {
        let time = cookie >> 24;
        let index = (cookie >> MAC_BITS) & 0x3;
        let now = ((now_s / PERIOD_S) & 0xff) as u32;
        let age = now.wrapping_sub(time) & 0xff;
        if age > 1 {
            return None;
        }
        (self.mac(flow, isn, time, index) == cookie & MAC_MASK).then(|| MSS_TABLE[index as usize])
    }
}

/// Folded multiply (the construction foldhash and wyhash use).
fn mix(x: u64, y: u64) -> u64 {
    let p = u128::from(x) * u128::from(y);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The largest table entry not above `mss` (the smallest if none is).
pub fn mss_index(mss: u16) -> u32 {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32
}

/// What the SYN-ACK's TSval carries in its low 6 bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsOptions {
    /// The client's window scale, if it offered one.
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
}

const TS_BITS: u32 = 0x3f;
const NO_WSCALE: u32 = 0xf;

/// A TSval for the SYN-ACK at `now_ms` that carries `opts`.
pub fn ts_encode(now_ms: u32, opts: TsOptions) -> u32 {
    let ws = opts
        .window_scale
        .map_or(NO_WSCALE, |w| u32::from(w.min(MAX_WINDOW_SCALE)));
    let bits = ws | (u32::from(opts.sack_permitted) << 4);
    // Keep the clock moving forward past the bits we overwrite.
    ((now_ms & !TS_BITS) | bits).max(1)
}

/// The options an echoed TSval (the ACK's TSecr) carries.
pub fn ts_decode(tsecr: u32) -> TsOptions {
    let ws = tsecr & 0xf;
    TsOptions {
        window_scale: (ws <= u32::from(MAX_WINDOW_SCALE)).then_some(ws as u8),
        sack_permitted: tsecr & 0x10 != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::Proto;
    use std::net::Ipv4Addr;

    fn flow(sport: u16) -> FlowKey {
        FlowKey {
            proto: Proto::Tcp,
            src: Ipv4Addr::new(10, 10, 0, 2),
            sport,
            dst: Ipv4Addr::new(10, 10, 0, 100),
            dport: 80,
        }
    }

    #[test]
    fn a_cookie_checks_for_its_flow_and_isn_within_two_periods() {
        let k = CookieKey::fixed(1, 2);
        let c = k.make(&flow(40000), 1000, 1460, 6400);
        assert_eq!(k.check(&flow(40000), 1000, c, 6400), Some(1460));
        assert_eq!(k.check(&flow(40000), 1000, c, 6400 + 127), Some(1460));
        assert_eq!(k.check(&flow(40000), 1000, c, 6400 + 128), None, "too old");
        assert_eq!(k.check(&flow(40001), 1000, c, 6400), None, "other port");
        assert_eq!(k.check(&flow(40000), 1001, c, 6400), None, "other ISN");
        assert_eq!(k.check(&flow(40000), 1000, c ^ 1, 6400), None, "altered");
        // Another key (another sluice) does not accept it.
        assert_eq!(
            CookieKey::fixed(3, 4).check(&flow(40000), 1000, c, 6400),
            None
        );
        // MSS rounds down to the table.
        let c = k.make(&flow(1), 7, 1400, 0);
        assert_eq!(k.check(&flow(1), 7, c, 0), Some(1300));
        let c = k.make(&flow(1), 7, 100, 0);
        assert_eq!(k.check(&flow(1), 7, c, 0), Some(536));
    }

    #[test]
    fn the_period_counter_wraps() {
        let k = CookieKey::fixed(5, 6);
        let t = 255 * PERIOD_S;
        let c = k.make(&flow(9), 9, 1460, t);
        assert_eq!(k.check(&flow(9), 9, c, t + PERIOD_S), Some(1460));
    }

    #[test]
    fn forgeries_rarely_pass() {
        let k = CookieKey::fixed(7, 8);
        let passed = (0..200_000u32)
            .filter(|&i| {
                k.check(&flow(1234), 55, i.wrapping_mul(2_654_435_761), 0)
                    .is_some()
            })
            .count();
        // 200k random guesses against a 22-bit MAC (and 2 bits of time that
        // must match): about 0.05 expected.
        assert!(passed <= 2, "{passed}");
    }

    #[test]
    fn options_ride_in_the_timestamp() {
        for ws in [None, Some(0), Some(7), Some(14)] {
            for sack in [false, true] {
                let o = TsOptions {
                    window_scale: ws,
                    sack_permitted: sack,
                };
                let ts = ts_encode(123_456_789, o);
                assert_eq!(ts_decode(ts), o);
                assert_eq!(ts & !0x3f, 123_456_789 & !0x3f);
            }
        }
    }
}
