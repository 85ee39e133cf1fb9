//! Preparing the kernel interface behind a kernel-fed virtual port, so that
//! what the kernel hands the port fits in one frame.
//!
//! An af_packet port copies each frame into a ring slot of 2 KiB; anything
//! longer is cut short. The kernel makes such frames in two ways, both on by
//! default: a veth's peer with segmentation offload sends TCP/UDP
//! super-frames of up to 64 KiB whole (the receiver never segments), and
//! GRO/LRO on the interface itself merges received segments. So, for the
//! life of the port: GRO and LRO off on the interface, and, on a veth, the
//! pass-through XDP program, which makes the peer segment before sending
//! (attached first: some kernels turn GRO on with it).
//! Checksums the peer leaves partial are completed by the pipeline.
//!
//! When the port gets a kernel twin, the interface is also handed over to
//! it (`hand_over_to_twin`): the kernel's own stack must not answer on a
//! wire DPDK drives, or it would see every frame twice (once natively, once
//! through the twin) and, forwarding, send the real servers' replies out
//! untranslated. So a tc ingress filter drops every frame after packet
//! sockets (the af_packet PMD, tcpdump) have had their copy, and the
//! interface's IPv4 addresses move to the twin (put back on exit; routes
//! through them other than the connected ones are not).

use super::bpf::{load_verdict, BPF_PROG_TYPE_SCHED_CLS};
use super::{ethtool, ifname, netlink, xdp::PassProgram};
use crate::net::cidr::Ipv4Cidr;
use log::{info, warn};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

/// Priority of sluice's drop-all ingress filter (a fixed one, so that it
/// can be removed alone from a clsact qdisc that was there before).
const INGRESS_PRIO: u16 = 0x5100;
/// tc's "drop this packet" verdict.
const TC_ACT_SHOT: i32 = 2;

/// What was changed on one interface; put back on drop.
pub struct KernelPortGuard {
    port: u16,
    ifname: String,
    ifindex: u32,
    restore_gro: bool,
    restore_lro: bool,
    /// Some(created the qdisc) once the ingress filter is in.
    ingress: Option<bool>,
    /// IPv4 addresses taken off the interface for its twin.
    moved: Vec<Ipv4Cidr>,
    _xdp: Option<PassProgram>,
}

impl KernelPortGuard {
    /// Prepares interface `ifindex` behind DPDK port `port`. Never fails:
    /// what cannot be done is logged with what the operator can do instead
    /// (large segments would then be dropped and counted as truncated).
    pub fn prepare(port: u16, ifindex: u32) -> Option<KernelPortGuard> {
        let name = ifname(ifindex)?;
        let mut guard = KernelPortGuard {
            port,
            ifindex,
            restore_gro: false,
            restore_lro: false,
            ingress: None,
            moved: Vec::new(),
            _xdp: None,
            ifname: name.clone(),
        };
        if ethtool::driver(&name).is_ok_and(|d| d == "veth") {
            match PassProgram::attach(ifindex) {
                Ok(p) => {
                    info!("port {port} ({name}): veth peer made to segment before sending (pass-through XDP program attached)");
                    guard._xdp = Some(p);
                }
                Err(e) => warn!(
                    "port {port} ({name}): cannot attach the pass-through XDP program ({e}; needs CAP_BPF and CAP_NET_ADMIN): \
                     segments the veth peer sends whole will be dropped as truncated; \
                     turn segmentation offload off on the peer instead (ethtool -K PEER tso off gso off)"
                ),
            }
        }
        // After the XDP program: some kernels turn GRO on when one is attached.
        if ethtool::gro(&name).unwrap_or(false) {
            match ethtool::set_gro(&name, false) {
                Ok(()) => guard.restore_gro = true,
                Err(e) => warn!(
                    "port {port} ({name}): cannot turn GRO off ({e}): merged frames will not fit"
                ),
            }
        }
        if ethtool::lro(&name).unwrap_or(false) {
            match ethtool::set_lro(&name, false) {
                Ok(()) => guard.restore_lro = true,
                Err(e) => warn!(
                    "port {port} ({name}): cannot turn LRO off ({e}): merged frames will not fit"
                ),
            }
        }
        Some(guard)
    }

    /// The interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The DPDK port on the interface.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Undoes `hand_over_to_twin`: the addresses back, the filter gone.
    pub fn take_back(&mut self) {
        for a in self.moved.drain(..) {
            let _ = netlink::addr_add(self.ifindex, a);
        }
        match self.ingress.take() {
            Some(true) => {
                let _ = netlink::clsact_del(self.ifindex);
            }
            Some(false) => {
                let _ = netlink::ingress_filter_del(self.ifindex, INGRESS_PRIO);
            }
            None => {}
        }
    }

    /// Hands the interface over to the port's kernel twin (see the module
    /// documentation). Call before the twin gets its addresses, so that the
    /// connected routes are the twin's.
    pub fn hand_over_to_twin(&mut self, port: u16) -> Result<(), String> {
        let name = self.ifname.clone();
        let created =
            netlink::clsact_add(self.ifindex).map_err(|e| format!("{name}: clsact qdisc: {e}"))?;
        let attached = load_verdict(
            BPF_PROG_TYPE_SCHED_CLS,
            0,
            TC_ACT_SHOT,
            b"sluice_drop\0\0\0\0\0",
        )
        .and_then(|prog| netlink::ingress_bpf(self.ifindex, INGRESS_PRIO, prog.as_raw_fd()));
        if let Err(e) = attached {
            if created {
                let _ = netlink::clsact_del(self.ifindex);
            }
            return Err(format!("{name}: ingress filter: {e}"));
        }
        self.ingress = Some(created);
        for a in ipv4_addrs(&name) {
            match netlink::addr_del(self.ifindex, a) {
                Ok(()) => self.moved.push(a),
                Err(e) => warn!("port {port} ({name}): cannot take {a} off: {e}"),
            }
        }
        info!(
            "port {port} ({name}): the kernel's stack keeps off it (ingress dropped after \
             packet sockets){}",
            if self.moved.is_empty() {
                String::new()
            } else {
                format!(
                    "; its addresses {} are the twin's while sluice runs",
                    self.moved
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        Ok(())
    }
}

/// The IPv4 addresses (with prefix lengths) of interface `name`.
fn ipv4_addrs(name: &str) -> Vec<Ipv4Cidr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return out;
    }
    let mut cur = list;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_name is a NUL-terminated string.
        let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: a non-null ifa_addr points at a sockaddr of its family.
        if n.to_bytes() != name.as_bytes()
            || i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET
        {
            continue;
        }
        // SAFETY: AF_INET addresses and netmasks are sockaddr_in.
        let (addr, mask) = unsafe {
            (
                (*(ifa.ifa_addr as *const libc::sockaddr_in))
                    .sin_addr
                    .s_addr,
                (*(ifa.ifa_netmask as *const libc::sockaddr_in))
                    .sin_addr
                    .s_addr,
            )
        };
        let addr = Ipv4Addr::from(u32::from_be(addr));
        let len = u32::from_be(mask).count_ones() as u8;
        if let Ok(c) = Ipv4Cidr::new(addr, len) {
            out.push(c);
        }
    }
    // SAFETY: list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    out
}

impl Drop for KernelPortGuard {
    fn drop(&mut self) {
        self.take_back();
        if self.restore_gro {
            let _ = ethtool::set_gro(&self.ifname, true);
        }
        if self.restore_lro {
            let _ = ethtool::set_lro(&self.ifname, true);
        }
    }
}
