//! The exception path to the host kernel: what arrives for sluice's own
//! interface addresses and the dataplane does not handle itself (TCP and
//! UDP, ICMP other than echo requests, other protocols, ARP replies) goes
//! up to the port's kernel twin, a tap interface with the port's MAC and
//! addresses; what the kernel sends there goes out of the port unchanged.
//! So the host can run health checks, BGP, ssh or tcpdump on the data
//! network, while VIP and local-address traffic never leaves the dataplane.
//!
//! The way up is bounded per worker by token buckets (`kernel.rate`
//! frames a second, bursts of `kernel.burst`), one per port and class (ARP
//! apart from the rest): the kernel path is slow (the host's stack runs for
//! every frame) and a flood at the interface address must cost the workers
//! little and hold no mbufs; and a flood on one side, or of one kind, must
//! not starve the kernel's traffic on the other (its health checks to the
//! reals, the ARP replies that resolve them). The way down is polled once
//! per timer tick (`worker`).

use super::*;

/// Frames handed to the kernel at most, per worker: a token bucket.
#[derive(Debug, Clone)]
pub struct KernelBudget {
    /// Tokens added per millisecond, in thousandths of a frame (so rates
    /// below 1000/s still refill).
    per_ms_milli: u64,
    /// The bucket's size, in thousandths of a frame.
    cap_milli: u64,
    tokens_milli: u64,
    last_ms: u64,
}

impl KernelBudget {
    /// `rate` frames a second, bursts of `burst`; the bucket starts full.
    pub fn new(rate: u32, burst: u32) -> KernelBudget {
        let cap_milli = u64::from(burst.max(1)) * 1000;
        KernelBudget {
            per_ms_milli: u64::from(rate),
            cap_milli,
            tokens_milli: cap_milli,
            last_ms: 0,
        }
    }

    /// Takes one frame's token at time `now` (ms); false when spent.
    #[inline]
    pub fn take(&mut self, now: u64) -> bool {
        if now > self.last_ms {
            let refill = (now - self.last_ms).saturating_mul(self.per_ms_milli);
            self.tokens_milli = (self.tokens_milli.saturating_add(refill)).min(self.cap_milli);
            self.last_ms = now;
        }
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }
}

impl Default for KernelBudget {
    fn default() -> Self {
        KernelBudget::new(20_000, 512)
    }
}

/// What a frame going up is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BudgetClass {
    /// ARP replies: what resolves the kernel's neighbours.
    Arp = 0,
    /// Everything else (IPv4 for an interface address).
    Other = 1,
}

impl BudgetClass {
    fn of(frame: &[u8]) -> BudgetClass {
        if frame.get(12..14) == Some(&[0x08, 0x06][..]) {
            BudgetClass::Arp
        } else {
            BudgetClass::Other
        }
    }
}

impl<P: PacketBuf> Pipeline<P> {
    /// The verdict for an IPv4 frame to one of our interface addresses that
    /// the dataplane does not handle: up to the twin of `in_port`, or
    /// dropped as `otherwise` when the port has none. A TCP/UDP checksum
    /// the local kernel left partial (a virtual port) is completed first:
    /// the receiving kernel would take it for a corrupt one.
    pub(super) fn for_kernel(
        &mut self,
        in_port: u16,
        frame: &mut [u8],
        ip: &Ipv4Info,
        proto: Option<Proto>,
        otherwise: Counter,
    ) -> Verdict {
        if !self.snap.ports[in_port as usize].kernel_twin {
            return Verdict::Drop(otherwise);
        }
        if let (true, Some(proto)) = (ip.maybe_partial, proto) {
            let packet = &mut frame[ETH_LEN..ip.l4_end];
            if nat::complete_partial_checksum(packet, ip.l4_start - ETH_LEN, proto) {
                self.counters.inc(Counter::RxPartialChecksums);
            }
        }
        Verdict::Kernel
    }

    /// Hands `pkt` to the twin of `in_port`, within this worker's budget
    /// for that port and the frame's class.
    #[inline]
    pub(super) fn up_to_kernel(&mut self, in_port: u16, pkt: P, now: u64, io: &mut impl Io<P>) {
        let class = BudgetClass::of(pkt.data());
        let Some(buckets) = self.kernel_budgets.get_mut(in_port as usize) else {
            self.counters.inc(Counter::DropKernelRate);
            return;
        };
        if buckets[class as usize].take(now) {
            self.counters.inc(Counter::KernelIn);
            io.to_kernel(in_port, pkt);
        } else {
            self.counters.inc(Counter::DropKernelRate);
        }
    }

    /// A frame the host kernel sent through the twin of `port`: out of the
    /// port as it is (the kernel built it with the port's MAC and resolved
    /// its next hop itself).
    #[inline]
    pub fn from_kernel(&mut self, port: u16, pkt: P, io: &mut impl Io<P>) {
        self.counters.inc(Counter::KernelOut);
        io.send(port, pkt);
    }
}

#[cfg(test)]
mod tests {
    use super::KernelBudget;

    #[test]
    fn the_budget_allows_a_burst_then_the_rate() {
        let mut b = KernelBudget::new(1000, 10);
        // A full bucket: ten at once, then nothing in the same millisecond.
        assert_eq!((0..20).filter(|_| b.take(0)).count(), 10);
        // One per millisecond at 1000/s.
        assert!(b.take(1));
        assert!(!b.take(1));
        // A long pause refills to the burst, not beyond.
        assert_eq!((0..50).filter(|_| b.take(10_000)).count(), 10);
    }

    #[test]
    fn slow_rates_still_refill() {
        // 10 a second: one every 100 ms.
        let mut b = KernelBudget::new(10, 1);
        assert!(b.take(0));
        assert!(!b.take(50));
        assert!(b.take(100));
        assert!(!b.take(100));
    }

    #[test]
    fn time_going_backwards_changes_nothing() {
        let mut b = KernelBudget::new(1000, 1);
        assert!(b.take(100));
        assert!(!b.take(50));
        assert!(b.take(101));
    }
}
