//! ipvsadm's layouts (and DPVS's for local addresses), from the views the
//! server answers with. Every function returns the text, so tests compare
//! it byte for byte; the column widths and padding (trailing spaces
//! included) are ipvsadm's `printf` formats.
//!
//! Health checks add one column, `Health`, after ipvsadm's last, and only
//! to a listing with a checked service: ipvsadm's columns stay where
//! scripts that split the lines find them, a sluice without checks lists
//! exactly what ipvsadm would, and a real's Weight stays its configured
//! weight (the one `-e -w` sets and `-S` saves) while the new column says
//! whether its check took it out.

use super::args::{List, ListView};
use crate::control::api::{
    ConnectionView, NeighbourView, RealView, RouteView, ServiceView, ServicesView, TimeoutsView,
};
use crate::control::health::CheckSpec;
use crate::control::state::mode_name;
use crate::lb::Proto;
use std::fmt::Write;
use std::net::Ipv4Addr;

/// The IPVS version ipvsadm reports; sluice speaks its interface.
pub const IPVS_VERSION: &str = "1.2.1";

fn proto_upper(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "TCP",
        Proto::Udp => "UDP",
    }
}

/// ipvsadm's `print_largenum`: a 9-character column, K/M/G/T above 99,999,999
/// (the division truncates, as ipvsadm's does), or the whole number with
/// `--exact`.
pub fn largenum(n: u64, exact: bool) -> String {
    if exact {
        let digits = n.to_string();
        let width = if digits.len() <= 8 {
            9
        } else {
            digits.len() + 1
        };
        return format!("{digits:>width$}");
    }
    if n < 100_000_000 {
        format!("{n:>9}")
    } else if n < 1_000_000_000 {
        format!("{:>8}K", n / 1_000)
    } else if n < 100_000_000_000 {
        format!("{:>8}M", n / 1_000_000)
    } else if n < 100_000_000_000_000 {
        format!("{:>8}G", n / 1_000_000_000)
    } else {
        format!("{:>8}T", n / 1_000_000_000_000)
    }
}

/// The first line of `-L`: ipvsadm's, with what sluice is running.
pub fn version_line(view: &ServicesView) -> String {
    format!(
        "IP Virtual Server version {IPVS_VERSION} (size={}) [sluice {}, {} worker(s)]\n",
        view.max_sessions,
        env!("CARGO_PKG_VERSION"),
        view.workers
    )
}

fn title(view: ListView, health: bool) -> String {
    let columns = match view {
        ListView::Stats => ["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"],
        ListView::Rate => ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"],
        _ => {
            let mut t = concat!(
                "Prot LocalAddress:Port Scheduler Flags\n",
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
            )
            .to_string();
            if health {
                t.push_str(" Health");
            }
            t.push('\n');
            return t;
        }
    };
    let mut out = format!("{:<33}", "Prot LocalAddress:Port");
    for c in columns {
        let _ = write!(out, " {c:>8}");
    }
    out.push_str("\n  -> RemoteAddress:Port\n");
    out
}

/// `-L` (all services, with the version line) or `-L -t VIP:PORT` (that
/// one, without), in the default, `--stats` or `--rate` view.
pub fn services(view: &ServicesView, list: &List) -> String {
    let mut out = String::new();
    if list.service.is_none() {
        out.push_str(&version_line(view));
    }
    let health = view.services.iter().any(|s| s.check.is_on());
    out.push_str(&title(list.view, health));
    let mut services: Vec<&ServiceView> = view.services.iter().collect();
    if list.sort {
        // ipvsadm's order: protocol (TCP before UDP), address, port.
        services.sort_by_key(|s| (s.proto as u8, *s.vip.ip(), s.vip.port()));
    }
    for s in services {
        service(&mut out, s, list);
    }
    out
}

fn service(out: &mut String, s: &ServiceView, list: &List) {
    let name = format!("{}  {}", proto_upper(s.proto), s.vip);
    match list.view {
        ListView::Stats => {
            let _ = write!(out, "{name:<33}");
            for n in [
                s.stats.conns,
                s.stats.in_pkts,
                s.stats.out_pkts,
                s.stats.in_bytes,
                s.stats.out_bytes,
            ] {
                out.push_str(&largenum(n, list.exact));
            }
        }
        ListView::Rate => {
            let _ = write!(out, "{name:<33}");
            for n in [
                s.rate.cps,
                s.rate.in_pps,
                s.rate.out_pps,
                s.rate.in_bps,
                s.rate.out_bps,
            ] {
                out.push_str(&largenum(n, list.exact));
            }
        }
        _ => {
            let _ = write!(out, "{name} {}", s.scheduler);
            let flags = s.flags.display(s.scheduler).to_string();
            if !flags.is_empty() {
                let _ = write!(out, " ({flags})");
            }
            if let Some(p) = s.persistence {
                let _ = write!(out, " persistent {}", p.timeout);
                if p.netmask != Ipv4Addr::BROADCAST {
                    let _ = write!(out, " mask {}", p.netmask);
                }
            }
        }
    }
    out.push('\n');
    let mut reals: Vec<&RealView> = s.reals.iter().collect();
    if list.sort {
        reals.sort_by_key(|r| (*r.addr.ip(), r.addr.port()));
    }
    for r in reals {
        real(out, r, &s.check, list);
    }
}

/// The `Health` column of a checked real: `up`; `up fail 1/2: timeout`
/// while failures count toward `fall`; `down fail 3: connect: refused`;
/// `down ok 1/2; last failure: ...` while successes count toward `rise`.
pub fn health_cell(r: &RealView, check: &CheckSpec) -> Option<String> {
    let h = r.health.as_ref()?;
    let reason = h.last_failure.as_deref().unwrap_or("?");
    Some(match (h.up, h.failures, h.successes) {
        (true, 0, _) => "up".to_string(),
        (true, f, _) => format!("up fail {f}/{}: {reason}", check.fall),
        (false, _, s) if s > 0 => format!("down ok {s}/{}; last failure: {reason}", check.rise),
        (false, f, _) => format!("down fail {f}: {reason}"),
    })
}

fn real(out: &mut String, r: &RealView, check: &CheckSpec, list: &List) {
    let name = r.addr.to_string();
    match list.view {
        ListView::Stats => {
            let _ = write!(out, "  -> {name:<28}");
            for n in [
                r.stats.conns,
                r.stats.in_pkts,
                r.stats.out_pkts,
                r.stats.in_bytes,
                r.stats.out_bytes,
            ] {
                out.push_str(&largenum(n, list.exact));
            }
            out.push('\n');
        }
        ListView::Rate => {
            let _ = write!(
                out,
                "  -> {name:<28} {:>8} {:>8} {:>8}",
                r.rate.cps, r.rate.in_pps, r.rate.out_pps
            );
            out.push_str(&largenum(r.rate.in_bps, list.exact));
            out.push_str(&largenum(r.rate.out_bps, list.exact));
            out.push('\n');
        }
        _ => {
            let _ = write!(
                out,
                "  -> {name:<28} {:<7} {:<6} {:<10} {:<10}",
                mode_name(r.mode),
                r.weight,
                r.active,
                r.inactive
            );
            if let Some(cell) = health_cell(r, check) {
                let _ = write!(out, " {cell}");
            }
            out.push('\n');
        }
    }
}

/// `-L --timeout`.
pub fn timeouts(t: &TimeoutsView) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        t.tcp, t.tcp_fin, t.udp
    )
}

/// ipvsadm's `mm:ss` of a connection's time left (minutes may pass 99).
pub fn expire(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{:02}:{:02}", secs / 60, secs % 60)
}

/// `-L -c`: ipvsadm's connection list. When a connection is FULLNAT (its
/// source toward the real is a local address, not the client) a `local`
/// column comes before `destination`, as DPVS prints it; a NAT-only list
/// is ipvsadm's exactly.
pub fn connections(conns: &[ConnectionView]) -> String {
    let fullnat = conns.iter().any(|c| c.local != c.client);
    let mut out = String::from("IPVS connection entries\n");
    if fullnat {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} destination",
            "state", "source", "virtual", "local"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    for c in conns {
        let proto = proto_upper(c.proto);
        let expire = expire(c.expires_in_ms);
        let (client, vip, real) = (c.client.to_string(), c.vip.to_string(), c.real.to_string());
        if fullnat {
            let _ = writeln!(
                out,
                "{proto:<3} {expire:<6} {:<11} {client:<18} {vip:<18} {:<18} {real}",
                c.state,
                c.local.to_string()
            );
        } else {
            let _ = writeln!(
                out,
                "{proto:<3} {expire:<6} {:<11} {client:<18} {vip:<18} {real}",
                c.state
            );
        }
    }
    out
}

/// `--get-laddr`: DPVS's table (without its CONFLICTS column: sluice
/// counts none): each service with its number of local addresses, then
/// each address with the sessions using it now.
pub fn laddrs(view: &ServicesView, sort: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<8} {:<20} {:<10}",
        "VIP:VPORT", "TOTAL", "SNAT_IP", "CONNS"
    );
    let mut services: Vec<&ServiceView> = view.services.iter().collect();
    if sort {
        services.sort_by_key(|s| (s.proto as u8, *s.vip.ip(), s.vip.port()));
    }
    for s in services {
        let _ = writeln!(out, "{:<20} {:<8}", s.vip.to_string(), s.laddrs.len());
        for l in &s.laddrs {
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<20} {:<10}",
                "",
                "",
                l.addr.to_string(),
                l.conns
            );
        }
    }
    out
}

/// `route show`: one route a line, as `ip route` and this crate's `Route`
/// print it.
pub fn routes(routes: &[RouteView]) -> String {
    let mut out = String::new();
    for r in routes {
        out.push_str(&r.prefix.to_string());
        if let Some(via) = r.via {
            let _ = write!(out, " via {via}");
        }
        let _ = write!(out, " port {}", r.port);
        if let Some(src) = r.src {
            let _ = write!(out, " src {src}");
        }
        out.push_str(if r.is_static {
            " proto static\n"
        } else {
            " scope link\n"
        });
    }
    out
}

/// `neigh show`: `ADDR lladdr MAC port N STATE`, as `neigh add` takes it,
/// then for a learned entry the workers whose cache holds it.
pub fn neighbours(neighbours: &[NeighbourView]) -> String {
    let mut out = String::new();
    for n in neighbours {
        out.push_str(&n.addr.to_string());
        if let Some(mac) = n.mac {
            let _ = write!(out, " lladdr {mac}");
        }
        let _ = write!(out, " port {} {}", n.port, n.state);
        if !n.is_static {
            let workers: Vec<String> = n.workers.iter().map(u16::to_string).collect();
            let _ = write!(out, " workers {}", workers.join(","));
        }
        out.push('\n');
    }
    out
}

/// `counters`: `name value`, one a line.
pub fn counters(counters: &[(String, u64)]) -> String {
    let mut out = String::new();
    for (name, value) in counters {
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// `sysctl`: as sysctl(8) shows a setting.
pub fn sysctl(name: &str, value: u64) -> String {
    format!("{name} = {value}\n")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::control::api::{LaddrView, RateView, StatsView};
    use crate::lb::scheduler::{SchedFlags, SchedulerKind};
    use crate::lb::service::{ForwardMode, Persistence};

    pub fn real_view(addr: &str, weight: u32, mode: ForwardMode) -> RealView {
        RealView {
            addr: addr.parse().unwrap(),
            weight,
            mode,
            active: 0,
            inactive: 0,
            stats: StatsView::default(),
            rate: RateView::default(),
            check_port: None,
            health: None,
        }
    }

    pub fn service_view(proto: Proto, vip: &str, scheduler: SchedulerKind) -> ServiceView {
        ServiceView {
            proto,
            vip: vip.parse().unwrap(),
            scheduler,
            flags: SchedFlags::default(),
            persistence: None,
            synproxy: Default::default(),
            check: Default::default(),
            client_address: Default::default(),
            mode: ForwardMode::Nat,
            laddrs: Vec::new(),
            stats: StatsView::default(),
            rate: RateView::default(),
            reals: Vec::new(),
        }
    }

    /// Two services, listed out of ipvsadm's order on purpose.
    pub fn sample() -> ServicesView {
        let mut udp = service_view(Proto::Udp, "10.10.0.100:53", SchedulerKind::Sh);
        udp.flags = SchedFlags {
            fallback: true,
            port: true,
        };
        udp.persistence = Some(Persistence {
            timeout: 300,
            netmask: "255.255.255.0".parse().unwrap(),
        });
        udp.reals
            .push(real_view("192.168.10.3:5353", 2, ForwardMode::Nat));
        let mut web = service_view(Proto::Tcp, "10.10.0.100:80", SchedulerKind::Wrr);
        let mut a = real_view("192.168.10.3:8080", 0, ForwardMode::Nat);
        a.active = 12;
        a.inactive = 3;
        web.reals.push(a);
        web.reals
            .push(real_view("192.168.10.2:8080", 1, ForwardMode::Nat));
        let mut full = service_view(Proto::Tcp, "10.10.0.101:443", SchedulerKind::Mh);
        full.mode = ForwardMode::FullNat;
        full.flags.port = true;
        full.persistence = Some(Persistence {
            timeout: 600,
            netmask: Ipv4Addr::BROADCAST,
        });
        full.reals
            .push(real_view("192.168.10.4:443", 65535, ForwardMode::FullNat));
        full.laddrs = vec![
            LaddrView {
                addr: "192.168.10.101".parse().unwrap(),
                conns: 7,
            },
            LaddrView {
                addr: "192.168.10.100".parse().unwrap(),
                conns: 0,
            },
        ];
        ServicesView {
            max_sessions: 262144,
            workers: 2,
            services: vec![udp, full, web],
        }
    }

    fn list(view: ListView) -> List {
        List {
            service: None,
            view,
            exact: false,
            sort: true,
            json: false,
        }
    }

    #[test]
    fn list_is_ipvsadm_layout() {
        let text = services(&sample(), &list(ListView::Services));
        let expected = format!(
            "IP Virtual Server version 1.2.1 (size=262144) [sluice {}, 2 worker(s)]
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.10.0.100:80 wrr
  -> 192.168.10.2:8080            Masq    1      0          0         
  -> 192.168.10.3:8080            Masq    0      12         3         
TCP  10.10.0.101:443 mh (mh-port) persistent 600
  -> 192.168.10.4:443             FullNat 65535  0          0         
UDP  10.10.0.100:53 sh (sh-fallback,sh-port) persistent 300 mask 255.255.255.0
  -> 192.168.10.3:5353            Masq    2      0          0         
",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(text, expected);
        // --nosort keeps sluice's order; -t lists one service, no version line.
        let mut l = list(ListView::Services);
        l.sort = false;
        let text = services(&sample(), &l);
        assert!(
            text.find("UDP  10.10.0.100:53").unwrap() < text.find("TCP  10.10.0.100:80").unwrap()
        );
        let one = ServicesView {
            services: vec![sample().services[2].clone()],
            ..sample()
        };
        l.service = Some(crate::control::state::ServiceKey {
            proto: Proto::Tcp,
            vip: "10.10.0.100:80".parse().unwrap(),
        });
        assert_eq!(
            services(&one, &l),
            "Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.10.0.100:80 wrr
  -> 192.168.10.3:8080            Masq    0      12         3         
  -> 192.168.10.2:8080            Masq    1      0          0         
"
        );
    }

    #[test]
    fn checked_services_add_a_health_column() {
        use crate::control::api::HealthView;
        use crate::control::health::{CheckKind, CheckSpec};
        let mut view = sample();
        let health = |up, successes, failures, reason: Option<&str>| {
            Some(HealthView {
                up,
                successes,
                failures,
                last_failure: reason.map(String::from),
                checks: 10,
                failed: 3,
            })
        };
        let web = &mut view.services[2];
        web.check = CheckSpec {
            kind: CheckKind::Http {
                path: "/".into(),
                expect: 200,
            },
            rise: 3,
            ..CheckSpec::default()
        };
        web.reals[0].health = health(false, 0, 4, Some("connect: refused"));
        web.reals[1].health = health(true, 0, 1, Some("timeout"));
        let text = services(&view, &list(ListView::Services));
        let expected = format!(
            "IP Virtual Server version 1.2.1 (size=262144) [sluice {}, 2 worker(s)]
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn Health
TCP  10.10.0.100:80 wrr
  -> 192.168.10.2:8080            Masq    1      0          0          up fail 1/2: timeout
  -> 192.168.10.3:8080            Masq    0      12         3          down fail 4: connect: refused
TCP  10.10.0.101:443 mh (mh-port) persistent 600
  -> 192.168.10.4:443             FullNat 65535  0          0         
UDP  10.10.0.100:53 sh (sh-fallback,sh-port) persistent 300 mask 255.255.255.0
  -> 192.168.10.3:5353            Masq    2      0          0         
",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(text, expected);
        let r = |h| RealView {
            health: h,
            ..real_view("192.168.10.2:8080", 1, ForwardMode::Nat)
        };
        let c = &view.services[2].check;
        assert_eq!(health_cell(&r(health(true, 5, 0, None)), c).unwrap(), "up");
        assert_eq!(
            health_cell(&r(health(false, 2, 0, Some("http status 500"))), c).unwrap(),
            "down ok 2/3; last failure: http status 500"
        );
        assert_eq!(health_cell(&r(None), c), None);
        // The other views keep ipvsadm's columns only.
        let stats = services(&view, &list(ListView::Stats));
        assert!(
            !stats.contains("Health") && !stats.contains("refused"),
            "{stats}"
        );
    }

    #[test]
    fn stats_and_rate_columns() {
        let mut view = sample();
        view.services.truncate(1);
        let udp = &mut view.services[0];
        udp.stats = StatsView {
            conns: 42,
            in_pkts: 123_456_789,
            out_pkts: 99_999_999,
            in_bytes: 98_765_432_100,
            out_bytes: 123_456_789_012_345,
        };
        udp.reals[0].stats = udp.stats;
        udp.rate = RateView {
            cps: 5,
            in_pps: 1200,
            out_pps: 1100,
            in_bps: 2_000_000_000,
            out_bps: 950_000,
        };
        udp.reals[0].rate = udp.rate;
        let text = services(&view, &list(ListView::Stats));
        let body = text.split_once('\n').unwrap().1;
        assert_eq!(
            body,
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
UDP  10.10.0.100:53                     42  123456K 99999999   98765M     123T
  -> 192.168.10.3:5353                  42  123456K 99999999   98765M     123T
"
        );
        let mut exact = list(ListView::Stats);
        exact.exact = true;
        let body = services(&view, &exact)
            .split_once('\n')
            .unwrap()
            .1
            .to_string();
        assert_eq!(
            body,
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
UDP  10.10.0.100:53                     42 123456789 99999999 98765432100 123456789012345
  -> 192.168.10.3:5353                  42 123456789 99999999 98765432100 123456789012345
"
        );
        let body = services(&view, &list(ListView::Rate))
            .split_once('\n')
            .unwrap()
            .1
            .to_string();
        assert_eq!(
            body,
            "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
UDP  10.10.0.100:53                      5     1200     1100    2000M   950000
  -> 192.168.10.3:5353                   5     1200     1100    2000M   950000
"
        );
    }

    #[test]
    fn largenum_units_and_exact() {
        assert_eq!(largenum(0, false), "        0");
        assert_eq!(largenum(99_999_999, false), " 99999999");
        assert_eq!(largenum(100_000_000, false), "  100000K");
        assert_eq!(largenum(999_999_999, false), "  999999K");
        assert_eq!(largenum(1_000_000_000, false), "    1000M");
        assert_eq!(largenum(99_999_999_999, false), "   99999M");
        assert_eq!(largenum(100_000_000_000, false), "     100G");
        assert_eq!(largenum(100_000_000_000_000, false), "     100T");
        assert_eq!(largenum(u64::MAX, false), "18446744T");
        assert_eq!(largenum(7, true), "        7");
        assert_eq!(largenum(12_345_678, true), " 12345678");
        assert_eq!(largenum(123_456_789, true), " 123456789");
        assert_eq!(largenum(u64::MAX, true), " 18446744073709551615");
    }

    #[test]
    fn timeouts_line() {
        assert_eq!(
            timeouts(&TimeoutsView {
                tcp: 900,
                tcp_fin: 120,
                udp: 300
            }),
            "Timeout (tcp tcpfin udp): 900 120 300\n"
        );
    }

    fn conn(client: &str, local: &str, state: &str, ms: u64) -> ConnectionView {
        ConnectionView {
            proto: Proto::Tcp,
            client: client.parse().unwrap(),
            vip: "10.10.0.100:80".parse().unwrap(),
            local: local.parse().unwrap(),
            real: "192.168.10.2:8080".parse().unwrap(),
            state: state.into(),
            expires_in_ms: ms,
            worker: 0,
        }
    }

    #[test]
    fn connection_list_and_expire() {
        assert_eq!(expire(0), "00:00");
        assert_eq!(expire(999), "00:00");
        assert_eq!(expire(59_999), "00:59");
        assert_eq!(expire(61_000), "01:01");
        assert_eq!(expire(900_000), "15:00");
        assert_eq!(expire(6_000_000), "100:00");
        let nat = vec![
            conn("10.10.0.2:40000", "10.10.0.2:40000", "ESTABLISHED", 899_500),
            conn("10.10.0.3:1234", "10.10.0.3:1234", "TIME_WAIT", 2_000),
        ];
        assert_eq!(
            connections(&nat),
            "IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:59  ESTABLISHED 10.10.0.2:40000    10.10.0.100:80     192.168.10.2:8080
TCP 00:02  TIME_WAIT   10.10.0.3:1234     10.10.0.100:80     192.168.10.2:8080
"
        );
        let full = vec![conn(
            "10.10.0.2:40000",
            "192.168.10.100:1025",
            "SYN_RECV",
            59_000,
        )];
        assert_eq!(
            connections(&full),
            "IPVS connection entries
pro expire state       source             virtual            local              destination
TCP 00:59  SYN_RECV    10.10.0.2:40000    10.10.0.100:80     192.168.10.100:1025 192.168.10.2:8080
"
        );
        assert_eq!(
            connections(&[]),
            "IPVS connection entries\npro expire state       source             virtual            destination\n"
        );
    }

    #[test]
    fn laddr_table() {
        assert_eq!(
            laddrs(&sample(), true),
            "VIP:VPORT            TOTAL    SNAT_IP              CONNS     
10.10.0.100:80       0       
10.10.0.101:443      2       
                              192.168.10.101       7         
                              192.168.10.100       0         
10.10.0.100:53       0       
"
        );
    }

    #[test]
    fn routes_neighbours_counters() {
        let r = vec![
            RouteView {
                prefix: "10.10.0.0/24".parse().unwrap(),
                via: None,
                port: 0,
                src: Some("10.10.0.1".parse().unwrap()),
                is_static: false,
            },
            RouteView {
                prefix: "172.16.0.0/24".parse().unwrap(),
                via: Some("192.168.10.254".parse().unwrap()),
                port: 1,
                src: None,
                is_static: true,
            },
        ];
        assert_eq!(
            routes(&r),
            "10.10.0.0/24 port 0 src 10.10.0.1 scope link\n172.16.0.0/24 via 192.168.10.254 port 1 proto static\n"
        );
        let n = vec![
            NeighbourView {
                addr: "192.168.10.254".parse().unwrap(),
                mac: Some("02:00:00:00:00:fe".parse().unwrap()),
                port: 1,
                state: "PERMANENT".into(),
                is_static: true,
                workers: vec![],
            },
            NeighbourView {
                addr: "192.168.10.2".parse().unwrap(),
                mac: None,
                port: 1,
                state: "INCOMPLETE".into(),
                is_static: false,
                workers: vec![0, 1],
            },
        ];
        assert_eq!(
            neighbours(&n),
            "192.168.10.254 lladdr 02:00:00:00:00:fe port 1 PERMANENT\n192.168.10.2 port 1 INCOMPLETE workers 0,1\n"
        );
        assert_eq!(
            counters(&[("rx_packets".into(), 5), ("drop_no_route".into(), 0)]),
            "rx_packets 5\ndrop_no_route 0\n"
        );
        assert_eq!(sysctl("expire_nodest_conn", 1), "expire_nodest_conn = 1\n");
    }
}
