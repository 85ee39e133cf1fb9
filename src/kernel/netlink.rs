//! Just enough rtnetlink to set up a kernel twin and to keep the kernel's
//! own stack off a port DPDK drives: bring a link up, give it IPv4
//! addresses, add and remove IPv4 routes, and a tc ingress filter that drops
//! everything. One request at a time, each acknowledged, on a socket opened
//! per call (set-up and configuration changes only, never the packet path).
//!
//! The messages are built by hand (`nlmsghdr` + the family header + route
//! attributes, all 4-byte aligned, host byte order except addresses), which
//! keeps sluice free of a netlink crate for five request types.

use crate::net::cidr::Ipv4Cidr;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_NEWTFILTER: u16 = 44;
const RTM_DELTFILTER: u16 = 45;
const NLM_F_EXCL: u16 = 0x200;
/// Marks a nested attribute.
const NLA_F_NESTED: u16 = 0x8000;

// tc: the clsact qdisc, its ingress hook, and a cls_bpf filter (the one
// classifier every distribution kernel has, matchall and gact are modules
// that may be missing).
const TC_H_CLSACT: u32 = 0xffff_fff1;
const TC_H_INGRESS_HOOK: u32 = 0xffff_fff2;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_FD: u16 = 6;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
const ETH_P_ALL: u16 = 0x0003;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;

const RT_TABLE_MAIN: u8 = 254;
/// `RTPROT_STATIC`: routes an administrator (here, sluice's configuration)
/// installed; `ip route` shows them as `proto static`.
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
const IFF_UP: u32 = 0x1;

/// `struct nlmsghdr`.
#[repr(C)]
#[derive(Clone, Copy)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct ifinfomsg`.
#[repr(C)]
#[derive(Clone, Copy)]
struct IfInfoMsg {
    family: u8,
    _pad: u8,
    kind: u16,
    index: i32,
    flags: u32,
    change: u32,
}

/// `struct ifaddrmsg`.
#[repr(C)]
#[derive(Clone, Copy)]
struct IfAddrMsg {
    family: u8,
    prefixlen: u8,
    flags: u8,
    scope: u8,
    index: u32,
}

/// `struct rtmsg`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RtMsg {
    family: u8,
    dst_len: u8,
    src_len: u8,
    tos: u8,
    table: u8,
    protocol: u8,
    scope: u8,
    kind: u8,
    flags: u32,
}

/// `struct tcmsg`.
#[repr(C)]
#[derive(Clone, Copy)]
struct TcMsg {
    family: u8,
    _pad1: u8,
    _pad2: u16,
    ifindex: i32,
    handle: u32,
    parent: u32,
    info: u32,
}

/// A request being built: header, family header, attributes.
struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new<T: Copy>(kind: u16, flags: u16, family_header: &T) -> Request {
        let hdr = NlMsgHdr {
            len: 0,
            kind,
            flags: NLM_F_REQUEST | NLM_F_ACK | flags,
            seq: 1,
            pid: 0,
        };
        let mut r = Request { buf: Vec::new() };
        r.push_raw(&hdr);
        r.push_raw(family_header);
        r
    }

    fn push_raw<T: Copy>(&mut self, v: &T) {
        // SAFETY: T is a plain repr(C) struct of integers without padding
        // holes that matter (the kernel ignores the padding bytes); reading
        // its bytes is sound.
        let bytes = unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        };
        self.buf.extend_from_slice(bytes);
        self.align();
    }

    fn align(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    /// A route attribute (`struct rtattr` + payload, padded).
    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = (4 + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.align();
        self
    }

    /// Opens a nested attribute; `end_nest` with what this returns closes it.
    fn begin_nest(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end_nest(&mut self, at: usize) -> &mut Self {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// Sends one request and waits for its acknowledgement.
fn call(request: Request) -> io::Result<()> {
    let msg = request.finish();
    // SAFETY: plain socket(2); the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_nl addressed to the kernel (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: msg and kernel are live for the call; lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = [0u8; 4096];
    loop {
        // SAFETY: reply is a live buffer of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return parse_ack(&reply[..n as usize]);
    }
}

/// The outcome an acknowledgement (`NLMSG_ERROR` with code 0, or an errno)
/// carries.
fn parse_ack(reply: &[u8]) -> io::Result<()> {
    let field = |at: usize| -> Option<[u8; 4]> { reply.get(at..at + 4)?.try_into().ok() };
    let kind = reply
        .get(4..6)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short netlink reply"))?;
    if kind != NLMSG_ERROR {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected netlink reply type {kind}"),
        ));
    }
    let code = field(16)
        .map(i32::from_ne_bytes)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short netlink ack"))?;
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(-code))
    }
}

/// Brings interface `index` up.
pub fn link_up(index: u32) -> io::Result<()> {
    let info = IfInfoMsg {
        family: libc::AF_UNSPEC as u8,
        _pad: 0,
        kind: 0,
        index: index as i32,
        flags: IFF_UP,
        change: IFF_UP,
    };
    call(Request::new(RTM_NEWLINK, 0, &info))
}

fn addr_request(kind: u16, flags: u16, index: u32, addr: Ipv4Cidr) -> Request {
    let msg = IfAddrMsg {
        family: libc::AF_INET as u8,
        prefixlen: addr.prefix_len(),
        flags: 0,
        scope: RT_SCOPE_UNIVERSE,
        index,
    };
    let mut r = Request::new(kind, flags, &msg);
    r.attr(IFA_LOCAL, &addr.address().octets())
        .attr(IFA_ADDRESS, &addr.address().octets());
    if addr.prefix_len() < 31 {
        let broadcast = u32::from(addr.address()) | !u32::from(addr.netmask());
        r.attr(IFA_BROADCAST, &broadcast.to_be_bytes());
    }
    r
}

/// Gives interface `index` the address `addr` (with its subnet, so the
/// kernel adds the connected route). Idempotent.
pub fn addr_add(index: u32, addr: Ipv4Cidr) -> io::Result<()> {
    call(addr_request(
        RTM_NEWADDR,
        NLM_F_CREATE | NLM_F_REPLACE,
        index,
        addr,
    ))
}

/// Takes `addr` off interface `index`.
pub fn addr_del(index: u32, addr: Ipv4Cidr) -> io::Result<()> {
    call(addr_request(RTM_DELADDR, 0, index, addr))
}

fn route_request(kind: u16, flags: u16, prefix: Ipv4Cidr, via: Ipv4Addr, metric: u32) -> Request {
    let msg = RtMsg {
        family: libc::AF_INET as u8,
        dst_len: prefix.prefix_len(),
        src_len: 0,
        tos: 0,
        table: RT_TABLE_MAIN,
        protocol: RTPROT_STATIC,
        scope: RT_SCOPE_UNIVERSE,
        kind: RTN_UNICAST,
        flags: 0,
    };
    let mut r = Request::new(kind, flags, &msg);
    if prefix.prefix_len() > 0 {
        r.attr(RTA_DST, &prefix.network().address().octets());
    }
    r.attr(RTA_GATEWAY, &via.octets())
        .attr(RTA_PRIORITY, &metric.to_ne_bytes())
        .attr(RTA_TABLE, &u32::from(RT_TABLE_MAIN).to_ne_bytes());
    r
}

/// Adds (or replaces) the route `prefix via via` with `metric` to the main
/// table; the kernel finds the interface from the gateway's subnet.
pub fn route_add(prefix: Ipv4Cidr, via: Ipv4Addr, metric: u32) -> io::Result<()> {
    call(route_request(
        RTM_NEWROUTE,
        NLM_F_CREATE | NLM_F_REPLACE,
        prefix,
        via,
        metric,
    ))
}

/// Removes the route `prefix via via` with `metric`.
pub fn route_del(prefix: Ipv4Cidr, via: Ipv4Addr, metric: u32) -> io::Result<()> {
    call(route_request(RTM_DELROUTE, 0, prefix, via, metric))
}

fn clsact(index: u32) -> TcMsg {
    TcMsg {
        family: libc::AF_UNSPEC as u8,
        _pad1: 0,
        _pad2: 0,
        ifindex: index as i32,
        handle: 0xffff_0000,
        parent: TC_H_CLSACT,
        info: 0,
    }
}

/// Adds the clsact qdisc to interface `index`: Ok(true) if this call made
/// it, Ok(false) if it was there already.
pub fn clsact_add(index: u32) -> io::Result<bool> {
    let mut r = Request::new(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, &clsact(index));
    r.attr(TCA_KIND, b"clsact\0");
    match call(r) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the clsact qdisc (and every filter on it) from `index`.
pub fn clsact_del(index: u32) -> io::Result<()> {
    let mut r = Request::new(RTM_DELQDISC, 0, &clsact(index));
    r.attr(TCA_KIND, b"clsact\0");
    call(r)
}

fn ingress_filter(index: u32, prio: u16) -> TcMsg {
    TcMsg {
        family: libc::AF_UNSPEC as u8,
        _pad1: 0,
        _pad2: 0,
        ifindex: index as i32,
        handle: 0,
        parent: TC_H_INGRESS_HOOK,
        // TC_H_MAKE(prio << 16, protocol), the protocol in network order.
        info: (u32::from(prio) << 16) | u32::from(ETH_P_ALL.to_be()),
    }
}

fn ingress_bpf_request(index: u32, prio: u16, prog_fd: i32) -> Request {
    let mut r = Request::new(
        RTM_NEWTFILTER,
        NLM_F_CREATE | NLM_F_EXCL,
        &ingress_filter(index, prio),
    );
    r.attr(TCA_KIND, b"bpf\0");
    let options = r.begin_nest(TCA_OPTIONS);
    r.attr(TCA_BPF_FD, &(prog_fd as u32).to_ne_bytes())
        .attr(TCA_BPF_NAME, b"sluice\0")
        .attr(TCA_BPF_FLAGS, &TCA_BPF_FLAG_ACT_DIRECT.to_ne_bytes());
    r.end_nest(options);
    r
}

/// On interface `index` (with a clsact qdisc), a cls_bpf filter at
/// priority `prio` running the loaded program `prog_fd` in direct-action
/// mode (its return value is the verdict). The filter keeps the program.
pub fn ingress_bpf(index: u32, prio: u16, prog_fd: i32) -> io::Result<()> {
    call(ingress_bpf_request(index, prio, prog_fd))
}

/// Removes the ingress filter at priority `prio` from `index`.
pub fn ingress_filter_del(index: u32, prio: u16) -> io::Result<()> {
    call(Request::new(
        RTM_DELTFILTER,
        0,
        &ingress_filter(index, prio),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_request_bytes_are_what_the_kernel_reads() {
        let prefix: Ipv4Cidr = "172.16.0.0/24".parse().unwrap();
        let msg = route_request(
            RTM_NEWROUTE,
            NLM_F_CREATE,
            prefix,
            Ipv4Addr::new(192, 168, 10, 254),
            1024,
        )
        .finish();
        // 16 (nlmsghdr) + 12 (rtmsg) + 8 (dst) + 8 (gateway) + 8 + 8.
        assert_eq!(msg.len(), 60);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()), 60);
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), RTM_NEWROUTE);
        assert_eq!(
            u16::from_ne_bytes([msg[6], msg[7]]),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
        );
        // rtmsg: AF_INET, /24, table main, proto static, unicast.
        assert_eq!(&msg[16..28], &[2, 24, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0]);
        // RTA_DST 172.16.0.0, RTA_GATEWAY 192.168.10.254.
        assert_eq!(&msg[28..36], &[8, 0, 1, 0, 172, 16, 0, 0]);
        assert_eq!(&msg[36..44], &[8, 0, 5, 0, 192, 168, 10, 254]);
        assert_eq!(u32::from_ne_bytes(msg[48..52].try_into().unwrap()), 1024);
    }

    #[test]
    fn a_default_route_has_no_destination_attribute() {
        let msg = route_request(
            RTM_DELROUTE,
            0,
            "0.0.0.0/0".parse().unwrap(),
            Ipv4Addr::new(10, 0, 0, 1),
            7,
        )
        .finish();
        assert_eq!(msg.len(), 52);
        assert_eq!(msg[17], 0, "dst_len 0");
        assert_eq!(&msg[28..36], &[8, 0, 5, 0, 10, 0, 0, 1]);
    }

    #[test]
    fn the_bpf_filter_request_is_what_tc_sends() {
        let msg = ingress_bpf_request(7, 1, 42).finish();
        // tcmsg: ifindex 7, parent = clsact's ingress, info = prio 1, ETH_P_ALL.
        assert_eq!(i32::from_ne_bytes(msg[20..24].try_into().unwrap()), 7);
        assert_eq!(
            u32::from_ne_bytes(msg[28..32].try_into().unwrap()),
            TC_H_INGRESS_HOOK
        );
        assert_eq!(
            u32::from_ne_bytes(msg[32..36].try_into().unwrap()),
            0x0001_0000 | u32::from(0x0003u16.to_be())
        );
        // TCA_KIND "bpf\0", then TCA_OPTIONS nesting fd, name and flags.
        assert_eq!(&msg[36..44], &[8, 0, 1, 0, b'b', b'p', b'f', 0]);
        let len = |at: usize| usize::from(u16::from_ne_bytes([msg[at], msg[at + 1]]));
        assert_eq!(44 + len(44), msg.len(), "the nest covers the rest");
        assert_eq!(
            u16::from_ne_bytes([msg[46], msg[47]]),
            TCA_OPTIONS | NLA_F_NESTED
        );
        assert_eq!(&msg[48..56], &[8, 0, 6, 0, 42, 0, 0, 0]);
        assert_eq!(&msg[msg.len() - 8..], &[8, 0, 8, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn acks_and_errors_are_told_apart() {
        let mut ack = vec![0u8; 36];
        ack[0..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert!(parse_ack(&ack).is_ok());
        ack[16..20].copy_from_slice(&(-libc::EEXIST).to_ne_bytes());
        assert_eq!(
            parse_ack(&ack).unwrap_err().raw_os_error(),
            Some(libc::EEXIST)
        );
        assert!(parse_ack(&ack[..3]).is_err());
        let mut other = ack.clone();
        other[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        assert!(parse_ack(&other).is_err());
    }
}
