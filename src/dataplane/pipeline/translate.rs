//! Sessions and translation: finding or creating the session of a TCP/UDP
//! packet, moving its state on, rewriting the packet (NAT or FULLNAT) and
//! sending it to its next hop.

use super::*;
use crate::lb::persistence::TemplateKey;
use crate::lb::scheduler;
use crate::lb::stats::ServiceConns;

impl<P: PacketBuf> Pipeline<P> {
    /// Client -> VIP: find or create the session, translate toward the real
    /// server (DNAT; FULLNAT also SNATs to a local address).
    // Every client packet comes here: once `classify` grew (source checks)
    // the compiler stopped inlining it, which cost 30 instructions a packet
    // (callgrind, pipebench) against the few the checks cost.
    #[inline(always)]
    pub(super) fn inbound(
        &mut self,
        frame: &mut [u8],
        ip: &Ipv4Info,
        l4: &L4Info,
        now: u64,
    ) -> Verdict {
        let key = flow_key(ip, l4);
        let id = match self.sessions.lookup_inbound(&key) {
            Some(id) if self.is_new_connection_on_old_session(id, l4) => {
                // The client reuses its port for a new connection while the
                // old one lingers in TIME_WAIT/CLOSE: retire the old session
                // and schedule the new connection afresh, as IPVS does with
                // conn_reuse_mode=1.
                if let Some(old) = self.sessions.remove(id) {
                    self.session_ends(now).end(&old);
                    self.counters.inc(Counter::SessionsReused);
                }
                match self.new_session(key, l4, now) {
                    Ok(id) => id,
                    Err(reason) => return Verdict::Drop(reason),
                }
            }
            Some(id) => id,
            None => match self.new_session(key, l4, now) {
                Ok(id) => id,
                Err(reason) => return Verdict::Drop(reason),
            },
        };
        self.translate(id, Direction::Inbound, frame, ip, l4, now)
    }

    /// A SYN (without ACK) for a TCP session that is closing down.
    #[inline]
    fn is_new_connection_on_old_session(&self, id: u32, l4: &L4Info) -> bool {
        l4.flags.syn
            && !l4.flags.ack
            && !l4.flags.rst
            && matches!(
                self.sessions.get(id).map(|s| s.state),
                Some(ConnState::Tcp(TcpState::TimeWait | TcpState::Close))
            )
    }

    pub(super) fn new_session(
        &mut self,
        key: FlowKey,
        l4: &L4Info,
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
        if l4.proto == Proto::Tcp && !(l4.flags.syn && !l4.flags.ack && !l4.flags.rst) {
            return Err(Counter::DropNoSession);
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
        let local = match service.mode {
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
            outbound: FlowKey {
                proto: key.proto,
                src: *real.addr.ip(),
                sport: real.addr.port(),
                dst: *local.ip(),
                dport: local.port(),
            },
            real: real.slot,
            state,
            expires: now,
        };
        match self.sessions.insert(session) {
            Ok(id) => {
                self.counters.inc(Counter::Conns);
                self.stats.opened(real.slot);
                Ok(id)
            }
            Err(e) => {
                if service.mode == ForwardMode::FullNat {
                    self.pools.free(local, real.addr);
                }
                Err(match e {
                    InsertError::Full => Counter::DropSessionTableFull,
                    InsertError::Exists => Counter::DropSessionConflict,
                })
            }
        }
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

    /// What ends a session: its counters, its local port, its template.
    pub(super) fn session_ends(&mut self, now: u64) -> SessionEnds<'_> {
        SessionEnds {
            pools: &mut self.pools,
            stats: &mut self.stats,
            templates: &self.templates,
            snap: &self.snap,
            now,
        }
    }

    /// Real server -> client (NAT) or -> local address (FULLNAT): translate
    /// back to VIP -> client. Without a session the packet is not ours to
    /// forward.
    pub(super) fn outbound(
        &mut self,
        frame: &mut [u8],
        ip: &Ipv4Info,
        l4: &L4Info,
        now: u64,
    ) -> Verdict {
        let key = flow_key(ip, l4);
        let Some(id) = self.sessions.lookup_outbound(&key) else {
            return Verdict::Drop(Counter::DropNotServed);
        };
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
                self.session_ends(now).end(&old);
            }
            return Verdict::Drop(Counter::DropRealRemoved);
        }
        let was_active = s.state.is_active();
        s.state = next_state(s.state, dir, l4.flags);
        let active = s.state.is_active();
        let bytes = (ip.l4_end - ETH_LEN) as u64;
        let (toward, counter) = match dir {
            Direction::Inbound => {
                real.in_pkts += 1;
                real.in_bytes += bytes;
                (s.outbound, Counter::InPkts)
            }
            Direction::Outbound => {
                real.out_pkts += 1;
                real.out_bytes += bytes;
                (s.inbound, Counter::OutPkts)
            }
        };
        let expires = now + timeout_ms(timeouts, s.state);
        self.stats.changed(slot, was_active, active);
        self.sessions.set_expires(id, expires);
        self.counters.inc(counter);
        let src = SocketAddrV4::new(toward.dst, toward.dport);
        let dst = SocketAddrV4::new(toward.src, toward.sport);
        self.rewrite_and_route(frame, ip, l4.proto, src, dst, now)
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
        let packet = &mut frame[ETH_LEN..ip.l4_end];
        if !nat::decrement_ttl(packet) {
            return Verdict::Drop(Counter::DropTtlExceeded);
        }
        let l3_len = ip.l4_start - ETH_LEN;
        if self.snap.ports[route.port as usize].tx_checksum_offload {
            // The NIC computes the checksum from scratch: a partial one
            // needs no completing.
            nat::translate_for_offload(packet, l3_len, proto, src, dst);
            Verdict::Forward(route, Some((l3_len, proto)))
        } else {
            if ip.maybe_partial && nat::complete_partial_checksum(packet, l3_len, proto) {
                self.counters.inc(Counter::RxPartialChecksums);
            }
            nat::translate(packet, l3_len, proto, src, dst);
            Verdict::Forward(route, None)
        }
    }

    /// Where a packet to `dst` goes: out of which port, to which next hop,
    /// and (if known) its MAC. From the next-hop cache when it has it, else
    /// by longest-prefix match and the neighbour table.
    #[inline]
    pub(super) fn resolve(&mut self, dst: Ipv4Addr, now: u64) -> Result<Route, Counter> {
        if let Some(r) = self.nexthops.get(dst) {
            return Ok(Route {
                port: r.port,
                next_hop: r.next_hop,
                mac: Some(r.mac),
            });
        }
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
pub(super) struct SessionEnds<'a> {
    pub pools: &'a mut LocalPools,
    pub stats: &'a mut RealStats,
    pub templates: &'a Templates,
    pub snap: &'a Snapshot,
    pub now: u64,
}

impl SessionEnds<'_> {
    pub fn end(&mut self, s: &Session) {
        self.stats.closed(s.real, s.state.is_active());
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

#[inline]
fn next_state(state: ConnState, dir: Direction, flags: TcpFlags) -> ConnState {
    match state {
        ConnState::Tcp(s) => ConnState::Tcp(tcp_state::transition(s, dir, flags)),
        ConnState::Udp => ConnState::Udp,
    }
}

#[inline]
fn timeout_ms(t: &tcp_state::Timeouts, state: ConnState) -> u64 {
    let secs = match state {
        ConnState::Tcp(s) => t.tcp(s),
        ConnState::Udp => t.udp,
    };
    secs as u64 * 1000
}
