//! The TOML configuration: parsed into plain serde structs, then turned into
//! what stays fixed while sluice runs (EAL arguments, sizing, the control
//! socket, the interfaces) and the desired state (services, routes,
//! neighbours, timeouts). The state part is built as a batch of changes
//! through `State::apply`, the same validation `sluice ctl` and a reload go
//! through. Every error names the file, the field and the reason, and
//! nothing starts until the whole file is valid.

use crate::control::health::spec::{self as check, CheckKind, CheckSpec, CheckType};
use crate::control::state::{
    Change, Persistence, RealSpec, RouteSpec, ServiceKey, ServiceOptions, State,
};
use crate::dataplane::steering::OwnerHash;
use crate::lb::laddr;
use crate::lb::scheduler::{SchedFlags, SchedulerKind};
use crate::lb::service::{ClientAddressMode, ForwardMode, SynProxyMode};
use crate::lb::Proto;
use crate::net::cidr::Ipv4Cidr;
use crate::wire::EthernetAddress;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// The configuration sluice runs with when `--config` is not given: the
/// demo topology of `scripts/testbed.sh` (two real servers behind the VIP).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/demo.toml");

/// Where the control socket lives unless `[control] socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/sluice/sluice.sock";

/// A configuration error: which file, which field, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Data-plane sizing. Everything on the packet path is bounded by these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Packet buffers in the pool (2^n - 1 is best for DPDK).
    pub mbufs: u32,
    /// Sessions per worker; new connections beyond it are dropped and counted.
    pub max_sessions: usize,
    /// Neighbour (ARP) entries.
    pub max_neighbours: usize,
    /// Real servers over all services (each has a slot of counters).
    pub max_reals: usize,
    /// Persistence templates shared by the workers.
    pub max_persistence_templates: usize,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// FULLNAT local ports (each worker takes those equal to its index
    /// modulo the number of workers).
    pub local_port_range: RangeInclusive<u16>,
    /// Use the NICs' tx checksum offload where they have it.
    pub tx_checksum_offload: bool,
    /// Seconds between gratuitous ARPs for every VIP and local address
    /// (0: only at start and when a change adds one).
    pub garp_interval: u32,
    /// ARP frames accepted per second on one port by one worker (0: no
    /// limit); the excess is dropped and counted.
    pub arp_rate_limit: u32,
    /// Most embryonic (SYN_RECV) sessions per worker; a new connection
    /// beyond it evicts the oldest. 0: a quarter of `max_sessions`.
    pub syn_recv_budget: usize,
    /// The key of the client -> worker hash (docs/steering.md); `None`, the
    /// default, draws a secret one at start. Fixed, anyone who knows it can
    /// aim traffic at one worker: for benchmarks and tests only.
    pub owner_key: Option<OwnerHash>,
}

/// The SYN proxy's settings (`[synproxy]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynProxyConfig {
    /// The MSS sluice's SYN-ACK advertises to clients.
    pub mss: u16,
    /// The window scale it advertises to clients that offer one.
    pub window_scale: u8,
    /// "auto" engages on a worker holding this many SYN_RECV sessions
    /// (0: a sixteenth of `max_sessions`)...
    pub auto_syn_recv: usize,
    /// ... or seeing this many new connections per second.
    pub auto_syn_rate: u32,
    /// Client ACKs a worker holds while their real server answers.
    pub hold: usize,
}

impl Default for SynProxyConfig {
    fn default() -> Self {
        SynProxyConfig {
            mss: 1460,
            window_scale: 7,
            auto_syn_recv: 0,
            auto_syn_rate: 20_000,
            hold: 1024,
        }
    }
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            mbufs: 16383,
            max_sessions: 262_144,
            max_neighbours: 1024,
            max_reals: 4096,
            max_persistence_templates: 65536,
            rx_desc: 1024,
            tx_desc: 1024,
            local_port_range: 1024..=65535,
            tx_checksum_offload: true,
            syn_recv_budget: 0,
            owner_key: None,
            garp_interval: 60,
            arp_rate_limit: 1000,
        }
    }
}

/// The control plane's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// The Unix socket `sluice ctl` talks to.
    pub socket: PathBuf,
    /// Where `GET /metrics` is served (Prometheus), if anywhere.
    pub metrics: Option<SocketAddr>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            metrics: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceConfig {
    pub port: u16,
    /// The addresses sluice owns on this port, with their subnets.
    pub addrs: Vec<Ipv4Cidr>,
    /// Reverse path filtering of what arrives on this port.
    #[serde(default)]
    pub rp_filter: RpFilter,
    /// The name of the port's kernel twin (`kernel_name`); None: the
    /// default, "sluice" + the port number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

impl InterfaceConfig {
    /// The name of the kernel interface that twins this port.
    pub fn kernel_name(&self) -> String {
        self.kernel
            .clone()
            .unwrap_or_else(|| format!("sluice{}", self.port))
    }
}

/// Reverse path filtering, as Linux's `rp_filter` (RFC 3704): what a
/// packet's source must satisfy on the port it arrived on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RpFilter {
    /// No check beyond martians and our own addresses (Linux's 0).
    #[default]
    Off,
    /// The source must be routed back out of this very port (Linux's 1).
    Strict,
    /// The source must be routed out of some port (Linux's 2).
    Loose,
}

impl std::str::FromStr for RpFilter {
    type Err = ();
    fn from_str(s: &str) -> Result<RpFilter, ()> {
        match s {
            "off" => Ok(RpFilter::Off),
            "strict" => Ok(RpFilter::Strict),
            "loose" => Ok(RpFilter::Loose),
            _ => Err(()),
        }
    }
}

/// The exception path to the host kernel (`[kernel]`): a twin interface
/// per port (net_tap) that gets what the dataplane does not handle itself
/// for sluice's interface addresses, and sends what the kernel sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelConfig {
    /// Make the twins (on by default).
    pub twins: bool,
    /// Frames per second each worker hands to a port's twin at most (ARP
    /// replies and the rest counted apart) ...
    pub rate: u32,
    /// ... with bursts of up to this many.
    pub burst: u32,
    /// Metric of the configured routes in the kernel's main table, so that
    /// a host's own default route (metric 0..100) keeps precedence; more
    /// specific prefixes win whatever the metric.
    pub route_metric: u32,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            twins: true,
            rate: 20_000,
            burst: 512,
            route_metric: 1024,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub eal: Vec<String>,
    pub dataplane: DataplaneConfig,
    pub control: ControlConfig,
    pub synproxy: SynProxyConfig,
    pub kernel: KernelConfig,
    /// Services, routes, neighbours, timeouts and the interfaces.
    pub state: State,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    dpdk: RawDpdk,
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    synproxy: RawSynProxyConfig,
    #[serde(default)]
    kernel: RawKernel,
    #[serde(default, rename = "interface")]
    interfaces: Vec<RawInterface>,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    #[serde(default, rename = "neighbour")]
    neighbours: Vec<RawNeighbour>,
    #[serde(default, rename = "service")]
    services: Vec<RawService>,
    #[serde(default)]
    timeouts: RawTimeouts,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDpdk {
    eal: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    mbufs: Option<u32>,
    max_sessions: Option<usize>,
    max_neighbours: Option<usize>,
    max_reals: Option<usize>,
    max_persistence_templates: Option<usize>,
    rx_desc: Option<u16>,
    tx_desc: Option<u16>,
    local_port_range: Option<[u16; 2]>,
    tx_checksum_offload: Option<bool>,
    garp_interval: Option<u32>,
    arp_rate_limit: Option<u32>,
    syn_recv_budget: Option<usize>,
    owner_key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSynProxyConfig {
    mss: Option<u16>,
    window_scale: Option<u8>,
    auto_syn_recv: Option<usize>,
    auto_syn_rate: Option<u32>,
    hold: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    twins: Option<bool>,
    rate: Option<u32>,
    burst: Option<u32>,
    route_metric: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<String>,
    metrics: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    port: u16,
    addrs: Vec<String>,
    rp_filter: Option<String>,
    kernel: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    prefix: String,
    via: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbour {
    addr: String,
    mac: String,
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    vip: String,
    proto: String,
    #[serde(default = "default_mode")]
    mode: String,
    #[serde(default = "default_scheduler")]
    scheduler: String,
    #[serde(default)]
    sched_flags: Vec<String>,
    /// Seconds (ipvsadm -p); absent or 0: not persistent.
    persistence: Option<u32>,
    persistence_netmask: Option<String>,
    /// true, false or "auto" (the default).
    synproxy: Option<RawSynProxy>,
    /// "none" (the default), "proxy-v2" or "toa".
    client_address: Option<String>,
    #[serde(default, rename = "real")]
    reals: Vec<RawReal>,
    #[serde(default)]
    laddrs: Vec<String>,
    check: Option<RawCheck>,
}

/// `[service.check]`; seconds as numbers (`1`, `0.5`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    #[serde(rename = "type")]
    kind: String,
    path: Option<String>,
    expect: Option<u16>,
    interval: Option<f64>,
    timeout: Option<f64>,
    rise: Option<u32>,
    fall: Option<u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSynProxy {
    Switch(bool),
    Word(String),
}

fn default_mode() -> String {
    "nat".into()
}

fn default_scheduler() -> String {
    "wrr".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReal {
    addr: String,
    #[serde(default = "default_weight")]
    weight: u32,
    /// The port the health check connects to, if not the real's.
    check_port: Option<u16>,
}

fn default_weight() -> u32 {
    1
}

/// `ipvsadm --set tcp tcpfin udp`, in seconds.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    tcp: Option<u32>,
    tcp_fin: Option<u32>,
    udp: Option<u32>,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            field: String::new(),
            reason: format!("cannot read: {e}"),
        })?;
        Config::parse(&file, &text)
    }

    /// Validates the TOML `text`; `file` is only used in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: file.into(),
            field: String::new(),
            reason: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        Validator { file }.config(raw)
    }

    /// Every address sluice owns on `port` (interface addresses).
    pub fn interface(&self, port: u16) -> Option<&InterfaceConfig> {
        self.state.interfaces().iter().find(|i| i.port == port)
    }

    /// What a reload may not change while sluice runs: the first field
    /// that differs between `self` and `new`, if any.
    pub fn restart_only_difference(&self, new: &Config) -> Option<&'static str> {
        if self.eal != new.eal {
            Some("dpdk.eal")
        } else if self.dataplane != new.dataplane {
            Some("dataplane")
        } else if self.control != new.control {
            Some("control")
        } else if self.synproxy != new.synproxy {
            Some("synproxy")
        } else if self.kernel != new.kernel {
            Some("kernel")
        } else if self.state.interfaces() != new.state.interfaces() {
            Some("interface")
        } else {
            None
        }
    }
}

/// Whether `name` can name a Linux network interface.
fn valid_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() >= libc::IF_NAMESIZE {
        return Err(format!(
            "{name:?}: an interface name has 1 to {} characters",
            libc::IF_NAMESIZE - 1
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{name:?}: not an interface name (no '/', ':', spaces; not . or ..)"
        ));
    }
    Ok(())
}

/// A change built from the TOML, with the field it came from.
struct Sourced {
    field: String,
    change: Change,
}

struct Validator<'a> {
    file: &'a str,
}

impl Validator<'_> {
    fn err(&self, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        if raw.dpdk.eal.is_empty() {
            return Err(self.err(
                "dpdk.eal",
                "must list the EAL arguments (at least the ports' devices)",
            ));
        }
        let dataplane = self.dataplane(&raw.dataplane)?;
        let control = self.control(&raw.control)?;
        let synproxy = self.synproxy(&raw.synproxy)?;
        let kernel = self.kernel(&raw.kernel)?;
        let interfaces = self.interfaces(&raw.interfaces)?;
        let mut changes = Vec::new();
        self.neighbours(&raw.neighbours, &mut changes)?;
        self.routes(&raw.routes, &mut changes)?;
        self.services(&raw.services, &mut changes)?;
        self.timeouts(&raw.timeouts, &mut changes)?;
        let empty = State::new(interfaces, dataplane.max_reals);
        // The interfaces' own connected routes must hold together too.
        empty
            .route_table()
            .map_err(|e| self.err("interface", e.reason))?;
        let list: Vec<Change> = changes.iter().map(|c| c.change.clone()).collect();
        let state = empty.apply_all(&list).map_err(|(i, e)| {
            let at = &changes[i].field;
            // The change names the part at fault; the TOML key of a local
            // address is already that part.
            let field = match e.field {
                Some("laddrs") if at.contains(".laddrs[") => at.clone(),
                Some(sub) => format!("{at}.{sub}"),
                None => at.clone(),
            };
            self.err(field, e.reason)
        })?;
        Ok(Config {
            eal: raw.dpdk.eal,
            dataplane,
            control,
            synproxy,
            kernel,
            state,
        })
    }

    fn kernel(&self, raw: &RawKernel) -> Result<KernelConfig, ConfigError> {
        let d = KernelConfig::default();
        let out = KernelConfig {
            twins: raw.twins.unwrap_or(d.twins),
            rate: raw.rate.unwrap_or(d.rate),
            burst: raw.burst.unwrap_or(d.burst),
            route_metric: raw.route_metric.unwrap_or(d.route_metric),
        };
        if out.rate == 0 {
            return Err(self.err(
                "kernel.rate",
                "must be at least 1 (turn the twins off with kernel.twins = false)",
            ));
        }
        if out.burst == 0 {
            return Err(self.err("kernel.burst", "must be at least 1"));
        }
        Ok(out)
    }

    fn dataplane(&self, raw: &RawDataplane) -> Result<DataplaneConfig, ConfigError> {
        let d = DataplaneConfig::default();
        let out = DataplaneConfig {
            mbufs: raw.mbufs.unwrap_or(d.mbufs),
            max_sessions: raw.max_sessions.unwrap_or(d.max_sessions),
            max_neighbours: raw.max_neighbours.unwrap_or(d.max_neighbours),
            max_reals: raw.max_reals.unwrap_or(d.max_reals),
            max_persistence_templates: raw
                .max_persistence_templates
                .unwrap_or(d.max_persistence_templates),
            rx_desc: raw.rx_desc.unwrap_or(d.rx_desc),
            tx_desc: raw.tx_desc.unwrap_or(d.tx_desc),
            local_port_range: match raw.local_port_range {
                Some([lo, hi]) => lo..=hi,
                None => d.local_port_range,
            },
            tx_checksum_offload: raw.tx_checksum_offload.unwrap_or(d.tx_checksum_offload),
            syn_recv_budget: raw.syn_recv_budget.unwrap_or(d.syn_recv_budget),
            owner_key: match &raw.owner_key {
                Some(text) => Some(OwnerHash::from_hex(text).ok_or_else(|| {
                    self.err("dataplane.owner_key", "must be 32 hexadecimal digits")
                })?),
                None => d.owner_key,
            },
            garp_interval: raw.garp_interval.unwrap_or(d.garp_interval),
            arp_rate_limit: raw.arp_rate_limit.unwrap_or(d.arp_rate_limit),
        };
        let ports = &out.local_port_range;
        if *ports.start() == 0 || ports.start() > ports.end() {
            return Err(self.err(
                "dataplane.local_port_range",
                "must be [first, last] with 1 <= first <= last <= 65535",
            ));
        }
        if out.mbufs < 1023 {
            return Err(self.err("dataplane.mbufs", "must be at least 1023"));
        }
        if out.max_sessions == 0 || out.max_sessions > 64 << 20 {
            return Err(self.err("dataplane.max_sessions", "must be between 1 and 67108864"));
        }
        if out.max_neighbours == 0 || out.max_neighbours > 65536 {
            return Err(self.err("dataplane.max_neighbours", "must be between 1 and 65536"));
        }
        if out.max_reals == 0 || out.max_reals > 65535 {
            return Err(self.err("dataplane.max_reals", "must be between 1 and 65535"));
        }
        if out.max_persistence_templates == 0 || out.max_persistence_templates > 16 << 20 {
            return Err(self.err(
                "dataplane.max_persistence_templates",
                "must be between 1 and 16777216",
            ));
        }
        if out.garp_interval > 86_400 {
            return Err(self.err(
                "dataplane.garp_interval",
                "must be between 0 (off) and 86400 seconds",
            ));
        }
        for (name, v) in [("rx_desc", out.rx_desc), ("tx_desc", out.tx_desc)] {
            if !(64..=16384).contains(&v) {
                return Err(self.err(format!("dataplane.{name}"), "must be between 64 and 16384"));
            }
        }
        Ok(out)
    }

    fn synproxy(&self, raw: &RawSynProxyConfig) -> Result<SynProxyConfig, ConfigError> {
        let d = SynProxyConfig::default();
        let out = SynProxyConfig {
            mss: raw.mss.unwrap_or(d.mss),
            window_scale: raw.window_scale.unwrap_or(d.window_scale),
            auto_syn_recv: raw.auto_syn_recv.unwrap_or(d.auto_syn_recv),
            auto_syn_rate: raw.auto_syn_rate.unwrap_or(d.auto_syn_rate),
            hold: raw.hold.unwrap_or(d.hold),
        };
        if !(536..=9000).contains(&out.mss) {
            return Err(self.err("synproxy.mss", "must be between 536 and 9000"));
        }
        if out.window_scale > 14 {
            return Err(self.err("synproxy.window_scale", "must be between 0 and 14"));
        }
        if out.hold == 0 || out.hold > 65536 {
            return Err(self.err("synproxy.hold", "must be between 1 and 65536"));
        }
        Ok(out)
    }

    fn control(&self, raw: &RawControl) -> Result<ControlConfig, ConfigError> {
        let mut out = ControlConfig::default();
        if let Some(socket) = &raw.socket {
            if socket.is_empty() || !socket.starts_with('/') {
                return Err(self.err("control.socket", "must be an absolute path"));
            }
            out.socket = PathBuf::from(socket);
        }
        if let Some(metrics) = &raw.metrics {
            out.metrics = Some(metrics.parse().map_err(|_| {
                self.err(
                    "control.metrics",
                    format!("{metrics:?} is not an address:port (e.g. \"127.0.0.1:9100\")"),
                )
            })?);
        }
        Ok(out)
    }

    fn interfaces(&self, raw: &[RawInterface]) -> Result<Vec<InterfaceConfig>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err("interface", "at least one [[interface]] is needed"));
        }
        let mut ports = HashSet::new();
        let mut owned = HashSet::new();
        let mut twins = HashSet::new();
        let mut out = Vec::new();
        for (i, iface) in raw.iter().enumerate() {
            if !ports.insert(iface.port) {
                return Err(self.err(
                    format!("interface[{i}].port"),
                    format!("port {} is configured twice", iface.port),
                ));
            }
            if iface.addrs.is_empty() {
                return Err(self.err(
                    format!("interface[{i}].addrs"),
                    "needs at least one address",
                ));
            }
            let mut addrs = Vec::new();
            for (j, a) in iface.addrs.iter().enumerate() {
                let field = format!("interface[{i}].addrs[{j}]");
                let cidr: Ipv4Cidr = a.parse().map_err(|e| {
                    self.err(
                        &field,
                        format!("{a:?} is not an address/prefix-length: {e}"),
                    )
                })?;
                if !owned.insert(cidr.address()) {
                    return Err(self.err(field, format!("{} is configured twice", cidr.address())));
                }
                addrs.push(cidr);
            }
            let rp_filter = match &iface.rp_filter {
                None => RpFilter::Off,
                Some(text) => text.parse().map_err(|()| {
                    self.err(
                        format!("interface[{i}].rp_filter"),
                        format!("{text:?}: expected \"off\", \"strict\" or \"loose\""),
                    )
                })?,
            };
            if let Some(name) = &iface.kernel {
                if let Err(why) = valid_ifname(name) {
                    return Err(self.err(format!("interface[{i}].kernel"), why));
                }
            }
            let iface = InterfaceConfig {
                port: iface.port,
                addrs,
                rp_filter,
                kernel: iface.kernel.clone(),
            };
            if !twins.insert(iface.kernel_name()) {
                return Err(self.err(
                    format!("interface[{i}].kernel"),
                    format!("{:?} names another port's twin too", iface.kernel_name()),
                ));
            }
            out.push(iface);
        }
        Ok(out)
    }

    fn routes(&self, raw: &[RawRoute], out: &mut Vec<Sourced>) -> Result<(), ConfigError> {
        for (i, r) in raw.iter().enumerate() {
            let prefix: Ipv4Cidr = r.prefix.parse().map_err(|e| {
                self.err(
                    format!("route[{i}].prefix"),
                    format!("{:?} is not a prefix: {e}", r.prefix),
                )
            })?;
            let via: Ipv4Addr = r.via.parse().map_err(|_| {
                self.err(
                    format!("route[{i}].via"),
                    format!("{:?} is not an IPv4 address", r.via),
                )
            })?;
            out.push(Sourced {
                field: format!("route[{i}]"),
                change: Change::AddRoute {
                    route: RouteSpec { prefix, via },
                },
            });
        }
        Ok(())
    }

    fn neighbours(&self, raw: &[RawNeighbour], out: &mut Vec<Sourced>) -> Result<(), ConfigError> {
        for (i, n) in raw.iter().enumerate() {
            let addr: Ipv4Addr = n.addr.parse().map_err(|_| {
                self.err(
                    format!("neighbour[{i}].addr"),
                    format!("{:?} is not an IPv4 address", n.addr),
                )
            })?;
            let mac: EthernetAddress = n.mac.parse().map_err(|_| {
                self.err(
                    format!("neighbour[{i}].mac"),
                    format!("{:?} is not a MAC address", n.mac),
                )
            })?;
            out.push(Sourced {
                field: format!("neighbour[{i}]"),
                change: Change::AddNeighbour {
                    addr,
                    mac,
                    port: n.port,
                },
            });
        }
        Ok(())
    }

    fn services(&self, raw: &[RawService], out: &mut Vec<Sourced>) -> Result<(), ConfigError> {
        let mut seen = HashSet::new();
        for (i, s) in raw.iter().enumerate() {
            let f = |name: &str| format!("service[{i}].{name}");
            let vip = self.socket_addr(&f("vip"), &s.vip)?;
            let proto: Proto = s.proto.parse().map_err(|_| {
                self.err(
                    f("proto"),
                    format!("{:?}: expected \"tcp\" or \"udp\"", s.proto),
                )
            })?;
            let mode: ForwardMode = s.mode.parse().map_err(|_| {
                self.err(
                    f("mode"),
                    format!("{:?}: expected \"nat\" or \"fullnat\"", s.mode),
                )
            })?;
            let laddrs = self.laddrs(i, mode, &s.laddrs)?;
            let scheduler: SchedulerKind = s
                .scheduler
                .parse()
                .map_err(|e: crate::lb::ParseError| self.err(f("scheduler"), e.to_string()))?;
            let flags = SchedFlags::parse(scheduler, &s.sched_flags.join(","))
                .map_err(|e| self.err(f("sched_flags"), e.to_string()))?;
            let persistence = match s.persistence {
                None | Some(0) if s.persistence_netmask.is_some() => {
                    return Err(self.err(
                        f("persistence_netmask"),
                        "only applies with persistence = SECONDS",
                    ))
                }
                None | Some(0) => None,
                Some(timeout) => Some(Persistence {
                    timeout,
                    netmask: match &s.persistence_netmask {
                        Some(m) => m.parse().map_err(|_| {
                            self.err(f("persistence_netmask"), format!("{m:?} is not a netmask"))
                        })?,
                        None => Ipv4Addr::BROADCAST,
                    },
                }),
            };
            let synproxy = match &s.synproxy {
                None => SynProxyMode::default(),
                Some(RawSynProxy::Switch(true)) => SynProxyMode::On,
                Some(RawSynProxy::Switch(false)) => SynProxyMode::Off,
                Some(RawSynProxy::Word(w)) => w.parse().map_err(|_| {
                    self.err(
                        f("synproxy"),
                        format!("{w:?}: expected true, false or \"auto\""),
                    )
                })?,
            };
            let check = self.check(i, s.check.as_ref())?;
            let client_address = match &s.client_address {
                None => ClientAddressMode::default(),
                Some(w) => w.parse().map_err(|_| {
                    self.err(
                        f("client_address"),
                        format!("{w:?}: expected \"none\", \"proxy-v2\" or \"toa\""),
                    )
                })?,
            };
            if client_address != ClientAddressMode::None && mode == ForwardMode::Nat {
                return Err(self.err(
                    f("client_address"),
                    format!(
                        "{client_address} needs mode = \"fullnat\" (in NAT the reals see the client's address already)"
                    ),
                ));
            }
            if !seen.insert((proto, vip)) {
                return Err(self.err(
                    f("vip"),
                    format!("{} {vip} is already a virtual service", proto.as_str()),
                ));
            }
            if s.reals.is_empty() {
                return Err(self.err(f("real"), "needs at least one [[service.real]]"));
            }
            let key = ServiceKey { proto, vip };
            out.push(Sourced {
                field: format!("service[{i}]"),
                change: Change::AddService {
                    key,
                    options: ServiceOptions {
                        scheduler,
                        flags,
                        persistence,
                        synproxy,
                        check,
                        client_address,
                    },
                },
            });
            for (j, r) in s.reals.iter().enumerate() {
                let field = format!("service[{i}].real[{j}]");
                let addr = self.socket_addr(&format!("{field}.addr"), &r.addr)?;
                out.push(Sourced {
                    field,
                    change: Change::AddReal {
                        key,
                        real: RealSpec {
                            addr,
                            weight: r.weight,
                            mode,
                            check_port: r.check_port,
                        },
                    },
                });
            }
            for (j, addr) in laddrs.into_iter().enumerate() {
                out.push(Sourced {
                    field: format!("service[{i}].laddrs[{j}]"),
                    change: Change::AddLaddr { key, addr },
                });
            }
        }
        Ok(())
    }

    /// `[service.check]`: its words and numbers into a `CheckSpec`; the
    /// ranges are `State::apply`'s to check. `path` and `expect` only go
    /// with `type = "http"`; `type = "none"` ignores the rest, so checks can
    /// be switched off by changing the type alone.
    fn check(&self, i: usize, raw: Option<&RawCheck>) -> Result<CheckSpec, ConfigError> {
        let Some(raw) = raw else {
            return Ok(CheckSpec::default());
        };
        let f = |name: &str| format!("service[{i}].check.{name}");
        let kind: CheckType = raw.kind.parse().map_err(|_| {
            self.err(
                f("type"),
                format!("{:?}: expected \"tcp\", \"http\" or \"none\"", raw.kind),
            )
        })?;
        let kind = match kind {
            CheckType::None => return Ok(CheckSpec::default()),
            CheckType::Tcp => {
                for (name, given) in [
                    ("path", raw.path.is_some()),
                    ("expect", raw.expect.is_some()),
                ] {
                    if given {
                        return Err(self.err(f(name), "only applies with type = \"http\""));
                    }
                }
                CheckKind::Tcp
            }
            CheckType::Http => CheckKind::Http {
                path: raw
                    .path
                    .clone()
                    .unwrap_or_else(|| check::DEFAULT_PATH.into()),
                expect: raw.expect.unwrap_or(check::DEFAULT_EXPECT),
            },
        };
        let d = CheckSpec::default();
        let secs = |name: &str, v: Option<f64>, default: u32| match v {
            None => Ok(default),
            Some(s) => check::secs_to_ms(s)
                .ok_or_else(|| self.err(f(name), format!("{s} is not a number of seconds"))),
        };
        Ok(CheckSpec {
            kind,
            interval_ms: secs("interval", raw.interval, d.interval_ms)?,
            timeout_ms: secs("timeout", raw.timeout, d.timeout_ms)?,
            rise: raw.rise.unwrap_or(d.rise),
            fall: raw.fall.unwrap_or(d.fall),
        })
    }

    /// FULLNAT's local addresses: a TOML service declares itself whole, so
    /// FULLNAT needs them there, and NAT takes none.
    fn laddrs(
        &self,
        i: usize,
        mode: ForwardMode,
        raw: &[String],
    ) -> Result<Vec<Ipv4Addr>, ConfigError> {
        let field = format!("service[{i}].laddrs");
        match mode {
            ForwardMode::Nat if !raw.is_empty() => {
                return Err(self.err(field, "local addresses only apply to mode \"fullnat\""));
            }
            ForwardMode::FullNat if raw.is_empty() => {
                return Err(self.err(field, "mode \"fullnat\" needs at least one local address"));
            }
            _ => {}
        }
        if raw.len() > laddr::MAX_LADDRS {
            return Err(self.err(
                field,
                format!("at most {} local addresses per service", laddr::MAX_LADDRS),
            ));
        }
        let mut out = Vec::new();
        for (j, a) in raw.iter().enumerate() {
            let addr: Ipv4Addr = a.parse().map_err(|_| {
                self.err(
                    format!("{field}[{j}]"),
                    format!("{a:?} is not an IPv4 address"),
                )
            })?;
            out.push(addr);
        }
        Ok(out)
    }

    fn socket_addr(&self, field: &str, text: &str) -> Result<SocketAddrV4, ConfigError> {
        let addr: SocketAddrV4 = text
            .parse()
            .map_err(|_| self.err(field, format!("{text:?} is not an IPv4 address:port")))?;
        if addr.port() == 0 {
            return Err(self.err(field, "port 0 is not a service port"));
        }
        Ok(addr)
    }

    fn timeouts(&self, raw: &RawTimeouts, out: &mut Vec<Sourced>) -> Result<(), ConfigError> {
        for (name, v) in [("tcp", raw.tcp), ("tcp_fin", raw.tcp_fin), ("udp", raw.udp)] {
            if v == Some(0) {
                return Err(self.err(format!("timeouts.{name}"), "must be at least 1 second"));
            }
        }
        out.push(Sourced {
            field: "timeouts".into(),
            change: Change::SetTimeouts {
                tcp: raw.tcp.unwrap_or(0),
                tcp_fin: raw.tcp_fin.unwrap_or(0),
                udp: raw.udp.unwrap_or(0),
            },
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[dpdk]
eal = ["-l", "0-1", "--vdev=net_null0", "--vdev=net_null1"]
[[interface]]
port = 0
addrs = ["10.10.0.1/24"]
[[interface]]
port = 1
addrs = ["192.168.10.1/24"]
"#;

    fn with(extra: &str) -> Result<Config, ConfigError> {
        Config::parse("test.toml", &format!("{BASE}{extra}"))
    }

    fn err(extra: &str) -> String {
        with(extra)
            .expect_err("config should be refused")
            .to_string()
    }

    #[test]
    fn owner_key_is_secret_unless_fixed() {
        assert_eq!(with("").unwrap().dataplane.owner_key, None);
        let c = with("[dataplane]\nowner_key = \"123456789abcdef000000000000000ff\"\n").unwrap();
        assert_eq!(
            c.dataplane.owner_key,
            Some(OwnerHash::with_key(0x1234_5678_9abc_def0, 0xff))
        );
        assert!(
            !format!("{c:?}").contains("1311768467463790320"),
            "the key stays out of Debug"
        );
        let e = err("[dataplane]\nowner_key = \"0123\"\n");
        assert!(e.contains("dataplane.owner_key"), "{e}");
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::parse("demo", EMBEDDED_DEFAULT).unwrap();
        assert_eq!(c.state.services.len(), 1);
        assert_eq!(c.state.services[0].reals.len(), 2);
        assert_eq!(
            c.state.services[0].key.vip,
            "10.10.0.100:80".parse().unwrap()
        );
        assert_eq!(c.state.services[0].mode(), ForwardMode::Nat);
    }

    #[test]
    fn full_example_parses() {
        let c = with(
            r#"
[[route]]
prefix = "0.0.0.0/0"
via = "10.10.0.254"
[[neighbour]]
addr = "10.10.0.254"
mac = "02:00:00:00:00:01"
[[service]]
vip = "10.10.0.100:80"
proto = "tcp"
mode = "nat"
scheduler = "wrr"
[[service.real]]
addr = "192.168.10.2:8080"
weight = 2
[[service.real]]
addr = "192.168.10.3:8080"
[timeouts]
tcp = 600
udp = 30
"#,
        )
        .unwrap();
        assert_eq!(c.state.services[0].options.scheduler, SchedulerKind::Wrr);
        assert_eq!(
            c.state.services[0].reals[1].weight, 1,
            "weight defaults to 1"
        );
        assert_eq!(
            c.state.neighbours[0].port, 0,
            "port from the connected route"
        );
        let nh = c
            .state
            .route_table()
            .unwrap()
            .lookup("8.8.8.8".parse().unwrap())
            .unwrap();
        assert_eq!((nh.port, nh.addr), (0, "10.10.0.254".parse().unwrap()));
        assert_eq!(c.state.timeouts.established, 600);
        assert_eq!(c.state.timeouts.udp, 30);
    }

    #[test]
    fn errors_name_file_and_field() {
        let svc = |vip: &str, proto: &str, sched: &str, real: &str, weight: u32| {
            format!(
                "[[service]]\nvip = \"{vip}\"\nproto = \"{proto}\"\nscheduler = \"{sched}\"\n\
                 [[service.real]]\naddr = \"{real}\"\nweight = {weight}\n"
            )
        };
        let cases = [
            (
                svc("10.10.0.300:80", "tcp", "rr", "192.168.10.2:80", 1),
                "service[0].vip",
            ),
            (
                svc("10.10.0.100:0", "tcp", "rr", "192.168.10.2:80", 1),
                "service[0].vip",
            ),
            (
                svc("10.10.0.100:80", "sctp", "rr", "192.168.10.2:80", 1),
                "service[0].proto",
            ),
            (
                svc("10.10.0.100:80", "tcp", "lblc", "192.168.10.2:80", 1),
                "service[0].scheduler",
            ),
            (
                svc("10.10.0.100:80", "tcp", "rr", "192.168.10.2", 1),
                "service[0].real[0].addr",
            ),
            (
                svc("10.10.0.100:80", "tcp", "rr", "192.168.10.2:80", 70000),
                "service[0].real[0].weight",
            ),
            (
                "[[route]]\nprefix = \"10.1.0.0/33\"\nvia = \"10.10.0.254\"\n".into(),
                "route[0].prefix",
            ),
            (
                "[[route]]\nprefix = \"10.1.0.0/16\"\nvia = \"172.16.0.1\"\n".into(),
                "route[0]",
            ),
            (
                "[[route]]\nprefix = \"10.1.0.1/16\"\nvia = \"10.10.0.254\"\n".into(),
                "route[0]",
            ),
            (
                "[[neighbour]]\naddr = \"10.10.0.9\"\nmac = \"02:00:00:00:00\"\n".into(),
                "neighbour[0].mac",
            ),
            (
                "[[neighbour]]\naddr = \"172.16.0.9\"\nmac = \"02:00:00:00:00:01\"\n".into(),
                "neighbour[0].addr",
            ),
            ("[timeouts]\ntcp = 0\n".into(), "timeouts.tcp"),
            (
                "[dataplane]\ngarp_interval = 100000\n".into(),
                "dataplane.garp_interval",
            ),
            (
                "[dataplane]\nmax_sessions = 0\n".into(),
                "dataplane.max_sessions",
            ),
        ];
        for (extra, field) in cases {
            let e = err(&extra);
            assert!(e.starts_with("test.toml: "), "{e}");
            assert!(
                e.contains(&format!(": {field}: ")),
                "expected field {field} in: {e}"
            );
        }
    }

    #[test]
    fn structural_errors() {
        let dup = "[[service]]\nvip = \"10.10.0.100:80\"\nproto = \"tcp\"\n[[service.real]]\naddr = \"192.168.10.2:80\"\n";
        let e = err(&format!("{dup}{dup}"));
        assert!(e.contains("service[1].vip") && e.contains("already"), "{e}");
        let e = err("[[service]]\nvip = \"10.10.0.100:80\"\nproto = \"tcp\"\n");
        assert!(e.contains("service[0].real"), "{e}");
        let e = err("[[service]]\nvip = \"10.10.0.100:80\"\nproto = \"tcp\"\nmode = \"dr\"\n[[service.real]]\naddr = \"192.168.10.2:80\"\n");
        assert!(e.contains("service[0].mode"), "{e}");
        // Unknown keys are refused, with toml's own location.
        let e = err("[[service]]\nvip = \"10.10.0.100:80\"\nprotocol = \"tcp\"\n");
        assert!(e.contains("test.toml") && e.contains("protocol"), "{e}");
        let e = Config::parse("x.toml", "[[interface]]\nport = 0\naddrs = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dpdk"), "{e}");
        let e = Config::parse("x.toml", "[dpdk]\neal = [\"-l\", \"0-1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml: interface"), "{e}");
        let e = err("[[interface]]\nport = 1\naddrs = [\"192.168.20.1/24\"]\n");
        assert!(e.contains("interface[2].port"), "{e}");
    }

    #[test]
    fn fullnat_needs_local_addresses() {
        let svc = |mode: &str, laddrs: &str| {
            format!(
                "[[service]]\nvip = \"10.10.0.100:80\"\nproto = \"tcp\"\nmode = \"{mode}\"\n{laddrs}\n\
                 [[service.real]]\naddr = \"172.16.0.2:80\"\n"
            )
        };
        let c = with(&svc(
            "fullnat",
            "laddrs = [\"192.168.10.100\", \"192.168.10.101\"]",
        ))
        .unwrap();
        assert_eq!(c.state.services[0].mode(), ForwardMode::FullNat);
        assert_eq!(c.state.services[0].laddrs.len(), 2);
        assert!(err(&svc("fullnat", "")).contains("service[0].laddrs"));
        assert!(err(&svc("nat", "laddrs = [\"192.168.10.100\"]")).contains("service[0].laddrs"));
        assert!(
            err(&svc("fullnat", "laddrs = [\"192.168.10.x\"]")).contains("service[0].laddrs[0]")
        );
        assert!(err(&svc("fullnat", "laddrs = [\"10.10.0.100\"]")).contains("also a VIP"));
        let e = err("[dataplane]\nlocal_port_range = [2000, 1000]\n");
        assert!(e.contains("dataplane.local_port_range"), "{e}");
        let c = with("[dataplane]\nlocal_port_range = [40000, 40007]\n").unwrap();
        assert_eq!(c.dataplane.local_port_range, 40000..=40007);
    }

    #[test]
    fn service_checks_and_real_check_ports() {
        let svc = |check: &str| {
            format!(
                "[[service]]\nvip = \"10.10.0.100:80\"\nproto = \"tcp\"\n\
                 [[service.real]]\naddr = \"192.168.10.2:8080\"\ncheck_port = 9000\n\
                 [[service.real]]\naddr = \"192.168.10.3:8080\"\n{check}"
            )
        };
        let c = with(&svc(
            "[service.check]\ntype = \"http\"\npath = \"/health\"\nexpect = 204\n\
             interval = 0.5\ntimeout = 0.25\nrise = 3\nfall = 4\n",
        ))
        .unwrap();
        let s = &c.state.services[0];
        assert_eq!(
            s.options.check,
            CheckSpec {
                kind: CheckKind::Http {
                    path: "/health".into(),
                    expect: 204
                },
                interval_ms: 500,
                timeout_ms: 250,
                rise: 3,
                fall: 4,
            }
        );
        assert_eq!(s.reals[0].check_port, Some(9000));
        assert_eq!(s.reals[1].check_port, None);
        // Defaults: no check; a type alone takes the rest's defaults.
        let c = with(&svc("")).unwrap();
        assert_eq!(c.state.services[0].options.check, CheckSpec::default());
        let c = with(&svc("[service.check]\ntype = \"tcp\"\n")).unwrap();
        assert_eq!(
            c.state.services[0].options.check,
            CheckSpec {
                kind: CheckKind::Tcp,
                ..CheckSpec::default()
            }
        );
        // "none" switches it off whatever else is there.
        let c = with(&svc(
            "[service.check]\ntype = \"none\"\npath = \"/x\"\ninterval = 9\n",
        ))
        .unwrap();
        assert_eq!(c.state.services[0].options.check, CheckSpec::default());
        for (check, field) in [
            ("type = \"ping\"", "service[0].check.type"),
            ("type = \"tcp\"\npath = \"/\"", "service[0].check.path"),
            ("type = \"tcp\"\nexpect = 200", "service[0].check.expect"),
            ("type = \"http\"\npath = \"x y\"", "service[0].check.path"),
            ("type = \"http\"\nexpect = 700", "service[0].check.expect"),
            ("type = \"tcp\"\ninterval = 0", "service[0].check.interval"),
            ("type = \"tcp\"\ninterval = -2", "service[0].check.interval"),
            ("type = \"tcp\"\ntimeout = 5000", "service[0].check.timeout"),
            ("type = \"tcp\"\nrise = 0", "service[0].check.rise"),
            ("type = \"tcp\"\nfall = 1000", "service[0].check.fall"),
        ] {
            let e = err(&svc(&format!("[service.check]\n{check}\n")));
            assert!(e.contains(&format!(": {field}: ")), "expected {field}: {e}");
        }
        let e = err(&svc("[service.check]\ntype = \"tcp\"\nport = 80\n"));
        assert!(e.contains("port"), "unknown keys are refused: {e}");
        let e = err(&svc("").replace("check_port = 9000", "check_port = 0"));
        assert!(e.contains("service[0].real[0].check_port"), "{e}");
    }

    #[test]
    fn client_address_is_for_fullnat_tcp_services() {
        let svc = |proto: &str, mode: &str, client_address: &str| {
            let laddrs = if mode == "fullnat" {
                "laddrs = [\"192.168.10.100\"]\n"
            } else {
                ""
            };
            format!(
                "[[service]]\nvip = \"10.10.0.100:80\"\nproto = \"{proto}\"\nmode = \"{mode}\"\n\
                 {laddrs}client_address = \"{client_address}\"\n[[service.real]]\naddr = \"172.16.0.2:80\"\n"
            )
        };
        for (word, mode) in [
            ("none", ClientAddressMode::None),
            ("proxy-v2", ClientAddressMode::ProxyV2),
            ("toa", ClientAddressMode::Toa),
        ] {
            let c = with(&svc("tcp", "fullnat", word)).unwrap();
            assert_eq!(c.state.services[0].options.client_address, mode);
        }
        let c = with(&svc("tcp", "fullnat", "none").replace("client_address = \"none\"\n", ""))
            .unwrap();
        assert_eq!(
            c.state.services[0].options.client_address,
            ClientAddressMode::None,
            "the default"
        );
        let e = err(&svc("tcp", "nat", "proxy-v2"));
        assert!(e.contains("service[0].client_address"), "{e}");
        assert!(e.contains("fullnat"), "{e}");
        let e = err(&svc("udp", "fullnat", "toa"));
        assert!(e.contains("service[0].client_address"), "{e}");
        assert!(e.contains("TCP"), "{e}");
        let e = err(&svc("tcp", "fullnat", "proxy-v1"));
        assert!(e.contains("service[0].client_address"), "{e}");
        assert!(e.contains("proxy-v2"), "{e}");
        // NAT with "none" is fine.
        with(&svc("tcp", "nat", "none")).unwrap();
    }

    #[test]
    fn rp_filter_per_interface() {
        let c = Config::parse(
            "t.toml",
            "[dpdk]\neal = [\"-l\", \"0-1\"]\n[[interface]]\nport = 0\naddrs = [\"10.10.0.1/24\"]\n\
             rp_filter = \"strict\"\n[[interface]]\nport = 1\naddrs = [\"192.168.10.1/24\"]\n",
        )
        .unwrap();
        assert_eq!(c.interface(0).unwrap().rp_filter, RpFilter::Strict);
        assert_eq!(
            c.interface(1).unwrap().rp_filter,
            RpFilter::Off,
            "off by default"
        );
        let e = Config::parse(
            "t.toml",
            "[dpdk]\neal = [\"-l\", \"0-1\"]\n[[interface]]\nport = 0\naddrs = [\"10.10.0.1/24\"]\n\
             rp_filter = \"on\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("interface[0].rp_filter"), "{e}");
        let d = with("[dataplane]\ngarp_interval = 0\narp_rate_limit = 50\n").unwrap();
        assert_eq!(
            (d.dataplane.garp_interval, d.dataplane.arp_rate_limit),
            (0, 50)
        );
    }

    #[test]
    fn unreadable_file_is_a_clear_error() {
        let e = Config::load(Path::new("/nonexistent/sluice.toml")).unwrap_err();
        assert_eq!(e.file, "/nonexistent/sluice.toml");
        assert!(e.reason.contains("cannot read"));
    }
}
