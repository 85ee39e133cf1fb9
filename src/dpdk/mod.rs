//! The edge: a thin, safe layer over DPDK (EAL, mempools, mbufs, ports,
//! lcores). Nothing above `dataplane::worker` touches DPDK; the packet core
//! sees only byte slices.

pub mod capture;
mod eal;
mod error;
pub mod flow;
mod lcore;
mod mbuf;
mod mempool;
mod port;
mod ring;
mod vdev;

pub use eal::Eal;
pub use error::DpdkError;
pub use lcore::{worker_lcores, LcoreJoin};
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{LinkStatus, Port, PortInfo, PortSetup, PortStats, RxQueue, TxQueue};
pub use ring::{ring, RingConsumer, RingProducer};
pub use vdev::Vdev;

/// The largest burst handed to or taken from a queue at once.
pub const BURST: usize = 32;

/// Time-stamp counter of this core: cheap (no syscall), monotonic. Read
/// inline rather than through DPDK's wrapped `rte_rdtsc`, which costs a call
/// on every poll-loop iteration.
#[inline(always)]
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads the CPU's time-stamp counter; no memory is touched.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: as above, through DPDK.
    unsafe {
        dpdk_sys::rte_rdtsc()
    }
}

/// TSC ticks per second, as measured by EAL at start.
pub fn tsc_hz() -> u64 {
    // SAFETY: plain getter of a value EAL set during rte_eal_init.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}
