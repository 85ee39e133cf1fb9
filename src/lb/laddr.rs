//! FULLNAT local addresses and ports: the (local address, local port) a
//! worker puts as the source of a connection toward a real server, after
//! DPVS's `sa_pool`.
//!
//! Each worker owns one `LocalPool` per service, so nothing here is shared
//! or locked. A worker hands out only the ports it owns
//! (`port % workers == worker`): the real server's reply then carries, as
//! its destination port, the number of the core that holds the session, and
//! the NIC can steer it there (DPVS does the same with flow director).
//!
//! One (local address, local port) may serve several real servers at once,
//! because the session key toward a real server includes the real's address
//! and port. So, as in DPVS, each local address has [`BUCKETS`] independent
//! queues of free ports, and a real server draws from the queue its
//! address:port hashes to. Real servers that share a bucket share its ports;
//! real servers in different buckets may be given the same pair at the same
//! time. The queues are FIFO so that a freed port is reused as late as
//! possible: the real server may still hold the old connection in TIME_WAIT.
//!
//! Memory: everything is allocated by `new`. Per (local address, bucket,
//! port) a queue slot of 2 bytes and a "free" bit, i.e. 17 bits; for one
//! local address with ports 1024..=65535 split over 2 workers (32256 ports
//! per worker) that is 8 * 32256 * 17 / 8 bytes = 548,352 bytes (536 KiB)
//! per pool, plus a few hundred bytes of queue heads and the struct itself;
//! it grows linearly with the local addresses. `LocalPool::memory_bytes()`
//! reports the exact figure.

use super::mem;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;

const BUCKET_BITS: u32 = 3;

/// Independent port queues per local address; a real server uses the one
/// its address:port hashes to.
pub const BUCKETS: usize = 1 << BUCKET_BITS;

/// Most local addresses one pool uses (the set of local addresses with free
/// ports in a bucket is one `u64`). Further addresses are ignored.
pub const MAX_LADDRS: usize = 64;

/// The worker whose session a packet to local port `port` belongs to.
/// `workers` of 0 is taken as 1.
#[inline]
pub fn owner_of_port(port: u16, workers: u16) -> u16 {
    port % workers.max(1)
}

/// A FIFO ring of free port indices, stored in `LocalPool::ring`.
#[derive(Debug, Clone, Copy, Default)]
struct Queue {
    head: u32,
    len: u32,
}

/// The local (address, port) pairs one worker may use for one service.
pub struct LocalPool {
    /// Distinct, at most `MAX_LADDRS`.
    laddrs: Vec<Ipv4Addr>,
    /// Port `first_port + i * step` is port index `i`, for `i < ports`.
    first_port: u32,
    step: u32,
    ports: u32,
    /// `u64` words of the free bitmap per queue.
    words: usize,
    /// Queue `laddr * BUCKETS + bucket`.
    queues: Vec<Queue>,
    /// `ports` slots per queue, holding port indices.
    ring: Vec<u16>,
    /// `words` words per queue; a set bit means the port is in the queue.
    free: Vec<u64>,
    /// Per bucket, bit `l` set when local address `l` has a free port in it.
    nonempty: [u64; BUCKETS],
    /// Where the round robin over local addresses resumes.
    next_laddr: usize,
    available: usize,
}

impl LocalPool {
    /// Ports `p` in `ports` with `p % workers == worker` (port 0 excepted:
    /// it cannot be a source port), on every address of `laddrs`
    /// (duplicates dropped, at most [`MAX_LADDRS`]). `workers` of 0 is taken
    /// as 1; a `worker` out of range gives an empty pool.
    pub fn new(
        laddrs: &[Ipv4Addr],
        ports: RangeInclusive<u16>,
        worker: u16,
        workers: u16,
    ) -> LocalPool {
        let mut unique: Vec<Ipv4Addr> = Vec::with_capacity(laddrs.len().min(MAX_LADDRS));
        for addr in laddrs {
            if unique.len() == MAX_LADDRS {
                break;
            }
            if !unique.contains(addr) {
                unique.push(*addr);
            }
        }

        let step = u32::from(workers.max(1));
        let worker = u32::from(worker);
        let (start, end) = (u32::from(*ports.start()).max(1), u32::from(*ports.end()));
        // The first port >= start that this worker owns.
        let first = start + (worker + step - start % step) % step;
        let count = if ports.is_empty() || worker >= step || first > end {
            0
        } else {
            (end - first) / step + 1
        };

        let queues = unique.len() * BUCKETS;
        let per_queue = count as usize;
        let words = per_queue.div_ceil(64);
        // Every queue starts full, in port order.
        let mut ring = Vec::with_capacity(queues * per_queue);
        for _ in 0..queues {
            ring.extend(0..count as u16);
        }
        let mut bitmap = vec![u64::MAX; words];
        if !per_queue.is_multiple_of(64) {
            if let Some(last) = bitmap.last_mut() {
                *last = (1u64 << (per_queue % 64)) - 1;
            }
        }
        let free = bitmap.repeat(queues);
        let all_laddrs = if count == 0 || unique.is_empty() {
            0
        } else {
            u64::MAX >> (64 - unique.len())
        };

        LocalPool {
            laddrs: unique,
            first_port: first,
            step,
            ports: count,
            words,
            queues: vec![
                Queue {
                    head: 0,
                    len: count
                };
                queues
            ],
            ring,
            free,
            nonempty: [all_laddrs; BUCKETS],
            next_laddr: 0,
            available: queues * per_queue,
        }
    }

    /// O(1). A free (local address, local port) to use toward `real`, or
    /// None when every local address is out of ports in `real`'s bucket.
    /// Successive calls go round robin over the local addresses, skipping
    /// those with nothing free.
    #[inline]
    pub fn alloc(&mut self, real: SocketAddrV4) -> Option<SocketAddrV4> {
        let (laddr, q, at) = self.next_slot(real)?;
        let bucket = q % BUCKETS;
        let ports = self.ports;

        let queue = &mut self.queues[q];
        let index = self.ring[at];
        queue.head = if queue.head + 1 == ports {
            0
        } else {
            queue.head + 1
        };
        queue.len -= 1;
        if queue.len == 0 {
            self.nonempty[bucket] &= !(1u64 << laddr);
        }
        let (word, bit) = self.free_bit(q, index);
        self.free[word] &= !bit;
        self.available -= 1;
        self.next_laddr = if laddr + 1 == self.laddrs.len() {
            0
        } else {
            laddr + 1
        };
        Some(SocketAddrV4::new(self.laddrs[laddr], self.port_of(index)))
    }

    /// Where the next `alloc(real)` draws from: the local address (the
    /// first at or after `next_laddr`, cyclically, with a free port in
    /// `real`'s bucket), its queue, and the ring slot at the queue's head.
    /// None when there is none.
    #[inline]
    fn next_slot(&self, real: SocketAddrV4) -> Option<(usize, usize, usize)> {
        let bucket = bucket_of(real);
        let mask = self.nonempty[bucket];
        if mask == 0 {
            return None;
        }
        // The mask has no bits at or above laddrs.len().
        let skip = mask.rotate_right(self.next_laddr as u32).trailing_zeros() as usize;
        let laddr = (self.next_laddr + skip) % MAX_LADDRS;
        let q = laddr * BUCKETS + bucket;
        let head = self.queues.get(q)?.head as usize;
        Some((laddr, q, q * self.ports as usize + head))
    }

    /// The port a ring entry stands for.
    #[inline]
    fn port_of(&self, index: u16) -> u16 {
        (self.first_port + u32::from(index) * self.step) as u16
    }

    /// Whether `alloc(real)` would find a free port.
    #[inline]
    pub fn has_free(&self, real: SocketAddrV4) -> bool {
        self.nonempty[bucket_of(real)] != 0
    }

    /// What `alloc(real)` would hand out, without taking it.
    #[inline]
    pub fn peek(&self, real: SocketAddrV4) -> Option<SocketAddrV4> {
        let (laddr, _, at) = self.next_slot(real)?;
        let index = *self.ring.get(at)?;
        Some(SocketAddrV4::new(
            *self.laddrs.get(laddr)?,
            self.port_of(index),
        ))
    }

    /// Brings in the cache line `alloc(real)` would read its port from.
    #[inline]
    pub fn prefetch_next(&self, real: SocketAddrV4) {
        if let Some(slot) = self
            .next_slot(real)
            .and_then(|(_, _, at)| self.ring.get(at))
        {
            mem::prefetch(slot);
        }
    }

    /// Returns `local`, taken by `alloc(real)`, to the back of its queue.
    /// A pair that is not from this pool, or is already free, is ignored.
    /// The caller must pass the same `real` as to `alloc`: freeing toward
    /// another real server in another bucket would free that bucket's pair.
    /// Cost: a scan of the (at most 64, usually a handful) local addresses.
    #[inline]
    pub fn free(&mut self, local: SocketAddrV4, real: SocketAddrV4) {
        let Some(laddr) = self.laddrs.iter().position(|a| a == local.ip()) else {
            return;
        };
        let Some(index) = self.port_index(local.port()) else {
            return;
        };
        let bucket = bucket_of(real);
        let q = laddr * BUCKETS + bucket;
        let (word, bit) = self.free_bit(q, index);
        if self.free[word] & bit != 0 {
            return;
        }
        self.free[word] |= bit;
        let ports = self.ports;
        let queue = &mut self.queues[q];
        // At most `ports` indices are ever queued (the bitmap sees to it),
        // so the tail slot is free.
        let tail = (queue.head + queue.len) % ports;
        queue.len += 1;
        self.ring[q * ports as usize + tail as usize] = index;
        self.nonempty[bucket] |= 1u64 << laddr;
        self.available += 1;
    }

    /// Free pairs, over every local address and bucket.
    #[inline]
    pub fn available(&self) -> usize {
        self.available
    }

    /// All pairs, over every local address and bucket: local addresses *
    /// `BUCKETS` * ports of this worker.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.queues.len() * self.ports as usize
    }

    /// The local addresses in use (duplicates dropped).
    pub fn local_addrs(&self) -> &[Ipv4Addr] {
        &self.laddrs
    }

    /// Heap and inline bytes this pool holds.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<LocalPool>()
            + self.laddrs.capacity() * std::mem::size_of::<Ipv4Addr>()
            + self.queues.capacity() * std::mem::size_of::<Queue>()
            + self.ring.capacity() * std::mem::size_of::<u16>()
            + self.free.capacity() * std::mem::size_of::<u64>()
    }

    /// The index of `port` among this worker's ports, if it is one.
    #[inline]
    fn port_index(&self, port: u16) -> Option<u16> {
        let offset = u32::from(port).checked_sub(self.first_port)?;
        if offset % self.step != 0 || offset / self.step >= self.ports {
            return None;
        }
        Some((offset / self.step) as u16)
    }

    /// Word and mask of port `index`'s bit in queue `q`'s bitmap.
    #[inline]
    fn free_bit(&self, q: usize, index: u16) -> (usize, u64) {
        let index = usize::from(index);
        (q * self.words + index / 64, 1u64 << (index % 64))
    }
}

impl fmt::Debug for LocalPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPool")
            .field("laddrs", &self.laddrs)
            .field("first_port", &self.first_port)
            .field("step", &self.step)
            .field("ports", &self.ports)
            .field("available", &self.available)
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// One worker's local address pools: a `LocalPool` per local address,
/// made the first time a service lists the address and shared by every
/// service that does. Keyed by address rather than by service so that a
/// change to a service's local addresses leaves the ports its sessions hold
/// where they are: adding an address adds a pool, removing one stops new
/// connections from using it while its sessions return their ports.
pub struct LocalPools {
    pools: Vec<LocalPool>,
    ports: RangeInclusive<u16>,
    worker: u16,
    workers: u16,
}

impl LocalPools {
    pub fn new(ports: RangeInclusive<u16>, worker: u16, workers: u16) -> LocalPools {
        LocalPools {
            pools: Vec::new(),
            ports,
            worker,
            workers,
        }
    }

    /// The pool of `addr`, made (allocating its queues) if there is none:
    /// call it when a configuration change arrives, never per packet.
    pub fn ensure(&mut self, addr: Ipv4Addr) -> usize {
        if let Some(i) = self.index_of(addr) {
            return i;
        }
        self.pools.push(LocalPool::new(
            &[addr],
            self.ports.clone(),
            self.worker,
            self.workers,
        ));
        self.pools.len() - 1
    }

    fn index_of(&self, addr: Ipv4Addr) -> Option<usize> {
        self.pools.iter().position(|p| p.local_addrs() == [addr])
    }

    /// A free (local address, port) toward `real` from the pools `pools`
    /// (indexes from `ensure`, a service's local addresses in order), round
    /// robin from `*next`; None when every one is out of ports in `real`'s
    /// bucket. O(local addresses), allocation-free.
    #[inline]
    pub fn alloc(
        &mut self,
        pools: &[usize],
        next: &mut usize,
        real: SocketAddrV4,
    ) -> Option<SocketAddrV4> {
        let i = self.next_pool(pools, *next, real)?;
        let pair = self.pools.get_mut(pools[i])?.alloc(real)?;
        *next = (i + 1) % pools.len();
        Some(pair)
    }

    /// Which of `pools` `alloc(pools, next, real)` draws from: the first
    /// from `next` on (cyclically) with a free port toward `real`.
    #[inline]
    fn next_pool(&self, pools: &[usize], next: usize, real: SocketAddrV4) -> Option<usize> {
        let n = pools.len();
        (0..n)
            .map(|k| (next + k) % n)
            .find(|&i| self.pools.get(pools[i]).is_some_and(|p| p.has_free(real)))
    }

    /// What `alloc(pools, next, real)` would hand out, without taking it,
    /// and the `next` it would leave behind.
    #[inline]
    pub fn peek(
        &self,
        pools: &[usize],
        next: usize,
        real: SocketAddrV4,
    ) -> Option<(SocketAddrV4, usize)> {
        let i = self.next_pool(pools, next, real)?;
        let pair = self.pools.get(pools[i])?.peek(real)?;
        Some((pair, (i + 1) % pools.len()))
    }

    /// Brings in the cache line `alloc(pools, next, real)` would read its
    /// port from.
    #[inline]
    pub fn prefetch_next(&self, pools: &[usize], next: usize, real: SocketAddrV4) {
        if let Some(pool) = self
            .next_pool(pools, next, real)
            .and_then(|i| self.pools.get(pools[i]))
        {
            pool.prefetch_next(real);
        }
    }

    /// Returns `local`, taken toward `real`, to its address's pool.
    #[inline]
    pub fn free(&mut self, local: SocketAddrV4, real: SocketAddrV4) {
        if let Some(pool) = self
            .pools
            .iter_mut()
            .find(|p| p.local_addrs() == [*local.ip()])
        {
            pool.free(local, real);
        }
    }

    /// Free pairs over the addresses `addrs`.
    pub fn available(&self, addrs: &[Ipv4Addr]) -> usize {
        addrs
            .iter()
            .filter_map(|a| self.index_of(*a))
            .map(|i| self.pools[i].available())
            .sum()
    }

    /// Drops the pools of addresses no service lists any more and whose
    /// ports have all come back. Indexes from `ensure` change: call it
    /// before ensuring the current addresses.
    pub fn retain(&mut self, listed: impl Fn(Ipv4Addr) -> bool) {
        self.pools.retain(|p| {
            p.local_addrs().first().is_some_and(|a| listed(*a)) || p.available() < p.capacity()
        });
    }

    pub fn memory_bytes(&self) -> usize {
        self.pools.iter().map(LocalPool::memory_bytes).sum()
    }

    /// Every pool's address and the pairs of it in use (its sessions).
    pub fn in_use(&self) -> impl Iterator<Item = (Ipv4Addr, usize)> + '_ {
        self.pools.iter().filter_map(|p| {
            let addr = *p.local_addrs().first()?;
            Some((addr, p.capacity() - p.available()))
        })
    }
}

/// The bucket of a real server: Fibonacci hashing of its address:port. Not
/// keyed: real servers are configured by the operator, not chosen by the
/// network, and a fixed hash keeps the spread reproducible.
#[inline]
fn bucket_of(real: SocketAddrV4) -> usize {
    let key = (u64::from(u32::from(*real.ip())) << 16) | u64::from(real.port());
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - BUCKET_BITS)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::alloc_count::allocations_during;
    use std::collections::HashSet;

    const L0: Ipv4Addr = Ipv4Addr::new(192, 168, 20, 1);
    const L1: Ipv4Addr = Ipv4Addr::new(192, 168, 20, 2);
    const L2: Ipv4Addr = Ipv4Addr::new(192, 168, 20, 3);

    fn real(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 30, last), port)
    }

    /// Two real servers in different buckets, and one more in the first's.
    fn reals_in_buckets() -> (SocketAddrV4, SocketAddrV4, SocketAddrV4) {
        let a = real(2, 80);
        let b = (3..=255)
            .map(|i| real(i, 80))
            .find(|r| bucket_of(*r) != bucket_of(a))
            .unwrap();
        let c = (3..=255)
            .map(|i| real(i, 80))
            .find(|r| bucket_of(*r) == bucket_of(a))
            .unwrap();
        (a, b, c)
    }

    /// Everything `alloc(real)` hands out until it runs dry.
    fn drain(pool: &mut LocalPool, real: SocketAddrV4) -> Vec<SocketAddrV4> {
        std::iter::from_fn(|| pool.alloc(real)).collect()
    }

    #[test]
    fn owner_of_port_is_port_modulo_workers() {
        assert_eq!(owner_of_port(5001, 1), 0);
        assert_eq!(owner_of_port(5001, 2), 1);
        assert_eq!(owner_of_port(5003, 4), 3);
        assert_eq!(owner_of_port(5003, 0), 0, "0 workers taken as 1");
    }

    #[test]
    fn hands_out_only_the_workers_ports() {
        let r = real(2, 80);
        for workers in [1u16, 2, 4] {
            let mut seen = HashSet::new();
            for worker in 0..workers {
                let mut pool = LocalPool::new(&[L0, L1], 1000..=1099, worker, workers);
                let per_addr = 100 / usize::from(workers);
                assert_eq!(pool.capacity(), 2 * BUCKETS * per_addr);
                assert_eq!(pool.available(), pool.capacity());
                let pairs = drain(&mut pool, r);
                assert_eq!(pairs.len(), 2 * per_addr);
                for pair in pairs {
                    assert_eq!(owner_of_port(pair.port(), workers), worker);
                    assert!((1000..=1099).contains(&pair.port()));
                    assert!(seen.insert(pair), "{pair} handed out twice");
                }
                assert_eq!(pool.available(), pool.capacity() - 2 * per_addr);
            }
            // The workers together cover the range exactly once.
            assert_eq!(seen.len(), 2 * 100);
        }
    }

    #[test]
    fn range_edges() {
        // The range's ends are included; port 0 never is.
        let mut pool = LocalPool::new(&[L0], 0..=3, 0, 1);
        let ports: Vec<u16> = drain(&mut pool, real(2, 80))
            .iter()
            .map(|p| p.port())
            .collect();
        assert_eq!(ports, [1, 2, 3]);
        let mut pool = LocalPool::new(&[L0], 65533..=65535, 1, 2);
        let ports: Vec<u16> = drain(&mut pool, real(2, 80))
            .iter()
            .map(|p| p.port())
            .collect();
        assert_eq!(ports, [65533, 65535]);
        // The whole port space on one core: indices still fit.
        let mut pool = LocalPool::new(&[L0], 1..=65535, 0, 1);
        assert_eq!(pool.capacity(), BUCKETS * 65535);
        let pairs = drain(&mut pool, real(2, 80));
        assert_eq!(pairs.len(), 65535);
        assert_eq!(pairs.last().unwrap().port(), 65535);
        pool.free(pairs[7], real(2, 80));
        assert_eq!(pool.alloc(real(2, 80)), Some(pairs[7]));
        // Empty pools: nothing to hand out, nothing to panic about.
        for mut pool in [
            LocalPool::new(&[], 1000..=2000, 0, 1),
            LocalPool::new(&[L0], RangeInclusive::new(2000, 1000), 0, 1),
            LocalPool::new(&[L0], 1000..=1002, 3, 2),
            LocalPool::new(&[L0], 1001..=1001, 0, 2),
            LocalPool::new(&[L0], 0..=0, 0, 1),
        ] {
            assert_eq!((pool.capacity(), pool.available()), (0, 0));
            assert_eq!(pool.alloc(real(2, 80)), None);
            pool.free(SocketAddrV4::new(L0, 1000), real(2, 80));
            assert_eq!(pool.available(), 0);
        }
    }

    #[test]
    fn exhaustion_then_fifo_reuse() {
        let r = real(2, 80);
        let mut pool = LocalPool::new(&[L0], 5000..=5009, 0, 1);
        let first: Vec<u16> = (0..3).map(|_| pool.alloc(r).unwrap().port()).collect();
        assert_eq!(first, [5000, 5001, 5002]);
        // A freed port goes behind every port never used yet.
        pool.free(SocketAddrV4::new(L0, 5001), r);
        let rest: Vec<u16> = drain(&mut pool, r).iter().map(|p| p.port()).collect();
        assert_eq!(rest, [5003, 5004, 5005, 5006, 5007, 5008, 5009, 5001]);
        assert_eq!(pool.alloc(r), None, "exhausted");
        assert_eq!(pool.available(), pool.capacity() - 10);
        // Freed in some order, handed out again in that order.
        for port in [5007, 5000, 5004] {
            pool.free(SocketAddrV4::new(L0, port), r);
        }
        assert_eq!(pool.available(), pool.capacity() - 7);
        let again: Vec<u16> = drain(&mut pool, r).iter().map(|p| p.port()).collect();
        assert_eq!(again, [5007, 5000, 5004]);
        assert_eq!(pool.alloc(r), None);
    }

    #[test]
    fn same_pair_toward_different_buckets_never_twice_toward_one_real() {
        let (a, b, c) = reals_in_buckets();
        let mut pool = LocalPool::new(&[L0], 5000..=5099, 0, 1);
        let first_a = pool.alloc(a).unwrap();
        let first_b = pool.alloc(b).unwrap();
        assert_eq!(
            first_a, first_b,
            "one pair toward two reals in different buckets"
        );

        // Toward `a` (and `c`, which shares its bucket) every pair is
        // handed out once while taken.
        let mut taken = HashSet::from([first_a]);
        while let Some(pair) = pool.alloc(a) {
            assert!(taken.insert(pair), "{pair} handed out twice toward {a}");
            let Some(pair) = pool.alloc(c) else { break };
            assert!(
                taken.insert(pair),
                "{pair} handed out twice in {a}'s bucket"
            );
        }
        assert_eq!(taken.len(), 100);
        assert_eq!(pool.alloc(c), None);
        // `b`'s bucket is untouched but for its one pair.
        assert_eq!(drain(&mut pool, b).len(), 99);
        assert_eq!(pool.available(), pool.capacity() - 200);
        // Freeing toward `a` makes it available toward `a` only.
        pool.free(first_a, a);
        assert_eq!(pool.alloc(b), None);
        assert_eq!(pool.alloc(c), Some(first_a));
    }

    #[test]
    fn round_robin_over_local_addresses_skipping_empty_ones() {
        let r = real(2, 80);
        let mut pool = LocalPool::new(&[L0, L1, L2], 5000..=5001, 0, 1);
        let pairs = drain(&mut pool, r);
        let expect: Vec<SocketAddrV4> = [
            (L0, 5000),
            (L1, 5000),
            (L2, 5000),
            (L0, 5001),
            (L1, 5001),
            (L2, 5001),
        ]
        .iter()
        .map(|&(a, p)| SocketAddrV4::new(a, p))
        .collect();
        assert_eq!(pairs, expect);
        // L1 has nothing free: skipped.
        pool.free(SocketAddrV4::new(L0, 5000), r);
        pool.free(SocketAddrV4::new(L2, 5001), r);
        assert_eq!(pool.alloc(r), Some(SocketAddrV4::new(L0, 5000)));
        assert_eq!(pool.alloc(r), Some(SocketAddrV4::new(L2, 5001)));
        assert_eq!(pool.alloc(r), None);
        // Only L1 free: found whatever the round robin position.
        pool.free(SocketAddrV4::new(L1, 5001), r);
        assert_eq!(pool.alloc(r), Some(SocketAddrV4::new(L1, 5001)));
    }

    #[test]
    fn duplicate_and_excess_local_addresses() {
        let mut pool = LocalPool::new(&[L0, L1, L0], 5000..=5000, 0, 1);
        assert_eq!(pool.local_addrs(), [L0, L1]);
        assert_eq!(pool.capacity(), 2 * BUCKETS);
        let many: Vec<Ipv4Addr> = (0..100u32)
            .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
            .collect();
        pool = LocalPool::new(&many, 5000..=5000, 0, 1);
        assert_eq!(pool.local_addrs().len(), MAX_LADDRS);
        // Every address is reached, the last included.
        let pairs = drain(&mut pool, real(2, 80));
        assert_eq!(pairs.len(), MAX_LADDRS);
        assert_eq!(*pairs[MAX_LADDRS - 1].ip(), many[MAX_LADDRS - 1]);
        pool.free(pairs[63], real(2, 80));
        assert_eq!(pool.alloc(real(2, 80)), Some(pairs[63]));
    }

    #[test]
    fn double_free_and_foreign_pairs_are_ignored() {
        let (a, b, _) = reals_in_buckets();
        let mut pool = LocalPool::new(&[L0, L1], 5000..=5009, 1, 2);
        let capacity = pool.capacity();
        let pair = pool.alloc(a).unwrap();
        let other = pool.alloc(a).unwrap();
        pool.free(pair, a);
        pool.free(pair, a);
        // Free already (never taken toward b's bucket).
        pool.free(other, b);
        for foreign in [
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 5001), // not a local address
            SocketAddrV4::new(L0, 5000),                         // another worker's port
            SocketAddrV4::new(L0, 5011),                         // past the range
            SocketAddrV4::new(L0, 4999),                         // before the range
            SocketAddrV4::new(L0, 0),
            SocketAddrV4::new(L0, 65535),
        ] {
            pool.free(foreign, a);
        }
        assert_eq!(pool.available(), capacity - 1);
        // The queues are intact: toward `a`, every pair exactly once.
        let pairs = drain(&mut pool, a);
        assert_eq!(pairs.len(), 2 * 5 - 1);
        let unique: HashSet<_> = pairs.iter().collect();
        assert_eq!(unique.len(), pairs.len());
        assert!(!unique.contains(&other));
        assert_eq!(pool.available(), capacity - 2 * 5);
    }

    #[test]
    fn alloc_and_free_do_not_allocate() {
        let (a, b, c) = reals_in_buckets();
        let mut pool = LocalPool::new(&[L0, L1, L2], 1024..=65535, 0, 2);
        let ((), allocations) = allocations_during(|| {
            let mut held = [None; 64];
            for round in 0..100_000usize {
                let r = [a, b, c][round % 3];
                let slot = round % held.len();
                if let Some((pair, owner)) = held[slot].take() {
                    pool.free(pair, owner);
                    pool.free(pair, owner);
                }
                held[slot] = pool.alloc(r).map(|pair| (pair, r));
            }
            while pool.alloc(a).is_some() {}
            pool.free(SocketAddrV4::new(L0, 1), a);
        });
        assert_eq!(allocations, 0);
    }

    #[test]
    fn memory_per_pool() {
        // One local address, ports 1024..=65535 over 2 workers: 32256 ports
        // per worker, 8 buckets of (2-byte slot + 1 bit) each.
        let pool = LocalPool::new(&[L0], 1024..=65535, 0, 2);
        assert_eq!(pool.capacity(), BUCKETS * 32256);
        let data =
            BUCKETS * (32256 * 2 + 32256_usize.div_ceil(64) * 8 + std::mem::size_of::<Queue>()) + 4;
        assert_eq!(pool.memory_bytes(), data + std::mem::size_of::<LocalPool>());
        assert!(
            pool.memory_bytes() < 560 * 1024,
            "{} bytes",
            pool.memory_bytes()
        );
        // Linear in the local addresses.
        let four = LocalPool::new(
            &[L0, L1, L2, Ipv4Addr::new(192, 168, 20, 4)],
            1024..=65535,
            0,
            2,
        );
        assert!(four.memory_bytes() < 4 * 560 * 1024);
    }

    #[test]
    fn pools_per_address_are_shared_and_survive_changes() {
        let r = real(2, 80);
        let mut pools = LocalPools::new(5000..=5001, 0, 1);
        let (p0, p1) = (pools.ensure(L0), pools.ensure(L1));
        assert_eq!(pools.ensure(L0), p0, "one pool per address");
        let mut next = 0;
        let a = pools.alloc(&[p0, p1], &mut next, r).unwrap();
        let b = pools.alloc(&[p0, p1], &mut next, r).unwrap();
        assert_eq!((*a.ip(), *b.ip()), (L0, L1), "round robin");
        // Another service listing L1 draws from the same ports.
        let mut other = 0;
        let c = pools.alloc(&[p1], &mut other, r).unwrap();
        assert_ne!(c, b);
        assert_eq!(pools.alloc(&[p1], &mut other, r), None);
        assert_eq!(pools.available(&[L0, L1]), 2 * 2 * BUCKETS - 3);
        // L0 no longer listed: its pool stays while a port is out.
        pools.retain(|addr| addr == L1);
        assert_eq!(pools.available(&[L0]), 2 * BUCKETS - 1);
        pools.free(a, r);
        pools.retain(|addr| addr == L1);
        assert_eq!(pools.available(&[L0]), 0, "gone once every port came back");
        let p1 = pools.ensure(L1);
        pools.free(b, r);
        let mut next = 0;
        assert_eq!(pools.alloc(&[p1], &mut next, r), Some(b));
    }

    #[test]
    fn peek_tells_the_next_alloc_without_taking_it() {
        let r = real(2, 80);
        let mut pools = LocalPools::new(5000..=5002, 0, 1);
        let ids = [pools.ensure(L0), pools.ensure(L1)];
        let mut next = 0;
        // Round robin over both addresses until each is out of ports in
        // r's bucket, and then nothing.
        for _ in 0..7 {
            let peeked = pools.peek(&ids, next, r);
            assert_eq!(pools.peek(&ids, next, r), peeked, "peek takes nothing");
            pools.prefetch_next(&ids, next, r);
            assert_eq!(
                pools.alloc(&ids, &mut next, r),
                peeked.map(|(pair, _)| pair)
            );
            if let Some((_, after)) = peeked {
                assert_eq!(next, after, "the round robin moves on as peek said");
            }
        }
        assert_eq!(pools.peek(&ids, next, r), None);
        // A returned pair is the next one handed out again.
        let a = SocketAddrV4::new(L1, 5001);
        pools.free(a, r);
        assert_eq!(pools.peek(&ids, next, r).map(|(pair, _)| pair), Some(a));
        assert_eq!(pools.alloc(&ids, &mut next, r), Some(a));
    }

    #[test]
    fn buckets_spread_real_servers() {
        let mut counts = [0usize; BUCKETS];
        for i in 0..=255u8 {
            counts[bucket_of(real(i, 80))] += 1;
        }
        for (bucket, n) in counts.iter().enumerate() {
            assert!((16..=48).contains(n), "bucket {bucket}: {n} of 256");
        }
    }
}
