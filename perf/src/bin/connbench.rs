//! connbench: closed-loop new-connection benchmark for sluice (see
//! `perf/src/connbench/mod.rs` for what it emulates, `perf/connbench.sh`
//! for the topology it runs in).
//!
//! ```text
//! connbench [OPTIONS] -- EAL-ARGS
//! connbench --window 256 --duration 10 -- --lcores=0@0,1@0 --no-pci --no-huge -m 256 \
//!     --no-shconf --vdev=net_af_packet0,iface=gc --vdev=net_af_packet1,iface=gs
//! ```
//! Port 0 is the client side, port 1 the server side. The poll loop runs on
//! the first worker lcore; the main lcore prints a line a second, then a
//! summary line and a JSON line.

#[path = "../connbench/mod.rs"]
mod connbench;

use clap::Parser;
use connbench::client::{ClientConfig, Clients};
use connbench::engine::{self, EngineSetup, Outcome, Phase};
use connbench::server::{Server, ServerConfig};
use connbench::stats::{Counters, SharedCounters, Stat};
use sluice::dpdk::{worker_lcores, Eal, LcoreJoin, Mempool, Port, PortSetup};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REQUEST: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nok";
/// How long the ports may take to come up (a memif server waits for its client).
const LINK_WAIT: Duration = Duration::from_secs(60);

#[derive(Parser, Debug)]
#[command(
    name = "connbench",
    about = "Closed-loop TCP connection generator and responder on DPDK (port 0: clients, port 1: real servers)"
)]
struct Cli {
    /// Concurrent connections (each slot opens a new one when its last closes).
    #[arg(long, default_value_t = 256)]
    window: u32,
    /// Measured time, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Time before measuring, seconds (after the VIP's MAC is known).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Longest wait for the connections in flight after the measured time, seconds.
    #[arg(long, default_value_t = 1.0)]
    drain: f64,
    /// Retransmission timeout, milliseconds.
    #[arg(long, default_value_t = 200)]
    rto_ms: u64,
    /// Sends of one segment before a connection counts as failed.
    #[arg(long, default_value_t = 5)]
    max_tries: u8,
    /// The virtual service.
    #[arg(long, default_value = "10.10.0.100:80")]
    vip: SocketAddrV4,
    /// First emulated client address.
    #[arg(long, default_value = "10.10.0.2")]
    client: Ipv4Addr,
    /// Emulated client addresses, counted up from --client skipping the
    /// VIP and x.x.x.0 / x.x.x.255.
    #[arg(long, default_value_t = 200)]
    clients: u32,
    /// Client source ports, FIRST-LAST.
    #[arg(long, default_value = "1024-65535")]
    client_ports: String,
    /// First emulated real server address.
    #[arg(long, default_value = "192.168.10.2")]
    server: Ipv4Addr,
    #[arg(long, default_value_t = 8)]
    servers: u32,
    /// The real servers' port.
    #[arg(long, default_value_t = 8080)]
    server_port: u16,
    /// mbufs in the pool.
    #[arg(long, default_value_t = 8191)]
    mbufs: u32,
    /// EAL arguments (after `--`).
    #[arg(last = true)]
    eal: Vec<String>,
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b && a > 0).then_some((a, b))
}

/// `count` addresses from `first` up, skipping `vip` and the .0 and .255 of
/// each /24 (so that sluice never sees the VIP or a broadcast as a client).
fn client_addrs(first: Ipv4Addr, count: u32, vip: Ipv4Addr) -> Vec<Ipv4Addr> {
    let mut out = Vec::with_capacity(count as usize);
    let mut a = u32::from(first);
    while out.len() < count.max(1) as usize {
        let ip = Ipv4Addr::from(a);
        if ip != vip && !matches!(ip.octets()[3], 0 | 255) {
            out.push(ip);
        }
        a = a.wrapping_add(1);
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("connbench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let Some((first_port, last_port)) = parse_range(&cli.client_ports) else {
        return Err(format!(
            "--client-ports {:?}: expected FIRST-LAST",
            cli.client_ports
        ));
    };
    for (name, v) in [
        ("--duration", cli.duration),
        ("--warmup", cli.warmup),
        ("--drain", cli.drain),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(format!(
                "{name} {v}: must be a non-negative number of seconds"
            ));
        }
    }
    if cli.max_tries == 0 {
        return Err("--max-tries must be at least 1".into());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .map_err(|e| format!("cannot install the signal handler: {e}"))?;

    let eal = Eal::init(&cli.eal).map_err(|e| e.to_string())?;
    if eal.port_count() < 2 {
        return Err(format!(
            "need 2 ports (0: client side, 1: server side), DPDK found {}",
            eal.port_count()
        ));
    }
    let Some(&lcore) = worker_lcores().first() else {
        return Err("need a worker lcore for the poll loop (e.g. --lcores=0@0,1@0)".into());
    };
    let hz = sluice::dpdk::tsc_hz();
    let pool = Arc::new(
        Mempool::new("connbench", cli.mbufs, 256, eal.socket_id()).map_err(|e| e.to_string())?,
    );
    let setup = PortSetup {
        tx_checksum_offload: false,
        ..PortSetup::default()
    };
    let mut client_port = Port::start(0, setup, &pool).map_err(|e| e.to_string())?;
    let mut server_port = Port::start(1, setup, &pool).map_err(|e| e.to_string())?;
    let queues = |port: &mut Port| {
        port.take_queues()
            .and_then(|mut q| q.pop())
            .ok_or_else(|| format!("port {}: no queue", port.id()))
    };
    let client_queues = queues(&mut client_port)?;
    let server_queues = queues(&mut server_port)?;

    let addrs = client_addrs(cli.client, cli.clients, *cli.vip.ip());
    let (first_client, last_client) = (addrs[0], addrs[addrs.len() - 1]);
    let clients = Clients::new(ClientConfig {
        addrs,
        first_port,
        last_port,
        vip: cli.vip,
        window: cli.window,
        rto_ticks: hz * cli.rto_ms / 1000,
        max_tries: cli.max_tries,
        request: REQUEST,
    })?;
    let server = Server::new(ServerConfig {
        first_server: cli.server,
        servers: cli.servers,
        port: cli.server_port,
        response: RESPONSE,
    });
    eprintln!(
        "connbench: client port mac {}, server port mac {}, window {}, {} clients ({first_client}..={last_client} but the VIP) x ports {}-{}, {} servers, tsc {} Hz, poll loop on lcore {lcore}",
        client_port.mac(),
        server_port.mac(),
        cli.window,
        cli.clients,
        first_port,
        last_port,
        cli.servers,
        hz
    );

    // A memif server's link comes up when its client connects (sluice, as
    // the zero-copy client, may still be building its session table).
    let waiting = Instant::now();
    while !(client_port.link().up && server_port.link().up) {
        if stop.load(Ordering::Relaxed) {
            return Err("interrupted while waiting for the ports' links".into());
        }
        if waiting.elapsed() >= LINK_WAIT {
            return Err(format!(
                "the ports' links were not both up within {} s",
                LINK_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let shared = Arc::new(SharedCounters::default());
    let phase = Arc::new(AtomicU8::new(Phase::Resolving as u8));
    let setup = EngineSetup {
        client_port: client_port.id(),
        client_queues,
        server_queues,
        client_mac: client_port.mac(),
        server_mac: server_port.mac(),
        pool: Arc::clone(&pool),
        clients,
        server,
        vip: *cli.vip.ip(),
        arp_sender: first_client,
        warmup_s: cli.warmup,
        duration_s: cli.duration,
        drain_s: cli.drain,
        shared: Arc::clone(&shared),
        phase: Arc::clone(&phase),
        stop: Arc::clone(&stop),
    };
    let join = LcoreJoin::launch(lcore, "connbench engine", move || engine::run(setup))
        .map_err(|e| e.to_string())?;

    let started = Instant::now();
    let mut last = (Instant::now(), Counters::default());
    while Phase::from_u8(phase.load(Ordering::Relaxed)) != Phase::Done {
        std::thread::sleep(Duration::from_millis(20));
        if last.0.elapsed() >= Duration::from_secs(1) {
            let now = shared.read();
            let secs = last.0.elapsed().as_secs_f64();
            let d = now.since(&last.1);
            println!(
                "connbench: elapsed={:.1} conns_per_s={:.0} completed={} failed={} in_flight={} retransmits={} phase={}",
                started.elapsed().as_secs_f64(),
                d.get(Stat::Completed) as f64 / secs,
                now.get(Stat::Completed),
                now.get(Stat::Failed),
                now.get(Stat::InFlight),
                now.get(Stat::Retransmits),
                Phase::from_u8(phase.load(Ordering::Relaxed)).as_str(),
            );
            let _ = std::io::stdout().flush();
            last = (Instant::now(), now);
        }
    }
    let outcome = join
        .join()
        .ok_or_else(|| "the poll loop panicked".to_string())?;
    // Ports close (giving their mbufs back) before the pool goes.
    drop(client_port);
    drop(server_port);
    report(&cli, &outcome);
    drop(pool);
    drop(eal);
    Ok(match (&outcome.error, outcome.interrupted) {
        (Some(e), _) => {
            eprintln!("connbench: error: {e}");
            ExitCode::FAILURE
        }
        (None, true) => ExitCode::from(130),
        (None, false) => ExitCode::SUCCESS,
    })
}

fn report(cli: &Cli, o: &Outcome) {
    if let Some(mac) = o.vip_mac {
        eprintln!("connbench: VIP {} at {mac}", cli.vip.ip());
    }
    let m = &o.measured;
    let t = &o.total;
    let secs = o.measured_secs;
    let cps = if secs > 0.0 {
        m.get(Stat::Completed) as f64 / secs
    } else {
        0.0
    };
    let avg_us = if m.get(Stat::Completed) > 0 {
        m.get(Stat::LatencyTicks) as f64 / m.get(Stat::Completed) as f64 / o.tsc_hz as f64 * 1e6
    } else {
        0.0
    };
    let rx_pps = if secs > 0.0 {
        m.get(Stat::RxPackets) as f64 / secs
    } else {
        0.0
    };
    println!(
        "connbench: summary duration={secs:.2}s window={} conns_per_s={cps:.0} completed={} failed={} avg_conn_us={avg_us:.1} rx_pps={rx_pps:.0} | totals: opened={} completed={} failed={} in_flight={} retransmits={} resets={} stale={} bad_checksum={} server_bad_ack={} client_unexpected={} server_unexpected={} tx_dropped={} mbuf_exhausted={} tuple_wraps={} | tsc_hz={}{}",
        cli.window,
        m.get(Stat::Completed),
        m.get(Stat::Failed),
        t.get(Stat::Opened),
        t.get(Stat::Completed),
        t.get(Stat::Failed),
        t.get(Stat::InFlight),
        t.get(Stat::Retransmits),
        t.get(Stat::Resets),
        t.get(Stat::Stale),
        t.get(Stat::BadChecksum),
        t.get(Stat::ServerBadAck),
        t.get(Stat::ClientUnexpected),
        t.get(Stat::ServerUnexpected),
        t.get(Stat::TxDropped),
        t.get(Stat::MbufExhausted),
        t.get(Stat::TupleWraps),
        o.tsc_hz,
        if o.interrupted { " (interrupted)" } else { "" },
    );
    let mut json = format!(
        "{{\"tool\":\"connbench\",\"window\":{},\"duration_s\":{secs:.3},\"conns_per_s\":{cps:.1},\"avg_conn_us\":{avg_us:.1},\"tsc_hz\":{},\"interrupted\":{}",
        cli.window, o.tsc_hz, o.interrupted
    );
    for (name, v) in m.iter().filter(|(n, _)| *n != "in_flight") {
        json.push_str(&format!(",\"{name}\":{v}"));
    }
    json.push_str(",\"total\":{");
    let total: Vec<String> = t.iter().map(|(n, v)| format!("\"{n}\":{v}")).collect();
    json.push_str(&total.join(","));
    json.push_str("}}");
    println!("{json}");
    let _ = std::io::stdout().flush();
}
