//! Validating parsers for the headers the pipeline reads.

use super::*;
use crate::wire::WireError;

/// The 5-tuple of a validated TCP/UDP packet, as it is on the wire.
#[inline]
pub(super) fn flow_key(ip: &Ipv4Info, l4: &L4Info) -> FlowKey {
    FlowKey {
        proto: l4.proto,
        src: ip.src,
        sport: l4.sport,
        dst: ip.dst,
        dport: l4.dport,
    }
}

/// Validates the IPv4 header (lengths, checksum, no fragments). The
/// checksum is summed here unless the NIC already did (`ip_sum`).
/// `maybe_partial`: the port may deliver partial L4 checksums.
#[inline]
pub(super) fn parse_ipv4(
    frame: &[u8],
    ip_sum: RxChecksum,
    maybe_partial: bool,
) -> Result<Ipv4Info, Counter> {
    let ip = Ipv4Packet::new_checked(&frame[ETH_LEN..]).map_err(|e| match e {
        // A whole header announcing more than the frame holds.
        WireError::Truncated if frame.len() >= ETH_LEN + Ipv4Packet::<&[u8]>::HEADER_LEN => {
            Counter::DropTruncatedIpv4
        }
        _ => Counter::DropMalformedIpv4,
    })?;
    let checksum_ok = match ip_sum {
        RxChecksum::Good => true,
        RxChecksum::Bad => false,
        RxChecksum::Unchecked => ip.verify_checksum(),
    };
    if !checksum_ok {
        return Err(Counter::DropBadIpv4Checksum);
    }
    if ip.is_fragment() {
        return Err(Counter::DropFragment);
    }
    // Options are rare: the walk costs nothing for a 20-byte header.
    if ip.header_len() > Ipv4Packet::<&[u8]>::HEADER_LEN {
        check_options(ip.options())?;
    }
    Ok(Ipv4Info {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        l4_start: ETH_LEN + ip.header_len(),
        l4_end: ETH_LEN + ip.total_len() as usize,
        maybe_partial,
    })
}

/// IPv4 option types (RFC 791; the copied bit included).
mod option {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const RECORD_ROUTE: u8 = 7;
    pub const LOOSE_SOURCE_ROUTE: u8 = 0x83;
    pub const STRICT_SOURCE_ROUTE: u8 = 0x89;
}

/// Refuses routing options: a source route would have the packet steer
/// itself past sluice's own decisions (and a rewritten destination makes
/// its next hop list a lie), record route would expose our addresses.
/// Linux drops source-routed packets by default (accept_source_route=0).
/// Other options (timestamp, router alert, ...) pass unchanged, as before.
/// A malformed option list is a malformed header.
#[inline]
fn check_options(mut opts: &[u8]) -> Result<(), Counter> {
    while let Some(&kind) = opts.first() {
        match kind {
            option::END => return Ok(()),
            option::NOP => opts = &opts[1..],
            _ => {
                let len = usize::from(*opts.get(1).ok_or(Counter::DropMalformedIpv4)?);
                if len < 2 || len > opts.len() {
                    return Err(Counter::DropMalformedIpv4);
                }
                if matches!(
                    kind,
                    option::RECORD_ROUTE | option::LOOSE_SOURCE_ROUTE | option::STRICT_SOURCE_ROUTE
                ) {
                    return Err(Counter::DropSourceRoute);
                }
                opts = &opts[len..];
            }
        }
    }
    Ok(())
}

/// Validates the TCP/UDP header and reads its ports (and TCP flags).
#[inline]
pub(super) fn parse_l4(frame: &[u8], ip: &Ipv4Info, proto: u8) -> Result<L4Info, Counter> {
    let l4 = &frame[ip.l4_start..ip.l4_end];
    if proto == protocol::TCP {
        let tcp = TcpPacket::new_checked(l4).map_err(|_| Counter::DropMalformedL4)?;
        Ok(L4Info {
            proto: Proto::Tcp,
            sport: tcp.src_port(),
            dport: tcp.dst_port(),
            flags: TcpFlags::from_bits(tcp.flags()),
        })
    } else {
        let udp = UdpPacket::new_checked(l4).map_err(|_| Counter::DropMalformedL4)?;
        Ok(L4Info {
            proto: Proto::Udp,
            sport: udp.src_port(),
            dport: udp.dst_port(),
            flags: TcpFlags::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_options_are_refused_others_pass() {
        // LSRR with one hop, padded with END.
        assert_eq!(
            check_options(&[0x83, 7, 4, 192, 168, 10, 2, 0]),
            Err(Counter::DropSourceRoute)
        );
        // SSRR after NOPs; record route.
        assert_eq!(
            check_options(&[1, 1, 0x89, 7, 4, 1, 2, 3, 4, 0, 0, 0]),
            Err(Counter::DropSourceRoute)
        );
        assert_eq!(
            check_options(&[7, 7, 4, 0, 0, 0, 0, 0]),
            Err(Counter::DropSourceRoute)
        );
        // Router alert (4 bytes), timestamp (8 bytes), then END: fine.
        assert_eq!(
            check_options(&[0x94, 4, 0, 0, 0x44, 8, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Ok(())
        );
        // After END nothing is looked at.
        assert_eq!(check_options(&[0, 0x83, 7]), Ok(()));
        // Lengths that lie.
        assert_eq!(check_options(&[0x44]), Err(Counter::DropMalformedIpv4));
        assert_eq!(
            check_options(&[0x44, 1, 0, 0]),
            Err(Counter::DropMalformedIpv4)
        );
        assert_eq!(
            check_options(&[0x44, 12, 0, 0]),
            Err(Counter::DropMalformedIpv4)
        );
    }
}
