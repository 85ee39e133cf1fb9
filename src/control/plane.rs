//! The control plane on the main lcore: it owns the desired state, turns
//! every accepted change into a new snapshot for the workers, answers the
//! control socket's requests, and keeps the figures operators read (totals,
//! rates, zeroed baselines) from what the workers publish.
//!
//! A change travels one way: request -> `State::apply` -> real server slots
//! -> `Snapshot` -> `SnapshotPublisher` -> workers, then the configured
//! routes into the kernel (when the ports have twins) and the health checks'
//! targets, in that order: a check must not run before the kernel has the
//! route to its real. A reload and the health checks' verdicts
//! (`Change::SetHealth`) enter at `apply` too.

use super::api::{
    Answer, ConnectionView, LaddrView, NeighbourView, RateView, RealView, Request, Response,
    RouteView, ServiceView, ServicesView, StatsView, TimeoutsView,
};
use super::config::Config;
use super::health::HealthMonitor;
use super::slots::{RealSlots, SlotUse};
use super::state::{Change, ServiceKey, State};
use crate::dataplane::counters::{Counter, Counters};
use crate::dataplane::publish::SnapshotPublisher;
use crate::dataplane::query::{Query, Reply, SESSION_SCAN};
use crate::dataplane::runtime::{Handles, WorkerLink};
use crate::dataplane::snapshot::{Destination, Inputs, PortFacts, Snapshot};
use crate::dataplane::stats::ConflictLog;
use crate::kernel::twin::KernelRoutes;
use crate::lb::stats::RealCounters;
use crate::wire::EthernetAddress;
use hashbrown::{HashMap, HashSet};
use log::{info, warn};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a worker may take to answer a query before the request fails.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// How often rates are estimated (IPVS's estimator ticks every 2 s).
const RATE_INTERVAL: Duration = Duration::from_secs(2);

/// An address conflict (a station claiming one of our addresses) is logged
/// at most this often per address.
const ARP_CONFLICT_LOG_PERIOD: Duration = Duration::from_secs(10);

/// The addresses a service has used: its VIP and local addresses.
#[derive(Debug, Clone, Default)]
struct ServiceAddrs {
    vip: Option<Ipv4Addr>,
    laddrs: HashSet<Ipv4Addr>,
}

/// Smoothed rates of one counter set, as IPVS's estimator: every 2 s the
/// rate over the interval moves the average a quarter of the way.
#[derive(Debug, Clone, Copy, Default)]
struct Estimator {
    last: StatsView,
    rate: [f64; 5],
}

impl Estimator {
    fn sample(&mut self, now: StatsView, secs: f64) {
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let fresh = [
            d(now.conns, self.last.conns),
            d(now.in_pkts, self.last.in_pkts),
            d(now.out_pkts, self.last.out_pkts),
            d(now.in_bytes, self.last.in_bytes) * 8.0,
            d(now.out_bytes, self.last.out_bytes) * 8.0,
        ];
        for (avg, r) in self.rate.iter_mut().zip(fresh) {
            *avg += (r - *avg) / 4.0;
        }
        self.last = now;
    }

    fn view(&self) -> RateView {
        let r = |i: usize| self.rate[i].round().max(0.0) as u64;
        RateView {
            cps: r(0),
            in_pps: r(1),
            out_pps: r(2),
            in_bps: r(3),
            out_bps: r(4),
        }
    }
}

fn add(a: StatsView, b: StatsView) -> StatsView {
    StatsView {
        conns: a.conns + b.conns,
        in_pkts: a.in_pkts + b.in_pkts,
        out_pkts: a.out_pkts + b.out_pkts,
        in_bytes: a.in_bytes + b.in_bytes,
        out_bytes: a.out_bytes + b.out_bytes,
    }
}

fn sub(a: StatsView, b: StatsView) -> StatsView {
    StatsView {
        conns: a.conns.saturating_sub(b.conns),
        in_pkts: a.in_pkts.saturating_sub(b.in_pkts),
        out_pkts: a.out_pkts.saturating_sub(b.out_pkts),
        in_bytes: a.in_bytes.saturating_sub(b.in_bytes),
        out_bytes: a.out_bytes.saturating_sub(b.out_bytes),
    }
}

fn add_rate(a: RateView, b: RateView) -> RateView {
    RateView {
        cps: a.cps + b.cps,
        in_pps: a.in_pps + b.in_pps,
        out_pps: a.out_pps + b.out_pps,
        in_bps: a.in_bps + b.in_bps,
        out_bps: a.out_bps + b.out_bps,
    }
}

/// One slot's totals over the workers.
#[derive(Debug, Clone, Copy, Default)]
struct SlotTotals {
    stats: StatsView,
    active: u64,
    inactive: u64,
}

pub struct ControlPlane {
    config: Config,
    /// Where `reload` reads from; None for the embedded default.
    path: Option<PathBuf>,
    state: State,
    slots: RealSlots,
    expire_nodest_conn: bool,
    publisher: SnapshotPublisher,
    workers: Vec<WorkerLink>,
    facts: Vec<PortFacts>,
    /// Frames lost between the workers and the kernel twins on the pump's
    /// side (added to `drop_kernel_queue_full`).
    kernel_dropped: Arc<std::sync::atomic::AtomicU64>,
    epoch: u64,
    history: HashMap<ServiceKey, ServiceAddrs>,
    /// Per slot: what `-Z` subtracts.
    zero: Vec<StatsView>,
    /// Per service: totals of slots that were freed (their sessions gone),
    /// net of their zero baseline.
    folded: HashMap<ServiceKey, StatsView>,
    estimators: Vec<Estimator>,
    last_rates: Instant,
    /// The retired addresses of the last snapshot published.
    published_retired: Vec<(Ipv4Addr, Destination)>,
    /// Claims on our addresses the workers reported, to log.
    conflicts: ConflictLog,
    /// The configured routes in the host kernel, for the twins (None: no
    /// port has one).
    kernel_routes: Option<KernelRoutes>,
    /// The health checks and each checked real's state.
    health: HealthMonitor,
}

impl ControlPlane {
    /// The first snapshot, built before the workers start.
    pub fn first_snapshot(
        config: &Config,
        facts: &[PortFacts],
        workers: u16,
    ) -> Result<Snapshot, String> {
        Snapshot::build(config, facts, workers)
    }

    pub fn new(config: Config, path: Option<PathBuf>, handles: Handles) -> ControlPlane {
        let handles_workers = handles.workers.len();
        let state = config.state.clone();
        let mut slots = RealSlots::new(config.dataplane.max_reals);
        // The same assignment the first snapshot made (fresh slots, in order).
        if let Err(e) = slots.assign(&state, 0) {
            warn!("real server slots: {e}");
        }
        let capacity = slots.capacity();
        let kernel_routes = handles
            .facts
            .iter()
            .any(|f| f.kernel_twin)
            .then(|| KernelRoutes::new(config.kernel.route_metric));
        let health = HealthMonitor::spawn().unwrap_or_else(|e| {
            log::error!("health checks: cannot start the checker thread ({e}): no real is checked");
            HealthMonitor::new(None)
        });
        let mut plane = ControlPlane {
            path,
            state,
            slots,
            expire_nodest_conn: false,
            publisher: handles.publisher,
            workers: handles.workers,
            facts: handles.facts,
            kernel_dropped: handles.kernel_dropped,
            epoch: 0,
            history: HashMap::new(),
            zero: vec![StatsView::default(); capacity],
            folded: HashMap::new(),
            estimators: vec![Estimator::default(); capacity],
            last_rates: Instant::now(),
            published_retired: Vec::new(),
            conflicts: ConflictLog::new(handles_workers, ARP_CONFLICT_LOG_PERIOD),
            kernel_routes,
            health,
            config,
        };
        plane.remember_addrs();
        plane.follow_state();
        plane
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Applies `changes` as one. On success the workers have a new snapshot
    /// (they pick it up within a burst); on error nothing changed.
    pub fn apply(&mut self, changes: &[Change]) -> Result<u64, String> {
        let next = self.state.apply_all(changes).map_err(|(i, e)| {
            if changes.len() > 1 {
                format!("change {} of {}: {e}", i + 1, changes.len())
            } else {
                e.to_string()
            }
        })?;
        self.commit(next)
    }

    /// Makes `next` the state: slots, snapshot, publish.
    fn commit(&mut self, next: State) -> Result<u64, String> {
        let epoch = self.epoch + 1;
        let mut slots = self.slots.clone();
        slots.assign(&next, epoch)?;
        let retired = self.retired(&next, &slots);
        let snapshot = Snapshot::from_inputs(&Inputs {
            dataplane: &self.config.dataplane,
            synproxy: &self.config.synproxy,
            state: &next,
            slots: &slots,
            expire_nodest_conn: self.expire_nodest_conn,
            retired: &retired,
            ports: &self.facts,
            workers: self.workers.len() as u16,
            epoch,
        })?;
        self.publisher.publish(Arc::new(snapshot));
        self.published_retired = retired;
        self.epoch = epoch;
        self.state = next;
        self.slots = slots;
        self.remember_addrs();
        self.follow_state();
        Ok(epoch)
    }

    /// What follows the state outside the snapshot: the configured routes
    /// into the kernel first (they are there before sluice says "ready",
    /// and before a check of a real behind a new route starts), then the
    /// health checks' targets.
    fn follow_state(&mut self) {
        if let Some(routes) = self.kernel_routes.as_mut() {
            routes.sync(&self.state.routes);
        }
        self.health.follow(&self.state);
    }

    /// Brings the state in line with the health checks' verdicts, as one
    /// change (one snapshot however many reals changed at once).
    fn apply_health(&mut self) {
        self.health.poll();
        let changes = self.health.changes(&self.state);
        if changes.is_empty() {
            return;
        }
        if let Err(e) = self.apply(&changes) {
            warn!("health checks: cannot apply their verdicts: {e}");
        }
    }

    /// Re-publishes the current state (after a switch changed).
    fn republish(&mut self) -> Result<u64, String> {
        self.commit(self.state.clone())
    }

    fn remember_addrs(&mut self) {
        for s in &self.state.services {
            let h = self.history.entry(s.key).or_default();
            h.vip = Some(*s.key.vip.ip());
            h.laddrs.extend(s.laddrs.iter().copied());
        }
    }

    /// Addresses `next` no longer has that sessions still use: the VIP of a
    /// removed service whose reals still drain, local addresses with ports
    /// out on some worker.
    fn retired(&self, next: &State, slots: &RealSlots) -> Vec<(Ipv4Addr, Destination)> {
        let current: HashSet<Ipv4Addr> = next
            .services
            .iter()
            .flat_map(|s| std::iter::once(*s.key.vip.ip()).chain(s.laddrs.iter().copied()))
            .collect();
        let draining: HashSet<ServiceKey> = slots
            .in_use()
            .filter_map(|(_, u)| match u {
                SlotUse::Draining { service, .. } => Some(service),
                _ => None,
            })
            .collect();
        let laddrs_in_use: HashSet<Ipv4Addr> = self
            .workers
            .iter()
            .flat_map(|w| w.stats.laddrs())
            .filter(|&(_, used)| used > 0)
            .map(|(a, _)| a)
            .collect();
        let mut out = Vec::new();
        for (key, h) in &self.history {
            if let Some(vip) = h.vip {
                if !current.contains(&vip) && draining.contains(key) {
                    out.push((vip, Destination::Vip));
                }
            }
            for &l in &h.laddrs {
                if !current.contains(&l) && laddrs_in_use.contains(&l) {
                    out.push((l, Destination::Laddr));
                }
            }
        }
        out.sort_by_key(|&(a, _)| a);
        out.dedup_by_key(|&mut (a, _)| a);
        out
    }

    /// Re-reads the configuration file and applies the difference as one
    /// change. A file with an error, or one that changes what only a
    /// restart can (EAL, sizing, interfaces, control endpoints), changes
    /// nothing and says why.
    pub fn reload(&mut self) -> Result<u64, String> {
        let Some(path) = &self.path else {
            return Err(
                "sluice runs its embedded default configuration: there is no file to reload".into(),
            );
        };
        let new = Config::load(path).map_err(|e| e.to_string())?;
        if let Some(field) = self.config.restart_only_difference(&new) {
            return Err(format!(
                "{}: {field}: changed; this needs a restart (nothing was applied)",
                path.display()
            ));
        }
        let mut next = new.state.clone();
        next.keep_health(&self.state);
        let epoch = self.commit(next)?;
        self.config = new;
        info!("reloaded {} (snapshot {epoch})", self.path_text());
        Ok(epoch)
    }

    fn path_text(&self) -> String {
        self.path
            .as_ref()
            .map_or("<embedded default>".into(), |p| p.display().to_string())
    }

    /// Housekeeping, every few tens of milliseconds: frees snapshots and
    /// slots nobody uses any more, forgets addresses no session uses, moves
    /// the rate estimates on.
    pub fn tick(&mut self) {
        self.apply_health();
        self.publisher.reclaim();
        for c in self
            .conflicts
            .poll(self.workers.iter().map(|w| &*w.stats), Instant::now())
        {
            warn!(
                "ARP: {} on port {} claims {}, one of our addresses: answered with a \
                 gratuitous ARP (counted in arp_conflicts; logged at most every {} s)",
                c.mac,
                c.port,
                c.addr,
                ARP_CONFLICT_LOG_PERIOD.as_secs()
            );
        }
        let settled = self
            .workers
            .iter()
            .map(|w| w.stats.epoch())
            .min()
            .unwrap_or(self.epoch);
        let totals = self.slot_totals();
        let freed = self.slots.reclaim(settled, |slot| {
            totals
                .get(slot as usize)
                .map_or(0, |t| t.active + t.inactive)
        });
        let mut changed = false;
        for (slot, key) in freed {
            // Its figures stay in its service's totals.
            let net = sub(totals[slot as usize].stats, self.zero[slot as usize]);
            let f = self.folded.entry(key).or_default();
            *f = add(*f, net);
            self.zero[slot as usize] = StatsView::default();
            self.estimators[slot as usize] = Estimator::default();
            changed = true;
        }
        // Services and addresses nobody uses any more.
        let live: HashSet<ServiceKey> = self
            .slots
            .in_use()
            .filter_map(|(_, u)| match u {
                SlotUse::Live { service, .. } | SlotUse::Draining { service, .. } => Some(service),
                SlotUse::Free => None,
            })
            .chain(self.state.services.iter().map(|s| s.key))
            .collect();
        self.history.retain(|k, _| live.contains(k));
        if changed || self.retired(&self.state, &self.slots) != self.published_retired {
            if let Err(e) = self.republish() {
                warn!("cannot publish the configuration: {e}");
            }
        }
        if self.last_rates.elapsed() >= RATE_INTERVAL {
            let secs = self.last_rates.elapsed().as_secs_f64();
            self.last_rates = Instant::now();
            for (e, t) in self.estimators.iter_mut().zip(&totals) {
                e.sample(t.stats, secs);
            }
        }
    }

    /// Per slot, summed over workers, from what they published.
    fn slot_totals(&self) -> Vec<SlotTotals> {
        let mut out = vec![SlotTotals::default(); self.slots.capacity()];
        for (slot, u) in self.slots.in_use() {
            let _ = u;
            let generation = self.slots.generation(slot);
            let t = &mut out[slot as usize];
            for w in &self.workers {
                if let Some(c) = w.stats.real(slot, generation) {
                    t.stats = add(t.stats, stats_of(&c));
                    t.active += u64::from(c.active);
                    t.inactive += u64::from(c.inactive);
                }
            }
        }
        out
    }

    /// The process-wide counters, summed over workers.
    pub fn counters(&self) -> Counters {
        let mut c = Counters::default();
        for w in &self.workers {
            c.merge(&w.stats.read());
        }
        c.add(
            Counter::DropKernelQueueFull,
            self.kernel_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        c
    }

    /// Each worker's counters (for per-worker metrics).
    pub fn worker_counters(&self) -> Vec<Counters> {
        self.workers.iter().map(|w| w.stats.read()).collect()
    }

    /// Every service (or one) with its reals, totals and rates.
    pub fn services_view(&self, only: Option<&ServiceKey>) -> Result<ServicesView, String> {
        if let Some(k) = only {
            if self.state.service(k).is_none() {
                return Err(format!("no service {k}"));
            }
        }
        let totals = self.slot_totals();
        let laddr_use: HashMap<Ipv4Addr, u64> = self
            .workers
            .iter()
            .flat_map(|w| w.stats.laddrs())
            .fold(HashMap::new(), |mut m, (a, u)| {
                *m.entry(a).or_default() += u;
                m
            });
        let mut services = Vec::new();
        for s in &self.state.services {
            if only.is_some_and(|k| *k != s.key) {
                continue;
            }
            let mut stats = self.folded.get(&s.key).copied().unwrap_or_default();
            let mut rate = RateView::default();
            let mut reals = Vec::new();
            for r in &s.reals {
                let slot = self.slots.slot(&s.key, r.addr);
                let (t, z, e) = match slot {
                    Some(slot) => (
                        totals[slot as usize],
                        self.zero[slot as usize],
                        self.estimators[slot as usize],
                    ),
                    None => Default::default(),
                };
                let net = sub(t.stats, z);
                reals.push(RealView {
                    addr: r.addr,
                    weight: r.weight,
                    mode: r.mode,
                    active: t.active,
                    inactive: t.inactive,
                    stats: net,
                    rate: e.view(),
                    check_port: r.check_port,
                    health: self.health.view(&s.key, r.addr),
                });
            }
            // Totals over every slot of the service, removed reals' too.
            for (slot, u) in self.slots.in_use() {
                let service = match u {
                    SlotUse::Live { service, .. } | SlotUse::Draining { service, .. } => service,
                    SlotUse::Free => continue,
                };
                if service == s.key {
                    stats = add(
                        stats,
                        sub(totals[slot as usize].stats, self.zero[slot as usize]),
                    );
                    rate = add_rate(rate, self.estimators[slot as usize].view());
                }
            }
            services.push(ServiceView {
                proto: s.key.proto,
                vip: s.key.vip,
                scheduler: s.options.scheduler,
                flags: s.options.flags,
                persistence: s.options.persistence,
                synproxy: s.options.synproxy,
                check: s.options.check.clone(),
                client_address: s.options.client_address,
                mode: s.mode(),
                laddrs: s
                    .laddrs
                    .iter()
                    .map(|a| LaddrView {
                        addr: *a,
                        conns: laddr_use.get(a).copied().unwrap_or(0),
                    })
                    .collect(),
                stats,
                rate,
                reals,
            });
        }
        Ok(ServicesView {
            max_sessions: self.config.dataplane.max_sessions,
            workers: self.workers.len() as u16,
            services,
        })
    }

    /// `-Z`: the figures of one service (or all) start again from zero.
    fn zero(&mut self, only: Option<&ServiceKey>) -> Result<(), String> {
        if let Some(k) = only {
            if self.state.service(k).is_none() {
                return Err(format!("no service {k}"));
            }
        }
        let totals = self.slot_totals();
        for (slot, u) in self.slots.in_use() {
            let service = match u {
                SlotUse::Live { service, .. } | SlotUse::Draining { service, .. } => service,
                SlotUse::Free => continue,
            };
            if only.is_none_or(|k| *k == service) {
                self.zero[slot as usize] = totals[slot as usize].stats;
            }
        }
        match only {
            Some(k) => {
                self.folded.remove(k);
            }
            None => self.folded.clear(),
        }
        Ok(())
    }

    /// Asks every worker `make()` and collects the answers, in worker order.
    fn ask(&self, make: impl Fn() -> Query) -> Result<Vec<Reply>, String> {
        let mut out = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            // A reply to an earlier, timed-out question may still be there.
            while w.replies.try_recv().is_ok() {}
            w.queries
                .send_timeout(make(), QUERY_TIMEOUT)
                .map_err(|_| format!("worker {i} does not answer"))?;
            out.push(
                w.replies
                    .recv_timeout(QUERY_TIMEOUT)
                    .map_err(|_| format!("worker {i} does not answer"))?,
            );
        }
        Ok(out)
    }

    fn connections(&self, only: Option<&ServiceKey>) -> Result<Vec<ConnectionView>, String> {
        if let Some(k) = only {
            if self.state.service(k).is_none() {
                return Err(format!("no service {k}"));
            }
        }
        let mut out = Vec::new();
        for (i, w) in self.workers.iter().enumerate() {
            let mut from = Some(0);
            while let Some(start) = from {
                while w.replies.try_recv().is_ok() {}
                w.queries
                    .send_timeout(
                        Query::Sessions {
                            from: start,
                            buf: Vec::with_capacity(SESSION_SCAN),
                        },
                        QUERY_TIMEOUT,
                    )
                    .map_err(|_| format!("worker {i} does not answer"))?;
                match w.replies.recv_timeout(QUERY_TIMEOUT) {
                    Ok(Reply::Sessions { next, buf }) => {
                        for s in buf {
                            if only.is_some_and(|k| k.vip != s.vip || k.proto != s.proto) {
                                continue;
                            }
                            out.push(ConnectionView {
                                proto: s.proto,
                                client: s.client,
                                vip: s.vip,
                                local: s.local,
                                real: s.real,
                                state: s.state.as_str().to_string(),
                                expires_in_ms: s.expires_in_ms,
                                worker: s.worker,
                            });
                        }
                        from = next;
                    }
                    _ => return Err(format!("worker {i} does not answer")),
                }
            }
        }
        Ok(out)
    }

    fn neighbours(&self) -> Result<Vec<NeighbourView>, String> {
        let replies = self.ask(|| Query::Neighbours {
            buf: Vec::with_capacity(self.config.dataplane.max_neighbours),
        })?;
        let mut out: Vec<NeighbourView> = self
            .state
            .neighbours
            .iter()
            .map(|n| NeighbourView {
                addr: n.addr,
                mac: Some(n.mac),
                port: n.port,
                state: "PERMANENT".into(),
                is_static: true,
                workers: Vec::new(),
            })
            .collect();
        for reply in replies {
            let Reply::Neighbours { buf } = reply else {
                continue;
            };
            for n in buf {
                // The static entry itself (entries are per port: the
                // same address on another port is another neighbour).
                if self
                    .state
                    .neighbours
                    .iter()
                    .any(|s| s.addr == n.addr && s.port == n.port)
                {
                    continue;
                }
                let mac = n.mac;
                match out
                    .iter_mut()
                    .find(|v| v.addr == n.addr && v.mac == mac && v.port == n.port)
                {
                    Some(v) => v.workers.push(n.worker),
                    None => out.push(NeighbourView {
                        addr: n.addr,
                        mac,
                        port: n.port,
                        state: n.state.to_string(),
                        is_static: false,
                        workers: vec![n.worker],
                    }),
                }
            }
        }
        out.sort_by_key(|n| (n.addr, n.port));
        Ok(out)
    }

    fn routes(&self) -> Result<Vec<RouteView>, String> {
        let table = self.state.route_table().map_err(|e| e.reason)?;
        Ok(table
            .routes()
            .iter()
            .map(|r| RouteView {
                prefix: r.prefix,
                via: r.gateway,
                port: r.port,
                src: r.source,
                is_static: r.gateway.is_some(),
            })
            .collect())
    }

    /// Answers one request.
    pub fn handle(&mut self, request: Request) -> Response {
        let result = match request {
            Request::Apply { changes } if changes.iter().any(|c| c.is_health()) => Err(
                "set_health is the health checks' own change: a request cannot make it".to_string(),
            ),
            Request::Apply { changes } => self.apply(&changes).map(|epoch| Answer::Applied {
                applied: changes.len(),
                epoch,
            }),
            Request::Services { service } => {
                self.services_view(service.as_ref()).map(Answer::Services)
            }
            Request::Connections { service } => self
                .connections(service.as_ref())
                .map(|connections| Answer::Connections { connections }),
            Request::Timeouts => {
                let t = self.state.timeouts;
                Ok(Answer::Timeouts(TimeoutsView {
                    tcp: t.established,
                    tcp_fin: t.fin_wait,
                    udp: t.udp,
                }))
            }
            Request::Zero { service } => self
                .zero(service.as_ref())
                .map(|()| Answer::Done { done: true }),
            Request::Routes => self.routes().map(|routes| Answer::Routes { routes }),
            Request::Neighbours => self
                .neighbours()
                .map(|neighbours| Answer::Neighbours { neighbours }),
            Request::Reload => self
                .reload()
                .map(|epoch| Answer::Applied { applied: 0, epoch }),
            Request::Sysctl { name, value } => self.sysctl(&name, value),
            Request::Counters => Ok(Answer::Counters {
                counters: self
                    .counters()
                    .iter()
                    .map(|(n, v)| (n.to_string(), v))
                    .collect(),
            }),
        };
        match result {
            Ok(answer) => Response::Ok(answer),
            Err(e) => Response::error(e),
        }
    }

    fn sysctl(&mut self, name: &str, value: Option<u64>) -> Result<Answer, String> {
        match name {
            "expire_nodest_conn" => {
                if let Some(v) = value {
                    if v > 1 {
                        return Err(format!("{name}: {v} is not 0 or 1"));
                    }
                    self.expire_nodest_conn = v == 1;
                    self.republish()?;
                }
                Ok(Answer::Sysctl {
                    name: name.into(),
                    value: u64::from(self.expire_nodest_conn),
                })
            }
            _ => Err(format!(
                "unknown setting {name:?} (known: expire_nodest_conn)"
            )),
        }
    }

    /// Health checks done and failed since sluice started.
    pub fn health_checks(&self) -> (u64, u64) {
        self.health.totals()
    }

    /// The ports' MACs, for views that show them.
    pub fn port_macs(&self) -> Vec<EthernetAddress> {
        self.facts.iter().map(|f| f.mac).collect()
    }
}

fn stats_of(c: &RealCounters) -> StatsView {
    StatsView {
        conns: c.conns,
        in_pkts: c.in_pkts,
        out_pkts: c.out_pkts,
        in_bytes: c.in_bytes,
        out_bytes: c.out_bytes,
    }
}
