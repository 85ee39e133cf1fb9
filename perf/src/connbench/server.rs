//! The emulated real servers: a stateless responder.
//!
//! SYN -> SYN-ACK (its sequence number a hash of the four-tuple the server
//! sees); request -> ACK + response + FIN; FIN -> ACK. Every answer goes
//! back to the segment's source, whatever it is (the client in NAT mode, a
//! local address of sluice in FULLNAT), so no state is needed. The
//! acknowledgement numbers of requests and FINs are checked against the
//! hash: a mismatch means the flow reached us under another tuple than its
//! SYN did.

use super::frame::TcpInfo;
use super::stats::{Counters, Stat};
use sluice::wire::tcp::flags;
use std::net::{Ipv4Addr, SocketAddrV4};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub first_server: Ipv4Addr,
    pub servers: u32,
    pub port: u16,
    pub response: &'static [u8],
}

/// A segment a server sends back (the engine adds the MACs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSegment {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub payload: &'static [u8],
}

pub struct Server {
    cfg: ServerConfig,
}

/// The server's initial sequence number for a connection from `peer` to
/// `local` (a cheap keyed mix; it only needs to differ between flows).
fn isn(peer: SocketAddrV4, local: SocketAddrV4) -> u32 {
    let mut x = u64::from(u32::from(*peer.ip())) << 32 | u64::from(u32::from(*local.ip()));
    x ^= u64::from(peer.port()) << 16 | u64::from(local.port());
    x = (x ^ (x >> 31)).wrapping_mul(0x7fb5_d329_728e_a185);
    x = (x ^ (x >> 27)).wrapping_mul(0x81da_def4_bc2d_d44d);
    (x ^ (x >> 33)) as u32
}

impl Server {
    pub fn new(cfg: ServerConfig) -> Server {
        Server { cfg }
    }

    /// Whether `ip` is one of the emulated real servers.
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(u32::from(self.cfg.first_server)) < self.cfg.servers
    }

    /// The answer to a segment received on the server side, if any.
    pub fn answer(&self, seg: &TcpInfo, c: &mut Counters) -> Option<ServerSegment> {
        if !self.owns(*seg.dst.ip()) || seg.dst.port() != self.cfg.port {
            c.inc(Stat::ServerUnexpected);
            return None;
        }
        let fl = seg.flags;
        let reply = |seq: u32, ack: u32, flags: u8, payload: &'static [u8]| ServerSegment {
            src: seg.dst,
            dst: seg.src,
            seq,
            ack,
            flags,
            payload,
        };
        if fl & flags::RST != 0 {
            c.inc(Stat::ServerIgnored);
            return None;
        }
        let iss = isn(seg.src, seg.dst);
        if fl & flags::SYN != 0 {
            if fl & flags::ACK != 0 {
                c.inc(Stat::ServerUnexpected);
                return None;
            }
            c.inc(Stat::ServerSyns);
            return Some(reply(
                iss,
                seg.seq.wrapping_add(1),
                flags::SYN | flags::ACK,
                &[],
            ));
        }
        let resp = self.cfg.response.len() as u32;
        if seg.payload_len > 0 {
            if seg.ack != iss.wrapping_add(1) {
                c.inc(Stat::ServerBadAck);
                return None;
            }
            c.inc(Stat::ServerRequests);
            // A FIN riding on the request is acknowledged too.
            let ack = seg
                .seq
                .wrapping_add(seg.payload_len as u32)
                .wrapping_add(u32::from(fl & flags::FIN != 0));
            return Some(reply(
                seg.ack,
                ack,
                flags::PSH | flags::ACK | flags::FIN,
                self.cfg.response,
            ));
        }
        if fl & flags::FIN != 0 {
            // Our FIN (after the response) must be acknowledged by it.
            if seg.ack != iss.wrapping_add(resp + 2) {
                c.inc(Stat::ServerBadAck);
                return None;
            }
            c.inc(Stat::ServerFins);
            return Some(reply(seg.ack, seg.seq.wrapping_add(1), flags::ACK, &[]));
        }
        c.inc(Stat::ServerIgnored);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice::wire::EthernetAddress;

    const RESP: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nok";

    fn server() -> Server {
        Server::new(ServerConfig {
            first_server: Ipv4Addr::new(192, 168, 10, 2),
            servers: 8,
            port: 8080,
            response: RESP,
        })
    }

    fn seg(seq: u32, ack: u32, fl: u8, payload_len: usize) -> TcpInfo {
        TcpInfo {
            src_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            src: "192.168.10.100:5000".parse().unwrap(),
            dst: "192.168.10.9:8080".parse().unwrap(),
            seq,
            ack,
            flags: fl,
            payload_start: 54,
            payload_len,
        }
    }

    #[test]
    fn answers_a_whole_connection() {
        let s = server();
        let mut c = Counters::default();
        let synack = s.answer(&seg(100, 0, flags::SYN, 0), &mut c).unwrap();
        assert_eq!(synack.flags, flags::SYN | flags::ACK);
        assert_eq!(synack.ack, 101);
        assert_eq!(synack.dst, "192.168.10.100:5000".parse().unwrap());
        let resp = s
            .answer(
                &seg(101, synack.seq + 1, flags::ACK | flags::PSH, 18),
                &mut c,
            )
            .unwrap();
        assert_eq!(
            (resp.seq, resp.ack, resp.payload),
            (synack.seq + 1, 119, RESP)
        );
        let fin_ack = synack.seq + 1 + RESP.len() as u32 + 1;
        let last = s
            .answer(&seg(119, fin_ack, flags::FIN | flags::ACK, 0), &mut c)
            .unwrap();
        assert_eq!((last.seq, last.ack, last.flags), (fin_ack, 120, flags::ACK));
        // Pure ACKs are not answered; wrong acknowledgements are counted.
        assert!(s
            .answer(&seg(119, fin_ack, flags::ACK, 0), &mut c)
            .is_none());
        assert!(s.answer(&seg(101, 12345, flags::ACK, 18), &mut c).is_none());
        assert_eq!(c.get(Stat::ServerBadAck), 1);
        // Not one of ours.
        let mut other = seg(1, 0, flags::SYN, 0);
        other.dst = "192.168.10.10:8080".parse().unwrap();
        assert!(s.answer(&other, &mut c).is_none());
        assert_eq!(c.get(Stat::ServerUnexpected), 1);
    }
}
