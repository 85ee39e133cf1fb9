//! The control socket's protocol: what `sluice ctl` (or a script) asks and
//! what sluice answers, as JSON.
//!
//! One request per connection: the client writes one JSON object (at most
//! `MAX_REQUEST` bytes), ends it with a newline or by shutting down its
//! writing side, and reads one JSON object back. Every request carries
//! `"version": VERSION`; a request of another version, an unknown request,
//! malformed JSON or an oversized request gets an error answer and changes
//! nothing.
//!
//! ```text
//! {"version":1,"request":"apply","changes":[{"op":"add_service",...}]}
//! {"status":"ok","applied":1,"epoch":7}
//! {"status":"error","error":"no service tcp 10.10.0.100:81"}
//! ```

use crate::control::health::CheckSpec;
use crate::control::state::{Change, ServiceKey};
use crate::lb::scheduler::{SchedFlags, SchedulerKind};
use crate::lb::service::{ClientAddressMode, ForwardMode, Persistence, SynProxyMode};
use crate::lb::Proto;
use crate::net::cidr::Ipv4Cidr;
use crate::wire::EthernetAddress;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The largest request accepted (a `-R` batch of some ten thousand rules).
pub const MAX_REQUEST: usize = 1 << 20;

/// A request as sent on the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Applies the changes as one: all or none (`-A`, `-a`, `-C`, `-R`, ...).
    Apply { changes: Vec<Change> },
    /// Services with their reals, counters and rates (`-L`, `-S`,
    /// `--get-laddr`); one service or all.
    Services { service: Option<ServiceKey> },
    /// The connection list (`-L -c`).
    Connections { service: Option<ServiceKey> },
    /// `--timeout`.
    Timeouts,
    /// `-Z`: counters of one service or all start again from zero.
    Zero { service: Option<ServiceKey> },
    /// Routes (connected and static).
    Routes,
    /// Neighbours: static entries and every worker's learned cache.
    Neighbours,
    /// Re-reads the configuration file and applies the difference.
    Reload,
    /// Reads (value None) or sets an IPVS-style switch
    /// (`expire_nodest_conn`).
    Sysctl { name: String, value: Option<u64> },
    /// The data plane's process-wide counters (drops by reason, ...).
    Counters,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    Ok(Answer),
    Error { error: String },
}

impl Response {
    pub fn error(e: impl Into<String>) -> Response {
        Response::Error { error: e.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Applied {
        applied: usize,
        /// The snapshot the change went out in.
        epoch: u64,
    },
    Services(ServicesView),
    Connections {
        connections: Vec<ConnectionView>,
    },
    Timeouts(TimeoutsView),
    Routes {
        routes: Vec<RouteView>,
    },
    Neighbours {
        neighbours: Vec<NeighbourView>,
    },
    Sysctl {
        name: String,
        value: u64,
    },
    Counters {
        counters: Vec<(String, u64)>,
    },
    Done {
        done: bool,
    },
}

/// IPVS's per-service and per-destination totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// IPVS's rate estimates (per second, smoothed over about 8 s as IPVS's
/// estimator).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RateView {
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    pub in_bps: u64,
    pub out_bps: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealView {
    pub addr: SocketAddrV4,
    /// As configured: a real its check took out keeps it (and gets it back).
    pub weight: u32,
    pub mode: ForwardMode,
    pub active: u64,
    pub inactive: u64,
    pub stats: StatsView,
    pub rate: RateView,
    /// The port its health check connects to, where not its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_port: Option<u16>,
    /// Where its service has a health check: what the checks say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthView>,
}

/// A checked real's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// False: taken out of scheduling (no new connections).
    pub up: bool,
    /// Consecutive successful and failed checks (one of them is 0).
    pub successes: u32,
    pub failures: u32,
    /// Why the last failed check failed ("connect: refused", "timeout",
    /// "http status 500", ...).
    pub last_failure: Option<String>,
    /// Checks done and failed since the real (or its check) appeared.
    pub checks: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaddrView {
    pub addr: Ipv4Addr,
    /// Sessions using it now.
    pub conns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub proto: Proto,
    pub vip: SocketAddrV4,
    pub scheduler: SchedulerKind,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    #[serde(default)]
    pub synproxy: SynProxyMode,
    /// The health check of its reals.
    #[serde(default)]
    pub check: CheckSpec,
    #[serde(default)]
    pub client_address: ClientAddressMode,
    pub mode: ForwardMode,
    pub laddrs: Vec<LaddrView>,
    pub stats: StatsView,
    pub rate: RateView,
    pub reals: Vec<RealView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServicesView {
    /// Sessions each worker's table holds at most.
    pub max_sessions: usize,
    pub workers: u16,
    pub services: Vec<ServiceView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub proto: Proto,
    pub client: SocketAddrV4,
    pub vip: SocketAddrV4,
    pub local: SocketAddrV4,
    pub real: SocketAddrV4,
    /// IPVS's state name (ESTABLISHED, SYN_RECV, ..., UDP).
    pub state: String,
    pub expires_in_ms: u64,
    pub worker: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutsView {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    pub prefix: Ipv4Cidr,
    /// None: the prefix is on the link (connected).
    pub via: Option<Ipv4Addr>,
    pub port: u16,
    /// Our own address on a connected prefix.
    pub src: Option<Ipv4Addr>,
    /// Added by configuration or `route add` (not an interface's).
    pub is_static: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighbourView {
    pub addr: Ipv4Addr,
    pub mac: Option<EthernetAddress>,
    pub port: u16,
    /// PERMANENT for static entries, else the learned state.
    pub state: String,
    pub is_static: bool,
    /// The workers whose cache holds it (learned entries).
    pub workers: Vec<u16>,
}

/// Parses one request; the error says what was wrong.
pub fn parse_request(bytes: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "request is not UTF-8".to_string())?;
    let mut value: serde_json::Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("malformed request: {e}"))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "protocol version {v} is not supported (this sluice speaks version {VERSION})"
            ))
        }
        None => return Err("request has no \"version\"".into()),
    }
    if let Some(map) = value.as_object_mut() {
        map.remove("version");
    }
    serde_json::from_value(value).map_err(|e| format!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_say_why() {
        let key = ServiceKey {
            proto: Proto::Tcp,
            vip: "10.10.0.100:80".parse().unwrap(),
        };
        let req = Request::Apply {
            changes: vec![
                Change::DeleteService { key },
                Change::AddLaddr {
                    key,
                    addr: "192.168.10.100".parse().unwrap(),
                },
            ],
        };
        let text = serde_json::to_string(&Envelope {
            version: VERSION,
            request: req.clone(),
        })
        .unwrap();
        assert!(
            text.contains("\"proto\":\"tcp\"") && text.contains("10.10.0.100:80"),
            "{text}"
        );
        assert_eq!(parse_request(text.as_bytes()).unwrap(), req);
        assert!(parse_request(b"\xff\xfe").unwrap_err().contains("UTF-8"));
        assert!(parse_request(b"{not json")
            .unwrap_err()
            .contains("malformed"));
        assert!(parse_request(b"{\"request\":\"timeouts\"}")
            .unwrap_err()
            .contains("version"));
        assert!(parse_request(b"{\"version\":99,\"request\":\"timeouts\"}")
            .unwrap_err()
            .contains("version 99"));
        let e = parse_request(b"{\"version\":1,\"request\":\"format_disk\"}").unwrap_err();
        assert!(e.contains("format_disk"), "{e}");
        let e = parse_request(
            b"{\"version\":1,\"request\":\"apply\",\"changes\":[{\"op\":\"add_real\"}]}",
        )
        .unwrap_err();
        assert!(e.contains("bad request"), "{e}");
        assert_eq!(
            parse_request(b"{\"version\":1,\"request\":\"timeouts\"}\n").unwrap(),
            Request::Timeouts
        );
    }

    #[test]
    fn answers_serialize_with_a_status() {
        let ok = serde_json::to_string(&Response::Ok(Answer::Applied {
            applied: 2,
            epoch: 5,
        }))
        .unwrap();
        assert_eq!(ok, "{\"status\":\"ok\",\"applied\":2,\"epoch\":5}");
        let err = serde_json::to_string(&Response::error("no service")).unwrap();
        assert_eq!(err, "{\"status\":\"error\",\"error\":\"no service\"}");
        let back: Response = serde_json::from_str(&ok).unwrap();
        assert_eq!(
            back,
            Response::Ok(Answer::Applied {
                applied: 2,
                epoch: 5
            })
        );
    }
}
