//! Named per-worker counters. Every packet sluice does not send on has a
//! reason here, so "where did my packet go" always has an answer.

/// Declares the counters once: the enum, their names and their order.
macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// One counter. `Counter::name()` is the operator-facing name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter {
            $($(#[$doc])* $variant,)*
        }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            pub fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)*
                }
            }
        }
    };
}

counters! {
    RxPackets => "rx_packets",
    TxPackets => "tx_packets",
    /// The tx queue stayed full; the packet was freed.
    DropTxFull => "drop_tx_full",
    ArpRequestsAnswered => "arp_requests_answered",
    ArpRepliesLearned => "arp_replies_learned",
    ArpRequestsSent => "arp_requests_sent",
    /// Gratuitous ARP sent: at start, every `dataplane.garp_interval`,
    /// for addresses a change added, and in answer to a conflict.
    GarpSent => "garp_sent",
    /// ARP frames copied to the other workers so that every neighbour table
    /// learns what one worker received (requests and replies to us,
    /// gratuitous ARP and replies from neighbours on our subnets).
    ArpCopies => "arp_copies",
    /// Another station claimed one of our addresses (an ARP whose sender
    /// address is ours, from a MAC that is not): answered with a
    /// gratuitous ARP (at most once a second per address), logged at most
    /// once per 10 s per address, never learned.
    ArpConflicts => "arp_conflicts",
    /// ARP from a sender address not on the receiving port's subnets:
    /// answered if it asks for one of our addresses, never learned.
    ArpOffSubnet => "arp_off_subnet",
    /// Neighbour entries evicted to make room in a full table (incomplete
    /// and stale ones first).
    NeighbourEvictions => "neighbour_evictions",
    IcmpEchoAnswered => "icmp_echo_answered",
    /// Packets translated client -> real server (IPVS InPkts).
    InPkts => "in_pkts",
    /// Packets translated real server -> client (IPVS OutPkts).
    OutPkts => "out_pkts",
    /// Sessions created (IPVS Conns).
    Conns => "conns",
    SessionsExpired => "sessions_expired",
    /// A SYN for a session in TIME_WAIT/CLOSE retired it and opened a new
    /// one (IPVS conn_reuse_mode=1).
    SessionsReused => "sessions_reused",
    /// Sessions in the tables when the workers stopped (a level, not a
    /// count of events; summed over workers).
    SessionsLive => "sessions_live",
    /// TSC cycles the workers spent in loop iterations that had packets
    /// (rx or handoff): busy_cycles / rx_packets is the cost per packet.
    BusyCycles => "busy_cycles",
    /// TCP/UDP checksums a virtual port delivered partial (the local
    /// kernel's CHECKSUM_PARTIAL), completed in software before the rewrite.
    RxPartialChecksums => "rx_partial_checksums",
    /// ICMP errors about a session, translated and passed on.
    IcmpErrorsTranslated => "icmp_errors_translated",
    /// Frames for our interface addresses that the dataplane does not
    /// handle itself (TCP/UDP, ICMP other than echo requests, other
    /// protocols, ARP replies), handed to the port's kernel twin.
    KernelIn => "kernel_in",
    /// Frames the host kernel sent through a kernel twin, transmitted on
    /// the twin's port.
    KernelOut => "kernel_out",
    /// Packets passed to the worker that owns their session.
    SteerHandoffs => "steer_handoffs",
    /// Packets that reached a worker that does not own their session after
    /// steering: a bug if ever non-zero; dropped.
    SteerMisses => "steer_misses",
    /// Unicast frame for another station (ports run promiscuous).
    DropNotForUs => "drop_not_for_us",
    /// A frame we sent ourselves, seen again on receive.
    DropOwnFrame => "drop_own_frame",
    DropUnknownEthertype => "drop_unknown_ethertype",
    /// Shorter than an Ethernet header, or a chained mbuf.
    DropMalformedEth => "drop_malformed_eth",
    DropMalformedArp => "drop_malformed_arp",
    /// ARP for an address sluice does not own.
    DropArpNotOurs => "drop_arp_not_ours",
    /// ARP beyond `dataplane.arp_rate_limit` on one port (per worker).
    DropArpRate => "drop_arp_rate",
    /// IPv4 whose source is a martian: 0.0.0.0/8, 127.0.0.0/8,
    /// 224.0.0.0/4 (multicast), 240.0.0.0/4 or 255.255.255.255.
    DropMartianSource => "drop_martian_source",
    /// IPv4 whose source is one of our own addresses (interface, VIP, local
    /// address), arriving from outside.
    DropOwnSource => "drop_own_source",
    /// IPv4 whose source is not routed back out of the port it arrived on
    /// (`interface.rp_filter = "strict"`), or not routed at all ("loose").
    DropRpFilter => "drop_rp_filter",
    /// IPv4 with a routing option (loose or strict source route, record
    /// route): never forwarded, as Linux with accept_source_route=0.
    DropSourceRoute => "drop_source_route",
    /// Bad version, IHL or total length.
    DropMalformedIpv4 => "drop_malformed_ipv4",
    /// The frame ends before the IPv4 packet it carries: cut short, as an
    /// af_packet port cuts a segmentation-offload super-frame from a veth
    /// peer that still segments late (see README, "virtual ports").
    DropTruncatedIpv4 => "drop_truncated_ipv4",
    DropBadIpv4Checksum => "drop_bad_ipv4_checksum",
    /// Truncated TCP/UDP/ICMP header, or bad TCP data offset/UDP length.
    DropMalformedL4 => "drop_malformed_l4",
    /// IP fragments are not reassembled.
    DropFragment => "drop_fragment",
    DropTtlExceeded => "drop_ttl_exceeded",
    /// To one of our addresses, but no virtual service on that port/proto
    /// (and no kernel twin to hand it to).
    DropNoService => "drop_no_service",
    /// For the kernel twin, beyond this worker's share of its rate
    /// (`kernel.rate`, `kernel.burst`): a flood at the interface address
    /// cannot take the workers' time or the mbuf pool.
    DropKernelRate => "drop_kernel_rate",
    /// For the kernel twin, refused by it (the kernel's queue was full).
    DropKernelQueueFull => "drop_kernel_queue_full",
    /// To an address sluice neither owns nor has a session for: never
    /// forwarded.
    DropNotServed => "drop_not_served",
    /// TCP without SYN and no session (IPVS only creates on SYN).
    DropNoSession => "drop_no_session",
    /// A new connection no real server could take (all down, quiesced or
    /// removed) that could not be refused either: a RST, the ICMP
    /// unreachable rate limit reached, or no room in the buffer.
    DropNoRealServer => "drop_no_real_server",
    DropSessionTableFull => "drop_session_table_full",
    /// The reply key of a new session is already taken by another session.
    DropSessionConflict => "drop_session_conflict",
    DropNoRoute => "drop_no_route",
    DropNeighbourQueueFull => "drop_neighbour_queue_full",
    /// Packets waiting for ARP over all neighbours reached this worker's
    /// share of the mbufs set aside for them (see README, resource budgets).
    DropPendingBudget => "drop_pending_budget",
    /// Packets that waited on a neighbour entry evicted from a full table.
    DropNeighbourEvicted => "drop_neighbour_evicted",
    DropNeighbourTableFull => "drop_neighbour_table_full",
    /// Waited on ARP, which never answered.
    DropNeighbourUnresolved => "drop_neighbour_unresolved",
    /// ICMP that is neither an echo request to us nor an error about one
    /// of our sessions.
    DropIcmpUnhandled => "drop_icmp_unhandled",
    /// An IP protocol other than TCP, UDP or ICMP to one of our addresses.
    DropUnsupportedL4 => "drop_unsupported_l4",
    /// No buffer for a packet sluice wanted to originate (ARP).
    DropMbufExhausted => "drop_mbuf_exhausted",
    /// The ring to the owning worker was full.
    DropHandoffRingFull => "drop_handoff_ring_full",
    /// FULLNAT: no free local address/port toward that real server (or
    /// the service has no local address yet).
    DropLaddrExhausted => "drop_laddr_exhausted",
    /// SYN proxy: cookie SYN-ACKs sent for client SYNs.
    SynproxyCookiesSent => "synproxy_cookies_sent",
    /// SYN proxy: client ACKs whose cookie checked (sessions made).
    SynproxyCookiesValid => "synproxy_cookies_valid",
    /// SYN proxy: real servers that answered the proxied SYN (spliced).
    SynproxyHandshakes => "synproxy_handshakes",
    /// SYN proxy: real servers that refused it (RST passed to the client).
    SynproxyRealRefused => "synproxy_real_refused",
    /// "auto" SYN proxy engagements (a SYN flood seen by a worker).
    SynproxyEngaged => "synproxy_engaged",
    /// Embryonic sessions evicted to make room (table full or SYN_RECV
    /// budget reached), IPVS's drop_entry.
    SessionsEvicted => "sessions_evicted",
    /// SYN proxy: an ACK with no session whose cookie did not check.
    DropSynproxyBadCookie => "drop_synproxy_bad_cookie",
    /// SYN proxy: a client segment while its real server has not answered
    /// (one is held; the client retransmits the others).
    DropSynproxyWaiting => "drop_synproxy_waiting",
    /// SYN proxy: no room to hold the client's ACK (it is dropped; the
    /// client's next segment completes the handshake).
    DropSynproxyHoldFull => "drop_synproxy_hold_full",
    /// PROXY protocol: headers sent ahead of a client's bytes, one per
    /// connection (on the handshake's last ACK, or ahead of its first data).
    ProxyHeadersSent => "proxy_headers_sent",
    /// PROXY protocol: headers sent again before the real acknowledged one
    /// (its ACKs showed it missing, or the handshake's last ACK came again).
    ProxyHeadersResent => "proxy_headers_resent",
    /// PROXY protocol: data a client's SYN carried (TCP Fast Open), taken
    /// off so the real reads the header first; the client sends it again
    /// after the handshake.
    ProxySynDataTrimmed => "proxy_syn_data_trimmed",
    /// TOA: client segments toward a real that got the option.
    ToaAdded => "toa_added",
    /// TOA: client segments that went out without it: their TCP option
    /// space (40 bytes) was full.
    ToaNoRoom => "toa_no_room",
    /// A packet of a session whose real server was removed, with IPVS's
    /// expire_nodest_conn on: the session is ended, the packet dropped.
    DropRealRemoved => "drop_real_removed",
    /// New TCP connections no real server could take (every real down,
    /// quiesced or removed), refused at once with a RST from the VIP.
    ResetNoRealServer => "reset_no_real_server",
    /// New UDP flows no real server could take, answered with an ICMP port
    /// unreachable from the VIP (at most 1000 a second per worker).
    UnreachableNoRealServer => "unreachable_no_real_server",
}

/// A worker's counters. Written only by its worker (no atomics needed on
/// the packet path); read by the main lcore when the worker hands them back.
#[derive(Debug, Clone)]
pub struct Counters {
    values: [u64; Counter::COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            values: [0; Counter::COUNT],
        }
    }
}

impl Counters {
    #[inline]
    pub fn inc(&mut self, c: Counter) {
        self.values[c as usize] += 1;
    }

    #[inline]
    pub fn add(&mut self, c: Counter, n: u64) {
        self.values[c as usize] += n;
    }

    /// For levels (such as live sessions) rather than event counts.
    #[inline]
    pub fn set(&mut self, c: Counter, v: u64) {
        self.values[c as usize] = v;
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.values[c as usize]
    }

    /// Adds another worker's counters into these.
    pub fn merge(&mut self, other: &Counters) {
        for (a, b) in self.values.iter_mut().zip(other.values.iter()) {
            *a += b;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Counter::ALL.iter().map(|&c| (c.name(), self.get(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert!(names.iter().all(|n| n
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch == '_' || ch.is_ascii_digit())));
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }

    #[test]
    fn inc_add_merge() {
        let mut a = Counters::default();
        a.inc(Counter::RxPackets);
        a.add(Counter::DropFragment, 3);
        let mut b = Counters::default();
        b.inc(Counter::RxPackets);
        b.merge(&a);
        assert_eq!(b.get(Counter::RxPackets), 2);
        assert_eq!(b.get(Counter::DropFragment), 3);
        assert!(b.iter().any(|(n, v)| n == "drop_fragment" && v == 3));
    }
}
