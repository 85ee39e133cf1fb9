//! The immutable view of the configuration that a worker runs on: ports
//! with their MACs and addresses, routes, services with their scheduling
//! tables, timeouts, the state of every real server slot. Built on the
//! control side from the desired state (`control::state`) for every change;
//! workers only read it, and pick a new one up between bursts (`publish`).

use crate::control::config::{Config, DataplaneConfig, RpFilter, SynProxyConfig};
use crate::control::slots::{RealSlots, SlotUse};
use crate::control::state::{NeighbourSpec, State};
use crate::lb::scheduler::{SchedTable, DEFAULT_MH_TABLE_SIZE};
use crate::lb::service::{
    ClientAddressMode, ForwardMode, RealServer, Service, ServiceError, ServiceTable, SynProxyMode,
};
pub use crate::lb::stats::SlotState;
use crate::lb::synproxy;
use crate::lb::tcp_state::Timeouts;
use crate::lb::Proto;
use crate::net::addr_map::AddrMap;
use crate::net::cidr::Ipv4Cidr;
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
    /// Reverse path filtering of what arrives here.
    pub rp_filter: RpFilter,
    /// The port has a kernel twin: what the dataplane does not handle for
    /// the port's own addresses goes up to the host kernel.
    pub kernel_twin: bool,
}

impl PortState {
    /// Whether `addr` may be a neighbour on this port: a host address of
    /// one of its connected subnets (not the subnet's network or broadcast
    /// address, nor the port's own address there).
    #[inline]
    pub fn is_neighbour_addr(&self, addr: Ipv4Addr) -> bool {
        self.addrs.iter().any(|a| {
            if !a.contains(addr) || addr == a.address() {
                return false;
            }
            // A /31 or /32 has no network or broadcast address (RFC 3021).
            if a.prefix_len() >= 31 {
                return true;
            }
            let host_mask = u32::MAX >> a.prefix_len();
            let host = u32::from(addr) & host_mask;
            host != 0 && host != host_mask
        })
    }
}

/// What the runtime learned about a port when it started it.
#[derive(Debug, Clone, Copy)]
pub struct PortFacts {
    pub mac: EthernetAddress,
    pub tx_checksum_offload: bool,
    pub rx_partial_checksums: bool,
    /// A kernel twin was made for the port.
    pub kernel_twin: bool,
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

/// What a snapshot is made of.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub dataplane: &'a DataplaneConfig,
    pub synproxy: &'a SynProxyConfig,
    pub state: &'a State,
    pub slots: &'a RealSlots,
    /// Sessions of removed reals end on their next packet (IPVS's
    /// `expire_nodest_conn`).
    pub expire_nodest_conn: bool,
    /// Addresses no longer in the state that sessions still use: a removed
    /// service's VIP, a removed local address. Still answered for (ARP) and
    /// classified as before, so those sessions carry on.
    pub retired: &'a [(Ipv4Addr, Destination)],
    /// `ports[i]` describes DPDK port i (known once the ports started).
    pub ports: &'a [PortFacts],
    /// The number of worker lcores.
    pub workers: u16,
    pub epoch: u64,
}

#[derive(Debug)]
pub struct Snapshot {
    /// Which change this is (the control side counts them).
    pub epoch: u64,
    /// Indexed by DPDK port id.
    pub ports: Vec<PortState>,
    pub routes: RouteTable,
    pub services: ServiceTable,
    pub timeouts: Timeouts,
    pub neighbours: Vec<NeighbourSpec>,
    pub max_sessions: usize,
    pub max_neighbours: usize,
    pub local_port_range: RangeInclusive<u16>,
    /// Milliseconds between gratuitous ARPs of every VIP and local address;
    /// 0: only at start and for added ones.
    pub garp_interval_ms: u64,
    /// ARP frames per second one worker accepts on one port; 0: no limit.
    pub arp_rate_limit: u32,
    /// Number of worker lcores; sessions are spread over them.
    pub workers: u16,
    /// Indexed by real server slot (`dataplane.max_reals` of them).
    pub slots: Box<[SlotState]>,
    pub synproxy: synproxy::Settings,
    /// Interface address -> its port.
    interface_addrs: HashMap<Ipv4Addr, u16>,
    /// What each of our addresses is (VIP, local, interface): one lookup
    /// per packet classifies its destination, another checks its source
    /// (almost never ours: a multiply and one load that finds an empty slot).
    destinations: AddrMap<Destination>,
}

impl Snapshot {
    /// The snapshot of a configuration as loaded, with fresh real server
    /// slots (what the runtime starts with, and what tests use).
    pub fn build(config: &Config, ports: &[PortFacts], workers: u16) -> Result<Snapshot, String> {
        let mut slots = RealSlots::new(config.dataplane.max_reals);
        slots.assign(&config.state, 0)?;
        Snapshot::from_inputs(&Inputs {
            dataplane: &config.dataplane,
            synproxy: &config.synproxy,
            state: &config.state,
            slots: &slots,
            expire_nodest_conn: false,
            retired: &[],
            ports,
            workers,
            epoch: 0,
        })
    }

    /// The snapshot of `inputs.state`.
    pub fn from_inputs(inputs: &Inputs) -> Result<Snapshot, String> {
        let Inputs {
            dataplane,
            synproxy: synproxy_config,
            state,
            slots: real_slots,
            expire_nodest_conn,
            retired,
            ports,
            workers,
            epoch,
        } = *inputs;
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
                rp_filter: RpFilter::Off,
                kernel_twin: facts.kernel_twin,
            })
            .collect();
        let mut interface_addrs = HashMap::new();
        for iface in state.interfaces() {
            let port = ports.get_mut(iface.port as usize).ok_or_else(|| {
                format!(
                    "interface port {} does not exist: DPDK found {} port(s)",
                    iface.port, found
                )
            })?;
            port.addrs = iface.addrs.clone();
            port.rp_filter = iface.rp_filter;
            for a in &iface.addrs {
                interface_addrs.insert(a.address(), iface.port);
            }
        }
        for n in &state.neighbours {
            if n.port as usize >= ports.len() {
                return Err(format!(
                    "neighbour {}: port {} does not exist",
                    n.addr, n.port
                ));
            }
        }
        let mut services = Vec::with_capacity(state.services.len());
        // Slots of reals their health check took out.
        let mut down_slots = vec![false; real_slots.capacity()];
        for s in &state.services {
            let mut reals = Vec::with_capacity(s.reals.len());
            let mut any_down = false;
            for r in &s.reals {
                let slot = real_slots
                    .slot(&s.key, r.addr)
                    .ok_or_else(|| format!("service {}: real {} has no slot", s.key, r.addr))?;
                // A real that failed its check takes no new connections,
                // as if quiesced (keepalived's inhibit_on_failure).
                let down = state.is_down(&s.key, r.addr);
                if down {
                    if let Some(d) = down_slots.get_mut(slot as usize) {
                        *d = true;
                    }
                    any_down = true;
                }
                reals.push(RealServer {
                    addr: r.addr,
                    weight: if down { 0 } else { r.weight },
                    slot,
                });
            }
            let weights: Vec<_> = reals.iter().map(|r| (r.addr, r.weight)).collect();
            // sh and mh lay their tables out from the configured weights,
            // so a failed real's clients alone move (Maglev keeps a down
            // real's last weight, as IPVS's mh), and while one is down its
            // clients take the fallback walk to the next real, flag or not:
            // a dead real must not cost its clients the service.
            let configured: Vec<u32> = s.reals.iter().map(|r| r.weight).collect();
            let mut flags = s.options.flags;
            flags.fallback |= any_down;
            services.push(Service {
                key: s.key,
                mode: s.mode(),
                sched: SchedTable::with_table_weights(
                    s.options.scheduler,
                    flags,
                    &weights,
                    &configured,
                    DEFAULT_MH_TABLE_SIZE,
                ),
                persistence: s.options.persistence,
                synproxy: match s.key.proto {
                    Proto::Tcp => s.options.synproxy,
                    Proto::Udp => SynProxyMode::Off,
                },
                // The validator keeps it off UDP and NAT; a FULLNAT service
                // with no real yet has nothing to schedule anyway.
                client_address: match (s.key.proto, s.mode()) {
                    (Proto::Tcp, ForwardMode::FullNat) => s.options.client_address,
                    _ => ClientAddressMode::None,
                },
                reals,
                laddrs: s.laddrs.clone(),
            });
        }
        let services = ServiceTable::new(services).map_err(|e: ServiceError| e.to_string())?;
        // expire_nodest_conn ends the sessions of removed reals, and of
        // reals their check took out, on their next packet.
        let slots = (0..real_slots.capacity() as u32)
            .map(|slot| SlotState {
                generation: real_slots.generation(slot),
                expire: expire_nodest_conn
                    && (matches!(real_slots.get(slot), SlotUse::Draining { .. })
                        || down_slots[slot as usize]),
            })
            .collect();
        let routes = state.route_table().map_err(|e| e.reason)?;
        let max_sessions = dataplane.max_sessions;
        let synproxy = synproxy::Settings {
            key: synproxy::process_key().clone(),
            mss: synproxy_config.mss,
            window_scale: synproxy_config.window_scale,
            auto_syn_recv: match synproxy_config.auto_syn_recv {
                0 => (max_sessions / 16).max(1),
                n => n,
            },
            auto_syn_rate: synproxy_config.auto_syn_rate,
            hold: synproxy_config.hold,
            syn_recv_budget: match dataplane.syn_recv_budget {
                0 => (max_sessions / 4).max(1),
                n => n,
            },
        };
        let destinations = destinations(&services, &interface_addrs, retired);
        Ok(Snapshot {
            epoch,
            synproxy,
            ports,
            routes,
            timeouts: state.timeouts,
            neighbours: state.neighbours.clone(),
            max_sessions: dataplane.max_sessions,
            max_neighbours: dataplane.max_neighbours,
            local_port_range: dataplane.local_port_range.clone(),
            garp_interval_ms: u64::from(dataplane.garp_interval) * 1000,
            arp_rate_limit: dataplane.arp_rate_limit,
            workers: workers.max(1),
            slots,
            destinations,
            services,
            interface_addrs,
        })
    }

    /// Classifies a destination address.
    #[inline]
    pub fn destination(&self, addr: Ipv4Addr) -> Destination {
        self.destinations.get(addr).unwrap_or(Destination::Foreign)
    }

    /// Whether `addr` is one of ours: an interface address, a VIP or a local
    /// address (retired ones included).
    #[inline]
    pub fn is_own_addr(&self, addr: Ipv4Addr) -> bool {
        self.destinations.contains(addr)
    }

    /// Whether `mac` is one of our ports' MACs.
    #[inline]
    pub fn is_own_mac(&self, mac: EthernetAddress) -> bool {
        self.ports.iter().any(|p| p.mac == mac)
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

    /// Every address sluice announces: VIPs and local addresses.
    pub fn announced_addrs(&self) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = self
            .destinations
            .iter()
            .filter(|(_, d)| matches!(d, Destination::Vip | Destination::Laddr))
            .map(|(a, _)| a)
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
/// state refuses that overlap anyway), which wins over an interface
/// address: in `AddrMap::new` a later entry wins.
fn destinations(
    services: &ServiceTable,
    interface_addrs: &HashMap<Ipv4Addr, u16>,
    retired: &[(Ipv4Addr, Destination)],
) -> AddrMap<Destination> {
    let interfaces = interface_addrs.keys().map(|&a| (a, Destination::Interface));
    let laddrs = services
        .iter()
        .flat_map(|(_, s)| s.laddrs.iter().map(|&l| (l, Destination::Laddr)));
    let vips = services
        .iter()
        .map(|(_, s)| (*s.key.vip.ip(), Destination::Vip));
    AddrMap::new(
        interfaces
            .chain(retired.iter().copied())
            .chain(laddrs)
            .chain(vips),
    )
}
