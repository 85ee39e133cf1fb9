//! The immutable view of the configuration that a worker runs on: ports
//! with their MACs and addresses, routes, services, timeouts. Built once
//! on the control side; workers only read it.

use crate::control::config::{Config, StaticNeighbour};
use crate::lb::service::{ServiceError, ServiceTable};
use crate::lb::tcp_state::Timeouts;
use crate::net::cidr::Ipv4Cidr;
use crate::net::hash::FastInt;
use crate::net::route::RouteTable;
use crate::wire::EthernetAddress;
use hashbrown::HashMap;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

/// One port as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct PortState {
    pub id: u16,
    pub mac: EthernetAddress,
    pub addrs: Vec<Ipv4Cidr>,
    /// The NIC fills in IPv4/TCP/UDP checksums on transmit.
    pub tx_checksum_offload: bool,
    /// Frames may come from the local kernel with TCP/UDP checksums left
    /// partial for a NIC to finish (virtual ports: af_packet, af_xdp, tap,
    /// virtio-user). Physical NICs never deliver such frames.
    pub rx_partial_checksums: bool,
}

/// What the runtime learned about a port when it started it.
#[derive(Debug, Clone, Copy)]
pub struct PortFacts {
    pub mac: EthernetAddress,
    pub tx_checksum_offload: bool,
    pub rx_partial_checksums: bool,
}

/// Where an IPv4 destination address points, as far as sluice is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A virtual service address: new connections and client traffic.
    Vip,
    /// A FULLNAT local address: replies from real servers.
    Laddr,
    /// One of the interfaces' own addresses.
    Interface,
    /// Somebody else: only NAT replies (real server -> client) pass.
    Foreign,
}

#[derive(Debug)]
pub struct Snapshot {
    /// Indexed by DPDK port id.
    pub ports: Vec<PortState>,
    pub routes: RouteTable,
    pub services: ServiceTable,
    pub timeouts: Timeouts,
    pub neighbours: Vec<StaticNeighbour>,
    pub max_sessions: usize,
    pub max_neighbours: usize,
    pub local_port_range: RangeInclusive<u16>,
    /// Number of worker lcores; sessions are spread over them.
    pub workers: u16,
    /// Interface address -> its port.
    interface_addrs: HashMap<Ipv4Addr, u16>,
    /// What each of our addresses is (VIP, local, interface): one lookup
    /// per packet classifies its destination.
    destinations: HashMap<u32, Destination, FastInt>,
}

impl Snapshot {
    /// `ports[i]` describes DPDK port i (known once the ports started);
    /// `workers` is the number of worker lcores.
    pub fn build(config: &Config, ports: &[PortFacts], workers: u16) -> Result<Snapshot, String> {
        let found = ports.len();
        let mut ports: Vec<PortState> = ports
            .iter()
            .enumerate()
            .map(|(id, facts)| PortState {
                id: id as u16,
                mac: facts.mac,
                addrs: Vec::new(),
                tx_checksum_offload: facts.tx_checksum_offload,
                rx_partial_checksums: facts.rx_partial_checksums,
            })
            .collect();
        let mut interface_addrs = HashMap::new();
        for iface in &config.interfaces {
            let port = ports.get_mut(iface.port as usize).ok_or_else(|| {
                format!(
                    "interface port {} does not exist: DPDK found {} port(s)",
                    iface.port, found
                )
            })?;
            port.addrs = iface.addrs.clone();
            for a in &iface.addrs {
                interface_addrs.insert(a.address(), iface.port);
            }
        }
        for n in &config.neighbours {
            if n.port as usize >= ports.len() {
                return Err(format!(
                    "neighbour {}: port {} does not exist",
                    n.addr, n.port
                ));
            }
        }
        let services =
            ServiceTable::new(config.services.clone()).map_err(|e: ServiceError| e.to_string())?;
        Ok(Snapshot {
            ports,
            routes: config.routes.clone(),
            services,
            timeouts: config.timeouts,
            neighbours: config.neighbours.clone(),
            max_sessions: config.dataplane.max_sessions,
            max_neighbours: config.dataplane.max_neighbours,
            local_port_range: config.dataplane.local_port_range.clone(),
            workers: workers.max(1),
            destinations: destinations(config, &interface_addrs),
            interface_addrs,
        })
    }

    /// Classifies a destination address.
    #[inline]
    pub fn destination(&self, addr: Ipv4Addr) -> Destination {
        self.destinations
            .get(&u32::from(addr))
            .copied()
            .unwrap_or(Destination::Foreign)
    }

    /// Whether sluice answers ARP for `addr` on `port`: its own addresses
    /// on that port, every VIP and every FULLNAT local address.
    #[inline]
    pub fn answers_arp(&self, port: u16, addr: Ipv4Addr) -> bool {
        self.interface_addrs.get(&addr) == Some(&port)
            || matches!(
                self.destination(addr),
                Destination::Vip | Destination::Laddr
            )
    }

    /// The ports to announce `addr` on (gratuitous ARP): those whose subnet
    /// holds it, or every port if none does.
    pub fn announce_ports(&self, addr: Ipv4Addr) -> Vec<u16> {
        let on_subnet: Vec<u16> = self
            .ports
            .iter()
            .filter(|p| p.addrs.iter().any(|a| a.contains(addr)))
            .map(|p| p.id)
            .collect();
        if on_subnet.is_empty() {
            self.ports.iter().map(|p| p.id).collect()
        } else {
            on_subnet
        }
    }

    /// Every address sluice announces at start: VIPs and local addresses.
    pub fn announced_addrs(&self) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = self
            .destinations
            .iter()
            .filter(|(_, d)| matches!(d, Destination::Vip | Destination::Laddr))
            .map(|(&a, _)| Ipv4Addr::from(a))
            .collect();
        out.sort();
        out
    }

    /// The source address for packets sluice originates on `port` toward
    /// `dst`: the port's address on dst's subnet, else its first address.
    pub fn source_addr(&self, port: u16, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let addrs = &self.ports.get(port as usize)?.addrs;
        addrs
            .iter()
            .find(|a| a.contains(dst))
            .or_else(|| addrs.first())
            .map(|a| a.address())
    }
}

/// Our addresses and what they are. A VIP wins over a local address (the
/// configuration refuses that overlap anyway), which wins over an interface
/// address.
fn destinations(
    config: &Config,
    interface_addrs: &HashMap<Ipv4Addr, u16>,
) -> HashMap<u32, Destination, FastInt> {
    let mut out: HashMap<u32, Destination, FastInt> = interface_addrs
        .keys()
        .map(|&a| (u32::from(a), Destination::Interface))
        .collect();
    for s in &config.services {
        for &l in &s.laddrs {
            out.insert(u32::from(l), Destination::Laddr);
        }
    }
    for s in &config.services {
        out.insert(u32::from(*s.vip.ip()), Destination::Vip);
    }
    out
}
