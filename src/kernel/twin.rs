//! The host side of the ports' kernel twins: each twin (a tap interface
//! the dataplane made with its port's MAC) gets the port's addresses and is
//! brought up; the configured routes follow the configuration into the
//! kernel's main table. Netlink at start and when the routes change, never
//! on the packet path.
//!
//! The kernel then reaches what sluice reaches, from the same addresses:
//! health checks, a routing daemon announcing the VIPs, ssh and tcpdump on
//! the data network. It keeps its own neighbour table: the dataplane hands
//! it the ARP replies to its requests.

use super::netlink;
use crate::control::state::RouteSpec;
use crate::net::cidr::Ipv4Cidr;
use log::{info, warn};

/// Gives the twin `name` (interface `ifindex`) the port's addresses and
/// brings it up. IPv6 is turned off on it: sluice forwards IPv4 only, and
/// the kernel's IPv6 chatter (router solicitations, MLD) has no business on
/// the data network.
pub fn configure(name: &str, ifindex: u32, addrs: &[Ipv4Cidr]) -> Result<(), String> {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    for a in addrs {
        netlink::addr_add(ifindex, *a).map_err(|e| format!("address {a} on {name}: {e}"))?;
    }
    netlink::link_up(ifindex).map_err(|e| format!("bringing {name} up: {e}"))?;
    Ok(())
}

/// The configured routes as installed in the kernel, kept in step with the
/// configuration by `sync`.
pub struct KernelRoutes {
    metric: u32,
    /// The configuration's routes at the last `sync`.
    wanted: Vec<RouteSpec>,
    /// Those of them the kernel accepted.
    installed: Vec<RouteSpec>,
}

impl KernelRoutes {
    /// Routes go in with `metric` (`kernel.route_metric`).
    pub fn new(metric: u32) -> KernelRoutes {
        KernelRoutes {
            metric,
            wanted: Vec::new(),
            installed: Vec::new(),
        }
    }

    /// Installs what `wanted` has and the kernel does not, removes what the
    /// configuration dropped. A route the kernel refuses (say, a gateway
    /// not on any twin's subnet) is logged and tried again on the next
    /// change; the dataplane's own routing does not depend on it.
    pub fn sync(&mut self, wanted: &[RouteSpec]) {
        if self.wanted == wanted {
            return;
        }
        self.wanted = wanted.to_vec();
        for r in self.installed.iter().filter(|r| !wanted.contains(r)) {
            match netlink::route_del(r.prefix, r.via, self.metric) {
                Ok(()) => info!("kernel: route {} via {} removed", r.prefix, r.via),
                Err(e) => warn!("kernel: removing route {} via {}: {e}", r.prefix, r.via),
            }
        }
        let mut installed = Vec::with_capacity(wanted.len());
        for r in wanted {
            if self.installed.contains(r) {
                installed.push(*r);
                continue;
            }
            match netlink::route_add(r.prefix, r.via, self.metric) {
                Ok(()) => {
                    info!(
                        "kernel: route {} via {} (metric {})",
                        r.prefix, r.via, self.metric
                    );
                    installed.push(*r);
                }
                Err(e) => warn!("kernel: route {} via {}: {e}", r.prefix, r.via),
            }
        }
        self.installed = installed;
    }
}
