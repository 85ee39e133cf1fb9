//! Source validation: what may not arrive from the wire whatever its
//! destination. A few bit tests and the one hash lookup the destination
//! already costs; the route lookup of reverse path filtering only on ports
//! that ask for it.
//!
//! What legitimately arrives, and passes: clients (any routable source) on
//! the client side; in NAT, replies from real servers with their own
//! address as source on the real servers' side; in FULLNAT, replies from
//! real servers behind a router; ICMP errors from routers on either side.
//! None of them has a martian source or one of our addresses, and each is
//! routed back out of the port it came in on (which is how sluice sends
//! the other direction), so `rp_filter = "strict"` passes them too.

use super::*;
use crate::control::config::RpFilter;

/// Martian sources (RFC 1122 3.2.1.3, RFC 5735): "this network" 0/8,
/// loopback 127/8, multicast 224/4, reserved 240/4 and the limited
/// broadcast 255.255.255.255 (inside 240/4). A packet never comes from
/// any of them; Linux drops them as martians.
#[inline]
pub(super) fn is_martian(src: Ipv4Addr) -> bool {
    let first = src.octets()[0];
    first == 0 || first == 127 || first >= 224
}

impl<P: PacketBuf> Pipeline<P> {
    /// Ok when `src` may arrive on `in_port`; else the drop reason.
    #[inline]
    pub(super) fn check_source(&mut self, in_port: u16, src: Ipv4Addr) -> Result<(), Counter> {
        if is_martian(src) {
            return Err(Counter::DropMartianSource);
        }
        // Our own addresses only ever leave sluice: one coming back in is
        // forged (or a loop), and answering it would talk to ourselves.
        if self.snap.is_own_addr(src) {
            return Err(Counter::DropOwnSource);
        }
        match self.snap.ports[in_port as usize].rp_filter {
            RpFilter::Off => Ok(()),
            RpFilter::Strict if self.route_port(src) == Some(in_port) => Ok(()),
            RpFilter::Loose if self.route_port(src).is_some() => Ok(()),
            RpFilter::Strict | RpFilter::Loose => Err(Counter::DropRpFilter),
        }
    }

    /// The port sluice would send a packet to `addr` out of: from the
    /// next-hop cache when it is there (a client or real we talk to),
    /// else by longest-prefix match. Out of line: only ports with
    /// `rp_filter` pay for it, and `front`, which every frame runs,
    /// stays small.
    #[inline(never)]
    fn route_port(&self, addr: Ipv4Addr) -> Option<u16> {
        match self.nexthops.get(addr) {
            Some(r) => Some(r.port),
            None => self.snap.routes.lookup(addr).map(|nh| nh.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn martians() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(is_martian(a.parse().unwrap()), "{a}");
        }
        for a in [
            "1.0.0.0",
            "10.10.0.2",
            "126.255.255.255",
            "128.0.0.1",
            "223.255.255.255",
        ] {
            assert!(!is_martian(a.parse().unwrap()), "{a}");
        }
    }
}
