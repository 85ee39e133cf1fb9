//! The emulated clients: a fixed table of W connection slots, each running
//! one connection to the VIP at a time.
//!
//! Per connection: SYN -> (SYN-ACK) -> ACK + request -> (response + FIN)
//! -> FIN + ACK of theirs -> (ACK) -> done, and the slot opens the next one.
//! A segment that is not answered within the retransmission timeout is sent
//! again; after `max_tries` sends the connection counts as failed.
//!
//! Tuples: with the client addresses numbered 0..clients, the (client
//! address, client port) space is numbered
//! `t = (port - first_port) * clients + address_index`, and slot
//! `s` only ever uses the tuples with `t % W == s` (s, s + W, s + 2W, ...).
//! So a received segment finds its slot by arithmetic, and the slot's
//! current tuple tells a live segment from a late one.

use super::frame::TcpInfo;
use super::stats::{Counters, Stat};
use sluice::wire::tcp::flags;
use std::net::{Ipv4Addr, SocketAddrV4};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The emulated client addresses, in ascending order (they need not be
    /// contiguous: the VIP must not be among them).
    pub addrs: Vec<Ipv4Addr>,
    pub first_port: u16,
    pub last_port: u16,
    pub vip: SocketAddrV4,
    /// Concurrent connections (slots).
    pub window: u32,
    /// Retransmission timeout, in TSC ticks.
    pub rto_ticks: u64,
    /// Sends of one segment before the connection is given up.
    pub max_tries: u8,
    pub request: &'static [u8],
}

impl ClientConfig {
    /// Distinct (address, port) tuples.
    pub fn tuples(&self) -> u64 {
        self.addrs.len() as u64 * (u64::from(self.last_port) - u64::from(self.first_port) + 1)
    }
}

const NOT_A_CLIENT: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    /// SYN sent, waiting for the SYN-ACK.
    SynSent,
    /// ACK + request sent, waiting for the response and the server's FIN.
    RequestSent,
    /// Our FIN sent (with the ACK of theirs), waiting for its ACK.
    FinSent,
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    tuple: u32,
    state: State,
    tries: u8,
    /// Our initial sequence number and the server's.
    iss: u32,
    irs: u32,
    /// What our FIN acknowledges: the server's FIN's sequence number + 1.
    fin_ack: u32,
    /// When to retransmit, and when the connection started (TSC).
    deadline: u64,
    opened: u64,
}

/// A segment a client sends to the VIP (the engine adds the MACs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSegment {
    pub src: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: &'static [u8],
}

pub struct Clients {
    cfg: ClientConfig,
    conns: Vec<Conn>,
    /// Slots ready for a new connection.
    free: Vec<u32>,
    tuples: u32,
    clients: u32,
    /// The lowest client address, and `index[a - first]`: the index of
    /// address `a` in `cfg.addrs`, or NOT_A_CLIENT.
    first: u32,
    index: Vec<u32>,
    /// Next slot the retransmission scan looks at.
    cursor: usize,
    isn_seed: u32,
}

impl Clients {
    pub fn new(cfg: ClientConfig) -> Result<Clients, String> {
        if cfg.window == 0 {
            return Err("the window must be at least 1".into());
        }
        if cfg.addrs.is_empty() || cfg.first_port > cfg.last_port {
            return Err("no client tuples (check the client count and port range)".into());
        }
        let tuples = cfg.tuples();
        if tuples > u64::from(u32::MAX) {
            return Err("too many client tuples (at most 2^32)".into());
        }
        if u64::from(cfg.window) > tuples {
            return Err(format!(
                "window {} is larger than the {tuples} client (address, port) tuples",
                cfg.window
            ));
        }
        let conns = (0..cfg.window)
            .map(|s| Conn {
                tuple: s,
                state: State::Free,
                tries: 0,
                iss: 0,
                irs: 0,
                fin_ack: 0,
                deadline: 0,
                opened: 0,
            })
            .collect();
        // Popped from the end: slot 0 opens first.
        let free = (0..cfg.window).rev().collect();
        let first = u32::from(cfg.addrs[0]);
        let span = u32::from(*cfg.addrs.iter().max().unwrap_or(&cfg.addrs[0])) - first + 1;
        if !cfg.addrs.windows(2).all(|w| w[0] < w[1]) || span > 1 << 20 {
            return Err("client addresses must ascend and span at most 2^20".into());
        }
        let mut index = vec![NOT_A_CLIENT; span as usize];
        for (i, a) in cfg.addrs.iter().enumerate() {
            index[(u32::from(*a) - first) as usize] = i as u32;
        }
        Ok(Clients {
            tuples: tuples as u32,
            clients: cfg.addrs.len() as u32,
            first,
            index,
            cfg,
            conns,
            free,
            cursor: 0,
            isn_seed: 0x5eed_1234,
        })
    }

    /// Connections between their first SYN and done.
    pub fn in_flight(&self) -> u64 {
        (self.conns.len() - self.free.len()) as u64
    }

    fn address(&self, tuple: u32) -> SocketAddrV4 {
        let ip = self.cfg.addrs[(tuple % self.clients) as usize];
        let port = u32::from(self.cfg.first_port) + tuple / self.clients;
        SocketAddrV4::new(ip, port as u16)
    }

    fn address_index(&self, ip: Ipv4Addr) -> Option<u32> {
        let off = u32::from(ip).wrapping_sub(self.first) as usize;
        self.index.get(off).copied().filter(|&i| i != NOT_A_CLIENT)
    }

    /// The slot and tuple of a client address, if it is one of ours.
    fn slot_of(&self, addr: SocketAddrV4) -> Option<(usize, u32)> {
        let ip = self.address_index(*addr.ip())?;
        if !(self.cfg.first_port..=self.cfg.last_port).contains(&addr.port()) {
            return None;
        }
        let tuple = u32::from(addr.port() - self.cfg.first_port) * self.clients + ip;
        Some(((tuple % self.cfg.window) as usize, tuple))
    }

    pub fn vip(&self) -> SocketAddrV4 {
        self.cfg.vip
    }

    /// Whether `ip` is one of the emulated client addresses.
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.address_index(ip).is_some()
    }

    /// Starts a connection in a free slot: its SYN. None when every slot is
    /// busy.
    pub fn open(&mut self, now: u64, c: &mut Counters) -> Option<ClientSegment> {
        let slot = self.free.pop()? as usize;
        self.isn_seed = self
            .isn_seed
            .wrapping_mul(0x9e37_79b1)
            .wrapping_add(0x7f4a_7c15);
        let conn = &mut self.conns[slot];
        conn.state = State::SynSent;
        conn.tries = 1;
        conn.iss = self.isn_seed ^ conn.tuple;
        conn.opened = now;
        conn.deadline = now + self.cfg.rto_ticks;
        c.inc(Stat::Opened);
        Some(self.segment(slot))
    }

    /// The segment slot `slot` sends in its current state.
    fn segment(&self, slot: usize) -> ClientSegment {
        let conn = &self.conns[slot];
        let src = self.address(conn.tuple);
        let req = self.cfg.request.len() as u32;
        let (seq, ack, fl, payload) = match conn.state {
            State::SynSent | State::Free => (conn.iss, 0, flags::SYN, &[][..]),
            State::RequestSent => (
                conn.iss.wrapping_add(1),
                conn.irs.wrapping_add(1),
                flags::PSH | flags::ACK,
                self.cfg.request,
            ),
            State::FinSent => (
                conn.iss.wrapping_add(1 + req),
                conn.fin_ack,
                flags::FIN | flags::ACK,
                &[][..],
            ),
        };
        ClientSegment {
            src,
            seq,
            ack,
            flags: fl,
            payload,
        }
    }

    /// Ends slot `slot`'s connection and moves it to its next tuple.
    fn finish(&mut self, slot: usize, c: &mut Counters) {
        let w = self.cfg.window;
        let conn = &mut self.conns[slot];
        conn.state = State::Free;
        conn.tuple = match conn.tuple.checked_add(w) {
            Some(t) if t < self.tuples => t,
            _ => {
                c.inc(Stat::TupleWraps);
                slot as u32
            }
        };
        self.free.push(slot as u32);
    }

    /// A segment received on the client side; returns the answer, if any.
    pub fn on_segment(
        &mut self,
        seg: &TcpInfo,
        now: u64,
        c: &mut Counters,
    ) -> Option<ClientSegment> {
        if seg.src != self.cfg.vip {
            c.inc(Stat::ClientUnexpected);
            return None;
        }
        let Some((slot, tuple)) = self.slot_of(seg.dst) else {
            c.inc(Stat::ClientUnexpected);
            return None;
        };
        let conn = self.conns[slot];
        if conn.tuple != tuple || conn.state == State::Free {
            c.inc(Stat::Stale);
            return None;
        }
        if seg.flags & flags::RST != 0 {
            c.inc(Stat::Resets);
            c.inc(Stat::Failed);
            self.finish(slot, c);
            return None;
        }
        let req = self.cfg.request.len() as u32;
        let has = |f: u8| seg.flags & f == f;
        match conn.state {
            State::SynSent
                if has(flags::SYN | flags::ACK) && seg.ack == conn.iss.wrapping_add(1) =>
            {
                let conn = &mut self.conns[slot];
                conn.irs = seg.seq;
                conn.state = State::RequestSent;
                conn.tries = 1;
                conn.deadline = now + self.cfg.rto_ticks;
                Some(self.segment(slot))
            }
            State::RequestSent
                if has(flags::FIN | flags::ACK)
                    && seg.payload_len > 0
                    && seg.seq == conn.irs.wrapping_add(1)
                    && seg.ack == conn.iss.wrapping_add(1 + req) =>
            {
                let conn = &mut self.conns[slot];
                conn.fin_ack = seg.seq.wrapping_add(seg.payload_len as u32 + 1);
                conn.state = State::FinSent;
                conn.tries = 1;
                conn.deadline = now + self.cfg.rto_ticks;
                Some(self.segment(slot))
            }
            State::FinSent if has(flags::ACK) && seg.ack == conn.iss.wrapping_add(req + 2) => {
                c.inc(Stat::Completed);
                c.add(Stat::LatencyTicks, now.saturating_sub(conn.opened));
                self.finish(slot, c);
                None
            }
            _ => {
                // A duplicate (e.g. a second SYN-ACK after a retransmitted
                // SYN) or a wrong number: the timer resends if needed.
                c.inc(Stat::ClientUnexpected);
                None
            }
        }
    }

    /// Looks at up to `budget` slots for expired retransmission timers:
    /// resends (through `send`) or gives up.
    pub fn poll_timers(
        &mut self,
        now: u64,
        budget: usize,
        c: &mut Counters,
        mut send: impl FnMut(ClientSegment, &mut Counters),
    ) {
        let n = self.conns.len();
        for _ in 0..budget.min(n) {
            let slot = self.cursor;
            self.cursor = if slot + 1 == n { 0 } else { slot + 1 };
            let conn = &mut self.conns[slot];
            if conn.state == State::Free || now < conn.deadline {
                continue;
            }
            if conn.tries >= self.cfg.max_tries {
                c.inc(Stat::Failed);
                self.finish(slot, c);
                continue;
            }
            conn.tries += 1;
            conn.deadline = now + self.cfg.rto_ticks;
            c.inc(Stat::Retransmits);
            send(self.segment(slot), c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::wire::EthernetAddress;

    const REQ: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

    fn cfg(window: u32) -> ClientConfig {
        ClientConfig {
            addrs: (2..=201).map(|i| Ipv4Addr::new(10, 10, 0, i)).collect(),
            first_port: 1024,
            last_port: 65535,
            vip: "10.10.0.100:80".parse().unwrap(),
            window,
            rto_ticks: 100,
            max_tries: 3,
            request: REQ,
        }
    }

    fn from_vip(to: SocketAddrV4, seq: u32, ack: u32, fl: u8, payload_len: usize) -> TcpInfo {
        TcpInfo {
            src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            src: "10.10.0.100:80".parse().unwrap(),
            dst: to,
            seq,
            ack,
            flags: fl,
            payload_start: 54,
            payload_len,
        }
    }

    #[test]
    fn one_connection_end_to_end() {
        let mut c = Counters::default();
        let mut cl = Clients::new(cfg(4)).unwrap();
        let syn = cl.open(0, &mut c).unwrap();
        assert_eq!(syn.flags, flags::SYN);
        assert_eq!(syn.src, "10.10.0.2:1024".parse().unwrap());
        let req = cl
            .on_segment(
                &from_vip(syn.src, 1000, syn.seq + 1, flags::SYN | flags::ACK, 0),
                1,
                &mut c,
            )
            .unwrap();
        assert_eq!((req.seq, req.ack, req.payload), (syn.seq + 1, 1001, REQ));
        let fin = cl
            .on_segment(
                &from_vip(
                    syn.src,
                    1001,
                    syn.seq + 1 + REQ.len() as u32,
                    flags::FIN | flags::ACK | flags::PSH,
                    20,
                ),
                2,
                &mut c,
            )
            .unwrap();
        assert_eq!(fin.flags, flags::FIN | flags::ACK);
        assert_eq!(
            (fin.seq, fin.ack),
            (syn.seq + 1 + REQ.len() as u32, 1001 + 20 + 1)
        );
        assert!(cl
            .on_segment(
                &from_vip(syn.src, 1022, fin.seq + 1, flags::ACK, 0),
                5,
                &mut c
            )
            .is_none());
        assert_eq!(c.get(Stat::Completed), 1);
        assert_eq!(c.get(Stat::LatencyTicks), 5);
        assert_eq!(cl.in_flight(), 0);
        // A late duplicate for the finished tuple is stale.
        cl.on_segment(
            &from_vip(syn.src, 1022, fin.seq + 1, flags::ACK, 0),
            6,
            &mut c,
        );
        assert_eq!(c.get(Stat::Stale), 1);
    }

    #[test]
    fn slots_walk_disjoint_tuples() {
        let mut c = Counters::default();
        let mut cl = Clients::new(cfg(3)).unwrap();
        let mut seen = std::collections::HashSet::new();
        for round in 0..50 {
            let mut open = Vec::new();
            while let Some(s) = cl.open(round, &mut c) {
                assert!(seen.insert(s.src), "tuple {} reused", s.src);
                let (slot, _) = cl.slot_of(s.src).unwrap();
                open.push(slot);
            }
            assert_eq!(open.len(), 3);
            for slot in open {
                cl.finish(slot, &mut c);
            }
        }
    }

    #[test]
    fn retransmits_then_fails() {
        let mut c = Counters::default();
        let mut cl = Clients::new(cfg(1)).unwrap();
        let syn = cl.open(0, &mut c).unwrap();
        let mut sent = Vec::new();
        for now in [50, 100, 200, 300] {
            cl.poll_timers(now, 8, &mut c, |s, _| sent.push(s));
        }
        // Sent at 0 (open), 100, 200; given up at 300 after 3 tries.
        assert_eq!(sent, vec![syn, syn]);
        assert_eq!(c.get(Stat::Retransmits), 2);
        assert_eq!(c.get(Stat::Failed), 1);
        assert_eq!(cl.in_flight(), 0);
    }

    #[test]
    fn addresses_with_a_gap() {
        let mut c = Counters::default();
        let mut cfg = cfg(8);
        cfg.addrs = vec![Ipv4Addr::new(10, 10, 0, 99), Ipv4Addr::new(10, 10, 0, 101)];
        let mut cl = Clients::new(cfg).unwrap();
        let mut seen = Vec::new();
        while let Some(s) = cl.open(0, &mut c) {
            assert_ne!(*s.src.ip(), Ipv4Addr::new(10, 10, 0, 100));
            assert_eq!(cl.slot_of(s.src).map(|(slot, _)| slot), Some(seen.len()));
            seen.push(s.src);
        }
        assert_eq!(seen.len(), 8);
        assert!(!cl.owns(Ipv4Addr::new(10, 10, 0, 100)));
        assert!(cl.owns(Ipv4Addr::new(10, 10, 0, 101)));
    }
}
