//! EAL start-up and clean-up.

use super::DpdkError;
use std::ffi::{c_char, CString};

/// Proof that EAL is up; cleans it up when dropped.
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Starts EAL with `args` (without the program name, which is added).
    /// EAL may only be started once per process.
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("sluice").map_err(|_| DpdkError::new("rte_eal_init", 22))?);
        for a in args {
            owned.push(CString::new(a.as_str()).map_err(|_| DpdkError::new("rte_eal_init", 22))?);
        }
        // EAL keeps pointers into argv (and reorders it), so both the strings
        // and the array live for the rest of the process.
        let owned: &'static mut [CString] = Box::leak(owned.into_boxed_slice());
        let argv: &'static mut [*mut c_char] = Box::leak(
            owned
                .iter()
                .map(|s| s.as_ptr() as *mut c_char)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive
        // the process; EAL is initialised once (callers own the only Eal).
        let rc = unsafe { dpdk_sys::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(DpdkError::from_errno("rte_eal_init"));
        }
        Ok(Eal { _private: () })
    }

    /// Number of ethdev ports EAL found (PCI devices and vdevs).
    pub fn port_count(&self) -> u16 {
        // SAFETY: EAL is initialised.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    /// NUMA socket of the calling thread, for allocations.
    pub fn socket_id(&self) -> i32 {
        // SAFETY: EAL is initialised.
        unsafe { dpdk_sys::rte_socket_id() as i32 }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: EAL was initialised by `init`; no lcore is running (workers
        // are joined before the Eal is dropped).
        unsafe {
            dpdk_sys::rte_eal_cleanup();
        }
    }
}
