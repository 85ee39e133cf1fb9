//! A burst's session lookups prefetched ahead of its frames, above
//! `STAGE_FROM` live sessions (`Pipeline::process_burst`).
//!
//! A lookup reads two cache lines that a large table keeps in memory: the
//! index bucket of the frame's 5-tuple, then the session the bucket names.
//! One frame after another, each would stall on both. Instead:
//! - a first pass over the burst reads each frame's 5-tuple as its bytes
//!   say (`peek`) and prefetches its bucket; `SESSION_PREFETCH_BEHIND`
//!   frames back, once that frame's bucket has arrived, it prefetches the
//!   session the bucket's line names (`SessionTable::prefetch_session`);
//! - then, as each frame is handled, the session of the frame
//!   `SESSION_PREFETCH_AHEAD` places ahead is prefetched (for the last
//!   frames, whose sessions the first pass did not reach) or looked at a
//!   second time (for the few whose probe went on past the bucket's line:
//!   the next line was requested at the first look).
//!
//! Nothing here decides anything: the 5-tuple is read before any check, so
//! a malformed or hostile frame costs at most a wasted prefetch, and every
//! frame is then handled exactly as it would be without this. An earlier
//! design kept each frame's validated first stage (`Pipeline::front`) from
//! one pass to the next instead of peeking; carrying those results through
//! the burst cost 130 instructions a frame. This one takes 9% fewer cycles
//! a packet at a million sessions in pipebench, 1-3% beside testpmd
//! (perf/RESULTS.md).

use super::*;

/// Far enough for a DRAM access to complete behind the work of the frames
/// before (a hundred cycles and more each), near enough that the line is
/// still in L1 when its frame comes.
const SESSION_PREFETCH_AHEAD: usize = 6;

/// How many frames behind the first pass the sessions of its frames are
/// prefetched: their buckets have arrived by then, and the first frames'
/// sessions arrive while the rest of the first pass runs instead of
/// stalling the start of the second.
const SESSION_PREFETCH_BEHIND: usize = 8;

/// What the first pass learned of a burst's frames, for the prefetches of
/// the second.
pub(super) struct BurstPrefetch<const N: usize> {
    /// Frame i's 5-tuple as peeked: toward the inbound index (a VIP's) or
    /// the outbound one, and its tag; none for a frame with no session.
    flows: [Option<(bool, FlowTag)>; N],
    /// Whether frame i's session needs a second look.
    far: [bool; N],
    /// The first frame whose session the first pass did not prefetch.
    rest: usize,
}

impl<const N: usize> BurstPrefetch<N> {
    /// The first pass over `pkts`; the sessions of the first frames are on
    /// their way when it returns.
    #[inline(always)]
    pub(super) fn start<P: PacketBuf>(
        sessions: &SessionTable,
        snap: &Snapshot,
        pkts: &[P],
    ) -> BurstPrefetch<N> {
        let mut b = BurstPrefetch {
            flows: [None; N],
            far: [false; N],
            rest: pkts.len().saturating_sub(SESSION_PREFETCH_BEHIND),
        };
        for (i, p) in pkts.iter().enumerate().take(N) {
            if let Some((inbound, tag)) = peek(sessions, snap, p.data()) {
                sessions.prefetch_bucket(inbound, tag);
                b.flows[i] = Some((inbound, tag));
            }
            if let Some(behind) = i.checked_sub(SESSION_PREFETCH_BEHIND) {
                b.session(sessions, behind);
            }
        }
        // Those the second pass will soon need now, each of the rest some
        // frames ahead. The first frames' second looks are due now too.
        for i in 0..SESSION_PREFETCH_AHEAD {
            b.second_look(sessions, i);
            b.session(sessions, b.rest + i);
        }
        b
    }

    /// Before frame `i` is handled: the prefetch `SESSION_PREFETCH_AHEAD`
    /// frames ahead.
    #[inline(always)]
    pub(super) fn before(&mut self, sessions: &SessionTable, i: usize) {
        let ahead = i + SESSION_PREFETCH_AHEAD;
        if i >= self.rest {
            self.session(sessions, ahead);
        } else {
            self.second_look(sessions, ahead);
        }
    }

    #[inline(always)]
    fn session(&mut self, sessions: &SessionTable, i: usize) {
        if let (Some(Some((inbound, tag))), Some(far)) = (self.flows.get(i), self.far.get_mut(i)) {
            *far = !sessions.prefetch_session(*inbound, *tag);
        }
    }

    #[inline(always)]
    fn second_look(&self, sessions: &SessionTable, i: usize) {
        if let (Some(Some((inbound, tag))), Some(true)) = (self.flows.get(i), self.far.get(i)) {
            sessions.prefetch_session_far(*inbound, *tag);
        }
    }
}

/// A frame's 5-tuple as its bytes say, if they say IPv4 and TCP or UDP, and
/// which index its lookup will read, as `Pipeline::front` will decide once
/// it has checked everything: good for a prefetch, nothing more.
#[inline(always)]
pub(super) fn peek(
    sessions: &SessionTable,
    snap: &Snapshot,
    frame: &[u8],
) -> Option<(bool, FlowTag)> {
    // The wire accessors, unchecked: `get` has bounded every read.
    let header = frame.get(..ETH_LEN + Ipv4Packet::<&[u8]>::HEADER_LEN)?;
    if EthernetFrame::new_unchecked(header).ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_unchecked(&header[ETH_LEN..]);
    let proto = match ip.protocol() {
        protocol::TCP => Proto::Tcp,
        protocol::UDP => Proto::Udp,
        _ => return None,
    };
    let l4 = ETH_LEN + ip.header_len();
    // TCP's ports sit where UDP's do.
    let ports = UdpPacket::new_unchecked(frame.get(l4..l4 + 4)?);
    let key = FlowKey {
        proto,
        src: ip.src_addr(),
        sport: ports.src_port(),
        dst: ip.dst_addr(),
        dport: ports.dst_port(),
    };
    let inbound = match snap.destination(key.dst) {
        Destination::Vip => true,
        Destination::Laddr | Destination::Foreign => false,
        Destination::Interface => return None,
    };
    Some((inbound, sessions.tag(&key)))
}
