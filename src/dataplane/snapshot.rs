//! The immutable view of the configuration that a worker runs on: ports
//! with their MACs and addresses, routes, services, timeouts. Built once
//! on the control side; workers only read it.

use crate::control::config::{Config, StaticNeighbour};
use crate::lb::service::{ServiceError, ServiceTable};
use crate::lb::tcp_state::Timeouts;
use crate::net::cidr::Ipv4Cidr;
use crate::net::route::RouteTable;
use crate::wire::EthernetAddress;
use hashbrown::HashMap;
use std::net::Ipv4Addr;

/// One port as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct PortState {
    pub id: u16,
    pub mac: EthernetAddress,
    pub addrs: Vec<Ipv4Cidr>,
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
    /// Interface address -> its port.
    interface_addrs: HashMap<Ipv4Addr, u16>,
}

impl Snapshot {
    /// `macs[i]` is the MAC of DPDK port i (known once the ports started).
    pub fn build(config: &Config, macs: &[EthernetAddress]) -> Result<Snapshot, String> {
        let mut ports: Vec<PortState> = macs
            .iter()
            .enumerate()
            .map(|(id, &mac)| PortState {
                id: id as u16,
                mac,
                addrs: Vec::new(),
            })
            .collect();
        let mut interface_addrs = HashMap::new();
        for iface in &config.interfaces {
            let port = ports.get_mut(iface.port as usize).ok_or_else(|| {
                format!(
                    "interface port {} does not exist: DPDK found {} port(s)",
                    iface.port,
                    macs.len()
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
            interface_addrs,
        })
    }

    /// True for addresses sluice terminates: interface addresses and VIPs.
    #[inline]
    pub fn is_local(&self, addr: Ipv4Addr) -> bool {
        self.interface_addrs.contains_key(&addr) || self.services.is_vip(addr)
    }

    /// Whether sluice answers ARP for `addr` on `port`: its own addresses
    /// on that port, and every VIP.
    #[inline]
    pub fn answers_arp(&self, port: u16, addr: Ipv4Addr) -> bool {
        self.interface_addrs.get(&addr) == Some(&port) || self.services.is_vip(addr)
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
