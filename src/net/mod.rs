//! Layer-3 state the dataplane consults for every packet it sends: IPv4
//! prefixes (`cidr`), the routing table (`route`), the ARP neighbour cache
//! with its per-neighbour queue of packets waiting for resolution
//! (`neighbour`), and the map of sluice's own addresses that classifies
//! every packet's destination and source (`addr_map`).
//!
//! Plain data structures only: no DPDK, no packet parsing, no clock. Callers
//! pass the current time as milliseconds from a monotonic clock, so tests can
//! drive every timer by hand. After construction, lookups and the
//! per-packet calls allocate nothing, take no locks and never panic.

pub mod addr_map;
pub mod cidr;
pub mod hash;
pub mod neighbour;
pub mod nexthop_cache;
pub mod route;

pub use cidr::{CidrError, Ipv4Cidr};
pub use neighbour::{
    Enqueue, NeighbourConfig, NeighbourError, NeighbourEvent, NeighbourInfo, NeighbourState,
    NeighbourTable, MAX_PENDING,
};
pub use route::{NextHop, Route, RouteError, RouteTable};

/// An Ethernet MAC address, in wire order.
pub type MacAddr = [u8; 6];
