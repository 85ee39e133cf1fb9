//! The host kernel at the edge: what sluice asks of Linux itself (not of
//! DPDK) about the interfaces behind its virtual ports. Set-up only, never on
//! the packet path.
//!
//! - `ethtool`: an interface's driver and its receive offloads;
//! - `bpf`: loading the two one-verdict eBPF programs below;
//! - `xdp`: a pass-through XDP program attached through a BPF link;
//! - `vport`: what a kernel-fed port (net_af_packet on a veth) needs so that
//!   the kernel hands it frames no larger than the MTU;
//! - `netlink`: addresses, links and routes (rtnetlink);
//! - `twin`: the host side of the ports' kernel twins.

mod bpf;
pub mod ethtool;
pub mod netlink;
pub mod twin;
pub mod vport;
pub mod xdp;

use std::ffi::CStr;

/// The name of interface `ifindex`, if it exists.
pub fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires; on
    // success it is NUL-terminated.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null means buf now holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}
