//! Virtual services (IPVS `ip_vs_service`) and their real servers
//! (`ip_vs_dest`), and the immutable table the dataplane looks them up in.
//!
//! A `ServiceTable` is built on the control side from the desired state and
//! then only read: a change builds a new table, which reaches the workers
//! in a new snapshot.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use hashbrown::{HashMap, HashSet};

use super::scheduler::SchedTable;
use super::{ParseError, Proto};

/// How packets reach the real server (IPVS forwarding method).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    /// IPVS masquerading: destination rewritten to the real server, the
    /// client address is kept, replies must route back through sluice.
    Nat,
    /// Full NAT: source rewritten to a local address as well, so replies
    /// return to sluice whatever the real server's routing.
    FullNat,
}

impl ForwardMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardMode::Nat => "nat",
            ForwardMode::FullNat => "fullnat",
        }
    }
}

impl fmt::Display for ForwardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

serde_as_text!(ForwardMode);

impl FromStr for ForwardMode {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<ForwardMode, ParseError> {
        if s.eq_ignore_ascii_case("nat") {
            Ok(ForwardMode::Nat)
        } else if s.eq_ignore_ascii_case("fullnat") {
            Ok(ForwardMode::FullNat)
        } else {
            Err(ParseError::new("forwarding mode", s, "nat, fullnat"))
        }
    }
}

/// A virtual service's identity: protocol, VIP and port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ServiceKey {
    pub proto: Proto,
    pub vip: SocketAddrV4,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.proto, self.vip)
    }
}

/// Whether a TCP service answers new connections with the SYN proxy
/// (`lb::synproxy`): always, never, or (the default) when a worker sees a
/// SYN flood coming (many SYN_RECV sessions, or a high SYN rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynProxyMode {
    Off,
    On,
    #[default]
    Auto,
}

impl SynProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SynProxyMode::Off => "off",
            SynProxyMode::On => "on",
            SynProxyMode::Auto => "auto",
        }
    }
}

impl fmt::Display for SynProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

serde_as_text!(SynProxyMode);

impl FromStr for SynProxyMode {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<SynProxyMode, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "on" | "true" => Ok(SynProxyMode::On),
            "off" | "false" => Ok(SynProxyMode::Off),
            "auto" => Ok(SynProxyMode::Auto),
            _ => Err(ParseError::new("synproxy mode", s, "on, off, auto")),
        }
    }
}

/// How a FULLNAT TCP service tells its real servers the client's address,
/// which FULLNAT otherwise hides behind a local address
/// (`lb::client_address`): not at all (the default), with a PROXY protocol
/// v2 header ahead of the client's bytes, or with a TOA TCP option on the
/// handshake's last ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAddressMode {
    #[default]
    None,
    ProxyV2,
    Toa,
}

impl ClientAddressMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAddressMode::None => "none",
            ClientAddressMode::ProxyV2 => "proxy-v2",
            ClientAddressMode::Toa => "toa",
        }
    }
}

impl fmt::Display for ClientAddressMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

serde_as_text!(ClientAddressMode);

impl FromStr for ClientAddressMode {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<ClientAddressMode, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(ClientAddressMode::None),
            "proxy-v2" => Ok(ClientAddressMode::ProxyV2),
            "toa" => Ok(ClientAddressMode::Toa),
            _ => Err(ParseError::new(
                "client address mode",
                s,
                "none, proxy-v2, toa",
            )),
        }
    }
}

/// Persistence (`ipvsadm -p TIMEOUT -M NETMASK`): new connections from one
/// client network go to the same real server while a template lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Persistence {
    /// Seconds a template outlives the last connection that used it.
    pub timeout: u32,
    pub netmask: Ipv4Addr,
}

/// A real server as the dataplane sees it. Weight 0 quiesces it: existing
/// sessions continue, no new ones are scheduled to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealServer {
    pub addr: SocketAddrV4,
    pub weight: u32,
    /// Its slot of per-worker counters (`lb::stats`); stays with the real
    /// while it exists and while sessions to it live on after removal.
    pub slot: u32,
}

/// A virtual service: clients connect to `vip` with `proto`, and each new
/// connection goes to one of `reals`, chosen by its scheduler.
#[derive(Debug, Clone)]
pub struct Service {
    pub key: ServiceKey,
    pub mode: ForwardMode,
    pub sched: SchedTable,
    pub persistence: Option<Persistence>,
    /// TCP only (UDP services have no SYN to proxy).
    pub synproxy: SynProxyMode,
    /// FULLNAT TCP only: `None` for every other service.
    pub client_address: ClientAddressMode,
    pub reals: Vec<RealServer>,
    /// FULLNAT local addresses (`ipvsadm --add-laddr`); empty in NAT mode.
    pub laddrs: Vec<Ipv4Addr>,
}

impl Service {
    pub fn vip(&self) -> SocketAddrV4 {
        self.key.vip
    }

    pub fn proto(&self) -> Proto {
        self.key.proto
    }
}

/// Index of a service in its `ServiceTable`.
pub type ServiceId = u32;

/// Why a set of services was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceError {
    /// Two services share protocol, address and port.
    Duplicate { proto: Proto, vip: SocketAddrV4 },
    /// A service lists the same real server twice (IPVS refuses this too).
    DuplicateReal {
        proto: Proto,
        vip: SocketAddrV4,
        real: SocketAddrV4,
    },
    /// More services, or more real servers in one service, than a `u32`
    /// index can name.
    TooMany,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Duplicate { proto, vip } => {
                write!(f, "duplicate service {proto} {vip}")
            }
            ServiceError::DuplicateReal { proto, vip, real } => {
                write!(f, "service {proto} {vip}: duplicate real server {real}")
            }
            ServiceError::TooMany => f.write_str("too many services or real servers"),
        }
    }
}

impl std::error::Error for ServiceError {}

/// All services, indexed by (protocol, VIP, port). Immutable once built.
#[derive(Debug, Clone)]
pub struct ServiceTable {
    services: Vec<Service>,
    by_addr: HashMap<(Proto, SocketAddrV4), ServiceId>,
    vip_set: HashSet<Ipv4Addr>,
    /// Distinct VIPs in configuration order (for ARP replies, metrics).
    vip_list: Vec<Ipv4Addr>,
}

impl ServiceTable {
    pub fn new(services: Vec<Service>) -> Result<ServiceTable, ServiceError> {
        if u32::try_from(services.len()).is_err() {
            return Err(ServiceError::TooMany);
        }
        let mut by_addr = HashMap::with_capacity(services.len());
        let mut vip_set = HashSet::new();
        let mut vip_list = Vec::new();
        for (id, service) in services.iter().enumerate() {
            let (proto, vip) = (service.key.proto, service.key.vip);
            // Fits: checked against u32 above.
            if by_addr.insert((proto, vip), id as ServiceId).is_some() {
                return Err(ServiceError::Duplicate { proto, vip });
            }
            if u32::try_from(service.reals.len()).is_err() {
                return Err(ServiceError::TooMany);
            }
            let mut reals = HashSet::with_capacity(service.reals.len());
            for real in &service.reals {
                if !reals.insert(real.addr) {
                    return Err(ServiceError::DuplicateReal {
                        proto,
                        vip,
                        real: real.addr,
                    });
                }
            }
            if vip_set.insert(*vip.ip()) {
                vip_list.push(*vip.ip());
            }
        }
        Ok(ServiceTable {
            services,
            by_addr,
            vip_set,
            vip_list,
        })
    }

    /// The service listening on `proto` `vip` (address and port).
    #[inline]
    pub fn find(&self, proto: Proto, vip: SocketAddrV4) -> Option<ServiceId> {
        self.by_addr.get(&(proto, vip)).copied()
    }

    /// `None` only for an id that did not come from this table.
    #[inline]
    pub fn get(&self, id: ServiceId) -> Option<&Service> {
        self.services.get(id as usize)
    }

    /// Whether `ip` is the address of any service (any port, any protocol).
    pub fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vip_set.contains(&ip)
    }

    /// Each distinct VIP address once, in configuration order.
    pub fn vips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.vip_list.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (ServiceId, &Service)> + '_ {
        // Fits: checked against u32 in new().
        self.services
            .iter()
            .enumerate()
            .map(|(id, s)| (id as ServiceId, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::alloc_count::allocations_during;
    use crate::lb::scheduler::{SchedFlags, SchedulerKind};

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn service(proto: Proto, vip: &str, reals: &[(&str, u32)]) -> Service {
        let reals: Vec<RealServer> = reals
            .iter()
            .enumerate()
            .map(|(i, &(a, weight))| RealServer {
                addr: addr(a),
                weight,
                slot: i as u32,
            })
            .collect();
        let weights: Vec<_> = reals.iter().map(|r| (r.addr, r.weight)).collect();
        Service {
            key: ServiceKey {
                proto,
                vip: addr(vip),
            },
            mode: ForwardMode::Nat,
            sched: SchedTable::new(SchedulerKind::Rr, SchedFlags::default(), &weights, 13),
            persistence: None,
            synproxy: SynProxyMode::Off,
            client_address: ClientAddressMode::None,
            reals,
            laddrs: Vec::new(),
        }
    }

    fn table() -> ServiceTable {
        ServiceTable::new(vec![
            service(Proto::Tcp, "10.0.0.1:80", &[("192.168.1.1:8080", 1)]),
            service(Proto::Udp, "10.0.0.1:80", &[("192.168.1.2:8080", 1)]),
            service(Proto::Tcp, "10.0.0.1:443", &[]),
            service(Proto::Tcp, "10.0.0.2:80", &[("192.168.1.3:80", 2)]),
        ])
        .unwrap()
    }

    #[test]
    fn find_by_proto_vip_and_port() {
        let t = table();
        assert_eq!(t.len(), 4);
        assert_eq!(t.find(Proto::Tcp, addr("10.0.0.1:80")), Some(0));
        assert_eq!(t.find(Proto::Udp, addr("10.0.0.1:80")), Some(1));
        assert_eq!(t.find(Proto::Tcp, addr("10.0.0.1:443")), Some(2));
        assert_eq!(t.find(Proto::Udp, addr("10.0.0.1:443")), None);
        assert_eq!(t.find(Proto::Tcp, addr("10.0.0.3:80")), None);
        let s = t.get(3).unwrap();
        assert_eq!(s.vip(), addr("10.0.0.2:80"));
        assert_eq!(s.reals[0].weight, 2);
        assert!(t.get(4).is_none());
        assert_eq!(t.iter().map(|(id, _)| id).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn find_does_not_allocate() {
        let t = table();
        let (found, allocations) =
            allocations_during(|| t.find(Proto::Tcp, addr("10.0.0.2:80")).is_some());
        assert!(found);
        assert_eq!(allocations, 0);
    }

    #[test]
    fn vips_are_distinct() {
        let t = table();
        assert_eq!(
            t.vips().collect::<Vec<_>>(),
            vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]
        );
        assert!(t.is_vip(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(!t.is_vip(Ipv4Addr::new(192, 168, 1, 1)));
    }

    #[test]
    fn duplicate_service_is_named() {
        let err = ServiceTable::new(vec![
            service(Proto::Tcp, "10.0.0.1:80", &[]),
            service(Proto::Udp, "10.0.0.1:80", &[]),
            service(Proto::Tcp, "10.0.0.1:80", &[]),
        ])
        .unwrap_err();
        assert_eq!(
            err,
            ServiceError::Duplicate {
                proto: Proto::Tcp,
                vip: addr("10.0.0.1:80")
            }
        );
        assert_eq!(err.to_string(), "duplicate service tcp 10.0.0.1:80");
    }

    #[test]
    fn duplicate_real_is_named() {
        let err = ServiceTable::new(vec![service(
            Proto::Tcp,
            "10.0.0.1:80",
            &[("192.168.1.1:80", 1), ("192.168.1.1:80", 2)],
        )])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "service tcp 10.0.0.1:80: duplicate real server 192.168.1.1:80"
        );
    }

    #[test]
    fn forward_mode_names() {
        assert_eq!("nat".parse::<ForwardMode>(), Ok(ForwardMode::Nat));
        assert_eq!("FullNAT".parse::<ForwardMode>(), Ok(ForwardMode::FullNat));
        assert!("dr".parse::<ForwardMode>().is_err());
        assert_eq!(ForwardMode::FullNat.to_string(), "fullnat");
    }
}
