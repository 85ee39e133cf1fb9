//! Telling a FULLNAT real the client's address, in the pipeline (see
//! `lb::client_address` for the design): `translate` asks
//! `client_address_step` about each segment of a session that is still
//! `CLIENT_ADDRESS_PENDING` (a flag test for every other packet), and what
//! needs the packet's buffer or a segment of sluice's own comes back as an
//! `Addition`, done by `forward_with` once the packet is translated.

use super::synproxy::{write_segment, Segment as OwnSegment};
use super::*;
use crate::lb::client_address::{self, Inbound, Outbound, Segment};
use crate::lb::session::flags as sflags;
use crate::wire::proxy::{ProxyV2Repr, TCP4_LEN};
use crate::wire::tcp::flags as tcp_flags;
use crate::wire::tcp_options::{SynOptions, TOA_LEN};

/// What a translated packet still needs.
#[derive(Clone, Copy)]
pub(super) enum Addition {
    /// It is a pure ACK at the start of session `u32`'s client stream: it
    /// carries the PROXY header.
    CarryHeader(u32),
    /// It carries the client's first bytes and no header has left yet: a
    /// header segment of its own goes first, with the packet's ack, window
    /// and timestamps.
    HeaderFirst(u32),
    /// A real's ACK that acknowledges none of the header: the packet goes
    /// on to the client, and a header segment to the real, acknowledging
    /// what the real had sent (`ack`), with the timestamps turned around.
    ResendHeader {
        id: u32,
        ack: u32,
        window: u16,
        ts: Option<(u32, u32)>,
    },
    /// A TOA option goes into the packet.
    Toa(u32),
    /// The packet (a SYN) lost its data: its buffer gets shorter too.
    Trimmed,
}

/// The facts `lb::client_address` decides on, from a validated segment.
fn segment_of(frame: &[u8], ip: &Ipv4Info) -> Segment {
    let tcp = TcpPacket::new_unchecked(&frame[ip.l4_start..ip.l4_end]);
    Segment {
        seq: tcp.seq_number(),
        ack: tcp.ack_number(),
        syn: tcp.syn(),
        ack_flag: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        payload_len: tcp.payload().len(),
    }
}

impl<P: PacketBuf> Pipeline<P> {
    /// Looks at a segment of session `id` (`flags`, still pending) going
    /// `dir`, as its sender wrote it: settles what needs nothing more (the
    /// real confirmed, a SYN-ACK's MSS lowered for TOA) and returns what
    /// the translated packet needs.
    #[cold]
    pub(super) fn client_address_step(
        &mut self,
        id: u32,
        dir: Direction,
        flags: u8,
        frame: &mut [u8],
        ip: &Ipv4Info,
    ) -> Option<Addition> {
        let splice = self.sessions.get(id)?.splice;
        let seg = segment_of(frame, ip);
        match dir {
            Direction::Inbound => match client_address::inbound(flags, &splice, &seg) {
                Inbound::Plain => None,
                Inbound::CarryHeader => Some(Addition::CarryHeader(id)),
                Inbound::HeaderFirst => Some(Addition::HeaderFirst(id)),
                Inbound::Toa => Some(Addition::Toa(id)),
                Inbound::TrimSynData => {
                    client_address::trim_syn_data(&mut frame[ETH_LEN..ip.l4_end]);
                    self.counters.inc(Counter::ProxySynDataTrimmed);
                    Some(Addition::Trimmed)
                }
            },
            Direction::Outbound => match client_address::outbound(flags, &splice, &seg) {
                Outbound::Plain => None,
                Outbound::Confirmed => {
                    if let Some(s) = self.sessions.get_mut(id) {
                        s.flags &= !sflags::CLIENT_ADDRESS_PENDING;
                    }
                    None
                }
                Outbound::ClampMss => {
                    client_address::clamp_mss(&mut frame[ip.l4_start..ip.l4_end], TOA_LEN as u16);
                    None
                }
                Outbound::ResendHeader => {
                    let tcp = TcpPacket::new_unchecked(&frame[ip.l4_start..ip.l4_end]);
                    let ts = SynOptions::parse(tcp.options()).timestamp;
                    Some(Addition::ResendHeader {
                        id,
                        ack: seg.seq,
                        window: tcp.window_len(),
                        ts: ts.map(|(tsval, tsecr)| (tsecr, tsval)),
                    })
                }
            },
        }
    }

    /// Sends `pkt` (translated, along `route`) with its `addition`.
    pub(super) fn forward_with(
        &mut self,
        route: Route,
        offload: Option<(usize, Proto)>,
        addition: Addition,
        mut pkt: P,
        now: u64,
        io: &mut impl Io<P>,
    ) {
        let ip_end = ETH_LEN + ip_total_len(pkt.data());
        match addition {
            Addition::CarryHeader(id) => {
                let Some(h) = self.proxy_header(id) else {
                    return self.counters.inc(Counter::DropNotServed);
                };
                if !pkt.set_len(ip_end + TCP4_LEN) {
                    return self.counters.inc(Counter::DropMbufExhausted);
                }
                let packet = &mut pkt.data_mut()[ETH_LEN..];
                client_address::carry_header(packet, &h.bytes, h.at, offload.is_some());
                self.header_sent(id);
            }
            Addition::HeaderFirst(id) => {
                // The client's bytes must not go without a header ahead:
                // without a buffer for it, the client retransmits them.
                let Some(segment) = self.header_segment_before(id, pkt.data(), io) else {
                    return self.counters.inc(Counter::DropMbufExhausted);
                };
                self.header_sent(id);
                self.forward(route, segment, now, io);
            }
            Addition::ResendHeader {
                id,
                ack,
                window,
                ts,
            } => self.resend_header(id, ack, window, ts, now, io),
            Addition::Trimmed => {
                pkt.set_len(ip_end);
            }
            Addition::Toa(id) => {
                let client = self
                    .sessions
                    .get(id)
                    .map(|s| SocketAddrV4::new(s.inbound.src, s.inbound.sport));
                let len = pkt.data().len();
                let added = client.is_some_and(|client| {
                    pkt.set_len(ip_end + TOA_LEN)
                        && client_address::insert_toa(
                            &mut pkt.data_mut()[ETH_LEN..],
                            client,
                            offload.is_some(),
                        )
                });
                if added {
                    self.counters.inc(Counter::ToaAdded);
                } else {
                    // Unchanged: the length it had.
                    pkt.set_len(len);
                    self.counters.inc(Counter::ToaNoRoom);
                }
            }
        }
        if let Some((l3_len, proto)) = offload {
            pkt.request_tx_checksums(l3_len, proto);
        }
        self.forward(route, pkt, now, io);
    }

    /// Session `id`'s PROXY header and where it goes in the real's stream.
    fn proxy_header(&self, id: u32) -> Option<ProxyHeader> {
        let s = self.sessions.get(id)?;
        Some(ProxyHeader {
            bytes: ProxyV2Repr {
                client: SocketAddrV4::new(s.inbound.src, s.inbound.sport),
                vip: SocketAddrV4::new(s.inbound.dst, s.inbound.dport),
            }
            .bytes(),
            at: s.splice.inserted_at,
            local: SocketAddrV4::new(s.outbound.dst, s.outbound.dport),
            real: SocketAddrV4::new(s.outbound.src, s.outbound.sport),
        })
    }

    /// Counts a header that left, and remembers the first.
    fn header_sent(&mut self, id: u32) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if s.flags & sflags::PROXY_HEADER_SENT != 0 {
            self.counters.inc(Counter::ProxyHeadersResent);
        } else {
            s.flags |= sflags::PROXY_HEADER_SENT;
            self.counters.inc(Counter::ProxyHeadersSent);
        }
    }

    /// A header segment to go ahead of `frame` (a translated client
    /// segment toward the real): its ack, window and timestamps.
    fn header_segment_before(&mut self, id: u32, frame: &[u8], io: &mut impl Io<P>) -> Option<P> {
        let h = self.proxy_header(id)?;
        let ipp = Ipv4Packet::new_checked(frame.get(ETH_LEN..)?).ok()?;
        let tcp = TcpPacket::new_checked(ipp.payload()).ok()?;
        let ts = SynOptions::parse(tcp.options()).timestamp;
        build_header_segment(&h, tcp.ack_number(), tcp.window_len(), ts, io)
    }

    /// The real acknowledged none of session `id`'s header: sends it again.
    fn resend_header(
        &mut self,
        id: u32,
        ack: u32,
        window: u16,
        ts: Option<(u32, u32)>,
        now: u64,
        io: &mut impl Io<P>,
    ) {
        let Some(h) = self.proxy_header(id) else {
            return;
        };
        let route = match self.resolve(*h.real.ip(), now) {
            Ok(route) => route,
            Err(reason) => return self.counters.inc(reason),
        };
        // The window is the real's own: the real ignores it, as the
        // segment is older than the client's it last took a window from.
        let Some(segment) = build_header_segment(&h, ack, window, ts, io) else {
            return self.counters.inc(Counter::DropMbufExhausted);
        };
        self.header_sent(id);
        self.forward(route, segment, now, io);
    }
}

/// A session's PROXY header, where it goes, and between whom.
struct ProxyHeader {
    bytes: [u8; TCP4_LEN],
    at: u32,
    local: SocketAddrV4,
    real: SocketAddrV4,
}

/// A segment of sluice's own from the local address to the real carrying
/// the header at its place in the stream (ACK and PSH, the timestamps if
/// the connection has them); L2 is written when it is forwarded.
fn build_header_segment<P: PacketBuf>(
    h: &ProxyHeader,
    ack: u32,
    window: u16,
    ts: Option<(u32, u32)>,
    io: &mut impl Io<P>,
) -> Option<P> {
    let options = SynOptions {
        timestamp: ts,
        ..SynOptions::default()
    };
    let seg = OwnSegment {
        src: h.local,
        dst: h.real,
        seq: h.at,
        ack,
        flags: tcp_flags::ACK | tcp_flags::PSH,
        window,
        options: &options,
        payload: &h.bytes,
    };
    let mut pkt = io.alloc()?;
    if !pkt.set_len(ETH_LEN + seg.len()) {
        return None;
    }
    let frame = pkt.data_mut();
    frame.fill(0);
    EthernetFrame::new_unchecked(&mut *frame).set_ethertype(ethertype::IPV4);
    write_segment(&mut frame[ETH_LEN..], seg);
    Some(pkt)
}

/// The IPv4 total length of a frame the pipeline validated and translated.
fn ip_total_len(frame: &[u8]) -> usize {
    usize::from(Ipv4Packet::new_unchecked(&frame[ETH_LEN..]).total_len())
}
