//! The IPVS TCP connection state machine and the per-state timeouts.
//!
//! IPVS does not track sequence numbers: it moves a connection between
//! states on the flags of the packets it forwards, and each state sets how
//! long the connection may stay idle. The table and the flag priority below
//! are those of Linux `net/netfilter/ipvs/ip_vs_proto_tcp.c` (`tcp_states[]`,
//! `tcp_state_idx()`, `set_tcp_state()`, `tcp_timeouts[]`); the table is the
//! same in the 2.6 and the netns-era 3.x sources it was checked against.
//!
//! Only the normal table is implemented: not the `secure_tcp` defence table
//! (`tcp_states_dos`), nor the INPUT-ONLY rows, which IPVS uses only when
//! replies bypass it (DR and TUN); in NAT and FULLNAT every reply passes
//! through sluice.

use std::fmt;

/// IPVS TCP connection states, numbered as IPVS numbers them
/// (`IP_VS_TCP_S_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait = 4,
    TimeWait = 5,
    Close = 6,
    CloseWait = 7,
    LastAck = 8,
    Listen = 9,
    SynAck = 10,
}

impl TcpState {
    /// The name IPVS shows (`ipvsadm -lnc`).
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }

    /// Counted in IPVS's ActiveConn (true) or InActConn (false).
    pub fn is_active(self) -> bool {
        self == TcpState::Established
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a packet travels, as IPVS's `IP_VS_DIR_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client -> real server (IPVS INPUT).
    Inbound,
    /// Real server -> client (IPVS OUTPUT).
    Outbound,
}

/// The TCP header flags the state machine looks at (FIN 0x01, SYN 0x02,
/// RST 0x04, ACK 0x10, as in the header's flags byte; the others are
/// dropped). A byte rather than four bools: the fast path's question
/// ("does this leave ESTABLISHED as it is?") is then one bit test
/// (`keeps_established`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpFlags(u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    const MASK: u8 = 0x17;

    /// From the TCP header's flags byte (offset 13).
    #[inline]
    pub const fn from_bits(bits: u8) -> TcpFlags {
        TcpFlags(bits & Self::MASK)
    }

    #[inline]
    pub const fn syn(self) -> bool {
        self.0 & Self::SYN.0 != 0
    }

    #[inline]
    pub const fn ack(self) -> bool {
        self.0 & Self::ACK.0 != 0
    }

    #[inline]
    pub const fn fin(self) -> bool {
        self.0 & Self::FIN.0 != 0
    }

    #[inline]
    pub const fn rst(self) -> bool {
        self.0 & Self::RST.0 != 0
    }
}

use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

/// `tcp_states[]` from ip_vs_proto_tcp.c: `[row][current state]`, rows in
/// the kernel's order syn, fin, ack, rst; columns in `TcpState` order.
type StateTable = [[TcpState; 11]; 4];

#[rustfmt::skip]
const INPUT: StateTable = [
    //        sNO sES sSS sSR sFW sTW sCL sCW sLA sLI sSA
    /*syn*/ [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    /*fin*/ [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
    /*ack*/ [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    /*rst*/ [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
];

#[rustfmt::skip]
const OUTPUT: StateTable = [
    //        sNO sES sSS sSR sFW sTW sCL sCW sLA sLI sSA
    /*syn*/ [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    /*fin*/ [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    /*ack*/ [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    /*rst*/ [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];

/// The state after a packet with `flags` travelling in `dir`.
///
/// Flag priority is the kernel's `tcp_state_idx()`: rst, then syn, then fin,
/// then ack. A packet with none of them moves the connection to CLOSE, as
/// `set_tcp_state()` does (its `new_state` starts as CLOSE and the table
/// lookup is skipped).
pub const fn transition(state: TcpState, dir: Direction, flags: TcpFlags) -> TcpState {
    let row = if flags.rst() {
        3
    } else if flags.syn() {
        0
    } else if flags.fin() {
        1
    } else if flags.ack() {
        2
    } else {
        return TcpState::Close;
    };
    let table = match dir {
        Direction::Inbound => &INPUT,
        Direction::Outbound => &OUTPUT,
    };
    table[row][state as usize]
}

/// Whether a segment with `flags` leaves ESTABLISHED as it is, in either
/// direction (the tables' ES column: an ACK, or a SYN, which is a
/// retransmitted or stray one, without RST). A shift and a bit test, so
/// that the fast path asks it before any lookup.
#[inline]
pub const fn keeps_established(flags: TcpFlags) -> bool {
    (KEEPS_ESTABLISHED >> flags.0) & 1 != 0
}

/// Bit `b` set: a segment whose (masked) flags byte is `b` leaves
/// ESTABLISHED as it is. Made from the INPUT table when compiled; the
/// OUTPUT table's ES column agrees (a test checks both).
const KEEPS_ESTABLISHED: u32 = {
    let mut mask = 0;
    let mut bits = 0;
    while bits <= TcpFlags::MASK {
        let next = transition(ES, Direction::Inbound, TcpFlags::from_bits(bits));
        if matches!(next, ES) {
            mask |= 1 << bits;
        }
        bits += 1;
    }
    mask
};

/// Idle timeouts in seconds. `Default` is IPVS's defaults (`tcp_timeouts[]`
/// and `udp_timeouts[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timeouts {
    pub none: u32,
    pub established: u32,
    pub syn_sent: u32,
    pub syn_recv: u32,
    pub fin_wait: u32,
    pub time_wait: u32,
    pub close: u32,
    pub close_wait: u32,
    pub last_ack: u32,
    pub listen: u32,
    pub synack: u32,
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            none: 2,
            established: 15 * 60,
            syn_sent: 2 * 60,
            syn_recv: 60,
            fin_wait: 2 * 60,
            time_wait: 2 * 60,
            close: 10,
            close_wait: 60,
            last_ack: 30,
            listen: 2 * 60,
            synack: 120,
            udp: 5 * 60,
        }
    }
}

impl Timeouts {
    /// Seconds a TCP connection may stay idle in `state`.
    pub fn tcp(&self, state: TcpState) -> u32 {
        match state {
            TcpState::None => self.none,
            TcpState::Established => self.established,
            TcpState::SynSent => self.syn_sent,
            TcpState::SynRecv => self.syn_recv,
            TcpState::FinWait => self.fin_wait,
            TcpState::TimeWait => self.time_wait,
            TcpState::Close => self.close,
            TcpState::CloseWait => self.close_wait,
            TcpState::LastAck => self.last_ack,
            TcpState::Listen => self.listen,
            TcpState::SynAck => self.synack,
        }
    }

    /// `tcp()` in milliseconds, the unit of `Session::expires`.
    pub fn tcp_ms(&self, state: TcpState) -> u64 {
        u64::from(self.tcp(state)) * 1000
    }

    /// `udp` in milliseconds, the unit of `Session::expires`.
    pub fn udp_ms(&self) -> u64 {
        u64::from(self.udp) * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::Direction::{Inbound as IN, Outbound as OUT};
    use super::*;

    const SYN: TcpFlags = flags(true, false, false, false);
    const SYN_ACK: TcpFlags = flags(true, true, false, false);
    const ACK: TcpFlags = flags(false, true, false, false);
    const FIN_ACK: TcpFlags = flags(false, true, true, false);
    const RST: TcpFlags = flags(false, false, false, true);
    const RST_ACK: TcpFlags = flags(false, true, false, true);

    #[test]
    fn keeps_established_is_the_tables_es_column() {
        for bits in 0..=u8::MAX {
            let f = TcpFlags::from_bits(bits);
            let kept = [IN, OUT].map(|dir| transition(ES, dir, f) == ES);
            assert_eq!(kept, [keeps_established(f); 2], "{bits:#04x}");
        }
        // What it takes and refuses, by name (0x03: SYN wins over FIN, as
        // in the kernel's tcp_state_idx()).
        for f in [
            ACK,
            SYN,
            SYN_ACK,
            TcpFlags::from_bits(0x18),
            TcpFlags::from_bits(0x03),
        ] {
            assert!(keeps_established(f), "{f:?}");
        }
        for f in [FIN_ACK, RST, RST_ACK, TcpFlags::from_bits(0x08)] {
            assert!(!keeps_established(f), "{f:?}");
        }
    }

    const fn flags(syn: bool, ack: bool, fin: bool, rst: bool) -> TcpFlags {
        const fn bit(set: bool, f: TcpFlags) -> u8 {
            if set {
                f.0
            } else {
                0
            }
        }
        TcpFlags(
            bit(syn, TcpFlags::SYN)
                | bit(ack, TcpFlags::ACK)
                | bit(fin, TcpFlags::FIN)
                | bit(rst, TcpFlags::RST),
        )
    }

    /// Feeds packets through the state machine from NONE and returns every
    /// state reached.
    fn run(packets: &[(Direction, TcpFlags)]) -> Vec<TcpState> {
        let mut state = TcpState::None;
        packets
            .iter()
            .map(|&(dir, f)| {
                state = transition(state, dir, f);
                state
            })
            .collect()
    }

    #[test]
    fn handshake_then_client_closes() {
        use TcpState::*;
        let states = run(&[
            (IN, SYN),
            (OUT, SYN_ACK),
            (IN, ACK),
            (IN, ACK), // data
            (IN, FIN_ACK),
            (OUT, ACK),
            (OUT, FIN_ACK),
            (IN, ACK),
        ]);
        assert_eq!(
            states,
            [
                SynRecv,
                SynRecv,
                Established,
                Established,
                CloseWait,
                CloseWait,
                TimeWait,
                TimeWait
            ]
        );
    }

    #[test]
    fn handshake_then_server_closes() {
        use TcpState::*;
        let states = run(&[
            (IN, SYN),
            (OUT, SYN_ACK),
            (IN, ACK),
            (OUT, FIN_ACK),
            (IN, ACK),
            (IN, FIN_ACK),
            (OUT, ACK),
        ]);
        assert_eq!(
            states,
            [
                SynRecv,
                SynRecv,
                Established,
                FinWait,
                FinWait,
                TimeWait,
                TimeWait
            ]
        );
    }

    #[test]
    fn rst() {
        use TcpState::*;
        // Real server refuses the connection.
        assert_eq!(run(&[(IN, SYN), (OUT, RST_ACK)]), [SynRecv, Close]);
        // Client resets an established connection; rst wins over ack.
        assert_eq!(
            run(&[(IN, SYN), (OUT, SYN_ACK), (IN, ACK), (IN, RST_ACK)])[3],
            Close
        );
        // The kernel table ignores a client RST in SYN_RECV and LAST_ACK, and
        // a server RST in TIME_WAIT.
        assert_eq!(transition(SynRecv, IN, RST), SynRecv);
        assert_eq!(transition(LastAck, IN, RST), LastAck);
        assert_eq!(transition(TimeWait, OUT, RST), TimeWait);
    }

    #[test]
    fn syn_retransmit() {
        use TcpState::*;
        assert_eq!(
            run(&[(IN, SYN), (IN, SYN), (IN, SYN)]),
            [SynRecv, SynRecv, SynRecv]
        );
        // A SYN reusing a closed connection's tuple starts it again.
        for s in [FinWait, TimeWait, Close, CloseWait, LastAck] {
            assert_eq!(transition(s, IN, SYN), SynRecv);
        }
        // SYN in ESTABLISHED does not reset the state.
        assert_eq!(transition(Established, IN, SYN), Established);
    }

    #[test]
    fn no_flags_closes_like_the_kernel() {
        assert_eq!(
            transition(TcpState::Established, IN, TcpFlags::default()),
            TcpState::Close
        );
    }

    #[test]
    fn priority_rst_syn_fin_ack() {
        let all = flags(true, true, true, true);
        assert_eq!(transition(TcpState::Established, IN, all), TcpState::Close);
        // syn before fin: SYN+FIN in ESTABLISHED follows the syn row.
        let syn_fin = flags(true, false, true, false);
        assert_eq!(
            transition(TcpState::Established, IN, syn_fin),
            TcpState::Established
        );
    }

    #[test]
    fn flags_from_header_byte() {
        assert_eq!(TcpFlags::from_bits(0x12), SYN_ACK);
        assert_eq!(TcpFlags::from_bits(0x11), FIN_ACK);
        assert_eq!(TcpFlags::from_bits(0x04), RST);
    }

    #[test]
    fn names_timeouts_and_activity() {
        let t = Timeouts::default();
        assert_eq!(t.tcp(TcpState::Established), 900);
        assert_eq!(t.tcp(TcpState::None), 2);
        assert_eq!(t.tcp(TcpState::SynAck), 120);
        assert_eq!(t.tcp_ms(TcpState::Close), 10_000);
        assert_eq!(t.udp, 300);
        assert_eq!(TcpState::SynRecv.as_str(), "SYN_RECV");
        assert_eq!(TcpState::SynAck.to_string(), "SYNACK");
        assert!(TcpState::Established.is_active());
        assert!(!TcpState::SynRecv.is_active());
        assert!(!TcpState::TimeWait.is_active());
    }
}
