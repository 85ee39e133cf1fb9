//! The IPv4 routing table: connected networks and static routes via a
//! gateway, with longest-prefix-match lookup of the next hop for a packet.
//!
//! The table is built once from configuration and then only read. Lookup
//! keeps one hash map per prefix length that is actually in use, probed from
//! the longest length to the shortest. A load balancer's table is a few
//! connected networks, a default route and a handful of static routes, so a
//! lookup is two or three hash probes over tiny, cache-resident maps. A
//! DIR-24-8 table would make every lookup at most two memory reads, but it
//! costs 32 MiB per copy for the first level and random destinations miss
//! the cache in it; it pays off for full Internet tables, not for ours.

use std::fmt;
use std::net::Ipv4Addr;

use hashbrown::HashMap;

use super::cidr::{mask_bits, Ipv4Cidr};
use super::hash::FastInt;

/// Where to send a packet: out of `port`, to the link-layer address of
/// `addr` (the gateway, or the destination itself on a connected network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    pub port: u16,
    pub addr: Ipv4Addr,
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} port {}", self.addr, self.port)
    }
}

/// One configured route, for listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destination network (host bits clear).
    pub prefix: Ipv4Cidr,
    pub port: u16,
    /// `None` on a connected route: destinations are on the link.
    pub gateway: Option<Ipv4Addr>,
    /// Our own address on a connected network (the interface address).
    pub source: Option<Ipv4Addr>,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.prefix)?;
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        write!(f, " port {}", self.port)?;
        if let Some(source) = self.source {
            write!(f, " src {source}")?;
        }
        Ok(())
    }
}

/// Why a route was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The prefix has bits set beyond its length (10.0.0.1/8).
    HostBitsSet { prefix: Ipv4Cidr },
    /// A route for exactly this prefix already exists.
    Duplicate { prefix: Ipv4Cidr },
    /// The gateway is not on any connected network, so no port reaches it.
    GatewayNotConnected { prefix: Ipv4Cidr, gateway: Ipv4Addr },
    /// The gateway is one of our own interface addresses.
    GatewayIsLocal { prefix: Ipv4Cidr, gateway: Ipv4Addr },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::HostBitsSet { prefix } => write!(
                f,
                "route {prefix}: host bits are set (did you mean {}?)",
                prefix.network()
            ),
            RouteError::Duplicate { prefix } => {
                write!(f, "route {prefix}: a route for this prefix already exists")
            }
            RouteError::GatewayNotConnected { prefix, gateway } => write!(
                f,
                "route {prefix} via {gateway}: the gateway is not on a connected network"
            ),
            RouteError::GatewayIsLocal { prefix, gateway } => write!(
                f,
                "route {prefix} via {gateway}: the gateway is one of our own interface addresses"
            ),
        }
    }
}

impl std::error::Error for RouteError {}

/// What the lookup maps store per prefix.
#[derive(Debug, Clone, Copy)]
struct Hop {
    port: u16,
    gateway: Option<Ipv4Addr>,
}

/// All routes of one prefix length, keyed by network address.
#[derive(Debug, Clone)]
struct Level {
    prefix_len: u8,
    mask: u32,
    hops: HashMap<u32, Hop, FastInt>,
}

/// The routing table. Build it with `add_connected` (first) and `add_via`,
/// then share it read-only.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Every route in the order it was added, for listing.
    routes: Vec<Route>,
    /// The prefix lengths in use, longest first.
    levels: Vec<Level>,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the network of interface address `iface` (10.10.0.1/24 adds
    /// 10.10.0.0/24) as reachable directly out of `port`.
    pub fn add_connected(&mut self, iface: Ipv4Cidr, port: u16) -> Result<(), RouteError> {
        let prefix = iface.network();
        self.insert(Route {
            prefix,
            port,
            gateway: None,
            source: Some(iface.address()),
        })
    }

    /// Adds a route to `prefix` through `gateway`. As in Linux, the gateway
    /// must be on a connected network (added before), whose port is used.
    pub fn add_via(&mut self, prefix: Ipv4Cidr, gateway: Ipv4Addr) -> Result<(), RouteError> {
        if prefix.has_host_bits() {
            return Err(RouteError::HostBitsSet { prefix });
        }
        let connected = self
            .connected_route(gateway)
            .ok_or(RouteError::GatewayNotConnected { prefix, gateway })?;
        if self.is_local(gateway) {
            return Err(RouteError::GatewayIsLocal { prefix, gateway });
        }
        let port = connected.port;
        self.insert(Route {
            prefix,
            port,
            gateway: Some(gateway),
            source: None,
        })
    }

    /// The next hop for `dst` by longest-prefix match; `None` when no route
    /// covers it (no default route). Allocation-free.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<NextHop> {
        let dst_bits = u32::from(dst);
        self.levels.iter().find_map(|level| {
            level.hops.get(&(dst_bits & level.mask)).map(|hop| NextHop {
                port: hop.port,
                addr: hop.gateway.unwrap_or(dst),
            })
        })
    }

    /// Every route, in the order added.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The port of the most specific connected network containing `addr`.
    pub fn connected_port(&self, addr: Ipv4Addr) -> Option<u16> {
        self.connected_route(addr).map(|route| route.port)
    }

    /// True when `addr` is on a connected network of `port` (any of them,
    /// if the port has several).
    pub fn is_connected_to(&self, port: u16, addr: Ipv4Addr) -> bool {
        self.routes
            .iter()
            .any(|r| r.gateway.is_none() && r.port == port && r.prefix.contains(addr))
    }

    /// Our interface address on the most specific connected network that
    /// contains `addr`: the sender address for an ARP request to `addr`.
    pub fn local_address_for(&self, addr: Ipv4Addr) -> Option<Ipv4Addr> {
        self.connected_route(addr).and_then(|route| route.source)
    }

    /// Our interface address on the port that reaches `dst` (by the route
    /// `lookup` takes): the source the host's own packets to `dst` should
    /// carry, so that the answers come back to that port (health checks).
    pub fn source_for(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let hop = self.lookup(dst)?;
        self.routes
            .iter()
            .filter(|r| r.gateway.is_none() && r.port == hop.port && r.prefix.contains(hop.addr))
            .max_by_key(|r| r.prefix.prefix_len())
            .and_then(|r| r.source)
    }

    fn connected_route(&self, addr: Ipv4Addr) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| r.gateway.is_none() && r.prefix.contains(addr))
            .max_by_key(|r| r.prefix.prefix_len())
    }

    fn is_local(&self, addr: Ipv4Addr) -> bool {
        self.routes.iter().any(|r| r.source == Some(addr))
    }

    fn insert(&mut self, route: Route) -> Result<(), RouteError> {
        let prefix = route.prefix;
        let len = prefix.prefix_len();
        let key = u32::from(prefix.address());
        let pos = match self.levels.iter().position(|l| l.prefix_len <= len) {
            Some(pos) if self.levels[pos].prefix_len == len => pos,
            found => {
                let pos = found.unwrap_or(self.levels.len());
                let level = Level {
                    prefix_len: len,
                    mask: mask_bits(len),
                    hops: HashMap::default(),
                };
                self.levels.insert(pos, level);
                pos
            }
        };
        let hops = &mut self.levels[pos].hops;
        if hops.contains_key(&key) {
            return Err(RouteError::Duplicate { prefix });
        }
        let hop = Hop {
            port: route.port,
            gateway: route.gateway,
        };
        hops.insert(key, hop);
        self.routes.push(route);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn hop(port: u16, addr: &str) -> Option<NextHop> {
        Some(NextHop {
            port,
            addr: ip(addr),
        })
    }

    /// Port 0 on 10.10.0.0/24, port 1 on 192.168.1.0/24.
    fn two_ports() -> RouteTable {
        let mut table = RouteTable::new();
        table.add_connected(cidr("10.10.0.1/24"), 0).unwrap();
        table.add_connected(cidr("192.168.1.1/24"), 1).unwrap();
        table
    }

    #[test]
    fn source_for_is_the_address_on_the_port_that_reaches_the_destination() {
        let mut table = two_ports();
        table
            .add_via(cidr("172.16.0.0/24"), ip("192.168.1.254"))
            .unwrap();
        table.add_via(cidr("0.0.0.0/0"), ip("10.10.0.254")).unwrap();
        assert_eq!(
            table.source_for(ip("192.168.1.20")),
            Some(ip("192.168.1.1"))
        );
        assert_eq!(table.source_for(ip("172.16.0.5")), Some(ip("192.168.1.1")));
        assert_eq!(table.source_for(ip("203.0.113.9")), Some(ip("10.10.0.1")));
        assert_eq!(two_ports().source_for(ip("203.0.113.9")), None, "no route");
    }

    #[test]
    fn connected_route_next_hop_is_the_destination() {
        let table = two_ports();
        assert_eq!(table.lookup(ip("10.10.0.7")), hop(0, "10.10.0.7"));
        assert_eq!(table.lookup(ip("192.168.1.200")), hop(1, "192.168.1.200"));
        assert_eq!(
            table.routes()[0],
            Route {
                prefix: cidr("10.10.0.0/24"),
                port: 0,
                gateway: None,
                source: Some(ip("10.10.0.1")),
            }
        );
    }

    #[test]
    fn no_default_route_means_no_next_hop() {
        let table = two_ports();
        assert_eq!(table.lookup(ip("8.8.8.8")), None);
        assert_eq!(RouteTable::new().lookup(ip("10.10.0.1")), None);
    }

    #[test]
    fn longest_prefix_wins() {
        let mut table = two_ports();
        table
            .add_via(cidr("0.0.0.0/0"), ip("192.168.1.254"))
            .unwrap();
        table
            .add_via(cidr("10.0.0.0/8"), ip("10.10.0.254"))
            .unwrap();
        table
            .add_via(cidr("10.1.0.0/16"), ip("10.10.0.253"))
            .unwrap();
        table
            .add_via(cidr("10.1.2.0/24"), ip("192.168.1.252"))
            .unwrap();
        table
            .add_via(cidr("10.1.2.3/32"), ip("192.168.1.251"))
            .unwrap();

        assert_eq!(table.lookup(ip("8.8.8.8")), hop(1, "192.168.1.254"));
        assert_eq!(table.lookup(ip("10.200.0.1")), hop(0, "10.10.0.254"));
        assert_eq!(table.lookup(ip("10.1.9.9")), hop(0, "10.10.0.253"));
        assert_eq!(table.lookup(ip("10.1.2.4")), hop(1, "192.168.1.252"));
        assert_eq!(table.lookup(ip("10.1.2.3")), hop(1, "192.168.1.251"));
        // The connected /24 beats 10/8.
        assert_eq!(table.lookup(ip("10.10.0.9")), hop(0, "10.10.0.9"));
        assert_eq!(table.routes().len(), 7);
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let mut table = two_ports();
        table
            .add_via(cidr("10.1.2.3/32"), ip("192.168.1.251"))
            .unwrap();
        table
            .add_via(cidr("0.0.0.0/0"), ip("192.168.1.254"))
            .unwrap();
        table
            .add_via(cidr("10.1.0.0/16"), ip("10.10.0.253"))
            .unwrap();
        assert_eq!(table.lookup(ip("10.1.2.3")), hop(1, "192.168.1.251"));
        assert_eq!(table.lookup(ip("10.1.2.4")), hop(0, "10.10.0.253"));
        assert_eq!(table.lookup(ip("1.1.1.1")), hop(1, "192.168.1.254"));
        let lens: Vec<u8> = table.levels.iter().map(|l| l.prefix_len).collect();
        assert_eq!(lens, [32, 24, 16, 0]);
    }

    #[test]
    fn via_route_takes_the_gateways_port() {
        let mut table = two_ports();
        table
            .add_via(cidr("172.16.0.0/12"), ip("192.168.1.9"))
            .unwrap();
        assert_eq!(table.routes()[2].port, 1);
        assert_eq!(table.lookup(ip("172.20.1.1")), hop(1, "192.168.1.9"));
    }

    #[test]
    fn gateway_must_be_on_a_connected_network() {
        let mut table = two_ports();
        let err = table
            .add_via(cidr("172.16.0.0/12"), ip("10.99.0.1"))
            .unwrap_err();
        assert_eq!(
            err,
            RouteError::GatewayNotConnected {
                prefix: cidr("172.16.0.0/12"),
                gateway: ip("10.99.0.1"),
            }
        );
        assert_eq!(
            err.to_string(),
            "route 172.16.0.0/12 via 10.99.0.1: the gateway is not on a connected network"
        );
        // A gateway reachable only through another via route is refused too.
        table
            .add_via(cidr("10.99.0.0/16"), ip("10.10.0.254"))
            .unwrap();
        assert!(table
            .add_via(cidr("172.16.0.0/12"), ip("10.99.0.1"))
            .is_err());
    }

    #[test]
    fn gateway_must_not_be_our_own_address() {
        let mut table = two_ports();
        let err = table
            .add_via(cidr("0.0.0.0/0"), ip("10.10.0.1"))
            .unwrap_err();
        assert!(matches!(err, RouteError::GatewayIsLocal { .. }));
    }

    #[test]
    fn host_bits_are_an_error() {
        let mut table = two_ports();
        let err = table
            .add_via(cidr("10.0.0.1/8"), ip("10.10.0.254"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "route 10.0.0.1/8: host bits are set (did you mean 10.0.0.0/8?)"
        );
        assert_eq!(table.routes().len(), 2);
    }

    #[test]
    fn duplicates_are_an_error() {
        let mut table = two_ports();
        table
            .add_via(cidr("10.0.0.0/8"), ip("10.10.0.254"))
            .unwrap();
        let err = table
            .add_via(cidr("10.0.0.0/8"), ip("192.168.1.254"))
            .unwrap_err();
        assert_eq!(
            err,
            RouteError::Duplicate {
                prefix: cidr("10.0.0.0/8")
            }
        );
        assert!(err.to_string().contains("10.0.0.0/8"));
        // A second interface on the same network, or a via route for a
        // connected network, is a duplicate too.
        assert!(table.add_connected(cidr("10.10.0.2/24"), 1).is_err());
        assert!(table
            .add_via(cidr("192.168.1.0/24"), ip("10.10.0.254"))
            .is_err());
        assert_eq!(table.lookup(ip("10.2.0.0")), hop(0, "10.10.0.254"));
        assert_eq!(table.routes().len(), 3);
    }

    #[test]
    fn connected_helpers() {
        let mut table = two_ports();
        table.add_via(cidr("0.0.0.0/0"), ip("10.10.0.254")).unwrap();
        assert_eq!(table.connected_port(ip("10.10.0.50")), Some(0));
        assert_eq!(table.connected_port(ip("192.168.1.50")), Some(1));
        // Reachable through the default route, but not connected.
        assert_eq!(table.connected_port(ip("8.8.8.8")), None);
        assert!(table.is_connected_to(0, ip("10.10.0.50")));
        assert!(!table.is_connected_to(1, ip("10.10.0.50")));
        assert!(!table.is_connected_to(0, ip("8.8.8.8")));
        assert_eq!(
            table.local_address_for(ip("192.168.1.50")),
            Some(ip("192.168.1.1"))
        );
        assert_eq!(table.local_address_for(ip("8.8.8.8")), None);
    }

    #[test]
    fn display() {
        let mut table = two_ports();
        table.add_via(cidr("0.0.0.0/0"), ip("10.10.0.254")).unwrap();
        let lines: Vec<String> = table.routes().iter().map(Route::to_string).collect();
        assert_eq!(
            lines,
            [
                "10.10.0.0/24 port 0 src 10.10.0.1",
                "192.168.1.0/24 port 1 src 192.168.1.1",
                "0.0.0.0/0 via 10.10.0.254 port 0",
            ]
        );
    }
}
