//! How the mbuf pool is shared out, so that packets held on purpose can
//! never take the buffers receive needs.
//!
//! Two places hold packets for a while: the neighbour queues (packets
//! waiting for ARP, per worker) and the handoff rings between workers.
//! Unbounded by the pool (16 per neighbour x 1024 neighbours per worker,
//! 4096 x N(N-1) ring slots) they could together hold more mbufs than the
//! pool has; an empty pool stops every rx queue, since a NIC refills its
//! descriptors from it. So the pool is planned once, at start:
//!
//! ```text
//! mbufs = rx descriptors  (rx_desc x ports x workers: each holds a buffer)
//!       + tx descriptors  (tx_desc x ports x workers: sent, not yet freed)
//!       + kernel twins    (TWIN_DESC rx descriptors and a burst each way
//!                          per twin; the rings to and from the twins' pump,
//!                          one per worker up and one down, and a burst
//!                          buffered for them per worker)
//!       + per-core caches (1.5 x cache x lcores: DPDK's flush threshold)
//!       + bursts in flight (rx, tx, handoff buffers of every worker)
//!       + held:  half of what is left, for neighbour queues and rings
//!       + slack: the other half (ARP sluice originates, copies, jitter)
//! ```
//!
//! `held` is split between the rings (half, as equal power-of-two rings)
//! and the neighbour queues (the rest, an equal share per worker, enforced
//! by `NeighbourTable`: `drop_pending_budget`). A configuration whose pool
//! cannot cover the first four lines with room to spare is refused at start,
//! naming `dataplane.mbufs`.

use super::twin_pump;
use crate::dpdk::BURST;
use crate::net::MAX_PENDING;

/// Largest handoff ring (slots); more only adds latency under overload.
pub const MAX_RING_SIZE: u32 = 4096;
/// Smallest handoff ring worth having: two bursts.
pub const MIN_RING_SIZE: u32 = 64;
/// Descriptors of a kernel twin's queue pair (net_tap fills every rx
/// descriptor with a buffer at set-up; its tx copies into the kernel and
/// frees at once). The exception path is rate-limited, so few are needed.
pub const TWIN_DESC: u16 = 256;

/// What the pool must feed.
#[derive(Debug, Clone, Copy)]
pub struct PoolDemand {
    pub mbufs: u32,
    pub ports: u16,
    /// Kernel twins (one per port that has one).
    pub twins: u16,
    pub workers: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Per-lcore mempool cache size.
    pub cache: u32,
    /// Neighbour entries per worker (no worker needs more queued packets
    /// than its table can hold).
    pub max_neighbours: usize,
}

/// The plan: how big the handoff rings are and how many packets each
/// worker may hold waiting for ARP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbufPlan {
    /// Slots of each handoff ring (a power of two; usable: one less).
    /// 0 with one worker (no rings).
    pub ring_size: u32,
    /// Packets one worker may queue on its neighbours, over all of them.
    pub pending_per_worker: usize,
    /// Buffers set aside for descriptors, caches and bursts in flight.
    pub reserved: u64,
}

impl MbufPlan {
    /// The most mbufs the rings and neighbour queues can hold together.
    pub fn held(&self, workers: u16) -> u64 {
        let w = u64::from(workers);
        let rings = w * w.saturating_sub(1) * u64::from(self.ring_size.saturating_sub(1));
        rings + w * self.pending_per_worker as u64
    }
}

/// Plans the pool; an error (naming the field to change) when it is too
/// small for the ports and workers.
pub fn plan(d: &PoolDemand) -> Result<MbufPlan, String> {
    let ports = u64::from(d.ports);
    let workers = u64::from(d.workers.max(1));
    let burst = BURST as u64;
    let rx = u64::from(d.rx_desc) * ports * workers;
    let tx = u64::from(d.tx_desc) * ports * workers;
    let caches = (workers + 1) * u64::from(d.cache) * 3 / 2;
    // Per worker: the rx burst, a tx buffer per port, a handoff buffer per
    // other worker, and the burst taken from a ring.
    let flight = workers * burst * (1 + ports + (workers - 1) + 1);
    let twins = if d.twins == 0 {
        0
    } else {
        let ring = u64::from(twin_pump::RING_SIZE - 1);
        u64::from(d.twins) * (u64::from(TWIN_DESC) + 2 * burst)
            + (workers + 1) * ring
            + workers * burst
    };
    let reserved = rx + tx + caches + flight + twins;
    let rings = workers * (workers - 1);
    // The least worth running with: every ring at its smallest, and one
    // full neighbour queue per worker, twice (held and slack).
    let min_held = rings * u64::from(MIN_RING_SIZE - 1) + workers * MAX_PENDING as u64;
    let needed = reserved + 2 * min_held;
    if u64::from(d.mbufs) < needed {
        return Err(format!(
            "dataplane.mbufs: {} packet buffers are too few for {} port(s) x {} worker(s): \
             the rx descriptors take {rx} (dataplane.rx_desc {} x ports x workers), the tx \
             descriptors {tx} (dataplane.tx_desc {}), the per-core caches {caches}, bursts in \
             flight {flight}, the kernel twins {twins}, and packets waiting for ARP or for another worker need at least \
             {}: raise dataplane.mbufs to {needed} or more, or lower dataplane.rx_desc and \
             dataplane.tx_desc",
            d.mbufs,
            d.ports,
            workers,
            d.rx_desc,
            d.tx_desc,
            2 * min_held,
        ));
    }
    let held = (u64::from(d.mbufs) - reserved) / 2;
    // Half of `held` over the rings, rounded down to a power of two (a ring
    // of size s holds s - 1); no rings with one worker.
    let ring_size = match (held / 2).checked_div(rings) {
        None => 0,
        Some(share) => {
            let per_ring = (share + 1).min(u64::from(MAX_RING_SIZE));
            let pow2 = 1u64 << (63 - per_ring.leading_zeros());
            (pow2 as u32).max(MIN_RING_SIZE)
        }
    };
    let ring_slots = rings * u64::from(ring_size.saturating_sub(1));
    let pending = ((held - ring_slots) / workers) as usize;
    Ok(MbufPlan {
        ring_size,
        pending_per_worker: pending.min(d.max_neighbours.saturating_mul(MAX_PENDING)),
        reserved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(mbufs: u32, workers: u16) -> PoolDemand {
        PoolDemand {
            mbufs,
            ports: 2,
            twins: 0,
            workers,
            rx_desc: 1024,
            tx_desc: 1024,
            cache: 256,
            max_neighbours: 1024,
        }
    }

    #[test]
    fn defaults_plan_within_the_pool() {
        for workers in 1..=2 {
            let d = demand(16383, workers);
            let p = plan(&d).unwrap();
            // Held packets and reserved buffers never exceed the pool, and
            // half of what is left stays slack.
            let spare = u64::from(d.mbufs) - p.reserved;
            assert!(p.held(workers) <= spare / 2, "{p:?}");
            assert!(p.pending_per_worker >= MAX_PENDING);
            if workers == 1 {
                assert_eq!(p.ring_size, 0);
            } else {
                assert!(p.ring_size.is_power_of_two() && p.ring_size >= MIN_RING_SIZE);
            }
        }
        // One worker, defaults: 2048 rx + 2048 tx + 768 cached + 128 in
        // flight reserved; half the rest (5695) may wait for ARP.
        let p = plan(&demand(16383, 1)).unwrap();
        assert_eq!(p.reserved, 4992);
        assert_eq!(p.pending_per_worker, 5695);
    }

    #[test]
    fn kernel_twins_take_their_descriptors_and_bursts() {
        let without = plan(&demand(16383, 2)).unwrap();
        let with = plan(&PoolDemand {
            twins: 2,
            ..demand(16383, 2)
        })
        .unwrap();
        // 2 twins x (256 descriptors + a burst each way), 3 rings of 511,
        // a burst per worker.
        assert_eq!(
            with.reserved - without.reserved,
            2 * (256 + 64) + 3 * 511 + 2 * 32
        );
        assert!(
            with.held(2) < without.held(2)
                || with.ring_size < without.ring_size
                || with.pending_per_worker < without.pending_per_worker
        );
    }

    #[test]
    fn big_pools_cap_rings_and_queues() {
        let p = plan(&demand(1 << 20, 4)).unwrap();
        assert_eq!(p.ring_size, MAX_RING_SIZE);
        assert_eq!(
            p.pending_per_worker,
            1024 * MAX_PENDING,
            "no more than the table holds"
        );
    }

    #[test]
    fn too_small_a_pool_is_refused_naming_the_field() {
        let e = plan(&demand(16383, 4)).unwrap_err();
        assert!(
            e.starts_with("dataplane.mbufs: 16383 packet buffers"),
            "{e}"
        );
        assert!(e.contains("dataplane.rx_desc"), "{e}");
        // The figure it asks for is enough.
        let needed: u32 = e
            .split("raise dataplane.mbufs to ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        let p = plan(&demand(needed, 4)).unwrap();
        assert!(p.ring_size >= MIN_RING_SIZE);
        assert!(p.pending_per_worker >= MAX_PENDING);
        assert!(plan(&demand(needed - 1, 4)).is_err());
    }
}
