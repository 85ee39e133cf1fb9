//! Loading the two tiny eBPF programs sluice uses, with the `bpf()` system
//! call and no library: each is `r0 = VALUE; exit`, a verdict for every
//! packet. `xdp` attaches one that passes everything; `vport` one that
//! drops everything at a kernel interface's tc ingress.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
pub(super) const BPF_LINK_CREATE: libc::c_long = 28;
pub(super) const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
pub(super) const BPF_PROG_TYPE_XDP: u32 = 6;

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

/// `r0 = value; exit`.
const fn verdict_program(value: i32) -> [Insn; 2] {
    [
        // BPF_ALU64 | BPF_MOV | BPF_K
        Insn {
            code: 0xb7,
            regs: 0,
            off: 0,
            imm: value,
        },
        // BPF_JMP | BPF_EXIT
        Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ]
}

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

pub(super) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
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

/// Loads `r0 = verdict; exit` as a program of `prog_type` (expected to be
/// attached as `attach_type`), named `name`. Needs CAP_BPF (or
/// CAP_SYS_ADMIN).
pub(super) fn load_verdict(
    prog_type: u32,
    attach_type: u32,
    verdict: i32,
    name: &[u8; 16],
) -> io::Result<OwnedFd> {
    let program = verdict_program(verdict);
    let license = b"GPL\0";
    let mut load = ProgLoadAttr {
        prog_type,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: *name,
        prog_ifindex: 0,
        expected_attach_type: attach_type,
        _rest: [0; 56],
    };
    bpf(BPF_PROG_LOAD, &mut load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_sizes_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 128);
    }
}
