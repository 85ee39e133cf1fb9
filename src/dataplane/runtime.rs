//! Bringing the data plane up and down: EAL, the mbuf pool, the ports (one
//! rx/tx queue pair per worker), the handoff rings between workers, the
//! snapshot, the worker lcores; then waiting for the stop signal, joining
//! the workers and summing their counters.

use super::counters::Counters;
use super::snapshot::{PortFacts, Snapshot};
use super::stats::{rate_line, SharedCounters};
use super::steering;
use super::worker::{self, WorkerSetup};
use crate::control::config::Config;
use crate::dpdk::{worker_lcores, Eal, LcoreJoin, Mempool, Port, PortSetup, Ring};
use crate::kernel::vport::KernelPortGuard;
use log::info;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Slots of each handoff ring (a power of two).
const HANDOFF_RING_SIZE: u32 = 4096;

/// Runs sluice with `config` until `stop` is set. `on_ready` is called once
/// the workers are polling; with `stats_every`, a line of rates is printed
/// on stdout at that interval. Returns the workers' counters, summed.
pub fn run(
    config: &Config,
    stop: Arc<AtomicBool>,
    stats_every: Option<Duration>,
    on_ready: impl FnOnce(),
) -> Result<Counters, String> {
    let eal = Eal::init(&config.eal).map_err(|e| e.to_string())?;
    crate::dpdk::capture::serve(&eal);
    let port_count = eal.port_count();
    if port_count == 0 {
        return Err(
            "DPDK found no ports: check dpdk.eal (--vdev/-a) and the device bindings".into(),
        );
    }
    for iface in &config.interfaces {
        if iface.port >= port_count {
            return Err(format!(
                "interface port {} does not exist: DPDK found {port_count} port(s)",
                iface.port
            ));
        }
    }
    let lcores = worker_lcores();
    if lcores.is_empty() {
        return Err("no worker lcore: give EAL at least two lcores (e.g. -l 0-1)".into());
    }
    let workers = lcores.len() as u16;

    let pool = Arc::new(
        Mempool::new("sluice_mbufs", config.dataplane.mbufs, 256, eal.socket_id())
            .map_err(|e| e.to_string())?,
    );
    let setup = PortSetup {
        rx_queues: workers,
        tx_queues: workers,
        rx_desc: config.dataplane.rx_desc,
        tx_desc: config.dataplane.tx_desc,
        tx_checksum_offload: config.dataplane.tx_checksum_offload,
    };
    let mut ports = Vec::new();
    let mut kernel_guards = Vec::new();
    for id in 0..port_count {
        let port = Port::start(id, setup, &pool).map_err(|e| e.to_string())?;
        if port.info().driver == "net_af_packet" && port.info().if_index != 0 {
            kernel_guards.extend(KernelPortGuard::prepare(id, port.info().if_index));
        }
        let link = port.link();
        info!(
            "port {id}: driver {}, mac {}, link {} {} Mb/s, {} queue(s){}, tx checksum offload {}",
            port.info().driver,
            port.mac(),
            if link.up { "up" } else { "down" },
            link.speed_mbps,
            workers,
            if port.rss() { " by RSS" } else { "" },
            if port.tx_checksum_offload() {
                "on"
            } else {
                "off (software)"
            },
        );
        ports.push(port);
    }
    let facts: Vec<PortFacts> = ports
        .iter()
        .map(|p| PortFacts {
            mac: p.mac(),
            tx_checksum_offload: p.tx_checksum_offload(),
            rx_partial_checksums: p.info().rx_partial_checksums(),
        })
        .collect();
    let snapshot = Arc::new(Snapshot::build(config, &facts, workers)?);
    info!(
        "{} virtual service(s), {} interface(s), {workers} worker(s) on lcore(s) {lcores:?}",
        snapshot.services.len(),
        config.interfaces.len()
    );
    if workers > 1 {
        for port in &ports {
            steering::install_fullnat_rules(port, &snapshot);
        }
    }

    // rings[from][to]: one single-producer/single-consumer ring per ordered
    // pair of workers.
    let mut rings: Vec<Vec<Option<Arc<Ring>>>> = Vec::new();
    for from in 0..workers {
        let mut row = Vec::new();
        for to in 0..workers {
            row.push(if from == to {
                None
            } else {
                let ring = Ring::new(
                    &format!("handoff_{from}_{to}"),
                    HANDOFF_RING_SIZE,
                    eal.socket_id(),
                )
                .map_err(|e| e.to_string())?;
                Some(Arc::new(ring))
            });
        }
        rings.push(row);
    }

    let shared: Vec<Arc<SharedCounters>> = (0..workers).map(|_| Arc::default()).collect();
    let mut joins = Vec::new();
    for (index, &lcore) in lcores.iter().enumerate() {
        let w = index as u16;
        let setup = WorkerSetup {
            index: w,
            ports: ports.iter().map(|p| p.id()).collect(),
            pool: Arc::clone(&pool),
            snapshot: Arc::clone(&snapshot),
            inbox: (0..workers)
                .filter_map(|from| rings[from as usize][index].clone())
                .collect(),
            outbox: rings[index].clone(),
            stats: Arc::clone(&shared[index]),
            stop: Arc::clone(&stop),
        };
        let join = LcoreJoin::launch(lcore, move || worker::run(setup));
        match join {
            Ok(j) => joins.push(j),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for j in joins {
                    j.join();
                }
                return Err(e.to_string());
            }
        }
    }
    on_ready();

    let started = Instant::now();
    let mut last = (started, Counters::default());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(every) = stats_every {
            if last.0.elapsed() >= every {
                let mut now = Counters::default();
                for s in &shared {
                    now.merge(&s.read());
                }
                let secs = last.0.elapsed().as_secs_f64();
                println!(
                    "{}",
                    rate_line(&last.1, &now, secs, started.elapsed().as_secs_f64())
                );
                let _ = std::io::Write::flush(&mut std::io::stdout());
                last = (Instant::now(), now);
            }
        }
    }
    let mut counters = Counters::default();
    let mut panicked = false;
    for j in joins {
        match j.join() {
            Some(c) => counters.merge(&c),
            None => panicked = true,
        }
    }
    if panicked {
        return Err("a worker lcore panicked".into());
    }
    // Order matters: rings and ports give their mbufs back to the pool.
    drop(rings);
    drop(kernel_guards);
    drop(ports);
    drop(pool);
    drop(eal);
    Ok(counters)
}
