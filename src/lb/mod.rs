//! The load-balancing core: virtual services and their real servers
//! (`service`), schedulers that pick a real server (`scheduler`), the IPVS
//! TCP state machine and timeouts (`tcp_state`) and the per-core session
//! (connection) table with its expiry wheel (`session`).
//!
//! Pure Rust over plain structs: no DPDK, no packet parsing, no I/O. The
//! names follow IPVS (service, real server, scheduler, weight,
//! ActiveConn/InActConn, InPkts/OutPkts) because they are the operators'
//! language. Everything used per packet is allocation-free, lock-free and
//! bounded; allocation happens only when a table is built.

use std::fmt;
use std::str::FromStr;

pub mod client_address;
pub mod icmp_error;
pub mod laddr;
pub mod mem;
pub mod nat;
pub mod persistence;
pub mod scheduler;
pub mod service;
pub mod session;
pub mod stats;
pub mod synproxy;
pub mod tcp_state;

/// A transport protocol a service can balance. The discriminant is the IP
/// protocol number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Proto {
    Tcp = 6,
    Udp = 17,
}

impl Proto {
    /// Maps the IPv4 `protocol` field; `None` for anything sluice does not
    /// balance.
    pub fn from_ip_protocol(protocol: u8) -> Option<Proto> {
        match protocol {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

serde_as_text!(Proto);

impl FromStr for Proto {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Proto, ParseError> {
        if s.eq_ignore_ascii_case("tcp") {
            Ok(Proto::Tcp)
        } else if s.eq_ignore_ascii_case("udp") {
            Ok(Proto::Udp)
        } else {
            Err(ParseError::new("protocol", s, "tcp, udp"))
        }
    }
}

/// A configuration word (protocol, forwarding mode, scheduler) that is not
/// one of the accepted names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, value: &str, expected: &'static str) -> ParseError {
        ParseError {
            what,
            value: value.to_string(),
            expected,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?} (expected one of: {})",
            self.what, self.value, self.expected
        )
    }
}

impl std::error::Error for ParseError {}

/// Test helper: counts heap allocations made by the current thread, so tests
/// can assert that hot-path operations do not allocate. Per thread, because
/// the test harness runs tests in parallel.
#[cfg(test)]
pub(crate) mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    struct Counting;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    fn bump() {
        // try_with: never panic inside the allocator, even during thread
        // teardown.
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }

    // SAFETY: forwards every call unchanged to the system allocator; the
    // counter is a const-initialised thread local that never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            bump();
            System.alloc(layout)
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            bump();
            System.alloc_zeroed(layout)
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            bump();
            System.realloc(ptr, layout, new_size)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Runs `f` and returns its result with the number of allocations it
    /// made on this thread.
    pub(crate) fn allocations_during<R>(f: impl FnOnce() -> R) -> (R, u64) {
        let before = ALLOCATIONS.with(Cell::get);
        let result = f();
        let after = ALLOCATIONS.with(Cell::get);
        (result, after - before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_numbers_and_names() {
        assert_eq!(Proto::from_ip_protocol(6), Some(Proto::Tcp));
        assert_eq!(Proto::from_ip_protocol(17), Some(Proto::Udp));
        assert_eq!(Proto::from_ip_protocol(1), None);
        assert_eq!(Proto::Tcp as u8, 6);
        assert_eq!(Proto::Udp.as_str(), "udp");
        assert_eq!("TCP".parse::<Proto>(), Ok(Proto::Tcp));
        assert_eq!("udp".parse::<Proto>(), Ok(Proto::Udp));
        let err = "sctp".parse::<Proto>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown protocol \"sctp\" (expected one of: tcp, udp)"
        );
    }

    #[test]
    fn allocation_counter_counts() {
        let (v, allocations) = alloc_count::allocations_during(|| vec![1u8; 16]);
        assert_eq!((v.len(), allocations), (16, 1));
    }
}
