//! `Ipv4Cidr`: an IPv4 address with a prefix length, as written in
//! configuration ("10.10.0.1/24" for an interface, "10.0.0.0/8" for a route).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 address and prefix length. The address keeps its host bits, so
/// the same type describes an interface ("10.10.0.1/24") and, after
/// [`network`](Self::network), the network it is on ("10.10.0.0/24").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix_len: u8,
}

/// Why a prefix could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// [`Ipv4Cidr::new`] was given a prefix length above 32.
    PrefixLenOutOfRange(u8),
    /// The text is not `ADDRESS/LENGTH`; `reason` says which part is wrong.
    Invalid { input: String, reason: &'static str },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::PrefixLenOutOfRange(len) => {
                write!(f, "prefix length {len} is out of range (0 to 32)")
            }
            CidrError::Invalid { input, reason } => {
                write!(f, "invalid IPv4 prefix {input:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for CidrError {}

/// The netmask of a prefix length as a host-order integer; 0 for /0 (a plain
/// shift by 32 would overflow).
pub(crate) fn mask_bits(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, CidrError> {
        if prefix_len > 32 {
            return Err(CidrError::PrefixLenOutOfRange(prefix_len));
        }
        Ok(Self { addr, prefix_len })
    }

    /// The address as given, host bits included.
    pub fn address(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_bits(self.prefix_len))
    }

    /// The same prefix with the host bits cleared: 10.10.0.1/24 -> 10.10.0.0/24.
    pub fn network(&self) -> Ipv4Cidr {
        Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(self.addr) & mask_bits(self.prefix_len)),
            prefix_len: self.prefix_len,
        }
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = mask_bits(self.prefix_len);
        u32::from(addr) & mask == u32::from(self.addr) & mask
    }

    /// True when bits beyond the prefix are set (10.0.0.1/8): fine for an
    /// interface, a mistake for a route.
    pub fn has_host_bits(&self) -> bool {
        u32::from(self.addr) & !mask_bits(self.prefix_len) != 0
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

serde_as_text!(Ipv4Cidr);

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    /// Parses `ADDRESS/LENGTH`. The length is required: a bare address is
    /// rejected rather than guessed to be a /32.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| CidrError::Invalid {
            input: s.to_owned(),
            reason,
        };
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| invalid("expected ADDRESS/LENGTH, e.g. 10.0.0.0/24"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| invalid("the address is not a dotted-quad IPv4 address"))?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("the prefix length is not a number from 0 to 32"));
        }
        let prefix_len: u8 = len
            .parse()
            .map_err(|_| invalid("the prefix length is not a number from 0 to 32"))?;
        if prefix_len > 32 {
            return Err(invalid("the prefix length is greater than 32"));
        }
        Ok(Self { addr, prefix_len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        let c = cidr("10.0.0.1/24");
        assert_eq!(c.address(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(c.prefix_len(), 24);
        assert_eq!(c.to_string(), "10.0.0.1/24");
        assert_eq!(cidr("0.0.0.0/0").prefix_len(), 0);
        assert_eq!(cidr("1.2.3.4/32").prefix_len(), 32);
    }

    #[test]
    fn netmask_and_network() {
        assert_eq!(
            cidr("10.0.0.1/24").netmask(),
            Ipv4Addr::new(255, 255, 255, 0)
        );
        assert_eq!(cidr("10.0.0.1/0").netmask(), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(
            cidr("10.0.0.1/32").netmask(),
            Ipv4Addr::new(255, 255, 255, 255)
        );
        assert_eq!(
            cidr("10.0.0.1/20").netmask(),
            Ipv4Addr::new(255, 255, 240, 0)
        );
        assert_eq!(cidr("10.1.2.3/16").network(), cidr("10.1.0.0/16"));
        assert_eq!(cidr("10.1.2.3/0").network(), cidr("0.0.0.0/0"));
    }

    #[test]
    fn contains() {
        let c = cidr("10.1.0.0/16");
        assert!(c.contains(Ipv4Addr::new(10, 1, 255, 7)));
        assert!(!c.contains(Ipv4Addr::new(10, 2, 0, 1)));
        assert!(cidr("0.0.0.0/0").contains(Ipv4Addr::new(203, 0, 113, 9)));
        assert!(cidr("10.0.0.5/32").contains(Ipv4Addr::new(10, 0, 0, 5)));
        assert!(!cidr("10.0.0.5/32").contains(Ipv4Addr::new(10, 0, 0, 6)));
        // Host bits in the prefix itself do not matter.
        assert!(cidr("10.1.2.3/16").contains(Ipv4Addr::new(10, 1, 9, 9)));
    }

    #[test]
    fn host_bits() {
        assert!(cidr("10.0.0.1/8").has_host_bits());
        assert!(!cidr("10.0.0.0/8").has_host_bits());
        assert!(!cidr("0.0.0.0/0").has_host_bits());
        assert!(!cidr("10.0.0.1/32").has_host_bits());
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "x",
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0.0/100",
            "256.0.0.0/8",
            " 10.0.0.0/8",
        ] {
            let err = bad.parse::<Ipv4Cidr>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{bad}: {msg}");
        }
        assert_eq!(
            "10.0.0.0/33".parse::<Ipv4Cidr>().unwrap_err().to_string(),
            "invalid IPv4 prefix \"10.0.0.0/33\": the prefix length is greater than 32"
        );
        assert_eq!(
            Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 33),
            Err(CidrError::PrefixLenOutOfRange(33))
        );
        assert!(Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 32).is_ok());
    }
}
