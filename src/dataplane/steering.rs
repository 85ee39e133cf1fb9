//! How a packet reaches the worker that owns its session.
//!
//! Sessions live in per-worker tables (shared nothing). The owner of a
//! session is computable from either direction of its packets:
//! - NAT: the client's address and port, which inbound packets carry as
//!   source and replies as destination (`pipeline::client_owner`);
//! - FULLNAT: inbound as NAT; replies by their destination (local) port,
//!   since each worker only hands out local ports equal to its index modulo
//!   the number of workers (`lb::laddr::owner_of_port`).
//!
//! A NIC with rte_flow can deliver FULLNAT replies straight to the owner's
//! queue: one rule per (local address, worker) matching the destination
//! port's low bits. Whatever still lands on another worker's queue (NAT
//! replies, which RSS hashes differently, and everything on ports without
//! rte_flow such as net_af_packet) is handed to its owner through a
//! single-producer/single-consumer ring. See docs/steering.md.

use super::snapshot::Snapshot;
use crate::dpdk::{flow, Port};
use crate::lb::service::ForwardMode;
use log::info;

/// Installs the FULLNAT reply rules on `port` if it takes them. Returns how
/// many rules were installed (0 when the port has no usable rte_flow, in
/// which case the software hop does the job).
pub fn install_fullnat_rules(port: &Port, snap: &Snapshot) -> usize {
    let workers = snap.workers;
    if workers < 2 {
        return 0;
    }
    if !workers.is_power_of_two() {
        info!(
            "port {}: {workers} workers is not a power of two: FULLNAT replies reach their worker by software hop",
            port.id()
        );
        return 0;
    }
    let mask = workers - 1;
    let mut installed = 0;
    for (_, service) in snap
        .services
        .iter()
        .filter(|(_, s)| s.mode == ForwardMode::FullNat)
    {
        for &laddr in &service.laddrs {
            for worker in 0..workers {
                if let Err(e) =
                    flow::steer_by_dst_port(port.id(), laddr, service.proto(), worker, mask, worker)
                {
                    info!(
                        "port {} ({}): no rte_flow steering ({e}): FULLNAT replies reach their worker by software hop",
                        port.id(),
                        port.info().driver
                    );
                    return installed;
                }
                installed += 1;
            }
        }
    }
    if installed > 0 {
        info!(
            "port {}: {installed} rte_flow rule(s) steer FULLNAT replies to their worker's queue",
            port.id()
        );
    }
    installed
}
