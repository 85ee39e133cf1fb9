//! Refusals: a new connection that no real server can take (every real
//! down, quiesced or removed; or sh/mh without fallback hashing it to one
//! that is) is answered at once from the VIP, as a closed port answers,
//! never left to time out:
//!
//! - TCP: a RST (RFC 793's reset for a segment to a closed port), written
//!   over the client's segment in its own buffer;
//! - UDP: an ICMP port unreachable quoting the datagram, as IPVS answers
//!   when it has no destination, at most `UNREACHABLE_PER_SEC` a second per
//!   worker (the rest are dropped and counted).

use super::synproxy::{write_segment, Segment};
use super::*;
use crate::wire::tcp::flags as tcp_flags;
use crate::wire::tcp_options::SynOptions;
use crate::wire::Ipv4Repr;

/// ICMP port unreachables a worker sends per second at most.
const UNREACHABLE_PER_SEC: u32 = 1000;

/// What answers a refused connection, worked out from its first packet.
pub(super) enum Refusal {
    Reset {
        /// Back to the MAC the segment came from (the client or its router).
        client_mac: EthernetAddress,
        client: SocketAddrV4,
        vip: SocketAddrV4,
        seq: u32,
        ack: u32,
        flags: u8,
    },
    Unreachable {
        client_mac: EthernetAddress,
        client: Ipv4Addr,
        vip: Ipv4Addr,
        /// The IPv4 header and the first 8 bytes of the datagram, quoted.
        quote_len: usize,
    },
}

/// Ethernet's shortest frame (without its FCS): short frames are padded.
const MIN_FRAME: usize = 60;

impl<P: PacketBuf> Pipeline<P> {
    /// The answer to `frame`, a client's first packet to a VIP that no
    /// real server can take.
    pub(super) fn refuse(&mut self, frame: &[u8], ip: &Ipv4Info, l4: &L4Info, now: u64) -> Verdict {
        let client_mac = EthernetFrame::new_unchecked(frame).src_addr();
        match l4.proto {
            Proto::Tcp => {
                if l4.flags.rst() {
                    // A reset is never answered.
                    return Verdict::Drop(Counter::DropNoRealServer);
                }
                let tcp = TcpPacket::new_unchecked(&frame[ip.l4_start..ip.l4_end]);
                // RFC 793: a segment with ACK is reset at the sequence
                // number it acknowledges; one without is acknowledged.
                let (seq, ack, flags) = if l4.flags.ack() {
                    (tcp.ack_number(), 0, tcp_flags::RST)
                } else {
                    let data = (ip.l4_end - ip.l4_start).saturating_sub(tcp.header_len());
                    let len = data as u32 + u32::from(l4.flags.syn()) + u32::from(l4.flags.fin());
                    (
                        0,
                        tcp.seq_number().wrapping_add(len),
                        tcp_flags::RST | tcp_flags::ACK,
                    )
                };
                Verdict::Refuse(Refusal::Reset {
                    client_mac,
                    client: SocketAddrV4::new(ip.src, l4.sport),
                    vip: SocketAddrV4::new(ip.dst, l4.dport),
                    seq,
                    ack,
                    flags,
                })
            }
            Proto::Udp => {
                let (start, count) = self.unreachable_window;
                let window = if now.saturating_sub(start) >= 1000 {
                    (now, 0)
                } else {
                    (start, count)
                };
                if window.1 >= UNREACHABLE_PER_SEC {
                    self.unreachable_window = window;
                    return Verdict::Drop(Counter::DropNoRealServer);
                }
                self.unreachable_window = (window.0, window.1 + 1);
                let ihl = ip.l4_start - ETH_LEN;
                Verdict::Refuse(Refusal::Unreachable {
                    client_mac,
                    client: ip.src,
                    vip: ip.dst,
                    quote_len: (ihl + 8).min(ip.l4_end - ETH_LEN),
                })
            }
        }
    }

    /// Rewrites `pkt` into the answer `r` (same buffer); false if the
    /// buffer cannot hold it.
    pub(super) fn emit_refusal(&mut self, in_port: u16, pkt: &mut P, r: &Refusal) -> bool {
        let port_mac = self.snap.ports[in_port as usize].mac;
        match *r {
            Refusal::Reset {
                client_mac,
                client,
                vip,
                seq,
                ack,
                flags,
            } => {
                if !pkt.set_len(MIN_FRAME) {
                    return false;
                }
                let frame = pkt.data_mut();
                frame.fill(0);
                write_l2_ipv4(frame, port_mac, client_mac);
                write_segment(
                    &mut frame[ETH_LEN..],
                    Segment {
                        src: vip,
                        dst: client,
                        seq,
                        ack,
                        flags,
                        window: 0,
                        options: &SynOptions::default(),
                        payload: &[],
                    },
                );
                self.counters.inc(Counter::ResetNoRealServer);
                true
            }
            Refusal::Unreachable {
                client_mac,
                client,
                vip,
                quote_len,
            } => {
                const IP_LEN: usize = 20;
                const ICMP_LEN: usize = Icmpv4Packet::<&[u8]>::HEADER_LEN;
                let len = ETH_LEN + IP_LEN + ICMP_LEN + quote_len;
                if pkt.data().len() < ETH_LEN + quote_len || !pkt.set_len(len.max(MIN_FRAME)) {
                    return false;
                }
                let frame = pkt.data_mut();
                // The quote moves behind the new headers first.
                frame.copy_within(ETH_LEN..ETH_LEN + quote_len, ETH_LEN + IP_LEN + ICMP_LEN);
                frame[len..].fill(0);
                write_l2_ipv4(frame, port_mac, client_mac);
                Ipv4Repr {
                    src_addr: vip,
                    dst_addr: client,
                    protocol: protocol::ICMP,
                    payload_len: ICMP_LEN + quote_len,
                    ttl: DEFAULT_TTL,
                }
                .emit(&mut Ipv4Packet::new_unchecked(
                    &mut frame[ETH_LEN..ETH_LEN + IP_LEN],
                ));
                let mut icmp = Icmpv4Packet::new_unchecked(&mut frame[ETH_LEN + IP_LEN..len]);
                icmp.set_msg_type(msg_type::DST_UNREACHABLE);
                icmp.set_msg_code(crate::wire::icmpv4::dst_unreachable_code::PORT);
                icmp.set_rest_of_header(0);
                icmp.fill_checksum();
                self.counters.inc(Counter::UnreachableNoRealServer);
                true
            }
        }
    }
}

fn write_l2_ipv4(frame: &mut [u8], src: EthernetAddress, dst: EthernetAddress) {
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_dst_addr(dst);
    eth.set_src_addr(src);
    eth.set_ethertype(ethertype::IPV4);
}
