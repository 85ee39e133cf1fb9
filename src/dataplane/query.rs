//! Questions the control side asks a worker about what only the worker
//! holds (its sessions, its neighbour table), and the answers. Asked
//! through a bounded channel the worker looks at on its millisecond timer,
//! never per packet; each answer is bounded (a slice of the session table at
//! a time) so a listing of a million sessions never stalls forwarding. The
//! control side sends the buffer to fill, so the worker allocates nothing.

use crate::lb::session::ConnState;
use crate::lb::Proto;
use crate::net::NeighbourState;
use crate::wire::EthernetAddress;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Session table slots a worker looks at for one `Query::Sessions`.
pub const SESSION_SCAN: usize = 16384;

pub enum Query {
    /// The sessions in table slots `from..from + SESSION_SCAN`, appended to
    /// `buf` (up to its capacity).
    Sessions { from: usize, buf: Vec<SessionInfo> },
    /// Every neighbour entry, appended to `buf` (up to its capacity).
    Neighbours { buf: Vec<NeighbourInfo> },
}

pub enum Reply {
    /// `next`: where to continue, None when the table was scanned to its end.
    Sessions {
        next: Option<usize>,
        buf: Vec<SessionInfo>,
    },
    Neighbours {
        buf: Vec<NeighbourInfo>,
    },
}

/// One session, as `ipvsadm -lnc` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    pub proto: Proto,
    pub client: SocketAddrV4,
    pub vip: SocketAddrV4,
    /// The source toward the real: the client (NAT) or a local address
    /// and port (FULLNAT).
    pub local: SocketAddrV4,
    pub real: SocketAddrV4,
    pub state: ConnState,
    /// Milliseconds until it expires unless refreshed.
    pub expires_in_ms: u64,
    pub worker: u16,
}

/// One neighbour entry of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourInfo {
    pub addr: Ipv4Addr,
    pub mac: Option<EthernetAddress>,
    pub port: u16,
    pub state: NeighbourState,
    pub worker: u16,
}
