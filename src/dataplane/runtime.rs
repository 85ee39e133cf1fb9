//! Bringing the data plane up and down: EAL, the mbuf pool (planned so
//! that held packets cannot starve rx, `budget`), the ports (one rx/tx
//! queue pair per worker), their kernel twins (a net_tap port each, with
//! the port's MAC and addresses), the handoff rings between workers, the
//! first snapshot, the key of the client -> worker mapping, the worker
//! lcores.
//!
//! `Dataplane` owns all of it, and its fields are declared in the order they
//! must go: the workers are stopped and joined first (in `stop` or `drop`),
//! then the twins, the kernel-side preparations of the ports (which give the
//! interfaces their addresses back once the twins are gone), the ports
//! (which return their mbufs to the pool), the pool, and EAL last.

use super::budget::{self, PoolDemand, TWIN_DESC};
use super::counters::{Counter, Counters};
use super::pipeline::KernelBudget;
use super::pipeline::Shared;
use super::publish::SnapshotPublisher;
use super::query::{Query, Reply};
use super::snapshot::{PortFacts, Snapshot};
use super::stats::SharedCounters;
use super::steering::{self, OwnerHash};
use super::twin_pump::{self, TwinPump, TwinQueues, WorkerRings};
use super::worker::{self, WorkerSetup};
use crate::control::config::{Config, InterfaceConfig};
use crate::dpdk::{
    self, worker_lcores, Eal, LcoreJoin, Mempool, Port, PortSetup, PortStats, RxQueue, TxQueue,
    Vdev,
};
use crate::kernel::twin;
use crate::kernel::vport::KernelPortGuard;
use crate::lb::persistence::Templates;
use crossbeam::channel::{self, Receiver, Sender};
use log::{info, warn};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Per-lcore cache of the mbuf pool.
const MEMPOOL_CACHE: u32 = 256;

/// The control side's line to one worker.
pub struct WorkerLink {
    /// What the worker publishes every `PUBLISH_MS`.
    pub stats: Arc<SharedCounters>,
    pub queries: Sender<Query>,
    pub replies: Receiver<Reply>,
}

/// What the control side gets from a started data plane.
pub struct Handles {
    pub publisher: SnapshotPublisher,
    pub workers: Vec<WorkerLink>,
    /// What each port turned out to be (MAC, offloads), by port id.
    pub facts: Vec<PortFacts>,
    /// Frames lost between the workers and the kernel twins (the kernel
    /// refused them, or worker 0's ring down was full): a part of
    /// `drop_kernel_queue_full` no worker counts.
    pub kernel_dropped: Arc<AtomicU64>,
}

/// A port's kernel twin: its tap port, closed before the device goes.
struct Twin {
    /// The data port it stands for.
    data_port: u16,
    name: String,
    port: Port,
    _vdev: Vdev,
}

/// The running data plane. See the module documentation for the order.
pub struct Dataplane {
    lcores: Vec<LcoreJoin<Counters>>,
    stop: Arc<AtomicBool>,
    /// Stopped after the workers (it holds the other ends of their rings)
    /// and before the twins' ports close.
    pump: Option<TwinPump>,
    kernel_dropped: Arc<AtomicU64>,
    twins: Vec<Twin>,
    kernel_guards: Vec<KernelPortGuard>,
    ports: Vec<Port>,
    pool: Arc<Mempool>,
    _eal: Eal,
}

impl Dataplane {
    /// Starts everything. `first` builds the first snapshot once the ports
    /// are known (`facts`, number of workers).
    pub fn start(
        config: &Config,
        first: impl FnOnce(&[PortFacts], u16) -> Result<Snapshot, String>,
    ) -> Result<(Dataplane, Handles), String> {
        let eal = Eal::init(&config.eal).map_err(|e| e.to_string())?;
        crate::dpdk::capture::serve(&eal);
        let port_count = eal.port_count();
        if port_count == 0 {
            return Err(
                "DPDK found no ports: check dpdk.eal (--vdev/-a) and the device bindings".into(),
            );
        }
        for iface in config.state.interfaces() {
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
        let twins_wanted = if config.kernel.twins {
            config.state.interfaces().len() as u16
        } else {
            0
        };
        let plan = budget::plan(&PoolDemand {
            mbufs: config.dataplane.mbufs,
            ports: port_count,
            twins: twins_wanted,
            workers,
            rx_desc: config.dataplane.rx_desc,
            tx_desc: config.dataplane.tx_desc,
            cache: MEMPOOL_CACHE,
            max_neighbours: config.dataplane.max_neighbours,
        })?;
        info!(
            "mbufs: {} in the pool, {} for descriptors, caches and bursts; at most {} held \
             ({} per worker waiting for ARP, handoff rings of {} slots)",
            config.dataplane.mbufs,
            plan.reserved,
            plan.held(workers),
            plan.pending_per_worker,
            plan.ring_size,
        );

        let pool = Arc::new(
            Mempool::new(
                "sluice_mbufs",
                config.dataplane.mbufs,
                MEMPOOL_CACHE,
                eal.socket_id(),
            )
            .map_err(|e| e.to_string())?,
        );
        let setup = PortSetup {
            rx_queues: workers,
            tx_queues: workers,
            rx_desc: config.dataplane.rx_desc,
            tx_desc: config.dataplane.tx_desc,
            tx_checksum_offload: config.dataplane.tx_checksum_offload,
        };
        let mut dataplane = Dataplane {
            lcores: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            pump: None,
            kernel_dropped: Arc::new(AtomicU64::new(0)),
            kernel_guards: Vec::new(),
            twins: Vec::new(),
            ports: Vec::new(),
            pool,
            _eal: eal,
        };
        for id in 0..port_count {
            let port = Port::start(id, setup, &dataplane.pool).map_err(|e| e.to_string())?;
            if port.info().driver == "net_af_packet" && port.info().if_index != 0 {
                dataplane
                    .kernel_guards
                    .extend(KernelPortGuard::prepare(id, port.info().if_index));
            }
            let link = port.link();
            info!(
                "port {id}: driver {}, mac {}, link {} {} Mb/s, {} queue(s){}, tx checksum offload {}, \
                 rx IPv4 checksum {}",
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
                if port.rx_ip_checksum_offload() {
                    "by the NIC"
                } else {
                    "in software"
                },
            );
            dataplane.ports.push(port);
        }
        if config.kernel.twins {
            for iface in config.state.interfaces() {
                // A kernel-fed port's own interface gives way to the twin.
                if let Some(g) = dataplane
                    .kernel_guards
                    .iter_mut()
                    .find(|g| g.port() == iface.port)
                {
                    if let Err(e) = g.hand_over_to_twin(iface.port) {
                        warn!(
                            "port {}: no kernel twin: the kernel's stack cannot be kept off {} ({e})",
                            iface.port,
                            g.ifname()
                        );
                        continue;
                    }
                }
                match dataplane.make_twin(iface) {
                    Ok(t) => {
                        info!(
                            "port {}: kernel twin {} (net_tap, mac {})",
                            iface.port,
                            t.name,
                            t.port.mac()
                        );
                        dataplane.twins.push(t);
                    }
                    Err(e) => {
                        warn!(
                            "port {}: no kernel twin ({e}); the host kernel cannot use this port",
                            iface.port
                        );
                        if let Some(g) = dataplane
                            .kernel_guards
                            .iter_mut()
                            .find(|g| g.port() == iface.port)
                        {
                            g.take_back();
                        }
                    }
                }
            }
        }
        let facts: Vec<PortFacts> = dataplane
            .ports
            .iter()
            .map(|p| PortFacts {
                mac: p.mac(),
                tx_checksum_offload: p.tx_checksum_offload(),
                rx_partial_checksums: p.info().rx_partial_checksums(),
                kernel_twin: dataplane.twins.iter().any(|t| t.data_port == p.id()),
            })
            .collect();
        let snapshot = Arc::new(first(&facts, workers)?);
        info!(
            "{} virtual service(s), {} interface(s), {workers} worker(s) on lcore(s) {lcores:?}",
            snapshot.services.len(),
            config.state.interfaces().len()
        );
        if workers > 1 {
            for port in &dataplane.ports {
                steering::install_fullnat_rules(port, &snapshot);
            }
        }
        let mut publisher = SnapshotPublisher::new(snapshot, usize::from(workers));
        // One key per process, a copy for every worker: they must agree on
        // who owns a client (docs/steering.md).
        if config.dataplane.owner_key.is_some() {
            warn!(
                "dataplane.owner_key is set: which worker owns a client is predictable \
                 to anyone who knows the key (meant for benchmarks and tests)"
            );
        }
        let shared = Shared {
            templates: Arc::new(Templates::new(config.dataplane.max_persistence_templates)),
            owner: config.dataplane.owner_key.unwrap_or_else(OwnerHash::random),
            pending_budget: plan.pending_per_worker,
            kernel_budget: KernelBudget::new(config.kernel.rate, config.kernel.burst),
        };

        // One single-producer/single-consumer ring per ordered pair of
        // workers: outboxes[from][to], inboxes[to].
        let mut outboxes: Vec<Vec<Option<dpdk::RingProducer>>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut inboxes: Vec<Vec<dpdk::RingConsumer>> = (0..workers).map(|_| Vec::new()).collect();
        for from in 0..workers {
            for to in 0..workers {
                if from == to {
                    outboxes[from as usize].push(None);
                    continue;
                }
                let (producer, consumer) = dpdk::ring(
                    &format!("handoff_{from}_{to}"),
                    plan.ring_size,
                    dataplane._eal.socket_id(),
                )
                .map_err(|e| e.to_string())?;
                outboxes[from as usize].push(Some(producer));
                inboxes[to as usize].push(consumer);
            }
        }
        let mut queues: Vec<Vec<_>> = Vec::new();
        for port in &mut dataplane.ports {
            queues.push(
                port.take_queues()
                    .ok_or_else(|| format!("port {}: queues already taken", port.id()))?,
            );
        }
        // The twins' pump and its rings: one up from every worker, one
        // down to worker 0.
        let mut kernel_ends: Vec<(Option<dpdk::RingProducer>, Option<dpdk::RingConsumer>)> =
            (0..workers).map(|_| (None, None)).collect();
        if !dataplane.twins.is_empty() {
            let mut taps = Vec::new();
            for t in &mut dataplane.twins {
                let mut q: Vec<(RxQueue, TxQueue)> = t
                    .port
                    .take_queues()
                    .ok_or_else(|| format!("kernel twin {}: queues already taken", t.name))?;
                let (rx, tx) = q.remove(0);
                taps.push(TwinQueues {
                    data_port: t.data_port,
                    rx,
                    tx,
                });
            }
            let socket = dataplane._eal.socket_id();
            let mut rings = Vec::new();
            for (w, ends) in kernel_ends.iter_mut().enumerate() {
                let (up_p, up_c) =
                    dpdk::ring(&format!("twin_up_{w}"), twin_pump::RING_SIZE, socket)
                        .map_err(|e| e.to_string())?;
                ends.0 = Some(up_p);
                let down = if w == 0 {
                    let (p, c) = dpdk::ring("twin_down_0", twin_pump::RING_SIZE, socket)
                        .map_err(|e| e.to_string())?;
                    ends.1 = Some(c);
                    Some(p)
                } else {
                    None
                };
                rings.push(WorkerRings { up: up_c, down });
            }
            dataplane.pump = Some(
                TwinPump::start(taps, rings, Arc::clone(&dataplane.kernel_dropped))
                    .map_err(|e| format!("cannot start the kernel twins' thread: {e}"))?,
            );
        }

        let start_tsc = dpdk::tsc();
        let running = Arc::new(AtomicUsize::new(0));
        let mut links = Vec::new();
        for (index, (&lcore, (outbox, inbox))) in lcores
            .iter()
            .zip(outboxes.into_iter().zip(inboxes))
            .enumerate()
        {
            let stats = Arc::new(SharedCounters::new(config.dataplane.max_reals));
            let (query_tx, query_rx) = channel::bounded(1);
            let (reply_tx, reply_rx) = channel::bounded(1);
            let reader = publisher
                .reader(index)
                .ok_or_else(|| format!("worker {index}: no snapshot reader"))?;
            let setup = WorkerSetup {
                index: index as u16,
                queues: queues.iter_mut().map(|q| q.remove(0)).collect(),
                kernel_up: kernel_ends[index].0.take(),
                kernel_down: kernel_ends[index].1.take(),
                pool: Arc::clone(&dataplane.pool),
                snapshots: reader,
                shared: shared.clone(),
                inbox,
                outbox,
                stats: Arc::clone(&stats),
                queries: query_rx,
                replies: reply_tx,
                start_tsc,
                stop: Arc::clone(&dataplane.stop),
                running: Arc::clone(&running),
            };
            // On failure, `dataplane` drops: it stops and joins the workers
            // already launched.
            let join = LcoreJoin::launch(lcore, &format!("worker {index}"), move || {
                worker::run(setup)
            })
            .map_err(|e| e.to_string())?;
            dataplane.lcores.push(join);
            links.push(WorkerLink {
                stats,
                queries: query_tx,
                replies: reply_rx,
            });
        }
        // Ready means forwarding: wait for every worker to poll its
        // queues. A worker that fails on the way aborts the process.
        let started = std::time::Instant::now();
        while running.load(Ordering::Acquire) < usize::from(workers) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        info!(
            "{workers} worker(s) polling after {} ms",
            started.elapsed().as_millis()
        );
        let kernel_dropped = Arc::clone(&dataplane.kernel_dropped);
        Ok((
            dataplane,
            Handles {
                publisher,
                workers: links,
                facts,
                kernel_dropped,
            },
        ))
    }

    /// Makes the kernel twin of `iface`'s port: a tap interface with the
    /// port's MAC (net_tap, one queue pair per worker), given the port's
    /// addresses and brought up.
    fn make_twin(&self, iface: &InterfaceConfig) -> Result<Twin, String> {
        let data = self
            .ports
            .get(iface.port as usize)
            .ok_or_else(|| format!("port {} does not exist", iface.port))?;
        let name = iface.kernel_name();
        let vdev = Vdev::create(
            &self._eal,
            &format!("net_tap{}", iface.port),
            &format!("iface={name},mac={}", data.mac()),
        )
        .map_err(|e| format!("{e}; is /dev/net/tun there, CAP_NET_ADMIN given, the net_tap driver installed (librte-net-tap23)?"))?;
        // One queue pair, the pump's.
        let setup = PortSetup {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: TWIN_DESC,
            tx_desc: TWIN_DESC,
            tx_checksum_offload: false,
        };
        let port = Port::start(vdev.port(), setup, &self.pool).map_err(|e| e.to_string())?;
        let ifindex = match port.info().if_index {
            0 => {
                let c = std::ffi::CString::new(name.as_str()).map_err(|e| e.to_string())?;
                // SAFETY: c is a live NUL-terminated string.
                unsafe { libc::if_nametoindex(c.as_ptr()) }
            }
            i => i,
        };
        if ifindex == 0 {
            return Err(format!("{name}: no such interface after net_tap made it"));
        }
        twin::configure(&name, ifindex, &iface.addrs)?;
        Ok(Twin {
            data_port: iface.port,
            name,
            port,
            _vdev: vdev,
        })
    }

    /// The NIC figures of every port, by port id.
    pub fn port_stats(&self) -> Vec<PortStats> {
        self.ports.iter().map(Port::stats).collect()
    }

    /// Mbufs out of the pool (in rings, queues, neighbour queues, flight).
    pub fn mbufs_in_use(&self) -> u32 {
        self.pool.in_use()
    }

    pub fn mbufs(&self) -> u32 {
        self.pool.size()
    }

    /// Stops the workers and sums their counters; then everything goes, in
    /// order.
    pub fn stop(mut self) -> Result<Counters, String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut counters = Counters::default();
        let mut lost = false;
        for j in self.lcores.drain(..) {
            // A worker that panicked aborted the process (`run_or_abort`):
            // only a lost result can be missing here.
            match j.join() {
                Some(c) => counters.merge(&c),
                None => lost = true,
            }
        }
        if lost {
            return Err("a worker lcore returned no counters".into());
        }
        // The pump's losses, once it has stopped.
        drop(self.pump.take());
        counters.add(
            Counter::DropKernelQueueFull,
            self.kernel_dropped.load(Ordering::Relaxed),
        );
        Ok(counters)
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        // Workers first: they own the queues, rings and mbufs of the ports
        // and pool dropped after this.
        self.stop.store(true, Ordering::Relaxed);
        for j in self.lcores.drain(..) {
            j.join();
        }
    }
}
