//! The client's address through FULLNAT (issue 11): the PROXY protocol v2
//! header in the client's stream (byte-exact, on the handshake's last ACK,
//! ahead of a first segment that lost its ACK, again when the real's ACKs
//! show it missing, composed with the SYN proxy), and the TOA option.

use super::*;
use crate::wire::proxy::ProxyV2Header;
use crate::wire::tcp_options::{self, SynOptions};

/// What the real reads first: the header for client 10.10.0.2:40000 to
/// VIP 10.10.0.100:80 (PROXY protocol v2, TCP over IPv4).
const HEADER: [u8; 28] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c,
    10, 10, 0, 2, 10, 10, 0, 100, 0x9c, 0x40, 0x00, 0x50,
];

const ISN: u32 = 0x1000_0000;
const RISN: u32 = 0x7777_0000;
const SPORT: u16 = 40000;

fn service(mode: &str) -> String {
    fullnat("[1024, 65535]").replace(
        "mode = \"fullnat\"",
        &format!("mode = \"fullnat\"\nclient_address = \"{mode}\"\nsynproxy = false"),
    )
}

fn syn_opts() -> Vec<u8> {
    options(SynOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamp: Some((111_000, 0)),
    })
}

/// A client segment to the VIP with timestamps.
fn from_client(f: u8, (seq, ack): (u32, u32), tsval: u32, payload: &[u8]) -> Vec<u8> {
    let opts = if f & flags::SYN != 0 {
        syn_opts()
    } else {
        ts_option(tsval, 900_000)
    };
    tcp_full(
        LB_WAN,
        CLIENT_MAC,
        (CLIENT, SPORT),
        (VIP, 80),
        f,
        (seq, ack),
        502,
        &opts,
        payload,
    )
}

/// The real's SYN-ACK (ISN `RISN`) to local port `lport`: MSS 1460, SACK,
/// window scale `wscale`, timestamps (900_000, `tsecr`).
fn synack_from_real(lport: u16, wscale: u8, tsecr: u32) -> Vec<u8> {
    let opts = options(SynOptions {
        mss: Some(1460),
        window_scale: Some(wscale),
        sack_permitted: true,
        timestamp: Some((900_000, tsecr)),
    });
    from_real(lport, flags::SYN | flags::ACK, (RISN, ISN + 1), &opts, b"")
}

/// A real's segment to local port `lport`, with the options given.
fn from_real(lport: u16, f: u8, (seq, ack): (u32, u32), opts: &[u8], payload: &[u8]) -> Vec<u8> {
    tcp_full(
        LB_LAN,
        ROUTER_MAC,
        (FAR_REAL, 8080),
        (LIP, lport),
        f,
        (seq, ack),
        509,
        opts,
        payload,
    )
}

/// Timestamps and one SACK block, as a real acknowledging out of order.
fn ts_sack(tsval: u32, tsecr: u32, left: u32, right: u32) -> Vec<u8> {
    let mut o = ts_option(tsval, tsecr);
    o.extend_from_slice(&[1, 1, 5, 10]);
    o.extend_from_slice(&left.to_be_bytes());
    o.extend_from_slice(&right.to_be_bytes());
    o
}

/// The SACK blocks of a TCP frame.
fn sack_of(frame: &[u8]) -> Vec<(u32, u32)> {
    let ipp = Ipv4Packet::new_checked(&frame[ETH_LEN..]).unwrap();
    let t = TcpPacket::new_checked(ipp.payload()).unwrap();
    let area = t.options();
    let Some((at, n)) = tcp_options::sack_blocks(area) else {
        return Vec::new();
    };
    let word = |i: usize| u32::from_be_bytes(area[i..i + 4].try_into().unwrap());
    (0..n)
        .map(|b| (word(at + 8 * b), word(at + 8 * b + 4)))
        .collect()
}

fn ip_len(frame: &[u8]) -> usize {
    Ipv4Packet::new_checked(&frame[ETH_LEN..])
        .unwrap()
        .total_len() as usize
}

/// SYN and SYN-ACK through a proxy-v2 (or TOA) service: the handshake as
/// the real and the client see it. Returns the local port.
fn handshake(lb: &mut Lb) -> u16 {
    let out = lb.rx(0, from_client(flags::SYN, (ISN, 0), 111_000, b""));
    assert_eq!(out.len(), 1);
    let (seq, ack, f, _, _) = tcp_of(&out[0].1);
    assert_eq!((seq, ack, f), (ISN, 0, flags::SYN), "the SYN keeps its ISN");
    let lport = endpoints(&out[0].1).0.port();
    let out = lb.rx(1, synack_from_real(lport, 9, 111_000));
    assert_eq!(out.len(), 1);
    let (seq, ack, _, _, _) = tcp_of(&out[0].1);
    assert_eq!(
        (seq, ack),
        (RISN, ISN + 1),
        "the SYN-ACK acks the ISN as sent"
    );
    lport
}

#[test]
fn the_header_rides_on_the_handshakes_last_ack_byte_exact() {
    let mut lb = Lb::new(&service("proxy-v2")).with_router();
    let lport = handshake(&mut lb);
    // The client's ACK becomes the header's segment: at ISN + 1, the 28
    // bytes, its own ack and timestamps.
    let out = lb.rx(
        0,
        from_client(flags::ACK, (ISN + 1, RISN + 1), 111_010, b""),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(endpoints(&out[0].1), (sa(LIP, lport), sa(FAR_REAL, 8080)));
    let (seq, ack, f, o, payload) = tcp_of(&out[0].1);
    assert_eq!((seq, ack), (ISN + 1, RISN + 1));
    assert_eq!(f, flags::ACK | flags::PSH);
    assert_eq!(o.timestamp, Some((111_010, 900_000)));
    assert_eq!(payload, HEADER);
    let h = ProxyV2Header::new_checked(&payload[..]).unwrap();
    assert_eq!(
        h.tcp4_addresses(),
        Some((sa(CLIENT, SPORT), sa(VIP, 80))),
        "client and VIP"
    );
    assert_eq!(lb.count(Counter::ProxyHeadersSent), 1);

    // The request follows at once, before the real acknowledged the
    // header: moved past it, and no second header.
    let out = lb.rx(
        0,
        from_client(
            flags::ACK | flags::PSH,
            (ISN + 1, RISN + 1),
            111_011,
            b"GET /",
        ),
    );
    assert_eq!(out.len(), 1);
    let (seq, _, _, _, payload) = tcp_of(&out[0].1);
    assert_eq!((seq, payload.as_slice()), (ISN + 29, &b"GET /"[..]));

    // The real acknowledges header and request, with a SACK block of
    // later bytes: the client sees only its own bytes acknowledged.
    let out = lb.rx(
        1,
        from_real(
            lport,
            flags::ACK,
            (RISN + 1, ISN + 34),
            &ts_sack(900_010, 111_011, ISN + 40, ISN + 50),
            b"",
        ),
    );
    let (seq, ack, _, _, _) = tcp_of(&out[0].1);
    assert_eq!((seq, ack), (RISN + 1, ISN + 6));
    assert_eq!(sack_of(&out[0].1), [(ISN + 12, ISN + 22)]);
    // Its answer, then the client's ACK of it with a SACK block of the
    // real's stream: the real's numbers are not moved.
    let out = lb.rx(
        1,
        from_real(
            lport,
            flags::ACK | flags::PSH,
            (RISN + 1, ISN + 34),
            &ts_option(900_020, 111_011),
            b"200 OK",
        ),
    );
    let (seq, ack, _, _, payload) = tcp_of(&out[0].1);
    assert_eq!(
        (seq, ack, payload.as_slice()),
        (RISN + 1, ISN + 6, &b"200 OK"[..])
    );
    let mut sack = ts_option(111_020, 900_020);
    sack.extend_from_slice(&[1, 1, 5, 10]);
    sack.extend_from_slice(&(RISN + 20).to_be_bytes());
    sack.extend_from_slice(&(RISN + 30).to_be_bytes());
    let c = tcp_full(
        LB_WAN,
        CLIENT_MAC,
        (CLIENT, SPORT),
        (VIP, 80),
        flags::ACK,
        (ISN + 6, RISN + 7),
        502,
        &sack,
        b"",
    );
    let out = lb.rx(0, c);
    assert_eq!(out.len(), 1);
    let (seq, ack, _, _, payload) = tcp_of(&out[0].1);
    assert_eq!((seq, ack), (ISN + 34, RISN + 7));
    assert!(payload.is_empty(), "a later pure ACK carries nothing");
    assert_eq!(sack_of(&out[0].1), [(RISN + 20, RISN + 30)]);
    assert_eq!(
        (
            lb.count(Counter::ProxyHeadersSent),
            lb.count(Counter::ProxyHeadersResent)
        ),
        (1, 0)
    );
}

#[test]
fn server_speaks_first_gets_the_header_without_client_data() {
    let mut lb = Lb::new(&service("proxy-v2")).with_router();
    let lport = handshake(&mut lb);
    // The handshake's last ACK carries the header...
    let out = lb.rx(
        0,
        from_client(flags::ACK, (ISN + 1, RISN + 1), 111_010, b""),
    );
    assert_eq!(tcp_of(&out[0].1).4, HEADER);
    // ... and is lost: the real, still in SYN_RECV, sends its SYN-ACK again;
    // the client's answer carries the header again.
    let out = lb.rx(
        1,
        from_real(
            lport,
            flags::SYN | flags::ACK,
            (RISN, ISN + 1),
            &ts_option(901_000, 111_000),
            b"",
        ),
    );
    assert_eq!(tcp_of(&out[0].1).1, ISN + 1, "to the client unchanged");
    let out = lb.rx(
        0,
        from_client(flags::ACK, (ISN + 1, RISN + 1), 111_020, b""),
    );
    assert_eq!(out.len(), 1);
    let (seq, _, _, _, payload) = tcp_of(&out[0].1);
    assert_eq!((seq, payload.as_slice()), (ISN + 1, &HEADER[..]));
    assert_eq!(lb.count(Counter::ProxyHeadersResent), 1);
    // The real has it and writes its banner: the client sees it acked at
    // ISN + 1 (none of its own bytes), and its ACK of the banner is a
    // plain ACK past the header.
    let out = lb.rx(
        1,
        from_real(
            lport,
            flags::ACK | flags::PSH,
            (RISN + 1, ISN + 29),
            &ts_option(901_010, 111_020),
            b"220 ready\r\n",
        ),
    );
    let (seq, ack, _, _, payload) = tcp_of(&out[0].1);
    assert_eq!((seq, ack), (RISN + 1, ISN + 1));
    assert_eq!(payload, b"220 ready\r\n");
    let out = lb.rx(
        0,
        from_client(flags::ACK, (ISN + 1, RISN + 12), 111_030, b""),
    );
    let (seq, ack, _, _, payload) = tcp_of(&out[0].1);
    assert_eq!((seq, ack), (ISN + 29, RISN + 12));
    assert!(payload.is_empty());
    assert_eq!(lb.count(Counter::ProxyHeadersSent), 1);
    assert_eq!(lb.count(Counter::ProxyHeadersResent), 1);
}

#[test]
fn a_lost_header_is_sent_again_when_the_real_acks_none_of_it() {
    let mut lb = Lb::new(&service("proxy-v2")).with_router();
    let lport = handshake(&mut lb);
    lb.rx(
        0,
        from_client(flags::ACK, (ISN + 1, RISN + 1), 111_010, b""),
    );
    let out = lb.rx(
        0,
        from_client(
            flags::ACK | flags::PSH,
            (ISN + 1, RISN + 1),
            111_011,
            b"GET /",
        ),
    );
    assert_eq!(tcp_of(&out[0].1).0, ISN + 29);
    // The header's segment was lost, the request was not: the real holds
    // it out of order and acknowledges nothing past ISN + 1.
    let dup = from_real(
        lport,
        flags::ACK,
        (RISN + 1, ISN + 1),
        &ts_sack(900_010, 111_011, ISN + 29, ISN + 34),
        b"",
    );
    let out = lb.rx(1, dup);
    assert_eq!(
        out.len(),
        2,
        "the ACK to the client, the header to the real"
    );
    let to_client = out.iter().find(|(p, _)| *p == 0).unwrap();
    let (_, ack, _, _, _) = tcp_of(&to_client.1);
    assert_eq!(ack, ISN + 1);
    assert_eq!(sack_of(&to_client.1), [(ISN + 1, ISN + 6)]);
    let to_real = out.iter().find(|(p, _)| *p == 1).unwrap();
    assert_eq!(l2(&to_real.1), (LB_LAN, ROUTER_MAC));
    assert_eq!(endpoints(&to_real.1), (sa(LIP, lport), sa(FAR_REAL, 8080)));
    let (seq, ack, f, o, payload) = tcp_of(&to_real.1);
    assert_eq!((seq, ack), (ISN + 1, RISN + 1));
    assert_eq!(f, flags::ACK | flags::PSH);
    assert_eq!(
        o.timestamp,
        Some((111_011, 900_010)),
        "the real's, turned around"
    );
    assert_eq!(payload, HEADER);
    assert_eq!(lb.count(Counter::ProxyHeadersResent), 1);
    // Now the real has both: its ACK covers them, and nothing more is sent.
    let out = lb.rx(
        1,
        from_real(
            lport,
            flags::ACK,
            (RISN + 1, ISN + 34),
            &ts_option(900_020, 111_011),
            b"",
        ),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(tcp_of(&out[0].1).1, ISN + 6);
    let again = from_real(
        lport,
        flags::ACK,
        (RISN + 1, ISN + 34),
        &ts_option(900_030, 111_011),
        b"",
    );
    assert_eq!(lb.rx(1, again).len(), 1);
    assert_eq!(lb.count(Counter::ProxyHeadersResent), 1);
}

#[test]
fn a_first_segment_without_its_ack_gets_a_header_segment_ahead() {
    let mut lb = Lb::new(&service("proxy-v2")).with_router();
    let lport = handshake(&mut lb);
    // The handshake's ACK never reached sluice; the first data segment is
    // full-sized: it goes as it came (but for its sequence number), after
    // a header segment of its own, so nothing outgrows the MSS.
    let data = vec![0x5a; 1448];
    let seg = from_client(flags::ACK | flags::PSH, (ISN + 1, RISN + 1), 111_011, &data);
    let before = ip_len(&seg);
    assert_eq!(before, 1500);
    let out = lb.rx(0, seg);
    assert_eq!(out.len(), 2);
    let (seq, ack, f, o, payload) = tcp_of(&out[0].1);
    assert_eq!((seq, ack, f), (ISN + 1, RISN + 1, flags::ACK | flags::PSH));
    assert_eq!(payload, HEADER, "the header goes first");
    assert_eq!(o.timestamp, Some((111_011, 900_000)));
    assert_eq!(endpoints(&out[0].1), (sa(LIP, lport), sa(FAR_REAL, 8080)));
    assert_eq!(l2(&out[0].1), (LB_LAN, ROUTER_MAC));
    let (seq, _, _, _, payload) = tcp_of(&out[1].1);
    assert_eq!(seq, ISN + 29);
    assert_eq!(payload, data);
    assert_eq!(ip_len(&out[1].1), before, "the first segment did not grow");
    // Its retransmission (the real did not acknowledge it yet) goes alone:
    // the header has left, and the real's ACKs would say if it was lost.
    let out = lb.rx(
        0,
        from_client(flags::ACK | flags::PSH, (ISN + 1, RISN + 1), 111_211, &data),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(tcp_of(&out[0].1).0, ISN + 29);
    assert_eq!(
        (
            lb.count(Counter::ProxyHeadersSent),
            lb.count(Counter::ProxyHeadersResent)
        ),
        (1, 0)
    );
}

#[test]
fn the_header_composes_with_the_syn_proxy() {
    let services = service("proxy-v2").replace("synproxy = false", "synproxy = true");
    let mut lb = Lb::new(&services).with_router();
    // The cookie SYN-ACK, the client's ACK held while the real answers.
    let out = lb.rx(0, from_client(flags::SYN, (ISN, 0), 111_000, b""));
    let (cookie, _, _, o, _) = tcp_of(&out[0].1);
    let (our_ts, _) = o.timestamp.unwrap();
    let ack = tcp_full(
        LB_WAN,
        CLIENT_MAC,
        (CLIENT, SPORT),
        (VIP, 80),
        flags::ACK,
        (ISN + 1, cookie.wrapping_add(1)),
        502,
        &ts_option(111_010, our_ts),
        b"",
    );
    let out = lb.rx(0, ack);
    assert_eq!(out.len(), 1);
    let (seq, _, f, _, _) = tcp_of(&out[0].1);
    assert_eq!(
        (seq, f),
        (ISN, flags::SYN),
        "the SYN to the real keeps the ISN"
    );
    let lport = endpoints(&out[0].1).0.port();
    // The real's SYN-ACK: the held ACK completes its handshake carrying the
    // header, its ack in the real's space.
    let out = lb.rx(1, synack_from_real(lport, 7, 111_010));
    assert_eq!(out.len(), 1);
    let (seq, ack, _, o, payload) = tcp_of(&out[0].1);
    assert_eq!((seq, ack), (ISN + 1, RISN + 1));
    assert_eq!(o.timestamp, Some((111_010, 900_000)));
    assert_eq!(payload, HEADER);
    // Both offsets at once: the client's stream moves by the header, the
    // real's by the cookie.
    let out = lb.rx(
        0,
        tcp_full(
            LB_WAN,
            CLIENT_MAC,
            (CLIENT, SPORT),
            (VIP, 80),
            flags::ACK | flags::PSH,
            (ISN + 1, cookie.wrapping_add(1)),
            502,
            &ts_option(111_020, our_ts),
            b"GET /",
        ),
    );
    let (seq, ack, _, _, _) = tcp_of(&out[0].1);
    assert_eq!((seq, ack), (ISN + 29, RISN + 1));
    let out = lb.rx(
        1,
        from_real(
            lport,
            flags::ACK | flags::PSH,
            (RISN + 1, ISN + 34),
            &ts_sack(900_010, 111_020, ISN + 40, ISN + 50),
            b"200 OK",
        ),
    );
    let (seq, ack, _, _, payload) = tcp_of(&out[0].1);
    assert_eq!((seq, ack), (cookie.wrapping_add(1), ISN + 6));
    assert_eq!(payload, b"200 OK");
    assert_eq!(sack_of(&out[0].1), [(ISN + 12, ISN + 22)]);
    assert_eq!(lb.count(Counter::SynproxyHandshakes), 1);
    assert_eq!(lb.count(Counter::ProxyHeadersSent), 1);
}

#[test]
fn toa_goes_on_the_first_ack_and_its_retransmission_only() {
    let mut lb = Lb::new(&service("toa")).with_router();
    let out = lb.rx(0, from_client(flags::SYN, (ISN, 0), 111_000, b""));
    let lport = endpoints(&out[0].1).0.port();
    assert_eq!(
        tcp_of(&out[0].1).3.mss,
        Some(1460),
        "the client's MSS goes to the real as it is"
    );
    let out = lb.rx(1, synack_from_real(lport, 9, 111_000));
    let (_, _, _, o, _) = tcp_of(&out[0].1);
    assert_eq!(o.mss, Some(1452), "the client leaves room for the option");
    // The handshake's last ACK: the option after the client's own.
    let ack = from_client(flags::ACK, (ISN + 1, RISN + 1), 111_010, b"");
    for round in 0..2 {
        let out = lb.rx(0, ack.clone());
        assert_eq!(out.len(), 1);
        let ipp = Ipv4Packet::new_checked(&out[0].1[ETH_LEN..]).unwrap();
        let t = TcpPacket::new_checked(ipp.payload()).unwrap();
        assert_eq!(t.header_len(), 20 + 12 + 8);
        assert_eq!(
            tcp_options::toa_client(t.options()),
            Some(sa(CLIENT, SPORT)),
            "round {round}"
        );
        assert_eq!(&t.options()[12..], &[254, 8, 0x9c, 0x40, 10, 10, 0, 2]);
        let (seq, ack, _, o, _) = tcp_of(&out[0].1);
        assert_eq!((seq, ack), (ISN + 1, RISN + 1), "no sequence offset");
        assert_eq!(o.timestamp, Some((111_010, 900_000)));
    }
    // A full-sized first segment has the room the smaller MSS left.
    let data = vec![7u8; 1452 - 12];
    let out = lb.rx(
        0,
        from_client(flags::ACK | flags::PSH, (ISN + 1, RISN + 1), 111_011, &data),
    );
    assert_eq!(ip_len(&out[0].1), 1500);
    assert_eq!(tcp_of(&out[0].1).4, data, "the payload moved up intact");
    assert_eq!(lb.count(Counter::ToaAdded), 3);
    // The real answers: its socket exists, the option is done.
    lb.rx(
        1,
        from_real(
            lport,
            flags::ACK,
            (RISN + 1, ISN + 1 + 1440),
            &ts_option(900_010, 111_011),
            b"",
        ),
    );
    let out = lb.rx(
        0,
        from_client(flags::ACK, (ISN + 1441, RISN + 1), 111_020, b""),
    );
    let ipp = Ipv4Packet::new_checked(&out[0].1[ETH_LEN..]).unwrap();
    let t = TcpPacket::new_checked(ipp.payload()).unwrap();
    assert_eq!(tcp_options::toa_client(t.options()), None);
    assert_eq!(lb.count(Counter::ToaAdded), 3);
}

#[test]
fn toa_with_the_option_space_full_goes_out_unchanged_and_counted() {
    let mut lb = Lb::new(&service("toa")).with_router();
    let out = lb.rx(0, from_client(flags::SYN, (ISN, 0), 111_000, b""));
    let lport = endpoints(&out[0].1).0.port();
    lb.rx(
        1,
        from_real(
            lport,
            flags::SYN | flags::ACK,
            (RISN, ISN + 1),
            &ts_option(900_000, 111_000),
            b"",
        ),
    );
    // Timestamps and three SACK blocks: 40 bytes of options.
    let mut full = ts_option(111_010, 900_000);
    full.extend_from_slice(&[1, 1, 5, 26]);
    for v in [1u32, 2, 3, 4, 5, 6] {
        full.extend_from_slice(&(RISN + 100 * v).to_be_bytes());
    }
    assert_eq!(full.len(), 40);
    let ack = tcp_full(
        LB_WAN,
        CLIENT_MAC,
        (CLIENT, SPORT),
        (VIP, 80),
        flags::ACK,
        (ISN + 1, RISN + 1),
        502,
        &full,
        b"",
    );
    let out = lb.rx(0, ack.clone());
    assert_eq!(out.len(), 1);
    assert_eq!(ip_len(&out[0].1), ip_len(&ack));
    let (seq, _, _, _, _) = tcp_of(&out[0].1);
    assert_eq!(seq, ISN + 1);
    assert_eq!(
        &out[0].1[ETH_LEN + 40..],
        &ack[ETH_LEN + 40..],
        "options as sent"
    );
    assert_eq!(
        (lb.count(Counter::ToaNoRoom), lb.count(Counter::ToaAdded)),
        (1, 0)
    );
}

/// What a NIC with checksum offload puts on the wire for `frame`.
fn as_the_nic_sends_it(mut frame: Vec<u8>) -> Vec<u8> {
    let (src, dst) = {
        let mut ipp = Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..]);
        ipp.fill_checksum();
        (ipp.src_addr(), ipp.dst_addr())
    };
    let l4 = ETH_LEN + 20;
    TcpPacket::new_unchecked(&mut frame[l4..]).fill_checksum(src, dst);
    frame
}

#[test]
fn with_checksum_offload_the_nic_sends_the_same_bytes() {
    for mode in ["proxy-v2", "toa"] {
        let mut sent = Vec::new();
        for offload in [false, true] {
            let mut lb = Lb::with(&service(mode), offload, 1, 0).with_router();
            handshake_quiet(&mut lb);
            lb.p.process(
                0,
                pkt(from_client(flags::ACK, (ISN + 1, RISN + 1), 111_010, b"")),
                lb.now,
                &mut lb.io,
            );
            let (_, p) = lb.io.sent.pop().unwrap();
            if offload {
                let tcp_sum = p.bytes[ETH_LEN + 20 + 16..ETH_LEN + 20 + 18].to_vec();
                let ipp = Ipv4Packet::new_checked(&p.bytes[ETH_LEN..]).unwrap();
                let pseudo = checksum::pseudo_header(
                    ipp.src_addr(),
                    ipp.dst_addr(),
                    protocol::TCP,
                    ipp.total_len() - 20,
                );
                assert_eq!(
                    tcp_sum,
                    pseudo.to_be_bytes(),
                    "{mode}: the pseudo-header sum"
                );
                assert_eq!(p.offload, Some((20, Proto::Tcp)));
                sent.push(as_the_nic_sends_it(p.bytes));
            } else {
                endpoints(&p.bytes);
                sent.push(p.bytes);
            }
        }
        assert_eq!(sent[0], sent[1], "{mode}");
    }
}

/// `handshake` without its assertions on the real's side (offload leaves
/// the checksums to the NIC).
fn handshake_quiet(lb: &mut Lb) {
    lb.rx(0, from_client(flags::SYN, (ISN, 0), 111_000, b""));
    let lport = lb.p.sessions().iter().next().unwrap().1.outbound.dport;
    lb.rx(
        1,
        from_real(
            lport,
            flags::SYN | flags::ACK,
            (RISN, ISN + 1),
            &ts_option(900_000, 111_000),
            b"",
        ),
    );
}

#[test]
fn sessions_stay_one_cache_line_and_plain_fullnat_is_untouched() {
    assert_eq!(std::mem::size_of::<crate::lb::session::Session>(), 64);
    let mut lb = Lb::new(&service("none")).with_router();
    handshake(&mut lb);
    let out = lb.rx(
        0,
        from_client(flags::ACK, (ISN + 1, RISN + 1), 111_010, b""),
    );
    let (seq, _, f, _, payload) = tcp_of(&out[0].1);
    assert_eq!((seq, f), (ISN + 1, flags::ACK));
    assert!(payload.is_empty());
    assert_eq!(lb.count(Counter::ProxyHeadersSent), 0);
}

#[test]
fn fast_open_data_on_the_syn_waits_for_the_header() {
    let mut lb = Lb::new(&service("proxy-v2")).with_router();
    // A SYN with data (TCP Fast Open): the real must not read it before the
    // header, so it goes without it.
    let out = lb.rx(0, from_client(flags::SYN, (ISN, 0), 111_000, b"GET /"));
    assert_eq!(out.len(), 1);
    let (seq, _, f, o, payload) = tcp_of(&out[0].1);
    assert_eq!((seq, f), (ISN, flags::SYN));
    assert!(payload.is_empty(), "the data stays with the client");
    assert_eq!(o.mss, Some(1460), "the options are kept");
    assert_eq!(
        out[0].1.len(),
        ETH_LEN + ip_len(&out[0].1),
        "the frame is cut too"
    );
    assert_eq!(lb.count(Counter::ProxySynDataTrimmed), 1);
    // The real acknowledges the SYN only; the client sends its data again,
    // acknowledging the SYN-ACK: the header goes ahead of it.
    let lport = endpoints(&out[0].1).0.port();
    lb.rx(
        1,
        from_real(
            lport,
            flags::SYN | flags::ACK,
            (RISN, ISN + 1),
            &ts_option(900_000, 111_000),
            b"",
        ),
    );
    let out = lb.rx(
        0,
        from_client(
            flags::ACK | flags::PSH,
            (ISN + 1, RISN + 1),
            111_010,
            b"GET /",
        ),
    );
    assert_eq!(out.len(), 2);
    assert_eq!(tcp_of(&out[0].1).4, HEADER);
    let (seq, _, _, _, payload) = tcp_of(&out[1].1);
    assert_eq!((seq, payload.as_slice()), (ISN + 29, &b"GET /"[..]));
}
