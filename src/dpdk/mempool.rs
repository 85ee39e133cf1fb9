//! Packet buffer pools.

use super::DpdkError;
use dpdk_sys as sys;
use std::ffi::CString;
use std::ptr::NonNull;

/// A pool of packet buffers (`rte_pktmbuf_pool_create`). Thread-safe: every
/// lcore allocates from it through its own per-lcore cache.
pub struct Mempool(NonNull<sys::rte_mempool>);

// SAFETY: rte_mempool is designed for concurrent use from many lcores.
unsafe impl Send for Mempool {}
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `size` mbufs (best as 2^n - 1), each with DPDK's default data room.
    pub fn new(name: &str, size: u32, cache: u32, socket: i32) -> Result<Mempool, DpdkError> {
        let cname =
            CString::new(name).map_err(|_| DpdkError::new("rte_pktmbuf_pool_create", 22))?;
        // SAFETY: cname is a valid C string; the other arguments are values.
        let p = unsafe {
            sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                size,
                cache,
                0,
                sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        NonNull::new(p).map(Mempool).ok_or_else(|| {
            DpdkError::from_errno(format!("rte_pktmbuf_pool_create({name}, {size})"))
        })
    }

    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.0.as_ptr()
    }

    /// Buffers currently free in the pool (for statistics, not per packet).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid for the lifetime of self.
        unsafe { sys::rte_mempool_avail_count(self.0.as_ptr()) }
    }
}

impl Mempool {
    /// Buffers taken from the pool, per-lcore caches counted as free.
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid for the lifetime of self.
        unsafe { sys::rte_mempool_in_use_count(self.0.as_ptr()) }
    }

    /// Buffers the pool was made with.
    pub fn size(&self) -> u32 {
        // SAFETY: as above; `size` is set at creation and never changes.
        unsafe { (*self.0.as_ptr()).size }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: dropped only after ports are stopped and workers joined,
        // so no mbuf of this pool is in use by DPDK.
        unsafe { sys::rte_mempool_free(self.0.as_ptr()) }
    }
}
