//! The fast path: a packet of a session that it cannot change. Nearly every
//! packet a load balancer forwards is one (a TCP segment that leaves its
//! connection ESTABLISHED: an ACK, or a retransmitted SYN; a UDP datagram),
//! and for it the general path's steps (a state transition that leaves the
//! state as it was, the SYN proxy's, the splice's and the client address's
//! turns, a verdict carried back to be dispatched) come to a plain rewrite
//! and a send. Here they are checked in one place and skipped; anything
//! else, or anything this path cannot finish (a next hop waiting for ARP, a
//! TTL at its end), goes the general way with the session already found,
//! and is handled exactly as before. A unit test holds the two paths
//! against each other (`tests/established.rs`).

use super::translate::{timeout_ms, toward};
use super::*;
use crate::lb::session::{flags as sflags, on_tick, WHEEL_TICK_MS};
use crate::lb::tcp_state::keeps_established;

/// Session flags that give a packet more to do than a rewrite: the SYN
/// proxy's wait, a splice, a client address still to be told.
const MORE_TO_DO: u8 = sflags::SYNPROXY_WAIT | sflags::SPLICED | sflags::CLIENT_ADDRESS_PENDING;

impl<P: PacketBuf> Pipeline<P> {
    /// Sends `pkt` by the fast path if it is a packet for it; else gives
    /// it back for the general path, with its session's lookup if it was
    /// looked up. Segments that open or close a connection are told by
    /// their flags, before any lookup, and cost the general path nothing
    /// more.
    #[inline(always)]
    pub(super) fn try_established(
        &mut self,
        pkt: P,
        front: &Front,
        now: u64,
        io: &mut impl Io<P>,
    ) -> Option<(P, Option<Found>)> {
        let Front::Flow(flow) = front else {
            return Some((pkt, None));
        };
        if !self.established_path()
            || !(flow.l4.proto == Proto::Udp || keeps_established(flow.l4.flags))
        {
            return Some((pkt, None));
        }
        let found = self.lookup(flow);
        let Some(id) = found else {
            return Some((pkt, Some(found)));
        };
        match self.forward_established(pkt, flow, id, now, io) {
            Ok(()) => None,
            Err(pkt) => Some((pkt, Some(found))),
        }
    }

    /// Forwards `pkt`, of session `id`, when nothing about the session
    /// changes but its timer and counters (see the module's comment);
    /// gives it back untouched otherwise.
    #[inline(always)]
    pub(super) fn forward_established(
        &mut self,
        mut pkt: P,
        flow: &Flow,
        id: u32,
        now: u64,
        io: &mut impl Io<P>,
    ) -> Result<(), P> {
        let (ip, l4) = (&flow.ip, &flow.l4);
        let Some(s) = self.sessions.get(id) else {
            return Err(pkt);
        };
        let unchanged = match s.state {
            ConnState::Tcp(TcpState::Established) => keeps_established(l4.flags),
            ConnState::Udp => true,
            _ => false,
        };
        // The session's expiry sits on the timer wheel's tick (`expiry`).
        // This packet's, to the millisecond, falls in a tick before it
        // (a shorter timeout since a reload: re-filing the session in the
        // wheel is the general path's work), or in that same tick (nothing
        // to write: the session's line stays clean, where at a million
        // sessions each write costs a write-back to memory), or after it
        // (a write, once a tick, of the tick it falls in). The division
        // that rounding takes is left to those writes.
        let expires = now + timeout_ms(&self.snap.timeouts, s.state);
        let earlier = expires + WHEEL_TICK_MS <= s.expires;
        if !unchanged || s.flags & MORE_TO_DO != 0 || ip.maybe_partial || earlier {
            return Err(pkt);
        }
        let later = expires > s.expires;
        let dir = match flow.inbound {
            true => Direction::Inbound,
            false => Direction::Outbound,
        };
        let (to, counter) = toward(s, dir);
        let slot = s.real;
        if self.stats.get(slot).is_none_or(|r| r.expire) {
            return Err(pkt);
        }
        // The next hop as the general path finds it (the cache, else the
        // routes and the neighbours, filling the cache): a cache that cannot
        // hold every client and real must not send their packets the long
        // way twice. One waiting for ARP is the general path's.
        let Ok(Route {
            port: out_port,
            mac: Some(mac),
            ..
        }) = self.resolve(to.src, now)
        else {
            return Err(pkt);
        };
        let src = SocketAddrV4::new(to.dst, to.dport);
        let dst = SocketAddrV4::new(to.src, to.sport);
        let Some(offload) = self.rewrite(pkt.data_mut(), ip, l4.proto, src, dst, out_port) else {
            // The TTL ran out: the general path counts the drop.
            return Err(pkt);
        };
        // Nothing can fail from here on.
        if later {
            if let Some(s) = self.sessions.get_mut(id) {
                s.expires = on_tick(expires);
            }
        }
        if let Some(real) = self.stats.get_mut(slot) {
            real.count(dir, (ip.l4_end - ETH_LEN) as u64);
        }
        self.counters.inc(counter);
        if let Some((l3_len, proto)) = offload {
            pkt.request_tx_checksums(l3_len, proto);
        }
        let port_mac = self.snap.ports[out_port as usize].mac;
        write_l2(pkt.data_mut(), port_mac, EthernetAddress(mac));
        io.send(out_port, pkt);
        Ok(())
    }
}
