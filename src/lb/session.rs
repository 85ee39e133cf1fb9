//! The per-core session (connection) table, IPVS's `ip_vs_conn` table.
//!
//! A session is found from either direction: by the 5-tuple of the client's
//! packets (`inbound`) and by the 5-tuple of the real server's replies
//! (`outbound`). The two are separate indexes, so a key is never confused
//! between directions. Idle sessions are removed by a timing wheel that the
//! worker advances with `expire()`; the packet path only writes
//! `Session::expires`.
//!
//! Everything is allocated by `with_capacity`; no operation allocates after
//! that, nothing rehashes, and every operation's work is bounded.
//!
//! Layout and memory per session, at capacity:
//! - sessions: one 64-byte, cache-line-aligned slot each (`Option<Session>`
//!   costs nothing over `Session` thanks to the enum niche in `ConnState`);
//! - expiry wheel and free list: an 8-byte (next, prev) link each, kept out
//!   of the slot so a lookup touches only the index and the session line;
//! - two open-addressing indexes (inbound, outbound), each with 2 buckets
//!   per session of 8 bytes (session id + 32-bit hash tag): 32 bytes.
//!
//! That is 104 bytes per session, plus 8 bytes per wheel slot (8 KiB).
//! `SessionTable::memory_bytes()` reports the exact figure.
//!
//! Why an own index rather than hashbrown: with deletes, hashbrown leaves
//! tombstones and, when it runs out of empty buckets, rehashes the whole
//! table in place (without allocating only while it is at most half full) --
//! a pause of O(table) on the packet path. Linear probing with backward-shift
//! deletion leaves no tombstones, so there is nothing to rehash, ever, and at
//! a load factor of at most 1/2 a lookup probes about 1.5 buckets on a hit
//! and 2.5 on a miss.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::mem;
use super::synproxy::Splice;
use super::tcp_state::TcpState;
use super::Proto;

/// A packet's 5-tuple as it appears on the wire. 14 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub proto: Proto,
    pub src: Ipv4Addr,
    pub sport: u16,
    pub dst: Ipv4Addr,
    pub dport: u16,
}

impl FlowKey {
    /// The flow from `src` to `dst`.
    pub fn between(proto: Proto, src: SocketAddrV4, dst: SocketAddrV4) -> FlowKey {
        FlowKey {
            proto,
            src: *src.ip(),
            sport: src.port(),
            dst: *dst.ip(),
            dport: dst.port(),
        }
    }

    /// The same flow seen from the other end: source and destination
    /// swapped.
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            proto: self.proto,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

/// Protocol state of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// UDP has no states in IPVS.
    Udp,
    Tcp(TcpState),
}

impl ConnState {
    /// The state name `ipvsadm -lnc` shows ("UDP" for UDP, as IPVS).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Udp => "UDP",
            ConnState::Tcp(s) => s.as_str(),
        }
    }

    /// Counted in ActiveConn (true) or InActConn (false). IPVS counts UDP
    /// connections as inactive.
    pub fn is_active(self) -> bool {
        match self {
            ConnState::Udp => false,
            ConnState::Tcp(s) => s.is_active(),
        }
    }
}

/// `Session::flags` bits.
pub mod flags {
    /// A SYN-proxied session waiting for its real server's SYN-ACK: the
    /// splice holds the cookie in `server_seq`, sluice's SYN-ACK TSval in
    /// `ts`, the client's window scale in `window_in` (-1: none) and the
    /// cookie's MSS index in `window_out`.
    pub const SYNPROXY_WAIT: u8 = 1;
    /// Segments are rewritten by `splice` (SYN proxy, PROXY protocol).
    pub const SPLICED: u8 = 2;
    /// The client offered SACK (SYN proxy, from its cookie).
    pub const CLIENT_SACK: u8 = 4;
    /// The client uses timestamps (SYN proxy).
    pub const CLIENT_TS: u8 = 8;
    /// A PROXY protocol v2 header goes ahead of the client's bytes
    /// (`lb::client_address`): `splice.client_seq` is its length,
    /// `splice.inserted_at` where it starts.
    pub const PROXY_V2: u8 = 16;
    /// The client's first segments carry a TOA option.
    pub const TOA: u8 = 32;
    /// The real has not yet shown it received what `PROXY_V2` or `TOA`
    /// adds: the header is not acknowledged, or the handshake is not
    /// complete.
    pub const CLIENT_ADDRESS_PENDING: u8 = 64;
    /// The PROXY header was sent at least once.
    pub const PROXY_HEADER_SENT: u8 = 128;
}

/// One connection through a service. 64 bytes with its splice (20): two
/// keys (28), the real's slot (4), the expiry (8), state and flags (2).
///
/// The pipeline rewrites an inbound packet to (src = `outbound.dst:dport`,
/// dst = `outbound.src:sport`) and an outbound packet to (src =
/// `inbound.dst:dport`, dst = `inbound.src:sport`), so one table serves NAT
/// and FULLNAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// As packets from the client arrive: client -> VIP.
    pub inbound: FlowKey,
    /// As replies from the real server arrive: real -> client (NAT), or
    /// real -> local address (FULLNAT).
    pub outbound: FlowKey,
    /// The counter slot of its real server (`lb::stats`).
    pub real: u32,
    pub state: ConnState,
    /// Milliseconds (on the clock passed to `SessionTable::expire`) at which
    /// the session expires unless refreshed.
    pub expires: u64,
    /// How its segments are rewritten when `flags` has `SPLICED`.
    pub splice: Splice,
    pub flags: u8,
}

/// Index of a session's slot in its `SessionTable`. Reused after removal.
pub type SessionId = u32;

/// A 5-tuple's keyed hash in one `SessionTable` (`SessionTable::tag`):
/// where its lookups start. Only meaningful for the table that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTag(u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// The table holds `capacity()` sessions.
    Full,
    /// A session with the same inbound or outbound key exists.
    Exists,
}

impl fmt::Display for InsertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InsertError::Full => "session table full",
            InsertError::Exists => "session already exists",
        })
    }
}

impl std::error::Error for InsertError {}

/// Granularity of expiry: a session is removed by the first `expire` call
/// whose `now_ms` is at or after its `expires` rounded up to a whole tick,
/// so at most this much late (given enough budget).
pub const WHEEL_TICK_MS: u64 = 1000;

/// `expires_ms` as the wheel acts on it: rounded up to a whole tick. A
/// session's removal comes at the same tick either way; stored so, the
/// expiry of a busy session stays the same value for a tick's worth of its
/// packets, which then need not write it.
#[inline]
pub fn on_tick(expires_ms: u64) -> u64 {
    expires_ms.div_ceil(WHEEL_TICK_MS) * WHEEL_TICK_MS
}

/// Ticks in one turn of the wheel: more than the longest default timeout
/// (900 s), so most sessions are looked at once, when they are due. Longer
/// timeouts work too: such a session is re-filed once per turn.
const WHEEL_SLOTS: usize = 1024;

/// Sessions are limited so that every slot, wheel sentinel and the pending
/// sentinel has a u32 index below `NIL`, and the index size fits in u32.
const MAX_SESSIONS: usize = 1 << 30;

/// "No session" in links and buckets.
const NIL: u32 = u32::MAX;

/// A session slot, exactly one cache line.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Slot(Option<Session>);

/// Intrusive doubly linked list node. A live session is on exactly one list:
/// a wheel slot's or the pending list. A free slot is on the free list
/// (singly linked through `next`).
#[derive(Clone, Copy)]
struct Link {
    next: u32,
    prev: u32,
}

/// The per-core session table. See the module documentation.
pub struct SessionTable {
    slots: Box<[Slot]>,
    /// `[0, capacity)`: one per slot. `capacity + t`: sentinel of wheel slot
    /// `t`. `capacity + WHEEL_SLOTS`: sentinel of the pending list.
    links: Box<[Link]>,
    inbound: Index,
    outbound: Index,
    hasher: FlowHasher,
    free_head: u32,
    len: usize,
    /// The next tick whose wheel slot has not yet been moved to the pending
    /// list. Every session due for a check before this tick is on the
    /// pending list.
    cursor: u64,
}

impl SessionTable {
    /// Allocates room for `max_sessions` (at most 2^30) sessions.
    pub fn with_capacity(max_sessions: usize) -> SessionTable {
        let capacity = max_sessions.min(MAX_SESSIONS);
        let sentinels = WHEEL_SLOTS + 1;
        let mut links = mem::huge_vec(
            Link {
                next: NIL,
                prev: NIL,
            },
            capacity + sentinels,
        );
        // Free list: 0 -> 1 -> ... -> capacity - 1, so ids are handed out in
        // order from a fresh table.
        for (i, link) in links.iter_mut().take(capacity).enumerate() {
            link.next = if i + 1 < capacity {
                (i + 1) as u32
            } else {
                NIL
            };
        }
        // Empty circular lists: every sentinel points to itself.
        for (i, link) in links.iter_mut().enumerate().skip(capacity) {
            *link = Link {
                next: i as u32,
                prev: i as u32,
            };
        }
        SessionTable {
            slots: mem::huge_vec(Slot(None), capacity).into_boxed_slice(),
            links: links.into_boxed_slice(),
            inbound: Index::new(capacity),
            outbound: Index::new(capacity),
            hasher: FlowHasher::new(),
            free_head: if capacity > 0 { 0 } else { NIL },
            len: 0,
            cursor: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most sessions the table holds (`max_sessions`, capped at 2^30).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of memory the table holds, fixed at construction.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val::<[Slot]>(&self.slots)
            + std::mem::size_of_val::<[Link]>(&self.links)
            + self.inbound.memory_bytes()
            + self.outbound.memory_bytes()
    }

    /// The hash a lookup of `key` starts from. Computed once per packet:
    /// the burst's prefetches and the lookup itself all take it.
    #[inline]
    pub fn tag(&self, key: &FlowKey) -> FlowTag {
        FlowTag(self.hasher.tag(key))
    }

    /// First half of a lookup ahead of time: brings the key's home bucket
    /// toward the cache. Lets a burst's misses overlap.
    #[inline]
    pub fn prefetch_bucket(&self, inbound: bool, tag: FlowTag) {
        self.index(inbound).prefetch(tag.0);
    }

    /// Brings in the outbound index bucket of a session not made yet (the
    /// one `key` would be): `insert` reads it to see that the key is free,
    /// a miss in a large table that nothing else would have hidden.
    #[inline]
    pub fn prefetch_outbound(&self, key: &FlowKey) {
        self.outbound.prefetch(self.hasher.tag(key));
    }

    /// Second half, once the bucket has had time to arrive: brings the
    /// session the bucket's line names for this tag toward the cache.
    /// False when the probe goes on past that line (a few percent of
    /// flows): the next line is then on its way, and `prefetch_session_far`
    /// can finish the job once it has arrived.
    #[inline]
    pub fn prefetch_session(&self, inbound: bool, tag: FlowTag) -> bool {
        let index = self.index(inbound);
        match index.guess(tag.0, 1) {
            Guess::Id(id) => {
                self.prefetch_slot(id);
                true
            }
            Guess::Absent => true,
            Guess::Beyond(next) => {
                index.prefetch_at(next);
                false
            }
        }
    }

    /// `prefetch_session` for a flow it returned false for: looks at the
    /// next line too.
    #[inline]
    pub fn prefetch_session_far(&self, inbound: bool, tag: FlowTag) {
        if let Guess::Id(id) = self.index(inbound).guess(tag.0, 2) {
            self.prefetch_slot(id);
        }
    }

    #[inline]
    fn prefetch_slot(&self, id: SessionId) {
        if let Some(slot) = self.slots.get(id as usize) {
            mem::prefetch(slot);
        }
    }

    #[inline]
    fn index(&self, inbound: bool) -> &Index {
        if inbound {
            &self.inbound
        } else {
            &self.outbound
        }
    }

    /// The session a client packet with this 5-tuple belongs to.
    pub fn lookup_inbound(&self, key: &FlowKey) -> Option<SessionId> {
        self.lookup_inbound_tagged(key, self.tag(key))
    }

    /// The session a real server's reply with this 5-tuple belongs to.
    pub fn lookup_outbound(&self, key: &FlowKey) -> Option<SessionId> {
        self.lookup_outbound_tagged(key, self.tag(key))
    }

    /// `lookup_inbound` with the key's tag already computed (`tag`).
    #[inline]
    pub fn lookup_inbound_tagged(&self, key: &FlowKey, tag: FlowTag) -> Option<SessionId> {
        self.inbound.find(
            tag.0,
            |id| matches!(self.slots.get(id as usize), Some(Slot(Some(s))) if s.inbound == *key),
        )
    }

    /// `lookup_outbound` with the key's tag already computed (`tag`).
    #[inline]
    pub fn lookup_outbound_tagged(&self, key: &FlowKey, tag: FlowTag) -> Option<SessionId> {
        self.outbound.find(
            tag.0,
            |id| matches!(self.slots.get(id as usize), Some(Slot(Some(s))) if s.outbound == *key),
        )
    }

    /// `None` if `id` is not a live session.
    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.slots.get(id as usize)?.0.as_ref()
    }

    /// Mutable access for the packet path: state, counters, and pushing
    /// `expires` later. Two things must not be done through it:
    /// - changing `inbound` or `outbound`: the indexes would no longer find
    ///   the session, nor be able to remove its entries;
    /// - moving `expires` *earlier*: use `set_expires`, or the session is
    ///   only removed when the time it was filed under comes.
    pub fn get_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        self.slots.get_mut(id as usize)?.0.as_mut()
    }

    /// Sets `expires`. Moving it later is just a write; moving it earlier
    /// (a state change to a shorter timeout, such as ESTABLISHED -> CLOSE)
    /// also re-files the session in the wheel, O(1). Ignored for an id that
    /// is not a live session.
    pub fn set_expires(&mut self, id: SessionId, expires_ms: u64) {
        let Some(Slot(Some(session))) = self.slots.get_mut(id as usize) else {
            return;
        };
        let earlier = expires_ms < session.expires;
        session.expires = expires_ms;
        if earlier {
            self.unlink(id);
            self.file(id, expires_ms);
        }
    }

    pub fn insert(&mut self, session: Session) -> Result<SessionId, InsertError> {
        if self.lookup_inbound(&session.inbound).is_some()
            || self.lookup_outbound(&session.outbound).is_some()
        {
            return Err(InsertError::Exists);
        }
        let id = self.free_head;
        let Some(link) = self.links.get(id as usize).filter(|_| id != NIL) else {
            return Err(InsertError::Full);
        };
        self.free_head = link.next;
        self.slots[id as usize] = Slot(Some(session));
        // Neither index can be full: each has 2 buckets per slot.
        self.inbound.insert(self.hasher.tag(&session.inbound), id);
        self.outbound.insert(self.hasher.tag(&session.outbound), id);
        self.file(id, session.expires);
        self.len += 1;
        Ok(id)
    }

    /// Removes a session and frees both its keys and its slot. Returns it,
    /// or `None` if `id` was not a live session.
    pub fn remove(&mut self, id: SessionId) -> Option<Session> {
        let session = self.slots.get(id as usize)?.0?;
        self.release(id, &session);
        Some(session)
    }

    /// Live sessions among slots `from..from + count`, in slot order: a
    /// bounded piece of a listing.
    pub fn iter_slots(
        &self,
        from: usize,
        count: usize,
    ) -> impl Iterator<Item = (SessionId, &Session)> + '_ {
        let end = from.saturating_add(count).min(self.slots.len());
        let from = from.min(end);
        self.slots[from..end]
            .iter()
            .enumerate()
            .filter_map(move |(i, slot)| Some(((from + i) as SessionId, slot.0.as_ref()?)))
    }

    /// The live session that expires first among those `pred` accepts,
    /// looking at no more than `max_visit` sessions in expiry order (the
    /// wheel's order: the pending list, then each tick from the cursor on).
    /// How the table finds an embryonic session to evict when it is full.
    pub fn soonest(&self, max_visit: usize, pred: impl Fn(&Session) -> bool) -> Option<SessionId> {
        if self.len == 0 {
            return None;
        }
        let mut visited = 0;
        let lists = std::iter::once(self.pending_sentinel())
            .chain((0..WHEEL_SLOTS as u64).map(|t| self.wheel_sentinel(self.cursor + t)));
        for list in lists {
            let mut id = self.links[list as usize].next;
            while id != list {
                if visited == max_visit {
                    return None;
                }
                visited += 1;
                if let Some(Slot(Some(s))) = self.slots.get(id as usize) {
                    if pred(s) {
                        return Some(id);
                    }
                }
                id = self.links[id as usize].next;
            }
        }
        None
    }

    /// Live sessions in slot order. O(capacity): for the control plane, not
    /// the packet path.
    pub fn iter(&self) -> impl Iterator<Item = (SessionId, &Session)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| Some((id as SessionId, slot.0.as_ref()?)))
    }

    /// Advances the wheel to `now_ms` and removes sessions whose `expires <=
    /// now_ms`, calling `on_expire` with its id for each just before it is removed.
    /// Sessions whose `expires` was pushed later are re-filed under their new
    /// time. Looks at no more than `budget` sessions per call (each either
    /// removed or re-filed) and at most one turn of wheel slots, so a call's
    /// work is bounded; what is left is done by the next call. Returns the
    /// number removed.
    ///
    /// `now_ms` must not go backwards: if it does, nothing is done until it
    /// catches up.
    pub fn expire(
        &mut self,
        now_ms: u64,
        budget: usize,
        mut on_expire: impl FnMut(SessionId, &Session),
    ) -> usize {
        let now_tick = now_ms / WHEEL_TICK_MS;
        if self.len == 0 {
            self.cursor = now_tick;
            return 0;
        }
        if now_tick.saturating_add(1) < self.cursor {
            return 0;
        }
        let pending = self.pending_sentinel();
        if now_tick - self.cursor.min(now_tick) >= WHEEL_SLOTS as u64 {
            // Behind by a whole turn or more (no call for a long time, or
            // the first call on a clock far from 0): every session is due
            // for a check, whichever turn it was filed for. Take them all,
            // in tick order.
            for t in self.cursor..self.cursor + WHEEL_SLOTS as u64 {
                self.splice_to_pending(self.wheel_sentinel(t));
            }
            self.cursor = now_tick + 1;
        }
        let mut visited = 0;
        let mut removed = 0;
        while visited < budget {
            let id = self.links[pending as usize].next;
            if id == pending {
                if self.cursor > now_tick {
                    break;
                }
                self.splice_to_pending(self.wheel_sentinel(self.cursor));
                self.cursor += 1;
                continue;
            }
            visited += 1;
            match self.slots[id as usize].0 {
                Some(session) if session.expires <= now_ms => {
                    on_expire(id, &session);
                    self.release(id, &session);
                    removed += 1;
                }
                // Refreshed since it was filed. Its new tick is at least
                // `cursor`, as `expires > now_ms >= (cursor - 1) * tick`, so
                // it never returns to the pending list in this call.
                Some(session) => {
                    self.unlink(id);
                    self.file(id, session.expires);
                }
                // Not reachable: only live sessions are on the wheel.
                None => self.unlink(id),
            }
        }
        removed
    }

    /// Unindexes, unlinks and frees a live session's slot.
    fn release(&mut self, id: SessionId, session: &Session) {
        self.inbound.remove(self.hasher.tag(&session.inbound), id);
        self.outbound.remove(self.hasher.tag(&session.outbound), id);
        self.unlink(id);
        self.slots[id as usize] = Slot(None);
        self.links[id as usize] = Link {
            next: self.free_head,
            prev: NIL,
        };
        self.free_head = id;
        self.len -= 1;
    }

    fn wheel_sentinel(&self, tick: u64) -> u32 {
        (self.slots.len() + (tick % WHEEL_SLOTS as u64) as usize) as u32
    }

    fn pending_sentinel(&self) -> u32 {
        (self.slots.len() + WHEEL_SLOTS) as u32
    }

    /// Files a session under the tick its `expires` rounds up to, or on the
    /// pending list if that tick's slot was already taken.
    fn file(&mut self, id: u32, expires: u64) {
        let tick = expires.div_ceil(WHEEL_TICK_MS);
        let list = if tick < self.cursor {
            self.pending_sentinel()
        } else {
            self.wheel_sentinel(tick)
        };
        let tail = self.links[list as usize].prev;
        self.links[id as usize] = Link {
            next: list,
            prev: tail,
        };
        self.links[tail as usize].next = id;
        self.links[list as usize].prev = id;
    }

    fn unlink(&mut self, id: u32) {
        let Link { next, prev } = self.links[id as usize];
        self.links[prev as usize].next = next;
        self.links[next as usize].prev = prev;
    }

    /// Moves a whole wheel slot's list to the end of the pending list.
    fn splice_to_pending(&mut self, from: u32) {
        let to = self.pending_sentinel();
        let Link {
            next: first,
            prev: last,
        } = self.links[from as usize];
        if first == from {
            return;
        }
        let tail = self.links[to as usize].prev;
        self.links[tail as usize].next = first;
        self.links[first as usize].prev = tail;
        self.links[last as usize].next = to;
        self.links[to as usize].prev = last;
        self.links[from as usize] = Link {
            next: from,
            prev: from,
        };
    }
}

impl fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTable")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

/// Keyed hash of a `FlowKey` to 32 bits. The keys come from the network, so
/// the hash is seeded per table (from std's random keys): a client cannot
/// choose 5-tuples that pile up in one probe chain. Two rounds of folded
/// multiply, the construction foldhash and wyhash use.
struct FlowHasher {
    seeds: [u64; 3],
}

impl FlowHasher {
    fn new() -> FlowHasher {
        let random = RandomState::new();
        FlowHasher {
            seeds: [
                random.hash_one(0x5eed_0000_u64),
                random.hash_one(0x5eed_0001_u64),
                random.hash_one(0x5eed_0002_u64),
            ],
        }
    }

    #[inline]
    fn tag(&self, key: &FlowKey) -> u32 {
        let addrs = (u64::from(u32::from(key.src)) << 32) | u64::from(u32::from(key.dst));
        let rest = (u64::from(key.sport) << 32) | (u64::from(key.dport) << 16) | key.proto as u64;
        let h = folded_multiply(addrs ^ self.seeds[0], rest ^ self.seeds[1]);
        let h = folded_multiply(h ^ self.seeds[2], 0x9e37_79b9_7f4a_7c15);
        (h ^ (h >> 32)) as u32
    }
}

#[inline]
fn folded_multiply(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

#[derive(Clone, Copy)]
struct Bucket {
    /// `NIL` when empty.
    id: u32,
    /// The key's hash. Decides the home bucket, and filters candidates
    /// before the session itself is read.
    tag: u32,
}

const EMPTY: Bucket = Bucket { id: NIL, tag: 0 };

const BUCKETS_PER_LINE: usize = 64 / std::mem::size_of::<Bucket>();

/// What the buckets in cache say of a key (`Index::guess`).
enum Guess {
    /// Its session is most likely this one (the tag matches).
    Id(u32),
    /// It has no session: an empty bucket ends its probe.
    Absent,
    /// Not told yet: the probe goes on at this bucket, on a line not looked at.
    Beyond(usize),
}

/// How many buckets from `b` to the end of its cache line, `b` included.
#[inline]
fn on_line(b: &Bucket) -> usize {
    (64 - (b as *const Bucket as usize) % 64) / std::mem::size_of::<Bucket>()
}

/// Open addressing with linear probing and backward-shift deletion, over
/// 2 buckets per session so the load factor never exceeds 1/2 and an empty
/// bucket always ends a probe. The home bucket is the tag scaled to the
/// table size (multiply-shift), so the size need not be a power of two.
struct Index {
    buckets: Box<[Bucket]>,
}

impl Index {
    fn new(capacity: usize) -> Index {
        Index {
            buckets: mem::huge_vec(EMPTY, (2 * capacity).max(1)).into_boxed_slice(),
        }
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of_val::<[Bucket]>(&self.buckets)
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.buckets.len() as u64) >> 32) as usize
    }

    #[inline]
    fn prefetch(&self, tag: u32) {
        self.prefetch_at(self.home(tag));
    }

    /// Where the lookup of `tag` will most likely end, from the home
    /// bucket's cache line and the `lines - 1` after it (the lines
    /// prefetched so far): the id in the first bucket with `tag`. At a load
    /// factor of 1/2 a quarter of the sessions sit past their home bucket,
    /// and a guess from the home bucket alone left each of those to a full
    /// memory stall at lookup (at 1M sessions, ~35 cycles a packet on
    /// average); the home line names the right session for ~94% of them,
    /// two lines for nearly all.
    #[inline]
    fn guess(&self, tag: u32, lines: usize) -> Guess {
        let home = self.home(tag);
        let Some(probe) = self.buckets.get(home..) else {
            return Guess::Absent;
        };
        let Some(first) = probe.first() else {
            return Guess::Absent;
        };
        let span = on_line(first) + lines.saturating_sub(1) * BUCKETS_PER_LINE;
        for b in probe.iter().take(span) {
            if b.id == NIL {
                return Guess::Absent;
            }
            if b.tag == tag {
                return Guess::Id(b.id);
            }
        }
        // Past the end of the table the probe wraps to bucket 0.
        let next = home + span;
        Guess::Beyond(if next < self.buckets.len() { next } else { 0 })
    }

    /// Brings in bucket `i`'s cache line.
    #[inline]
    fn prefetch_at(&self, i: usize) {
        if let Some(b) = self.buckets.get(i) {
            mem::prefetch(b);
        }
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.buckets.len() {
            0
        } else {
            i + 1
        }
    }

    /// The id in the first bucket with `tag` whose session `is_match`.
    #[inline]
    fn find(&self, tag: u32, is_match: impl Fn(u32) -> bool) -> Option<u32> {
        let mut i = self.home(tag);
        // Bounded by the table size; in practice it stops at an empty
        // bucket after a couple of probes.
        for _ in 0..self.buckets.len() {
            let b = self.buckets[i];
            if b.id == NIL {
                return None;
            }
            if b.tag == tag && is_match(b.id) {
                return Some(b.id);
            }
            i = self.next(i);
        }
        None
    }

    fn insert(&mut self, tag: u32, id: u32) {
        let mut i = self.home(tag);
        for _ in 0..self.buckets.len() {
            if self.buckets[i].id == NIL {
                self.buckets[i] = Bucket { id, tag };
                return;
            }
            i = self.next(i);
        }
    }

    fn remove(&mut self, tag: u32, id: u32) {
        let n = self.buckets.len();
        let mut hole = self.home(tag);
        let mut found = false;
        for _ in 0..n {
            let b = self.buckets[hole];
            if b.id == NIL {
                return;
            }
            if b.id == id {
                found = true;
                break;
            }
            hole = self.next(hole);
        }
        if !found {
            return;
        }
        // Backward shift (Knuth 6.4, Algorithm R): walk the rest of the
        // cluster and move back into the hole every entry whose home is not
        // cyclically in (hole, j], so every entry stays reachable from its
        // home without gaps.
        self.buckets[hole] = EMPTY;
        let mut j = hole;
        for _ in 0..n {
            j = self.next(j);
            let b = self.buckets[j];
            if b.id == NIL {
                return;
            }
            let home = self.home(b.tag);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.buckets[hole] = b;
                self.buckets[j] = EMPTY;
                hole = j;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::alloc_count::allocations_during;
    use std::collections::HashMap;
    use std::mem::size_of;

    const VIP: Ipv4Addr = Ipv4Addr::new(1, 1, 1, 1);
    const REAL: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);

    /// Session `i`: a distinct client, NAT to one real server.
    fn session(i: u32, expires: u64) -> Session {
        let client = Ipv4Addr::from(0x0a00_0000 + i);
        let sport = 1024 + (i % 50_000) as u16;
        let inbound = FlowKey {
            proto: Proto::Tcp,
            src: client,
            sport,
            dst: VIP,
            dport: 80,
        };
        Session {
            inbound,
            outbound: FlowKey {
                proto: Proto::Tcp,
                src: REAL,
                sport: 8080,
                dst: client,
                dport: sport,
            },
            real: 0,
            state: ConnState::Tcp(TcpState::SynRecv),
            expires,
            splice: Splice::default(),
            flags: 0,
        }
    }

    /// A small xorshift generator, so the churn tests are reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn sizes() {
        let table = SessionTable::with_capacity(100_000);
        let per_session = table.memory_bytes() as f64 / table.capacity() as f64;
        println!(
            "FlowKey {} B, Session {} B, slot {} B, table {:.1} B per session",
            size_of::<FlowKey>(),
            size_of::<Session>(),
            size_of::<Slot>(),
            per_session
        );
        assert_eq!(size_of::<FlowKey>(), 14);
        assert_eq!(size_of::<Session>(), 64);
        assert_eq!(size_of::<Option<Session>>(), 64);
        assert_eq!(size_of::<Slot>(), 64);
        // 64 (slot) + 8 (link) + 2 * 2 * 8 (indexes) + the wheel's sentinels.
        assert!(per_session < 104.2, "{per_session}");
    }

    /// What the burst's session prefetch aims at: at full load (1/2 of
    /// the buckets used) the home line names the right session for every
    /// flow whose bucket is on it (displaced ones included) and that has no
    /// earlier twin with the same tag, and such flows are nearly all of
    /// them; the home line and the next, for nearly every flow.
    #[test]
    fn the_prefetch_guess_finds_displaced_sessions_on_the_lines_it_reads() {
        let n = 100_000;
        let mut table = SessionTable::with_capacity(n);
        let ids: Vec<SessionId> = (0..n as u32)
            .map(|i| table.insert(session(i, 1_000)).unwrap())
            .collect();
        let is = |g: Guess, id: u32| matches!(g, Guess::Id(x) if x == id);
        let (mut displaced, mut one_line, mut two_lines) = (0, 0, 0);
        for (i, &id) in ids.iter().enumerate() {
            let key = session(i as u32, 1_000).inbound;
            let tag = table.tag(&key).0;
            let index = &table.inbound;
            let home = index.home(tag);
            let at = (0..index.buckets.len())
                .map(|d| (home + d) % index.buckets.len())
                .find(|&b| index.buckets[b].id == id)
                .unwrap();
            if at != home {
                displaced += 1;
            }
            // Unless an earlier bucket has the very same 32-bit tag (about
            // one pair among 100k keys has), which the lookup tells apart
            // by the key.
            let twin = at >= home && index.buckets[home..at].iter().any(|b| b.tag == tag);
            let reach = on_line(&index.buckets[home]);
            if at >= home && at - home < reach && !twin {
                assert!(is(index.guess(tag, 1), id), "session {i}");
            }
            if at >= home && at - home < reach + BUCKETS_PER_LINE && !twin {
                assert!(is(index.guess(tag, 2), id), "session {i}");
            }
            one_line += usize::from(is(index.guess(tag, 1), id));
            two_lines += usize::from(is(index.guess(tag, 2), id));
            // What is not found on the lines read is beyond them, never
            // declared absent.
            if !is(index.guess(tag, 1), id) && !twin {
                assert!(
                    matches!(index.guess(tag, 1), Guess::Beyond(_)),
                    "session {i}"
                );
            }
        }
        println!("{displaced} of {n} displaced; guessed from one line {one_line}, two {two_lines}");
        assert!(displaced > n / 10, "{displaced}");
        assert!(one_line > displaced && one_line > n * 9 / 10, "{one_line}");
        assert!(two_lines > n * 99 / 100, "{two_lines}");
    }

    #[test]
    fn soonest_finds_the_first_to_expire_that_matches() {
        let mut t = SessionTable::with_capacity(16);
        for i in 0..6u32 {
            let mut s = session(i, 10_000 * u64::from(6 - i));
            if i % 2 == 0 {
                s.state = ConnState::Tcp(TcpState::Established);
            }
            t.insert(s).unwrap();
        }
        let syn_recv = |s: &Session| s.state == ConnState::Tcp(TcpState::SynRecv);
        // Expiries: i=5 10 s (SYN_RECV), i=4 20 s (ESTABLISHED), ...
        let id = t.soonest(16, syn_recv).unwrap();
        assert_eq!(t.get(id).unwrap().expires, 10_000);
        let id = t
            .soonest(16, |s| s.state == ConnState::Tcp(TcpState::Established))
            .unwrap();
        assert_eq!(t.get(id).unwrap().expires, 20_000);
        assert_eq!(t.soonest(0, syn_recv), None, "bounded");
        assert_eq!(t.soonest(16, |_| false), None);
    }

    #[test]
    fn insert_and_lookup_both_directions() {
        let mut t = SessionTable::with_capacity(16);
        assert!(t.is_empty());
        let a = t.insert(session(1, 1000)).unwrap();
        let b = t.insert(session(2, 1000)).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.len(), 2);
        let s = session(2, 1000);
        assert_eq!(t.lookup_inbound(&s.inbound), Some(b));
        assert_eq!(t.lookup_outbound(&s.outbound), Some(b));
        // Separate key spaces: a key is only found in its own direction.
        assert_eq!(t.lookup_inbound(&s.outbound), None);
        assert_eq!(t.lookup_outbound(&s.inbound), None);
        assert_eq!(t.lookup_inbound(&session(3, 0).inbound), None);
        assert_eq!(t.get(b), Some(&s));
        t.get_mut(a).unwrap().real = 7;
        assert_eq!(t.get(a).unwrap().real, 7);
        assert_eq!(t.get(99), None);
        assert_eq!(t.get(NIL), None);
        assert_eq!(t.iter().map(|(id, _)| id).collect::<Vec<_>>(), [a, b]);
    }

    #[test]
    fn same_key_in_both_directions_is_allowed() {
        // FULLNAT can make a reply tuple equal some other session's client
        // tuple; the two indexes keep them apart.
        let mut t = SessionTable::with_capacity(4);
        let a = session(1, 0);
        let mut b = session(2, 0);
        b.outbound = a.inbound;
        let ida = t.insert(a).unwrap();
        let idb = t.insert(b).unwrap();
        assert_eq!(t.lookup_inbound(&a.inbound), Some(ida));
        assert_eq!(t.lookup_outbound(&a.inbound), Some(idb));
    }

    #[test]
    fn full_and_exists() {
        let mut t = SessionTable::with_capacity(2);
        t.insert(session(1, 0)).unwrap();
        assert_eq!(t.insert(session(1, 0)), Err(InsertError::Exists));
        let mut same_out = session(2, 0);
        same_out.outbound = session(1, 0).outbound;
        assert_eq!(t.insert(same_out), Err(InsertError::Exists));
        t.insert(session(2, 0)).unwrap();
        assert_eq!(t.insert(session(3, 0)), Err(InsertError::Full));
        assert_eq!(t.len(), 2);
        assert_eq!(t.capacity(), 2);

        let mut empty = SessionTable::with_capacity(0);
        assert_eq!(empty.insert(session(1, 0)), Err(InsertError::Full));
        assert_eq!(empty.lookup_inbound(&session(1, 0).inbound), None);
        assert_eq!(empty.expire(u64::MAX, 10, |_, _| {}), 0);
    }

    #[test]
    fn remove_frees_keys_and_slot() {
        let mut t = SessionTable::with_capacity(2);
        let s = session(1, 0);
        let id = t.insert(s).unwrap();
        t.insert(session(2, 0)).unwrap();
        assert_eq!(t.remove(id), Some(s));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(id), None);
        assert_eq!(t.lookup_inbound(&s.inbound), None);
        assert_eq!(t.lookup_outbound(&s.outbound), None);
        assert_eq!(t.remove(id), None);
        assert_eq!(t.remove(12345), None);
        // The slot is free again, and so are both keys.
        assert_eq!(t.insert(session(3, 0)), Ok(id));
        assert_eq!(t.remove(id).map(|s| s.inbound), Some(session(3, 0).inbound));
        assert_eq!(t.insert(s), Ok(id));
    }

    #[test]
    fn touched_session_expires_at_its_new_time() {
        let mut t = SessionTable::with_capacity(4);
        t.expire(0, 16, |_, _| {});
        let id = t.insert(session(1, 10_000)).unwrap();
        let other = t.insert(session(2, 10_000)).unwrap();
        t.get_mut(id).unwrap().expires = 20_000;
        let mut expired = Vec::new();
        assert_eq!(t.expire(10_000, 16, |_, s| expired.push(s.inbound)), 1);
        assert_eq!(expired, [session(2, 0).inbound]);
        assert_eq!(t.get(other), None);
        assert!(t.get(id).is_some());
        assert_eq!(t.expire(19_999, 16, |_, _| {}), 0);
        assert!(t.get(id).is_some());
        assert_eq!(t.expire(20_000, 16, |_, s| expired.push(s.inbound)), 1);
        assert_eq!(expired[1], session(1, 0).inbound);
        assert!(t.is_empty());
    }

    #[test]
    fn expiry_is_within_one_tick() {
        let mut t = SessionTable::with_capacity(4);
        t.expire(0, 16, |_, _| {});
        t.insert(session(1, 10_500)).unwrap();
        assert_eq!(t.expire(10_499, 16, |_, _| {}), 0);
        // Due, but its tick (11 s) has not come yet.
        assert_eq!(t.expire(10_999, 16, |_, _| {}), 0);
        assert_eq!(t.expire(11_000, 16, |_, _| {}), 1);
    }

    #[test]
    fn set_expires_earlier_refiles() {
        let mut t = SessionTable::with_capacity(4);
        t.expire(0, 16, |_, _| {});
        let id = t.insert(session(1, 900_000)).unwrap();
        t.set_expires(id, 10_000);
        assert_eq!(t.get(id).unwrap().expires, 10_000);
        assert_eq!(t.expire(10_000, 16, |_, _| {}), 1);
        // Already due: taken by the next call.
        let id = t.insert(session(2, 900_000)).unwrap();
        t.set_expires(id, 5_000);
        assert_eq!(t.expire(10_000, 16, |_, _| {}), 1);
        t.set_expires(id, 1); // no longer live: ignored
        t.set_expires(NIL, 1);
    }

    #[test]
    fn budgeted_expiry() {
        let mut t = SessionTable::with_capacity(16);
        t.expire(0, 16, |_, _| {});
        for i in 0..10 {
            t.insert(session(i, 1000 + u64::from(i))).unwrap();
        }
        let removed: Vec<usize> = (0..5).map(|_| t.expire(5_000, 3, |_, _| {})).collect();
        assert_eq!(removed, [3, 3, 3, 1, 0]);
        assert!(t.is_empty());
        assert_eq!(t.expire(5_000, 0, |_, _| {}), 0);
    }

    #[test]
    fn first_call_far_from_zero() {
        // No expire() before inserting, on a clock far from 0.
        let now = 1_700_000_000_000;
        let mut t = SessionTable::with_capacity(8);
        t.insert(session(1, now - 5)).unwrap();
        t.insert(session(2, now + 900_000)).unwrap();
        t.insert(session(3, now + 2_000_000)).unwrap();
        assert_eq!(t.expire(now, 16, |_, _| {}), 1);
        assert_eq!(t.expire(now + 899_999, 16, |_, _| {}), 0);
        assert_eq!(t.expire(now + 900_000, 16, |_, _| {}), 1);
        assert_eq!(t.expire(now + 1_999_999, 16, |_, _| {}), 0);
        assert_eq!(t.expire(now + 2_000_000, 16, |_, _| {}), 1);
    }

    #[test]
    fn clock_going_backwards_does_nothing() {
        let mut t = SessionTable::with_capacity(4);
        t.expire(100_000, 16, |_, _| {});
        t.insert(session(1, 110_000)).unwrap();
        assert_eq!(t.expire(0, 16, |_, _| {}), 0);
        assert_eq!(t.expire(110_000, 16, |_, _| {}), 1);
        assert_eq!(t.expire(u64::MAX, usize::MAX, |_, _| {}), 0);
    }

    #[test]
    fn expire_100k_across_the_wheel() {
        const N: u32 = 100_000;
        let mut t = SessionTable::with_capacity(N as usize);
        t.expire(0, 1, |_, _| {});
        // Spread over 2000 s, about two turns of the wheel; a third of them
        // are refreshed later, some beyond the first turn.
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for i in 0..N {
            t.insert(session(i, 1 + rng.below(2_000_000))).unwrap();
        }
        for i in (0..N).step_by(3) {
            t.get_mut(i).unwrap().expires += 500_000;
        }
        let step = 250;
        let mut now = 0;
        let mut removed = 0;
        while !t.is_empty() {
            now += step;
            assert!(now <= 2_600_000, "{} left", t.len());
            removed += t.expire(now, 1000, |_, s| {
                assert!(s.expires <= now);
                assert!(
                    now - s.expires < WHEEL_TICK_MS + step,
                    "late: {s:?} at {now}"
                );
            });
        }
        assert_eq!(removed, N as usize);
    }

    #[test]
    fn no_allocation_after_construction() {
        enum Outcome {
            Inserted(Result<SessionId, InsertError>),
            Removed(Option<SessionId>),
            Other,
        }
        const CAP: u32 = 1024;
        let mut t = SessionTable::with_capacity(CAP as usize);
        let slots_at = t.slots.as_ptr();
        let links_at = t.links.as_ptr();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Model: client number -> session id.
        let mut model: HashMap<u32, SessionId> = HashMap::new();
        let mut expired_clients: Vec<u32> = Vec::with_capacity(1024);
        let mut now = 0;
        let (mut expired, mut full) = (0, 0);
        // Churn: random inserts (clients drawn from 4x the capacity, so keys
        // repeat and the table fills), removes, refreshes and expiry, checked
        // against the model. Only the table operations are counted.
        for round in 0..200_000 {
            let op = rng.below(10);
            let n = rng.below(u64::from(CAP) * 4) as u32;
            let (outcome, allocations) = allocations_during(|| match op {
                0..=4 => Outcome::Inserted(t.insert(session(n, now + 1 + rng.below(300_000)))),
                5..=7 => {
                    let id = t.lookup_inbound(&session(n, 0).inbound);
                    assert_eq!(id, t.lookup_outbound(&session(n, 0).outbound));
                    Outcome::Removed(id.and_then(|id| t.remove(id).map(|_| id)))
                }
                8 => {
                    if let Some(id) = t.lookup_inbound(&session(n, 0).inbound) {
                        t.set_expires(id, now + rng.below(600_000));
                    }
                    Outcome::Other
                }
                _ => {
                    now += rng.below(300);
                    expired += t.expire(now, 64, |_, s| {
                        expired_clients.push(u32::from(s.inbound.src) - 0x0a00_0000);
                    });
                    Outcome::Other
                }
            });
            assert_eq!(allocations, 0, "round {round}, op {op}");
            for client in expired_clients.drain(..) {
                assert!(model.remove(&client).is_some());
            }
            match outcome {
                Outcome::Inserted(Ok(id)) => assert!(model.insert(n, id).is_none()),
                Outcome::Inserted(Err(InsertError::Exists)) => assert!(model.contains_key(&n)),
                Outcome::Inserted(Err(InsertError::Full)) => {
                    full += 1;
                    assert!(!model.contains_key(&n));
                    assert_eq!(t.len(), CAP as usize);
                }
                Outcome::Removed(id) => assert_eq!(id, model.remove(&n)),
                Outcome::Other => {}
            }
            assert_eq!(t.len(), model.len());
        }
        assert!(expired > 0 && full > 0, "expired {expired}, full {full}");
        assert_eq!(t.slots.as_ptr(), slots_at);
        assert_eq!(t.links.as_ptr(), links_at);
        assert_eq!(t.capacity(), CAP as usize);
        for (&n, &id) in &model {
            assert_eq!(t.lookup_inbound(&session(n, 0).inbound), Some(id));
            assert_eq!(t.lookup_outbound(&session(n, 0).outbound), Some(id));
        }
    }
}
