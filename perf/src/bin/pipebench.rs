//! The packet core alone, without DPDK: how many cycles the pipeline spends
//! per packet of an established flow, at 1K, 64K and 1M live sessions, in
//! NAT, FULLNAT and FULLNAT with `client_address = "proxy-v2"`
//! (`fullnat-proxy`: the real has acknowledged the PROXY header, so every
//! packet pays the sequence offsets only). Runs anywhere (no NIC, no hugepages), so it is also the
//! target to profile: `valgrind --tool=callgrind pipebench --packets 200000`
//! counts instructions steadily on a noisy machine.
//!
//! Each flow sends a SYN (creating its session) and then data packets; the
//! measured pass sends one data packet per flow in a shuffled order, so
//! consecutive packets hit different sessions as real traffic does.

use clap::Parser;
use sluice::control::config::Config;
use sluice::dataplane::snapshot::PortFacts;
use sluice::dataplane::{Counter, Io, PacketBuf, Pipeline, Snapshot};
use sluice::lb::session::flags as session_flags;
use sluice::lb::Proto;
use sluice::wire::tcp::flags;
use sluice::wire::{
    ethernet::ethertype, EthernetAddress, EthernetFrame, Ipv4Packet, Ipv4Repr, TcpPacket,
};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Cycles per packet of sluice's pipeline, without DPDK")]
struct Args {
    /// Live sessions (flows) per case; repeat for several cases.
    #[arg(long, default_values_t = vec![1_000usize, 65_536, 1_000_000])]
    flows: Vec<usize>,
    /// Measured packets per case (at least one per flow).
    #[arg(long, default_value_t = 4_000_000)]
    packets: usize,
    /// Complete TCP handshakes to time, plain and through the SYN proxy
    /// (0: skip).
    #[arg(long, default_value_t = 200_000)]
    handshakes: usize,
    /// Treat the port as a virtual one whose frames may come from the local
    /// kernel with partial checksums (net_af_packet, net_af_xdp, net_tap):
    /// what the partial-checksum test costs where it runs.
    #[arg(long)]
    virtual_port: bool,
    /// Live sessions from which bursts are prefetched (default: sluice's
    /// own, `STAGE_FROM`); 0 always, to compare the two ways.
    #[arg(long)]
    stage_from: Option<usize>,
    /// Modes to run; repeat for several (one alone is what an instruction
    /// count under callgrind needs).
    #[arg(long, value_parser = ["nat", "fullnat", "fullnat-proxy"],
          default_values_t = ["nat", "fullnat", "fullnat-proxy"].map(String::from))]
    mode: Vec<String>,
}

const LB_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const GW_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xfe]);

/// A packet buffer the benchmark recycles: the pipeline hands it back
/// through `Io::send`, so nothing is allocated while measuring.
struct Buf {
    bytes: [u8; 64],
    len: usize,
}

/// Boxed, so moving a packet moves a pointer, as with an mbuf.
impl PacketBuf for Box<Buf> {
    fn data(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }
    fn set_len(&mut self, len: usize) -> bool {
        if len > self.bytes.len() {
            return false;
        }
        self.len = len;
        true
    }
    fn request_tx_checksums(&mut self, _l3_len: usize, _proto: Proto) {}
}

#[derive(Default)]
struct Sink {
    sent: usize,
    last: Option<Box<Buf>>,
    /// Buffers sent during a burst, handed back for reuse. Boxed on
    /// purpose: packets move as pointers, as mbufs do.
    #[allow(clippy::vec_box)]
    sent_bufs: Vec<Box<Buf>>,
}

impl Io<Box<Buf>> for Sink {
    fn send(&mut self, _port: u16, pkt: Box<Buf>) {
        self.sent += 1;
        if self.sent_bufs.capacity() > self.sent_bufs.len() {
            self.sent_bufs.push(pkt);
        } else {
            self.last = Some(pkt);
        }
    }
    fn alloc(&mut self) -> Option<Box<Buf>> {
        Some(Box::new(Buf {
            bytes: [0; 64],
            len: 0,
        }))
    }
    fn handoff(&mut self, _worker: u16, _in_port: u16, _pkt: Box<Buf>) {}
    fn to_kernel(&mut self, _port: u16, _pkt: Box<Buf>) {}
}

fn config(mode: &str, flows: usize) -> Config {
    config_with(mode, flows, false)
}

fn config_with(mode: &str, flows: usize, synproxy: bool) -> Config {
    let fullnat = if mode.starts_with("fullnat") {
        let laddrs: Vec<String> = (0..16).map(|i| format!("\"10.0.1.{}\"", i + 1)).collect();
        let client_address = if mode == "fullnat-proxy" {
            "proxy-v2"
        } else {
            "none"
        };
        format!(
            "mode = \"fullnat\"\nladdrs = [{}]\nclient_address = \"{client_address}\"\n",
            laddrs.join(", ")
        )
    } else {
        "mode = \"nat\"\n".into()
    };
    let reals: String = (0..8)
        .map(|i| format!("[[service.real]]\naddr = \"10.2.0.{}:8080\"\n", i + 1))
        .collect();
    let neighbours: String = (0..8)
        .map(|i| {
            format!(
                "[[neighbour]]\naddr = \"10.2.0.{}\"\nmac = \"02:00:00:00:01:{:02x}\"\n",
                i + 1,
                i + 1
            )
        })
        .collect();
    let text = format!(
        r#"
[dpdk]
eal = ["-l", "0-1"]
[dataplane]
max_sessions = {}
# Every flow's SYN comes first, a million of them at once: no SYN-flood
# defence may step in (this measures plain forwarding).
syn_recv_budget = {}
[[interface]]
port = 0
addrs = ["10.0.0.1/8"]
[[route]]
prefix = "172.16.0.0/12"
via = "10.0.0.254"
[[neighbour]]
addr = "10.0.0.254"
mac = "02:00:00:00:00:fe"
{neighbours}
[[service]]
vip = "10.0.0.100:80"
proto = "tcp"
scheduler = "rr"
synproxy = {synproxy}
{fullnat}
{reals}
"#,
        flows + flows / 4 + 16,
        flows + flows / 4 + 16
    );
    match Config::parse("pipebench", &text) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// Client `i`: an address in 172.16.0.0/12 and a port.
fn client(i: usize) -> (Ipv4Addr, u16) {
    let host = 1 + (i / 50_000) as u32;
    (
        Ipv4Addr::from(0xac10_0000 + host),
        10_000 + (i % 50_000) as u16,
    )
}

fn frame(buf: &mut Buf, i: usize, tcp_flags: u8) {
    let (src, sport) = client(i);
    let vip = Ipv4Addr::new(10, 0, 0, 100);
    buf.len = 60;
    buf.bytes.fill(0);
    let mut eth = EthernetFrame::new_unchecked(&mut buf.bytes[..60]);
    eth.set_dst_addr(LB_MAC);
    eth.set_src_addr(GW_MAC);
    eth.set_ethertype(ethertype::IPV4);
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: vip,
        protocol: 6,
        payload_len: 26,
        ttl: 64,
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf.bytes[14..60]));
    let mut tcp = TcpPacket::new_unchecked(&mut buf.bytes[34..60]);
    tcp.set_src_port(sport);
    tcp.set_dst_port(80);
    tcp.set_header_len(20);
    tcp.set_flags(tcp_flags);
    tcp.set_window_len(1024);
    tcp.fill_checksum(src, vip);
}

#[inline]
fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads the time-stamp counter; no memory is touched.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

fn run(mode: &str, flows: usize, packets: usize, virtual_port: bool, stage_from: Option<usize>) {
    let snap = Snapshot::build(
        &config(mode, flows),
        &[PortFacts {
            mac: LB_MAC,
            tx_checksum_offload: false,
            rx_partial_checksums: virtual_port,
            kernel_twin: false,
        }],
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut p: Pipeline<Box<Buf>> = Pipeline::new(Arc::new(snap), 0);
    if let Some(n) = stage_from {
        p.stage_bursts_from(n);
    }
    let mut sink = Sink::default();
    sink.sent_bufs.reserve(64);

    let mut buf = Box::new(Buf {
        bytes: [0; 64],
        len: 0,
    });
    for i in 0..flows {
        frame(&mut buf, i, flags::SYN);
        p.process(0, buf, 0, &mut sink);
        buf = sink.last.take().unwrap_or_else(|| {
            Box::new(Buf {
                bytes: [0; 64],
                len: 0,
            })
        });
        if mode == "fullnat-proxy" {
            // The real acknowledges the SYN (ISN 0) and the 28-byte header:
            // the session is past the header, as every connection is after
            // its first round trip. The SYN as it went to the real names
            // both ends.
            let mut out = sink.sent_bufs.pop().expect("the SYN went to a real");
            let (local, real, _) = sent(&out);
            segment(&mut out, real, local, flags::ACK, 0, 1 + 28);
            p.process(0, out, 0, &mut sink);
            sink.sent_bufs
                .pop()
                .expect("the real's ACK went to the client");
        }
    }
    assert_eq!(p.sessions().len(), flows, "every flow has its session");
    if mode == "fullnat-proxy" {
        assert!(
            p.sessions().iter().all(|(_, s)| s.flags
                & (session_flags::PROXY_V2 | session_flags::CLIENT_ADDRESS_PENDING)
                == session_flags::PROXY_V2),
            "every session is past its header"
        );
    }

    // A fixed shuffle of the flows (multiplicative stride, coprime to flows).
    let stride = (0..)
        .map(|k| 2_654_435_761usize + 2 * k)
        .find(|s| gcd(*s, flows) == 1)
        .unwrap_or(1);
    let rounds = packets.div_ceil(flows);
    let before = p.counters().get(Counter::InPkts);
    let wall = Instant::now();
    let t0 = rdtsc();
    let mut burst: arrayvec::ArrayVec<Box<Buf>, 32> = arrayvec::ArrayVec::new();
    #[allow(clippy::vec_box)]
    let mut spare: Vec<Box<Buf>> = (0..32)
        .map(|_| {
            Box::new(Buf {
                bytes: [0; 64],
                len: 0,
            })
        })
        .collect();
    for r in 0..rounds {
        for k in 0..flows {
            let i = (k.wrapping_mul(stride) + r) % flows;
            let mut b = spare.pop().unwrap_or_else(|| {
                Box::new(Buf {
                    bytes: [0; 64],
                    len: 0,
                })
            });
            frame(&mut b, i, flags::ACK);
            burst.push(b);
            if burst.is_full() || k + 1 == flows {
                p.process_burst(0, &mut burst, 1, &mut sink);
                spare.append(&mut sink.sent_bufs);
            }
        }
    }
    let cycles = rdtsc() - t0;
    let secs = wall.elapsed().as_secs_f64();
    let n = rounds * flows;
    let translated = p.counters().get(Counter::InPkts) - before;
    assert_eq!(
        translated as usize, n,
        "every measured packet was translated"
    );
    // Building each frame is part of the loop; measure it alone to subtract.
    let t1 = rdtsc();
    for k in 0..n {
        frame(&mut buf, k % flows, flags::ACK);
        std::hint::black_box(&buf);
    }
    let build = rdtsc() - t1;
    let per_pkt = (cycles.saturating_sub(build)) as f64 / n as f64;
    let port = if virtual_port { "-virtual" } else { "" };
    let stages = match stage_from {
        Some(n) => format!("-stages-from-{n}"),
        None => String::new(),
    };
    println!(
        "{mode:13} {flows:>8} sessions{port}{stages}: {per_pkt:7.1} cycles/packet in the pipeline ({:.2} Mpps with frame building, {} bytes/session)",
        n as f64 / secs / 1e6,
        p.sessions().memory_bytes() / p.sessions().capacity().max(1),
    );
    println!(
        "{{\"case\":\"pipeline-{mode}-{flows}{port}{stages}\",\"cycles_per_pkt\":{per_pkt:.1},\"sessions\":{flows},\"session_bytes\":{}}}",
        p.sessions().memory_bytes() / p.sessions().capacity().max(1)
    );
}

/// A TCP segment without options or payload, `src` -> `dst`.
fn segment(buf: &mut Buf, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), f: u8, seq: u32, ack: u32) {
    buf.len = 54;
    buf.bytes.fill(0);
    let mut eth = EthernetFrame::new_unchecked(&mut buf.bytes[..54]);
    eth.set_dst_addr(LB_MAC);
    eth.set_src_addr(GW_MAC);
    eth.set_ethertype(ethertype::IPV4);
    let repr = Ipv4Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        protocol: 6,
        payload_len: 20,
        ttl: 64,
    };
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf.bytes[14..54]));
    let mut tcp = TcpPacket::new_unchecked(&mut buf.bytes[34..54]);
    tcp.set_src_port(src.1);
    tcp.set_dst_port(dst.1);
    tcp.set_seq_number(seq);
    tcp.set_ack_number(ack);
    tcp.set_header_len(20);
    tcp.set_flags(f);
    tcp.set_window_len(1024);
    tcp.fill_checksum(src.0, dst.0);
}

/// (src, dst, seq) of a frame the pipeline sent.
fn sent(b: &Buf) -> ((Ipv4Addr, u16), (Ipv4Addr, u16), u32) {
    let ip = Ipv4Packet::new_unchecked(&b.bytes[14..b.len]);
    let tcp = TcpPacket::new_unchecked(&b.bytes[34..b.len]);
    (
        (ip.src_addr(), tcp.src_port()),
        (ip.dst_addr(), tcp.dst_port()),
        tcp.seq_number(),
    )
}

/// Cycles per complete TCP handshake through the pipeline (client SYN, the
/// real's SYN-ACK, the client's ACK), NAT, plain or through the SYN proxy.
fn handshakes(n: usize, synproxy: bool) -> f64 {
    let snap = Snapshot::build(
        &config_with("nat", n, synproxy),
        &[PortFacts {
            mac: LB_MAC,
            tx_checksum_offload: false,
            rx_partial_checksums: false,
            kernel_twin: false,
        }],
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut p: Pipeline<Box<Buf>> = Pipeline::new(Arc::new(snap), 0);
    let mut sink = Sink::default();
    sink.sent_bufs.reserve(8);
    let vip = (Ipv4Addr::new(10, 0, 0, 100), 80);
    let fresh = || {
        Box::new(Buf {
            bytes: [0; 64],
            len: 0,
        })
    };
    let mut spare: Vec<Box<Buf>> = (0..8).map(|_| fresh()).collect();
    #[allow(clippy::vec_box)]
    fn take(sink: &mut Sink, spare: &mut Vec<Box<Buf>>) -> ((Ipv4Addr, u16), (Ipv4Addr, u16), u32) {
        let b = sink.sent_bufs.pop().expect("the pipeline sent something");
        let out = sent(&b);
        spare.push(b);
        spare.append(&mut sink.sent_bufs);
        out
    }
    let isn = 1_000_000u32;
    let t0 = rdtsc();
    for i in 0..n {
        let client = client(i);
        let mut b = spare.pop().unwrap_or_else(fresh);
        segment(&mut b, client, vip, flags::SYN, isn, 0);
        p.process(0, b, 1, &mut sink);
        let (real, cookie) = if synproxy {
            let (_, _, cookie) = take(&mut sink, &mut spare);
            let mut b = spare.pop().unwrap_or_else(fresh);
            segment(
                &mut b,
                client,
                vip,
                flags::ACK,
                isn + 1,
                cookie.wrapping_add(1),
            );
            p.process(0, b, 1, &mut sink);
            let (_, real, _) = take(&mut sink, &mut spare);
            (real, cookie)
        } else {
            let (_, real, _) = take(&mut sink, &mut spare);
            (real, 0)
        };
        let mut b = spare.pop().unwrap_or_else(fresh);
        segment(
            &mut b,
            real,
            client,
            flags::SYN | flags::ACK,
            7_000_000,
            isn + 1,
        );
        p.process(0, b, 1, &mut sink);
        take(&mut sink, &mut spare);
        if !synproxy {
            let mut b = spare.pop().unwrap_or_else(fresh);
            segment(&mut b, client, vip, flags::ACK, isn + 1, 7_000_001);
            p.process(0, b, 1, &mut sink);
            take(&mut sink, &mut spare);
        }
        std::hint::black_box(cookie);
    }
    let cycles = rdtsc() - t0;
    assert_eq!(p.sessions().len(), n, "every handshake made its session");
    let established = if synproxy {
        p.counters().get(Counter::SynproxyHandshakes)
    } else {
        p.counters().get(Counter::Conns)
    };
    assert_eq!(established as usize, n);
    cycles as f64 / n as f64
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn main() {
    let args = Args::parse();
    for mode in &args.mode {
        for &flows in &args.flows {
            run(
                mode,
                flows,
                args.packets.max(flows),
                args.virtual_port,
                args.stage_from,
            );
        }
    }
    if args.handshakes > 0 {
        let plain = handshakes(args.handshakes, false);
        let proxied = handshakes(args.handshakes, true);
        println!(
            "handshakes {:>8}: {plain:7.0} cycles plain, {proxied:7.0} through the SYN proxy (frame building included, 3 segments in each)",
            args.handshakes
        );
        println!(
            "{{\"case\":\"pipeline-handshake\",\"handshakes\":{},\"plain_cycles\":{plain:.0},\"synproxy_cycles\":{proxied:.0}}}",
            args.handshakes
        );
    }
}
