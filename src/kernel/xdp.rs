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

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_DRV_MODE`: the driver's own XDP hook (veth has one).
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `XDP_PASS`.
const XDP_PASS: i32 = 2;

/// One eBPF instruction.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst register in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// `r0 = XDP_PASS; exit`.
const PASS_PROGRAM: [Insn; 2] = [
    // BPF_ALU64 | BPF_MOV | BPF_K
    Insn {
        code: 0xb7,
        regs: 0,
        off: 0,
        imm: XDP_PASS,
    },
    // BPF_JMP | BPF_EXIT
    Insn {
        code: 0x95,
        regs: 0,
        off: 0,
        imm: 0,
    },
];

/// The head of `union bpf_attr` for BPF_PROG_LOAD; the rest stays zero.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    /// Up to the 128 bytes every kernel since 5.x accepts (all zero).
    _rest: [u8; 56],
}

/// The head of `union bpf_attr` for BPF_LINK_CREATE.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u8; 112],
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: attr is a live, fully initialised bpf_attr prefix whose size
    // is passed along; the kernel reads at most that many bytes and checks
    // that what it does not know is zero.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success these commands return a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
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
        let license = b"GPL\0";
        let mut load = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: PASS_PROGRAM.len() as u32,
            insns: PASS_PROGRAM.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
            prog_name: *b"sluice_pass\0\0\0\0\0",
            prog_ifindex: 0,
            expected_attach_type: BPF_XDP,
            _rest: [0; 56],
        };
        let prog = bpf(BPF_PROG_LOAD, &mut load)?;
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
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 128);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 128);
    }
}
