//! The established fast path held against the general path: the same
//! frames at the same times through two pipelines, one with the fast path
//! off, must send the same frames (bytes, port, offload requests) and leave
//! the same sessions, counters and per-real figures. The frames are drawn
//! at random, from a fixed seed, among what clients and real servers send
//! (every TCP flag mix that matters, UDP, partial checksums, a TTL at its
//! end), with the clock jumping past timeouts and the next-hop cache, and a
//! reload that shortens the timeouts, so that each of the fast path's
//! checks meets packets on both of its sides.

use super::*;

/// xorshift64*: a fixed sequence without a crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }
}

/// Segments as peers send them: mostly data and ACKs, and every flag the
/// state machine reads.
const SEGMENTS: [u8; 24] = [
    flags::SYN,
    flags::SYN | flags::ACK,
    flags::ACK,
    flags::ACK,
    flags::ACK,
    flags::ACK,
    flags::ACK,
    flags::ACK,
    flags::ACK,
    flags::ACK,
    flags::PSH | flags::ACK,
    flags::PSH | flags::ACK,
    flags::PSH | flags::ACK,
    flags::PSH | flags::ACK,
    flags::PSH | flags::ACK,
    flags::PSH | flags::ACK,
    flags::ACK | flags::ECE,
    flags::URG | flags::ACK,
    flags::FIN | flags::ACK,
    flags::FIN,
    flags::RST,
    flags::RST | flags::ACK,
    flags::PSH,
    0,
];

/// Milliseconds the clock moves between frames: mostly nothing, sometimes
/// past the next-hop cache's second, a SYN's or a FIN's timeout, or all of
/// them.
const STEPS_MS: [u64; 32] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 50, 1_500, 1_500,
    1_500, 45_000, 45_000, 130_000, 1_000_000,
];

/// The client's ports: few, so that its connections meet again and again.
const CLIENT_PORTS: [u16; 6] = [40_000, 40_001, 40_002, 40_003, 40_004, 40_005];

fn client_key(proto: Proto, sport: u16, dport: u16) -> FlowKey {
    FlowKey {
        proto,
        src: ip(CLIENT),
        sport,
        dst: ip(VIP),
        dport,
    }
}

/// What a real server sees of a connection: its own address and the one
/// it answers (the client's in NAT, a local address in FULLNAT), and the
/// MAC its frames come from.
#[derive(Clone, Copy)]
struct Seen {
    local: SocketAddrV4,
    real: SocketAddrV4,
    mac: EthernetAddress,
}

/// The endpoints of a TCP/UDP frame sluice sent toward the reals (not an
/// ARP request), checksums unchecked (offload leaves them to the NIC), and
/// the MAC it went to.
fn seen(frame: &[u8]) -> Option<Seen> {
    if l2_type(frame) != ethertype::IPV4 {
        return None;
    }
    let ipp = Ipv4Packet::new_checked(&frame[ETH_LEN..]).unwrap();
    let l4 = ipp.payload();
    let port = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    Some(Seen {
        local: SocketAddrV4::new(ipp.src_addr(), port(0)),
        real: SocketAddrV4::new(ipp.dst_addr(), port(2)),
        mac: l2(frame).1,
    })
}

fn l2_type(frame: &[u8]) -> u16 {
    EthernetFrame::new_checked(frame).unwrap().ethertype()
}

fn set_ttl(frame: &mut [u8], ttl: u8) {
    let mut ipp = Ipv4Packet::new_unchecked(&mut frame[ETH_LEN..]);
    ipp.set_ttl(ttl);
    ipp.fill_checksum();
}

struct Twins {
    fast: Lb,
    general: Lb,
    /// ARP requests from the hosts around (port, frame), sent again after
    /// the clock jumps so that their entries stay fresh.
    neighbours: Vec<(u16, Vec<u8>)>,
    /// Frames both sent that the fast path may have taken: data or ACK
    /// segments of ESTABLISHED sessions and UDP datagrams of live ones.
    candidates: usize,
    /// Frames sent so far.
    frames: usize,
}

impl Twins {
    fn new(build: impl Fn() -> Lb, neighbours: &[(u16, EthernetAddress, &str, &str)]) -> Twins {
        let mut general = build();
        general.p.established_path = false;
        let neighbours = neighbours
            .iter()
            .map(|&(port, mac, addr, target)| {
                let frame = arp_frame(operation::REQUEST, mac, ip(addr), ip(target));
                (port, frame)
            })
            .collect();
        let mut twins = Twins {
            fast: build(),
            general,
            neighbours,
            candidates: 0,
            frames: 0,
        };
        twins.refresh_neighbours();
        twins
    }

    fn refresh_neighbours(&mut self) {
        for (port, frame) in self.neighbours.clone() {
            self.rx(port, frame);
        }
    }

    /// Sends `frame` in on `port` to both, as a burst of one to the one
    /// with the fast path (the workers' way, its session prefetched for
    /// every other frame, as with many sessions, and not for the rest) and
    /// on its own to the other; what they sent, the same.
    fn rx(&mut self, port: u16, frame: Vec<u8>) -> Vec<(u16, Pkt)> {
        let candidate = self.candidate(&frame);
        self.frames += 1;
        let staged = self.frames.is_multiple_of(2);
        let (f, g) = (&mut self.fast, &mut self.general);
        f.p.stage_bursts_from(if staged { 0 } else { usize::MAX });
        let mut burst: ArrayVec<Pkt, 1> = ArrayVec::new();
        burst.push(pkt(frame.clone()));
        f.p.process_burst(port, &mut burst, f.now, &mut f.io);
        g.p.process(port, pkt(frame.clone()), g.now, &mut g.io);
        let mut out = vec![
            std::mem::take(&mut f.io.sent),
            std::mem::take(&mut g.io.sent),
        ];
        assert_eq!(out[0], out[1], "sent for {frame:02x?}");
        if candidate && !out[0].is_empty() {
            self.candidates += 1;
        }
        self.same();
        out.swap_remove(0)
    }

    /// Whether `frame` belongs to an ESTABLISHED TCP session and leaves it
    /// so (an ACK or a SYN, no RST), or to a UDP session (in either
    /// direction).
    fn candidate(&self, frame: &[u8]) -> bool {
        if l2_type(frame) != ethertype::IPV4 {
            return false;
        }
        let ipp = Ipv4Packet::new_checked(&frame[ETH_LEN..]).unwrap();
        let l4 = ipp.payload();
        let (proto, segment_ok) = match ipp.protocol() {
            protocol::TCP => (
                Proto::Tcp,
                tcp_state::keeps_established(TcpFlags::from_bits(l4[13])),
            ),
            _ => (Proto::Udp, true),
        };
        let key = FlowKey {
            proto,
            src: ipp.src_addr(),
            sport: u16::from_be_bytes([l4[0], l4[1]]),
            dst: ipp.dst_addr(),
            dport: u16::from_be_bytes([l4[2], l4[3]]),
        };
        let sessions = self.fast.p.sessions();
        let id = sessions
            .lookup_inbound(&key)
            .or_else(|| sessions.lookup_outbound(&key));
        let state = id.and_then(|id| sessions.get(id)).map(|s| s.state);
        segment_ok
            && matches!(
                state,
                Some(ConnState::Tcp(TcpState::Established) | ConnState::Udp)
            )
    }

    /// Both pipelines hold the same sessions, counters and figures, and
    /// handed the same frames to other workers and to the kernel.
    fn same(&mut self) {
        let (f, g) = (&mut self.fast, &mut self.general);
        // The sessions the script's clients can have, by their keys (a
        // walk of the whole table per frame would take most of the test's
        // time), and how many there are.
        let sessions = |lb: &Lb| -> (usize, Vec<Option<Session>>) {
            let table = lb.p.sessions();
            let keys =
                [(Proto::Tcp, 80), (Proto::Udp, 53)]
                    .into_iter()
                    .flat_map(|(proto, dport)| {
                        CLIENT_PORTS.map(|sport| client_key(proto, sport, dport))
                    });
            let found = keys
                .map(|key| {
                    table
                        .lookup_inbound(&key)
                        .and_then(|id| table.get(id))
                        .copied()
                })
                .collect();
            (table.len(), found)
        };
        assert_eq!(sessions(f), sessions(g), "sessions");
        let counters = |lb: &Lb| -> Vec<(&'static str, u64)> { lb.p.counters().iter().collect() };
        assert_eq!(counters(f), counters(g), "counters");
        let reals = |lb: &Lb| -> Vec<(u32, crate::lb::stats::RealCounters)> {
            lb.p.real_stats()
                .iter()
                .map(|(slot, c)| (slot, *c))
                .collect()
        };
        assert_eq!(reals(f), reals(g), "per-real figures");
        assert_eq!(
            std::mem::take(&mut f.io.handed),
            std::mem::take(&mut g.io.handed),
            "handed over"
        );
        assert_eq!(
            std::mem::take(&mut f.io.kernel),
            std::mem::take(&mut g.io.kernel),
            "to the kernel"
        );
    }

    fn advance(&mut self, ms: u64) {
        let mut out = Vec::new();
        for lb in [&mut self.fast, &mut self.general] {
            lb.now += ms;
            lb.p.poll(lb.now, &mut lb.io);
            out.push(std::mem::take(&mut lb.io.sent));
        }
        assert_eq!(out[0], out[1], "sent by the timers");
        self.same();
        if ms >= 1_000 {
            self.refresh_neighbours();
        }
    }

    /// Moves both onto a snapshot of `services` (a reload).
    fn reload(&mut self, services: &str, facts: &[PortFacts], workers: u16) {
        for lb in [&mut self.fast, &mut self.general] {
            let snap = Snapshot::build(&config(services), facts, workers).unwrap();
            lb.p.switch(Arc::new(snap), &mut lb.io);
        }
        self.same();
    }
}

/// `steps` random frames from clients (TCP to VIP:80, and UDP to VIP:53
/// where `udp`) and from the reals answering what sluice sent them.
fn script(twins: &mut Twins, seed: u64, steps: usize, udp: bool, reload: impl Fn(&mut Twins)) {
    let mut rng = Rng(seed);
    // By client port: what its real sees.
    let mut seen_by: HashMap<(Proto, u16), Seen> = HashMap::new();
    for step in 0..steps {
        if step == steps / 2 {
            reload(twins);
        }
        let proto = if udp && rng.below(4) == 0 {
            Proto::Udp
        } else {
            Proto::Tcp
        };
        let sport = rng.pick(&CLIENT_PORTS);
        let from_real = rng.below(2) == 0;
        // Mostly packets of live sessions; now and then one of a session
        // that is gone, or of none.
        let dport = if proto == Proto::Tcp { 80 } else { 53 };
        let live = twins
            .fast
            .p
            .sessions()
            .lookup_inbound(&client_key(proto, sport, dport));
        let stray = rng.below(8) == 0;
        let (port, mut frame) = match (from_real, seen_by.get(&(proto, sport))) {
            (true, Some(s)) if live.is_some() || stray => {
                let (real, local) = (s.real.ip().to_string(), s.local.ip().to_string());
                let frame = match proto {
                    Proto::Tcp => tcp_frame(
                        LB_LAN,
                        s.mac,
                        (&real, s.real.port()),
                        (&local, s.local.port()),
                        rng.pick(&SEGMENTS),
                    ),
                    Proto::Udp => udp_frame(
                        (&real, s.real.port()),
                        (&local, s.local.port()),
                        s.mac,
                        LB_LAN,
                    ),
                };
                (1, frame)
            }
            _ => match proto {
                // A client without a connection opens one.
                Proto::Tcp if live.is_none() && !stray => (0, client_tcp(sport, 80, flags::SYN)),
                Proto::Tcp => (0, client_tcp(sport, 80, rng.pick(&SEGMENTS))),
                Proto::Udp => (0, udp_frame((CLIENT, sport), (VIP, 53), CLIENT_MAC, LB_WAN)),
            },
        };
        match rng.below(16) {
            0 => make_partial(&mut frame),
            1 => set_ttl(&mut frame, 1),
            _ => {}
        }
        for (out_port, p) in twins.rx(port, frame) {
            if let (0, 1, Some(s)) = (port, out_port, seen(&p.bytes)) {
                seen_by.insert((proto, sport), s);
            }
        }
        twins.advance(rng.pick(&STEPS_MS));
    }
}

/// The hosts around sluice: (port, MAC, address, sluice's address asked).
type Hosts = &'static [(u16, EthernetAddress, &'static str, &'static str)];

/// The client and both reals on their links (NAT).
const NAT_HOSTS: Hosts = &[
    (0, CLIENT_MAC, CLIENT, "10.10.0.1"),
    (1, R1_MAC, R1, "192.168.10.1"),
    (1, R2_MAC, R2, "192.168.10.1"),
];

/// The client, and the router to the reals (FULLNAT).
const ROUTED_HOSTS: Hosts = &[
    (0, CLIENT_MAC, CLIENT, "10.10.0.1"),
    (1, ROUTER_MAC, "192.168.10.254", "192.168.10.1"),
];

/// A reload that shortens every timeout: sessions then expire sooner than
/// they were filed, which the fast path leaves to the general one.
const SHORT_TIMEOUTS: &str = "\n[timeouts]\ntcp = 20\nudp = 10\n";

#[test]
fn nat_established_packets_go_as_the_general_path_sends_them() {
    for (seed, offload) in [(1, false), (2, true)] {
        let mut twins = Twins::new(|| Lb::with(WRR_1_3, offload, 1, 0), NAT_HOSTS);
        let short = format!("{WRR_1_3}{SHORT_TIMEOUTS}");
        script(&mut twins, seed, 3000, true, |t| {
            t.reload(&short, &facts(offload), 1)
        });
        assert!(twins.candidates > 400, "{} candidates", twins.candidates);
    }
}

#[test]
fn fullnat_established_packets_go_as_the_general_path_sends_them() {
    let services = fullnat("[1024, 65535]");
    for (seed, offload) in [(3, false), (4, true)] {
        let mut twins = Twins::new(|| Lb::with(&services, offload, 1, 0), ROUTED_HOSTS);
        let short = format!("{services}{SHORT_TIMEOUTS}");
        script(&mut twins, seed, 3000, false, |t| {
            t.reload(&short, &facts(offload), 1)
        });
        assert!(twins.candidates > 400, "{} candidates", twins.candidates);
    }
}

#[test]
fn established_packets_with_partial_checksums_or_handed_over_go_as_before() {
    // Virtual ports: any frame may carry a partial checksum.
    let mut twins = Twins::new(|| Lb::virtual_ports(WRR_1_3), NAT_HOSTS);
    script(&mut twins, 5, 2000, true, |_| {});
    assert!(twins.candidates > 300, "{} candidates", twins.candidates);
    // Worker 0 of 2: the other worker's clients are handed over.
    let mut twins = Twins::new(|| Lb::with(WRR_1_3, false, 2, 0), NAT_HOSTS);
    script(&mut twins, 6, 2000, true, |_| {});
    assert!(twins.candidates > 100, "{} candidates", twins.candidates);
}

#[test]
fn a_removed_reals_session_ends_on_its_next_packet_even_when_its_next_hop_is_cached() {
    use crate::control::state::Change;
    let mut live = Live::new(WRR_1_3);
    let mut lb = Lb::new(WRR_1_3).with_neighbours();
    // A connection to r1 (192.168.10.2:8080), handshake complete.
    let r1 = sa(R1, 8080);
    let sport = (41_000..41_100)
        .find(|&sport| connect(&mut lb, sport) == Some(r1))
        .unwrap();
    let synack = tcp_frame(
        LB_LAN,
        R1_MAC,
        (R1, 8080),
        (CLIENT, sport),
        flags::SYN | flags::ACK,
    );
    assert_eq!(lb.rx(1, synack).len(), 1);
    assert_eq!(lb.rx(0, client_tcp(sport, 80, flags::ACK)).len(), 1);
    assert_eq!(
        lb.rx(0, client_tcp(sport, 80, flags::PSH | flags::ACK))
            .len(),
        1
    );

    live.expire_nodest_conn = true;
    live.apply(
        &mut lb,
        Change::DeleteReal {
            key: http_key(),
            addr: r1,
        },
    );
    // The UDP service's real has r1's address: its datagram puts that
    // address back in the next-hop cache the reload emptied.
    let dgram = udp_frame((CLIENT, 5000), (VIP, 53), CLIENT_MAC, LB_WAN);
    assert_eq!(endpoints(&lb.rx(0, dgram)[0].1).1, sa(R1, 5353));
    assert!(lb.rx(0, client_tcp(sport, 80, flags::ACK)).is_empty());
    assert_eq!(lb.count(Counter::DropRealRemoved), 1);
    assert!(lb.rx(0, client_tcp(sport, 80, flags::ACK)).is_empty());
    assert_eq!(lb.count(Counter::DropNoSession), 1, "the session is gone");
}
