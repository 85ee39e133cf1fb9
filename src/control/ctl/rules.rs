//! `-S` and `-R`: the services as ipvsadm rules, and rules back into one
//! batch of changes.
//!
//! `-S` prints ipvsadm's `-A`/`-a` lines, plus DPVS's `--add-laddr` for
//! FULLNAT local addresses and `--set` when the timeouts are not the
//! defaults. Unlike ipvsadm it keeps sluice's order of services and reals
//! (ipvsadm sorts them) because sluice's order is part of the state: so
//! `sluice ctl -S | sluice ctl -R` on a cleared sluice rebuilds exactly
//! the same state, and `-S` of it is the same text.
//!
//! `-R` reads such lines (blank lines and `#` comments skipped), and they
//! are applied as one request: all of them or, on any error, none.

use super::args::{self, Command, Edit};
use crate::control::api::{ServicesView, TimeoutsView};
use crate::control::health::spec::{self as check, CheckKind, CheckSpec, Secs};
use crate::control::state::{Change, ServiceKey};
use crate::lb::service::{ClientAddressMode, ForwardMode, SynProxyMode};
use crate::lb::tcp_state::Timeouts;
use crate::lb::Proto;
use std::collections::HashMap;
use std::fmt::Write;
use std::net::{Ipv4Addr, SocketAddrV4};

fn proto_flag(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "-t",
        Proto::Udp => "-u",
    }
}

fn mode_flag(mode: ForwardMode) -> &'static str {
    match mode {
        ForwardMode::Nat => "-m",
        ForwardMode::FullNat => "-b",
    }
}

/// `-S`: the rules that rebuild these services and timeouts.
pub fn save(view: &ServicesView, timeouts: &TimeoutsView) -> String {
    let mut out = String::new();
    let d = Timeouts::default();
    if (timeouts.tcp, timeouts.tcp_fin, timeouts.udp) != (d.established, d.fin_wait, d.udp) {
        let _ = writeln!(
            out,
            "--set {} {} {}",
            timeouts.tcp, timeouts.tcp_fin, timeouts.udp
        );
    }
    for s in &view.services {
        let service = format!("{} {}", proto_flag(s.proto), s.vip);
        let _ = write!(out, "-A {service} -s {}", s.scheduler);
        let flags = s.flags.display(s.scheduler).to_string();
        if !flags.is_empty() {
            // ipvsadm writes `-b FLAGS`; sluice's -b is DPVS's FULLNAT.
            let _ = write!(out, " --sched-flags {flags}");
        }
        if let Some(p) = s.persistence {
            let _ = write!(out, " -p {}", p.timeout);
            if p.netmask != Ipv4Addr::BROADCAST {
                let _ = write!(out, " -M {}", p.netmask);
            }
        }
        if s.synproxy != SynProxyMode::default() {
            let _ = write!(out, " --synproxy {}", s.synproxy);
        }
        check_flags(&mut out, &s.check);
        if s.client_address != ClientAddressMode::None {
            let _ = write!(out, " --client-address {}", s.client_address);
        }
        out.push('\n');
        for r in &s.reals {
            let _ = write!(
                out,
                "-a {service} -r {} {} -w {}",
                r.addr,
                mode_flag(r.mode),
                r.weight
            );
            if let Some(p) = r.check_port {
                let _ = write!(out, " --check-port {p}");
            }
            out.push('\n');
        }
        for l in &s.laddrs {
            let _ = writeln!(out, "--add-laddr -z {} {service}", l.addr);
        }
    }
    out
}

/// `--check TYPE` and the settings that are not the defaults.
fn check_flags(out: &mut String, c: &CheckSpec) {
    if !c.is_on() {
        return;
    }
    let _ = write!(out, " --check {}", c.kind.name());
    if let CheckKind::Http { path, expect } = &c.kind {
        if path != check::DEFAULT_PATH {
            let _ = write!(out, " --check-path {path}");
        }
        if *expect != check::DEFAULT_EXPECT {
            let _ = write!(out, " --check-expect {expect}");
        }
    }
    let d = CheckSpec::default();
    if c.interval_ms != d.interval_ms {
        let _ = write!(out, " --check-interval {}", Secs(c.interval_ms));
    }
    if c.timeout_ms != d.timeout_ms {
        let _ = write!(out, " --check-timeout {}", Secs(c.timeout_ms));
    }
    if c.rise != d.rise {
        let _ = write!(out, " --check-rise {}", c.rise);
    }
    if c.fall != d.fall {
        let _ = write!(out, " --check-fall {}", c.fall);
    }
}

/// One rule of a `-R` batch and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub line: usize,
    pub edit: Edit,
}

/// A rule that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Reads `-R` input: one ipvsadm rule a line.
pub fn parse(text: &str) -> Result<Vec<Rule>, RuleError> {
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let words: Vec<String> = raw.split_whitespace().map(String::from).collect();
        if words.is_empty() || words[0].starts_with('#') {
            continue;
        }
        let error = |message: String| RuleError { line, message };
        match args::parse(&words).map_err(|e| error(e.0))? {
            Command::Edit(edit) if is_rule(&edit.change) => rules.push(Rule { line, edit }),
            _ => {
                return Err(error(format!(
                    "`{}' is not a rule (-R takes -A, -E, -D, -C, -a, -e, -d, --add-laddr, \
                     --del-laddr and --set)",
                    words.join(" ")
                )))
            }
        }
    }
    Ok(rules)
}

/// The changes ipvsadm rules make (not routes or neighbours).
fn is_rule(change: &Change) -> bool {
    !matches!(
        change,
        Change::AddRoute { .. }
            | Change::DeleteRoute { .. }
            | Change::AddNeighbour { .. }
            | Change::DeleteNeighbour { .. }
            | Change::SetHealth { .. }
    )
}

/// Whether some rule leaves a real's mode to its service.
pub fn needs_modes(rules: &[Rule]) -> bool {
    rules.iter().any(|r| r.edit.follows_service)
}

/// What a service's forwarding mode is, as a batch goes on.
#[derive(Debug, Default)]
struct Track {
    reals: Vec<(SocketAddrV4, ForwardMode)>,
    laddrs: usize,
}

impl Track {
    /// As `ServiceSpec::mode`: its reals', FULLNAT if it only has local
    /// addresses, else NAT.
    fn mode(&self) -> ForwardMode {
        match self.reals.first() {
            Some((_, mode)) => *mode,
            None if self.laddrs > 0 => ForwardMode::FullNat,
            None => ForwardMode::Nat,
        }
    }
}

/// The modes of services as they stand on the server and as the batch
/// changes them, so a real given without `-m`/`-b` joins in its service's
/// mode even when an earlier line of the same batch set it.
#[derive(Debug, Default)]
pub struct Modes {
    services: HashMap<ServiceKey, Track>,
}

impl Modes {
    pub fn new(current: Option<&ServicesView>) -> Modes {
        let mut services = HashMap::new();
        for s in current.map(|v| v.services.as_slice()).unwrap_or_default() {
            services.insert(
                ServiceKey {
                    proto: s.proto,
                    vip: s.vip,
                },
                Track {
                    reals: s.reals.iter().map(|r| (r.addr, r.mode)).collect(),
                    laddrs: s.laddrs.len(),
                },
            );
        }
        Modes { services }
    }

    /// The change `edit` makes here, its real's mode resolved; and the
    /// modes after it.
    pub fn resolve(&mut self, edit: &Edit) -> Change {
        let mode = edit
            .service()
            .and_then(|k| self.services.get(&k))
            .map_or(ForwardMode::Nat, Track::mode);
        let change = edit.resolve(mode);
        self.follow(&change);
        change
    }

    fn follow(&mut self, change: &Change) {
        match change {
            Change::AddService { key, .. } => {
                self.services.entry(*key).or_default();
            }
            Change::DeleteService { key } => {
                self.services.remove(key);
            }
            Change::Clear => self.services.clear(),
            Change::AddReal { key, real } | Change::EditReal { key, real } => {
                let track = self.services.entry(*key).or_default();
                track.reals.retain(|(a, _)| *a != real.addr);
                track.reals.push((real.addr, real.mode));
            }
            Change::DeleteReal { key, addr } => {
                if let Some(track) = self.services.get_mut(key) {
                    track.reals.retain(|(a, _)| a != addr);
                }
            }
            Change::AddLaddr { key, .. } => self.services.entry(*key).or_default().laddrs += 1,
            Change::DeleteLaddr { key, .. } => {
                if let Some(track) = self.services.get_mut(key) {
                    track.laddrs = track.laddrs.saturating_sub(1);
                }
            }
            _ => {}
        }
    }
}

/// The batch for `rules`, given the services on the server now (needed
/// only when [`needs_modes`]).
pub fn changes(rules: &[Rule], current: Option<&ServicesView>) -> Vec<Change> {
    let mut modes = Modes::new(current);
    rules.iter().map(|r| modes.resolve(&r.edit)).collect()
}

/// The server names the failing change of a batch (`change 3 of 9: ...`);
/// say which line it came from instead.
pub fn locate(error: &str, lines: &[usize]) -> String {
    let located = error
        .strip_prefix("change ")
        .and_then(|rest| rest.split_once(" of "))
        .and_then(|(index, rest)| {
            let (_, reason) = rest.split_once(": ")?;
            let index: usize = index.parse().ok()?;
            let line = lines.get(index.checked_sub(1)?)?;
            Some(format!("line {line}: {reason}"))
        });
    match (located, lines) {
        (Some(text), _) => text,
        (None, [line]) => format!("line {line}: {error}"),
        (None, _) => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::{LaddrView, RateView, RealView, ServiceView, StatsView};
    use crate::control::config::InterfaceConfig;
    use crate::control::state::{RealSpec, ServiceOptions, State};
    use crate::lb::scheduler::{SchedFlags, SchedulerKind};
    use crate::lb::service::Persistence;

    fn empty() -> State {
        State::new(
            vec![
                InterfaceConfig {
                    port: 0,
                    addrs: vec!["10.10.0.1/24".parse().unwrap()],
                    rp_filter: Default::default(),
                    kernel: None,
                },
                InterfaceConfig {
                    port: 1,
                    addrs: vec!["192.168.10.1/24".parse().unwrap()],
                    rp_filter: Default::default(),
                    kernel: None,
                },
            ],
            64,
        )
    }

    /// What the server would answer for `state` (no traffic yet).
    fn view_of(state: &State) -> (ServicesView, TimeoutsView) {
        let services = state
            .services
            .iter()
            .map(|s| ServiceView {
                proto: s.key.proto,
                vip: s.key.vip,
                scheduler: s.options.scheduler,
                flags: s.options.flags,
                persistence: s.options.persistence,
                synproxy: s.options.synproxy,
                check: s.options.check.clone(),
                client_address: s.options.client_address,
                mode: s.mode(),
                laddrs: s
                    .laddrs
                    .iter()
                    .map(|a| LaddrView { addr: *a, conns: 0 })
                    .collect(),
                stats: StatsView::default(),
                rate: RateView::default(),
                reals: s
                    .reals
                    .iter()
                    .map(|r| RealView {
                        addr: r.addr,
                        weight: r.weight,
                        mode: r.mode,
                        active: 0,
                        inactive: 0,
                        stats: StatsView::default(),
                        rate: RateView::default(),
                        check_port: r.check_port,
                        health: None,
                    })
                    .collect(),
            })
            .collect();
        let t = state.timeouts;
        (
            ServicesView {
                max_sessions: 1024,
                workers: 1,
                services,
            },
            TimeoutsView {
                tcp: t.established,
                tcp_fin: t.fin_wait,
                udp: t.udp,
            },
        )
    }

    fn key(proto: Proto, vip: &str) -> ServiceKey {
        ServiceKey {
            proto,
            vip: vip.parse().unwrap(),
        }
    }

    fn real(addr: &str, weight: u32, mode: ForwardMode) -> RealSpec {
        RealSpec {
            addr: addr.parse().unwrap(),
            weight,
            mode,
            check_port: None,
        }
    }

    /// A state with a bit of everything, services and reals out of
    /// ipvsadm's sort order on purpose.
    fn rich() -> State {
        let web = key(Proto::Tcp, "10.10.0.100:80");
        let dns = key(Proto::Udp, "10.10.0.100:53");
        let tls = key(Proto::Tcp, "10.10.0.101:443");
        let idle = key(Proto::Tcp, "10.10.0.102:8443");
        let bare = key(Proto::Udp, "10.10.0.103:9000");
        let opts = |scheduler, flags, persistence| ServiceOptions {
            scheduler,
            flags,
            persistence,
            synproxy: SynProxyMode::Auto,
            check: Default::default(),
            client_address: Default::default(),
        };
        empty()
            .apply_all(&[
                Change::SetTimeouts {
                    tcp: 600,
                    tcp_fin: 0,
                    udp: 30,
                },
                Change::AddService {
                    key: web,
                    options: ServiceOptions {
                        check: CheckSpec {
                            kind: CheckKind::Http {
                                path: "/health?deep=1".into(),
                                expect: 204,
                            },
                            interval_ms: 500,
                            rise: 3,
                            ..CheckSpec::default()
                        },
                        ..opts(SchedulerKind::Wrr, SchedFlags::default(), None)
                    },
                },
                Change::AddReal {
                    key: web,
                    real: RealSpec {
                        check_port: Some(9000),
                        ..real("192.168.10.3:8080", 2, ForwardMode::Nat)
                    },
                },
                Change::AddReal {
                    key: web,
                    real: real("192.168.10.2:8080", 0, ForwardMode::Nat),
                },
                Change::AddService {
                    key: dns,
                    options: ServiceOptions {
                        check: CheckSpec {
                            kind: CheckKind::Tcp,
                            timeout_ms: 2500,
                            fall: 5,
                            ..CheckSpec::default()
                        },
                        ..opts(
                            SchedulerKind::Sh,
                            SchedFlags {
                                fallback: true,
                                port: true,
                            },
                            Some(Persistence {
                                timeout: 300,
                                netmask: "255.255.255.0".parse().unwrap(),
                            }),
                        )
                    },
                },
                Change::AddReal {
                    key: dns,
                    real: real("192.168.10.4:5353", 1, ForwardMode::Nat),
                },
                Change::AddService {
                    key: tls,
                    options: ServiceOptions {
                        client_address: ClientAddressMode::ProxyV2,
                        ..opts(
                            SchedulerKind::Mh,
                            SchedFlags {
                                fallback: false,
                                port: true,
                            },
                            Some(Persistence {
                                timeout: 3600,
                                netmask: Ipv4Addr::BROADCAST,
                            }),
                        )
                    },
                },
                Change::AddReal {
                    key: tls,
                    real: real("192.168.10.5:443", 65535, ForwardMode::FullNat),
                },
                Change::AddLaddr {
                    key: tls,
                    addr: "192.168.10.101".parse().unwrap(),
                },
                Change::AddLaddr {
                    key: tls,
                    addr: "192.168.10.100".parse().unwrap(),
                },
                Change::AddService {
                    key: idle,
                    options: ServiceOptions {
                        synproxy: SynProxyMode::Off,
                        ..opts(SchedulerKind::Wlc, SchedFlags::default(), None)
                    },
                },
                Change::AddLaddr {
                    key: idle,
                    addr: "192.168.10.102".parse().unwrap(),
                },
                Change::AddService {
                    key: bare,
                    options: opts(SchedulerKind::Rr, SchedFlags::default(), None),
                },
            ])
            .unwrap()
    }

    const RICH_RULES: &str = "\
--set 600 120 30
-A -t 10.10.0.100:80 -s wrr --check http --check-path /health?deep=1 --check-expect 204 --check-interval 0.5 --check-rise 3
-a -t 10.10.0.100:80 -r 192.168.10.3:8080 -m -w 2 --check-port 9000
-a -t 10.10.0.100:80 -r 192.168.10.2:8080 -m -w 0
-A -u 10.10.0.100:53 -s sh --sched-flags sh-fallback,sh-port -p 300 -M 255.255.255.0 --check tcp --check-timeout 2.5 --check-fall 5
-a -u 10.10.0.100:53 -r 192.168.10.4:5353 -m -w 1
-A -t 10.10.0.101:443 -s mh --sched-flags mh-port -p 3600 --client-address proxy-v2
-a -t 10.10.0.101:443 -r 192.168.10.5:443 -b -w 65535
--add-laddr -z 192.168.10.101 -t 10.10.0.101:443
--add-laddr -z 192.168.10.100 -t 10.10.0.101:443
-A -t 10.10.0.102:8443 -s wlc --synproxy off
--add-laddr -z 192.168.10.102 -t 10.10.0.102:8443
-A -u 10.10.0.103:9000 -s rr
";

    #[test]
    fn save_is_ipvsadm_rules() {
        let (view, timeouts) = view_of(&rich());
        assert_eq!(save(&view, &timeouts), RICH_RULES);
        // Default timeouts print no --set.
        let (view, timeouts) = view_of(&empty());
        assert_eq!(save(&view, &timeouts), "");
    }

    #[test]
    fn save_then_restore_rebuilds_the_same_state() {
        let state = rich();
        let (view, timeouts) = view_of(&state);
        let text = save(&view, &timeouts);
        let rules = parse(&text).unwrap();
        assert!(!needs_modes(&rules));
        let rebuilt = empty().apply_all(&changes(&rules, None)).unwrap();
        assert_eq!(rebuilt, state);
        let (view, timeouts) = view_of(&rebuilt);
        assert_eq!(save(&view, &timeouts), text);
        // And a -C first replaces whatever was there, in the same batch.
        let replace = format!("-C\n{text}");
        let rules = parse(&replace).unwrap();
        let over = rich()
            .apply_all(&[Change::SetTimeouts {
                tcp: 600,
                tcp_fin: 0,
                udp: 30,
            }])
            .unwrap();
        assert_eq!(over.apply_all(&changes(&rules, None)).unwrap(), state);
    }

    #[test]
    fn restore_skips_comments_and_names_bad_lines() {
        let text = "# saved by hand\n\n   \n-A -t 10.10.0.100:80 -s rr\n  # indented comment\n-a -t 10.10.0.100:80 -r 192.168.10.2 -m\n";
        let rules = parse(text).unwrap();
        assert_eq!(rules.iter().map(|r| r.line).collect::<Vec<_>>(), vec![4, 6]);
        let e = parse("-A -t 10.10.0.100:80\n-a -t 10.10.0.100:80 -r 192.168.10.2 -w 70000\n")
            .unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().starts_with("line 2: illegal weight"), "{e}");
        let e = parse("-C\n-L -n\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("`-L -n' is not a rule"), "{e}");
        let e = parse("route add 172.16.0.0/24 via 192.168.10.254\n").unwrap_err();
        assert!(e.message.contains("is not a rule"), "{e}");
        let e = parse("-A -t 10.10.0.100:80 -s rr extra\n").unwrap_err();
        assert_eq!(e.to_string(), "line 1: unexpected argument extra");
    }

    #[test]
    fn reals_without_a_mode_follow_their_service() {
        let mode_of = |c: &Change| match c {
            Change::AddReal { real, .. } | Change::EditReal { real, .. } => real.mode,
            c => panic!("{c:?}"),
        };
        // Set earlier in the same batch.
        let rules = parse(
            "-A -t 10.10.0.101:443\n--add-laddr -z 192.168.10.100 -t 10.10.0.101:443\n\
             -a -t 10.10.0.101:443 -r 192.168.10.5\n-A -t 10.10.0.100:80\n-a -t 10.10.0.100:80 -r 192.168.10.2\n",
        )
        .unwrap();
        assert!(needs_modes(&rules));
        let c = changes(&rules, None);
        assert_eq!(mode_of(&c[2]), ForwardMode::FullNat);
        assert_eq!(mode_of(&c[4]), ForwardMode::Nat);
        // Or as the service is on the server.
        let (view, _) = view_of(&rich());
        let rules = parse("-a -t 10.10.0.101:443 -r 192.168.10.6\n-e -t 10.10.0.100:80 -r 192.168.10.2:8080 -w 5\n").unwrap();
        let c = changes(&rules, Some(&view));
        assert_eq!(mode_of(&c[0]), ForwardMode::FullNat);
        assert_eq!(mode_of(&c[1]), ForwardMode::Nat);
        // After -C, what the server had no longer counts.
        let rules =
            parse("-C\n-A -t 10.10.0.101:443\n-a -t 10.10.0.101:443 -r 192.168.10.6\n").unwrap();
        assert_eq!(mode_of(&changes(&rules, Some(&view))[2]), ForwardMode::Nat);
        // An unknown service: NAT, and the server will say it is unknown.
        let rules = parse("-a -t 10.10.0.200:80 -r 192.168.10.6\n").unwrap();
        assert_eq!(mode_of(&changes(&rules, Some(&view))[0]), ForwardMode::Nat);
    }

    #[test]
    fn server_errors_name_the_line() {
        let lines = [3, 7, 12];
        assert_eq!(
            locate("change 2 of 3: no service tcp 10.10.0.100:81", &lines),
            "line 7: no service tcp 10.10.0.100:81"
        );
        assert_eq!(
            locate("no service tcp 10.10.0.100:81", &[5]),
            "line 5: no service tcp 10.10.0.100:81"
        );
        assert_eq!(locate("change 9 of 3: odd", &lines), "change 9 of 3: odd");
        assert_eq!(locate("change 0 of 3: odd", &lines), "change 0 of 3: odd");
        assert_eq!(locate("something else", &lines), "something else");
    }
}
