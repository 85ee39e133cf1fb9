//! The desired state of the load balancer as plain data (virtual services,
//! their real servers and local addresses, static routes and neighbours,
//! timeouts), and the one way to change it: `State::apply(change)`.
//!
//! `apply` is the only place that validates a change. The TOML loader, a
//! `sluice ctl` command, a `-R` batch, a reload and the health checks all
//! go through it, so they accept and refuse exactly the same things.
//! A change never mutates: it returns a new `State`, and an error leaves
//! the old one as it was.
//!
//! The interfaces (ports and their addresses) are part of the state but no
//! change touches them: they are fixed when the ports start.

use crate::control::config::InterfaceConfig;
use crate::control::health::spec::{self as check, CheckKind, CheckSpec};
use crate::lb::laddr;
use crate::lb::scheduler::{SchedFlags, SchedulerKind};
pub use crate::lb::service::{
    ClientAddressMode, ForwardMode, Persistence, ServiceKey, SynProxyMode,
};
use crate::lb::tcp_state::Timeouts;
use crate::net::cidr::Ipv4Cidr;
use crate::net::route::RouteTable;
use crate::wire::EthernetAddress;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The largest weight ipvsadm accepts.
pub const MAX_WEIGHT: u32 = 65535;

/// ipvsadm's default persistence timeout (`-p` without a value), seconds.
pub const DEFAULT_PERSISTENCE: u32 = 300;

/// The service-wide settings `-A`/`-E` set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceOptions {
    pub scheduler: SchedulerKind,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    /// TCP only: `on`, `off`, or `auto` (the default) engaging under a SYN
    /// flood.
    #[serde(default)]
    pub synproxy: SynProxyMode,
    /// The health check of its reals (none by default).
    #[serde(default)]
    pub check: CheckSpec,
    /// FULLNAT TCP only: how the reals learn the client's address (`none`,
    /// the default; `proxy-v2`; `toa`).
    #[serde(default)]
    pub client_address: ClientAddressMode,
}

/// A real server of a service (`-a`/`-e`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealSpec {
    pub addr: SocketAddrV4,
    /// 0 quiesces: no new connections, established ones carry on.
    pub weight: u32,
    pub mode: ForwardMode,
    /// The port the health check connects to, where it is not the real's.
    #[serde(default)]
    pub check_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub key: ServiceKey,
    pub options: ServiceOptions,
    /// FULLNAT local addresses (`--add-laddr`).
    pub laddrs: Vec<Ipv4Addr>,
    pub reals: Vec<RealSpec>,
}

impl ServiceSpec {
    /// The forwarding mode its reals share; a service without reals is
    /// FULLNAT if it has local addresses, NAT otherwise.
    pub fn mode(&self) -> ForwardMode {
        match self.reals.first() {
            Some(r) => r.mode,
            None if !self.laddrs.is_empty() => ForwardMode::FullNat,
            None => ForwardMode::Nat,
        }
    }

    pub fn real(&self, addr: SocketAddrV4) -> Option<&RealSpec> {
        self.reals.iter().find(|r| r.addr == addr)
    }

    /// What the health check of real `r` connects to and asks, and from
    /// which of our interface addresses (the one on the port `routes` reach
    /// the real by); None when the service has no check.
    pub fn check_target(&self, r: &RealSpec, routes: &RouteTable) -> Option<check::Target> {
        let c = &self.options.check;
        c.is_on().then(|| check::Target {
            addr: SocketAddrV4::new(*r.addr.ip(), r.check_port.unwrap_or(r.addr.port())),
            source: routes.source_for(*r.addr.ip()),
            kind: c.kind.clone(),
            interval_ms: c.interval_ms,
            timeout_ms: c.timeout_ms,
        })
    }
}

/// A static route (`sluice ctl route add PREFIX via GATEWAY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub prefix: Ipv4Cidr,
    pub via: Ipv4Addr,
}

/// A static neighbour (`sluice ctl neigh add ADDR lladdr MAC port N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourSpec {
    pub addr: Ipv4Addr,
    pub mac: EthernetAddress,
    pub port: u16,
}

/// One change. A batch (`-R`, a reload, the TOML file) is a sequence of
/// them applied as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Change {
    AddService {
        key: ServiceKey,
        options: ServiceOptions,
    },
    /// `-E`: replaces the service-wide settings (as ipvsadm does, options
    /// not given take their defaults).
    EditService {
        key: ServiceKey,
        options: ServiceOptions,
    },
    DeleteService {
        key: ServiceKey,
    },
    /// `-C`: every service goes; routes and neighbours stay.
    Clear,
    AddReal {
        key: ServiceKey,
        real: RealSpec,
    },
    EditReal {
        key: ServiceKey,
        real: RealSpec,
    },
    DeleteReal {
        key: ServiceKey,
        addr: SocketAddrV4,
    },
    AddLaddr {
        key: ServiceKey,
        addr: Ipv4Addr,
    },
    DeleteLaddr {
        key: ServiceKey,
        addr: Ipv4Addr,
    },
    /// `--set TCP TCPFIN UDP`: seconds; 0 leaves that one unchanged.
    SetTimeouts {
        tcp: u32,
        tcp_fin: u32,
        udp: u32,
    },
    AddRoute {
        route: RouteSpec,
    },
    DeleteRoute {
        prefix: Ipv4Cidr,
    },
    /// `port` None: the port of the connected subnet holding `addr`.
    AddNeighbour {
        addr: Ipv4Addr,
        mac: EthernetAddress,
        port: Option<u16>,
    },
    DeleteNeighbour {
        addr: Ipv4Addr,
    },
    /// The health checks' verdict on a real: `up` false takes it out of
    /// scheduling (its sessions and slot stay), true brings it back with
    /// its configured weight. Only sluice's own checks make this change;
    /// it is not configuration (`-S` and a reload leave it alone).
    SetHealth {
        key: ServiceKey,
        addr: SocketAddrV4,
        up: bool,
    },
}

impl Change {
    /// Whether this is the health checks' change rather than an operator's.
    pub fn is_health(&self) -> bool {
        matches!(self, Change::SetHealth { .. })
    }
}

/// Why a change was refused. `field` names the part of the change at
/// fault (`weight`, `addr`, `laddrs`, ...) where one does, so the TOML
/// loader can point at the exact key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError {
    pub field: Option<&'static str>,
    pub reason: String,
}

impl ApplyError {
    fn new(reason: impl Into<String>) -> ApplyError {
        ApplyError {
            field: None,
            reason: reason.into(),
        }
    }

    fn at(field: &'static str, reason: impl Into<String>) -> ApplyError {
        ApplyError {
            field: Some(field),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ApplyError {}

/// The whole desired state. Cheap enough to clone per change: a load
/// balancer's configuration is thousands of entries at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    interfaces: Vec<InterfaceConfig>,
    pub services: Vec<ServiceSpec>,
    pub routes: Vec<RouteSpec>,
    pub neighbours: Vec<NeighbourSpec>,
    pub timeouts: Timeouts,
    /// Most real servers over all services (slots for per-real counters).
    max_reals: usize,
    /// Reals their service's health check took out of scheduling.
    down: BTreeSet<(ServiceKey, SocketAddrV4)>,
}

impl State {
    /// An empty state on these interfaces (validated by the loader).
    pub fn new(interfaces: Vec<InterfaceConfig>, max_reals: usize) -> State {
        State {
            interfaces,
            services: Vec::new(),
            routes: Vec::new(),
            neighbours: Vec::new(),
            timeouts: Timeouts::default(),
            max_reals,
            down: BTreeSet::new(),
        }
    }

    pub fn interfaces(&self) -> &[InterfaceConfig] {
        &self.interfaces
    }

    pub fn max_reals(&self) -> usize {
        self.max_reals
    }

    pub fn service(&self, key: &ServiceKey) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.key == *key)
    }

    fn service_mut(&mut self, key: &ServiceKey) -> Result<&mut ServiceSpec, ApplyError> {
        self.services
            .iter_mut()
            .find(|s| s.key == *key)
            .ok_or_else(|| ApplyError::new(format!("no service {key}")))
    }

    /// Whether the health check took this real out of scheduling.
    pub fn is_down(&self, key: &ServiceKey, addr: SocketAddrV4) -> bool {
        self.down.contains(&(*key, addr))
    }

    /// Takes over `from`'s health verdicts for the reals that are still
    /// here and still checked (a reload builds its state afresh from the
    /// file; the reals' health must not start again).
    pub fn keep_health(&mut self, from: &State) {
        self.down = from
            .down
            .iter()
            .filter(|(key, addr)| {
                self.service(key)
                    .is_some_and(|s| s.options.check.is_on() && s.real(*addr).is_some())
            })
            .copied()
            .collect();
    }

    /// Forgets the verdicts on reals that are gone or no longer checked.
    fn prune_health(&mut self) {
        let services = &self.services;
        self.down.retain(|(key, addr)| {
            services
                .iter()
                .find(|s| s.key == *key)
                .is_some_and(|s| s.options.check.is_on() && s.real(*addr).is_some())
        });
    }

    /// Real servers over all services.
    pub fn real_count(&self) -> usize {
        self.services.iter().map(|s| s.reals.len()).sum()
    }

    /// The routing table: connected routes of the interfaces, then the
    /// static routes. The state only holds routes this accepts.
    pub fn route_table(&self) -> Result<RouteTable, ApplyError> {
        let mut table = RouteTable::new();
        for iface in &self.interfaces {
            for a in &iface.addrs {
                // Two addresses in one subnet on one port share a route.
                if table
                    .lookup(a.address())
                    .is_some_and(|nh| nh.port == iface.port && nh.addr == a.address())
                {
                    continue;
                }
                table
                    .add_connected(*a, iface.port)
                    .map_err(|e| ApplyError::new(e.to_string()))?;
            }
        }
        for r in &self.routes {
            table
                .add_via(r.prefix, r.via)
                .map_err(|e| ApplyError::new(e.to_string()))?;
        }
        Ok(table)
    }

    fn is_interface_addr(&self, addr: Ipv4Addr) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.addrs.iter().any(|a| a.address() == addr))
    }

    fn is_vip(&self, addr: Ipv4Addr) -> bool {
        self.services.iter().any(|s| *s.key.vip.ip() == addr)
    }

    fn is_laddr(&self, addr: Ipv4Addr) -> bool {
        self.services.iter().any(|s| s.laddrs.contains(&addr))
    }

    /// Applies one change; the state is untouched on error.
    pub fn apply(&self, change: &Change) -> Result<State, ApplyError> {
        let mut next = self.clone();
        next.apply_in_place(change)?;
        Ok(next)
    }

    /// Applies a batch as one: all of it, or (on the first error, whose
    /// index is returned) none of it.
    pub fn apply_all(&self, changes: &[Change]) -> Result<State, (usize, ApplyError)> {
        let mut next = self.clone();
        for (i, c) in changes.iter().enumerate() {
            next.apply_in_place(c).map_err(|e| (i, e))?;
        }
        Ok(next)
    }

    fn apply_in_place(&mut self, change: &Change) -> Result<(), ApplyError> {
        self.apply_change(change)?;
        self.prune_health();
        Ok(())
    }

    fn apply_change(&mut self, change: &Change) -> Result<(), ApplyError> {
        match change {
            Change::AddService { key, options } => {
                if self.service(key).is_some() {
                    return Err(ApplyError::at(
                        "vip",
                        format!("service {key} already exists"),
                    ));
                }
                if key.vip.port() == 0 {
                    return Err(ApplyError::at("vip", "port 0 is not a service port"));
                }
                if self.is_laddr(*key.vip.ip()) {
                    return Err(ApplyError::at(
                        "vip",
                        format!(
                            "{} is a local address of a FULLNAT service; a VIP must be distinct",
                            key.vip.ip()
                        ),
                    ));
                }
                check_options(key, options)?;
                self.services.push(ServiceSpec {
                    key: *key,
                    options: options.clone(),
                    laddrs: Vec::new(),
                    reals: Vec::new(),
                });
            }
            Change::EditService { key, options } => {
                check_options(key, options)?;
                let service = self.service_mut(key)?;
                let mode = (!service.reals.is_empty()).then(|| service.mode());
                check_client_address(key, options.client_address, mode)?;
                service.options = options.clone();
            }
            Change::DeleteService { key } => {
                let before = self.services.len();
                self.services.retain(|s| s.key != *key);
                if self.services.len() == before {
                    return Err(ApplyError::new(format!("no service {key}")));
                }
            }
            Change::Clear => self.services.clear(),
            Change::AddReal { key, real } => {
                check_weight(real.weight)?;
                check_port(real.check_port)?;
                if real.addr.port() == 0 {
                    return Err(ApplyError::at("addr", "port 0 is not a real server port"));
                }
                if self.real_count() >= self.max_reals {
                    return Err(ApplyError::at(
                        "addr",
                        format!(
                            "too many real servers: at most {} (dataplane.max_reals)",
                            self.max_reals
                        ),
                    ));
                }
                let service = self.service_mut(key)?;
                if service.real(real.addr).is_some() {
                    return Err(ApplyError::at(
                        "addr",
                        format!("real server {} already exists in service {key}", real.addr),
                    ));
                }
                check_mode(service, real.mode, None)?;
                check_client_address(key, service.options.client_address, Some(real.mode))?;
                service.reals.push(*real);
            }
            Change::EditReal { key, real } => {
                check_weight(real.weight)?;
                check_port(real.check_port)?;
                let service = self.service_mut(key)?;
                check_mode(service, real.mode, Some(real.addr))?;
                check_client_address(key, service.options.client_address, Some(real.mode))?;
                let existing = service
                    .reals
                    .iter_mut()
                    .find(|r| r.addr == real.addr)
                    .ok_or_else(|| {
                        ApplyError::at(
                            "addr",
                            format!("no real server {} in service {key}", real.addr),
                        )
                    })?;
                *existing = *real;
            }
            Change::DeleteReal { key, addr } => {
                let service = self.service_mut(key)?;
                let before = service.reals.len();
                service.reals.retain(|r| r.addr != *addr);
                if service.reals.len() == before {
                    return Err(ApplyError::at(
                        "addr",
                        format!("no real server {addr} in service {key}"),
                    ));
                }
            }
            Change::AddLaddr { key, addr } => {
                if self.is_vip(*addr) {
                    return Err(ApplyError::at(
                        "laddrs",
                        format!("{addr} is also a VIP; local addresses must be distinct from VIPs"),
                    ));
                }
                if self.is_interface_addr(*addr) {
                    return Err(ApplyError::at(
                        "laddrs",
                        format!("{addr} is an interface address; local addresses must be distinct"),
                    ));
                }
                let service = self.service_mut(key)?;
                if service.reals.iter().any(|r| r.mode != ForwardMode::FullNat) {
                    return Err(ApplyError::at(
                        "laddrs",
                        format!(
                            "service {key} forwards in NAT mode; local addresses only apply to FULLNAT"
                        ),
                    ));
                }
                if service.laddrs.contains(addr) {
                    return Err(ApplyError::at(
                        "laddrs",
                        format!("local address {addr} is already in service {key}"),
                    ));
                }
                if service.laddrs.len() >= laddr::MAX_LADDRS {
                    return Err(ApplyError::at(
                        "laddrs",
                        format!("at most {} local addresses per service", laddr::MAX_LADDRS),
                    ));
                }
                service.laddrs.push(*addr);
            }
            Change::DeleteLaddr { key, addr } => {
                let service = self.service_mut(key)?;
                let before = service.laddrs.len();
                service.laddrs.retain(|a| a != addr);
                if service.laddrs.len() == before {
                    return Err(ApplyError::at(
                        "laddrs",
                        format!("no local address {addr} in service {key}"),
                    ));
                }
            }
            Change::SetTimeouts { tcp, tcp_fin, udp } => {
                if *tcp > 0 {
                    self.timeouts.established = *tcp;
                }
                if *tcp_fin > 0 {
                    self.timeouts.fin_wait = *tcp_fin;
                }
                if *udp > 0 {
                    self.timeouts.udp = *udp;
                }
            }
            Change::AddRoute { route } => {
                self.routes.push(*route);
                // The table itself checks host bits, duplicates and the
                // gateway, exactly as at start.
                if let Err(e) = self.route_table() {
                    self.routes.pop();
                    return Err(e);
                }
            }
            Change::DeleteRoute { prefix } => {
                let before = self.routes.len();
                self.routes.retain(|r| r.prefix != *prefix);
                if self.routes.len() == before {
                    return Err(ApplyError::at(
                        "prefix",
                        format!("no static route to {prefix}"),
                    ));
                }
            }
            Change::AddNeighbour { addr, mac, port } => {
                if !mac.is_unicast() {
                    return Err(ApplyError::at("mac", format!("{mac} is not a unicast MAC")));
                }
                if self.neighbours.iter().any(|n| n.addr == *addr) {
                    return Err(ApplyError::at(
                        "addr",
                        format!("static neighbour {addr} already exists"),
                    ));
                }
                let port = match port {
                    Some(p) => {
                        if !self.interfaces.iter().any(|i| i.port == *p) {
                            return Err(ApplyError::at(
                                "port",
                                format!("no interface on port {p}"),
                            ));
                        }
                        *p
                    }
                    None => self
                        .interfaces
                        .iter()
                        .find(|i| i.addrs.iter().any(|a| a.contains(*addr)))
                        .map(|i| i.port)
                        .ok_or_else(|| {
                            ApplyError::at(
                                "addr",
                                format!("{addr} is on no interface's subnet; give its port"),
                            )
                        })?,
                };
                self.neighbours.push(NeighbourSpec {
                    addr: *addr,
                    mac: *mac,
                    port,
                });
            }
            Change::DeleteNeighbour { addr } => {
                let before = self.neighbours.len();
                self.neighbours.retain(|n| n.addr != *addr);
                if self.neighbours.len() == before {
                    return Err(ApplyError::at(
                        "addr",
                        format!("no static neighbour {addr}"),
                    ));
                }
            }
            Change::SetHealth { key, addr, up } => {
                let service = self
                    .service(key)
                    .ok_or_else(|| ApplyError::new(format!("no service {key}")))?;
                if service.real(*addr).is_none() {
                    return Err(ApplyError::at(
                        "addr",
                        format!("no real server {addr} in service {key}"),
                    ));
                }
                if *up {
                    self.down.remove(&(*key, *addr));
                } else if !service.options.check.is_on() {
                    return Err(ApplyError::at(
                        "check",
                        format!("service {key} has no health check"),
                    ));
                } else {
                    self.down.insert((*key, *addr));
                }
            }
        }
        Ok(())
    }

    /// The changes that build this state from an empty one: what `-S`
    /// prints (services, reals, local addresses, timeouts) plus routes and
    /// neighbours. Applying them to `State::new` gives this state back.
    pub fn to_changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        for n in &self.neighbours {
            out.push(Change::AddNeighbour {
                addr: n.addr,
                mac: n.mac,
                port: Some(n.port),
            });
        }
        for r in &self.routes {
            out.push(Change::AddRoute { route: *r });
        }
        out.extend(self.service_changes());
        out
    }

    /// The ipvsadm part: services, their reals and local addresses, and
    /// the timeouts where they differ from the defaults.
    pub fn service_changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        let t = self.timeouts;
        let d = Timeouts::default();
        if (t.established, t.fin_wait, t.udp) != (d.established, d.fin_wait, d.udp) {
            out.push(Change::SetTimeouts {
                tcp: t.established,
                tcp_fin: t.fin_wait,
                udp: t.udp,
            });
        }
        for s in &self.services {
            out.push(Change::AddService {
                key: s.key,
                options: s.options.clone(),
            });
            for r in &s.reals {
                out.push(Change::AddReal {
                    key: s.key,
                    real: *r,
                });
            }
            for a in &s.laddrs {
                out.push(Change::AddLaddr {
                    key: s.key,
                    addr: *a,
                });
            }
        }
        out
    }
}

fn check_weight(weight: u32) -> Result<(), ApplyError> {
    if weight > MAX_WEIGHT {
        return Err(ApplyError::at(
            "weight",
            format!("{weight} is above {MAX_WEIGHT}"),
        ));
    }
    Ok(())
}

fn check_port(port: Option<u16>) -> Result<(), ApplyError> {
    if port == Some(0) {
        return Err(ApplyError::at("check_port", "check port 0 is not a port"));
    }
    Ok(())
}

/// A health check's settings, each against its bounds. Any service may
/// have one, UDP ones too (a DNS service checked over TCP, say, or on an
/// HTTP port of its reals with `check_port`).
fn check_health(c: &CheckSpec) -> Result<(), ApplyError> {
    if !c.is_on() {
        return Ok(());
    }
    if let CheckKind::Http { path, expect } = &c.kind {
        if let Some(problem) = check::path_problem(path) {
            return Err(ApplyError::at(
                "check.path",
                format!("check path {path:?} {problem}"),
            ));
        }
        if !(100..=599).contains(expect) {
            return Err(ApplyError::at(
                "check.expect",
                format!("check expect {expect} is not an HTTP status (100 to 599)"),
            ));
        }
    }
    let range = check::MIN_INTERVAL_MS..=check::MAX_INTERVAL_MS;
    for (field, ms) in [
        ("check.interval", c.interval_ms),
        ("check.timeout", c.timeout_ms),
    ] {
        if !range.contains(&ms) {
            return Err(ApplyError::at(
                field,
                format!(
                    "check {} {} s is out of range ({} to {} seconds)",
                    &field[6..],
                    check::Secs(ms),
                    check::Secs(*range.start()),
                    check::Secs(*range.end())
                ),
            ));
        }
    }
    for (field, n) in [("check.rise", c.rise), ("check.fall", c.fall)] {
        if !(1..=check::MAX_RISE_FALL).contains(&n) {
            return Err(ApplyError::at(
                field,
                format!(
                    "check {} {n} is out of range (1 to {})",
                    &field[6..],
                    check::MAX_RISE_FALL
                ),
            ));
        }
    }
    Ok(())
}

fn check_options(key: &ServiceKey, options: &ServiceOptions) -> Result<(), ApplyError> {
    check_health(&options.check)?;
    if key.proto == crate::lb::Proto::Udp && options.synproxy == SynProxyMode::On {
        return Err(ApplyError::at(
            "synproxy",
            format!("service {key}: the SYN proxy is for TCP services"),
        ));
    }
    if key.proto == crate::lb::Proto::Udp && options.client_address != ClientAddressMode::None {
        return Err(ApplyError::at(
            "client_address",
            format!(
                "service {key}: client_address {} is for TCP services (UDP has no stream to carry it)",
                options.client_address
            ),
        ));
    }
    if let Some(p) = options.persistence {
        if p.timeout == 0 {
            return Err(ApplyError::at(
                "persistence",
                "the persistence timeout must be at least 1 second",
            ));
        }
        let mask = u32::from(p.netmask);
        if mask.leading_ones() + mask.trailing_zeros() != 32 {
            return Err(ApplyError::at(
                "persistence_netmask",
                format!("{} is not a netmask", p.netmask),
            ));
        }
    }
    let uses_flags = matches!(options.scheduler, SchedulerKind::Sh | SchedulerKind::Mh);
    if !uses_flags && options.flags != SchedFlags::default() {
        return Err(ApplyError::at(
            "sched_flags",
            format!(
                "service {key}: scheduler {} takes no flags (sh and mh do)",
                options.scheduler
            ),
        ));
    }
    Ok(())
}

/// A service's reals share one forwarding mode, and FULLNAT's local
/// addresses only go with FULLNAT reals. `editing`: the real whose mode
/// may change (it does not count against itself).
fn check_mode(
    service: &ServiceSpec,
    mode: ForwardMode,
    editing: Option<SocketAddrV4>,
) -> Result<(), ApplyError> {
    let others = service.reals.iter().filter(|r| Some(r.addr) != editing);
    if let Some(other) = others.clone().find(|r| r.mode != mode) {
        return Err(ApplyError::at(
            "mode",
            format!(
                "service {} forwards to {} in {} mode; its reals share one mode",
                service.key,
                other.addr,
                mode_name(other.mode)
            ),
        ));
    }
    if mode == ForwardMode::Nat && !service.laddrs.is_empty() {
        return Err(ApplyError::at(
            "mode",
            format!(
                "service {} has FULLNAT local addresses; a NAT (masq) real cannot join it",
                service.key
            ),
        ));
    }
    Ok(())
}

/// Telling the reals the client's address is FULLNAT's business: in NAT
/// they see it already. `mode` is the forwarding mode the service's reals
/// have or are about to have (None: no real yet, nothing decided).
fn check_client_address(
    key: &ServiceKey,
    client_address: ClientAddressMode,
    mode: Option<ForwardMode>,
) -> Result<(), ApplyError> {
    if client_address != ClientAddressMode::None && mode == Some(ForwardMode::Nat) {
        return Err(ApplyError::at(
            "client_address",
            format!(
                "service {key}: client_address {client_address} needs FULLNAT reals (-b); \
                 in NAT (masq) the reals see the client's address already"
            ),
        ));
    }
    Ok(())
}

/// ipvsadm's name of a forwarding method, as `-L` shows it.
pub fn mode_name(mode: ForwardMode) -> &'static str {
    match mode {
        ForwardMode::Nat => "Masq",
        ForwardMode::FullNat => "FullNat",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::Proto;

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn key(vip: &str) -> ServiceKey {
        ServiceKey {
            proto: Proto::Tcp,
            vip: sa(vip),
        }
    }

    fn opts(s: SchedulerKind) -> ServiceOptions {
        ServiceOptions {
            scheduler: s,
            flags: SchedFlags::default(),
            persistence: None,
            synproxy: Default::default(),
            check: Default::default(),
            client_address: Default::default(),
        }
    }

    fn real(addr: &str, weight: u32, mode: ForwardMode) -> RealSpec {
        RealSpec {
            addr: sa(addr),
            weight,
            mode,
            check_port: None,
        }
    }

    fn empty() -> State {
        State::new(
            vec![
                InterfaceConfig {
                    port: 0,
                    addrs: vec!["10.10.0.1/24".parse().unwrap()],
                    rp_filter: Default::default(),
                    kernel: None,
                },
                InterfaceConfig {
                    port: 1,
                    addrs: vec!["192.168.10.1/24".parse().unwrap()],
                    rp_filter: Default::default(),
                    kernel: None,
                },
            ],
            8,
        )
    }

    fn with_service() -> State {
        empty()
            .apply_all(&[
                Change::AddService {
                    key: key("10.10.0.100:80"),
                    options: opts(SchedulerKind::Wrr),
                },
                Change::AddReal {
                    key: key("10.10.0.100:80"),
                    real: real("192.168.10.2:8080", 1, ForwardMode::Nat),
                },
            ])
            .unwrap()
    }

    #[test]
    fn a_refused_change_leaves_the_state_as_it_was() {
        let s = with_service();
        let before = s.clone();
        let err = s
            .apply(&Change::AddReal {
                key: key("10.10.0.100:80"),
                real: real("192.168.10.2:8080", 1, ForwardMode::Nat),
            })
            .unwrap_err();
        assert_eq!(err.field, Some("addr"));
        assert!(err.reason.contains("already exists"), "{err}");
        assert_eq!(s, before);
        // A batch is all or nothing, and says which change failed.
        let (i, err) = s
            .apply_all(&[
                Change::DeleteReal {
                    key: key("10.10.0.100:80"),
                    addr: sa("192.168.10.2:8080"),
                },
                Change::DeleteService {
                    key: key("10.10.0.100:81"),
                },
            ])
            .unwrap_err();
        assert_eq!(i, 1);
        assert!(
            err.reason.contains("no service tcp 10.10.0.100:81"),
            "{err}"
        );
        assert_eq!(s, before);
    }

    #[test]
    fn reals_share_one_mode_and_local_addresses_go_with_fullnat() {
        let s = with_service();
        let k = key("10.10.0.100:80");
        let e = s
            .apply(&Change::AddReal {
                key: k,
                real: real("192.168.10.3:8080", 1, ForwardMode::FullNat),
            })
            .unwrap_err();
        assert_eq!(e.field, Some("mode"));
        assert!(e.reason.contains("Masq"), "{e}");
        let e = s
            .apply(&Change::AddLaddr {
                key: k,
                addr: "192.168.10.100".parse().unwrap(),
            })
            .unwrap_err();
        assert!(e.reason.contains("only apply to FULLNAT"), "{e}");
        // The only real may change its mode.
        let s = s
            .apply(&Change::EditReal {
                key: k,
                real: real("192.168.10.2:8080", 3, ForwardMode::FullNat),
            })
            .unwrap();
        let s = s
            .apply(&Change::AddLaddr {
                key: k,
                addr: "192.168.10.100".parse().unwrap(),
            })
            .unwrap();
        assert_eq!(s.service(&k).unwrap().mode(), ForwardMode::FullNat);
        assert_eq!(s.service(&k).unwrap().reals[0].weight, 3);
        let e = s
            .apply(&Change::AddLaddr {
                key: k,
                addr: "10.10.0.100".parse().unwrap(),
            })
            .unwrap_err();
        assert!(e.reason.contains("also a VIP"), "{e}");
    }

    #[test]
    fn weights_timeouts_and_persistence_are_checked() {
        let s = with_service();
        let k = key("10.10.0.100:80");
        let e = s
            .apply(&Change::EditReal {
                key: k,
                real: real("192.168.10.2:8080", 70000, ForwardMode::Nat),
            })
            .unwrap_err();
        assert_eq!(e.field, Some("weight"));
        let mut o = opts(SchedulerKind::Wlc);
        o.persistence = Some(Persistence {
            timeout: 300,
            netmask: "255.255.0.255".parse().unwrap(),
        });
        let e = s
            .apply(&Change::EditService { key: k, options: o })
            .unwrap_err();
        assert_eq!(e.field, Some("persistence_netmask"));
        let mut o = opts(SchedulerKind::Wlc);
        o.flags.port = true;
        assert_eq!(
            s.apply(&Change::EditService { key: k, options: o })
                .unwrap_err()
                .field,
            Some("sched_flags")
        );
        let s = s
            .apply(&Change::SetTimeouts {
                tcp: 600,
                tcp_fin: 0,
                udp: 30,
            })
            .unwrap();
        assert_eq!(
            (s.timeouts.established, s.timeouts.fin_wait, s.timeouts.udp),
            (600, 120, 30)
        );
    }

    #[test]
    fn client_address_needs_fullnat_tcp() {
        let k = key("10.10.0.100:80");
        let proxy = ServiceOptions {
            client_address: ClientAddressMode::ProxyV2,
            ..opts(SchedulerKind::Wrr)
        };
        // A NAT service cannot take it, nor can a NAT real join a service
        // that has it.
        let e = with_service()
            .apply(&Change::EditService {
                key: k,
                options: proxy.clone(),
            })
            .unwrap_err();
        assert_eq!(e.field, Some("client_address"));
        assert!(e.reason.contains("FULLNAT"), "{e}");
        let s = empty()
            .apply(&Change::AddService {
                key: k,
                options: proxy.clone(),
            })
            .unwrap();
        let e = s
            .apply(&Change::AddReal {
                key: k,
                real: real("192.168.10.2:8080", 1, ForwardMode::Nat),
            })
            .unwrap_err();
        assert_eq!(e.field, Some("client_address"));
        let s = s
            .apply(&Change::AddReal {
                key: k,
                real: real("192.168.10.2:8080", 1, ForwardMode::FullNat),
            })
            .unwrap();
        let e = s
            .apply(&Change::EditReal {
                key: k,
                real: real("192.168.10.2:8080", 1, ForwardMode::Nat),
            })
            .unwrap_err();
        assert_eq!(e.field, Some("client_address"));
        // UDP has no stream to carry it.
        let e = empty()
            .apply(&Change::AddService {
                key: ServiceKey {
                    proto: Proto::Udp,
                    vip: sa("10.10.0.100:53"),
                },
                options: ServiceOptions {
                    client_address: ClientAddressMode::Toa,
                    ..opts(SchedulerKind::Rr)
                },
            })
            .unwrap_err();
        assert_eq!(e.field, Some("client_address"));
        assert!(e.reason.contains("TCP"), "{e}");
    }

    #[test]
    fn real_slots_are_bounded() {
        let mut s = empty()
            .apply(&Change::AddService {
                key: key("10.10.0.100:80"),
                options: opts(SchedulerKind::Rr),
            })
            .unwrap();
        for i in 0..8 {
            s = s
                .apply(&Change::AddReal {
                    key: key("10.10.0.100:80"),
                    real: real(&format!("192.168.10.{}:80", 10 + i), 1, ForwardMode::Nat),
                })
                .unwrap();
        }
        let e = s
            .apply(&Change::AddReal {
                key: key("10.10.0.100:80"),
                real: real("192.168.10.99:80", 1, ForwardMode::Nat),
            })
            .unwrap_err();
        assert!(e.reason.contains("max_reals"), "{e}");
    }

    #[test]
    fn routes_and_neighbours_are_validated_like_at_start() {
        let s = empty();
        let r = |p: &str, via: &str| Change::AddRoute {
            route: RouteSpec {
                prefix: p.parse().unwrap(),
                via: via.parse().unwrap(),
            },
        };
        let s = s.apply(&r("172.16.0.0/24", "192.168.10.254")).unwrap();
        assert!(s
            .apply(&r("172.16.0.0/24", "192.168.10.253"))
            .unwrap_err()
            .reason
            .contains("already exists"));
        assert!(s
            .apply(&r("172.17.0.0/24", "172.16.0.1"))
            .unwrap_err()
            .reason
            .contains("not on a connected network"));
        let nh = s
            .route_table()
            .unwrap()
            .lookup("172.16.0.9".parse().unwrap())
            .unwrap();
        assert_eq!(nh.port, 1);
        let s = s
            .apply(&Change::AddNeighbour {
                addr: "192.168.10.254".parse().unwrap(),
                mac: "02:00:00:00:00:fe".parse().unwrap(),
                port: None,
            })
            .unwrap();
        assert_eq!(s.neighbours[0].port, 1);
        assert!(s
            .apply(&Change::AddNeighbour {
                addr: "172.16.0.9".parse().unwrap(),
                mac: "02:00:00:00:00:fe".parse().unwrap(),
                port: None,
            })
            .is_err());
        assert!(s
            .apply(&Change::DeleteRoute {
                prefix: "10.0.0.0/8".parse().unwrap()
            })
            .is_err());
    }

    fn http_check() -> CheckSpec {
        CheckSpec {
            kind: CheckKind::Http {
                path: "/health".into(),
                expect: 200,
            },
            ..CheckSpec::default()
        }
    }

    fn checked() -> State {
        let mut o = opts(SchedulerKind::Wrr);
        o.check = http_check();
        with_service()
            .apply_all(&[
                Change::EditService {
                    key: key("10.10.0.100:80"),
                    options: o,
                },
                Change::AddReal {
                    key: key("10.10.0.100:80"),
                    real: RealSpec {
                        check_port: Some(9000),
                        ..real("192.168.10.3:8080", 2, ForwardMode::Nat)
                    },
                },
            ])
            .unwrap()
    }

    #[test]
    fn check_settings_are_checked_and_errors_name_the_field() {
        let s = with_service();
        let k = key("10.10.0.100:80");
        let edit = |c: CheckSpec| {
            let mut o = opts(SchedulerKind::Wrr);
            o.check = c;
            s.apply(&Change::EditService { key: k, options: o })
        };
        assert!(edit(http_check()).is_ok());
        let cases = [
            (
                CheckKind::Http {
                    path: "health".into(),
                    expect: 200,
                },
                1000,
                1000,
                2,
                2,
                "check.path",
            ),
            (
                CheckKind::Http {
                    path: "/".into(),
                    expect: 99,
                },
                1000,
                1000,
                2,
                2,
                "check.expect",
            ),
            (CheckKind::Tcp, 10, 1000, 2, 2, "check.interval"),
            (CheckKind::Tcp, 1000, 4_000_000, 2, 2, "check.timeout"),
            (CheckKind::Tcp, 1000, 1000, 0, 2, "check.rise"),
            (CheckKind::Tcp, 1000, 1000, 2, 101, "check.fall"),
        ];
        for (kind, interval_ms, timeout_ms, rise, fall, field) in cases {
            let e = edit(CheckSpec {
                kind,
                interval_ms,
                timeout_ms,
                rise,
                fall,
            })
            .unwrap_err();
            assert_eq!(e.field, Some(field), "{e}");
            assert!(e.reason.starts_with("check "), "{e}");
        }
        // Timings are not looked at without a check.
        assert!(edit(CheckSpec {
            interval_ms: 1,
            ..CheckSpec::default()
        })
        .is_ok());
        let e = s
            .apply(&Change::AddReal {
                key: k,
                real: RealSpec {
                    check_port: Some(0),
                    ..real("192.168.10.3:8080", 1, ForwardMode::Nat)
                },
            })
            .unwrap_err();
        assert_eq!(e.field, Some("check_port"));
        // The check's target: the real's address at its check port.
        let s = checked();
        let svc = s.service(&k).unwrap();
        let routes = s.route_table().unwrap();
        let t = svc.check_target(&svc.reals[1], &routes).unwrap();
        assert_eq!(t.addr, sa("192.168.10.3:9000"));
        let t = svc.check_target(&svc.reals[0], &routes).unwrap();
        assert_eq!(t.addr, sa("192.168.10.2:8080"));
        // From our address on the reals' side, not the clients'.
        assert_eq!(t.source, Some("192.168.10.1".parse().unwrap()));
    }

    #[test]
    fn health_verdicts_follow_the_reals_and_their_checks() {
        let k = key("10.10.0.100:80");
        let (r1, r2) = (sa("192.168.10.2:8080"), sa("192.168.10.3:8080"));
        let down = |s: &State, addr| {
            s.apply(&Change::SetHealth {
                key: k,
                addr,
                up: false,
            })
        };
        // Only a checked real can be taken out.
        let e = down(&with_service(), r1).unwrap_err();
        assert_eq!(e.field, Some("check"));
        assert!(down(&checked(), sa("192.168.10.9:80")).is_err());
        let s = down(&checked(), r1).unwrap();
        assert!(s.is_down(&k, r1) && !s.is_down(&k, r2));
        // Not configuration: -S and reload's changes do not carry it.
        assert!(!s
            .to_changes()
            .iter()
            .any(|c| matches!(c, Change::SetHealth { .. })));
        let rebuilt = empty().apply_all(&s.to_changes()).unwrap();
        assert!(!rebuilt.is_down(&k, r1));
        let mut reloaded = rebuilt.clone();
        reloaded.keep_health(&s);
        assert_eq!(
            reloaded, s,
            "a reload keeps the verdicts of reals still checked"
        );
        // Editing the real or the check keeps it; back up on its verdict.
        let s = s
            .apply(&Change::EditReal {
                key: k,
                real: real("192.168.10.2:8080", 5, ForwardMode::Nat),
            })
            .unwrap();
        assert!(s.is_down(&k, r1));
        let up = s
            .apply(&Change::SetHealth {
                key: k,
                addr: r1,
                up: true,
            })
            .unwrap();
        assert!(!up.is_down(&k, r1));
        // Removing the real, or the check, forgets it.
        let gone = s.apply(&Change::DeleteReal { key: k, addr: r1 }).unwrap();
        let back = gone
            .apply(&Change::AddReal {
                key: k,
                real: real("192.168.10.2:8080", 1, ForwardMode::Nat),
            })
            .unwrap();
        assert!(!back.is_down(&k, r1), "an added real starts up");
        let unchecked = s
            .apply(&Change::EditService {
                key: k,
                options: opts(SchedulerKind::Wrr),
            })
            .unwrap();
        assert!(!unchecked.is_down(&k, r1));
        let mut reloaded = unchecked.clone();
        reloaded.keep_health(&s);
        assert!(!reloaded.is_down(&k, r1), "no check, no verdict");
        assert!(!s.apply(&Change::Clear).unwrap().is_down(&k, r1));
    }

    #[test]
    fn changes_rebuild_the_state() {
        let s = checked()
            .apply_all(&[
                Change::SetTimeouts {
                    tcp: 100,
                    tcp_fin: 0,
                    udp: 0,
                },
                Change::AddRoute {
                    route: RouteSpec {
                        prefix: "172.16.0.0/24".parse().unwrap(),
                        via: "192.168.10.254".parse().unwrap(),
                    },
                },
            ])
            .unwrap();
        let rebuilt = empty().apply_all(&s.to_changes()).unwrap();
        assert_eq!(rebuilt, s);
        let cleared = s.apply(&Change::Clear).unwrap();
        assert!(cleared.services.is_empty());
        assert_eq!(cleared.routes.len(), 1);
    }
}
