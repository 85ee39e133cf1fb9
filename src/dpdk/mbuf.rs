//! An owned packet buffer.

use super::Mempool;
use dpdk_sys as sys;
use std::ptr::NonNull;

/// One single-segment packet buffer. Owned: dropping it frees it back to its
/// pool; handing it to `Port::tx_burst` gives it to the NIC.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf value at a time and may move
// between lcores (e.g. through a ring); it is not Sync.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// A new empty buffer from `pool`, or None when the pool is exhausted.
    #[inline]
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: the pool is valid; a null result means exhausted.
        NonNull::new(unsafe { sys::rte_pktmbuf_alloc(pool.as_ptr()) }).map(Mbuf)
    }

    /// # Safety
    /// `raw` must be a valid mbuf that nobody else owns.
    #[inline]
    pub unsafe fn from_raw(raw: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf(raw)
    }

    /// Gives up ownership without freeing (the NIC or a ring now owns it).
    #[inline]
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    #[inline]
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: we own a valid mbuf.
        unsafe { self.0.as_ref() }
    }

    /// True when the packet spans more than one segment.
    #[inline]
    pub fn is_chained(&self) -> bool {
        self.raw().nb_segs != 1
    }

    /// The bytes of the first segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the buffer
        // DPDK allocated for this mbuf, which we own.
        unsafe {
            std::slice::from_raw_parts(
                (m.buf_addr as *const u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in data(); &mut self gives exclusive access.
        unsafe {
            let m = self.0.as_mut();
            std::slice::from_raw_parts_mut(
                (m.buf_addr as *mut u8).add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    /// Room available after the data offset (the most `set_len` accepts).
    #[inline]
    pub fn capacity(&self) -> usize {
        let m = self.raw();
        (m.buf_len - m.data_off) as usize
    }

    /// Sets the length of a single-segment packet; returns false if `len`
    /// exceeds the buffer.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> bool {
        if len > self.capacity() {
            return false;
        }
        // SAFETY: exclusive access; len fits in the buffer.
        let m = unsafe { self.0.as_mut() };
        m.data_len = len as u16;
        m.pkt_len = len as u32;
        true
    }

    /// Marks the packet for IPv4 + TCP/UDP checksum offload on transmit
    /// (RTE_MBUF_F_TX_IPV4 | IP_CKSUM | TCP/UDP_CKSUM with l2/l3 lengths).
    #[inline]
    pub fn request_tx_checksums(&mut self, l2_len: usize, l3_len: usize, tcp: bool) {
        // SAFETY: exclusive access to a valid mbuf.
        let m = unsafe { self.0.as_mut() };
        let l4 = if tcp {
            sys::RTE_MBUF_F_TX_TCP_CKSUM
        } else {
            sys::RTE_MBUF_F_TX_UDP_CKSUM
        };
        m.ol_flags |= sys::RTE_MBUF_F_TX_IPV4 | sys::RTE_MBUF_F_TX_IP_CKSUM | l4;
        // tx_offload packs l2_len (7 bits) then l3_len (9 bits).
        m.__bindgen_anon_3.tx_offload = (l2_len as u64 & 0x7f) | ((l3_len as u64 & 0x1ff) << 7);
    }

    /// What the NIC found of the IPv4 header checksum on receive: Some(true)
    /// good, Some(false) bad, None when it did not check (no offload, not
    /// IPv4, or a virtual port).
    #[inline]
    pub fn rx_ip_checksum_good(&self) -> Option<bool> {
        match self.raw().ol_flags & u64::from(sys::RTE_MBUF_F_RX_IP_CKSUM_MASK) {
            f if f == u64::from(sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD) => Some(true),
            f if f == u64::from(sys::RTE_MBUF_F_RX_IP_CKSUM_BAD) => Some(false),
            _ => None,
        }
    }

    /// The ethdev port this packet was received on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    #[inline]
    pub fn set_port(&mut self, port: u16) {
        // SAFETY: exclusive access to a valid mbuf.
        unsafe { self.0.as_mut().port = port };
    }

    /// Prefetches the first cache line of packet data.
    #[inline]
    pub fn prefetch(&self) {
        let m = self.raw();
        // SAFETY: computes an address inside the mbuf's buffer; prefetch
        // never faults.
        unsafe {
            let p = (m.buf_addr as *const u8).add(m.data_off as usize);
            core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0);
        }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; freeing returns it to its pool.
        unsafe { sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}
