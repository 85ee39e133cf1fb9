//! Lock-free single-producer/single-consumer rings of mbufs: how a worker
//! hands a packet to the worker that owns its session.
//!
//! DPDK's rule for such a ring (exactly one lcore enqueues, exactly one
//! dequeues) is a type here: `ring()` returns one `RingProducer` and one
//! `RingConsumer`, each `Send` (it moves to its lcore) but neither `Clone`
//! nor `Sync`, and only the producer can enqueue, only the consumer dequeue.

use super::{DpdkError, Mbuf, BURST};
use arrayvec::ArrayVec;
use dpdk_sys as sys;
use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

/// An `rte_ring` created single-producer/single-consumer; freed (with the
/// mbufs still in it) when both ends are gone.
struct Ring(NonNull<sys::rte_ring>);

// SAFETY: shared between the producer's and the consumer's lcore; each end
// only calls its own side of the ring (rte_ring's SP/SC functions are safe
// against the other side running concurrently).
unsafe impl Send for Ring {}
unsafe impl Sync for Ring {}

/// The enqueueing end of a ring.
pub struct RingProducer(Arc<Ring>);

/// The dequeueing end of a ring.
pub struct RingConsumer(Arc<Ring>);

/// A new SP/SC ring of `size` slots (a power of two; usable: size - 1).
pub fn ring(name: &str, size: u32, socket: i32) -> Result<(RingProducer, RingConsumer), DpdkError> {
    let ring = Arc::new(Ring::new(name, size, socket)?);
    Ok((RingProducer(Arc::clone(&ring)), RingConsumer(ring)))
}

impl RingProducer {
    /// Moves as many of `pkts` as fit into the ring; the rest stay in `pkts`.
    #[inline]
    pub fn enqueue(&mut self, pkts: &mut ArrayVec<Mbuf, BURST>) -> usize {
        self.0.enqueue(pkts)
    }
}

impl RingConsumer {
    /// Takes up to the free room of `out` packets.
    #[inline]
    pub fn dequeue(&mut self, out: &mut ArrayVec<Mbuf, BURST>) -> usize {
        self.0.dequeue(out)
    }
}

impl Ring {
    /// `size` must be a power of two (usable slots: size - 1).
    fn new(name: &str, size: u32, socket: i32) -> Result<Ring, DpdkError> {
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

    /// Producer end only (see `RingProducer`).
    #[inline]
    fn enqueue(&self, pkts: &mut ArrayVec<Mbuf, BURST>) -> usize {
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

    /// Consumer end only (see `RingConsumer`).
    #[inline]
    fn dequeue(&self, out: &mut ArrayVec<Mbuf, BURST>) -> usize {
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
        // Both ends are gone: free whatever is still queued, then the ring.
        let mut rest: ArrayVec<Mbuf, BURST> = ArrayVec::new();
        while self.dequeue(&mut rest) > 0 {
            rest.clear();
        }
        // SAFETY: no lcore uses the ring any more.
        unsafe { sys::rte_ring_free(self.0.as_ptr()) }
    }
}
