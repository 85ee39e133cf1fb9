//! The exception path (issue 10): what is for an interface address and not
//! handled by the dataplane goes up to the port's kernel twin, within the
//! worker's budget; what the kernel sends goes out of the port.

use super::*;

const LB_WAN_ADDR: &str = "10.10.0.1";
const LB_LAN_ADDR: &str = "192.168.10.1";

/// Ports with kernel twins, a budget of `burst` frames (and 1000/s).
fn twinned(burst: u32, workers: u16, worker: u16) -> Lb {
    let mut f = facts(false);
    for port in &mut f {
        port.kernel_twin = true;
    }
    let snap = Snapshot::build(&config(WRR_1_3), &f, workers).unwrap();
    let mut shared = shared(&snap, Arc::new(Templates::new(1024)));
    shared.kernel_budget = KernelBudget::new(1000, burst);
    Lb {
        p: Pipeline::with_shared(Arc::new(snap), worker, shared),
        io: TestIo::default(),
        now: 0,
    }
    .with_neighbours()
}

impl Lb {
    /// `count` SYNs from the client (source ports from `first_port`) at the
    /// client-side interface address, port 22.
    fn syn_flood(&mut self, count: u16, first_port: u16) {
        for i in 0..count {
            self.rx(
                0,
                tcp_frame(
                    LB_WAN,
                    CLIENT_MAC,
                    (CLIENT, first_port + i),
                    (LB_WAN_ADDR, 22),
                    flags::SYN,
                ),
            );
        }
    }

    /// What went up to the kernel since the last call: (port, frame).
    fn kernel(&mut self) -> Vec<(u16, Vec<u8>)> {
        std::mem::take(&mut self.io.kernel)
            .into_iter()
            .map(|(p, k)| (p, k.bytes))
            .collect()
    }
}

fn icmp_to(
    dst_mac: EthernetAddress,
    src_mac: EthernetAddress,
    (src, dst): (&str, &str),
    kind: u8,
) -> Vec<u8> {
    let mut icmp = vec![0u8; 16];
    {
        let mut p = Icmpv4Packet::new_unchecked(&mut icmp[..]);
        p.set_msg_type(kind);
        p.set_echo_ident(9);
        p.set_echo_seq_no(1);
    }
    Icmpv4Packet::new_unchecked(&mut icmp[..]).fill_checksum();
    eth(
        dst_mac,
        src_mac,
        ethertype::IPV4,
        &ipv4(ip(src), ip(dst), protocol::ICMP, &icmp),
    )
}

#[test]
fn tcp_and_udp_for_an_interface_address_go_up_unchanged() {
    let mut lb = twinned(64, 1, 0);
    // A client connecting to a listener of the host's (say, BGP or ssh).
    let syn = tcp_frame(
        LB_WAN,
        CLIENT_MAC,
        (CLIENT, 40000),
        (LB_WAN_ADDR, 22),
        flags::SYN,
    );
    assert!(lb.rx(0, syn.clone()).is_empty(), "nothing sent on a port");
    assert_eq!(lb.kernel(), vec![(0, syn)]);
    // A real server answering the host's health check, on the other port.
    let ack = tcp_frame(
        LB_LAN,
        R1_MAC,
        (R1, 8080),
        (LB_LAN_ADDR, 50000),
        flags::SYN | flags::ACK,
    );
    assert!(lb.rx(1, ack.clone()).is_empty());
    assert_eq!(lb.kernel(), vec![(1, ack)]);
    let dgram = udp_frame((CLIENT, 5000), (LB_WAN_ADDR, 161), CLIENT_MAC, LB_WAN);
    lb.rx(0, dgram.clone());
    assert_eq!(lb.kernel(), vec![(0, dgram)]);
    assert_eq!(lb.count(Counter::KernelIn), 3);
    assert_eq!(lb.count(Counter::DropNoService), 0);
    assert_eq!(
        lb.p.sessions().len(),
        0,
        "no session for the host's traffic"
    );
}

#[test]
fn without_a_twin_the_interface_address_serves_nothing() {
    let mut lb = Lb::new(WRR_1_3).with_neighbours();
    let syn = tcp_frame(
        LB_WAN,
        CLIENT_MAC,
        (CLIENT, 40000),
        (LB_WAN_ADDR, 22),
        flags::SYN,
    );
    assert!(lb.rx(0, syn).is_empty());
    assert!(lb.kernel().is_empty());
    assert_eq!(lb.count(Counter::DropNoService), 1);
    assert_eq!(lb.count(Counter::KernelIn), 0);
}

#[test]
fn vip_traffic_and_echo_requests_stay_in_the_dataplane() {
    let mut lb = twinned(64, 1, 0);
    let out = lb.rx(0, client_tcp(40000, 80, flags::SYN));
    assert_eq!(out.len(), 1, "translated to a real");
    // Echo requests to the interface address are answered here...
    let out = lb.rx(
        0,
        icmp_to(
            LB_WAN,
            CLIENT_MAC,
            (CLIENT, LB_WAN_ADDR),
            msg_type::ECHO_REQUEST,
        ),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(lb.count(Counter::IcmpEchoAnswered), 1);
    // ... echo replies (to the host's own pings) go up.
    let reply = icmp_to(LB_LAN, R1_MAC, (R1, LB_LAN_ADDR), msg_type::ECHO_REPLY);
    assert!(lb.rx(1, reply.clone()).is_empty());
    assert_eq!(lb.kernel(), vec![(1, reply)]);
    // Nothing for a VIP goes up, even what has no service.
    lb.rx(0, client_tcp(40001, 81, flags::SYN));
    lb.rx(
        0,
        icmp_to(LB_WAN, CLIENT_MAC, (CLIENT, VIP), msg_type::ECHO_REPLY),
    );
    assert!(lb.kernel().is_empty());
    assert_eq!(lb.count(Counter::KernelIn), 1);
}

#[test]
fn icmp_errors_about_the_hosts_flows_go_up_and_session_errors_are_translated() {
    let mut lb = twinned(64, 1, 0);
    // The host's probe to a real, refused: port unreachable quoting it.
    let probe = udp_frame((LB_LAN_ADDR, 40000), (R1, 9), LB_LAN, R1_MAC);
    let err = icmp_error_frame(
        LB_LAN,
        R1_MAC,
        (R1, LB_LAN_ADDR),
        (msg_type::DST_UNREACHABLE, 3),
        &probe,
    );
    assert!(lb.rx(1, err.clone()).is_empty());
    assert_eq!(lb.kernel(), vec![(1, err)]);
    // An error about a session is still the dataplane's.
    let out = lb.rx(0, client_tcp(40000, 80, flags::SYN));
    let (_, real) = endpoints(&out[0].1);
    let sent = &out[0].1;
    let src = real.ip().to_string();
    let err = icmp_error_frame(
        LB_LAN,
        R1_MAC,
        (&src, CLIENT),
        (msg_type::DST_UNREACHABLE, 4),
        sent,
    );
    let out = lb.rx(1, err);
    assert_eq!(out.len(), 1, "translated toward the client");
    assert!(lb.kernel().is_empty());
    assert_eq!(lb.count(Counter::IcmpErrorsTranslated), 1);
}

#[test]
fn arp_replies_to_the_host_are_learned_and_go_up() {
    let mut lb = twinned(64, 1, 0);
    let new_mac = EthernetAddress([0x02, 0, 0, 0, 0, 0x44]);
    // The reply to the host's own request (sent through the twin).
    let reply = arp_frame(
        operation::REPLY,
        new_mac,
        ip("192.168.10.9"),
        ip(LB_LAN_ADDR),
    );
    assert!(lb.rx(1, reply.clone()).is_empty());
    assert_eq!(lb.kernel(), vec![(1, reply)]);
    assert!(lb
        .p
        .neighbours()
        .iter()
        .any(|(a, n)| a == ip("192.168.10.9") && n.mac == Some(new_mac.0)));
    // Requests are answered here, and not passed up (the kernel would
    // answer too).
    let req = arp_frame(
        operation::REQUEST,
        new_mac,
        ip("192.168.10.9"),
        ip(LB_LAN_ADDR),
    );
    assert_eq!(lb.rx(1, req).len(), 1);
    // A reply for a VIP (sluice's own request) is the dataplane's alone.
    let reply = arp_frame(operation::REPLY, new_mac, ip("192.168.10.9"), ip(VIP));
    lb.rx(1, reply);
    assert!(lb.kernel().is_empty());
}

#[test]
fn partial_checksums_are_completed_before_going_up() {
    let mut f = facts(false);
    for port in &mut f {
        port.kernel_twin = true;
        port.rx_partial_checksums = true;
    }
    let mut lb = Lb::with_facts(WRR_1_3, &f, 1, 0).with_neighbours();
    let mut syn = tcp_frame(
        LB_WAN,
        CLIENT_MAC,
        (CLIENT, 40000),
        (LB_WAN_ADDR, 22),
        flags::SYN,
    );
    make_partial(&mut syn);
    lb.rx(0, syn);
    let up = lb.kernel();
    assert_eq!(up.len(), 1);
    // endpoints() checks every checksum: the kernel would drop a bad one.
    assert_eq!(endpoints(&up[0].1).1, sa(LB_WAN_ADDR, 22));
    assert_eq!(lb.count(Counter::RxPartialChecksums), 1);
}

#[test]
fn a_flood_at_the_interface_address_is_held_to_the_budget() {
    let mut lb = twinned(16, 1, 0);
    lb.syn_flood(1000, 1000);
    // The burst now, then 1000/s: one more per millisecond.
    assert_eq!(lb.kernel().len(), 16);
    assert_eq!(lb.count(Counter::DropKernelRate), 1000 - 16);
    lb.now = 5;
    lb.syn_flood(100, 3000);
    assert_eq!(lb.kernel().len(), 5);
    // Forwarding carries on meanwhile.
    let out = lb.rx(0, client_tcp(40000, 80, flags::SYN));
    assert_eq!(out.len(), 1);
}

#[test]
fn a_flood_on_one_side_leaves_the_other_side_and_arp_their_budgets() {
    let mut lb = twinned(16, 1, 0);
    // The client side floods the interface address: its bucket is spent.
    lb.syn_flood(1000, 1000);
    assert_eq!(lb.kernel().len(), 16);
    // In the same millisecond, a real answers the host's health check on
    // the other port ...
    let ack = tcp_frame(
        LB_LAN,
        R1_MAC,
        (R1, 8080),
        (LB_LAN_ADDR, 50000),
        flags::SYN | flags::ACK,
    );
    lb.rx(1, ack.clone());
    // ... and an ARP reply to the host's own request arrives on the
    // flooded one: both go up.
    let mut reply = arp_frame(
        operation::REPLY,
        CLIENT_MAC,
        ip("10.10.0.9"),
        ip(LB_WAN_ADDR),
    );
    reply[..6].copy_from_slice(&LB_WAN.0);
    lb.rx(0, reply.clone());
    assert_eq!(lb.kernel(), vec![(1, ack), (0, reply)]);
    assert_eq!(lb.count(Counter::DropKernelRate), 1000 - 16);
}

#[test]
fn any_worker_passes_the_hosts_traffic_up_without_a_handoff() {
    for worker in 0..2 {
        let mut lb = twinned(64, 2, worker);
        // Learning the neighbours shared ARP copies; only what follows counts.
        lb.io.handed.clear();
        for sport in 40000..40016 {
            let syn = tcp_frame(
                LB_WAN,
                CLIENT_MAC,
                (CLIENT, sport),
                (LB_WAN_ADDR, 22),
                flags::SYN,
            );
            lb.rx(0, syn);
        }
        assert_eq!(lb.kernel().len(), 16, "worker {worker}");
        assert!(lb.io.handed.is_empty());
    }
}

#[test]
fn what_the_kernel_sends_goes_out_of_its_port_unchanged() {
    let mut lb = twinned(64, 1, 0);
    let frame = tcp_frame(R1_MAC, LB_LAN, (LB_LAN_ADDR, 50000), (R1, 8080), flags::SYN);
    lb.p.from_kernel(1, pkt(frame.clone()), &mut lb.io);
    assert_eq!(lb.io.take(), vec![(1, frame)]);
    assert_eq!(lb.count(Counter::KernelOut), 1);
}
