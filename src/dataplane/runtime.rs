//! Bringing the data plane up and down: EAL, the mbuf pool, the ports, the
//! snapshot with the ports' MACs, the worker lcores; then waiting for the
//! stop signal, joining the workers and collecting their counters.

use super::counters::Counters;
use super::snapshot::Snapshot;
use super::worker::{self, WorkerSetup};
use crate::control::config::Config;
use crate::dpdk::{worker_lcores, Eal, LcoreJoin, Mempool, Port, PortSetup};
use log::{info, warn};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs sluice with `config` until `stop` is set. `on_ready` is called once
/// the workers are polling. Returns the workers' counters, summed.
pub fn run(
    config: &Config,
    stop: Arc<AtomicBool>,
    on_ready: impl FnOnce(),
) -> Result<Counters, String> {
    let eal = Eal::init(&config.eal).map_err(|e| e.to_string())?;
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
    let Some(&lcore) = lcores.first() else {
        return Err("no worker lcore: give EAL at least two lcores (e.g. -l 0-1)".into());
    };
    if lcores.len() > 1 {
        warn!(
            "{} worker lcores given; this version runs one worker (lcore {lcore})",
            lcores.len()
        );
    }

    let pool = Arc::new(
        Mempool::new("sluice_mbufs", config.dataplane.mbufs, 256, eal.socket_id())
            .map_err(|e| e.to_string())?,
    );
    let setup = PortSetup {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: config.dataplane.rx_desc,
        tx_desc: config.dataplane.tx_desc,
    };
    let mut ports = Vec::new();
    for id in 0..port_count {
        let port = Port::start(id, setup, &pool).map_err(|e| e.to_string())?;
        let link = port.link();
        info!(
            "port {id}: driver {}, mac {}, link {} {} Mb/s, tx offloads {:#x}",
            port.info().driver,
            port.mac(),
            if link.up { "up" } else { "down" },
            link.speed_mbps,
            port.info().tx_offload_capa
        );
        ports.push(port);
    }
    let macs: Vec<_> = ports.iter().map(|p| p.mac()).collect();
    let snapshot = Arc::new(Snapshot::build(config, &macs)?);
    info!(
        "{} virtual service(s), {} interface(s), worker on lcore {lcore}",
        snapshot.services.len(),
        config.interfaces.len()
    );

    let worker_setup = WorkerSetup {
        ports: ports.iter().map(|p| p.id()).collect(),
        queue: 0,
        pool: Arc::clone(&pool),
        snapshot,
        stop: Arc::clone(&stop),
    };
    let join =
        LcoreJoin::launch(lcore, move || worker::run(worker_setup)).map_err(|e| e.to_string())?;
    on_ready();

    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let counters = join.join().ok_or("the worker lcore panicked")?;
    for p in &ports {
        p.stop();
    }
    drop(ports);
    drop(pool);
    drop(eal);
    Ok(counters)
}
