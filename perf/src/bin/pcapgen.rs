//! `pcapgen`: writes a classic libpcap file of 64-byte frames (60 bytes in
//! the file, the FCS being the NIC's) from N client (address, port) pairs to
//! one virtual service, for replay by DPDK's `net_pcap` PMD with
//! `infinite_rx=1` (see `perf/bench.sh`).
//!
//! Order of the packets, as a load balancer would see real traffic:
//! - TCP: one SYN per flow, then `K - 1` rounds of one ACK+PSH data segment
//!   per flow;
//! - UDP: `K` rounds of one datagram per flow.
//!
//! Each round visits the flows in its own deterministic shuffled order, so
//! consecutive packets belong to different sessions (what makes a 1M-session
//! table miss the cache, as it would in production). Headers are built and
//! checksummed with sluice's own `wire` module; the files are the same from
//! run to run for the same arguments.
//!
//! `--queues N` splits the flows over N files, one per `rx_pcap=` of
//! net_pcap (which makes one rx queue of each), every flow wholly in one
//! file and each file in the order above. With `--owner-key`, a flow goes
//! to the file of the worker that owns its client under that key (sluice's
//! `dataplane.owner_key`), so no packet needs a handoff; without it, flow
//! `i` goes to file `i % N`, spread as RSS would spread them, blind to
//! owners.

use clap::{Parser, ValueEnum};
use sluice::dataplane::steering::OwnerHash;
use sluice::net::cidr::Ipv4Cidr;
use sluice::wire::ethernet::ethertype;
use sluice::wire::ipv4::protocol;
use sluice::wire::tcp::flags as tcp_flags;
use sluice::wire::{EthernetAddress, EthernetFrame, Ipv4Packet, Ipv4Repr, TcpPacket, UdpPacket};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;

/// Every frame: 60 bytes, 64 on the wire with the FCS.
const FRAME_LEN: usize = 60;
const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const TCP_LEN: usize = 20;
const UDP_LEN: usize = 8;
/// Payload that fills a data segment or a datagram up to `FRAME_LEN`.
const TCP_DATA: &[u8; FRAME_LEN - ETH_LEN - IP_LEN - TCP_LEN] = b"sluice";
const UDP_DATA: &[u8; FRAME_LEN - ETH_LEN - IP_LEN - UDP_LEN] = b"sluice-perf-udp-1\n";
/// Flows per client address; their ports are spread over the ephemeral range.
const PORTS_PER_CLIENT: u32 = 64;
const EPHEMERAL_FIRST: u32 = 32768;
const EPHEMERAL_COUNT: u32 = 28232; // 32768..=60999, Linux's default range
/// Coprime with `EPHEMERAL_COUNT`: maps 0..PORTS_PER_CLIENT to distinct ports.
const PORT_STRIDE: u32 = 7919;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    Tcp,
    Udp,
}

#[derive(Parser)]
#[command(
    name = "pcapgen",
    about = "Write a pcap of 64-byte client -> VIP frames for sluice benchmarks"
)]
struct Args {
    /// The pcap file to write.
    #[arg(long)]
    out: PathBuf,
    /// Distinct client (address, port) pairs.
    #[arg(long)]
    flows: u32,
    #[arg(long, value_enum)]
    proto: Proto,
    /// The virtual service.
    #[arg(long, default_value = "10.0.0.100:80")]
    vip: SocketAddrV4,
    /// Where client addresses come from (64 flows per address). Keep it off
    /// sluice's interface subnets so one gateway neighbour covers them all.
    #[arg(long, default_value = "172.16.0.0/12")]
    client_net: Ipv4Cidr,
    /// Packets per flow: TCP = 1 SYN + K-1 data segments, UDP = K datagrams.
    #[arg(long, default_value_t = 2)]
    packets_per_flow: u32,
    /// Destination MAC: the port under test (net_pcap0's is 02:70:63:61:70:00).
    #[arg(long, default_value = "02:70:63:61:70:00")]
    dst_mac: EthernetAddress,
    /// Source MAC: the clients' gateway.
    #[arg(long, default_value = "02:00:00:00:00:fe")]
    src_mac: EthernetAddress,
    /// Seed of the flow order shuffle.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Files to split the flows over (one per rx queue); above 1, `--out`
    /// must contain `{q}`, which becomes the file's index (0..N-1).
    #[arg(long, default_value_t = 1)]
    queues: u16,
    /// With --queues: sluice's `dataplane.owner_key` (32 hex digits); each
    /// flow goes to the file of its owner among N workers.
    #[arg(long, value_parser = parse_owner_key)]
    owner_key: Option<OwnerHash>,
}

fn parse_owner_key(text: &str) -> Result<OwnerHash, String> {
    OwnerHash::from_hex(text).ok_or_else(|| "must be 32 hexadecimal digits".to_string())
}

/// Which file of `queues` flow `flow` (client `client`) goes to.
fn queue_of(flow: u32, client: SocketAddrV4, queues: u16, key: Option<&OwnerHash>) -> usize {
    match key {
        Some(k) => usize::from(k.owner(*client.ip(), client.port(), queues)),
        None => (flow % u32::from(queues.max(1))) as usize,
    }
}

/// The path of file `queue`.
fn out_path(args: &Args, queue: usize) -> PathBuf {
    let text = args.out.to_string_lossy();
    PathBuf::from(text.replace("{q}", &queue.to_string()))
}

/// What differs between the packets of a run.
struct Plan {
    proto: Proto,
    vip: SocketAddrV4,
    first_client: u32,
    dst_mac: EthernetAddress,
    src_mac: EthernetAddress,
}

impl Plan {
    /// Flow `i`'s client: address `i / 64` of the network (from .1), port
    /// `i % 64` spread over the ephemeral range.
    fn client(&self, flow: u32) -> SocketAddrV4 {
        let addr = Ipv4Addr::from(self.first_client + flow / PORTS_PER_CLIENT);
        let slot = flow % PORTS_PER_CLIENT;
        let port = EPHEMERAL_FIRST + (slot * PORT_STRIDE) % EPHEMERAL_COUNT;
        SocketAddrV4::new(addr, port as u16)
    }

    /// Packet `round` of flow `flow`, into `frame` (FRAME_LEN bytes).
    fn build(&self, flow: u32, round: u32, frame: &mut [u8; FRAME_LEN]) {
        frame.fill(0);
        let client = self.client(flow);
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.set_dst_addr(self.dst_mac);
        eth.set_src_addr(self.src_mac);
        eth.set_ethertype(ethertype::IPV4);
        let (src, dst) = (*client.ip(), *self.vip.ip());
        let ip_payload = &mut frame[ETH_LEN..];
        match self.proto {
            Proto::Tcp => {
                let syn = round == 0;
                let data_len = if syn { 0 } else { TCP_DATA.len() };
                let repr = Ipv4Repr {
                    src_addr: src,
                    dst_addr: dst,
                    protocol: protocol::TCP,
                    payload_len: TCP_LEN + data_len,
                    ttl: 64,
                };
                repr.emit(&mut Ipv4Packet::new_unchecked(&mut ip_payload[..]));
                let segment = &mut ip_payload[IP_LEN..IP_LEN + TCP_LEN + data_len];
                let mut tcp = TcpPacket::new_unchecked(segment);
                // Arbitrary but fixed initial sequence numbers per flow.
                let isn = mix(u64::from(flow) ^ 0x5eed) as u32;
                let server_isn = mix(u64::from(flow) ^ 0xacce) as u32;
                tcp.set_src_port(client.port());
                tcp.set_dst_port(self.vip.port());
                tcp.set_header_len(TCP_LEN);
                tcp.set_window_len(64240);
                if syn {
                    tcp.set_seq_number(isn);
                    tcp.set_ack_number(0);
                    tcp.set_flags(tcp_flags::SYN);
                } else {
                    let sent = (round - 1).wrapping_mul(TCP_DATA.len() as u32);
                    tcp.set_seq_number(isn.wrapping_add(1).wrapping_add(sent));
                    tcp.set_ack_number(server_isn.wrapping_add(1));
                    tcp.set_flags(tcp_flags::ACK | tcp_flags::PSH);
                    tcp.payload_mut().copy_from_slice(TCP_DATA);
                }
                tcp.fill_checksum(src, dst);
            }
            Proto::Udp => {
                let repr = Ipv4Repr {
                    src_addr: src,
                    dst_addr: dst,
                    protocol: protocol::UDP,
                    payload_len: UDP_LEN + UDP_DATA.len(),
                    ttl: 64,
                };
                repr.emit(&mut Ipv4Packet::new_unchecked(&mut ip_payload[..]));
                let mut udp = UdpPacket::new_unchecked(&mut ip_payload[IP_LEN..]);
                udp.set_src_port(client.port());
                udp.set_dst_port(self.vip.port());
                udp.set_len((UDP_LEN + UDP_DATA.len()) as u16);
                udp.payload_mut().copy_from_slice(UDP_DATA);
                udp.fill_checksum(src, dst);
            }
        }
    }
}

/// splitmix64's finaliser: a well-mixed 64-bit value from any input.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fisher-Yates over `order`, driven by splitmix64 from `seed`.
fn shuffle(order: &mut [u32], seed: u64) {
    let mut state = seed;
    for i in (1..order.len()).rev() {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let j = (mix(state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
}

/// Classic libpcap: microsecond timestamps, native byte order (the magic
/// tells readers which), link type 1 (Ethernet).
fn write_global_header(w: &mut impl Write) -> io::Result<()> {
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?; // version 2.4
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&0i32.to_le_bytes())?; // thiszone
    w.write_all(&0u32.to_le_bytes())?; // sigfigs
    w.write_all(&65535u32.to_le_bytes())?; // snaplen
    w.write_all(&1u32.to_le_bytes()) // LINKTYPE_ETHERNET
}

fn write_record(w: &mut impl Write, index: u64, frame: &[u8]) -> io::Result<()> {
    // One packet per microsecond from the epoch: replay ignores timestamps,
    // but tools reading the file see a plausible, increasing clock.
    w.write_all(&((index / 1_000_000) as u32).to_le_bytes())?;
    w.write_all(&((index % 1_000_000) as u32).to_le_bytes())?;
    w.write_all(&(frame.len() as u32).to_le_bytes())?; // captured
    w.write_all(&(frame.len() as u32).to_le_bytes())?; // on the wire, FCS excluded
    w.write_all(frame)
}

/// Writes every file (one per writer, `--queues` of them); returns the
/// number of packets in each.
fn generate<W: Write>(args: &Args, files: &mut [W]) -> io::Result<Vec<u64>> {
    let net = args.client_net.network();
    let plan = Plan {
        proto: args.proto,
        vip: args.vip,
        first_client: u32::from(net.address()) + 1,
        dst_mac: args.dst_mac,
        src_mac: args.src_mac,
    };
    let queues = files.len() as u16;
    for w in files.iter_mut() {
        write_global_header(w)?;
    }
    let file_of: Vec<u8> = if queues > 1 {
        (0..args.flows)
            .map(|f| queue_of(f, plan.client(f), queues, args.owner_key.as_ref()) as u8)
            .collect()
    } else {
        Vec::new()
    };
    let mut order: Vec<u32> = (0..args.flows).collect();
    let mut frame = [0u8; FRAME_LEN];
    let mut index = vec![0u64; files.len()];
    for round in 0..args.packets_per_flow {
        shuffle(&mut order, mix(args.seed ^ u64::from(round) << 32));
        for &flow in &order {
            let q = file_of.get(flow as usize).map_or(0, |&q| usize::from(q));
            plan.build(flow, round, &mut frame);
            write_record(&mut files[q], index[q], &frame)?;
            index[q] += 1;
        }
    }
    Ok(index)
}

/// Refuses arguments that cannot give N distinct, valid flows.
fn validate(args: &Args) -> Result<(), String> {
    if args.flows == 0 {
        return Err("--flows must be at least 1".into());
    }
    if args.packets_per_flow == 0 {
        return Err("--packets-per-flow must be at least 1".into());
    }
    if args.dst_mac.is_multicast() || args.src_mac.is_multicast() {
        return Err("--dst-mac and --src-mac must be unicast".into());
    }
    let net = args.client_net.network();
    let hosts = 1u64 << (32 - u32::from(net.prefix_len()));
    // .0 and the broadcast address are not used.
    let clients = hosts.saturating_sub(2);
    let needed = u64::from(args.flows).div_ceil(u64::from(PORTS_PER_CLIENT));
    if needed > clients {
        return Err(format!(
            "--client-net {net}: {} flows need {needed} client addresses \
             ({PORTS_PER_CLIENT} flows each), the network has {clients}",
            args.flows
        ));
    }
    if net.contains(*args.vip.ip()) {
        return Err(format!("--vip {} is inside --client-net {net}", args.vip));
    }
    if args.queues == 0 || args.queues > 128 {
        return Err("--queues must be between 1 and 128".into());
    }
    if args.queues > 1 && !args.out.to_string_lossy().contains("{q}") {
        return Err("--queues above 1 needs {q} in --out (the file's index)".into());
    }
    if args.queues == 1 && args.owner_key.is_some() {
        return Err("--owner-key only applies with --queues above 1".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = validate(&args) {
        eprintln!("pcapgen: error: {e}");
        return ExitCode::from(2);
    }
    let mut files = Vec::new();
    for q in 0..usize::from(args.queues) {
        let path = out_path(&args, q);
        match File::create(&path) {
            Ok(f) => files.push(BufWriter::with_capacity(1 << 20, f)),
            Err(e) => {
                eprintln!("pcapgen: error: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let written = generate(&args, &mut files).and_then(|counts| {
        for w in &mut files {
            w.flush()?;
        }
        Ok(counts)
    });
    match written {
        Ok(counts) => {
            let proto = match args.proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            };
            let total: u64 = counts.iter().sum();
            let bytes = |packets: u64| 24 + packets * (16 + FRAME_LEN as u64);
            print!(
                "pcapgen: {}: {} {proto} flows x {} = {total} packets",
                args.out.display(),
                args.flows,
                args.packets_per_flow,
            );
            if args.queues == 1 {
                println!(", {} bytes", bytes(total));
            } else {
                let split = if args.owner_key.is_some() {
                    "by owner"
                } else {
                    "round robin"
                };
                println!(" in {} files ({split})", args.queues);
                for (q, &packets) in counts.iter().enumerate() {
                    println!(
                        "pcapgen:   {}: {packets} packets, {} bytes",
                        out_path(&args, q).display(),
                        bytes(packets)
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pcapgen: error: {}: {e}", args.out.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn args(proto: Proto, flows: u32, k: u32) -> Args {
        Args::parse_from([
            "pcapgen",
            "--out",
            "/dev/null",
            "--flows",
            &flows.to_string(),
            "--proto",
            match proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            },
            "--packets-per-flow",
            &k.to_string(),
        ])
    }

    /// Splits a generated file into its frames, checking every header.
    fn frames(bytes: &[u8]) -> Vec<&[u8]> {
        assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(&bytes[20..24], &1u32.to_le_bytes(), "linktype");
        let mut out = Vec::new();
        let mut rest = &bytes[24..];
        while !rest.is_empty() {
            let incl = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
            let orig = u32::from_le_bytes(rest[12..16].try_into().unwrap()) as usize;
            assert_eq!((incl, orig), (FRAME_LEN, FRAME_LEN));
            out.push(&rest[16..16 + incl]);
            rest = &rest[16 + incl..];
        }
        out
    }

    #[test]
    fn tcp_syn_first_then_data_all_checksums_valid() {
        let a = args(Proto::Tcp, 1000, 3);
        let mut bufs = [Vec::new()];
        assert_eq!(generate(&a, &mut bufs).unwrap(), [3000]);
        let frames = frames(&bufs[0]);
        let mut syn_seen = HashSet::new();
        let mut consecutive_same = 0;
        let mut last = None;
        for (i, f) in frames.iter().enumerate() {
            let eth = EthernetFrame::new_checked(*f).unwrap();
            assert_eq!(eth.dst_addr(), a.dst_mac);
            assert_eq!(eth.ethertype(), ethertype::IPV4);
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.dst_addr(), *a.vip.ip());
            assert!(a.client_net.contains(ip.src_addr()));
            let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
            assert!(tcp.verify_checksum(ip.src_addr(), ip.dst_addr()));
            let client = (ip.src_addr(), tcp.src_port());
            if i < 1000 {
                assert!(tcp.syn() && !tcp.ack());
                assert!(syn_seen.insert(client), "one SYN per flow");
            } else {
                assert!(tcp.ack() && !tcp.syn());
                assert!(syn_seen.contains(&client), "data for a flow with a SYN");
                assert_eq!(tcp.payload(), TCP_DATA);
            }
            if last == Some(client) {
                consecutive_same += 1;
            }
            last = Some(client);
        }
        assert_eq!(syn_seen.len(), 1000, "distinct client pairs");
        assert!(consecutive_same < 5, "flows are interleaved");
    }

    #[test]
    fn udp_datagrams_valid_and_deterministic() {
        let a = args(Proto::Udp, 200, 2);
        let (mut one, mut two) = ([Vec::new()], [Vec::new()]);
        generate(&a, &mut one).unwrap();
        generate(&a, &mut two).unwrap();
        assert_eq!(one, two);
        let mut clients = HashSet::new();
        for f in frames(&one[0]) {
            let eth = EthernetFrame::new_checked(f).unwrap();
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum());
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert!(udp.verify_checksum(ip.src_addr(), ip.dst_addr()));
            assert_eq!(udp.dst_port(), 80);
            clients.insert((ip.src_addr(), udp.src_port()));
        }
        assert_eq!(clients.len(), 200);
    }

    #[test]
    fn million_flows_are_distinct() {
        let a = args(Proto::Tcp, 1 << 20, 1);
        let plan = Plan {
            proto: a.proto,
            vip: a.vip,
            first_client: u32::from(a.client_net.network().address()) + 1,
            dst_mac: a.dst_mac,
            src_mac: a.src_mac,
        };
        let set: HashSet<_> = (0..a.flows).map(|f| plan.client(f)).collect();
        assert_eq!(set.len(), 1 << 20);
        assert!(validate(&a).is_ok());
        // A /30 has 2 client addresses: 128 flows.
        let mut small = args(Proto::Tcp, 128, 1);
        small.client_net = "172.16.0.0/30".parse().unwrap();
        assert!(validate(&small).is_ok());
        small.flows = 129;
        assert!(validate(&small).is_err());
    }

    /// The client (address, port) of every frame of a file.
    fn clients_of(file: &[u8]) -> Vec<SocketAddrV4> {
        frames(file)
            .iter()
            .map(|f| {
                let eth = EthernetFrame::new_checked(*f).unwrap();
                let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                SocketAddrV4::new(ip.src_addr(), tcp.src_port())
            })
            .collect()
    }

    #[test]
    fn queues_split_flows_by_owner() {
        let key = "0123456789abcdef0123456789abcdef";
        let owner = OwnerHash::from_hex(key).unwrap();
        let mut a = args(Proto::Tcp, 4000, 3);
        a.out = "/tmp/x-{q}.pcap".into();
        a.queues = 3;
        a.owner_key = Some(owner);
        assert!(validate(&a).is_ok());
        let mut bufs = [Vec::new(), Vec::new(), Vec::new()];
        let counts = generate(&a, &mut bufs).unwrap();
        assert_eq!(counts.iter().sum::<u64>(), 12_000);
        let mut all: HashSet<SocketAddrV4> = HashSet::new();
        for (q, buf) in bufs.iter().enumerate() {
            let clients = clients_of(buf);
            assert_eq!(clients.len() as u64, counts[q]);
            // About a third each, every flow with its 3 packets, all owned
            // by this file's worker.
            assert!((3_400..4_600).contains(&clients.len()), "{counts:?}");
            for c in &clients {
                assert_eq!(usize::from(owner.owner(*c.ip(), c.port(), 3)), q);
            }
            let distinct: HashSet<SocketAddrV4> = clients.iter().copied().collect();
            assert_eq!(distinct.len() * 3, clients.len());
            all.extend(distinct);
        }
        assert_eq!(all.len(), 4000, "every flow in exactly one file");
        assert_eq!(out_path(&a, 2), PathBuf::from("/tmp/x-2.pcap"));
    }

    #[test]
    fn queues_without_a_key_spread_flows_evenly() {
        let mut a = args(Proto::Tcp, 1000, 2);
        a.out = "/tmp/x-{q}.pcap".into();
        a.queues = 4;
        let mut bufs = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        assert_eq!(generate(&a, &mut bufs).unwrap(), [500; 4]);
        // Each file holds the single file's frames of its flows, in order.
        let single = args(Proto::Tcp, 1000, 2);
        let mut one = [Vec::new()];
        generate(&single, &mut one).unwrap();
        let plan = Plan {
            proto: single.proto,
            vip: single.vip,
            first_client: u32::from(single.client_net.network().address()) + 1,
            dst_mac: single.dst_mac,
            src_mac: single.src_mac,
        };
        let flow_of: std::collections::HashMap<_, _> =
            (0..single.flows).map(|f| (plan.client(f), f)).collect();
        let whole = clients_of(&one[0]);
        for (q, buf) in bufs.iter().enumerate() {
            let want: Vec<_> = whole
                .iter()
                .copied()
                .filter(|c| flow_of[c] % 4 == q as u32)
                .collect();
            assert_eq!(clients_of(buf), want);
        }
    }

    #[test]
    fn queue_arguments_are_checked() {
        let mut a = args(Proto::Udp, 100, 1);
        a.queues = 2;
        assert!(validate(&a).unwrap_err().contains("{q}"));
        a.out = "/tmp/x{q}".into();
        assert!(validate(&a).is_ok());
        a.queues = 1;
        a.owner_key = OwnerHash::from_hex("0123456789abcdef0123456789abcdef");
        assert!(validate(&a).is_err());
        a.queues = 0;
        assert!(validate(&a).is_err());
    }
}
