//! connbench's counters: written by the engine lcore only, published every
//! 100 ms through relaxed atomics for the main thread's once-a-second line.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! stats {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Stat {
            $($(#[$doc])* $variant,)*
        }

        impl Stat {
            pub const ALL: &'static [Stat] = &[$(Stat::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            pub fn name(self) -> &'static str {
                match self {
                    $(Stat::$variant => $name,)*
                }
            }
        }
    };
}

stats! {
    /// Connections started (first SYN sent).
    Opened => "opened",
    /// Connections that went through SYN .. final ACK.
    Completed => "completed",
    /// Connections given up after the last retransmission, or reset.
    Failed => "failed",
    /// Client segments sent again after a timeout.
    Retransmits => "retransmits",
    /// RSTs received by the clients (each also counts as failed).
    Resets => "resets",
    /// Segments for a connection the slot no longer holds (late duplicates).
    Stale => "stale",
    /// Client-side TCP that is not from the VIP to an emulated client, or
    /// does not fit the connection's state.
    ClientUnexpected => "client_unexpected",
    /// TCP frames with a wrong IPv4 or TCP checksum (either side).
    BadChecksum => "bad_checksum",
    ServerSyns => "server_syns",
    ServerRequests => "server_requests",
    ServerFins => "server_fins",
    /// Pure ACKs and RSTs the responder does not answer.
    ServerIgnored => "server_ignored",
    /// A request or FIN whose acknowledgement number is not what the
    /// responder's SYN-ACK implies: the flow was mistranslated.
    ServerBadAck => "server_bad_ack",
    /// Server-side TCP not addressed to an emulated real server.
    ServerUnexpected => "server_unexpected",
    ArpAnswered => "arp_answered",
    ArpRequestsSent => "arp_requests_sent",
    /// Non-TCP, non-ARP frames (or ARP for addresses not emulated).
    RxOther => "rx_other",
    RxPackets => "rx_packets",
    TxPackets => "tx_packets",
    /// The tx ring stayed full; the frame was freed.
    TxDropped => "tx_dropped",
    MbufExhausted => "mbuf_exhausted",
    /// Sum over completed connections of SYN-to-final-ACK time, TSC ticks.
    LatencyTicks => "latency_ticks",
    /// Connections between the first SYN and done (a level).
    InFlight => "in_flight",
    /// Times a slot ran out of fresh (address, port) tuples and started
    /// over: sluice may still hold those in TIME_WAIT.
    TupleWraps => "tuple_wraps",
}

#[derive(Debug, Clone)]
pub struct Counters {
    values: [u64; Stat::COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            values: [0; Stat::COUNT],
        }
    }
}

impl Counters {
    #[inline]
    pub fn inc(&mut self, s: Stat) {
        self.values[s as usize] += 1;
    }

    #[inline]
    pub fn add(&mut self, s: Stat, n: u64) {
        self.values[s as usize] += n;
    }

    #[inline]
    pub fn set(&mut self, s: Stat, v: u64) {
        self.values[s as usize] = v;
    }

    #[inline]
    pub fn get(&self, s: Stat) -> u64 {
        self.values[s as usize]
    }

    /// `self - earlier`, counter by counter (levels keep their current value).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let mut out = self.clone();
        for &s in Stat::ALL {
            if s != Stat::InFlight {
                out.values[s as usize] = self.get(s).saturating_sub(earlier.get(s));
            }
        }
        out
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Stat::ALL.iter().map(|&s| (s.name(), self.get(s)))
    }
}

/// The engine's counters as last published.
pub struct SharedCounters {
    values: [AtomicU64; Stat::COUNT],
}

impl Default for SharedCounters {
    fn default() -> Self {
        SharedCounters {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl SharedCounters {
    pub fn publish(&self, c: &Counters) {
        for (slot, v) in self.values.iter().zip(c.values.iter()) {
            slot.store(*v, Ordering::Relaxed);
        }
    }

    pub fn read(&self) -> Counters {
        let mut out = Counters::default();
        for (v, slot) in out.values.iter_mut().zip(self.values.iter()) {
            *v = slot.load(Ordering::Relaxed);
        }
        out
    }
}
