//! The SYN proxy in the pipeline (see `lb::synproxy`):
//!
//! 1. a client's SYN to a proxied service is answered with a cookie SYN-ACK
//!    built in the SYN's own buffer; nothing is stored;
//! 2. the client's ACK, if its cookie checks, makes the session (scheduled
//!    as any new connection) in SYN_RECV with `SYNPROXY_WAIT`; the ACK is
//!    held (data and all) and a SYN with the client's options goes to the
//!    real server;
//! 3. the real's SYN-ACK fixes the splice offsets (its ISN, timestamps and
//!    window scale against the cookie's) and is consumed; the held ACK is
//!    then processed again, now translated, and completes the real's
//!    handshake; a RST instead is passed to the client as a refusal;
//! 4. from then on `translate` rewrites every segment by the splice.
//!
//! Client segments that arrive while the real has not answered re-send the
//! SYN (the client's retransmissions pace it) and are dropped, but for the
//! first one, which is held. A session whose real never answers expires from
//! SYN_RECV like any other, and its held packet is freed with it.

use super::*;
use crate::lb::service::ClientAddressMode;
use crate::lb::session::flags as sflags;
use crate::lb::synproxy::cookie::{self, TsOptions, MSS_TABLE};
use crate::lb::synproxy::Splice;
use crate::wire::tcp_options::{SynOptions, TOA_LEN};
use crate::wire::Ipv4Repr;

/// The SYN-ACK that answers a client's SYN, worked out from the SYN.
pub(super) struct SynAck {
    /// Back to the MAC the SYN came from (the client or its router).
    client_mac: EthernetAddress,
    client: SocketAddrV4,
    vip: SocketAddrV4,
    /// The cookie.
    seq: u32,
    ack: u32,
    options: SynOptions,
}

/// The SYN proxy's view of a client SYN's options worth a cookie.
const DEFAULT_CLIENT_MSS: u16 = 536;

impl<P: PacketBuf> Pipeline<P> {
    /// Whether the SYN proxy answers new connections of `service` now.
    #[inline]
    pub(super) fn synproxy_engaged(&self, mode: SynProxyMode, now: u64) -> bool {
        match mode {
            SynProxyMode::On => true,
            SynProxyMode::Off => false,
            SynProxyMode::Auto => now < self.synproxy_until,
        }
    }

    /// A TCP packet to a VIP without a session: the SYN proxy's when it is
    /// a SYN to a proxied service (answered with a cookie) or an ACK that
    /// may carry one; None leaves it to plain forwarding.
    pub(super) fn synproxy_first(
        &mut self,
        frame: &mut [u8],
        ip: &Ipv4Info,
        l4: &L4Info,
        key: FlowKey,
        now: u64,
    ) -> Option<Verdict> {
        let svc_id = self
            .snap
            .services
            .find(key.proto, SocketAddrV4::new(key.dst, key.dport))?;
        let service = self.snap.services.get(svc_id)?;
        let mode = service.synproxy;
        // A TOA service's clients leave room for the option (see
        // `lb::client_address`).
        let mss_room = match service.client_address {
            ClientAddressMode::Toa => TOA_LEN as u16,
            _ => 0,
        };
        if mode == SynProxyMode::Off {
            return None;
        }
        let f = l4.flags;
        if f.syn() && !f.ack() && !f.rst() {
            // No real can take it: refused at once (plain forwarding's
            // RST), not after a handshake with the proxy.
            if !self.synproxy_engaged(mode, now) || !service.sched.has_available() {
                return None;
            }
            return Some(self.synproxy_syn(frame, ip, key, mss_room, now));
        }
        if f.ack() && !f.syn() && !f.rst() {
            return self.synproxy_ack(frame, ip, l4, key, mode, now);
        }
        None
    }

    /// Works out the SYN-ACK for a client's SYN; its MSS leaves `mss_room`
    /// bytes for what sluice adds to the client's segments.
    fn synproxy_syn(
        &mut self,
        frame: &[u8],
        ip: &Ipv4Info,
        key: FlowKey,
        mss_room: u16,
        now: u64,
    ) -> Verdict {
        let tcp = TcpPacket::new_unchecked(&frame[ip.l4_start..ip.l4_end]);
        let client_opts = SynOptions::parse(tcp.options());
        let settings = &self.snap.synproxy;
        let isn = tcp.seq_number();
        let mss = client_opts.mss.unwrap_or(DEFAULT_CLIENT_MSS);
        let cookie = settings.key.make(&key, isn, mss, now / 1000);
        let our_mss = settings.mss.min(mss.max(DEFAULT_CLIENT_MSS)) - mss_room;
        // Window scale and SACK can only be remembered through the
        // timestamp: without it the connection has neither (as Linux).
        let options = match client_opts.timestamp {
            Some((tsval, _)) => {
                let ts_opts = TsOptions {
                    window_scale: client_opts.window_scale,
                    sack_permitted: client_opts.sack_permitted,
                };
                SynOptions {
                    mss: Some(our_mss),
                    window_scale: client_opts.window_scale.map(|_| settings.window_scale),
                    sack_permitted: client_opts.sack_permitted,
                    timestamp: Some((cookie::ts_encode(now as u32, ts_opts), tsval)),
                }
            }
            None => SynOptions {
                mss: Some(our_mss),
                ..SynOptions::default()
            },
        };
        self.counters.inc(Counter::SynproxyCookiesSent);
        Verdict::SynAck(SynAck {
            client_mac: EthernetFrame::new_unchecked(frame).src_addr(),
            client: SocketAddrV4::new(key.src, key.sport),
            vip: SocketAddrV4::new(key.dst, key.dport),
            seq: cookie,
            ack: isn.wrapping_add(1),
            options,
        })
    }

    /// Rewrites the SYN in `pkt` into the SYN-ACK `plan` (same buffer, its
    /// length adjusted); false if the buffer cannot hold it.
    pub(super) fn emit_synack(&self, in_port: u16, pkt: &mut P, plan: &SynAck) -> bool {
        let tcp_len = 20 + plan.options.len();
        let len = ETH_LEN + 20 + tcp_len;
        if !pkt.set_len(len) {
            return false;
        }
        let port_mac = self.snap.ports[in_port as usize].mac;
        let frame = pkt.data_mut();
        frame.fill(0);
        let mut eth = EthernetFrame::new_unchecked(&mut *frame);
        eth.set_dst_addr(plan.client_mac);
        eth.set_src_addr(port_mac);
        eth.set_ethertype(ethertype::IPV4);
        write_segment(
            &mut frame[ETH_LEN..],
            Segment {
                src: plan.vip,
                dst: plan.client,
                seq: plan.seq,
                ack: plan.ack,
                flags: crate::wire::tcp::flags::SYN | crate::wire::tcp::flags::ACK,
                window: u16::MAX,
                options: &plan.options,
                payload: &[],
            },
        );
        true
    }

    /// The client's ACK to a cookie SYN-ACK: checks the cookie, makes the
    /// session, and leaves the packet to be held while the real answers.
    fn synproxy_ack(
        &mut self,
        frame: &[u8],
        ip: &Ipv4Info,
        l4: &L4Info,
        key: FlowKey,
        mode: SynProxyMode,
        now: u64,
    ) -> Option<Verdict> {
        let tcp = TcpPacket::new_unchecked(&frame[ip.l4_start..ip.l4_end]);
        let client_isn = tcp.seq_number().wrapping_sub(1);
        let cookie = tcp.ack_number().wrapping_sub(1);
        let Some(mss) = self
            .snap
            .synproxy
            .key
            .check(&key, client_isn, cookie, now / 1000)
        else {
            // Not ours: a stray ACK (no session) unless the proxy is
            // answering SYNs for this service right now.
            return self
                .synproxy_engaged(mode, now)
                .then_some(Verdict::Drop(Counter::DropSynproxyBadCookie));
        };
        self.counters.inc(Counter::SynproxyCookiesValid);
        let echoed = SynOptions::parse(tcp.options()).timestamp;
        let (ts_opts, our_tsval) = match echoed {
            Some((_, tsecr)) => (cookie::ts_decode(tsecr), tsecr),
            None => (TsOptions::default(), 0),
        };
        // Schedule it as any new connection, as if its SYN were here.
        let syn = L4Info {
            flags: TcpFlags::SYN,
            ..*l4
        };
        let id = match self.new_session(key, &syn, client_isn, now) {
            Ok(id) => id,
            Err(Counter::DropNoRealServer) => return Some(self.refuse(frame, ip, l4, now)),
            Err(reason) => return Some(Verdict::Drop(reason)),
        };
        let mss_index = MSS_TABLE.iter().position(|&m| m == mss).unwrap_or(0) as i8;
        let mut flags = sflags::SYNPROXY_WAIT;
        if echoed.is_some() {
            flags |= sflags::CLIENT_TS;
            if ts_opts.sack_permitted {
                flags |= sflags::CLIENT_SACK;
            }
        }
        let expires = now + u64::from(self.snap.timeouts.syn_recv) * 1000;
        if let Some(s) = self.sessions.get_mut(id) {
            // The client's SYN is behind us: SYN_RECV, as plain forwarding
            // would be after the SYN. What the client address adds (a PROXY
            // header's offset) stays.
            s.state = ConnState::Tcp(TcpState::SynRecv);
            s.flags |= flags;
            s.splice = Splice {
                server_seq: cookie,
                ts: our_tsval,
                window_in: ts_opts.window_scale.map_or(-1, |w| w as i8),
                window_out: mss_index,
                ..s.splice
            };
        }
        self.sessions.set_expires(id, expires);
        Some(Verdict::Hold(id))
    }

    /// Holds `pkt`, a client segment of session `id` that waits for its real
    /// server, and (re-)sends the SYN to the real. One segment is held per
    /// session; later ones are dropped (the client retransmits them).
    pub(super) fn hold(&mut self, in_port: u16, id: u32, pkt: P, now: u64, io: &mut impl Io<P>) {
        let syn = self.syn_to_real(id, pkt.data(), now, io);
        if self.held.contains_key(&id) {
            self.counters.inc(Counter::DropSynproxyWaiting);
        } else if self.held.len() >= self.snap.synproxy.hold {
            self.counters.inc(Counter::DropSynproxyHoldFull);
        } else {
            self.held.insert(id, (in_port, pkt));
        }
        if let Some((route, syn)) = syn {
            self.forward(route, syn, now, io);
        }
    }

    /// The SYN toward session `id`'s real server, from the client's ACK (or
    /// later segment) `frame`: the client's sequence number and options,
    /// sluice's source (the client in NAT, a local address in FULLNAT).
    fn syn_to_real(
        &mut self,
        id: u32,
        frame: &[u8],
        now: u64,
        io: &mut impl Io<P>,
    ) -> Option<(Route, P)> {
        let s = *self.sessions.get(id)?;
        let ipp = Ipv4Packet::new_checked(frame.get(ETH_LEN..)?).ok()?;
        let tcp = TcpPacket::new_checked(ipp.payload()).ok()?;
        let client_isn = tcp.seq_number().wrapping_sub(1);
        let client_ws = (s.splice.window_in >= 0).then_some(s.splice.window_in as u8);
        let tsval = SynOptions::parse(tcp.options()).timestamp.map(|(v, _)| v);
        let options = SynOptions {
            mss: Some(MSS_TABLE[(s.splice.window_out.clamp(0, 3)) as usize]),
            window_scale: client_ws,
            sack_permitted: s.flags & sflags::CLIENT_SACK != 0,
            timestamp: if s.flags & sflags::CLIENT_TS != 0 {
                tsval.map(|v| (v, 0))
            } else {
                None
            },
        };
        // A SYN's window is never scaled: the client's, in bytes, capped.
        let window = (u32::from(tcp.window_len()) << client_ws.unwrap_or(0)).min(0xffff) as u16;
        let src = SocketAddrV4::new(s.outbound.dst, s.outbound.dport);
        let dst = SocketAddrV4::new(s.outbound.src, s.outbound.sport);
        let route = match self.resolve(*dst.ip(), now) {
            Ok(r) => r,
            Err(reason) => {
                self.counters.inc(reason);
                return None;
            }
        };
        let Some(mut pkt) = io.alloc() else {
            self.counters.inc(Counter::DropMbufExhausted);
            return None;
        };
        let len = ETH_LEN + 20 + 20 + options.len();
        if !pkt.set_len(len) {
            self.counters.inc(Counter::DropMbufExhausted);
            return None;
        }
        let frame = pkt.data_mut();
        frame.fill(0);
        EthernetFrame::new_unchecked(&mut *frame).set_ethertype(ethertype::IPV4);
        write_segment(
            &mut frame[ETH_LEN..],
            Segment {
                src,
                dst,
                seq: client_isn,
                ack: 0,
                flags: crate::wire::tcp::flags::SYN,
                window,
                options: &options,
                payload: &[],
            },
        );
        Some((route, pkt))
    }

    /// The real server's answer to the SYN of waiting session `id`: its
    /// SYN-ACK splices the connection, a RST refuses it.
    pub(super) fn synproxy_answer(
        &mut self,
        id: u32,
        frame: &mut [u8],
        ip: &Ipv4Info,
        l4: &L4Info,
    ) -> Option<Verdict> {
        let tcp = TcpPacket::new_unchecked(&frame[ip.l4_start..ip.l4_end]);
        let (seq, opts) = (tcp.seq_number(), SynOptions::parse(tcp.options()));
        let client_ws = self.snap.synproxy.window_scale as i8;
        let s = self.sessions.get_mut(id)?;
        let cookie = s.splice.server_seq;
        if l4.flags.rst() {
            // Refused (nothing listens): the client gets the RST, at the
            // sequence number it expects after the cookie.
            s.splice = Splice {
                server_seq: cookie.wrapping_add(1).wrapping_sub(seq),
                ..Splice::default()
            };
            s.flags = sflags::SPLICED;
            if let Some((_, held)) = self.held.remove(&id) {
                drop(held);
            }
            self.counters.inc(Counter::SynproxyRealRefused);
            return None;
        }
        if !(l4.flags.syn() && l4.flags.ack()) {
            return Some(Verdict::Drop(Counter::DropSynproxyWaiting));
        }
        let real_isn = seq;
        let (window_in, window_out) = if s.splice.window_in >= 0 {
            match opts.window_scale {
                // Both scale: the real's windows are rescaled to the scale
                // sluice promised the client.
                Some(rw) => (0, rw as i8 - client_ws),
                // The real does not: its windows are in bytes, and the
                // client's scaled ones are scaled back up for it.
                None => (s.splice.window_in, -client_ws),
            }
        } else {
            (0, 0)
        };
        let ts = match (s.flags & sflags::CLIENT_TS != 0, opts.timestamp) {
            (true, Some((real_tsval, _))) => s.splice.ts.wrapping_sub(real_tsval),
            _ => 0,
        };
        s.splice = Splice {
            server_seq: cookie.wrapping_sub(real_isn),
            ts,
            window_in,
            window_out,
            ..s.splice
        };
        s.flags = (s.flags & !sflags::SYNPROXY_WAIT) | sflags::SPLICED;
        self.counters.inc(Counter::SynproxyHandshakes);
        Some(Verdict::Release(id))
    }

    /// Processes the client segment held for session `id` (its handshake
    /// with the real is complete); if none was held, the client's next
    /// segment will complete it.
    pub(super) fn release(&mut self, id: u32, now: u64, io: &mut impl Io<P>) {
        if let Some((port, pkt)) = self.held.remove(&id) {
            self.handle(port, pkt, now, io, Source::Rx);
        }
    }
}

/// An IPv4 + TCP segment sluice writes itself (SYN-ACK, SYN, RST, a PROXY
/// protocol header).
pub(super) struct Segment<'a> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub options: &'a SynOptions,
    pub payload: &'a [u8],
}

impl Segment<'_> {
    /// The IPv4 packet's length once written.
    pub fn len(&self) -> usize {
        20 + 20 + self.options.len() + self.payload.len()
    }
}

/// Writes `seg` (IPv4 header without options, TCP header with options,
/// the payload, every checksum) at the start of `packet`.
pub(super) fn write_segment(packet: &mut [u8], seg: Segment) {
    let opts_len = seg.options.len();
    let hl = 20 + opts_len;
    let tcp_len = hl + seg.payload.len();
    let repr = Ipv4Repr {
        src_addr: *seg.src.ip(),
        dst_addr: *seg.dst.ip(),
        protocol: protocol::TCP,
        payload_len: tcp_len,
        ttl: DEFAULT_TTL,
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut packet[..20]));
    let mut tcp = TcpPacket::new_unchecked(&mut packet[20..20 + tcp_len]);
    tcp.set_src_port(seg.src.port());
    tcp.set_dst_port(seg.dst.port());
    tcp.set_seq_number(seg.seq);
    tcp.set_ack_number(seg.ack);
    tcp.set_header_len(hl);
    tcp.set_flags(seg.flags);
    tcp.set_window_len(seg.window);
    seg.options.emit(tcp.options_mut());
    tcp.payload_mut().copy_from_slice(seg.payload);
    tcp.fill_checksum(*seg.src.ip(), *seg.dst.ip());
}
