//! Hostile traffic (issue 9): ARP and address hardening, source
//! validation, resource budgets, the keyed owner hash; and the mbuf
//! accounting test: ten million packets of every kind, none leaked.

use super::*;
use std::cell::Cell;
use std::collections::VecDeque;

const ATTACKER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x66]);
const MOVED_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x33]);

/// An ARP frame with an explicit Ethernet destination.
fn arp_to(
    op: u16,
    mac: EthernetAddress,
    sender: Ipv4Addr,
    target: Ipv4Addr,
    dst: EthernetAddress,
) -> Vec<u8> {
    let mut f = arp_frame(op, mac, sender, target);
    EthernetFrame::new_unchecked(&mut f[..]).set_dst_addr(dst);
    f
}

fn bcast(op: u16, mac: EthernetAddress, sender: &str, target: &str) -> Vec<u8> {
    arp_to(op, mac, ip(sender), ip(target), EthernetAddress::BROADCAST)
}

impl Lb {
    /// Processes a frame another worker handed over.
    fn take_handoff(&mut self, port: u16, pkt: Pkt) {
        self.p.process_handoff(port, pkt, self.now, &mut self.io);
    }
}

fn parse_arp(f: &[u8]) -> ArpRepr {
    ArpRepr::parse(&ArpPacket::new_checked(&f[ETH_LEN..]).unwrap())
}

/// A pipeline on a whole TOML text, worker `worker` of `workers`.
fn custom(text: &str, workers: u16, worker: u16) -> Lb {
    let snap = Snapshot::build(
        &Config::parse("hostile.toml", text).unwrap(),
        &facts(false),
        workers,
    )
    .unwrap();
    let shared = shared(&snap, Arc::new(Templates::new(1024)));
    Lb {
        p: Pipeline::with_shared(Arc::new(snap), worker, shared),
        io: TestIo::default(),
        now: 0,
    }
}

/// The test topology with `rp_filter` on each port and `extra` after it.
fn topology(rp0: &str, rp1: &str, extra: &str) -> String {
    format!(
        r#"
[dpdk]
eal = ["-l", "0-1"]
[[interface]]
port = 0
addrs = ["10.10.0.1/24"]
rp_filter = "{rp0}"
[[interface]]
port = 1
addrs = ["192.168.10.1/24"]
rp_filter = "{rp1}"
{extra}
"#
    )
}

const NAT_AND_FULLNAT: &str = r#"
[[route]]
prefix = "172.16.0.0/24"
via = "192.168.10.254"
[[service]]
vip = "10.10.0.100:80"
proto = "tcp"
scheduler = "wrr"
[[service.real]]
addr = "192.168.10.2:8080"
weight = 1
[[service.real]]
addr = "192.168.10.3:8080"
weight = 3
[[service]]
vip = "10.10.0.100:443"
proto = "tcp"
mode = "fullnat"
laddrs = ["192.168.10.100"]
[[service.real]]
addr = "172.16.0.2:8080"
"#;

fn real_mac(addr: Ipv4Addr) -> EthernetAddress {
    if addr == ip(R1) {
        R1_MAC
    } else {
        R2_MAC
    }
}

// ---- ARP and address hardening ----

#[test]
fn a_client_side_claim_on_a_real_changes_nothing_sluice_sends() {
    let mut lb = Lb::new(WRR_1_3).with_neighbours();
    // The issue's finding: "who-has VIP, tell <a real>" with the client's
    // MAC, on the client side. Answered (to the asker: harmless), not
    // learned: the real is not on port 0's subnet.
    let out = lb.rx(0, bcast(operation::REQUEST, CLIENT_MAC, R2, VIP));
    assert_eq!(out.len(), 1);
    assert_eq!(parse_arp(&out[0].1).target_hw, CLIENT_MAC);
    // A gratuitous claim from another station, both forms.
    for op in [operation::REQUEST, operation::REPLY] {
        assert!(lb.rx(0, bcast(op, ATTACKER_MAC, R1, R1)).is_empty());
        assert!(lb.rx(0, bcast(op, ATTACKER_MAC, R2, R2)).is_empty());
    }
    assert_eq!(lb.count(Counter::ArpOffSubnet), 5);
    for real in [R1, R2] {
        assert_eq!(
            lb.p.neighbours().get(ip(real), 0),
            None,
            "nothing on port 0"
        );
        let n = lb.p.neighbours().get(ip(real), 1).unwrap();
        assert_eq!(n.mac, Some(real_mac(ip(real)).0));
    }
    // Every connection still reaches its real, on the lan side, at its MAC.
    for sport in 0..20 {
        let out = lb.rx(0, client_tcp(41000 + sport, 80, flags::SYN));
        assert_eq!(out.len(), 1);
        let (port, f) = &out[0];
        let real = *endpoints(f).1.ip();
        assert_eq!((*port, l2(f).1), (1, real_mac(real)), "connection {sport}");
    }
}

#[test]
fn packets_queued_for_a_real_are_not_released_to_a_claimant() {
    let mut lb = Lb::new(WRR_1_3);
    lb.rx(0, bcast(operation::REQUEST, CLIENT_MAC, CLIENT, VIP));
    // The SYN waits for the real's MAC (wrr 1:3 starts with r2).
    let out = lb.rx(0, client_tcp(40000, 80, flags::SYN));
    assert_eq!(parse_arp(&out[0].1).target_ip, ip(R2));
    // A claim for r2 from the client side, as a reply to our request.
    let claim = arp_to(
        operation::REPLY,
        ATTACKER_MAC,
        ip(R2),
        ip("10.10.0.1"),
        LB_WAN,
    );
    assert!(lb.rx(0, claim).is_empty(), "the SYN stays queued");
    // ... and one from the lan side with a lan address that is not r2's.
    let wrong = arp_to(
        operation::REPLY,
        ATTACKER_MAC,
        ip("192.168.10.9"),
        ip("192.168.10.1"),
        LB_LAN,
    );
    assert!(lb.rx(1, wrong).is_empty());
    // The real's own answer releases it, to the real.
    let out = lb.rx(
        1,
        arp_to(operation::REPLY, R2_MAC, ip(R2), ip("192.168.10.1"), LB_LAN),
    );
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, l2(&out[0].1).1), (1, R2_MAC));
    assert_eq!(endpoints(&out[0].1).1, sa(R2, 8080));
}

#[test]
fn our_own_addresses_are_never_learned_and_a_claim_is_a_conflict() {
    let mut lb = custom(&topology("off", "off", NAT_AND_FULLNAT), 1, 0);
    for (port, addr, mac) in [
        (0, VIP, LB_WAN),
        (0, "10.10.0.1", LB_WAN),
        (1, "192.168.10.1", LB_LAN),
        (1, LIP, LB_LAN),
        // An address of the other port, claimed here.
        (0, "192.168.10.1", LB_WAN),
    ] {
        let out = lb.rx(port, bcast(operation::REQUEST, ATTACKER_MAC, addr, addr));
        assert_eq!(out.len(), 1, "{addr}: answered with a gratuitous ARP");
        let (out_port, f) = &out[0];
        assert_eq!(
            (*out_port, l2(f)),
            (port, (mac, EthernetAddress::BROADCAST))
        );
        let garp = parse_arp(f);
        assert_eq!(
            (garp.sender_hw, garp.sender_ip, garp.target_ip),
            (mac, ip(addr), ip(addr))
        );
        for p in 0..2 {
            assert_eq!(lb.p.neighbours().get(ip(addr), p), None, "{addr} learned");
        }
    }
    assert_eq!(lb.count(Counter::ArpConflicts), 5);
    assert_eq!(lb.count(Counter::GarpSent), 5);
    // A reply asserting the VIP, a request "tell VIP": conflicts too,
    // defended at most once a second per address and port.
    lb.now = 999;
    let reply = arp_to(operation::REPLY, ATTACKER_MAC, ip(VIP), ip(CLIENT), LB_WAN);
    assert!(lb.rx(0, reply.clone()).is_empty());
    lb.now = 1_000;
    assert_eq!(lb.rx(0, reply).len(), 1);
    lb.now = 1_500;
    assert!(lb
        .rx(0, bcast(operation::REQUEST, ATTACKER_MAC, VIP, "10.10.0.7"))
        .is_empty());
    assert_eq!(lb.count(Counter::ArpConflicts), 8);
    assert_eq!(lb.count(Counter::GarpSent), 6);
    // Reported once per address and port per 10 s, for the control
    // side's log (which names an address at most once per 10 s).
    let reports = lb.p.take_conflict_reports();
    assert_eq!(reports.len(), 5, "{reports:?}");
    assert_eq!(
        reports[0],
        ConflictReport {
            addr: ip(VIP),
            port: 0,
            mac: ATTACKER_MAC
        }
    );
    assert!(lb.p.take_conflict_reports().is_empty());
    lb.now = 10_000;
    lb.rx(0, bcast(operation::REQUEST, ATTACKER_MAC, VIP, VIP));
    assert_eq!(lb.p.take_conflict_reports().len(), 1);
    // Our own frames looping back from the other port are not conflicts.
    let ours = bcast(operation::REQUEST, LB_LAN, VIP, VIP);
    assert!(lb.rx(0, ours).is_empty());
    assert_eq!(lb.count(Counter::ArpConflicts), 9);
    assert_eq!(lb.count(Counter::DropOwnFrame), 1);
}

#[test]
fn static_entries_never_change() {
    let mut lb = custom(
        &topology(
            "off",
            "off",
            r#"
[[neighbour]]
addr = "192.168.10.2"
mac = "02:00:00:00:00:21"
[[service]]
vip = "10.10.0.100:80"
proto = "tcp"
[[service.real]]
addr = "192.168.10.2:8080"
"#,
        ),
        1,
        0,
    );
    lb.rx(0, bcast(operation::REQUEST, CLIENT_MAC, CLIENT, VIP));
    // A lan station claims r1 in every way it can.
    lb.rx(
        1,
        bcast(operation::REQUEST, ATTACKER_MAC, R1, "192.168.10.1"),
    );
    lb.rx(1, bcast(operation::REQUEST, ATTACKER_MAC, R1, R1));
    lb.rx(
        1,
        arp_to(
            operation::REPLY,
            ATTACKER_MAC,
            ip(R1),
            ip("192.168.10.1"),
            LB_LAN,
        ),
    );
    let n = lb.p.neighbours().get(ip(R1), 1).unwrap();
    assert!(n.is_static);
    assert_eq!(n.mac, Some(R1_MAC.0));
    let out = lb.rx(0, client_tcp(40000, 80, flags::SYN));
    assert_eq!(l2(&out[0].1).1, R1_MAC);
}

#[test]
fn arp_that_may_update_an_entry_reaches_every_worker() {
    let mut w: Vec<Lb> = (0..2)
        .map(|i| {
            let mut lb = Lb::with(WRR_1_3, false, 2, i).with_neighbours();
            lb.io.handed.clear();
            lb
        })
        .collect();
    let copies = |lb: &mut Lb| std::mem::take(&mut lb.io.handed);
    let before = w[0].count(Counter::ArpCopies);
    // r2 fails over to another MAC and announces it (VRRP-style, not to
    // us): worker 0 receives it, worker 1 gets a copy.
    assert!(w[0]
        .rx(1, bcast(operation::REQUEST, MOVED_MAC, R2, R2))
        .is_empty());
    let handed = copies(&mut w[0]);
    assert_eq!(handed.len(), 1);
    for (to, port, copy) in handed {
        assert_eq!((to, port), (1, 1));
        w[1].take_handoff(port, copy);
    }
    assert!(w[1].io.take().is_empty(), "a copy is never answered");
    for lb in &w {
        let n = lb.p.neighbours().get(ip(R2), 1).unwrap();
        assert_eq!(n.mac, Some(MOVED_MAC.0));
    }
    // A reply from a neighbour, whoever it answers: copied.
    w[0].rx(1, bcast(operation::REPLY, R1_MAC, R1, "192.168.10.7"));
    assert_eq!(copies(&mut w[0]).len(), 1);
    // Not copied: requests between other hosts, off-subnet senders,
    // claims on our addresses.
    w[0].rx(1, bcast(operation::REQUEST, R1_MAC, R1, "192.168.10.9"));
    w[0].rx(0, bcast(operation::REQUEST, CLIENT_MAC, R1, VIP));
    w[0].rx(1, bcast(operation::REQUEST, ATTACKER_MAC, VIP, VIP));
    assert!(copies(&mut w[0]).is_empty());
    assert_eq!(w[0].count(Counter::ArpCopies) - before, 2);
    // Bounded: a flood of announcements is cut by the rate limit, and so
    // are its copies (a tenth of a second of 1000/s, the bucket full again
    // after a second).
    w[0].now = 1_000;
    for _ in 0..1000 {
        w[0].rx(1, bcast(operation::REQUEST, MOVED_MAC, R2, R2));
    }
    assert_eq!(copies(&mut w[0]).len(), 100);
    assert_eq!(w[0].count(Counter::DropArpRate), 900);
}

#[test]
fn arp_is_rate_limited_per_port() {
    let mut lb = Lb::new(WRR_1_3);
    let ask = |port: u16| {
        if port == 0 {
            bcast(operation::REQUEST, CLIENT_MAC, CLIENT, VIP)
        } else {
            bcast(operation::REQUEST, R1_MAC, R1, "192.168.10.1")
        }
    };
    let answered = |lb: &mut Lb, port: u16, n: usize| {
        (0..n)
            .filter(|_| !lb.rx(port, ask(port)).is_empty())
            .count()
    };
    // 1000 a second with a burst of 100, per port.
    assert_eq!(answered(&mut lb, 0, 300), 100);
    assert_eq!(lb.count(Counter::DropArpRate), 200);
    assert_eq!(answered(&mut lb, 1, 150), 100, "port 1 has its own bucket");
    lb.now = 50;
    assert_eq!(answered(&mut lb, 0, 300), 50);
    assert_eq!(lb.count(Counter::DropArpRate), 500);
    // IPv4 is not concerned.
    lb.rx(1, bcast(operation::REPLY, R2_MAC, R2, "192.168.10.1"));
    assert_eq!(lb.rx(0, client_tcp(40000, 80, flags::SYN)).len(), 1);
    // 0 turns the limit off.
    let mut off = Lb::new(&format!("{WRR_1_3}\n[dataplane]\narp_rate_limit = 0\n"));
    assert_eq!(answered(&mut off, 0, 1000), 1000);
}

#[test]
fn gratuitous_arp_is_repeated_and_sent_for_added_addresses() {
    let mut lb = Lb::new(WRR_1_3);
    let garps = |lb: &mut Lb, now: u64| {
        lb.p.poll(now, &mut lb.io);
        lb.io
            .take()
            .into_iter()
            .map(|(port, f)| (port, parse_arp(&f).sender_ip))
            .collect::<Vec<_>>()
    };
    assert!(garps(&mut lb, 59_999).is_empty());
    assert_eq!(garps(&mut lb, 60_000), [(0, ip(VIP))]);
    assert!(garps(&mut lb, 60_001).is_empty());
    assert_eq!(garps(&mut lb, 120_000), [(0, ip(VIP))]);
    // One worker announces for all.
    let mut w1 = Lb::with(WRR_1_3, false, 2, 1);
    assert!(garps(&mut w1, 60_000).is_empty());
    // 0: only at start and for added addresses.
    let mut off = Lb::new(&format!("{WRR_1_3}\n[dataplane]\ngarp_interval = 0\n"));
    assert!(garps(&mut off, 10_000_000).is_empty());
    // A change that adds a VIP and a local address announces them (and
    // nothing that was there before).
    let more = format!(
        "{WRR_1_3}{}",
        NAT_AND_FULLNAT.replace("10.10.0.100:443", "10.10.0.101:443")
    );
    let more = more.replace(
        "[[route]]\nprefix = \"172.16.0.0/24\"\nvia = \"192.168.10.254\"\n[[service]]\nvip = \"10.10.0.100:80\"\nproto = \"tcp\"\nscheduler = \"wrr\"\n[[service.real]]\naddr = \"192.168.10.2:8080\"\nweight = 1\n[[service.real]]\naddr = \"192.168.10.3:8080\"\nweight = 3\n",
        "[[route]]\nprefix = \"172.16.0.0/24\"\nvia = \"192.168.10.254\"\n",
    );
    let snap = Snapshot::build(&config(&more), &facts(false), 1).unwrap();
    off.p.switch(Arc::new(snap), &mut off.io);
    let mut added: Vec<_> = off
        .io
        .take()
        .into_iter()
        .map(|(port, f)| (port, parse_arp(&f).sender_ip))
        .collect();
    added.sort();
    assert_eq!(added, [(0, ip("10.10.0.101")), (1, ip(LIP))]);
}

#[test]
fn a_full_neighbour_table_evicts_what_is_not_resolved_first() {
    let mut lb =
        Lb::new(&format!("{WRR_1_3}\n[dataplane]\nmax_neighbours = 4\n")).with_neighbours();
    // Replies to clients that never answer ARP: the first takes the last
    // free entry, each further one evicts an unresolved one; the client
    // and the reals (in use, resolved) stay.
    let mut reals = Vec::new();
    for last in 3..8u8 {
        let client = format!("10.10.0.{last}");
        let syn = tcp_frame(LB_WAN, CLIENT_MAC, (&client, 40000), (VIP, 80), flags::SYN);
        let real = endpoints(&lb.rx(0, syn)[0].1).1;
        reals.push(real);
        let reply = tcp_frame(
            LB_LAN,
            real_mac(*real.ip()),
            (&real.ip().to_string(), 8080),
            (&client, 40000),
            flags::SYN | flags::ACK,
        );
        let out = lb.rx(1, reply);
        assert_eq!(
            parse_arp(&out[0].1).target_ip,
            ip(&client),
            "asks for the client"
        );
    }
    lb.p.poll(1, &mut lb.io);
    lb.io.take();
    assert_eq!(lb.count(Counter::NeighbourEvictions), 4);
    assert_eq!(lb.count(Counter::DropNeighbourEvicted), 4);
    assert_eq!(lb.p.neighbours().len(), 4);
    for (addr, port) in [(CLIENT, 0), (R1, 1), (R2, 1)] {
        assert!(
            lb.p.neighbours().get(ip(addr), port).is_some(),
            "{addr} kept"
        );
    }
    assert_eq!(lb.rx(0, client_tcp(40001, 80, flags::SYN)).len(), 1);
}

// ---- Source validation ----

#[test]
fn martian_and_own_sources_are_dropped() {
    let mut lb = custom(&topology("off", "off", NAT_AND_FULLNAT), 1, 0).with_neighbours();
    let syn_from = |src: &str| tcp_frame(LB_WAN, CLIENT_MAC, (src, 40000), (VIP, 80), flags::SYN);
    for src in [
        "0.0.0.0",
        "127.0.0.1",
        "224.0.0.5",
        "240.0.0.1",
        "255.255.255.255",
    ] {
        assert!(lb.rx(0, syn_from(src)).is_empty(), "{src}");
    }
    assert_eq!(lb.count(Counter::DropMartianSource), 5);
    for src in [VIP, "10.10.0.1", "192.168.10.1", LIP] {
        assert!(lb.rx(0, syn_from(src)).is_empty(), "{src}");
    }
    // A "reply" from one of our addresses on the real servers' side.
    let forged = tcp_frame(
        LB_LAN,
        R1_MAC,
        (LIP, 8080),
        (CLIENT, 40000),
        flags::SYN | flags::ACK,
    );
    assert!(lb.rx(1, forged).is_empty());
    assert_eq!(lb.count(Counter::DropOwnSource), 5);
    assert_eq!(lb.p.sessions().len(), 0);
    // What legitimately arrives still does: a client, a NAT reply.
    let out = lb.rx(0, client_tcp(40000, 80, flags::SYN));
    let real = endpoints(&out[0].1).1;
    let reply = tcp_frame(
        LB_LAN,
        real_mac(*real.ip()),
        (&real.ip().to_string(), 8080),
        (CLIENT, 40000),
        flags::SYN | flags::ACK,
    );
    assert_eq!(lb.rx(1, reply).len(), 1);
}

#[test]
fn rp_filter_strict_needs_the_source_routed_back_out_of_its_port() {
    let text = topology(
        "strict",
        "strict",
        &format!("[[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"10.10.0.254\"\n{NAT_AND_FULLNAT}"),
    );
    let mut lb = custom(&text, 1, 0).with_neighbours().with_router();
    lb.rx(
        0,
        bcast(operation::REQUEST, ROUTER_MAC, "10.10.0.254", "10.10.0.1"),
    );
    // Clients near and far (through the default route) on the client side.
    let out = lb.rx(0, client_tcp(40000, 80, flags::SYN));
    let real = endpoints(&out[0].1).1;
    let far = tcp_frame(
        LB_WAN,
        ROUTER_MAC,
        ("203.0.113.9", 40000),
        (VIP, 80),
        flags::SYN,
    );
    assert_eq!(lb.rx(0, far).len(), 1);
    // Sources of the other side, arriving on the client side: dropped.
    for src in ["192.168.10.5", R1, "172.16.0.9"] {
        let spoofed = tcp_frame(LB_WAN, CLIENT_MAC, (src, 40001), (VIP, 80), flags::SYN);
        assert!(lb.rx(0, spoofed).is_empty(), "{src}");
    }
    // ... and the client's own address on the real servers' side.
    let wrong_side = tcp_frame(LB_LAN, R1_MAC, (CLIENT, 40002), (VIP, 80), flags::SYN);
    assert!(lb.rx(1, wrong_side).is_empty());
    assert_eq!(lb.count(Counter::DropRpFilter), 4);
    // NAT replies, FULLNAT replies through the router, ICMP errors from a
    // router: all routed back where they came from.
    let reply = tcp_frame(
        LB_LAN,
        real_mac(*real.ip()),
        (&real.ip().to_string(), 8080),
        (CLIENT, 40000),
        flags::SYN | flags::ACK,
    );
    let back = lb.rx(1, reply);
    assert_eq!(back.len(), 1);
    let out = lb.rx(0, client_tcp(40003, 443, flags::SYN));
    let (local, far_real) = endpoints(&out[0].1);
    let fullnat_reply = tcp_frame(
        LB_LAN,
        ROUTER_MAC,
        (&far_real.ip().to_string(), far_real.port()),
        (LIP, local.port()),
        flags::SYN | flags::ACK,
    );
    assert_eq!(lb.rx(1, fullnat_reply).len(), 1);
    let unreachable = icmp_error_frame(
        LB_WAN,
        ROUTER_MAC,
        ("10.10.0.254", VIP),
        (msg_type::DST_UNREACHABLE, 1),
        &back[0].1,
    );
    assert_eq!(lb.rx(0, unreachable).len(), 1);
    assert_eq!(lb.count(Counter::IcmpErrorsTranslated), 1);
    assert_eq!(lb.count(Counter::DropRpFilter), 4);
}

#[test]
fn rp_filter_loose_needs_a_route_back() {
    let mut lb = custom(&topology("loose", "off", NAT_AND_FULLNAT), 1, 0).with_neighbours();
    // No default route: a far source has no way back.
    let far = tcp_frame(
        LB_WAN,
        CLIENT_MAC,
        ("203.0.113.9", 40000),
        (VIP, 80),
        flags::SYN,
    );
    assert!(lb.rx(0, far).is_empty());
    assert_eq!(lb.count(Counter::DropRpFilter), 1);
    // Routed out of another port is enough for loose.
    let other = tcp_frame(
        LB_WAN,
        CLIENT_MAC,
        ("192.168.10.5", 40000),
        (VIP, 80),
        flags::SYN,
    );
    assert_eq!(lb.rx(0, other).len(), 1);
    // Off on port 1: anything not martian nor ours.
    let odd = tcp_frame(
        LB_LAN,
        R1_MAC,
        ("203.0.113.9", 40000),
        (VIP, 80),
        flags::SYN,
    );
    assert_eq!(lb.rx(1, odd).len(), 1);
}

/// `frame` (TCP/IPv4 with a 20-byte header) with IPv4 options `opts`
/// (a multiple of 4 bytes) inserted.
pub(super) fn with_ip_options(frame: &[u8], opts: &[u8]) -> Vec<u8> {
    let mut f = frame[..ETH_LEN + 20].to_vec();
    f.extend_from_slice(opts);
    f.extend_from_slice(&frame[ETH_LEN + 20..]);
    let total = (f.len() - ETH_LEN) as u16;
    let mut p = Ipv4Packet::new_unchecked(&mut f[ETH_LEN..]);
    p.set_header_len(20 + opts.len());
    p.set_total_len(total);
    p.fill_checksum();
    f
}

#[test]
fn source_routed_packets_are_dropped_other_options_pass() {
    let mut lb = Lb::new(WRR_1_3).with_neighbours();
    let syn = client_tcp(40000, 80, flags::SYN);
    for opts in [
        [0x83, 7, 4, 192, 168, 10, 3, 0], // LSRR via r2
        [0x89, 7, 4, 192, 168, 10, 3, 0], // SSRR
        [1, 7, 7, 4, 0, 0, 0, 0],         // NOP, record route
    ] {
        assert!(lb.rx(0, with_ip_options(&syn, &opts)).is_empty());
    }
    assert_eq!(lb.count(Counter::DropSourceRoute), 3);
    assert_eq!(lb.p.sessions().len(), 0);
    // Router alert: forwarded, options unchanged.
    let alert = [0x94, 4, 0, 0];
    let out = lb.rx(0, with_ip_options(&syn, &alert));
    assert_eq!(out.len(), 1);
    let ipp = Ipv4Packet::new_checked(&out[0].1[ETH_LEN..]).unwrap();
    assert_eq!(ipp.options(), alert);
    endpoints(&out[0].1);
}

// ---- The keyed owner hash ----

#[test]
fn both_directions_of_a_session_find_the_same_worker_under_any_key() {
    for key in [OwnerHash::with_key(1, 2), OwnerHash::random()] {
        let snap = Arc::new(Snapshot::build(&config(WRR_1_3), &facts(false), 2).unwrap());
        let templates = Arc::new(Templates::new(64));
        let mut w: Vec<Lb> = (0..2)
            .map(|i| {
                let s = Shared {
                    templates: Arc::clone(&templates),
                    owner: key,
                    pending_budget: 1024,
                    kernel_budget: KernelBudget::default(),
                };
                let mut lb = Lb {
                    p: Pipeline::with_shared(Arc::clone(&snap), i, s),
                    io: TestIo::default(),
                    now: 0,
                }
                .with_neighbours();
                lb.io.handed.clear();
                lb
            })
            .collect();
        for sport in 50000..50064u16 {
            let owner = key.owner(ip(CLIENT), sport, 2) as usize;
            // Whoever receives the SYN, the owner creates the session.
            let other = 1 - owner;
            assert!(w[other].rx(0, client_tcp(sport, 80, flags::SYN)).is_empty());
            let (to, port, p) = w[other].io.handed.pop().unwrap();
            assert_eq!(to as usize, owner);
            w[owner].take_handoff(port, p);
            let real = endpoints(&w[owner].io.take()[0].1).1;
            // The reply, received by the other worker, goes to the owner.
            let reply = tcp_frame(
                LB_LAN,
                real_mac(*real.ip()),
                (&real.ip().to_string(), 8080),
                (CLIENT, sport),
                flags::SYN | flags::ACK,
            );
            assert!(w[other].rx(1, reply).is_empty());
            let (to, port, p) = w[other].io.handed.pop().unwrap();
            assert_eq!(to as usize, owner);
            w[owner].take_handoff(port, p);
            assert_eq!(w[owner].io.take().len(), 1);
        }
        for lb in &w {
            assert_eq!(lb.count(Counter::SteerMisses), 0);
        }
    }
}

// ---- mbuf accounting ----

thread_local! {
    /// Packet buffers alive on this thread (each test has its own thread).
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn live() -> i64 {
    LIVE.with(Cell::get)
}

/// A packet buffer that counts itself, as the mempool counts mbufs in use.
struct Counted(Vec<u8>);

impl Counted {
    fn new(bytes: Vec<u8>) -> Counted {
        LIVE.with(|l| l.set(l.get() + 1));
        Counted(bytes)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        LIVE.with(|l| l.set(l.get() - 1));
    }
}

impl PacketBuf for Counted {
    fn data(&self) -> &[u8] {
        &self.0
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
    fn set_len(&mut self, len: usize) -> bool {
        self.0.resize(len, 0);
        true
    }
    fn request_tx_checksums(&mut self, _: usize, _: Proto) {}
}

/// A worker's output: what is sent is freed at once (a NIC that never
/// holds), handoffs wait in a queue the test drains, every 37th buffer
/// allocation fails (an exhausted pool).
#[derive(Default)]
struct CountingIo {
    handed: Vec<(u16, u16, Counted)>,
    allocs: u64,
    /// Recent (src, dst) of TCP frames sent toward the real servers (port
    /// 1) and toward clients (port 0), for the generator's replies.
    toward_reals: VecDeque<(SocketAddrV4, SocketAddrV4)>,
    toward_clients: VecDeque<(SocketAddrV4, SocketAddrV4)>,
}

fn remember(q: &mut VecDeque<(SocketAddrV4, SocketAddrV4)>, f: &[u8]) {
    if f.len() < ETH_LEN + 24 || f[12..14] != [8, 0] || f[ETH_LEN + 9] != protocol::TCP {
        return;
    }
    let a = |o: usize| Ipv4Addr::new(f[o], f[o + 1], f[o + 2], f[o + 3]);
    let p = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
    let l4 = ETH_LEN + usize::from(f[ETH_LEN] & 0xf) * 4;
    if q.len() == 256 {
        q.pop_front();
    }
    q.push_back((
        SocketAddrV4::new(a(ETH_LEN + 12), p(l4)),
        SocketAddrV4::new(a(ETH_LEN + 16), p(l4 + 2)),
    ));
}

impl Io<Counted> for CountingIo {
    fn send(&mut self, port: u16, pkt: Counted) {
        match port {
            1 => remember(&mut self.toward_reals, &pkt.0),
            _ => remember(&mut self.toward_clients, &pkt.0),
        }
    }
    fn alloc(&mut self) -> Option<Counted> {
        self.allocs += 1;
        (!self.allocs.is_multiple_of(37)).then(|| Counted::new(Vec::new()))
    }
    fn handoff(&mut self, worker: u16, in_port: u16, pkt: Counted) {
        self.handed.push((worker, in_port, pkt));
    }
    fn to_kernel(&mut self, _port: u16, _pkt: Counted) {}
}

/// xorshift64*: deterministic, fast, good enough to pick packet kinds.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ACCOUNTING: &str = r#"
[dataplane]
max_sessions = 16384
max_neighbours = 64
local_port_range = [40000, 40127]
arp_rate_limit = 2000
[[route]]
prefix = "172.16.0.0/24"
via = "192.168.10.254"
[[service]]
vip = "10.10.0.100:80"
proto = "tcp"
scheduler = "wrr"
[[service.real]]
addr = "192.168.10.2:8080"
weight = 1
[[service.real]]
addr = "192.168.10.3:8080"
weight = 3
[[service]]
vip = "10.10.0.100:8080"
proto = "tcp"
scheduler = "rr"
[[service.real]]
addr = "192.168.10.2:8080"
[[service]]
vip = "10.10.0.100:53"
proto = "udp"
scheduler = "rr"
[[service.real]]
addr = "192.168.10.2:5353"
[[service]]
vip = "10.10.0.100:82"
proto = "tcp"
[[service.real]]
addr = "192.168.10.4:8080"
weight = 0
[[service]]
vip = "10.10.0.100:82"
proto = "udp"
[[service.real]]
addr = "192.168.10.4:8080"
weight = 0
[[service]]
vip = "10.10.0.100:443"
proto = "tcp"
mode = "fullnat"
laddrs = ["192.168.10.100"]
[[service.real]]
addr = "172.16.0.2:8080"
[[service]]
vip = "10.10.0.100:444"
proto = "tcp"
mode = "fullnat"
laddrs = ["192.168.10.101"]
[[service.real]]
addr = "172.17.0.2:8080"
[[service]]
vip = "10.10.0.100:90"
proto = "tcp"
synproxy = true
[[service.real]]
addr = "192.168.10.2:8080"
# The SYN proxy answers :90 only: "auto" must not step in for the rest of
# this mix, whose SYN rate would engage it. Four held ACKs at most, so the
# hold fills.
[synproxy]
hold = 4
auto_syn_recv = 1000000
auto_syn_rate = 1000000000
"#;

fn frame_tcp(
    dst_mac: EthernetAddress,
    src_mac: EthernetAddress,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    f: u8,
) -> Vec<u8> {
    tcp_frame(
        dst_mac,
        src_mac,
        (&src.ip().to_string(), src.port()),
        (&dst.ip().to_string(), dst.port()),
        f,
    )
}

/// The generator of mixed traffic: every kind of packet the pipeline
/// handles, good and bad, with replies to flows sluice really sent.
struct Traffic {
    rng: Rng,
    /// Seconds on the workers' clock (SYN cookies are checked against it).
    now_s: u64,
    /// Recent clients of the proxied service (:90).
    proxied: VecDeque<SocketAddrV4>,
    toward_reals: VecDeque<(SocketAddrV4, SocketAddrV4)>,
    toward_clients: VecDeque<(SocketAddrV4, SocketAddrV4)>,
    /// Frames queued to go out back to back (bursts).
    burst: Vec<(u16, Vec<u8>)>,
}

fn vip(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip(VIP), port)
}

fn client_mac(addr: Ipv4Addr) -> EthernetAddress {
    EthernetAddress([0x02, 0, 0, 0, 1, addr.octets()[3]])
}

fn set_byte(mut f: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
    f[at] = value;
    f
}

/// Rewrites IPv4 header fields of a frame and fixes its checksum.
fn edit_ipv4(mut f: Vec<u8>, edit: impl FnOnce(&mut Ipv4Packet<&mut [u8]>)) -> Vec<u8> {
    let mut p = Ipv4Packet::new_unchecked(&mut f[ETH_LEN..]);
    edit(&mut p);
    p.fill_checksum();
    f
}

impl Traffic {
    fn new(seed: u64) -> Traffic {
        Traffic {
            rng: Rng(seed),
            now_s: 0,
            proxied: VecDeque::new(),
            toward_reals: VecDeque::new(),
            toward_clients: VecDeque::new(),
            burst: Vec::new(),
        }
    }

    /// The ACK a client answers a cookie SYN-ACK of the proxied service
    /// with, its cookie valid (made with this process's key).
    fn cookie_ack(&self, c: SocketAddrV4) -> Vec<u8> {
        let flow = FlowKey {
            proto: Proto::Tcp,
            src: *c.ip(),
            sport: c.port(),
            dst: ip(VIP),
            dport: 90,
        };
        let cookie = crate::lb::synproxy::process_key().make(&flow, 999, 536, self.now_s);
        super::tcp_full(
            LB_WAN,
            client_mac(*c.ip()),
            (&c.ip().to_string(), c.port()),
            (VIP, 90),
            flags::ACK,
            (1000, cookie.wrapping_add(1)),
            502,
            &[],
            b"",
        )
    }

    /// A client on the client side's subnet: 10.10.0.2 to .201 (not .100,
    /// the VIP), of which only .2 to .40 answer ARP.
    fn client(&mut self) -> SocketAddrV4 {
        let host = match 2 + self.rng.below(200) as u8 {
            100 => 202,
            h => h,
        };
        SocketAddrV4::new(
            Ipv4Addr::new(10, 10, 0, host),
            1024 + self.rng.below(60000) as u16,
        )
    }

    /// A recent flow sluice sent toward the reals or the clients.
    fn recent(&mut self, toward_reals: bool) -> Option<(SocketAddrV4, SocketAddrV4)> {
        let q = if toward_reals {
            &self.toward_reals
        } else {
            &self.toward_clients
        };
        if q.is_empty() {
            return None;
        }
        let i = self.rng.below(q.len() as u64) as usize;
        q.get(i).copied()
    }

    /// The next frame and the port it arrives on.
    fn next(&mut self) -> (u16, Vec<u8>) {
        if let Some(f) = self.burst.pop() {
            return f;
        }
        let c = self.client();
        let cmac = client_mac(*c.ip());
        let syn = |dport| frame_tcp(LB_WAN, cmac, c, vip(dport), flags::SYN);
        let from = |addr: &str| SocketAddrV4::new(ip(addr), 1024);
        match self.rng.below(100) {
            // New connections: NAT (port 80, and 8080 whose real it shares),
            // FULLNAT (a small local port range), one with no route to its
            // real, one whose only real has weight 0.
            0..=11 => (0, syn(80)),
            12..=13 => (0, syn(8080)),
            14..=17 => (0, syn(443)),
            18 => (0, syn(444)),
            // Refused at once: a RST for TCP, an ICMP port unreachable for
            // UDP (bursts of them pass the rate limit: dropped).
            19 if self.rng.below(2) == 0 => (0, syn(82)),
            19 => {
                let (cip, cport) = (c.ip().to_string(), c.port());
                for i in 0..30 {
                    let f = udp_frame((&cip, cport + i), (VIP, 82), cmac, LB_WAN);
                    self.burst.push((0, f));
                }
                (0, udp_frame((&cip, cport), (VIP, 82), cmac, LB_WAN))
            }
            // A client tuple already in use toward r1:8080 through port
            // 80, now to 8080: the reply key exists (session conflict).
            20 => match self.toward_reals.back().copied() {
                Some((client, real)) if *real.ip() == ip(R1) && client.ip().octets()[0] == 10 => {
                    let mac = client_mac(*client.ip());
                    (0, frame_tcp(LB_WAN, mac, client, vip(8080), flags::SYN))
                }
                _ => (0, syn(8080)),
            },
            // Replies from the reals (NAT) and through the router (FULLNAT).
            21..=34 => match self.recent(true) {
                Some((src, dst)) => {
                    let mac = if dst.ip().octets()[0] == 172 {
                        ROUTER_MAC
                    } else {
                        R1_MAC
                    };
                    let f = [flags::SYN | flags::ACK, flags::ACK, flags::FIN | flags::ACK]
                        [self.rng.below(3) as usize];
                    (1, frame_tcp(LB_LAN, mac, dst, src, f))
                }
                None => (0, syn(80)),
            },
            // Clients going on with their connections.
            35..=44 => match self.recent(false) {
                Some((src, dst)) => {
                    let mac = client_mac(*dst.ip());
                    (0, frame_tcp(LB_WAN, mac, dst, src, flags::ACK))
                }
                None => (0, syn(443)),
            },
            45..=48 => (
                0,
                udp_frame((&c.ip().to_string(), c.port()), (VIP, 53), cmac, LB_WAN),
            ),
            // ARP: clients answering our requests, neighbours asking, a
            // failover's announcement back and forth, a claim on the VIP,
            // off-subnet senders, requests for others, a short one.
            49..=54 => {
                let a = Ipv4Addr::new(10, 10, 0, 2 + self.rng.below(39) as u8);
                let reply = arp_to(operation::REPLY, client_mac(a), a, ip("10.10.0.1"), LB_WAN);
                (0, reply)
            }
            55..=57 => {
                let (mac, addr) = [(R1_MAC, R1), (R2_MAC, R2), (ROUTER_MAC, "192.168.10.254")]
                    [self.rng.below(3) as usize];
                (1, bcast(operation::REQUEST, mac, addr, "192.168.10.1"))
            }
            58 => (1, bcast(operation::REQUEST, MOVED_MAC, R2, R2)),
            59 => (1, bcast(operation::REQUEST, R2_MAC, R2, R2)),
            60 => (0, bcast(operation::REQUEST, ATTACKER_MAC, VIP, VIP)),
            61 => (0, bcast(operation::REQUEST, cmac, R1, VIP)),
            62 => (
                0,
                arp_to(
                    operation::REQUEST,
                    cmac,
                    *c.ip(),
                    ip("10.10.0.77"),
                    EthernetAddress::BROADCAST,
                ),
            ),
            63 => (
                0,
                arp_to(
                    operation::REQUEST,
                    cmac,
                    *c.ip(),
                    ip(VIP),
                    EthernetAddress::BROADCAST,
                ),
            ),
            64 => {
                let short = arp_frame(operation::REQUEST, cmac, *c.ip(), ip(VIP));
                (0, short[..ETH_LEN + 20].to_vec())
            }
            // Malformed and filtered frames.
            65 => (0, syn(80)[..10].to_vec()),
            66 => (0, set_byte(syn(80), ETH_LEN, 0x43)),
            67 => (0, edit_ipv4(syn(80), |p| p.set_total_len(1500))),
            68 => (0, set_byte(syn(80), ETH_LEN + 10, 0)),
            69 => (0, edit_ipv4(syn(80), |p| p.set_more_frags(true))),
            70 => (0, set_byte(syn(80), ETH_LEN + 20 + 12, 0xf0)),
            71 => (0, edit_ipv4(syn(80), |p| p.set_ttl(1))),
            72 => (0, set_byte(syn(80), 12, 0x86)),
            73 => (0, set_byte(syn(80), 0, 0x0a)),
            74 => (0, frame_tcp(LB_WAN, LB_WAN, c, vip(80), flags::SYN)),
            75 => (0, syn(81)),
            76 => (0, frame_tcp(LB_WAN, cmac, c, vip(80), flags::ACK)),
            77 => (
                0,
                frame_tcp(LB_WAN, cmac, c, from("10.10.0.77"), flags::SYN),
            ),
            78 => (
                0,
                eth(
                    LB_WAN,
                    cmac,
                    ethertype::IPV4,
                    &ipv4(*c.ip(), ip(VIP), 47, &[0; 8]),
                ),
            ),
            // Forged sources: martian, ours, the real servers' side
            // (rp_filter strict on port 0); a source route.
            79 => {
                let m = ["0.0.0.1", "127.0.0.1", "224.0.0.5", "255.255.255.255"]
                    [self.rng.below(4) as usize];
                (0, frame_tcp(LB_WAN, cmac, from(m), vip(80), flags::SYN))
            }
            80 => (0, frame_tcp(LB_WAN, cmac, from(LIP), vip(80), flags::SYN)),
            81 => (
                0,
                frame_tcp(LB_WAN, cmac, from("192.168.10.9"), vip(80), flags::SYN),
            ),
            82 => (
                0,
                with_ip_options(&syn(80), &[0x83, 7, 4, 192, 168, 10, 3, 0]),
            ),
            // ICMP: echo requests and replies to the VIP and to others.
            83..=84 => {
                let mut icmp = vec![0u8; 16];
                let kind =
                    [msg_type::ECHO_REQUEST, msg_type::ECHO_REPLY][self.rng.below(2) as usize];
                Icmpv4Packet::new_unchecked(&mut icmp[..]).set_msg_type(kind);
                Icmpv4Packet::new_unchecked(&mut icmp[..]).fill_checksum();
                let dst = [ip(VIP), ip("10.10.0.77")][self.rng.below(2) as usize];
                let f = eth(
                    LB_WAN,
                    cmac,
                    ethertype::IPV4,
                    &ipv4(*c.ip(), dst, protocol::ICMP, &icmp),
                );
                (0, f)
            }
            // ICMP errors from a client about a reply sluice sent it, or
            // about nothing sluice knows.
            85..=86 => {
                let (quoted_src, quoted_dst) = match self.recent(false) {
                    Some(flow) if self.rng.below(2) == 0 => flow,
                    _ => (vip(80), c),
                };
                let quoted = frame_tcp(LB_WAN, LB_WAN, quoted_src, quoted_dst, flags::ACK);
                let outer = (&quoted_dst.ip().to_string(), VIP);
                let mac = client_mac(*quoted_dst.ip());
                let err = icmp_error_frame(
                    LB_WAN,
                    mac,
                    (outer.0, outer.1),
                    (msg_type::DST_UNREACHABLE, 3),
                    &quoted,
                );
                (0, err)
            }
            // A burst of replies to one flow: toward a client that never
            // answers ARP, its queue fills.
            87..=88 => match self.toward_reals.back().copied() {
                Some((src, dst)) => {
                    let reply = frame_tcp(LB_LAN, R1_MAC, dst, src, flags::ACK);
                    for _ in 0..20 {
                        self.burst.push((1, reply.clone()));
                    }
                    (1, reply)
                }
                None => (0, syn(80)),
            },
            // The SYN proxy: SYNs answered with cookies, ACKs with a valid
            // cookie (a session, held while the real answers), the same ACK
            // again (one is held per session), forged ACKs.
            89 => (0, syn(90)),
            90..=91 => {
                self.proxied.push_back(c);
                if self.proxied.len() > 16 {
                    self.proxied.pop_front();
                }
                (0, self.cookie_ack(c))
            }
            92 => match self.proxied.back().copied() {
                Some(c) => (0, self.cookie_ack(c)),
                None => (0, syn(90)),
            },
            93 => (0, frame_tcp(LB_WAN, cmac, c, vip(90), flags::ACK)),
            _ => (0, syn(80)),
        }
    }
}

/// The control side's path for a change: state -> slots -> snapshot.
struct Changes {
    state: crate::control::state::State,
    slots: crate::control::slots::RealSlots,
    dataplane: crate::control::config::DataplaneConfig,
    epoch: u64,
}

impl Changes {
    fn new(config: &Config) -> Changes {
        let mut slots = crate::control::slots::RealSlots::new(config.dataplane.max_reals);
        slots.assign(&config.state, 0).unwrap();
        Changes {
            state: config.state.clone(),
            slots,
            dataplane: config.dataplane.clone(),
            epoch: 0,
        }
    }

    fn apply(
        &mut self,
        change: crate::control::state::Change,
        expire_nodest_conn: bool,
    ) -> Arc<Snapshot> {
        self.state = self.state.apply(&change).unwrap();
        self.epoch += 1;
        self.slots.assign(&self.state, self.epoch).unwrap();
        Arc::new(
            Snapshot::from_inputs(&crate::dataplane::snapshot::Inputs {
                dataplane: &self.dataplane,
                synproxy: &Default::default(),
                state: &self.state,
                slots: &self.slots,
                expire_nodest_conn,
                retired: &[],
                ports: &facts(false),
                workers: 2,
                epoch: self.epoch,
            })
            .unwrap(),
        )
    }
}

/// Packets for the accounting test: ten million in release builds.
fn accounting_packets() -> u64 {
    if cfg!(debug_assertions) {
        200_000
    } else {
        10_000_000
    }
}

#[test]
fn every_packet_is_sent_handed_off_or_dropped_none_leaked() {
    use crate::control::state::{Change, RealSpec};
    const BUDGET: usize = 48;
    let text = topology("strict", "off", ACCOUNTING);
    let config = Config::parse("accounting.toml", &text).unwrap();
    let mut changes = Changes::new(&config);
    // The client side has a kernel twin (ARP replies to its address go up
    // too), held to a small budget so that the flood part is exercised.
    let mut ports = facts(false);
    ports[0].kernel_twin = true;
    let snap = Arc::new(Snapshot::build(&config, &ports, 2).unwrap());
    let shared = Shared {
        templates: Arc::new(Templates::new(1024)),
        owner: TEST_OWNER,
        pending_budget: BUDGET,
        kernel_budget: KernelBudget::new(1000, 16),
    };
    let mut workers: Vec<(Pipeline<Counted>, CountingIo)> = (0..2)
        .map(|w| {
            let p = Pipeline::with_shared(Arc::clone(&snap), w, shared.clone());
            (p, CountingIo::default())
        })
        .collect();
    let baseline = live();
    let mut traffic = Traffic::new(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(42);
    let mut now = 0u64;
    let total = accounting_packets();
    let http = crate::control::state::ServiceKey {
        proto: Proto::Tcp,
        vip: vip(80),
    };
    let r2 = RealSpec {
        addr: sa(R2, 8080),
        weight: 3,
        mode: ForwardMode::Nat,
        check_port: None,
    };
    // Moves every handed-off packet to its worker, until none is left.
    fn settle(workers: &mut [(Pipeline<Counted>, CountingIo)], now: u64) {
        loop {
            let mut handed = Vec::new();
            for (_, io) in workers.iter_mut() {
                handed.append(&mut io.handed);
            }
            if handed.is_empty() {
                return;
            }
            for (to, port, pkt) in handed {
                let (p, io) = &mut workers[to as usize];
                p.process_handoff(port, pkt, now, io);
            }
        }
    }
    for n in 0..total {
        // A change at 30 % (r2 removed, its sessions ended on their next
        // packet) and at 60 % (r2 back).
        if n == total * 3 / 10 || n == total * 6 / 10 {
            let snap = if n == total * 3 / 10 {
                changes.apply(
                    Change::DeleteReal {
                        key: http,
                        addr: r2.addr,
                    },
                    true,
                )
            } else {
                changes.apply(
                    Change::AddReal {
                        key: http,
                        real: r2,
                    },
                    false,
                )
            };
            for (p, io) in workers.iter_mut() {
                p.switch(Arc::clone(&snap), io);
            }
        }
        // A millisecond every hundred packets: 100 s of traffic at 100 kpps.
        if n % 100 == 0 {
            now += 1;
            for (p, io) in workers.iter_mut() {
                p.poll(now, io);
            }
        }
        traffic.now_s = now / 1000;
        let (port, frame) = traffic.next();
        // Whichever worker the NIC's hash picks.
        let w = rng.below(2) as usize;
        let (p, io) = &mut workers[w];
        if rng.below(1000) == 0 {
            // A steering bug: a packet handed to a worker that does not own it.
            p.process_handoff(port, Counted::new(frame), now, io);
        } else {
            p.process(port, Counted::new(frame), now, io);
        }
        settle(&mut workers, now);
        for (_, io) in workers.iter_mut() {
            traffic.toward_reals.extend(io.toward_reals.drain(..));
            traffic.toward_clients.extend(io.toward_clients.drain(..));
        }
        while traffic.toward_reals.len() > 256 {
            traffic.toward_reals.pop_front();
        }
        while traffic.toward_clients.len() > 256 {
            traffic.toward_clients.pop_front();
        }
        // The exact account: the only buffers alive between two packets are
        // those waiting for ARP, each worker within its budget, and the
        // client ACKs the SYN proxy holds while their reals answer.
        let pending: usize = workers
            .iter()
            .map(|(p, _)| p.neighbours().pending() + p.synproxy_held())
            .sum();
        assert!(workers
            .iter()
            .all(|(p, _)| p.neighbours().pending() <= BUDGET));
        assert_eq!(live() - baseline, pending as i64, "after packet {n}");
    }
    // Whatever waits for ARP that never comes is dropped after the probes;
    // what the SYN proxy holds for a real that never answers goes with its
    // session (SYN_RECV: 60 s).
    for _ in 0..70 {
        now += 1000;
        for (p, io) in workers.iter_mut() {
            p.poll(now, io);
        }
        settle(&mut workers, now);
    }
    assert_eq!(live(), baseline, "every buffer is back");

    // A table full of static entries: nothing to evict.
    let text = topology(
        "off",
        "off",
        r#"
[dataplane]
max_neighbours = 1
[[neighbour]]
addr = "192.168.10.254"
mac = "02:00:00:00:00:fe"
[[service]]
vip = "10.10.0.100:80"
proto = "tcp"
[[service.real]]
addr = "192.168.10.2:8080"
"#,
    );
    let config = Config::parse("static.toml", &text).unwrap();
    let snap = Arc::new(Snapshot::build(&config, &facts(false), 1).unwrap());
    let mut full: Pipeline<Counted> = Pipeline::new(snap, 0);
    let mut io = CountingIo::default();
    for sport in 0..100 {
        let syn = client_tcp(20000 + sport, 80, flags::SYN);
        full.process(0, Counted::new(syn), 0, &mut io);
    }
    assert_eq!(live(), baseline);

    // A real server that never answers ARP: what waits for it is dropped
    // after the probes.
    let config = Config::parse("silent.toml", &topology("off", "off", ACCOUNTING)).unwrap();
    let snap = Arc::new(Snapshot::build(&config, &facts(false), 1).unwrap());
    let mut silent: Pipeline<Counted> = Pipeline::new(snap, 0);
    silent.process(
        0,
        Counted::new(client_tcp(20000, 80, flags::SYN)),
        0,
        &mut io,
    );
    assert_eq!(live(), baseline + 1, "the SYN waits for the real's MAC");
    for t in 1..=5 {
        silent.poll(t * 1000, &mut io);
    }
    assert_eq!(live(), baseline);
    assert_eq!(silent.counters().get(Counter::DropNeighbourUnresolved), 1);

    let mut sum = full.counters().clone();
    sum.merge(silent.counters());
    for (p, _) in &workers {
        sum.merge(p.counters());
    }
    // Every reason the pipeline drops a packet was exercised (the tx, ring
    // and kernel queue counters belong to the worker's Io, not the
    // pipeline).
    let io_level = [
        Counter::DropTxFull,
        Counter::DropHandoffRingFull,
        Counter::DropKernelQueueFull,
    ];
    let mut report = String::new();
    let mut missed = Vec::new();
    for &c in Counter::ALL {
        let drop = c.name().starts_with("drop_")
            || matches!(c, Counter::SteerMisses | Counter::ArpConflicts);
        if !drop || io_level.contains(&c) {
            continue;
        }
        report.push_str(&format!("  {} {}\n", c.name(), sum.get(c)));
        if sum.get(c) == 0 {
            missed.push(c.name());
        }
    }
    assert!(missed.is_empty(), "never hit: {missed:?}\n{report}");
    eprintln!(
        "{total} packets ({} received, {} translated in, {} out), drops:\n{report}",
        sum.get(Counter::RxPackets),
        sum.get(Counter::InPkts),
        sum.get(Counter::OutPkts)
    );
}
