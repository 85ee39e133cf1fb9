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

use super::{ethtool, ifname, xdp::PassProgram};
use log::{info, warn};

/// What was changed on one interface; put back on drop.
pub struct KernelPortGuard {
    ifname: String,
    restore_gro: bool,
    restore_lro: bool,
    _xdp: Option<PassProgram>,
}

impl KernelPortGuard {
    /// Prepares interface `ifindex` behind DPDK port `port`. Never fails:
    /// what cannot be done is logged with what the operator can do instead
    /// (large segments would then be dropped and counted as truncated).
    pub fn prepare(port: u16, ifindex: u32) -> Option<KernelPortGuard> {
        let name = ifname(ifindex)?;
        let mut guard = KernelPortGuard {
            restore_gro: false,
            restore_lro: false,
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
}

impl Drop for KernelPortGuard {
    fn drop(&mut self) {
        if self.restore_gro {
            let _ = ethtool::set_gro(&self.ifname, true);
        }
        if self.restore_lro {
            let _ = ethtool::set_lro(&self.ifname, true);
        }
    }
}
