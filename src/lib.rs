//! sluice: a layer-4 load balancer (IPVS NAT and FULLNAT) on DPDK.
//!
//! The layout is the architecture: `wire` (packet formats) -> `net` (ARP,
//! neighbours, routes) -> `lb` (services, schedulers, sessions, NAT) ->
//! `dataplane` (the per-packet pipeline and the lcore loop), with `dpdk` at
//! the edge and `control` (configuration) beside it; `kernel` holds what
//! sluice asks of the host's Linux about the interfaces behind its ports. Everything but `dpdk`
//! and the lcore loop works on byte slices and plain structs.

pub mod control;
pub mod dataplane;
pub mod dpdk;
pub mod kernel;
pub mod lb;
pub mod net;
pub mod wire;
