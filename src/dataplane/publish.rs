//! How a new configuration snapshot reaches the workers: read-copy-update
//! with epochs, no lock and no system call on the packet path.
//!
//! The control side builds a new immutable `Snapshot` for every change and
//! `publish`es it: one pointer swap and one counter increment. Each worker
//! asks its `SnapshotReader` between bursts whether the epoch moved (one
//! relaxed-cost load when it did not); when it did, the worker takes a
//! reference to the new snapshot, drops its old one and acknowledges the
//! epoch. The control side frees an old snapshot (`reclaim`) only once every
//! worker has acknowledged an epoch at or after the one that retired it, so
//! no worker can still be taking a reference to it, and the last reference
//! is never dropped on a worker (no free, no `munmap`, on the packet path).
//!
//! The rules are types: there is one `SnapshotPublisher` (not `Clone`), and
//! each worker owns exactly one `SnapshotReader` (`Send`, not `Clone`), made
//! by the publisher for that worker's index.

use super::snapshot::Snapshot;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

/// One cache line per worker's acknowledgement, so workers never write to
/// a line another worker writes.
#[repr(align(64))]
struct Seen(AtomicU64);

struct Shared {
    /// `Arc::into_raw` of the current snapshot; the publisher owns that
    /// reference.
    current: AtomicPtr<Snapshot>,
    epoch: AtomicU64,
    /// The epoch each worker last moved to.
    seen: Box<[Seen]>,
}

/// The control side's end. Holds the current snapshot's reference and
/// those of retired snapshots until every worker has moved past them.
pub struct SnapshotPublisher {
    shared: Arc<Shared>,
    /// (epoch that retired it, the reference the cell held).
    retired: Vec<(u64, *const Snapshot)>,
    readers_made: Vec<bool>,
}

// SAFETY: the raw pointers are `Arc<Snapshot>` references this publisher
// owns; `Snapshot` is Send + Sync, so the references may move with it.
unsafe impl Send for SnapshotPublisher {}

/// One worker's end.
pub struct SnapshotReader {
    shared: Arc<Shared>,
    worker: usize,
    epoch: u64,
}

impl SnapshotPublisher {
    /// Starts with `first` (epoch `first.epoch`) for `workers` workers.
    pub fn new(first: Arc<Snapshot>, workers: usize) -> SnapshotPublisher {
        let epoch = first.epoch;
        let shared = Arc::new(Shared {
            current: AtomicPtr::new(Arc::into_raw(first) as *mut Snapshot),
            epoch: AtomicU64::new(epoch),
            seen: (0..workers).map(|_| Seen(AtomicU64::new(epoch))).collect(),
        });
        SnapshotPublisher {
            shared,
            retired: Vec::new(),
            readers_made: vec![false; workers],
        }
    }

    /// The reader of worker `worker`; None if it was made already (each
    /// worker has exactly one) or there is no such worker.
    pub fn reader(&mut self, worker: usize) -> Option<SnapshotReader> {
        let made = self.readers_made.get_mut(worker)?;
        if *made {
            return None;
        }
        *made = true;
        Some(SnapshotReader {
            shared: Arc::clone(&self.shared),
            worker,
            epoch: self.shared.epoch.load(Ordering::Acquire),
        })
    }

    /// The snapshot workers get next (the last published).
    pub fn current(&self) -> Arc<Snapshot> {
        let p = self.shared.current.load(Ordering::Acquire);
        // SAFETY: `p` came from Arc::into_raw and the publisher holds that
        // reference until it is swapped out by `publish` (which needs
        // &mut self, so not concurrently with this).
        unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        }
    }

    pub fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::Acquire)
    }

    /// Makes `next` the workers' snapshot; its `epoch` must be above the
    /// current one. Returns that epoch.
    pub fn publish(&mut self, next: Arc<Snapshot>) -> u64 {
        let epoch = next.epoch;
        debug_assert!(epoch > self.epoch(), "epochs only grow");
        let old = self
            .shared
            .current
            .swap(Arc::into_raw(next) as *mut Snapshot, Ordering::AcqRel);
        // After the swap: a worker that sees the new epoch loads the new
        // pointer.
        self.shared.epoch.store(epoch, Ordering::Release);
        self.retired.push((epoch, old));
        self.reclaim();
        epoch
    }

    /// The oldest epoch a worker is still on.
    pub fn oldest_seen(&self) -> u64 {
        self.shared
            .seen
            .iter()
            .map(|s| s.0.load(Ordering::Acquire))
            .min()
            .unwrap_or_else(|| self.epoch())
    }

    /// Frees the snapshots every worker has moved past. Returns how many
    /// are still held.
    pub fn reclaim(&mut self) -> usize {
        let oldest = self.oldest_seen();
        self.retired.retain(|&(retired_at, p)| {
            if retired_at <= oldest {
                // SAFETY: every worker acknowledged an epoch >= retired_at,
                // i.e. took the snapshot that replaced `p` (or a later one)
                // and dropped its reference to `p` before acknowledging;
                // no worker can load `p` any more (it left `current` before
                // the epoch moved). This is the cell's reference from
                // Arc::into_raw, released once.
                drop(unsafe { Arc::from_raw(p) });
                false
            } else {
                true
            }
        });
        self.retired.len()
    }
}

impl Drop for SnapshotPublisher {
    fn drop(&mut self) {
        // Workers are stopped by now (the runtime joins them first); their
        // readers may still hold references, which keep what they use alive.
        for (_, p) in self.retired.drain(..) {
            // SAFETY: the cell's references, released once.
            drop(unsafe { Arc::from_raw(p) });
        }
        let p = self.shared.current.load(Ordering::Acquire);
        // SAFETY: the cell's reference to the current snapshot.
        drop(unsafe { Arc::from_raw(p) });
    }
}

impl SnapshotReader {
    /// If a new snapshot was published since the last call, hands it to
    /// `adopt` (which must drop every reference it holds to the old one),
    /// then acknowledges it. One atomic load when nothing changed.
    #[inline]
    pub fn refresh(&mut self, adopt: impl FnOnce(Arc<Snapshot>)) -> bool {
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        if epoch == self.epoch {
            return false;
        }
        let p = self.shared.current.load(Ordering::Acquire);
        // SAFETY: `p` is the cell's current or a newer snapshot; it cannot
        // have been freed: the publisher frees a retired snapshot only when
        // every worker acknowledged an epoch at or after the one that
        // retired it, and this worker still acknowledges `self.epoch`,
        // which is older than any epoch that can retire `p`.
        let snap = unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        // The pointer may be newer than `epoch`: acknowledge what we took.
        let taken = snap.epoch.max(epoch);
        adopt(snap);
        self.epoch = taken;
        self.shared.seen[self.worker]
            .0
            .store(taken, Ordering::Release);
        true
    }

    /// The current snapshot, taken and acknowledged: how a worker gets its
    /// first one.
    pub fn current(&mut self) -> Arc<Snapshot> {
        let p = self.shared.current.load(Ordering::Acquire);
        // SAFETY: as in `refresh`: this worker still acknowledges an epoch
        // older than any that could retire `p`.
        let snap = unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        self.epoch = snap.epoch;
        self.shared.seen[self.worker]
            .0
            .store(snap.epoch, Ordering::Release);
        snap
    }

    /// The epoch this worker runs on.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::config::Config;
    use crate::dataplane::snapshot::PortFacts;
    use crate::wire::EthernetAddress;
    use std::sync::atomic::AtomicBool;

    fn snapshot(epoch: u64) -> Arc<Snapshot> {
        let config = Config::parse(
            "t",
            "[dpdk]\neal = [\"-l\", \"0-1\"]\n[[interface]]\nport = 0\naddrs = [\"10.0.0.1/24\"]\n",
        )
        .unwrap();
        let mut s = Snapshot::build(
            &config,
            &[PortFacts {
                mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
                tx_checksum_offload: false,
                rx_partial_checksums: false,
                kernel_twin: false,
            }],
            1,
        )
        .unwrap();
        s.epoch = epoch;
        Arc::new(s)
    }

    #[test]
    fn workers_move_on_and_old_snapshots_are_freed_after_them() {
        let first = snapshot(1);
        let weak_first = Arc::downgrade(&first);
        let mut p = SnapshotPublisher::new(first, 2);
        let mut r0 = p.reader(0).unwrap();
        let mut r1 = p.reader(1).unwrap();
        assert!(p.reader(0).is_none(), "one reader per worker");
        assert!(p.reader(2).is_none());
        let mut held0 = p.current();
        let mut held1 = p.current();
        assert!(!r0.refresh(|_| panic!("nothing new")));

        let second = snapshot(2);
        let weak_second = Arc::downgrade(&second);
        p.publish(second);
        assert_eq!(p.reclaim(), 1, "worker 1 has not moved yet");
        assert!(r0.refresh(|s| held0 = s));
        assert_eq!(held0.epoch, 2);
        assert_eq!(p.reclaim(), 1);
        assert!(weak_first.upgrade().is_some());
        assert!(r1.refresh(|s| held1 = s));
        assert_eq!(p.reclaim(), 0);
        assert!(weak_first.upgrade().is_none(), "freed once both moved");
        // Several publishes between two looks: the reader skips to the last.
        p.publish(snapshot(3));
        p.publish(snapshot(4));
        assert!(r0.refresh(|s| held0 = s));
        assert_eq!((held0.epoch, r0.epoch()), (4, 4));
        assert!(r1.refresh(|s| held1 = s));
        assert_eq!(p.reclaim(), 0);
        assert!(weak_second.upgrade().is_none());
        drop((held0, held1));
        drop(p);
    }

    #[test]
    fn concurrent_readers_never_see_a_freed_snapshot() {
        let mut p = SnapshotPublisher::new(snapshot(1), 2);
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..2)
            .map(|w| {
                let mut r = p.reader(w).unwrap();
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut held: Option<Arc<Snapshot>> = None;
                    let mut last = 0;
                    while !stop.load(Ordering::Relaxed) {
                        r.refresh(|s| {
                            // Reading through it proves it is alive.
                            assert!(s.epoch >= last);
                            last = s.epoch;
                            assert_eq!(s.ports.len(), 1);
                            held = Some(s);
                        });
                    }
                    last
                })
            })
            .collect();
        for e in 2..2000 {
            p.publish(snapshot(e));
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            assert!(t.join().unwrap() > 1);
        }
        drop(p);
    }
}
