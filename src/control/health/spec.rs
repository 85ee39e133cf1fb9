//! A service's health check as the operator configures it
//! (`[service.check]`, `sluice ctl -A|-E --check ...`), as plain data.
//! `State::apply` validates it; the checker runs it.

use crate::lb::ParseError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

/// What proves a real server healthy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckKind {
    /// No check: every real is always up (the default).
    #[default]
    None,
    /// A TCP connection to the real (keepalived's TCP_CHECK).
    Tcp,
    /// An HTTP/1.0 `GET path` answered with status `expect`
    /// (keepalived's HTTP_GET).
    Http { path: String, expect: u16 },
}

impl CheckKind {
    /// The word `type =` and `--check` take.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::None => "none",
            CheckKind::Tcp => "tcp",
            CheckKind::Http { .. } => "http",
        }
    }
}

/// The check's type alone, as `type = "..."` and `--check` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckType {
    None,
    Tcp,
    Http,
}

impl FromStr for CheckType {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<CheckType, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(CheckType::None),
            "tcp" => Ok(CheckType::Tcp),
            "http" => Ok(CheckType::Http),
            _ => Err(ParseError::new("check type", s, "none, tcp, http")),
        }
    }
}

/// The HTTP check's defaults.
pub const DEFAULT_PATH: &str = "/";
pub const DEFAULT_EXPECT: u16 = 200;

/// A service's check: what to ask, how often, and how many answers in a
/// row change a real's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    #[serde(flatten)]
    pub kind: CheckKind,
    /// Between the starts of two checks of one real.
    pub interval_ms: u32,
    /// A check not done by then (connected, and for HTTP answered) failed.
    pub timeout_ms: u32,
    /// Consecutive successes that bring a down real back.
    pub rise: u32,
    /// Consecutive failures that take an up real out.
    pub fall: u32,
}

impl Default for CheckSpec {
    fn default() -> Self {
        CheckSpec {
            kind: CheckKind::None,
            interval_ms: 1000,
            timeout_ms: 1000,
            rise: 2,
            fall: 2,
        }
    }
}

impl CheckSpec {
    /// Whether the service's reals are checked at all.
    pub fn is_on(&self) -> bool {
        self.kind != CheckKind::None
    }
}

/// Bounds `State::apply` holds a check to.
pub const MIN_INTERVAL_MS: u32 = 50;
pub const MAX_INTERVAL_MS: u32 = 3_600_000;
pub const MAX_RISE_FALL: u32 = 100;
pub const MAX_PATH_LEN: usize = 1024;

/// Seconds as the TOML and the command line give them (`1`, `0.5`) ->
/// milliseconds; None unless finite and within what a u32 of
/// milliseconds holds (the range is checked later, with the field's name).
pub fn secs_to_ms(secs: f64) -> Option<u32> {
    let ms = (secs * 1000.0).round();
    (secs.is_finite() && (0.0..=f64::from(u32::MAX)).contains(&ms)).then_some(ms as u32)
}

/// Milliseconds as seconds, the shortest way: `1`, `0.5`, `2.25`.
pub struct Secs(pub u32);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 1000, self.0 % 1000);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:03}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Why an HTTP path cannot go into a request line.
pub fn path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        Some("must start with /")
    } else if path.len() > MAX_PATH_LEN {
        Some("is longer than 1024 bytes")
    } else if !path.bytes().all(|b| b.is_ascii_graphic()) {
        Some("must be printable ASCII without spaces")
    } else {
        None
    }
}

/// What the checker runs against one real: the resolved check (the
/// real's `check_port` applied, the source address chosen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Where the check connects: the real's address, at its check port.
    pub addr: SocketAddrV4,
    /// Our interface address on the port the routing table reaches the
    /// real by (the kernel twin holds it), so the real's answer comes back
    /// to that port, in NAT and behind FULLNAT's router alike. None: no
    /// route to the real; the kernel chooses.
    pub source: Option<Ipv4Addr>,
    pub kind: CheckKind,
    pub interval_ms: u32,
    pub timeout_ms: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_both_ways() {
        assert_eq!(secs_to_ms(1.0), Some(1000));
        assert_eq!(secs_to_ms(0.25), Some(250));
        assert_eq!(secs_to_ms(0.0004), Some(0));
        assert_eq!(secs_to_ms(-1.0), None);
        assert_eq!(secs_to_ms(f64::NAN), None);
        assert_eq!(secs_to_ms(1e12), None);
        assert_eq!(Secs(1000).to_string(), "1");
        assert_eq!(Secs(1500).to_string(), "1.5");
        assert_eq!(Secs(250).to_string(), "0.25");
        assert_eq!(Secs(2005).to_string(), "2.005");
        for ms in [50, 999, 1000, 1001, 3_600_000] {
            let back = secs_to_ms(Secs(ms).to_string().parse().unwrap());
            assert_eq!(back, Some(ms));
        }
    }

    #[test]
    fn paths_that_fit_a_request_line() {
        assert_eq!(path_problem("/"), None);
        assert_eq!(path_problem("/health?full=1"), None);
        assert!(path_problem("health").is_some());
        assert!(path_problem("/a b").is_some());
        assert!(path_problem("/a\r\nHost: x").is_some());
        assert!(path_problem(&format!("/{}", "a".repeat(1024))).is_some());
    }

    #[test]
    fn json_names_the_type() {
        let spec = CheckSpec {
            kind: CheckKind::Http {
                path: "/ok".into(),
                expect: 204,
            },
            ..CheckSpec::default()
        };
        let text = serde_json::to_string(&spec).unwrap();
        assert!(text.contains("\"type\":\"http\""), "{text}");
        assert!(text.contains("\"path\":\"/ok\""), "{text}");
        assert_eq!(serde_json::from_str::<CheckSpec>(&text).unwrap(), spec);
        let off = serde_json::to_string(&CheckSpec::default()).unwrap();
        assert!(off.contains("\"type\":\"none\""), "{off}");
        assert_eq!(
            serde_json::from_str::<CheckSpec>(&off).unwrap(),
            CheckSpec::default()
        );
    }
}
