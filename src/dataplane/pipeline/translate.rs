//! Sessions and translation: finding or creating the session of a TCP/UDP
//! packet, moving its state on, rewriting the packet (NAT or FULLNAT) and
//! sending it to its next hop.

use super::*;
use crate::lb::client_address;
use crate::lb::persistence::TemplateKey;
use crate::lb::scheduler;
use crate::lb::session::{self, flags as sflags};
use crate::lb::stats::ServiceConns;
use crate::lb::synproxy::adjust as synproxy_adjust;

impl<P: PacketBuf> Pipeline<P> {
    /// Client -> VIP: with the session `found` (`Pipeline::lookup`), or a
    /// new one, translate toward the real server (DNAT; FULLNAT also SNATs
    /// to a local address).
    // Every client packet comes here: once the per-packet code grew (source checks)
    // the compiler stopped inlining it, which cost 30 instructions a packet
    // (callgrind, pipebench) against the few the checks cost.
    #[inline(always)]
    pub(super) fn inbound(
        &mut self,
        frame: &mut [u8],
        flow: &Flow,
        found: Found,
        now: u64,
    ) -> Verdict {
        let (ip, l4) = (&flow.ip, &flow.l4);
        let key = flow_key(ip, l4);
        let id = match found {
            Some(id) if self.is_new_connection_on_old_session(id, l4) => {
                // The client reuses its port for a new connection while the
                // old one lingers in TIME_WAIT/CLOSE: retire the old session
                // and schedule the new connection afresh, as IPVS does with
                // conn_reuse_mode=1.
                if let Some(old) = self.sessions.remove(id) {
                    self.session_ends(now).end(id, &old);
                    self.counters.inc(Counter::SessionsReused);
                }
                match self.new_session(key, l4, client_isn(frame, ip, l4), now) {
                    Ok(id) => id,
                    Err(Counter::DropNoRealServer) => return self.refuse(frame, ip, l4, now),
                    Err(reason) => return Verdict::Drop(reason),
                }
            }
            Some(id) => id,
            None => {
                if l4.proto == Proto::Tcp {
                    if let Some(v) = self.synproxy_first(frame, ip, l4, key, now) {
                        return v;
                    }
                }
                match self.new_session(key, l4, client_isn(frame, ip, l4), now) {
                    Ok(id) => id,
                    Err(Counter::DropNoRealServer) => return self.refuse(frame, ip, l4, now),
                    Err(reason) => return Verdict::Drop(reason),
                }
            }
        };
        self.translate(id, Direction::Inbound, frame, ip, l4, now)
    }

    /// A SYN (without ACK) for a TCP session that is closing down.
    #[inline]
    fn is_new_connection_on_old_session(&self, id: u32, l4: &L4Info) -> bool {
        l4.flags.syn()
            && !l4.flags.ack()
            && !l4.flags.rst()
            && matches!(
                self.sessions.get(id).map(|s| s.state),
                Some(ConnState::Tcp(TcpState::TimeWait | TcpState::Close))
            )
    }

    /// A new session for `key` (a TCP one on its SYN, whose sequence
    /// number is `client_isn`).
    pub(super) fn new_session(
        &mut self,
        key: FlowKey,
        l4: &L4Info,
        client_isn: u32,
        now: u64,
    ) -> Result<u32, Counter> {
        let Some(svc_id) = self
            .snap
            .services
            .find(key.proto, SocketAddrV4::new(key.dst, key.dport))
        else {
            return Err(Counter::DropNoService);
        };
        // IPVS creates TCP sessions only on a SYN: anything else for an
        // unknown connection is stale or forged.
        if l4.proto == Proto::Tcp && !(l4.flags.syn() && !l4.flags.ack() && !l4.flags.rst()) {
            return Err(Counter::DropNoSession);
        }
        if l4.proto == Proto::Tcp {
            // A SYN-flood defence as IPVS's drop_entry: embryonic sessions
            // are bounded, and the oldest makes room for a new one.
            if self.embryonic >= self.snap.synproxy.syn_recv_budget && !self.evict_embryonic(now) {
                return Err(Counter::DropSessionTableFull);
            }
            self.syn_window.1 = self.syn_window.1.saturating_add(1);
        }
        let real_idx = self.schedule(svc_id, key.src, key.sport, now)?;
        let (Some(service), Some(state)) = (
            self.snap.services.get(svc_id),
            self.services.get_mut(svc_id as usize),
        ) else {
            return Err(Counter::DropNoService);
        };
        let Some(real) = service.reals.get(real_idx).copied() else {
            return Err(Counter::DropNoRealServer);
        };
        // NAT: the real server answers the client itself (through us).
        // FULLNAT: it answers a local address and port from this worker's
        // pool, whose port tells which worker owns the session.
        let mode = service.mode;
        let (flags, splice) = client_address::start(service.client_address, client_isn);
        let local = match mode {
            ForwardMode::FullNat => self
                .pools
                .alloc(&state.pools, &mut state.next_laddr, real.addr)
                .ok_or(Counter::DropLaddrExhausted)?,
            ForwardMode::Nat => SocketAddrV4::new(key.src, key.sport),
        };
        let state = match l4.proto {
            Proto::Tcp => ConnState::Tcp(TcpState::None),
            Proto::Udp => ConnState::Udp,
        };
        let session = Session {
            inbound: key,
            outbound: FlowKey::between(key.proto, real.addr, local),
            real: real.slot,
            state,
            expires: now,
            splice,
            flags,
        };
        let mut inserted = self.sessions.insert(session);
        if inserted == Err(InsertError::Full) && self.evict_embryonic(now) {
            inserted = self.sessions.insert(session);
        }
        match inserted {
            Ok(id) => {
                self.counters.inc(Counter::Conns);
                self.stats.opened(real.slot);
                if is_embryonic(session.state) {
                    self.embryonic += 1;
                }
                if mode == ForwardMode::FullNat {
                    self.prefetch_next_fullnat(svc_id, key.proto);
                }
                Ok(id)
            }
            Err(e) => {
                if mode == ForwardMode::FullNat {
                    self.pools.free(local, real.addr);
                }
                Err(match e {
                    InsertError::Full => Counter::DropSessionTableFull,
                    InsertError::Exists => Counter::DropSessionConflict,
                })
            }
        }
    }

    /// Prefetches, two new sessions ahead, the cold lines a FULLNAT session's
    /// creation reads, where the scheduler's picks are known in advance (rr,
    /// wrr): each new connection read its local port from a pool queue's
    /// line and then, at insert, its reply-side index bucket, two memory
    /// stalls that were ~15% of a worker's time in connbench (2026-11-30).
    /// With the picks known, so is the next session's reply-side key (that
    /// real, and the pair its pool hands out next, read from the line this
    /// brought in one session earlier), whoever the client: its bucket is
    /// prefetched, and so is the pool line of the session after it. A wrong
    /// guess (persistence, a change, another service drawing from the same
    /// pool) costs a wasted prefetch.
    fn prefetch_next_fullnat(&self, svc_id: u32, proto: Proto) {
        let (Some(service), Some(state)) = (
            self.snap.services.get(svc_id),
            self.services.get(svc_id as usize),
        ) else {
            return;
        };
        let Some((first, second)) = scheduler::peek_two(&service.sched, &state.sched) else {
            return;
        };
        let (Some(next), Some(after)) = (service.reals.get(first), service.reals.get(second))
        else {
            return;
        };
        let Some((local, pool_after)) = self.pools.peek(&state.pools, state.next_laddr, next.addr)
        else {
            return;
        };
        self.sessions
            .prefetch_outbound(&FlowKey::between(proto, next.addr, local));
        self.pools
            .prefetch_next(&state.pools, pool_after, after.addr);
    }

    /// The real server (index in the service) for a new connection from
    /// `client`:`port`: the persistence template's where the service is
    /// persistent and the template's real still takes connections, else
    /// the scheduler's pick (recorded in a template for persistence).
    fn schedule(
        &mut self,
        svc_id: u32,
        client: Ipv4Addr,
        port: u16,
        now: u64,
    ) -> Result<usize, Counter> {
        let (Some(service), Some(state)) = (
            self.snap.services.get(svc_id),
            self.services.get_mut(svc_id as usize),
        ) else {
            return Err(Counter::DropNoService);
        };
        let conns = ServiceConns {
            reals: &service.reals,
            stats: &self.stats,
        };
        let Some(p) = service.persistence else {
            return scheduler::pick(&service.sched, &mut state.sched, client, port, &conns)
                .ok_or(Counter::DropNoRealServer);
        };
        // Templates bind to a real that takes new connections: one quiesced
        // (weight 0) or removed no longer holds its clients (IPVS's
        // expire_quiescent_template).
        let usable = |slot: u32| {
            service
                .reals
                .iter()
                .position(|r| r.slot == slot && r.weight > 0)
        };
        let key = TemplateKey::new(&self.templates, &service.key, client, p.netmask);
        let now_s = now / 1000;
        let expires = now_s + u64::from(p.timeout);
        let found = self.templates.lookup(key, now_s);
        if let Some(i) = found.and_then(usable) {
            self.templates
                .bind(key, service.reals[i].slot, now_s, expires);
            return Ok(i);
        }
        let i = scheduler::pick(&service.sched, &mut state.sched, client, port, &conns)
            .ok_or(Counter::DropNoRealServer)?;
        let slot = service.reals[i].slot;
        let bound = if found.is_some() {
            self.templates.replace(key, slot, now_s, expires);
            slot
        } else {
            self.templates.bind(key, slot, now_s, expires)
        };
        // Another worker bound this client an instant earlier: follow it.
        Ok(usable(bound).unwrap_or(i))
    }

    /// What ends a session: its counters, its local port, its template,
    /// a segment held for it.
    pub(super) fn session_ends(&mut self, now: u64) -> SessionEnds<'_, P> {
        SessionEnds {
            pools: &mut self.pools,
            stats: &mut self.stats,
            templates: &self.templates,
            snap: &self.snap,
            held: &mut self.held,
            embryonic: &mut self.embryonic,
            now,
        }
    }

    /// Removes the embryonic session that expires first (the oldest SYN
    /// nobody completed), to make room: false if none is found soon.
    fn evict_embryonic(&mut self, now: u64) -> bool {
        const MAX_VISIT: usize = 256;
        let Some(id) = self.sessions.soonest(MAX_VISIT, |s| is_embryonic(s.state)) else {
            return false;
        };
        if let Some(old) = self.sessions.remove(id) {
            self.session_ends(now).end(id, &old);
            self.counters.inc(Counter::SessionsEvicted);
        }
        true
    }

    /// Real server -> client (NAT) or -> local address (FULLNAT): translate
    /// back to VIP -> client. Without a session (`found`) the packet is not
    /// ours to forward.
    #[inline]
    pub(super) fn outbound(
        &mut self,
        frame: &mut [u8],
        flow: &Flow,
        found: Found,
        now: u64,
    ) -> Verdict {
        let (ip, l4) = (&flow.ip, &flow.l4);
        let Some(id) = found else {
            return Verdict::Drop(Counter::DropNotServed);
        };
        if self
            .sessions
            .get(id)
            .is_some_and(|s| s.flags & sflags::SYNPROXY_WAIT != 0)
        {
            if let Some(v) = self.synproxy_answer(id, frame, ip, l4) {
                return v;
            }
        }
        self.translate(id, Direction::Outbound, frame, ip, l4, now)
    }

    /// Moves session `id`'s state and timer on for a packet going `dir`,
    /// then rewrites the packet: inbound packets become the reverse of the
    /// reply key (toward the real server), replies the reverse of the
    /// client's key (from the VIP to the client).
    pub(super) fn translate(
        &mut self,
        id: u32,
        dir: Direction,
        frame: &mut [u8],
        ip: &Ipv4Info,
        l4: &L4Info,
        now: u64,
    ) -> Verdict {
        let timeouts = &self.snap.timeouts;
        let Some(s) = self.sessions.get_mut(id) else {
            return Verdict::Drop(Counter::DropNotServed);
        };
        let slot = s.real;
        let Some(real) = self.stats.get_mut(slot) else {
            return Verdict::Drop(Counter::DropNotServed);
        };
        if real.expire {
            // Its real is gone and the operator wants its sessions ended
            // (IPVS's expire_nodest_conn): on their next packet.
            if let Some(old) = self.sessions.remove(id) {
                self.session_ends(now).end(id, &old);
            }
            return Verdict::Drop(Counter::DropRealRemoved);
        }
        if s.flags & sflags::SYNPROXY_WAIT != 0 {
            // The real has not answered the proxied SYN yet.
            return Verdict::Hold(id);
        }
        let old_state = s.state;
        let state = next_state(old_state, dir, l4.flags);
        let expires = expiry(timeouts, state, now);
        s.state = state;
        // Most packets push the expiry later, a plain write; an earlier
        // one (a shorter timeout) re-files the session in the wheel below.
        let earlier = expires < s.expires;
        if !earlier {
            s.expires = expires;
        }
        let flags = s.flags;
        let splice = (flags & sflags::SPLICED != 0).then_some(s.splice);
        let bytes = (ip.l4_end - ETH_LEN) as u64;
        real.count(dir, bytes);
        let (toward, counter) = toward(s, dir);
        if state != old_state {
            self.state_changed(slot, old_state, state);
        }
        if earlier {
            self.sessions.set_expires(id, expires);
        }
        self.counters.inc(counter);
        // A partial checksum is completed before anything else touches the
        // segment: every later update is incremental.
        if ip.maybe_partial {
            let packet = &mut frame[ETH_LEN..ip.l4_end];
            if nat::complete_partial_checksum(packet, ip.l4_start - ETH_LEN, l4.proto) {
                self.counters.inc(Counter::RxPartialChecksums);
            }
        }
        // Telling the real the client's address: decided on the segment as
        // its sender wrote it, before the splice moves its numbers.
        let addition = if flags & sflags::CLIENT_ADDRESS_PENDING != 0 {
            self.client_address_step(id, dir, flags, frame, ip)
        } else {
            None
        };
        if let Some(splice) = splice {
            let adjust = match dir {
                Direction::Inbound => splice.inbound(),
                Direction::Outbound => splice.outbound(),
            };
            synproxy_adjust::apply(&mut frame[ip.l4_start..ip.l4_end], &adjust);
        }
        let src = SocketAddrV4::new(toward.dst, toward.dport);
        let dst = SocketAddrV4::new(toward.src, toward.sport);
        match (
            self.rewrite_and_route(frame, ip, l4.proto, src, dst, now),
            addition,
        ) {
            (Verdict::Forward(route, offload), Some(a)) => Verdict::ForwardWith(route, offload, a),
            (v, _) => v,
        }
    }

    /// A session's state moved on: its real's active/inactive counts, and
    /// the embryonic count (the SYN-flood watch).
    #[inline]
    fn state_changed(&mut self, slot: u32, old: ConnState, new: ConnState) {
        self.stats.changed(slot, old.is_active(), new.is_active());
        match (is_embryonic(old), is_embryonic(new)) {
            (false, true) => self.embryonic += 1,
            (true, false) => self.embryonic = self.embryonic.saturating_sub(1),
            _ => {}
        }
    }

    pub(super) fn rewrite_and_route(
        &mut self,
        frame: &mut [u8],
        ip: &Ipv4Info,
        proto: Proto,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        now: u64,
    ) -> Verdict {
        let route = match self.resolve(*dst.ip(), now) {
            Ok(route) => route,
            Err(reason) => return Verdict::Drop(reason),
        };
        match self.rewrite(frame, ip, proto, src, dst, route.port) {
            Some(offload) => Verdict::Forward(route, offload),
            None => Verdict::Drop(Counter::DropTtlExceeded),
        }
    }

    /// Rewrites a packet going out of `port` to `src` -> `dst` (TTL
    /// decremented): with the checksums left to the NIC where it computes
    /// them (what it needs to know is returned), else updated here. None,
    /// the packet unchanged, when its TTL has run out. Inlined: a call
    /// passes seven arguments, some on the stack, and cost the fast path
    /// 15 instructions a packet of 764 (callgrind, pipebench FULLNAT 1K).
    #[inline(always)]
    pub(super) fn rewrite(
        &self,
        frame: &mut [u8],
        ip: &Ipv4Info,
        proto: Proto,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        port: u16,
    ) -> Option<Option<(usize, Proto)>> {
        let packet = &mut frame[ETH_LEN..ip.l4_end];
        let l3_len = ip.l4_start - ETH_LEN;
        // The NIC sums the whole IP payload: a UDP datagram shorter than
        // it (trailing bytes, which receivers trim) keeps the software path.
        let nic_sums_it = || {
            proto == Proto::Tcp
                || usize::from(UdpPacket::new_unchecked(&packet[l3_len..]).len())
                    == packet.len() - l3_len
        };
        if self.snap.ports[port as usize].tx_checksum_offload && nic_sums_it() {
            // The NIC computes the checksum from scratch.
            nat::forward_for_offload(packet, l3_len, proto, src, dst)
                .then_some(Some((l3_len, proto)))
        } else {
            nat::forward(packet, l3_len, proto, src, dst).then_some(None)
        }
    }

    /// Where a packet to `dst` goes: out of which port, to which next hop,
    /// and (if known) its MAC. From the next-hop cache when it has it, else
    /// by longest-prefix match and the neighbour table. The cache hit, which
    /// nearly every packet takes, is inlined; called out of line it cost
    /// the fast path 19 instructions a packet (callgrind, pipebench FULLNAT
    /// 1K).
    #[inline(always)]
    pub(super) fn resolve(&mut self, dst: Ipv4Addr, now: u64) -> Result<Route, Counter> {
        match self.nexthops.get(dst) {
            Some(r) => Ok(Route {
                port: r.port,
                next_hop: r.next_hop,
                mac: Some(r.mac),
            }),
            None => self.resolve_uncached(dst, now),
        }
    }

    /// `resolve` on a next-hop cache miss: the routes and the neighbours,
    /// and the cache filled when the MAC is known.
    #[inline(never)]
    fn resolve_uncached(&mut self, dst: Ipv4Addr, now: u64) -> Result<Route, Counter> {
        let nh = self.snap.routes.lookup(dst).ok_or(Counter::DropNoRoute)?;
        let mac = self.neighbours.lookup(nh.addr, nh.port, now);
        if let Some(mac) = mac {
            self.nexthops.insert(
                dst,
                Resolved {
                    port: nh.port,
                    next_hop: nh.addr,
                    mac,
                },
            );
        }
        Ok(Route {
            port: nh.port,
            next_hop: nh.addr,
            mac,
        })
    }

    /// Sends a routed packet when the next hop's MAC is known; queues it
    /// (bounded) behind an ARP request otherwise.
    pub(super) fn forward(&mut self, route: Route, mut pkt: P, now: u64, io: &mut impl Io<P>) {
        let port_mac = self.snap.ports[route.port as usize].mac;
        if let Some(mac) = route.mac {
            write_l2(pkt.data_mut(), port_mac, EthernetAddress(mac));
            io.send(route.port, pkt);
            return;
        }
        match self
            .neighbours
            .enqueue(route.next_hop, route.port, pkt, now)
        {
            Enqueue::Queued { send_request } => {
                if send_request {
                    self.send_arp_request(route.port, route.next_hop, None, io);
                }
            }
            Enqueue::QueueFull(pkt) => {
                drop(pkt);
                self.counters.inc(Counter::DropNeighbourQueueFull);
            }
            Enqueue::TableFull(pkt) => {
                drop(pkt);
                self.counters.inc(Counter::DropNeighbourTableFull);
            }
            Enqueue::BudgetFull(pkt) => {
                drop(pkt);
                self.counters.inc(Counter::DropPendingBudget);
            }
        }
    }
}

/// Everything a session holds beyond its table slot, given back when it
/// ends (expiry, reuse, removal): the per-real counts, a FULLNAT local
/// port, and the persistence template's lease.
pub(super) struct SessionEnds<'a, P> {
    pub pools: &'a mut LocalPools,
    pub stats: &'a mut RealStats,
    pub templates: &'a Templates,
    pub snap: &'a Snapshot,
    pub held: &'a mut HashMap<u32, (u16, P), FastInt>,
    pub embryonic: &'a mut usize,
    pub now: u64,
}

impl<P> SessionEnds<'_, P> {
    /// Session `id` (`s`) is gone from the table.
    pub fn end(&mut self, id: u32, s: &Session) {
        self.stats.closed(s.real, s.state.is_active());
        if is_embryonic(s.state) {
            *self.embryonic = self.embryonic.saturating_sub(1);
        }
        // The id will name another session: nothing held may outlive it.
        self.held.remove(&id);
        let real = SocketAddrV4::new(s.outbound.src, s.outbound.sport);
        let local = SocketAddrV4::new(s.outbound.dst, s.outbound.dport);
        // NAT sessions answer the client itself; FULLNAT ones a local port.
        if local != SocketAddrV4::new(s.inbound.src, s.inbound.sport) {
            self.pools.free(local, real);
        }
        let vip = SocketAddrV4::new(s.inbound.dst, s.inbound.dport);
        if let Some(service) = self
            .snap
            .services
            .find(s.inbound.proto, vip)
            .and_then(|id| self.snap.services.get(id))
        {
            if let Some(p) = service.persistence {
                // IPVS keeps a template for its timeout after the last
                // connection that used it.
                let key = TemplateKey::new(self.templates, &service.key, s.inbound.src, p.netmask);
                let now_s = self.now / 1000;
                self.templates
                    .touch(key, s.real, now_s, now_s + u64::from(p.timeout));
            }
        }
    }
}

/// Where session `s`'s packets going `dir` are rewritten to (the reverse of
/// this key), and the counter they count in.
#[inline]
pub(super) fn toward(s: &Session, dir: Direction) -> (FlowKey, Counter) {
    match dir {
        Direction::Inbound => (s.outbound, Counter::InPkts),
        Direction::Outbound => (s.inbound, Counter::OutPkts),
    }
}

/// The sequence number of a TCP segment (a SYN's: the client's ISN); 0 for
/// UDP.
#[inline]
fn client_isn(frame: &[u8], ip: &Ipv4Info, l4: &L4Info) -> u32 {
    match l4.proto {
        Proto::Tcp => TcpPacket::new_unchecked(&frame[ip.l4_start..ip.l4_end]).seq_number(),
        Proto::Udp => 0,
    }
}

/// NONE or SYN_RECV: a connection whose handshake nobody completed yet.
#[inline]
pub(super) fn is_embryonic(state: ConnState) -> bool {
    matches!(state, ConnState::Tcp(TcpState::None | TcpState::SynRecv))
}

#[inline]
fn next_state(state: ConnState, dir: Direction, flags: TcpFlags) -> ConnState {
    match state {
        ConnState::Tcp(s) => ConnState::Tcp(tcp_state::transition(s, dir, flags)),
        ConnState::Udp => ConnState::Udp,
    }
}

#[inline]
pub(super) fn timeout_ms(t: &tcp_state::Timeouts, state: ConnState) -> u64 {
    let secs = match state {
        ConnState::Tcp(s) => t.tcp(s),
        ConnState::Udp => t.udp,
    };
    secs as u64 * 1000
}

/// When a session in `state` expires unless another packet comes, seen
/// `now`: its timeout later, on the session table's wheel tick
/// (`session::on_tick`), so that the fast path can leave the session's
/// cache line clean for most packets (`forward_established`).
#[inline]
pub(super) fn expiry(t: &tcp_state::Timeouts, state: ConnState, now: u64) -> u64 {
    session::on_tick(now + timeout_ms(t, state))
}
