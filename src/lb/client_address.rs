//! Telling a FULLNAT real server the client's address. FULLNAT rewrites the
//! source to a local address, so without help the real sees only sluice. A
//! TCP service's `client_address` chooses the help:
//!
//! - `proxy-v2`: a PROXY protocol v2 header (`wire::proxy`, 28 bytes: the
//!   client's address and port, the VIP's) goes ahead of the client's bytes,
//!   once per connection, as HAProxy's specification asks; nginx, HAProxy,
//!   Envoy and most proxies read it.
//! - `toa`: a TCP option of kind 254 (`wire::tcp_options::toa`) on the
//!   client's first segments, which the TOA kernel module of Alibaba's
//!   FULLNAT and DPVS reads when the real's kernel makes the connection's
//!   socket (on the handshake's last ACK).
//!
//! # The PROXY header in the stream
//!
//! The header takes the sequence numbers `at..at + 28` in the real's space,
//! where `at` is the client's ISN + 1, and every client byte moves up by 28
//! for the life of the session (the session's `Splice`: `client_seq` = 28,
//! `inserted_at` = `at`; `lb::synproxy::adjust` rewrites sequence numbers,
//! acks and SACK blocks, and composes this with the SYN proxy's offsets,
//! which move the real's stream, not the client's). An ack of the real's
//! inside the header acknowledges none of the client's bytes and reaches
//! the client as `at`.
//!
//! The header must arrive before any client byte, whatever is lost, and
//! without waiting for the client to speak (a server-speaks-first protocol:
//! the real waits for the header before it writes its banner). So:
//!
//! 1. **It rides on the handshake's last ACK.** The client's pure ACK at
//!    `at` (the one completing the real's handshake) becomes a segment of
//!    28 bytes at `at`: the header. The real cannot complete its handshake
//!    without receiving it, so if that segment is lost the real retransmits
//!    its SYN-ACK, the client answers with the same ACK, and it carries the
//!    header again. Every pure ACK at `at` does, until the real acknowledges
//!    the header: the client sends data, or waits for a banner, either way
//!    after a header that has left.
//! 2. **Data never carries it.** A client segment with data at `at` (its
//!    ACK was lost before sluice, or it carried data) is preceded by a
//!    header segment of its own when no header has left yet; the client's
//!    segment is untouched but for its sequence number. A full-sized first
//!    segment therefore never grows past the MSS, and no segment is split.
//! 3. **The real's ACKs say when it is missing.** While the header is not
//!    acknowledged, an ACK of the real's (not a SYN-ACK) that acknowledges
//!    none of it means the real holds client bytes but no header (the
//!    header segment was lost, the client's data was not): sluice sends the
//!    header again at once, from what that ACK says. TCP puts the bytes in
//!    order: the header is the first thing the application reads.
//! 4. Once an ACK of the real's covers the header, nothing is added again;
//!    only the offsets remain.
//! 5. **Data on the SYN goes back to the client.** A SYN carrying data
//!    (TCP Fast Open) would hand the real those bytes before the header
//!    exists, at the sequence numbers the header takes. The data is taken
//!    off the SYN (`trim_syn_data`, counted `proxy_syn_data_trimmed`): the
//!    real's SYN-ACK acknowledges only the SYN, so the client sends the
//!    data again after the handshake, behind the header (rule 1 or 2). A
//!    Fast Open client loses the round trip it meant to save; nothing else
//!    changes.
//!
//! # The TOA option
//!
//! Until the real shows its handshake is complete (it sends anything but a
//! SYN-ACK), every client segment toward it carries the option: the
//! handshake's last ACK, a retransmission of it, and a data segment that
//! might complete the handshake if that ACK was lost. To leave room for
//! the option on a full-sized data segment, the MSS a TOA service
//! advertises to the client is 8 bytes smaller than the real's (or the SYN
//! proxy's). A segment whose option space (40 bytes) is full goes out
//! unchanged, and is counted (`toa_no_room`).
//!
//! Pure functions over plain values and byte slices: the decisions
//! (`inbound`, `outbound`), the rewrites of a translated IPv4 packet
//! (`carry_header`, `insert_toa`, `clamp_mss`) and of a SYN before its
//! translation (`trim_syn_data`). The pipeline
//! (`dataplane::pipeline::client_address`) drives them. Nothing here
//! allocates.

use super::service::ClientAddressMode;
use super::session::flags;
use super::synproxy::Splice;
use crate::wire::checksum;
use crate::wire::proxy::TCP4_LEN;
use crate::wire::tcp_options::{self, TOA_LEN};
use crate::wire::Ipv4Packet;
use std::net::SocketAddrV4;

/// The PROXY header's length in the stream.
pub const PROXY_V2_LEN: u32 = TCP4_LEN as u32;

/// What a new session of a service with `mode` starts with: its flags and
/// its splice (`client_isn` is the client's SYN's sequence number).
pub fn start(mode: ClientAddressMode, client_isn: u32) -> (u8, Splice) {
    match mode {
        ClientAddressMode::None => (0, Splice::default()),
        ClientAddressMode::ProxyV2 => (
            flags::PROXY_V2 | flags::SPLICED | flags::CLIENT_ADDRESS_PENDING,
            Splice {
                client_seq: PROXY_V2_LEN,
                inserted_at: client_isn.wrapping_add(1),
                ..Splice::default()
            },
        ),
        ClientAddressMode::Toa => (
            flags::TOA | flags::CLIENT_ADDRESS_PENDING,
            Splice::default(),
        ),
    }
}

/// What the pipeline must know of a TCP segment to decide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload_len: usize,
}

/// What to do with a client segment of a session still `CLIENT_ADDRESS_PENDING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Forward it as it is (translated).
    Plain,
    /// It is a pure ACK at the start of the stream: it carries the header.
    CarryHeader,
    /// It carries data (or FIN) at the start of the stream and no header has
    /// left yet: a header segment of its own goes first.
    HeaderFirst,
    /// Add the TOA option.
    Toa,
    /// A SYN with data (TCP Fast Open): the real would read the data before
    /// the header, so the SYN goes without it (the client sends the data
    /// again once the real's SYN-ACK acknowledged only the SYN).
    TrimSynData,
}

/// The decision for a client segment (`seg` as the client sent it) of a
/// session with `session_flags` and `splice`.
pub fn inbound(session_flags: u8, splice: &Splice, seg: &Segment) -> Inbound {
    if session_flags & flags::CLIENT_ADDRESS_PENDING == 0 {
        return Inbound::Plain;
    }
    if seg.syn && seg.payload_len > 0 && session_flags & flags::PROXY_V2 != 0 {
        return Inbound::TrimSynData;
    }
    if seg.syn || seg.rst || !seg.ack_flag {
        return Inbound::Plain;
    }
    if session_flags & flags::TOA != 0 {
        return Inbound::Toa;
    }
    if session_flags & flags::PROXY_V2 == 0 || seg.seq != splice.inserted_at {
        return Inbound::Plain;
    }
    if seg.payload_len == 0 && !seg.fin {
        Inbound::CarryHeader
    } else if session_flags & flags::PROXY_HEADER_SENT == 0 {
        Inbound::HeaderFirst
    } else {
        Inbound::Plain
    }
}

/// What a real's segment (`seg` as the real sent it) of a session still
/// `CLIENT_ADDRESS_PENDING` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// Nothing yet.
    Plain,
    /// The real has what sluice added: no longer pending.
    Confirmed,
    /// The real acknowledges none of the header: send it again.
    ResendHeader,
    /// A TOA service's SYN-ACK: its MSS must leave room for the option.
    ClampMss,
}

pub fn outbound(session_flags: u8, splice: &Splice, seg: &Segment) -> Outbound {
    if session_flags & flags::CLIENT_ADDRESS_PENDING == 0 {
        return Outbound::Plain;
    }
    if session_flags & flags::TOA != 0 {
        return match (seg.syn, seg.ack_flag) {
            (true, true) => Outbound::ClampMss,
            (true, false) => Outbound::Plain,
            // Anything but a SYN: the real's socket exists.
            (false, _) => Outbound::Confirmed,
        };
    }
    if session_flags & flags::PROXY_V2 == 0 || seg.syn || seg.rst || !seg.ack_flag {
        // A SYN-ACK retransmitted: the client's ACK to it carries the header.
        return Outbound::Plain;
    }
    let into = seg.ack.wrapping_sub(splice.inserted_at);
    if into < splice.client_seq {
        Outbound::ResendHeader
    } else if (into as i32) > 0 {
        Outbound::Confirmed
    } else {
        // Before the stream (an ack from another life of the 4-tuple).
        Outbound::Plain
    }
}

/// Turns `packet` (a translated IPv4 packet: a pure ACK at `at`, its
/// buffer already PROXY_V2_LEN bytes longer than its total length) into the
/// segment that carries `header` at `at`. `offload`: the NIC computes the
/// checksums (the TCP field holds the pseudo-header sum), else they are
/// updated here (RFC 1624).
pub fn carry_header(packet: &mut [u8], header: &[u8; TCP4_LEN], at: u32, offload: bool) {
    let (l3_len, tcp_len) = lengths(packet);
    let total = l3_len + tcp_len;
    set_total_len(packet, total as u16, (total + TCP4_LEN) as u16, offload);
    let tcp = &mut packet[l3_len..total + TCP4_LEN];
    tcp[tcp_len..].copy_from_slice(header);
    let old_seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    tcp[4..8].copy_from_slice(&at.to_be_bytes());
    let old_word = word(tcp, 12);
    tcp[13] |= crate::wire::tcp::flags::PSH;
    let new_word = word(tcp, 12);
    let sum = if offload {
        pseudo_sum(packet, tcp_len + TCP4_LEN)
    } else {
        let sum = u16::from_be_bytes([tcp[16], tcp[17]]);
        let sum = checksum::update_u32(sum, old_seq, at);
        let sum = checksum::update_u16(sum, old_word, new_word);
        // The pseudo-header's TCP length, and the header's own words (it
        // starts on a 4-byte boundary of the segment).
        let sum = checksum::update_u16(sum, tcp_len as u16, (tcp_len + TCP4_LEN) as u16);
        add_words(sum, checksum::sum(header))
    };
    packet[l3_len + 16..l3_len + 18].copy_from_slice(&sum.to_be_bytes());
}

/// Inserts the TOA option naming `client` at the end of the TCP options of
/// `packet` (a translated IPv4 packet whose buffer is already TOA_LEN bytes
/// longer than its total length), moving the payload up. False, with the
/// packet unchanged, when the option space is full.
pub fn insert_toa(packet: &mut [u8], client: SocketAddrV4, offload: bool) -> bool {
    let (l3_len, tcp_len) = lengths(packet);
    let header_len = usize::from(packet[l3_len + 12] >> 4) * 4;
    if header_len - 20 + TOA_LEN > tcp_options::MAX_AREA
        || packet.len() < l3_len + tcp_len + TOA_LEN
    {
        return false;
    }
    let total = l3_len + tcp_len;
    set_total_len(packet, total as u16, (total + TOA_LEN) as u16, offload);
    let tcp = &mut packet[l3_len..total + TOA_LEN];
    // The payload moves up by 8 bytes: an even shift, so its words, and
    // its share of the checksum, stay the same.
    tcp.copy_within(header_len..tcp_len, header_len + TOA_LEN);
    let option = tcp_options::toa(client);
    tcp[header_len..header_len + TOA_LEN].copy_from_slice(&option);
    let old_word = word(tcp, 12);
    tcp[12] = (((header_len + TOA_LEN) / 4) as u8) << 4 | (tcp[12] & 0x0f);
    let new_word = word(tcp, 12);
    let sum = u16::from_be_bytes([tcp[16], tcp[17]]);
    let sum = if offload {
        pseudo_sum(packet, tcp_len + TOA_LEN)
    } else {
        let sum = checksum::update_u16(sum, old_word, new_word);
        let sum = checksum::update_u16(sum, tcp_len as u16, (tcp_len + TOA_LEN) as u16);
        add_words(sum, checksum::sum(&option))
    };
    packet[l3_len + 16..l3_len + 18].copy_from_slice(&sum.to_be_bytes());
    true
}

/// Takes the data off a SYN in the IPv4 `packet` (headers validated, not
/// translated yet): total length and both checksums made to match. The
/// buffer keeps its length; the caller shortens it.
pub fn trim_syn_data(packet: &mut [u8]) {
    let (l3_len, tcp_len) = lengths(packet);
    let header_len = usize::from(packet[l3_len + 12] >> 4) * 4;
    if header_len >= tcp_len {
        return;
    }
    let total = (l3_len + header_len) as u16;
    set_total_len(packet, (l3_len + tcp_len) as u16, total, false);
    let (src, dst) = {
        let ip = Ipv4Packet::new_unchecked(&*packet);
        (ip.src_addr(), ip.dst_addr())
    };
    // A SYN is small and rare: its checksum is summed again.
    crate::wire::TcpPacket::new_unchecked(&mut packet[l3_len..l3_len + header_len])
        .fill_checksum(src, dst);
}

/// Lowers the MSS option of the TCP segment `tcp` (header validated) by
/// `by`, keeping its checksum right. False if it has none.
pub fn clamp_mss(tcp: &mut [u8], by: u16) -> bool {
    let header_len = usize::from(tcp[12] >> 4) * 4;
    let Some(at) = tcp.get(20..header_len).and_then(tcp_options::mss_at) else {
        return false;
    };
    let at = 20 + at;
    let old = u16::from_be_bytes([tcp[at], tcp[at + 1]]);
    // Never below the smallest MSS a host must accept (RFC 9293: 536).
    let new = old.saturating_sub(by).max(536).min(old);
    tcp[at..at + 2].copy_from_slice(&new.to_be_bytes());
    let sum = u16::from_be_bytes([tcp[16], tcp[17]]);
    // The MSS value sits on an even offset: one checksum word.
    let sum = checksum::update_u16(sum, old, new);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    true
}

/// (IPv4 header length, TCP length) of a translated packet.
fn lengths(packet: &[u8]) -> (usize, usize) {
    let ip = Ipv4Packet::new_unchecked(packet);
    let l3_len = ip.header_len();
    (l3_len, usize::from(ip.total_len()) - l3_len)
}

/// Sets the IPv4 total length, and its header checksum unless the NIC
/// computes it.
fn set_total_len(packet: &mut [u8], old: u16, new: u16, offload: bool) {
    let mut ip = Ipv4Packet::new_unchecked(packet);
    ip.set_total_len(new);
    if !offload {
        let sum = checksum::update_u16(ip.checksum(), old, new);
        ip.set_checksum(sum);
    }
}

/// The pseudo-header sum a NIC's TCP checksum offload starts from.
fn pseudo_sum(packet: &[u8], tcp_len: usize) -> u16 {
    let ip = Ipv4Packet::new_unchecked(packet);
    checksum::pseudo_header(ip.src_addr(), ip.dst_addr(), 6, tcp_len as u16)
}

/// A checksum field after words summing to `added` joined the data.
fn add_words(field: u16, added: u32) -> u16 {
    !checksum::fold(u32::from(!field) + u32::from(checksum::fold(added)))
}

fn word(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
