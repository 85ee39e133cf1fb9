//! The `pipeline` target's world: two workers' pipelines on the services of
//! `pipeline.toml`, warmed up with a fixed exchange (neighbours learned,
//! NAT, FULLNAT, UDP and SYN-proxied sessions open), then driven by the
//! fuzz input decoded into operations: raw frames (the captures' seeds are
//! these), frames built from templates of valid traffic (a client's SYN, the
//! continuation of a flow sluice sent, a real server's answer, ARP, ICMP),
//! optionally mutated, polls, and configuration switches.
//!
//! After every operation it checks what the brief asks:
//! - no panic (the pipeline's own asserts and overflow checks included);
//! - every buffer is accounted for: alive only while it waits for ARP or
//!   is held by the SYN proxy, and none is alive once the timers ran out;
//! - every IPv4 frame sent whose input had valid checksums (or that sluice
//!   made) has valid checksums: IPv4 header, TCP, UDP, ICMP; on a port with
//!   tx checksum offload after the NIC's part, emulated, and the field the
//!   driver reads must hold the pseudo-header sum. A frame that came in with
//!   a bad TCP/UDP checksum may leave with it: sluice does not verify them
//!   (`lb::nat` updates checksums incrementally, so a bad one stays bad);
//! - every frame leaves from the port's own MAC.

use crate::net::{self, opt, Reader, ETH_LEN, ICMP, TCP, UDP};
use arrayvec::ArrayVec;
use sluice::control::config::Config;
use sluice::control::slots::RealSlots;
use sluice::control::state::{Change, State};
use sluice::dataplane::pipeline::{KernelBudget, OwnerHash, Shared};
use sluice::dataplane::snapshot::{Destination, Inputs, PortFacts, Snapshot};
use sluice::dataplane::{Counter, Io, PacketBuf, Pipeline};
use sluice::lb::persistence::Templates;
use sluice::lb::service::{ServiceKey, SynProxyMode};
use sluice::lb::session::FlowKey;
use sluice::lb::Proto;
use sluice::wire::EthernetAddress;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

pub const CONFIG: &str = include_str!("../pipeline.toml");

pub const LB_WAN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const LB_LAN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const R1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x21];
const R2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x22];
const LAN_ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const WAN_ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xfe, 0x01];
const ATTACKER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x66];

const VIP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 100);
const WAN_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 1);
const LAN_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 1);
const R1: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 2);
const R2: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 3);
const LAN_ROUTER: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 254);
const WAN_ROUTER: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 254);
const LADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 100);
const LADDR_UDP: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 101);

/// TCP service ports of the VIP (81: none), UDP ones (54: none).
const TCP_PORTS: [u16; 6] = [80, 443, 90, 91, 8000, 81];
const UDP_PORTS: [u16; 3] = [53, 5353, 54];
const WORKERS: u16 = 2;
/// Operations per input at most (a longer input is cut).
const MAX_OPS: usize = 256;
/// Where the clock starts (ms): past the cookie clock's first periods.
const START_MS: u64 = 1_000_000;

/// A client: 10.10.0.2..=.9 on the client subnet (MACs 02:00:00:00:01:xx),
/// or one of four beyond the client-side router.
fn client(i: u8) -> (Ipv4Addr, [u8; 6]) {
    match i % 12 {
        n @ 0..=7 => (Ipv4Addr::new(10, 10, 0, 2 + n), [0x02, 0, 0, 0, 1, 2 + n]),
        n => (Ipv4Addr::new(198, 51, 100, n), WAN_ROUTER_MAC),
    }
}

/// Addresses ARP frames speak of.
const ARP_ADDRS: [Ipv4Addr; 12] = [
    Ipv4Addr::new(10, 10, 0, 2),
    Ipv4Addr::new(10, 10, 0, 3),
    Ipv4Addr::new(10, 10, 0, 9),
    WAN_ROUTER,
    R1,
    R2,
    LAN_ROUTER,
    VIP,
    WAN_IP,
    LAN_IP,
    LADDR,
    Ipv4Addr::new(172, 16, 0, 2),
];

/// The MAC that truly has `addr` (on the side it lives on).
fn owner_mac(addr: Ipv4Addr) -> [u8; 6] {
    match addr {
        R1 => R1_MAC,
        R2 => R2_MAC,
        LAN_ROUTER => LAN_ROUTER_MAC,
        WAN_ROUTER => WAN_ROUTER_MAC,
        VIP | WAN_IP => LB_WAN,
        LAN_IP | LADDR | LADDR_UDP => LB_LAN,
        a if a.octets()[..3] == [10, 10, 0] => [0x02, 0, 0, 0, 1, a.octets()[3]],
        _ => ATTACKER_MAC,
    }
}

fn side_of(addr: Ipv4Addr) -> u16 {
    if addr.octets()[..3] == [192, 168, 10] || addr.octets()[0] == 172 {
        1
    } else {
        0
    }
}

// ---- buffers and their accounting ----

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn live() -> i64 {
    LIVE.with(Cell::get)
}

/// A packet buffer that counts itself, as the mempool counts mbufs. It
/// remembers whether the frame it came in as had valid checksums, and the
/// tx checksum offload the pipeline asked for.
pub struct Buf {
    bytes: Vec<u8>,
    csum_ok: bool,
    offload: Option<(usize, Proto)>,
}

impl Buf {
    fn new(bytes: Vec<u8>, csum_ok: bool) -> Buf {
        LIVE.with(|l| l.set(l.get() + 1));
        Buf {
            bytes,
            csum_ok,
            offload: None,
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        LIVE.with(|l| l.set(l.get() - 1));
    }
}

/// An mbuf's data room.
const MBUF_ROOM: usize = 2048;

impl PacketBuf for Buf {
    fn data(&self) -> &[u8] {
        &self.bytes
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
    fn set_len(&mut self, len: usize) -> bool {
        if len > MBUF_ROOM {
            return false;
        }
        self.bytes.resize(len, 0);
        true
    }
    fn request_tx_checksums(&mut self, l3_len: usize, proto: Proto) {
        self.offload = Some((l3_len, proto));
    }
}

// ---- what sluice sent ----

/// A TCP/UDP packet sluice sent, for the frames that answer it.
#[derive(Clone)]
struct Sent {
    proto: u8,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
    flags: u8,
    tsval: Option<u32>,
    /// Its IPv4 header and the first 8 bytes after (what an ICMP error quotes).
    quote: Vec<u8>,
}

fn parse_sent(f: &[u8]) -> Option<Sent> {
    let ip = net::ipv4_of(f)?;
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let l4 = &ip[ihl..];
    let proto = ip[9];
    if !(proto == TCP && l4.len() >= 20 || proto == UDP && l4.len() >= 8) {
        return None;
    }
    let a = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
    let p = |o: usize| u16::from_be_bytes([l4[o], l4[o + 1]]);
    let w = |o: usize| u32::from_be_bytes([l4[o], l4[o + 1], l4[o + 2], l4[o + 3]]);
    let tcp = proto == TCP;
    Some(Sent {
        proto,
        src: SocketAddrV4::new(a(12), p(0)),
        dst: SocketAddrV4::new(a(16), p(2)),
        seq: if tcp { w(4) } else { 0 },
        ack: if tcp { w(8) } else { 0 },
        flags: if tcp { l4[13] } else { 0 },
        tsval: if tcp { net::tcp_tsval(l4) } else { None },
        quote: ip[..(ihl + 8).min(ip.len())].to_vec(),
    })
}

/// The world's output: checks every frame as it is sent, then frees it
/// (a NIC that never holds); keeps handoffs for the other worker.
struct FuzzIo {
    macs: [[u8; 6]; 2],
    offload: bool,
    handed: Vec<(u16, u16, Buf)>,
    allocs: u64,
    /// Every `fail_every`th allocation fails (0: none does).
    fail_every: u64,
    /// What both workers sent, newest last: toward the reals (port 1)
    /// and toward the clients (port 0).
    recent: Rc<RefCell<[VecDeque<Sent>; 2]>>,
    sent: u64,
    /// The ports have kernel twins.
    twins: bool,
    /// Frames handed up to the twins.
    up: u64,
}

fn remember(q: &mut VecDeque<Sent>, s: Sent) {
    if q.len() == 128 {
        q.pop_front();
    }
    q.push_back(s);
}

impl Io<Buf> for FuzzIo {
    fn send(&mut self, port: u16, mut pkt: Buf) {
        self.sent += 1;
        assert!(port < 2, "sent on port {port}, which does not exist");
        let f = &pkt.bytes;
        assert!(f.len() >= ETH_LEN, "a runt frame of {} bytes sent", f.len());
        assert!(
            f.len() <= MBUF_ROOM,
            "a frame of {} bytes, longer than a buffer",
            f.len()
        );
        assert_eq!(
            f[6..12],
            self.macs[port as usize],
            "a frame sent on port {port} from another MAC"
        );
        if let Some((l3_len, proto)) = pkt.offload {
            assert!(
                self.offload,
                "tx checksum offload asked of a port without it"
            );
            let p = match proto {
                Proto::Tcp => TCP,
                Proto::Udp => UDP,
            };
            let mut f = pkt.bytes.clone();
            let field_at = ETH_LEN + l3_len + if p == TCP { 16 } else { 6 };
            if pkt.csum_ok && f.len() >= field_at + 2 {
                let field = u16::from_be_bytes([f[field_at], f[field_at + 1]]);
                let udp_none = p == UDP && field == 0;
                if !udp_none {
                    assert_eq!(
                        Some(field),
                        net::pseudo_field(&f, l3_len, p),
                        "the offloaded checksum field is not the pseudo-header sum"
                    );
                }
            }
            net::nic_offload(&mut f, l3_len, p);
            pkt.bytes = f;
        }
        let f = &pkt.bytes;
        if pkt.csum_ok {
            if let Some(fault) = net::checksum_fault(f) {
                panic!("sent on port {port} with a bad {fault}: {f:02x?}");
            }
        }
        if let Some(s) = parse_sent(f) {
            match port {
                1 => remember(&mut self.recent.borrow_mut()[1], s),
                _ => remember(&mut self.recent.borrow_mut()[0], s),
            }
        }
    }
    fn alloc(&mut self) -> Option<Buf> {
        self.allocs += 1;
        if self.fail_every != 0 && self.allocs.is_multiple_of(self.fail_every) {
            return None;
        }
        // What sluice writes into a fresh buffer must be right.
        Some(Buf::new(Vec::new(), true))
    }
    fn handoff(&mut self, worker: u16, in_port: u16, pkt: Buf) {
        assert!(worker < WORKERS, "handed to worker {worker}");
        self.handed.push((worker, in_port, pkt));
    }
    /// Up to a twin: only on a port that has one, only ARP or IPv4 for one
    /// of the interfaces' own addresses. The kernel takes it (freed here).
    fn to_kernel(&mut self, port: u16, pkt: Buf) {
        self.up += 1;
        assert!(
            port < 2,
            "up to the twin of port {port}, which does not exist"
        );
        assert!(self.twins, "up to the twin of port {port}, which has none");
        let f = &pkt.bytes;
        assert!(f.len() >= ETH_LEN, "a runt frame of {} bytes up", f.len());
        match [f[12], f[13]] {
            [0x08, 0x06] => {}
            [0x08, 0x00] => {
                let dst = net::ipv4_of(f).map(|ip| Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
                assert!(
                    dst == Some(WAN_IP) || dst == Some(LAN_IP),
                    "up to the kernel for {dst:?}, not an interface address: {f:02x?}"
                );
            }
            t => panic!("up to the kernel with ethertype {t:02x?}"),
        }
    }
}

// ---- the configuration and its variants ----

/// The base configuration and the snapshots the `Switch` operation moves
/// between (index 0: the base), per `setup_index`.
struct Setup {
    snaps: [Vec<Arc<Snapshot>>; 4],
}

fn facts(offload: bool, twins: bool) -> [PortFacts; 2] {
    [LB_WAN, LB_LAN].map(|mac| PortFacts {
        mac: EthernetAddress(mac),
        tx_checksum_offload: offload,
        rx_partial_checksums: false,
        kernel_twin: twins,
    })
}

/// Which of the setups: ports without or with tx checksum offload, and
/// without or with kernel twins.
fn setup_index(offload: bool, twins: bool) -> usize {
    usize::from(offload) | (usize::from(twins) << 1)
}

fn key(proto: Proto, port: u16) -> ServiceKey {
    ServiceKey {
        proto,
        vip: SocketAddrV4::new(VIP, port),
    }
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let config = Config::parse("pipeline.toml", CONFIG).expect("pipeline.toml");
        let base = &config.state;
        let r = |s: &str| -> SocketAddrV4 { s.parse().unwrap() };
        let tcp = |p| key(Proto::Tcp, p);
        let synproxy = |state: &State, p: u16, mode: SynProxyMode| {
            let mut options = state.service(&tcp(p)).unwrap().options.clone();
            options.synproxy = mode;
            Change::EditService {
                key: tcp(p),
                options,
            }
        };
        // (changes from the base, expire_nodest_conn)
        let variants: Vec<(Vec<Change>, bool)> = vec![
            (vec![], false),
            (
                vec![Change::DeleteReal {
                    key: tcp(80),
                    addr: r("192.168.10.3:8080"),
                }],
                true,
            ),
            (
                vec![
                    Change::DeleteService { key: tcp(443) },
                    Change::DeleteService {
                        key: key(Proto::Udp, 5353),
                    },
                ],
                false,
            ),
            (
                vec![
                    synproxy(base, 90, SynProxyMode::Off),
                    synproxy(base, 80, SynProxyMode::On),
                    synproxy(base, 91, SynProxyMode::Auto),
                ],
                false,
            ),
            (
                vec![
                    Change::EditReal {
                        key: tcp(80),
                        real: sluice::control::state::RealSpec {
                            addr: r("192.168.10.2:8080"),
                            weight: 0,
                            mode: sluice::lb::service::ForwardMode::Nat,
                            check_port: None,
                        },
                    },
                    Change::AddNeighbour {
                        addr: Ipv4Addr::new(10, 10, 0, 3),
                        mac: EthernetAddress(ATTACKER_MAC),
                        port: None,
                    },
                    Change::DeleteRoute {
                        prefix: "0.0.0.0/0".parse().unwrap(),
                    },
                ],
                false,
            ),
        ];
        let announced = |s: &State| -> Vec<(Ipv4Addr, Destination)> {
            let mut v = Vec::new();
            for svc in &s.services {
                v.push((*svc.key.vip.ip(), Destination::Vip));
                for a in &svc.laddrs {
                    v.push((*a, Destination::Laddr));
                }
            }
            v
        };
        let snaps = [0, 1, 2, 3].map(|i| {
            let (offload, twins) = (i & 1 != 0, i & 2 != 0);
            let mut base_slots = RealSlots::new(config.dataplane.max_reals);
            base_slots.assign(base, 0).unwrap();
            variants
                .iter()
                .enumerate()
                .map(|(epoch, (changes, nodest))| {
                    let state = base.apply_all(changes).expect("variant");
                    let mut slots = base_slots.clone();
                    slots.assign(&state, epoch as u64).unwrap();
                    // Addresses of the base that this state lost stay
                    // classified as before while sessions use them.
                    let now = announced(&state);
                    let retired: Vec<_> = announced(base)
                        .into_iter()
                        .filter(|(a, _)| !now.iter().any(|(b, _)| b == a))
                        .collect();
                    Arc::new(
                        Snapshot::from_inputs(&Inputs {
                            dataplane: &config.dataplane,
                            synproxy: &config.synproxy,
                            state: &state,
                            slots: &slots,
                            expire_nodest_conn: *nodest,
                            retired: &retired,
                            ports: &facts(offload, twins),
                            workers: WORKERS,
                            epoch: epoch as u64,
                        })
                        .expect("variant snapshot"),
                    )
                })
                .collect()
        });
        Setup { snaps }
    })
}

// ---- operations ----

/// Flags of an operation.
mod flag {
    /// Received by worker 1 (else 0): the NIC's hash may pick either.
    pub const WORKER: u8 = 1;
    /// Delivered as a handoff from the other worker (a steering bug, or
    /// the right worker: both must be safe).
    pub const HANDOFF: u8 = 2;
    /// Mutations follow.
    pub const MUTATE: u8 = 4;
    /// Checksums recomputed after the mutations.
    pub const FIX: u8 = 8;
    /// Addresses and ports rewritten to answer a flow sluice sent.
    pub const RETARGET: u8 = 16;
    /// A client ACK's ack number made a valid SYN cookie.
    pub const COOKIE: u8 = 32;
    /// Received on the other port.
    pub const OTHER_PORT: u8 = 64;
}

#[derive(Clone, Debug)]
enum Kind {
    /// A frame as it is (seeds from captures), on port 0, 1 or 2 (none).
    Raw {
        port: u8,
        bytes: Vec<u8>,
    },
    /// A client's SYN to a VIP port.
    Syn {
        client: u8,
        sport: u16,
        svc: u8,
        opts: u8,
        isn: u32,
        tsval: u32,
    },
    /// A client going on with a flow sluice sent it (SYN-ACK, data, ...).
    Client {
        idx: u8,
        flags: u8,
        len: u8,
        opts: u8,
    },
    /// A real server (or the router before one) answering a flow sluice
    /// sent toward it.
    Real {
        idx: u8,
        flags: u8,
        len: u8,
        opts: u8,
        isn: u32,
    },
    /// A client's ACK carrying a valid cookie without a SYN before it.
    CookieAck {
        client: u8,
        sport: u16,
        svc: u8,
        isn: u32,
        mss: u16,
        len: u8,
    },
    Udp {
        client: u8,
        sport: u16,
        svc: u8,
        len: u8,
    },
    Arp {
        op: u8,
        sender: u8,
        mac: u8,
        target: u8,
        dst: u8,
    },
    Icmp {
        kind: u8,
        idx: u8,
        code: u8,
    },
    Poll {
        ms: u16,
    },
    Switch {
        variant: u8,
    },
}

#[derive(Clone, Debug)]
struct Op {
    flags: u8,
    /// Milliseconds before it (>= 200: whole seconds, 1..=56).
    dt: u8,
    /// Which recent flow RETARGET answers.
    target: u8,
    /// (offset, xor); offset 0xffff: cut the frame by the xor's value.
    mutations: Vec<(u16, u8)>,
    kind: Kind,
}

impl Op {
    fn new(kind: Kind) -> Op {
        Op {
            flags: 0,
            dt: 0,
            target: 0,
            mutations: Vec::new(),
            kind,
        }
    }
    fn worker(mut self, w: u8) -> Op {
        self.flags |= w & flag::WORKER;
        self
    }
    fn after(mut self, dt: u8) -> Op {
        self.dt = dt;
        self
    }
}

/// Decodes one operation (see README.md for the format).
fn decode(r: &mut Reader) -> Op {
    let tag = r.u8();
    let flags = r.u8();
    let dt = r.u8();
    let target = r.u8();
    let kind = match tag % 10 {
        0 => {
            let port = r.u8() % 3;
            let len = usize::from(r.u16() % 1600);
            Kind::Raw {
                port,
                bytes: r.bytes(len).to_vec(),
            }
        }
        1 => Kind::Syn {
            client: r.u8(),
            sport: r.u16(),
            svc: r.u8(),
            opts: r.u8(),
            isn: r.u32(),
            tsval: r.u32(),
        },
        2 => Kind::Client {
            idx: r.u8(),
            flags: r.u8(),
            len: r.u8(),
            opts: r.u8(),
        },
        3 => Kind::Real {
            idx: r.u8(),
            flags: r.u8(),
            len: r.u8(),
            opts: r.u8(),
            isn: r.u32(),
        },
        4 => Kind::CookieAck {
            client: r.u8(),
            sport: r.u16(),
            svc: r.u8(),
            isn: r.u32(),
            mss: r.u16(),
            len: r.u8(),
        },
        5 => Kind::Udp {
            client: r.u8(),
            sport: r.u16(),
            svc: r.u8(),
            len: r.u8(),
        },
        6 => Kind::Arp {
            op: r.u8(),
            sender: r.u8(),
            mac: r.u8(),
            target: r.u8(),
            dst: r.u8(),
        },
        7 => Kind::Icmp {
            kind: r.u8(),
            idx: r.u8(),
            code: r.u8(),
        },
        8 => Kind::Poll { ms: r.u16() },
        _ => Kind::Switch { variant: r.u8() },
    };
    let mut mutations = Vec::new();
    if flags & flag::MUTATE != 0 {
        for _ in 0..=r.u8() % 8 {
            mutations.push((r.u16(), r.u8()));
        }
    }
    Op {
        flags,
        dt,
        target,
        mutations,
        kind,
    }
}

/// Two workers, their outputs, the clock.
struct World {
    workers: Vec<(Pipeline<Buf>, FuzzIo)>,
    recent: Rc<RefCell<[VecDeque<Sent>; 2]>>,
    now: u64,
    snaps: &'static [Arc<Snapshot>],
    /// Frames received so far: every other burst is prefetched
    /// (`Pipeline::stage_bursts_from`).
    frames: u64,
}

impl World {
    fn new(offload: bool, twins: bool, fail_every: u64) -> World {
        let snaps = &setup().snaps[setup_index(offload, twins)];
        let base = Arc::clone(&snaps[0]);
        let shared = Shared {
            templates: Arc::new(Templates::new(256)),
            owner: OwnerHash::with_key(0x5eed, 0x1234),
            pending_budget: 48,
            // Small, so that a few frames find it spent.
            kernel_budget: KernelBudget::new(1000, 8),
        };
        let recent = Rc::new(RefCell::new([VecDeque::new(), VecDeque::new()]));
        let workers = (0..WORKERS)
            .map(|w| {
                let p = Pipeline::with_shared(Arc::clone(&base), w, shared.clone());
                let io = FuzzIo {
                    macs: [LB_WAN, LB_LAN],
                    offload,
                    handed: Vec::new(),
                    allocs: 0,
                    fail_every,
                    recent: Rc::clone(&recent),
                    sent: 0,
                    twins,
                    up: 0,
                };
                (p, io)
            })
            .collect();
        World {
            workers,
            recent,
            now: START_MS,
            snaps,
            frames: 0,
        }
    }

    /// The most recent flows sluice sent toward the reals (or the clients),
    /// newest last, over both workers.
    fn recent(&self, toward_reals: bool, idx: u8, proto: Option<u8>) -> Option<Sent> {
        let recent = self.recent.borrow();
        let q = &recent[usize::from(toward_reals)];
        let matching = || {
            q.iter()
                .rev()
                .filter(|s| proto.is_none_or(|p| s.proto == p))
        };
        let count = matching().count();
        if count == 0 {
            return None;
        }
        // Index from the newest: small indices are the likely answers.
        matching().nth(usize::from(idx) % count).cloned()
    }

    fn cookie(&self, flow: &FlowKey, isn: u32, mss: u16) -> u32 {
        self.snaps[0]
            .synproxy
            .key
            .make(flow, isn, mss, self.now / 1000)
    }

    /// The frame of an operation and the port it arrives on (None: no
    /// frame, or nothing to answer yet).
    fn build(&self, kind: &Kind) -> Option<(u16, Vec<u8>)> {
        Some(match *kind {
            Kind::Raw { port, ref bytes } => (u16::from(port), bytes.clone()),
            Kind::Syn {
                client: c,
                sport,
                svc,
                opts,
                isn,
                tsval,
            } => {
                let (addr, mac) = client(c);
                let dport = TCP_PORTS[usize::from(svc) % TCP_PORTS.len()];
                let o = syn_options(opts, tsval, 0);
                let l4 = net::tcp(sport, dport, isn, 0, 0x02, 64240, &o, &[]);
                (0, net::frame(LB_WAN, mac, addr, VIP, TCP, &l4))
            }
            Kind::Client {
                idx,
                flags,
                len,
                opts,
            } => {
                let s = self.recent(false, idx, None)?;
                let mac = owner_mac(*s.dst.ip());
                let mac = if mac == ATTACKER_MAC {
                    WAN_ROUTER_MAC
                } else {
                    mac
                };
                let payload = vec![b'c'; usize::from(len)];
                let l4 = if s.proto == TCP {
                    let seq = s.ack;
                    let ack = s.seq.wrapping_add(u32::from(s.flags & 0x03 != 0));
                    let mut o = Vec::new();
                    if opts & 1 != 0 {
                        o.extend_from_slice(&opt::ts(
                            0x1000_0000 + u32::from(idx),
                            s.tsval.unwrap_or(0),
                        ));
                    }
                    if opts & 6 != 0 {
                        let n = usize::from((opts >> 1) & 3);
                        let blocks: Vec<(u32, u32)> = (0..n as u32)
                            .map(|i| {
                                (
                                    ack.wrapping_add(100 * i + 10),
                                    ack.wrapping_add(100 * i + 50),
                                )
                            })
                            .collect();
                        o.extend_from_slice(&opt::sack(&blocks));
                    }
                    let f = if flags == 0 { 0x10 } else { flags };
                    net::tcp(s.dst.port(), s.src.port(), seq, ack, f, 502, &o, &payload)
                } else {
                    net::udp(s.dst.port(), s.src.port(), &payload)
                };
                (
                    0,
                    net::frame(LB_WAN, mac, *s.dst.ip(), *s.src.ip(), s.proto, &l4),
                )
            }
            Kind::Real {
                idx,
                flags,
                len,
                opts,
                isn,
            } => {
                let s = self.recent(true, idx, None)?;
                let mac = match *s.dst.ip() {
                    a if side_of(a) == 1 && a.octets()[0] == 192 => owner_mac(a),
                    _ => LAN_ROUTER_MAC,
                };
                let payload = vec![b'r'; usize::from(len)];
                let l4 = if s.proto == TCP {
                    // A SYN is answered with a SYN-ACK unless told otherwise.
                    let syn = s.flags & 0x12 == 0x02;
                    let f = match flags {
                        0 if syn => 0x12,
                        0 => 0x10,
                        f => f,
                    };
                    let seq = if f & 0x02 != 0 { isn } else { s.ack };
                    let ack = s.seq.wrapping_add(u32::from(s.flags & 0x03 != 0));
                    let o = if f & 0x02 != 0 {
                        syn_options(opts, isn ^ 0x5a5a, s.tsval.unwrap_or(0))
                    } else if opts & 1 != 0 {
                        opt::ts(isn, s.tsval.unwrap_or(0)).to_vec()
                    } else {
                        Vec::new()
                    };
                    net::tcp(s.dst.port(), s.src.port(), seq, ack, f, 29200, &o, &payload)
                } else {
                    net::udp(s.dst.port(), s.src.port(), &payload)
                };
                (
                    1,
                    net::frame(LB_LAN, mac, *s.dst.ip(), *s.src.ip(), s.proto, &l4),
                )
            }
            Kind::CookieAck {
                client: c,
                sport,
                svc,
                isn,
                mss,
                len,
            } => {
                let (addr, mac) = client(c);
                let dport = [90, 91][usize::from(svc & 1)];
                let flow = FlowKey {
                    proto: Proto::Tcp,
                    src: addr,
                    sport,
                    dst: VIP,
                    dport,
                };
                let cookie = self.cookie(&flow, isn, mss);
                let o = if svc & 2 != 0 {
                    opt::ts(7, u32::from(svc >> 2)).to_vec()
                } else {
                    Vec::new()
                };
                let payload = vec![b'a'; usize::from(len)];
                let l4 = net::tcp(
                    sport,
                    dport,
                    isn.wrapping_add(1),
                    cookie.wrapping_add(1),
                    0x10,
                    502,
                    &o,
                    &payload,
                );
                (0, net::frame(LB_WAN, mac, addr, VIP, TCP, &l4))
            }
            Kind::Udp {
                client: c,
                sport,
                svc,
                len,
            } => {
                let (addr, mac) = client(c);
                let dport = UDP_PORTS[usize::from(svc) % UDP_PORTS.len()];
                let payload = vec![b'u'; usize::from(len)];
                let l4 = net::udp(sport, dport, &payload);
                (0, net::frame(LB_WAN, mac, addr, VIP, UDP, &l4))
            }
            Kind::Arp {
                op,
                sender,
                mac,
                target,
                dst,
            } => {
                let sip = ARP_ADDRS[usize::from(sender) % ARP_ADDRS.len()];
                let tip = ARP_ADDRS[usize::from(target) % ARP_ADDRS.len()];
                let port = side_of(sip);
                let ours = [LB_WAN, LB_LAN][usize::from(port)];
                let smac = match mac % 4 {
                    0 | 1 => owner_mac(sip),
                    2 => ATTACKER_MAC,
                    _ => ours,
                };
                let dmac = match dst % 3 {
                    0 => [0xff; 6],
                    1 => ours,
                    _ => ATTACKER_MAC,
                };
                let code = [1, 2, 3][usize::from(op % 3)];
                let tmac = if code == 2 { ours } else { [0; 6] };
                // op 3: a malformed header (hardware type).
                let mut f = net::arp(dmac, smac, code.min(2), (smac, sip), (tmac, tip));
                if code == 3 {
                    f[ETH_LEN + 1] = 6;
                }
                (port, f)
            }
            Kind::Icmp { kind, idx, code } => self.icmp(kind, idx, code)?,
            Kind::Poll { .. } | Kind::Switch { .. } => return None,
        })
    }

    fn icmp(&self, kind: u8, idx: u8, code: u8) -> Option<(u16, Vec<u8>)> {
        let (addr, mac) = client(idx);
        match kind % 5 {
            // Echo requests and replies to our addresses and to others.
            0 | 1 => {
                let dst = [VIP, WAN_IP, LAN_IP, LADDR, Ipv4Addr::new(10, 10, 0, 77)]
                    [usize::from(code) % 5];
                let t = if kind.is_multiple_of(5) { 8 } else { 0 };
                let m = net::icmp(t, 0, 0x0042_0001, b"0123456789abcdef");
                let (src, smac, port) = if dst == LAN_IP || dst == LADDR {
                    (R1, R1_MAC, 1)
                } else {
                    (addr, mac, 0)
                };
                let ours = [LB_WAN, LB_LAN][port];
                Some((port as u16, net::frame(ours, smac, src, dst, ICMP, &m)))
            }
            // An error from a client (or the router before it) about a
            // packet sluice sent it.
            2 => {
                let s = self.recent(false, idx, None)?;
                let (t, c) = icmp_type(code);
                let m = net::icmp(t, c, 1400, &s.quote);
                let from = if side_of(*s.dst.ip()) == 0 && s.dst.ip().octets()[0] == 10 {
                    *s.dst.ip()
                } else {
                    WAN_ROUTER
                };
                let f = net::frame(LB_WAN, owner_mac(from), from, *s.src.ip(), ICMP, &m);
                Some((0, f))
            }
            // An error from a real server or the router about a packet
            // sluice sent toward the reals (e.g. fragmentation needed).
            _ => {
                let s = self.recent(true, idx, None)?;
                let (t, c) = icmp_type(code);
                let m = net::icmp(t, c, 1280, &s.quote);
                let from = if kind % 5 == 3 {
                    *s.dst.ip()
                } else {
                    LAN_ROUTER
                };
                let from = if side_of(from) == 1 { from } else { LAN_ROUTER };
                let smac = if from.octets()[0] == 192 {
                    owner_mac(from)
                } else {
                    LAN_ROUTER_MAC
                };
                let f = net::frame(LB_LAN, smac, from, *s.src.ip(), ICMP, &m);
                Some((1, f))
            }
        }
    }

    /// RETARGET: a TCP/UDP frame's addresses and ports made the answer to a
    /// flow sluice sent out of the port the frame arrives on.
    fn retarget(&self, port: u16, frame: &mut [u8], idx: u8) {
        let Some(ip) = net::ipv4_of(frame) else {
            return;
        };
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let proto = ip[9];
        if ihl + 4 > ip.len() || !(proto == TCP || proto == UDP) {
            return;
        }
        let Some(s) = self.recent(port == 1, idx, Some(proto)) else {
            return;
        };
        let ip = &mut frame[ETH_LEN..];
        ip[12..16].copy_from_slice(&s.dst.ip().octets());
        ip[16..20].copy_from_slice(&s.src.ip().octets());
        ip[ihl..ihl + 2].copy_from_slice(&s.dst.port().to_be_bytes());
        ip[ihl + 2..ihl + 4].copy_from_slice(&s.src.port().to_be_bytes());
    }

    /// COOKIE: a client's ACK to a VIP given the ack number of a valid
    /// cookie for its flow and sequence number.
    fn make_cookie(&self, frame: &mut [u8]) {
        let Some(ip) = net::ipv4_of(frame) else {
            return;
        };
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != TCP || ip.len() < ihl + 20 {
            return;
        }
        let l4 = &ip[ihl..];
        let flow = FlowKey {
            proto: Proto::Tcp,
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            sport: u16::from_be_bytes([l4[0], l4[1]]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            dport: u16::from_be_bytes([l4[2], l4[3]]),
        };
        let seq = u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]);
        let cookie = self.cookie(&flow, seq.wrapping_sub(1), 1460);
        let at = ETH_LEN + ihl + 8;
        frame[at..at + 4].copy_from_slice(&cookie.wrapping_add(1).to_be_bytes());
    }

    /// Moves every handed-off packet to its worker, until none is left.
    fn settle(&mut self) {
        for _ in 0..8 {
            let mut handed = Vec::new();
            for (_, io) in self.workers.iter_mut() {
                handed.append(&mut io.handed);
            }
            if handed.is_empty() {
                return;
            }
            for (to, port, pkt) in handed {
                let (p, io) = &mut self.workers[usize::from(to)];
                p.process_handoff(port, pkt, self.now, io);
            }
        }
        // The owner of a handed-off packet is the worker that processes it:
        // it never hands it on (that would be a steering loop).
        panic!("handoffs still bouncing between workers after 8 rounds");
    }

    fn poll(&mut self) {
        for (p, io) in self.workers.iter_mut() {
            p.poll(self.now, io);
        }
        self.settle();
    }

    /// The account: the only buffers alive between two operations are
    /// those waiting for ARP (each worker within its budget) and those
    /// the SYN proxy holds.
    fn check_account(&self, after: impl FnOnce() -> String) {
        let mut legit = 0i64;
        for (p, _) in &self.workers {
            let pending = p.neighbours().pending();
            assert!(
                pending <= 48,
                "{pending} waiting for ARP, over the budget of 48"
            );
            legit += (pending + p.synproxy_held()) as i64;
        }
        if live() != legit {
            panic!(
                "{} buffers alive, {legit} waiting for ARP or held: leaked or lost after {}",
                live(),
                after()
            );
        }
    }

    fn exec(&mut self, op: &Op) {
        self.now += match op.dt {
            d @ 0..=199 => u64::from(d),
            d => u64::from(d - 199) * 1000,
        };
        if op.dt > 0 {
            self.poll();
        }
        match op.kind {
            Kind::Poll { ms } => {
                self.now += u64::from(ms);
                self.poll();
                return;
            }
            Kind::Switch { variant } => {
                let snap = &self.snaps[usize::from(variant) % self.snaps.len()];
                for (p, io) in self.workers.iter_mut() {
                    p.switch(Arc::clone(snap), io);
                }
                self.settle();
                return;
            }
            _ => {}
        }
        let Some((mut port, mut frame)) = self.build(&op.kind) else {
            return;
        };
        if op.flags & flag::OTHER_PORT != 0 {
            port ^= 1;
        }
        if op.flags & flag::RETARGET != 0 {
            self.retarget(port, &mut frame, op.target);
        }
        if op.flags & flag::COOKIE != 0 {
            self.make_cookie(&mut frame);
        }
        for &(at, x) in &op.mutations {
            if at == 0xffff {
                let keep = frame.len().saturating_sub(usize::from(x));
                frame.truncate(keep);
            } else if !frame.is_empty() {
                let i = usize::from(at) % frame.len();
                frame[i] ^= x;
            }
        }
        if op.flags & (flag::FIX | flag::RETARGET | flag::COOKIE) != 0 {
            net::fix_checksums(&mut frame);
        }
        let ok = net::checksum_fault(&frame).is_none();
        // A worker consumes an ARP frame another one handed it (a copy of
        // what it learned) without a counter of its own.
        let handed_arp = op.flags & flag::HANDOFF != 0 && frame.get(12..14) == Some(&[0x08, 0x06]);
        let w = usize::from(op.flags & flag::WORKER);
        let now = self.now;
        let before = self.fates();
        self.frames += 1;
        let staged = self.frames.is_multiple_of(2);
        let (p, io) = &mut self.workers[w];
        let pkt = Buf::new(frame, ok);
        if op.flags & flag::HANDOFF != 0 {
            p.process_handoff(port, pkt, now, io);
        } else {
            // The workers' path: a received burst (here of one, so each
            // frame's fate is checked on its own), prefetched as with many
            // sessions or not as with few, in turn.
            p.stage_bursts_from(if staged { 0 } else { usize::MAX });
            let mut burst: ArrayVec<Buf, 1> = ArrayVec::new();
            burst.push(pkt);
            p.process_burst(port, &mut burst, now, io);
        }
        self.settle();
        let after = self.fates();
        assert!(
            handed_arp || after.accounts_for_one_more(&before),
            "a frame neither sent, up, waiting nor counted as dropped: {op:?}\n{before:?} -> {after:?}"
        );
    }

    fn fates(&self) -> Fates {
        let mut f = Fates::default();
        for (p, io) in &self.workers {
            let c = p.counters();
            f.drops += Counter::ALL
                .iter()
                .filter(|&&k| is_drop_reason(k))
                .map(|&k| c.get(k))
                .sum::<u64>();
            f.consumed += c.get(Counter::ArpRepliesLearned) + c.get(Counter::SynproxyHandshakes);
            f.sent += io.sent;
            f.up += io.up;
            f.waiting += p.neighbours().pending() + p.synproxy_held();
        }
        f
    }

    /// The timers run out: whatever waits for ARP is dropped after the
    /// probes, what the SYN proxy holds goes with its session.
    fn drain(&mut self) {
        for _ in 0..8 {
            self.now += 1000;
            self.poll();
        }
        for _ in 0..20 {
            self.now += 100_000;
            self.poll();
        }
        assert_eq!(live(), 0, "buffers still alive once every timer ran out");
    }
}

/// The counters a dropped frame is counted in: the `drop_*` ones, a
/// handoff to a worker that does not own it, a claim on our address, a
/// real's refusal of a SYN-proxied connection (which frees the client's
/// held ACK: a RST that goes on to wait for ARP leaves the number of
/// waiting frames as it was).
fn is_drop_reason(c: Counter) -> bool {
    c.name().starts_with("drop_")
        || matches!(
            c,
            Counter::SteerMisses | Counter::ArpConflicts | Counter::SynproxyRealRefused
        )
}

/// Where the frames went, over both workers: counted as dropped, consumed
/// (an ARP reply learned; a real's SYN-ACK that completes a SYN-proxied
/// handshake, which releases the held client ACK if there is one), sent,
/// up to a twin, waiting (for ARP, or held by the SYN proxy).
#[derive(Debug, Default, Clone, Copy)]
struct Fates {
    drops: u64,
    consumed: u64,
    sent: u64,
    up: u64,
    waiting: usize,
}

impl Fates {
    /// Whether one more frame went somewhere since `before`.
    fn accounts_for_one_more(&self, before: &Fates) -> bool {
        self.drops > before.drops
            || self.consumed > before.consumed
            || self.sent > before.sent
            || self.up > before.up
            || self.waiting > before.waiting
    }
}

fn syn_options(opts: u8, tsval: u32, tsecr: u32) -> Vec<u8> {
    let mut o = Vec::new();
    if opts & 1 != 0 {
        o.extend_from_slice(&opt::mss([1460, 536, 9000, 88][usize::from(opts >> 4) & 3]));
    }
    if opts & 2 != 0 {
        o.extend_from_slice(&opt::ws([7, 0, 14, 15][usize::from(opts >> 6)]));
    }
    if opts & 4 != 0 {
        o.extend_from_slice(&opt::SACK_OK);
    }
    if opts & 8 != 0 {
        o.extend_from_slice(&opt::ts(tsval, tsecr));
    }
    o
}

fn icmp_type(code: u8) -> (u8, u8) {
    match code % 4 {
        0 => (3, 4), // fragmentation needed
        1 => (3, 3), // port unreachable
        2 => (11, 0),
        _ => (3, code >> 2),
    }
}

/// The fixed warm-up: neighbours learned on both sides, connections of
/// every service opened (NAT, FULLNAT, UDP, persistent, SYN-proxied).
fn warm_up() -> &'static [Op] {
    static OPS: OnceLock<Vec<Op>> = OnceLock::new();
    OPS.get_or_init(|| {
        let mut ops = Vec::new();
        // ARP replies from two clients, the routers and the reals.
        for (sender, w) in [(0u8, 0u8), (1, 1), (3, 0), (4, 1), (5, 0), (6, 1)] {
            let target = if sender < 4 { 8 } else { 9 };
            ops.push(
                Op::new(Kind::Arp {
                    op: 1,
                    sender,
                    mac: 0,
                    target,
                    dst: 1,
                })
                .worker(w),
            );
        }
        let mut n = 0u8;
        for svc in 0..5u8 {
            for c in [0u8, 8] {
                n += 1;
                ops.push(
                    Op::new(Kind::Syn {
                        client: c,
                        sport: 30000 + u16::from(n) * 7,
                        svc,
                        opts: 0x0f,
                        isn: 1000 * u32::from(n),
                        tsval: 77 * u32::from(n),
                    })
                    .worker(n)
                    .after(1),
                );
                // Proxied services: the client's ACK to the cookie, then the
                // real's SYN-ACK; others: the real's SYN-ACK, the client's ACK.
                let proxied = svc == 2 || svc == 3;
                let (first, second) = if proxied {
                    (
                        Kind::Client {
                            idx: 0,
                            flags: 0x10,
                            len: 0,
                            opts: 1,
                        },
                        Kind::Real {
                            idx: 0,
                            flags: 0x12,
                            len: 0,
                            opts: 0x0f,
                            isn: 5000 * u32::from(n),
                        },
                    )
                } else {
                    (
                        Kind::Real {
                            idx: 0,
                            flags: 0x12,
                            len: 0,
                            opts: 0x0f,
                            isn: 5000 * u32::from(n),
                        },
                        Kind::Client {
                            idx: 0,
                            flags: 0x10,
                            len: 0,
                            opts: 1,
                        },
                    )
                };
                ops.push(Op::new(first).worker(n + 1));
                ops.push(Op::new(second).worker(n));
                // Some data each way.
                ops.push(
                    Op::new(Kind::Client {
                        idx: 0,
                        flags: 0x18,
                        len: 40,
                        opts: 1,
                    })
                    .worker(n),
                );
                ops.push(
                    Op::new(Kind::Real {
                        idx: 0,
                        flags: 0x18,
                        len: 100,
                        opts: 1,
                        isn: 0,
                    })
                    .worker(n + 1),
                );
            }
        }
        for (svc, c) in [(0u8, 0u8), (1, 1), (0, 9), (1, 8)] {
            ops.push(Op::new(Kind::Udp {
                client: c,
                sport: 5000 + u16::from(c),
                svc,
                len: 20,
            }));
            ops.push(Op::new(Kind::Real {
                idx: 0,
                flags: 0,
                len: 20,
                opts: 0,
                isn: 0,
            }));
        }
        ops
    })
}

/// One fuzz input: a header byte (bit 0: ports with tx checksum offload;
/// bits 1-6: every Nth buffer allocation fails, 0 = none; bit 7: kernel
/// twins on both ports), then operations.
pub fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let head = r.u8();
    let offload = head & 1 != 0;
    let fail_every = u64::from((head >> 1) & 0x3f);
    let twins = head & 0x80 != 0;
    assert_eq!(live(), 0);
    let mut world = World::new(offload, twins, fail_every);
    for op in warm_up() {
        world.exec(op);
        world.check_account(|| "the warm-up".into());
    }
    let mut n = 0;
    while !r.is_empty() && n < MAX_OPS {
        let op = decode(&mut r);
        world.exec(&op);
        world.check_account(|| format!("operation {n}: {op:?}"));
        n += 1;
    }
    world.drain();
    drop(world);
    assert_eq!(live(), 0);
}

/// What the warm-up leaves: sessions per worker, learned neighbours, sent
/// frames (for the README and a sanity test).
pub fn warm_up_summary() -> String {
    let mut world = World::new(false, false, 0);
    for op in warm_up() {
        world.exec(op);
    }
    let mut out = String::new();
    for (i, (p, io)) in world.workers.iter().enumerate() {
        out += &format!(
            "worker {i}: {} sessions, {} neighbours, {} held, {} sent, laddrs {:?}\n",
            p.sessions().len(),
            p.neighbours().iter().count(),
            p.synproxy_held(),
            io.sent,
            p.laddrs_in_use().collect::<Vec<_>>()
        );
    }
    let mut sum = world.workers[0].0.counters().clone();
    sum.merge(world.workers[1].0.counters());
    for &c in Counter::ALL {
        if sum.get(c) != 0 {
            out += &format!("  {} {}\n", c.name(), sum.get(c));
        }
    }
    world.drain();
    out
}

/// The operations an input decodes to, for reading a crash.
pub fn explain(data: &[u8]) -> String {
    let mut r = Reader::new(data);
    let head = r.u8();
    let mut out = format!(
        "offload {}, allocation failing every {}, twins {}\n",
        head & 1,
        (head >> 1) & 0x3f,
        head >> 7
    );
    let mut n = 0;
    while !r.is_empty() && n < MAX_OPS {
        out += &format!("{n}: {:?}\n", decode(&mut r));
        n += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_up_opens_every_kind_of_session() {
        let s = warm_up_summary();
        eprintln!("{s}");
        assert!(s.contains("synproxy_handshakes 4"), "{s}");
        assert!(!s.contains("drop_"), "{s}");
    }

    #[test]
    fn inputs_of_every_operation_run() {
        for tag in 0..10u8 {
            for flags in [0u8, 1, 2, 0x0c, 0x10, 0x20, 0x40, 0x7f] {
                // Offload on odd tags, twins on every other pair.
                let mut data = vec![(tag & 1) | ((tag & 2) << 6)];
                for k in 0..4u8 {
                    data.extend_from_slice(&[tag, flags, k, k, 3, 200, 1, 9, 9, 9, 9, 9, 9, 9, 9]);
                }
                run(&data);
            }
        }
    }

    #[test]
    fn the_twins_get_what_is_for_the_interfaces() {
        for twins in [false, true] {
            let mut world = World::new(false, twins, 0);
            for op in warm_up() {
                world.exec(op);
            }
            let (addr, mac) = client(0);
            let l4 = net::tcp(40000, 22, 1, 0, 0x02, 64240, &[], &[]);
            let frame = net::frame(LB_WAN, mac, addr, WAN_IP, TCP, &l4);
            world.exec(&Op::new(Kind::Raw {
                port: 0,
                bytes: frame,
            }));
            let up: u64 = world.workers.iter().map(|(_, io)| io.up).sum();
            // Twins: the SYN, and the ARP replies of the warm-up.
            assert_eq!(up > 0, twins, "{up} frames up");
            world.drain();
        }
    }
}
