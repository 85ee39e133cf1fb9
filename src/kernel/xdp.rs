//! A pass-through XDP program (it returns `XDP_PASS` for every frame),
//! loaded with the `bpf()` system call and attached through a BPF link, so
//! that it detaches by itself when the link's file descriptor closes (when
//! sluice exits, however it exits).
//!
//! Why sluice wants a program that does nothing: a veth whose peer carries
//! an XDP program turns its own segmentation offloads (TSO, USO) off, so the
//! peer's kernel cuts TCP and UDP super-frames to the MTU before they cross
//! the pair. Without it, an af_packet port on a veth receives 64 KiB frames
//! that do not fit its ring's frame and arrive cut short.

use super::bpf::{bpf, load_verdict, BPF_LINK_CREATE, BPF_PROG_TYPE_XDP};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_DRV_MODE`: the driver's own XDP hook (veth has one).
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `XDP_PASS`.
const XDP_PASS: i32 = 2;

/// The head of `union bpf_attr` for BPF_LINK_CREATE.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u8; 112],
}

/// A pass-through XDP program attached to an interface; detached when
/// dropped (or when the process ends).
pub struct PassProgram {
    _link: OwnedFd,
    _prog: OwnedFd,
}

impl PassProgram {
    /// Loads the program and attaches it to `ifindex` in driver mode. Needs
    /// CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN; fails with EBUSY when
    /// another XDP program is attached.
    pub fn attach(ifindex: u32) -> io::Result<PassProgram> {
        let prog = load_verdict(
            BPF_PROG_TYPE_XDP,
            BPF_XDP,
            XDP_PASS,
            b"sluice_pass\0\0\0\0\0",
        )?;
        let mut link = LinkCreateAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags: XDP_FLAGS_DRV_MODE,
            _rest: [0; 112],
        };
        let link = bpf(BPF_LINK_CREATE, &mut link)?;
        Ok(PassProgram {
            _link: link,
            _prog: prog,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_sizes_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 128);
    }
}
