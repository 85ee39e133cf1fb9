//! Lock-free single-producer/single-consumer rings of mbufs: how a worker
//! hands a packet to the worker that owns its session.

use super::{DpdkError, Mbuf, BURST};
use arrayvec::ArrayVec;
use dpdk_sys as sys;
use std::ffi::CString;
use std::ptr::NonNull;

/// An `rte_ring` created single-producer/single-consumer: exactly one lcore
/// enqueues and exactly one dequeues, so neither end needs atomics
/// stronger than acquire/release.
pub struct Ring(NonNull<sys::rte_ring>);

// SAFETY: the ring is shared between two lcores by design; the SP/SC
// contract (one enqueuer, one dequeuer) is kept by the worker set-up, which
// gives each ring's producer end to one worker and consumer end to another.
unsafe impl Send for Ring {}
unsafe impl Sync for Ring {}

impl Ring {
    /// `size` must be a power of two (usable slots: size - 1).
    pub fn new(name: &str, size: u32, socket: i32) -> Result<Ring, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::new("rte_ring_create", 22))?;
        // SAFETY: cname is a valid C string; flags select SP/SC.
        let p = unsafe {
            sys::rte_ring_create(
                cname.as_ptr(),
                size,
                socket,
                sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ,
            )
        };
        NonNull::new(p)
            .map(Ring)
            .ok_or_else(|| DpdkError::from_errno(format!("rte_ring_create({name})")))
    }

    /// Moves as many of `pkts` as fit into the ring; the rest stay in `pkts`.
    /// Producer end only.
    #[inline]
    pub fn enqueue(&self, pkts: &mut ArrayVec<Mbuf, BURST>) -> usize {
        let len = pkts.len();
        if len == 0 {
            return 0;
        }
        // SAFETY: Mbuf is a transparent mbuf pointer; the ring takes
        // ownership of the first n, which are removed without Drop.
        unsafe {
            let base = pkts.as_mut_ptr();
            let n = sys::rte_ring_enqueue_burst(
                self.0.as_ptr(),
                base as *const *mut std::ffi::c_void,
                len as u32,
                std::ptr::null_mut(),
            ) as usize;
            if n < len {
                std::ptr::copy(base.add(n), base, len - n);
            }
            pkts.set_len(len - n);
            n
        }
    }

    /// Takes up to the free room of `out` packets. Consumer end only.
    #[inline]
    pub fn dequeue(&self, out: &mut ArrayVec<Mbuf, BURST>) -> usize {
        let len = out.len();
        // SAFETY: the spare capacity holds BURST - len mbuf pointers; every
        // pointer dequeued was an owned mbuf enqueued by the producer.
        unsafe {
            let slots = out.as_mut_ptr().add(len);
            let n = sys::rte_ring_dequeue_burst(
                self.0.as_ptr(),
                slots as *mut *mut std::ffi::c_void,
                (BURST - len) as u32,
                std::ptr::null_mut(),
            ) as usize;
            out.set_len(len + n);
            n
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Free whatever is still queued, then the ring (both ends stopped).
        let mut rest: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        while self.dequeue(&mut rest) > 0 {
            rest.clear();
        }
        // SAFETY: no lcore uses the ring any more.
        unsafe { sys::rte_ring_free(self.0.as_ptr()) }
    }
}
