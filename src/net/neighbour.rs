//! The ARP neighbour cache: (port, IPv4 address) -> MAC address, with a
//! small queue of packets per neighbour that is still being resolved.
//!
//! Entries are per port, as Linux keys its neighbours by device: an entry's
//! port is fixed when it is made, learning never moves it, and the same
//! address seen on another port is another entry, never an update. (Which
//! ARP frames may teach the table at all is the pipeline's decision: only
//! senders on the receiving port's subnets, never our own addresses.)
//!
//! A simplified version of Linux's neighbour state machine:
//!
//! - `Incomplete`: a request has been broadcast; packets queue (up to
//!   [`MAX_PENDING`]). `poll` rebroadcasts every `retrans_ms`, and after
//!   `max_probes` requests hands the queued packets back as unresolved and
//!   forgets the neighbour.
//! - `Reachable`: confirmed by an ARP packet less than `reachable_ms` ago.
//! - `Stale`: not confirmed for `reachable_ms` and not used since; the MAC is
//!   still used as is.
//! - `Probe`: used after `reachable_ms` without confirmation. Packets still go
//!   to the known MAC while `poll` sends unicast requests to it; if
//!   `max_probes` go unanswered the entry is deleted, so the next packet
//!   starts over with a broadcast.
//! - `Permanent`: configured statically; never aged, probed or overwritten.
//!
//! Any non-static, resolved entry unused for `stale_ms` is deleted.
//!
//! Bounds: at most `capacity` entries and `pending_budget` queued packets
//! over all entries (the mbufs the pool can spare for this worker). A full
//! table makes room for a neighbour the data plane needs (`enqueue`,
//! `add_static`) by evicting an incomplete entry first, then a stale one,
//! then the least recently used; passive learning never evicts.
//!
//! Storage is fixed at construction: a dense vector of entries (each holding
//! its queue inline in an `ArrayVec`) and a hash map from address to index
//! with twice the needed capacity. With the map never more than half full,
//! hashbrown cleans up deleted slots by rehashing in place instead of
//! growing, so nothing allocates after `new`. The table is generic over the
//! packet type so tests can queue `Vec<u8>` where production queues mbufs.

use std::fmt;
use std::mem;
use std::net::Ipv4Addr;

use arrayvec::ArrayVec;
use hashbrown::HashMap;

use super::hash::FastInt;
use super::MacAddr;

/// Packets queued per unresolved neighbour.
pub const MAX_PENDING: usize = 16;

/// Neighbour cache sizes and timers. Times are in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourConfig {
    /// Maximum number of entries, static ones included.
    pub capacity: usize,
    /// After this long without confirmation, an entry that is used is
    /// re-probed.
    pub reachable_ms: u64,
    /// A dynamic entry unused this long is deleted.
    pub stale_ms: u64,
    /// Interval between ARP requests for one neighbour.
    pub retrans_ms: u64,
    /// Requests sent before giving up, the first one included.
    pub max_probes: u32,
    /// Packets queued over all entries at most.
    pub pending_budget: usize,
}

impl Default for NeighbourConfig {
    fn default() -> Self {
        Self {
            capacity: 1024,
            reachable_ms: 30_000,
            stale_ms: 300_000,
            retrans_ms: 1_000,
            max_probes: 3,
            pending_budget: 1024 * MAX_PENDING,
        }
    }
}

/// Entry states, named as `ip neigh` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NeighbourState {
    Incomplete,
    Reachable,
    Stale,
    Probe,
    Permanent,
}

impl fmt::Display for NeighbourState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NeighbourState::Incomplete => "INCOMPLETE",
            NeighbourState::Reachable => "REACHABLE",
            NeighbourState::Stale => "STALE",
            NeighbourState::Probe => "PROBE",
            NeighbourState::Permanent => "PERMANENT",
        })
    }
}

/// A snapshot of one entry, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourInfo {
    /// `None` while the neighbour is being resolved.
    pub mac: Option<MacAddr>,
    pub port: u16,
    pub state: NeighbourState,
    pub is_static: bool,
}

/// What [`NeighbourTable::enqueue`] did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Enqueue<P> {
    /// The packet waits for the neighbour's MAC. `send_request` is true when
    /// this call created the entry: the caller should send an ARP request
    /// now (it counts as the first of `max_probes`).
    Queued { send_request: bool },
    /// The neighbour's queue is full (or, if the caller skipped `lookup`,
    /// the neighbour is already resolved): drop and count the packet.
    QueueFull(P),
    /// No room for a new neighbour (every entry is static): drop and count
    /// the packet.
    TableFull(P),
    /// The packets queued over all neighbours reached `pending_budget`:
    /// drop and count the packet.
    BudgetFull(P),
}

/// Work that [`NeighbourTable::poll`] hands to the caller.
#[derive(Debug, PartialEq, Eq)]
pub enum NeighbourEvent<P> {
    /// Send an ARP request for `ip` out of `port`: broadcast when
    /// `target_mac` is `None`, otherwise a unicast probe to that MAC.
    SendRequest {
        ip: Ipv4Addr,
        port: u16,
        target_mac: Option<MacAddr>,
    },
    /// A packet whose neighbour never answered: drop and count it.
    Unresolved(P),
}

/// Why a static entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourError {
    TableFull(Ipv4Addr),
    AlreadyStatic(Ipv4Addr),
}

impl fmt::Display for NeighbourError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NeighbourError::TableFull(ip) => {
                write!(f, "static neighbour {ip}: the neighbour table is full")
            }
            NeighbourError::AlreadyStatic(ip) => {
                write!(f, "static neighbour {ip} is already configured")
            }
        }
    }
}

impl std::error::Error for NeighbourError {}

#[derive(Debug)]
struct Entry<P> {
    ip: Ipv4Addr,
    port: u16,
    /// Meaningless while `Incomplete`.
    mac: MacAddr,
    state: NeighbourState,
    /// Requests sent in the current `Incomplete` or `Probe` round.
    probes: u32,
    /// When an ARP packet last confirmed the entry.
    confirmed: u64,
    /// When a packet last used (or created) the entry.
    used: u64,
    /// `Incomplete`/`Probe`: when `poll` next sends a request or gives up.
    next_probe: u64,
    pending: ArrayVec<P, MAX_PENDING>,
}

impl<P> Entry<P> {
    fn new(ip: Ipv4Addr, port: u16, mac: MacAddr, state: NeighbourState, now: u64) -> Self {
        Self {
            ip,
            port,
            mac,
            state,
            probes: 0,
            confirmed: now,
            used: now,
            next_probe: now,
            pending: ArrayVec::new(),
        }
    }

    fn info(&self) -> NeighbourInfo {
        NeighbourInfo {
            mac: (self.state != NeighbourState::Incomplete).then_some(self.mac),
            port: self.port,
            state: self.state,
            is_static: self.state == NeighbourState::Permanent,
        }
    }

    /// The earliest time `poll` has something to do for this entry.
    fn deadline(&self, config: &NeighbourConfig) -> u64 {
        let delete_at = self.used.saturating_add(config.stale_ms);
        match self.state {
            NeighbourState::Incomplete | NeighbourState::Probe => self.next_probe,
            NeighbourState::Reachable => {
                delete_at.min(self.confirmed.saturating_add(config.reachable_ms))
            }
            NeighbourState::Stale => delete_at,
            NeighbourState::Permanent => u64::MAX,
        }
    }
}

/// What the table did on its own that the caller counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableCounts {
    /// Entries evicted to make room for another.
    pub evictions: u64,
    /// Packets that were queued on evicted entries (freed).
    pub evicted_packets: u64,
}

/// How many entries one eviction looks at, from a rotating cursor: the
/// cost of making room stays bounded whatever the capacity.
const EVICTION_SCAN: usize = 64;

/// The table's key: the port in the high bits, the address in the low.
#[inline]
fn key(ip: Ipv4Addr, port: u16) -> u64 {
    (u64::from(port) << 32) | u64::from(u32::from(ip))
}

/// What `poll` decided for one entry.
enum Outcome {
    Keep,
    Remove,
}

/// The neighbour cache. See the module documentation for the states.
#[derive(Debug)]
pub struct NeighbourTable<P> {
    config: NeighbourConfig,
    /// Dense: deletion swaps the last entry into the hole.
    entries: Vec<Entry<P>>,
    /// `key(address, port)` -> index into `entries`.
    index: HashMap<u64, u32, FastInt>,
    /// No entry needs `poll` before this time, so most polls return at once.
    next_deadline: u64,
    /// Packets queued over all entries.
    pending: usize,
    /// Where the next eviction starts looking.
    evict_cursor: usize,
    counts: TableCounts,
}

impl<P> NeighbourTable<P> {
    pub fn new(config: NeighbourConfig) -> Self {
        Self {
            config,
            entries: Vec::with_capacity(config.capacity),
            index: HashMap::with_capacity_and_hasher(
                config.capacity.saturating_mul(2),
                FastInt::default(),
            ),
            next_deadline: u64::MAX,
            pending: 0,
            evict_cursor: 0,
            counts: TableCounts::default(),
        }
    }

    /// Packets queued over all entries.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// What the table counted since the last call (evictions).
    pub fn take_counts(&mut self) -> TableCounts {
        mem::take(&mut self.counts)
    }

    pub fn config(&self) -> &NeighbourConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The MAC to send to `ip` on `port`, if known (reachable, static or
    /// stale). Using an entry not confirmed for `reachable_ms` schedules a
    /// unicast probe on the next `poll`; the MAC is still returned. `None`
    /// means the caller should `enqueue` the packet.
    pub fn lookup(&mut self, ip: Ipv4Addr, port: u16, now: u64) -> Option<MacAddr> {
        let &idx = self.index.get(&key(ip, port))?;
        let entry = self.entries.get_mut(idx as usize)?;
        match entry.state {
            NeighbourState::Incomplete => return None,
            NeighbourState::Permanent => return Some(entry.mac),
            NeighbourState::Probe => {}
            NeighbourState::Reachable | NeighbourState::Stale => {
                let expired = now.saturating_sub(entry.confirmed) >= self.config.reachable_ms;
                if entry.state == NeighbourState::Stale || expired {
                    entry.state = NeighbourState::Probe;
                    entry.probes = 0;
                    entry.next_probe = now;
                    self.next_deadline = self.next_deadline.min(now);
                }
            }
        }
        entry.used = now;
        Some(entry.mac)
    }

    /// Queues `pkt` until `ip` is resolved on `port`, creating an
    /// `Incomplete` entry if there is none (evicting another if the table is
    /// full). Call it after `lookup` returned `None`.
    pub fn enqueue(&mut self, ip: Ipv4Addr, port: u16, pkt: P, now: u64) -> Enqueue<P> {
        if self.pending >= self.config.pending_budget {
            return Enqueue::BudgetFull(pkt);
        }
        if let Some(&idx) = self.index.get(&key(ip, port)) {
            let Some(entry) = self.entries.get_mut(idx as usize) else {
                return Enqueue::TableFull(pkt);
            };
            if entry.state != NeighbourState::Incomplete {
                return Enqueue::QueueFull(pkt);
            }
            entry.used = now;
            return match entry.pending.try_push(pkt) {
                Ok(()) => {
                    self.pending += 1;
                    Enqueue::Queued {
                        send_request: false,
                    }
                }
                Err(err) => Enqueue::QueueFull(err.element()),
            };
        }
        if !self.make_room() {
            return Enqueue::TableFull(pkt);
        }
        let mut entry = Entry::new(ip, port, [0; 6], NeighbourState::Incomplete, now);
        entry.probes = 1;
        entry.next_probe = now.saturating_add(self.config.retrans_ms);
        if let Err(err) = entry.pending.try_push(pkt) {
            // Unreachable: the queue is empty and MAX_PENDING > 0.
            return Enqueue::QueueFull(err.element());
        }
        self.pending += 1;
        self.insert(entry);
        Enqueue::Queued { send_request: true }
    }

    /// Records that `ip` is at `mac` on `port` (from an ARP packet): an
    /// existing dynamic entry on that port becomes `Reachable` (its port
    /// never changes; an entry of the same address on another port is
    /// another neighbour); a missing one is created only if `create` and
    /// the table has room (learning never evicts). Returns the packets that
    /// were waiting for it, in arrival order, for the caller to send.
    /// Static entries are untouched.
    pub fn learn(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        port: u16,
        now: u64,
        create: bool,
    ) -> ArrayVec<P, MAX_PENDING> {
        if let Some(&idx) = self.index.get(&key(ip, port)) {
            let Some(entry) = self.entries.get_mut(idx as usize) else {
                return ArrayVec::new();
            };
            if entry.state == NeighbourState::Permanent {
                return ArrayVec::new();
            }
            entry.mac = mac;
            entry.state = NeighbourState::Reachable;
            entry.probes = 0;
            entry.confirmed = now;
            self.next_deadline = self.next_deadline.min(entry.deadline(&self.config));
            let released = mem::take(&mut entry.pending);
            self.pending -= released.len();
            return released;
        }
        if create && self.entries.len() < self.config.capacity {
            self.insert(Entry::new(ip, port, mac, NeighbourState::Reachable, now));
        }
        ArrayVec::new()
    }

    /// Whether there is an entry for `ip` on `port`.
    pub fn contains(&self, ip: Ipv4Addr, port: u16) -> bool {
        self.index.contains_key(&key(ip, port))
    }

    /// Adds a permanent entry, replacing a learned one (whose queued
    /// packets, if any, are dropped) or evicting another when the table is
    /// full.
    pub fn add_static(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        port: u16,
    ) -> Result<(), NeighbourError> {
        if let Some(&idx) = self.index.get(&key(ip, port)) {
            if let Some(entry) = self.entries.get_mut(idx as usize) {
                if entry.state == NeighbourState::Permanent {
                    return Err(NeighbourError::AlreadyStatic(ip));
                }
                self.pending -= entry.pending.len();
                *entry = Entry::new(ip, port, mac, NeighbourState::Permanent, entry.used);
                return Ok(());
            }
        }
        if !self.make_room() {
            return Err(NeighbourError::TableFull(ip));
        }
        self.insert(Entry::new(ip, port, mac, NeighbourState::Permanent, 0));
        Ok(())
    }

    /// Deletes the entry for `ip` on `port` (static or not), dropping any
    /// queued packets. Returns whether there was one.
    pub fn remove(&mut self, ip: Ipv4Addr, port: u16) -> bool {
        match self.index.get(&key(ip, port)) {
            Some(&idx) => {
                self.remove_at(idx as usize);
                true
            }
            None => false,
        }
    }

    /// Runs the timers: (re)sends requests, gives up on neighbours that do
    /// not answer, ages and deletes entries. Call it every few milliseconds,
    /// not per packet. Returns at once until some entry is due; otherwise
    /// the work is one pass over the entries (at most `capacity`).
    pub fn poll(&mut self, now: u64, mut on_event: impl FnMut(NeighbourEvent<P>)) {
        if now < self.next_deadline {
            return;
        }
        let config = self.config;
        let mut next_deadline = u64::MAX;
        let mut i = 0;
        while i < self.entries.len() {
            let entry = &mut self.entries[i];
            let outcome = match entry.state {
                NeighbourState::Permanent => Outcome::Keep,
                NeighbourState::Incomplete | NeighbourState::Probe => {
                    if now < entry.next_probe {
                        Outcome::Keep
                    } else if entry.probes < config.max_probes {
                        let target_mac =
                            (entry.state == NeighbourState::Probe).then_some(entry.mac);
                        on_event(NeighbourEvent::SendRequest {
                            ip: entry.ip,
                            port: entry.port,
                            target_mac,
                        });
                        entry.probes += 1;
                        entry.next_probe = now.saturating_add(config.retrans_ms);
                        Outcome::Keep
                    } else {
                        self.pending -= entry.pending.len();
                        for pkt in entry.pending.drain(..) {
                            on_event(NeighbourEvent::Unresolved(pkt));
                        }
                        Outcome::Remove
                    }
                }
                NeighbourState::Reachable | NeighbourState::Stale => {
                    if now.saturating_sub(entry.used) >= config.stale_ms {
                        Outcome::Remove
                    } else {
                        if now.saturating_sub(entry.confirmed) >= config.reachable_ms {
                            entry.state = NeighbourState::Stale;
                        }
                        Outcome::Keep
                    }
                }
            };
            match outcome {
                Outcome::Keep => {
                    next_deadline = next_deadline.min(entry.deadline(&config));
                    i += 1;
                }
                // The last entry moves into slot `i`: look at it next.
                Outcome::Remove => self.remove_at(i),
            }
        }
        self.next_deadline = next_deadline;
    }

    /// The entry for `ip` on `port`, for display.
    pub fn get(&self, ip: Ipv4Addr, port: u16) -> Option<NeighbourInfo> {
        let &idx = self.index.get(&key(ip, port))?;
        self.entries.get(idx as usize).map(Entry::info)
    }

    /// Every entry, in no particular order, for display.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, NeighbourInfo)> + '_ {
        self.entries.iter().map(|entry| (entry.ip, entry.info()))
    }

    /// Callers check capacity first.
    fn insert(&mut self, entry: Entry<P>) {
        self.next_deadline = self.next_deadline.min(entry.deadline(&self.config));
        // Capacity is a usize but the index stores u32; a table beyond
        // 2^32 entries is not a neighbour cache.
        let idx = self.entries.len() as u32;
        self.index.insert(key(entry.ip, entry.port), idx);
        self.entries.push(entry);
    }

    /// Makes room for one more entry if the table is full: evicts, among
    /// up to `EVICTION_SCAN` entries from the cursor, an incomplete one
    /// first, then a stale one, then the least recently used; never a
    /// static one. False when there is no room and nothing to evict.
    fn make_room(&mut self) -> bool {
        let len = self.entries.len();
        if len < self.config.capacity {
            return true;
        }
        let rank = |e: &Entry<P>| match e.state {
            NeighbourState::Incomplete => Some(0),
            NeighbourState::Stale => Some(1),
            NeighbourState::Reachable | NeighbourState::Probe => Some(2),
            NeighbourState::Permanent => None,
        };
        let mut victim: Option<(u8, u64, usize)> = None;
        for step in 0..len.min(EVICTION_SCAN) {
            let i = (self.evict_cursor + step) % len;
            let e = &self.entries[i];
            if let Some(r) = rank(e) {
                if victim.is_none_or(|(vr, vu, _)| (r, e.used) < (vr, vu)) {
                    victim = Some((r, e.used, i));
                }
            }
        }
        self.evict_cursor = (self.evict_cursor + EVICTION_SCAN) % len.max(1);
        let victim = match victim {
            Some((_, _, i)) => i,
            // Only static entries in the window: look at the rest once.
            None => match self
                .entries
                .iter()
                .position(|e| e.state != NeighbourState::Permanent)
            {
                Some(i) => i,
                None => return false,
            },
        };
        self.counts.evictions += 1;
        self.counts.evicted_packets += self.entries[victim].pending.len() as u64;
        self.remove_at(victim);
        true
    }

    /// Removes entry `idx`, dropping its queued packets.
    fn remove_at(&mut self, idx: usize) {
        if idx >= self.entries.len() {
            return;
        }
        let removed = self.entries.swap_remove(idx);
        self.pending -= removed.pending.len();
        self.index.remove(&key(removed.ip, removed.port));
        if let Some(moved) = self.entries.get(idx) {
            if let Some(slot) = self.index.get_mut(&key(moved.ip, moved.port)) {
                *slot = idx as u32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: MacAddr = [0x02, 0, 0, 0, 0, 0xa];
    const MAC_B: MacAddr = [0x02, 0, 0, 0, 0, 0xb];

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn config() -> NeighbourConfig {
        NeighbourConfig {
            capacity: 4,
            ..NeighbourConfig::default()
        }
    }

    fn poll(table: &mut NeighbourTable<Vec<u8>>, now: u64) -> Vec<NeighbourEvent<Vec<u8>>> {
        let mut events = Vec::new();
        table.poll(now, |event| events.push(event));
        events
    }

    fn broadcast(ip: Ipv4Addr, port: u16) -> NeighbourEvent<Vec<u8>> {
        NeighbourEvent::SendRequest {
            ip,
            port,
            target_mac: None,
        }
    }

    fn unicast(ip: Ipv4Addr, port: u16, mac: MacAddr) -> NeighbourEvent<Vec<u8>> {
        NeighbourEvent::SendRequest {
            ip,
            port,
            target_mac: Some(mac),
        }
    }

    fn state(table: &NeighbourTable<Vec<u8>>, ip: Ipv4Addr) -> Option<NeighbourState> {
        table
            .iter()
            .find(|(a, _)| *a == ip)
            .map(|(_, info)| info.state)
    }

    #[test]
    fn enqueue_requests_once_then_queues() {
        let mut table = NeighbourTable::new(config());
        assert_eq!(table.lookup(ip(1), 3, 0), None);
        assert_eq!(
            table.enqueue(ip(1), 3, vec![0], 0),
            Enqueue::Queued { send_request: true }
        );
        assert_eq!(table.lookup(ip(1), 3, 1), None);
        assert_eq!(
            table.enqueue(ip(1), 3, vec![1], 1),
            Enqueue::Queued {
                send_request: false
            }
        );
        let info = table.get(ip(1), 3).unwrap();
        assert_eq!(
            info,
            NeighbourInfo {
                mac: None,
                port: 3,
                state: NeighbourState::Incomplete,
                is_static: false,
            }
        );
        assert_eq!(table.len(), 1);
        // The caller sent the first request; nothing is due before retrans_ms.
        assert!(poll(&mut table, 999).is_empty());
    }

    #[test]
    fn queue_is_bounded() {
        let mut table = NeighbourTable::new(config());
        for i in 0..MAX_PENDING {
            assert!(matches!(
                table.enqueue(ip(1), 0, vec![i as u8], 0),
                Enqueue::Queued { .. }
            ));
        }
        assert_eq!(
            table.enqueue(ip(1), 0, vec![99], 0),
            Enqueue::QueueFull(vec![99])
        );
    }

    #[test]
    fn a_full_table_evicts_incomplete_then_stale_then_least_recently_used() {
        let mut table = NeighbourTable::new(config());
        table.add_static(ip(1), MAC_A, 0).unwrap();
        table.learn(ip(2), MAC_A, 0, 0, true);
        table.learn(ip(3), MAC_B, 0, 0, true);
        table.enqueue(ip(4), 0, vec![4], 0);
        assert_eq!(table.len(), 4);
        // Passive learning never evicts.
        assert!(table.learn(ip(9), MAC_A, 0, 0, true).is_empty());
        assert_eq!(table.get(ip(9), 0), None);
        // A neighbour the data plane needs evicts the incomplete one first
        // (its queued packet is freed and counted).
        assert_eq!(
            table.enqueue(ip(5), 0, vec![5], 1),
            Enqueue::Queued { send_request: true }
        );
        assert_eq!(table.get(ip(4), 0), None);
        assert_eq!(
            table.take_counts(),
            TableCounts {
                evictions: 1,
                evicted_packets: 1
            }
        );
        assert_eq!(table.pending(), 1);
        // Then a stale one (ip(3) aged; ip(2) used and confirmed since).
        table.learn(ip(5), MAC_B, 0, 1, false);
        table.learn(ip(2), MAC_A, 0, 29_000, false);
        table.lookup(ip(2), 0, 29_000);
        poll(&mut table, 30_000);
        assert_eq!(state(&table, ip(3)), Some(NeighbourState::Stale));
        table.add_static(ip(6), MAC_B, 0).unwrap();
        assert_eq!(table.get(ip(3), 0), None);
        // Then the least recently used; never a static one.
        table.lookup(ip(2), 0, 30_001);
        table.enqueue(ip(7), 0, vec![7], 30_002);
        assert_eq!(table.get(ip(5), 0), None, "ip(5) was used least recently");
        assert!(table.get(ip(2), 0).is_some());
        assert_eq!(table.take_counts().evictions, 2);
        let statics = table.iter().filter(|(_, n)| n.is_static).count();
        assert_eq!(statics, 2);

        // Only static entries: nothing to evict.
        let mut only_static = NeighbourTable::new(NeighbourConfig {
            capacity: 1,
            ..config()
        });
        only_static.add_static(ip(1), MAC_A, 0).unwrap();
        assert_eq!(
            only_static.enqueue(ip(2), 0, vec![2], 0),
            Enqueue::TableFull(vec![2])
        );
        assert_eq!(
            only_static.add_static(ip(2), MAC_A, 0),
            Err(NeighbourError::TableFull(ip(2)))
        );
        let mut empty = NeighbourTable::new(NeighbourConfig {
            capacity: 0,
            ..config()
        });
        assert_eq!(
            empty.enqueue(ip(1), 0, vec![1], 0),
            Enqueue::TableFull(vec![1])
        );
    }

    #[test]
    fn queued_packets_are_bounded_over_all_neighbours() {
        let mut table = NeighbourTable::new(NeighbourConfig {
            pending_budget: 20,
            ..config()
        });
        for i in 0..MAX_PENDING {
            assert!(matches!(
                table.enqueue(ip(1), 0, vec![i as u8], 0),
                Enqueue::Queued { .. }
            ));
        }
        for i in 0..4 {
            assert!(matches!(
                table.enqueue(ip(2), 0, vec![i], 0),
                Enqueue::Queued { .. }
            ));
        }
        assert_eq!(table.pending(), 20);
        assert_eq!(
            table.enqueue(ip(3), 0, vec![3], 0),
            Enqueue::BudgetFull(vec![3])
        );
        assert_eq!(table.get(ip(3), 0), None, "no entry without a packet");
        // Whatever leaves a queue gives its room back: released, failed,
        // removed.
        assert_eq!(table.learn(ip(1), MAC_A, 0, 1, false).len(), MAX_PENDING);
        assert_eq!(table.pending(), 4);
        assert!(table.remove(ip(2), 0));
        assert_eq!(table.pending(), 0);
        table.enqueue(ip(3), 0, vec![3], 0);
        for now in [1_000, 2_000, 3_000] {
            poll(&mut table, now);
        }
        assert_eq!(table.pending(), 0);
    }

    #[test]
    fn learn_releases_the_queue_in_order() {
        let mut table = NeighbourTable::new(config());
        for i in 0..5 {
            table.enqueue(ip(1), 2, vec![i], 10);
        }
        let released = table.learn(ip(1), MAC_A, 2, 20, false);
        assert_eq!(
            released.as_slice(),
            [vec![0], vec![1], vec![2], vec![3], vec![4]]
        );
        assert_eq!(table.lookup(ip(1), 2, 21), Some(MAC_A));
        assert_eq!(state(&table, ip(1)), Some(NeighbourState::Reachable));
        // No requests are pending for a resolved neighbour.
        assert!(poll(&mut table, 5_000).is_empty());
        // A second learn has nothing to release.
        assert!(table.learn(ip(1), MAC_A, 2, 30, false).is_empty());
    }

    #[test]
    fn enqueue_on_a_resolved_neighbour_hands_the_packet_back() {
        let mut table = NeighbourTable::new(config());
        table.learn(ip(1), MAC_A, 0, 0, true);
        assert_eq!(
            table.enqueue(ip(1), 0, vec![1], 1),
            Enqueue::QueueFull(vec![1])
        );
    }

    #[test]
    fn learn_without_create_does_not_create() {
        let mut table: NeighbourTable<Vec<u8>> = NeighbourTable::new(config());
        assert!(table.learn(ip(1), MAC_A, 0, 0, false).is_empty());
        assert_eq!(table.get(ip(1), 0), None);
        assert!(table.is_empty());
        table.learn(ip(1), MAC_A, 0, 0, true);
        assert_eq!(table.lookup(ip(1), 0, 1), Some(MAC_A));
        // Learning updates the MAC of the entry on its own port ...
        table.learn(ip(1), MAC_B, 0, 2, false);
        assert_eq!(table.lookup(ip(1), 0, 3), Some(MAC_B));
    }

    #[test]
    fn entries_are_per_port_and_learning_never_moves_one() {
        let mut table: NeighbourTable<Vec<u8>> = NeighbourTable::new(config());
        table.enqueue(ip(1), 1, vec![1], 0);
        // The same address claimed on another port is not an update: the
        // packet waiting on port 1 stays queued for port 1.
        assert!(table.learn(ip(1), MAC_B, 0, 1, false).is_empty());
        assert!(table.learn(ip(1), MAC_B, 0, 1, true).is_empty());
        assert_eq!(
            table.get(ip(1), 1).map(|n| n.state),
            Some(NeighbourState::Incomplete)
        );
        assert_eq!(table.lookup(ip(1), 1, 2), None);
        assert_eq!(table.lookup(ip(1), 0, 2), Some(MAC_B), "port 0's own entry");
        assert_eq!(table.learn(ip(1), MAC_A, 1, 3, false).as_slice(), [vec![1]]);
        assert_eq!(table.lookup(ip(1), 1, 4), Some(MAC_A));
        assert_eq!(table.lookup(ip(1), 0, 4), Some(MAC_B));
        assert!(table.remove(ip(1), 0));
        assert_eq!(table.lookup(ip(1), 1, 5), Some(MAC_A));
    }

    #[test]
    fn retransmits_then_fails() {
        let mut table = NeighbourTable::new(config());
        table.enqueue(ip(1), 5, vec![1], 0); // the caller sends request 1
        table.enqueue(ip(1), 5, vec![2], 100);
        assert!(poll(&mut table, 500).is_empty());
        assert_eq!(poll(&mut table, 1_000), [broadcast(ip(1), 5)]); // request 2
        assert!(poll(&mut table, 1_500).is_empty());
        assert_eq!(poll(&mut table, 2_000), [broadcast(ip(1), 5)]); // request 3
        assert!(poll(&mut table, 2_999).is_empty());
        assert_eq!(
            poll(&mut table, 3_000),
            [
                NeighbourEvent::Unresolved(vec![1]),
                NeighbourEvent::Unresolved(vec![2]),
            ]
        );
        assert_eq!(table.get(ip(1), 5), None);
        assert!(table.is_empty());
        // The next packet starts over.
        assert_eq!(
            table.enqueue(ip(1), 5, vec![3], 3_001),
            Enqueue::Queued { send_request: true }
        );
    }

    #[test]
    fn late_poll_sends_one_request_per_call() {
        let mut table = NeighbourTable::new(config());
        table.enqueue(ip(1), 0, vec![1], 0);
        assert_eq!(poll(&mut table, 10_000), [broadcast(ip(1), 0)]);
        assert_eq!(poll(&mut table, 11_000), [broadcast(ip(1), 0)]);
        assert_eq!(
            poll(&mut table, 12_000),
            [NeighbourEvent::Unresolved(vec![1])]
        );
    }

    #[test]
    fn used_entry_is_probed_after_reachable_ms() {
        let mut table = NeighbourTable::new(config());
        table.learn(ip(1), MAC_A, 1, 0, true);
        assert_eq!(table.lookup(ip(1), 1, 29_999), Some(MAC_A));
        assert!(poll(&mut table, 29_999).is_empty());
        // Past reachable_ms: still usable, but marked for a unicast probe.
        assert_eq!(table.lookup(ip(1), 1, 30_000), Some(MAC_A));
        assert_eq!(state(&table, ip(1)), Some(NeighbourState::Probe));
        assert_eq!(poll(&mut table, 30_001), [unicast(ip(1), 1, MAC_A)]);
        assert_eq!(table.lookup(ip(1), 1, 30_500), Some(MAC_A));
        assert!(poll(&mut table, 30_500).is_empty());
        // The reply confirms it.
        table.learn(ip(1), MAC_A, 1, 30_600, false);
        assert_eq!(state(&table, ip(1)), Some(NeighbourState::Reachable));
        assert!(poll(&mut table, 40_000).is_empty());
    }

    #[test]
    fn unanswered_probes_delete_the_entry() {
        let mut table = NeighbourTable::new(config());
        table.learn(ip(1), MAC_A, 1, 0, true);
        assert_eq!(poll(&mut table, 30_000), []);
        assert_eq!(state(&table, ip(1)), Some(NeighbourState::Stale));
        // Using a stale entry starts probing.
        assert_eq!(table.lookup(ip(1), 1, 40_000), Some(MAC_A));
        assert_eq!(poll(&mut table, 40_000), [unicast(ip(1), 1, MAC_A)]);
        assert_eq!(poll(&mut table, 41_000), [unicast(ip(1), 1, MAC_A)]);
        assert_eq!(poll(&mut table, 42_000), [unicast(ip(1), 1, MAC_A)]);
        assert_eq!(table.lookup(ip(1), 1, 42_500), Some(MAC_A));
        assert_eq!(poll(&mut table, 43_000), []);
        assert_eq!(table.get(ip(1), 1), None);
        assert_eq!(table.lookup(ip(1), 1, 43_001), None);
    }

    #[test]
    fn unused_entries_are_deleted_after_stale_ms() {
        let mut table = NeighbourTable::new(config());
        table.learn(ip(1), MAC_A, 0, 0, true);
        table.learn(ip(2), MAC_B, 0, 0, true);
        // ip(2) keeps being used and confirmed; ip(1) is never used.
        let mut now = 0;
        while now < 300_000 {
            now += 10_000;
            assert_eq!(table.lookup(ip(2), 0, now), Some(MAC_B));
            table.learn(ip(2), MAC_B, 0, now, false);
            assert!(poll(&mut table, now).is_empty());
            let expect_ip1 = now < 300_000;
            assert_eq!(table.get(ip(1), 0).is_some(), expect_ip1, "at {now}");
        }
        assert_eq!(state(&table, ip(2)), Some(NeighbourState::Reachable));
        assert_eq!(table.len(), 1);
        // ip(2) survives unused until stale_ms after its last use.
        poll(&mut table, now + 299_999);
        assert!(table.get(ip(2), 0).is_some());
        poll(&mut table, now + 300_000);
        assert!(table.is_empty());
    }

    #[test]
    fn static_entries_never_age_or_change() {
        let mut table: NeighbourTable<Vec<u8>> = NeighbourTable::new(config());
        table.add_static(ip(1), MAC_A, 2).unwrap();
        assert_eq!(
            table.add_static(ip(1), MAC_B, 2),
            Err(NeighbourError::AlreadyStatic(ip(1)))
        );
        assert!(table.learn(ip(1), MAC_B, 2, 10, true).is_empty());
        assert!(poll(&mut table, 10_000_000).is_empty());
        assert_eq!(table.lookup(ip(1), 2, 10_000_000), Some(MAC_A));
        assert!(poll(&mut table, 10_000_001).is_empty());
        assert_eq!(
            table.get(ip(1), 2),
            Some(NeighbourInfo {
                mac: Some(MAC_A),
                port: 2,
                state: NeighbourState::Permanent,
                is_static: true,
            })
        );
        assert_eq!(
            table.enqueue(ip(1), 2, vec![1], 0),
            Enqueue::QueueFull(vec![1])
        );
    }

    #[test]
    fn static_replaces_a_learned_entry() {
        let mut table = NeighbourTable::new(config());
        table.enqueue(ip(1), 0, vec![1], 0);
        table.add_static(ip(1), MAC_A, 0).unwrap();
        assert_eq!(table.pending(), 0, "its queued packet went with it");
        assert_eq!(table.lookup(ip(1), 0, 1), Some(MAC_A));
        assert!(poll(&mut table, 100_000).is_empty());
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn removal_keeps_the_index_consistent() {
        let mut table = NeighbourTable::new(config());
        table.learn(ip(1), MAC_A, 0, 0, true);
        table.enqueue(ip(2), 0, vec![2], 0);
        table.learn(ip(3), MAC_B, 0, 0, true);
        assert!(table.remove(ip(1), 0));
        assert!(!table.remove(ip(1), 0));
        assert_eq!(table.lookup(ip(3), 0, 1), Some(MAC_B));
        assert_eq!(table.learn(ip(2), MAC_A, 0, 1, false).as_slice(), [vec![2]]);
        let mut ips: Vec<Ipv4Addr> = table.iter().map(|(ip, _)| ip).collect();
        ips.sort();
        assert_eq!(ips, [ip(2), ip(3)]);
    }

    #[test]
    fn churn_does_not_grow_the_map() {
        // 112 entries exactly fill hashbrown's 128-bucket table, so without
        // the headroom this churn leaves tombstones that force it to grow.
        let mut table = NeighbourTable::new(NeighbourConfig {
            capacity: 112,
            ..NeighbourConfig::default()
        });
        let map_bytes = table.index.allocation_size();
        let mut now = 0;
        for round in 0..200u32 {
            for i in 0..112u32 {
                let addr = Ipv4Addr::from(round * 112 + i);
                table.enqueue(addr, 0, vec![], now);
            }
            assert_eq!(table.len(), 112);
            // Two more broadcasts, then failure.
            for _ in 0..3 {
                now += 1_000;
                poll(&mut table, now);
            }
            assert!(table.is_empty());
        }
        assert_eq!(table.index.allocation_size(), map_bytes);
        assert_eq!(table.entries.capacity(), 112);
    }

    #[test]
    fn time_going_backwards_does_not_panic() {
        let mut table = NeighbourTable::new(config());
        table.learn(ip(1), MAC_A, 0, 1_000_000, true);
        table.enqueue(ip(2), 0, vec![2], u64::MAX);
        assert_eq!(table.lookup(ip(1), 0, 0), Some(MAC_A));
        poll(&mut table, 0);
        poll(&mut table, u64::MAX);
    }
}
