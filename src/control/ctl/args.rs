//! ipvsadm's command line -> a [`Command`]: the same verbs and options,
//! short (`-A`, grouped as in `-Ln`) and long (`--add-service`,
//! `--scheduler=wrr`), checked against ipvsadm's table of which options go
//! with which command, with ipvsadm's messages when they do not.
//!
//! Nothing here talks to sluice: a `Command` says what to ask. The one
//! thing the command line may leave to the server is the forwarding mode of
//! a real given without `-m` or `-b` ([`Edit::follows_service`]).

use super::verbs;
use crate::control::health::spec::{self as check, CheckKind, CheckSpec, CheckType};
use crate::control::state::{Change, RealSpec, ServiceKey, ServiceOptions, DEFAULT_PERSISTENCE};
use crate::lb::scheduler::{SchedFlags, SchedulerKind};
use crate::lb::service::{ClientAddressMode, ForwardMode, Persistence, SynProxyMode};
use crate::lb::Proto;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// ipvsadm's bound on timeouts (`-p`, `--set`): 31 days.
pub const MAX_TIMEOUT: u32 = 86400 * 31;

/// ipvsadm's default scheduler.
pub const DEFAULT_SCHEDULER: SchedulerKind = SchedulerKind::Wlc;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    /// One change (`-A`, `-a`, `--set`, `route add`, ...).
    Edit(Edit),
    /// `-L`/`-l` in one of its views.
    List(List),
    /// `--get-laddr [-t|-u VIP:PORT]`.
    GetLaddr {
        service: Option<ServiceKey>,
        json: bool,
    },
    /// `-Z [-t|-u VIP:PORT]`.
    Zero {
        service: Option<ServiceKey>,
    },
    /// `-S`.
    Save,
    /// `-R`: rules from stdin.
    Restore,
    /// `route show`.
    Routes {
        json: bool,
    },
    /// `neigh show`.
    Neighbours {
        json: bool,
    },
    /// `reload`.
    Reload,
    /// `sysctl [NAME [VALUE]]`.
    Sysctl {
        name: Option<String>,
        value: Option<u64>,
        json: bool,
    },
    /// `counters`.
    Counters {
        json: bool,
    },
}

/// A change as the command line gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub change: Change,
    /// `-a`/`-e` without `-m` or `-b`: the real takes the forwarding mode
    /// of the service it joins (the placeholder in `change` is NAT).
    pub follows_service: bool,
}

impl Edit {
    pub fn new(change: Change) -> Edit {
        Edit {
            change,
            follows_service: false,
        }
    }

    /// The service whose mode a real without `-m`/`-b` takes.
    pub fn service(&self) -> Option<ServiceKey> {
        match &self.change {
            Change::AddReal { key, .. } | Change::EditReal { key, .. } => Some(*key),
            _ => None,
        }
    }

    /// The change, with `mode` for a real that follows its service.
    pub fn resolve(&self, mode: ForwardMode) -> Change {
        let mut change = self.change.clone();
        if self.follows_service {
            if let Change::AddReal { real, .. } | Change::EditReal { real, .. } = &mut change {
                real.mode = mode;
            }
        }
        change
    }
}

/// Which table `-L` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListView {
    /// Scheduler, flags, forward, weight, ActiveConn, InActConn.
    Services,
    /// `--stats`.
    Stats,
    /// `--rate`.
    Rate,
    /// `--timeout`.
    Timeouts,
    /// `-c`.
    Connections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct List {
    pub service: Option<ServiceKey>,
    pub view: ListView,
    /// `--exact`: whole numbers instead of K/M/G.
    pub exact: bool,
    /// ipvsadm sorts services and reals; `--nosort` keeps sluice's order.
    pub sort: bool,
    pub json: bool,
}

/// A bad command line: one line that names the flag or value at fault.
/// ipvsadm exits 2 on these, and so does `sluice ctl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(message: impl Into<String>) -> UsageError {
        UsageError(message.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The commands, named as ipvsadm names them in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    AddService,
    EditService,
    DeleteService,
    Clear,
    List,
    AddServer,
    EditServer,
    DeleteServer,
    Set,
    Restore,
    Save,
    Zero,
    AddLaddr,
    DelLaddr,
    GetLaddr,
    Help,
    Version,
}

impl Cmd {
    fn name(self) -> &'static str {
        match self {
            Cmd::AddService => "add-service",
            Cmd::EditService => "edit-service",
            Cmd::DeleteService => "delete-service",
            Cmd::Clear => "clear",
            Cmd::List => "list",
            Cmd::AddServer => "add-server",
            Cmd::EditServer => "edit-server",
            Cmd::DeleteServer => "delete-server",
            Cmd::Set => "set",
            Cmd::Restore => "restore",
            Cmd::Save => "save",
            Cmd::Zero => "zero",
            Cmd::AddLaddr => "add-laddr",
            Cmd::DelLaddr => "del-laddr",
            Cmd::GetLaddr => "get-laddr",
            Cmd::Help => "help",
            Cmd::Version => "version",
        }
    }

    /// (required, optional) options, as ipvsadm's `commands_v_options`.
    fn options(self) -> (&'static [Opt], &'static [Opt]) {
        use Opt::*;
        match self {
            Cmd::AddService | Cmd::EditService => (
                &[Service],
                &[
                    Scheduler,
                    Persistent,
                    Netmask,
                    SchedFlags,
                    SynProxy,
                    Check,
                    CheckPath,
                    CheckExpect,
                    CheckInterval,
                    CheckTimeout,
                    CheckRise,
                    CheckFall,
                    ClientAddress,
                ],
            ),
            Cmd::DeleteService => (&[Service], &[]),
            Cmd::AddServer | Cmd::EditServer => {
                (&[Service, RealServer], &[Forward, Weight, CheckPort])
            }
            Cmd::DeleteServer => (&[Service, RealServer], &[]),
            Cmd::List => (
                &[],
                &[
                    Numeric, Connection, Service, Timeout, Stats, Rate, NoSort, Exact, Json,
                ],
            ),
            Cmd::Save => (&[], &[Numeric]),
            Cmd::Zero => (&[], &[Service]),
            Cmd::AddLaddr | Cmd::DelLaddr => (&[Service, LocalAddress], &[]),
            Cmd::GetLaddr => (&[], &[Service, Numeric, Json]),
            Cmd::Clear | Cmd::Set | Cmd::Restore | Cmd::Help | Cmd::Version => (&[], &[]),
        }
    }
}

/// The options, named as ipvsadm names them in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    RealServer,
    Forward,
    Weight,
    Timeout,
    Stats,
    Rate,
    NoSort,
    Exact,
    SchedFlags,
    SynProxy,
    ClientAddress,
    LocalAddress,
    Json,
    Check,
    CheckPath,
    CheckExpect,
    CheckInterval,
    CheckTimeout,
    CheckRise,
    CheckFall,
    CheckPort,
}

impl Opt {
    fn name(self) -> &'static str {
        match self {
            Opt::Numeric => "numeric",
            Opt::Connection => "connection",
            Opt::Service => "service-address",
            Opt::Scheduler => "scheduler",
            Opt::Persistent => "persistent",
            Opt::Netmask => "netmask",
            Opt::RealServer => "real-server",
            Opt::Forward => "forwarding-method",
            Opt::Weight => "weight",
            Opt::Timeout => "timeout",
            Opt::Stats => "stats",
            Opt::Rate => "rate",
            Opt::NoSort => "nosort",
            Opt::Exact => "exact",
            Opt::SchedFlags => "sched-flags",
            Opt::SynProxy => "synproxy",
            Opt::ClientAddress => "client-address",
            Opt::LocalAddress => "local-address",
            Opt::Json => "json",
            Opt::Check => "check",
            Opt::CheckPath => "check-path",
            Opt::CheckExpect => "check-expect",
            Opt::CheckInterval => "check-interval",
            Opt::CheckTimeout => "check-timeout",
            Opt::CheckRise => "check-rise",
            Opt::CheckFall => "check-fall",
            Opt::CheckPort => "check-port",
        }
    }
}

/// Every flag sluice knows, by what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    Command(Cmd),
    Tcp,
    Udp,
    Scheduler,
    Persistent,
    Netmask,
    Real,
    Masquerading,
    FullNat,
    Weight,
    Numeric,
    Connection,
    Timeout,
    Stats,
    Rate,
    Exact,
    NoSort,
    /// `--sort`: ipvsadm's no-op, kept for scripts.
    Sort,
    SchedFlags,
    SynProxy,
    ClientAddress,
    Laddr,
    Json,
    /// `--check TYPE` and its settings (sluice's own, beyond ipvsadm).
    Check(Opt),
}

impl Flag {
    fn option(self) -> Option<Opt> {
        Some(match self {
            Flag::Command(_) | Flag::Sort => return None,
            Flag::Tcp | Flag::Udp => Opt::Service,
            Flag::Scheduler => Opt::Scheduler,
            Flag::Persistent => Opt::Persistent,
            Flag::Netmask => Opt::Netmask,
            Flag::Real => Opt::RealServer,
            Flag::Masquerading | Flag::FullNat => Opt::Forward,
            Flag::Weight => Opt::Weight,
            Flag::Numeric => Opt::Numeric,
            Flag::Connection => Opt::Connection,
            Flag::Timeout => Opt::Timeout,
            Flag::Stats => Opt::Stats,
            Flag::Rate => Opt::Rate,
            Flag::Exact => Opt::Exact,
            Flag::NoSort => Opt::NoSort,
            Flag::SchedFlags => Opt::SchedFlags,
            Flag::SynProxy => Opt::SynProxy,
            Flag::ClientAddress => Opt::ClientAddress,
            Flag::Laddr => Opt::LocalAddress,
            Flag::Json => Opt::Json,
            Flag::Check(opt) => opt,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Nothing,
    Value,
    /// `-p [TIMEOUT]`: the next word if it is not an option.
    OptionalValue,
}

struct Spec {
    short: Option<char>,
    long: &'static str,
    takes: Takes,
    flag: Flag,
}

const fn spec(short: Option<char>, long: &'static str, takes: Takes, flag: Flag) -> Spec {
    Spec {
        short,
        long,
        takes,
        flag,
    }
}

/// ipvsadm's flags, and DPVS's for FULLNAT (`-b`, `-z`, `--add-laddr`, ...).
#[rustfmt::skip]
const SPECS: &[Spec] = &[
    spec(Some('A'), "add-service", Takes::Nothing, Flag::Command(Cmd::AddService)),
    spec(Some('E'), "edit-service", Takes::Nothing, Flag::Command(Cmd::EditService)),
    spec(Some('D'), "delete-service", Takes::Nothing, Flag::Command(Cmd::DeleteService)),
    spec(Some('C'), "clear", Takes::Nothing, Flag::Command(Cmd::Clear)),
    spec(Some('L'), "list", Takes::Nothing, Flag::Command(Cmd::List)),
    spec(Some('l'), "list", Takes::Nothing, Flag::Command(Cmd::List)),
    spec(Some('Z'), "zero", Takes::Nothing, Flag::Command(Cmd::Zero)),
    spec(Some('a'), "add-server", Takes::Nothing, Flag::Command(Cmd::AddServer)),
    spec(Some('e'), "edit-server", Takes::Nothing, Flag::Command(Cmd::EditServer)),
    spec(Some('d'), "delete-server", Takes::Nothing, Flag::Command(Cmd::DeleteServer)),
    spec(None, "set", Takes::Nothing, Flag::Command(Cmd::Set)),
    spec(Some('R'), "restore", Takes::Nothing, Flag::Command(Cmd::Restore)),
    spec(Some('S'), "save", Takes::Nothing, Flag::Command(Cmd::Save)),
    spec(Some('P'), "add-laddr", Takes::Nothing, Flag::Command(Cmd::AddLaddr)),
    spec(Some('Q'), "del-laddr", Takes::Nothing, Flag::Command(Cmd::DelLaddr)),
    spec(Some('G'), "get-laddr", Takes::Nothing, Flag::Command(Cmd::GetLaddr)),
    spec(Some('h'), "help", Takes::Nothing, Flag::Command(Cmd::Help)),
    spec(None, "help-ipvsadm", Takes::Nothing, Flag::Command(Cmd::Help)),
    spec(Some('v'), "version", Takes::Nothing, Flag::Command(Cmd::Version)),
    spec(Some('t'), "tcp-service", Takes::Value, Flag::Tcp),
    spec(Some('u'), "udp-service", Takes::Value, Flag::Udp),
    spec(Some('s'), "scheduler", Takes::Value, Flag::Scheduler),
    spec(Some('p'), "persistent", Takes::OptionalValue, Flag::Persistent),
    spec(Some('M'), "netmask", Takes::Value, Flag::Netmask),
    spec(Some('r'), "real-server", Takes::Value, Flag::Real),
    spec(Some('m'), "masquerading", Takes::Nothing, Flag::Masquerading),
    spec(Some('b'), "fullnat", Takes::Nothing, Flag::FullNat),
    spec(Some('w'), "weight", Takes::Value, Flag::Weight),
    spec(Some('n'), "numeric", Takes::Nothing, Flag::Numeric),
    spec(Some('c'), "connection", Takes::Nothing, Flag::Connection),
    spec(None, "timeout", Takes::Nothing, Flag::Timeout),
    spec(None, "stats", Takes::Nothing, Flag::Stats),
    spec(None, "rate", Takes::Nothing, Flag::Rate),
    spec(Some('X'), "exact", Takes::Nothing, Flag::Exact),
    spec(None, "nosort", Takes::Nothing, Flag::NoSort),
    spec(None, "sort", Takes::Nothing, Flag::Sort),
    spec(None, "sched-flags", Takes::Value, Flag::SchedFlags),
    spec(None, "synproxy", Takes::Value, Flag::SynProxy),
    spec(None, "client-address", Takes::Value, Flag::ClientAddress),
    spec(Some('z'), "laddr", Takes::Value, Flag::Laddr),
    spec(None, "json", Takes::Nothing, Flag::Json),
    spec(None, "check", Takes::Value, Flag::Check(Opt::Check)),
    spec(None, "check-path", Takes::Value, Flag::Check(Opt::CheckPath)),
    spec(None, "check-expect", Takes::Value, Flag::Check(Opt::CheckExpect)),
    spec(None, "check-interval", Takes::Value, Flag::Check(Opt::CheckInterval)),
    spec(None, "check-timeout", Takes::Value, Flag::Check(Opt::CheckTimeout)),
    spec(None, "check-rise", Takes::Value, Flag::Check(Opt::CheckRise)),
    spec(None, "check-fall", Takes::Value, Flag::Check(Opt::CheckFall)),
    spec(None, "check-port", Takes::Value, Flag::Check(Opt::CheckPort)),
];

/// ipvsadm flags sluice knows but does not do, and why.
#[rustfmt::skip]
const UNSUPPORTED: &[(Option<char>, &str, &str)] = &[
    (Some('g'), "gatewaying", "direct routing is not supported by sluice: use -m (NAT) or -b (FULLNAT)"),
    (Some('i'), "ipip", "tunnelling is not supported by sluice: use -m (NAT) or -b (FULLNAT)"),
    (Some('f'), "fwmark-service", "firewall-mark services are not supported by sluice"),
    (Some('6'), "ipv6", "IPv6 is not supported by sluice"),
    (Some('x'), "u-threshold", "connection thresholds are not supported by sluice"),
    (Some('y'), "l-threshold", "connection thresholds are not supported by sluice"),
    (None, "thresholds", "connection thresholds are not supported by sluice"),
    (Some('o'), "ops", "one-packet scheduling is not supported by sluice"),
    (None, "pe", "persistence engines are not supported by sluice"),
    (None, "persistent-conn", "persistence templates are not listed by sluice"),
    (None, "start-daemon", "the connection sync daemon is not supported by sluice"),
    (None, "stop-daemon", "the connection sync daemon is not supported by sluice"),
    (None, "daemon", "the connection sync daemon is not supported by sluice"),
    (None, "mcast-interface", "the connection sync daemon is not supported by sluice"),
    (None, "syncid", "the connection sync daemon is not supported by sluice"),
];

/// One flag as given, with its value.
#[derive(Debug, Clone)]
struct Given {
    flag: Flag,
    /// As typed (`-t`, `--tcp-service`), for messages.
    spelling: String,
    value: Option<String>,
}

/// Parses `sluice ctl` arguments (what follows `--socket PATH`).
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let Some(first) = args.first() else {
        return Ok(Command::Help);
    };
    if verbs::is_verb(first) {
        return verbs::parse(args);
    }
    let (given, positional) = tokenize(args)?;
    build(&given, &positional)
}

fn unsupported(spelling: &str, why: &str) -> UsageError {
    UsageError::new(format!("{spelling}: {why}"))
}

/// Splits the arguments into flags (with their values) and plain words,
/// as popt does for ipvsadm: grouped short flags (`-Ln`), values attached
/// (`-w3`, `--weight=3`) or in the next word.
fn tokenize(args: &[String]) -> Result<(Vec<Given>, Vec<String>), UsageError> {
    let mut given = Vec::new();
    let mut positional = Vec::new();
    let mut only_words = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if only_words || arg == "-" || !arg.starts_with('-') {
            positional.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_words = true;
            continue;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let spelling = format!("--{name}");
            let Some(spec) = SPECS.iter().find(|s| s.long == name) else {
                if let Some((_, _, why)) = UNSUPPORTED.iter().find(|u| u.1 == name) {
                    return Err(unsupported(&spelling, why));
                }
                return Err(UsageError::new(format!("unknown option `{spelling}'")));
            };
            if spec.takes == Takes::Nothing && inline.is_some() {
                return Err(UsageError::new(format!(
                    "option `{spelling}' takes no value"
                )));
            }
            let value = take_value(spec, inline, args, &mut i, &spelling)?;
            given.push(Given {
                flag: spec.flag,
                spelling,
                value,
            });
            continue;
        }
        // A group of short flags; one that takes a value ends the group.
        let chars: Vec<char> = arg.chars().skip(1).collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            k += 1;
            let spelling = format!("-{c}");
            let Some(spec) = SPECS.iter().find(|s| s.short == Some(c)) else {
                if let Some((_, _, why)) = UNSUPPORTED.iter().find(|u| u.0 == Some(c)) {
                    return Err(unsupported(&spelling, why));
                }
                return Err(UsageError::new(format!("unknown option `{spelling}'")));
            };
            let value = if spec.takes == Takes::Nothing {
                None
            } else {
                let rest: String = chars[k..].iter().collect();
                k = chars.len();
                let inline = (!rest.is_empty()).then_some(rest);
                take_value(spec, inline, args, &mut i, &spelling)?
            };
            given.push(Given {
                flag: spec.flag,
                spelling,
                value,
            });
        }
    }
    Ok((given, positional))
}

fn take_value(
    spec: &Spec,
    inline: Option<String>,
    args: &[String],
    next: &mut usize,
    spelling: &str,
) -> Result<Option<String>, UsageError> {
    if spec.takes == Takes::Nothing {
        return Ok(None);
    }
    if inline.is_some() {
        return Ok(inline);
    }
    let word = args
        .get(*next)
        .filter(|w| w.as_str() == "-" || !w.starts_with('-'));
    match (word, spec.takes) {
        (Some(w), _) => {
            *next += 1;
            Ok(Some(w.clone()))
        }
        (None, Takes::OptionalValue) => Ok(None),
        (None, _) => Err(UsageError::new(format!(
            "option `{spelling}' needs a value"
        ))),
    }
}

/// The options given, at most one of each.
#[derive(Default)]
struct Options {
    given: Vec<(Opt, Given)>,
}

impl Options {
    fn get(&self, opt: Opt) -> Option<&Given> {
        self.given.iter().find(|(o, _)| *o == opt).map(|(_, g)| g)
    }

    fn has(&self, opt: Opt) -> bool {
        self.get(opt).is_some()
    }

    fn value(&self, opt: Opt) -> Option<&str> {
        self.get(opt).and_then(|g| g.value.as_deref())
    }
}

fn build(given: &[Given], positional: &[String]) -> Result<Command, UsageError> {
    let mut command: Option<Cmd> = None;
    let mut options = Options::default();
    for g in given {
        match (g.flag, g.flag.option()) {
            (Flag::Command(cmd), _) => {
                if command.is_some() {
                    return Err(UsageError::new("multiple commands specified"));
                }
                command = Some(cmd);
            }
            (_, Some(opt)) => {
                if options.has(opt) {
                    return Err(UsageError::new(format!(
                        "multiple '{}' options specified",
                        opt.name()
                    )));
                }
                options.given.push((opt, g.clone()));
            }
            (_, None) => {}
        }
    }
    let Some(cmd) = command else {
        return Err(UsageError::new(
            "no command specified (e.g. -A, -a, -L, -S); try `sluice ctl --help'",
        ));
    };
    match cmd {
        Cmd::Help => return Ok(Command::Help),
        Cmd::Version => return Ok(Command::Version),
        _ => {}
    }
    let (required, optional) = cmd.options();
    for (opt, _) in &options.given {
        if !required.contains(opt) && !optional.contains(opt) {
            return Err(UsageError::new(format!(
                "Illegal '{}' option with the '{}' command",
                opt.name(),
                cmd.name()
            )));
        }
    }
    for opt in required {
        if !options.has(*opt) {
            return Err(UsageError::new(format!(
                "You need to supply the '{}' option for the '{}' command",
                opt.name(),
                cmd.name()
            )));
        }
    }
    if cmd != Cmd::Set {
        if let Some(word) = positional.first() {
            return Err(UsageError::new(format!("unexpected argument {word}")));
        }
    }

    let service = options.get(Opt::Service).map(service_key).transpose()?;
    let need_service = || service.ok_or_else(|| UsageError::new("a service-address is required"));
    let edit = |change| Ok(Command::Edit(Edit::new(change)));
    match cmd {
        Cmd::AddService => edit(Change::AddService {
            key: need_service()?,
            options: service_options(&options)?,
        }),
        Cmd::EditService => edit(Change::EditService {
            key: need_service()?,
            options: service_options(&options)?,
        }),
        Cmd::DeleteService => edit(Change::DeleteService {
            key: need_service()?,
        }),
        Cmd::Clear => edit(Change::Clear),
        Cmd::AddServer | Cmd::EditServer => {
            let key = need_service()?;
            let addr = real_addr(options.value(Opt::RealServer), key)?;
            let weight = options
                .value(Opt::Weight)
                .map(weight)
                .transpose()?
                .unwrap_or(1);
            let mode = options.get(Opt::Forward).map(|g| match g.flag {
                Flag::FullNat => ForwardMode::FullNat,
                _ => ForwardMode::Nat,
            });
            let check_port = options
                .value(Opt::CheckPort)
                .map(|p| {
                    port_number(p).filter(|&n| n != 0).ok_or_else(|| {
                        UsageError::new(format!(
                            "illegal check port specified: `{p}' (--check-port takes 1 to 65535)"
                        ))
                    })
                })
                .transpose()?;
            let real = RealSpec {
                addr,
                weight,
                mode: mode.unwrap_or(ForwardMode::Nat),
                check_port,
            };
            let change = if cmd == Cmd::AddServer {
                Change::AddReal { key, real }
            } else {
                Change::EditReal { key, real }
            };
            Ok(Command::Edit(Edit {
                change,
                follows_service: mode.is_none(),
            }))
        }
        Cmd::DeleteServer => {
            let key = need_service()?;
            edit(Change::DeleteReal {
                key,
                addr: real_addr(options.value(Opt::RealServer), key)?,
            })
        }
        Cmd::AddLaddr | Cmd::DelLaddr => {
            let key = need_service()?;
            let addr = laddr(options.value(Opt::LocalAddress))?;
            edit(if cmd == Cmd::AddLaddr {
                Change::AddLaddr { key, addr }
            } else {
                Change::DeleteLaddr { key, addr }
            })
        }
        Cmd::GetLaddr => Ok(Command::GetLaddr {
            service,
            json: options.has(Opt::Json),
        }),
        Cmd::Zero => Ok(Command::Zero { service }),
        Cmd::Save => Ok(Command::Save),
        Cmd::Restore => Ok(Command::Restore),
        Cmd::List => list(&options, service),
        Cmd::Set => {
            let [tcp, tcp_fin, udp] = positional else {
                return Err(UsageError::new("--set option requires 3 timeout values"));
            };
            edit(Change::SetTimeouts {
                tcp: timeout(tcp, 0)?,
                tcp_fin: timeout(tcp_fin, 0)?,
                udp: timeout(udp, 0)?,
            })
        }
        Cmd::Help => Ok(Command::Help),
        Cmd::Version => Ok(Command::Version),
    }
}

fn list(options: &Options, service: Option<ServiceKey>) -> Result<Command, UsageError> {
    // At most one view; ipvsadm's "options conflicts in the list command".
    let views = [
        (Opt::Connection, ListView::Connections),
        (Opt::Timeout, ListView::Timeouts),
        (Opt::Stats, ListView::Stats),
        (Opt::Rate, ListView::Rate),
    ];
    let mut chosen: Option<(Opt, ListView)> = None;
    for (opt, view) in views {
        if options.has(opt) {
            if let Some((first, _)) = chosen {
                return Err(UsageError::new(format!(
                    "The option '{}' conflicts with the '{}' option in the 'list' command",
                    opt.name(),
                    first.name()
                )));
            }
            chosen = Some((opt, view));
        }
    }
    let view = chosen.map_or(ListView::Services, |(_, v)| v);
    if view == ListView::Timeouts && service.is_some() {
        return Err(UsageError::new(
            "The option 'service-address' conflicts with the 'timeout' option in the 'list' command",
        ));
    }
    Ok(Command::List(List {
        service,
        view,
        exact: options.has(Opt::Exact),
        sort: !options.has(Opt::NoSort),
        json: options.has(Opt::Json),
    }))
}

fn service_options(options: &Options) -> Result<ServiceOptions, UsageError> {
    let scheduler = match options.value(Opt::Scheduler) {
        Some(s) => s
            .parse::<SchedulerKind>()
            .map_err(|e| UsageError::new(format!("-s: {e}")))?,
        None => DEFAULT_SCHEDULER,
    };
    let flags = match options.value(Opt::SchedFlags) {
        Some(text) => SchedFlags::parse(scheduler, text)
            .map_err(|e| UsageError::new(format!("--sched-flags: {e}")))?,
        None => SchedFlags::default(),
    };
    // -M alone is accepted and has no effect, as in ipvsadm: the mask is
    // the granularity of persistence.
    let persistence = match options.get(Opt::Persistent) {
        Some(p) => Some(Persistence {
            timeout: match &p.value {
                Some(t) => timeout(t, 1)?,
                None => DEFAULT_PERSISTENCE,
            },
            netmask: options
                .value(Opt::Netmask)
                .map(netmask)
                .transpose()?
                .unwrap_or(Ipv4Addr::BROADCAST),
        }),
        None => {
            if let Some(m) = options.value(Opt::Netmask) {
                netmask(m)?;
            }
            None
        }
    };
    let synproxy = match options.value(Opt::SynProxy) {
        Some(text) => text
            .parse::<SynProxyMode>()
            .map_err(|e| UsageError::new(format!("--synproxy: {e}")))?,
        None => SynProxyMode::default(),
    };
    let client_address = match options.value(Opt::ClientAddress) {
        Some(text) => text
            .parse::<ClientAddressMode>()
            .map_err(|e| UsageError::new(format!("--client-address: {e}")))?,
        None => ClientAddressMode::default(),
    };
    Ok(ServiceOptions {
        scheduler,
        flags,
        persistence,
        synproxy,
        check: check_options(options)?,
        client_address,
    })
}

/// `--check TYPE` and its settings; what is not given takes its default
/// (as every `-E` option does). Settings without a check, or HTTP's
/// without `--check http`, are refused: they would do nothing.
fn check_options(options: &Options) -> Result<CheckSpec, UsageError> {
    let kind = match options.value(Opt::Check) {
        Some(text) => text
            .parse::<CheckType>()
            .map_err(|e| UsageError::new(format!("--check: {e}")))?,
        None => CheckType::None,
    };
    let settings = [
        Opt::CheckPath,
        Opt::CheckExpect,
        Opt::CheckInterval,
        Opt::CheckTimeout,
        Opt::CheckRise,
        Opt::CheckFall,
    ];
    for opt in settings {
        let http_only = matches!(opt, Opt::CheckPath | Opt::CheckExpect);
        let fits = match kind {
            CheckType::None => false,
            CheckType::Tcp => !http_only,
            CheckType::Http => true,
        };
        if options.has(opt) && !fits {
            return Err(UsageError::new(format!(
                "--{}: only with --check {}",
                opt.name(),
                if http_only { "http" } else { "tcp or http" }
            )));
        }
    }
    let kind = match kind {
        CheckType::None => return Ok(CheckSpec::default()),
        CheckType::Tcp => CheckKind::Tcp,
        CheckType::Http => CheckKind::Http {
            path: options
                .value(Opt::CheckPath)
                .unwrap_or(check::DEFAULT_PATH)
                .to_string(),
            expect: options
                .value(Opt::CheckExpect)
                .map(|t| {
                    t.parse::<u16>().map_err(|_| {
                        UsageError::new(format!(
                            "illegal check status `{t}' (--check-expect takes an HTTP status, e.g. 200)"
                        ))
                    })
                })
                .transpose()?
                .unwrap_or(check::DEFAULT_EXPECT),
        },
    };
    let d = CheckSpec::default();
    let secs = |opt: Opt, default: u32| -> Result<u32, UsageError> {
        match options.value(opt) {
            None => Ok(default),
            Some(t) => t
                .parse::<f64>()
                .ok()
                .and_then(check::secs_to_ms)
                .ok_or_else(|| {
                    UsageError::new(format!(
                        "illegal {} `{t}' (--{} takes seconds, e.g. 1 or 0.5)",
                        opt.name().replace('-', " "),
                        opt.name()
                    ))
                }),
        }
    };
    let count = |opt: Opt, default: u32| -> Result<u32, UsageError> {
        match options.value(opt) {
            None => Ok(default),
            Some(t) => t.parse::<u32>().map_err(|_| {
                UsageError::new(format!(
                    "illegal {} `{t}' (--{} takes a number of checks)",
                    opt.name().replace('-', " "),
                    opt.name()
                ))
            }),
        }
    };
    Ok(CheckSpec {
        kind,
        interval_ms: secs(Opt::CheckInterval, d.interval_ms)?,
        timeout_ms: secs(Opt::CheckTimeout, d.timeout_ms)?,
        rise: count(Opt::CheckRise, d.rise)?,
        fall: count(Opt::CheckFall, d.fall)?,
    })
}

/// `ADDR[:PORT]`, numeric only; `None` if it is not that.
fn addr_port(text: &str) -> Option<(Ipv4Addr, Option<u16>)> {
    match text.rsplit_once(':') {
        Some((addr, port)) => {
            let port = port_number(port)?;
            Some((addr.parse().ok()?, Some(port)))
        }
        None => Some((text.parse().ok()?, None)),
    }
}

/// A port as ipvsadm reads it: decimal digits, 0 to 65535.
fn port_number(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn service_key(g: &Given) -> Result<ServiceKey, UsageError> {
    let proto = if g.flag == Flag::Udp {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    let text = g.value.as_deref().unwrap_or("");
    let bad = || {
        UsageError::new(format!(
            "illegal virtual server address[:port] specified: `{text}' ({})",
            g.spelling
        ))
    };
    match addr_port(text).ok_or_else(bad)? {
        (addr, Some(port)) => Ok(ServiceKey {
            proto,
            vip: SocketAddrV4::new(addr, port),
        }),
        (_, None) => Err(UsageError::new(format!(
            "{}: `{text}' has no port; sluice services are VIP:PORT (port-0 services are not supported)",
            g.spelling
        ))),
    }
}

/// `-r RIP[:PORT]`; without a port, the service's (as ipvsadm).
fn real_addr(text: Option<&str>, key: ServiceKey) -> Result<SocketAddrV4, UsageError> {
    let text = text.unwrap_or("");
    match addr_port(text) {
        Some((addr, port)) => Ok(SocketAddrV4::new(addr, port.unwrap_or(key.vip.port()))),
        None => Err(UsageError::new(format!(
            "illegal real server address[:port] specified: `{text}' (-r)"
        ))),
    }
}

fn laddr(text: Option<&str>) -> Result<Ipv4Addr, UsageError> {
    let text = text.unwrap_or("");
    text.parse()
        .map_err(|_| UsageError::new(format!("illegal local address `{text}' (-z)")))
}

fn weight(text: &str) -> Result<u32, UsageError> {
    text.parse::<u32>()
        .ok()
        .filter(|w| *w <= crate::control::state::MAX_WEIGHT)
        .ok_or_else(|| {
            UsageError::new(format!(
                "illegal weight specified: `{text}' (-w takes 0 to {})",
                crate::control::state::MAX_WEIGHT
            ))
        })
}

/// Seconds from `min` to 31 days, as ipvsadm's `parse_timeout`.
fn timeout(text: &str, min: u32) -> Result<u32, UsageError> {
    text.parse::<u32>()
        .ok()
        .filter(|t| (min..=MAX_TIMEOUT).contains(t))
        .ok_or_else(|| {
            UsageError::new(format!(
                "invalid timeout value `{text}' specified (seconds, {min} to {MAX_TIMEOUT})"
            ))
        })
}

fn netmask(text: &str) -> Result<Ipv4Addr, UsageError> {
    let mask: Ipv4Addr = text.parse().map_err(|_| bad_netmask(text))?;
    let bits = u32::from(mask);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(bad_netmask(text));
    }
    Ok(mask)
}

fn bad_netmask(text: &str) -> UsageError {
    UsageError::new(format!(
        "illegal virtual server persistent mask specified: `{text}' (-M takes a netmask, e.g. 255.255.255.0)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Command, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    fn ok(line: &str) -> Command {
        match parse_line(line) {
            Ok(c) => c,
            Err(e) => panic!("{line}: {e}"),
        }
    }

    fn err(line: &str) -> String {
        match parse_line(line) {
            Ok(c) => panic!("{line}: parsed as {c:?}"),
            Err(e) => e.0,
        }
    }

    fn key(proto: Proto, vip: &str) -> ServiceKey {
        ServiceKey {
            proto,
            vip: vip.parse().unwrap(),
        }
    }

    fn change(line: &str) -> Change {
        match ok(line) {
            Command::Edit(e) => {
                assert!(!e.follows_service, "{line}");
                e.change
            }
            c => panic!("{line}: {c:?}"),
        }
    }

    #[test]
    fn services_take_ipvsadm_defaults() {
        let k = key(Proto::Tcp, "10.10.0.100:80");
        assert_eq!(
            change("-A -t 10.10.0.100:80"),
            Change::AddService {
                key: k,
                options: ServiceOptions {
                    scheduler: SchedulerKind::Wlc,
                    flags: SchedFlags::default(),
                    persistence: None,
                    synproxy: SynProxyMode::Auto,
                    check: Default::default(),
                    client_address: Default::default(),
                },
            }
        );
        let persistent = |timeout, netmask: &str| {
            Some(Persistence {
                timeout,
                netmask: netmask.parse().unwrap(),
            })
        };
        match change("-A -t 10.10.0.100:80 -s wrr -p") {
            Change::AddService { options, .. } => {
                assert_eq!(options.scheduler, SchedulerKind::Wrr);
                assert_eq!(options.persistence, persistent(300, "255.255.255.255"));
            }
            c => panic!("{c:?}"),
        }
        // -p followed by another option takes the default; with a value, it.
        match change("--add-service --udp-service=10.10.0.100:53 -p -M 255.255.255.0 -s rr") {
            Change::AddService { key, options } => {
                assert_eq!(key, self::key(Proto::Udp, "10.10.0.100:53"));
                assert_eq!(options.persistence, persistent(300, "255.255.255.0"));
            }
            c => panic!("{c:?}"),
        }
        match change("-E -t 10.10.0.100:80 -p 600 -s sh --sched-flags sh-port,sh-fallback") {
            Change::EditService { options, .. } => {
                assert_eq!(options.persistence, persistent(600, "255.255.255.255"));
                assert_eq!(options.scheduler, SchedulerKind::Sh);
                assert!(options.flags.port && options.flags.fallback);
            }
            c => panic!("{c:?}"),
        }
        // -E replaces: nothing given is wlc, not persistent.
        assert_eq!(
            change("-E -t 10.10.0.100:80"),
            Change::EditService {
                key: k,
                options: ServiceOptions {
                    scheduler: SchedulerKind::Wlc,
                    flags: SchedFlags::default(),
                    persistence: None,
                    synproxy: SynProxyMode::Auto,
                    check: Default::default(),
                    client_address: Default::default(),
                },
            }
        );
        match change("-At10.10.0.100:80 -p600") {
            Change::AddService { options, .. } => {
                assert_eq!(options.persistence, persistent(600, "255.255.255.255"));
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(
            change("-D -t 10.10.0.100:80"),
            Change::DeleteService { key: k }
        );
        assert_eq!(
            change("--delete-service -t 10.10.0.100:80"),
            Change::DeleteService { key: k }
        );
        assert_eq!(change("-C"), Change::Clear);
        assert_eq!(change("--clear"), Change::Clear);
    }

    #[test]
    fn reals_default_port_weight_and_mode() {
        let k = key(Proto::Tcp, "10.10.0.100:80");
        match ok("-a -t 10.10.0.100:80 -r 192.168.10.2") {
            Command::Edit(e) => {
                assert!(e.follows_service);
                assert_eq!(e.service(), Some(k));
                assert_eq!(
                    e.resolve(ForwardMode::FullNat),
                    Change::AddReal {
                        key: k,
                        real: RealSpec {
                            addr: "192.168.10.2:80".parse().unwrap(),
                            weight: 1,
                            mode: ForwardMode::FullNat,
                            check_port: None,
                        },
                    }
                );
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(
            change("-a -t 10.10.0.100:80 -r 192.168.10.2:8080 -m -w 3"),
            Change::AddReal {
                key: k,
                real: RealSpec {
                    addr: "192.168.10.2:8080".parse().unwrap(),
                    weight: 3,
                    mode: ForwardMode::Nat,
                    check_port: None,
                },
            }
        );
        assert_eq!(
            change("--edit-server --tcp-service 10.10.0.100:80 --real-server 192.168.10.2:8080 --fullnat --weight=0"),
            Change::EditReal {
                key: k,
                real: RealSpec {
                    addr: "192.168.10.2:8080".parse().unwrap(),
                    weight: 0,
                    mode: ForwardMode::FullNat,
                    check_port: None,
                },
            }
        );
        assert_eq!(
            change("-d -t 10.10.0.100:80 -r 192.168.10.2"),
            Change::DeleteReal {
                key: k,
                addr: "192.168.10.2:80".parse().unwrap(),
            }
        );
        // Resolving never touches a real whose mode was given.
        match ok("-a -t 10.10.0.100:80 -r 192.168.10.2 -m") {
            Command::Edit(e) => match e.resolve(ForwardMode::FullNat) {
                Change::AddReal { real, .. } => assert_eq!(real.mode, ForwardMode::Nat),
                c => panic!("{c:?}"),
            },
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn laddrs_timeouts_and_zero() {
        let k = key(Proto::Tcp, "10.10.0.100:80");
        assert_eq!(
            change("--add-laddr -z 192.168.10.100 -t 10.10.0.100:80"),
            Change::AddLaddr {
                key: k,
                addr: "192.168.10.100".parse().unwrap(),
            }
        );
        assert_eq!(
            change("--del-laddr -t 10.10.0.100:80 --laddr 192.168.10.100"),
            Change::DeleteLaddr {
                key: k,
                addr: "192.168.10.100".parse().unwrap(),
            }
        );
        assert_eq!(
            ok("--get-laddr"),
            Command::GetLaddr {
                service: None,
                json: false
            }
        );
        assert_eq!(
            ok("--get-laddr -t 10.10.0.100:80 --json"),
            Command::GetLaddr {
                service: Some(k),
                json: true
            }
        );
        assert_eq!(
            change("--set 900 120 300"),
            Change::SetTimeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300
            }
        );
        assert_eq!(ok("-Z"), Command::Zero { service: None });
        assert_eq!(
            ok("--zero -u 10.10.0.100:53"),
            Command::Zero {
                service: Some(key(Proto::Udp, "10.10.0.100:53"))
            }
        );
        assert_eq!(ok("-S -n"), Command::Save);
        assert_eq!(ok("--save"), Command::Save);
        assert_eq!(ok("-R"), Command::Restore);
        assert_eq!(ok("-h"), Command::Help);
        assert_eq!(ok("--help"), Command::Help);
        assert_eq!(ok("--help-ipvsadm"), Command::Help);
        assert_eq!(ok("-v"), Command::Version);
        assert_eq!(parse(&[]), Ok(Command::Help));
    }

    #[test]
    fn list_views_and_their_options() {
        let list = |line| match ok(line) {
            Command::List(l) => l,
            c => panic!("{line}: {c:?}"),
        };
        let l = list("-L -n");
        assert_eq!(
            l,
            List {
                service: None,
                view: ListView::Services,
                exact: false,
                sort: true,
                json: false
            }
        );
        assert_eq!(list("-Ln").view, ListView::Services);
        assert_eq!(list("-l").view, ListView::Services);
        assert_eq!(list("--list --numeric").view, ListView::Services);
        assert_eq!(list("-Ln --stats").view, ListView::Stats);
        let l = list("-L --rate --exact -n --nosort --sort");
        assert_eq!((l.view, l.exact, l.sort), (ListView::Rate, true, false));
        assert_eq!(list("-Lnc").view, ListView::Connections);
        assert_eq!(list("-L --timeout").view, ListView::Timeouts);
        let l = list("-L -n -t 10.10.0.100:80 --json");
        assert_eq!(l.service, Some(key(Proto::Tcp, "10.10.0.100:80")));
        assert!(l.json);
        let l = list("-L -c -t 10.10.0.100:80");
        assert_eq!(l.view, ListView::Connections);
        assert!(l.service.is_some());
    }

    #[test]
    fn check_flags_on_services_and_reals() {
        let check_of = |line: &str| match change(line) {
            Change::AddService { options, .. } | Change::EditService { options, .. } => {
                options.check
            }
            c => panic!("{c:?}"),
        };
        assert_eq!(check_of("-A -t 10.10.0.100:80"), CheckSpec::default());
        assert_eq!(
            check_of("-A -t 10.10.0.100:80 --check http"),
            CheckSpec {
                kind: CheckKind::Http {
                    path: "/".into(),
                    expect: 200
                },
                ..CheckSpec::default()
            }
        );
        assert_eq!(
            check_of(
                "-E -t 10.10.0.100:80 -s rr --check http --check-path /healthz --check-expect 204 \
                 --check-interval 0.5 --check-timeout=0.25 --check-rise 3 --check-fall 4"
            ),
            CheckSpec {
                kind: CheckKind::Http {
                    path: "/healthz".into(),
                    expect: 204
                },
                interval_ms: 500,
                timeout_ms: 250,
                rise: 3,
                fall: 4,
            }
        );
        assert_eq!(
            check_of("-A -u 10.10.0.100:53 --check TCP --check-interval 2").kind,
            CheckKind::Tcp
        );
        assert_eq!(
            check_of("-A -t 10.10.0.100:80 --check none"),
            CheckSpec::default()
        );
        assert_eq!(
            change("-a -t 10.10.0.100:80 -r 192.168.10.2:8080 -m --check-port 9000"),
            Change::AddReal {
                key: key(Proto::Tcp, "10.10.0.100:80"),
                real: RealSpec {
                    addr: "192.168.10.2:8080".parse().unwrap(),
                    weight: 1,
                    mode: ForwardMode::Nat,
                    check_port: Some(9000),
                },
            }
        );
        // Settings that would do nothing, and bad values, are refused.
        assert_eq!(
            err("-A -t 10.10.0.100:80 --check-interval 1"),
            "--check-interval: only with --check tcp or http"
        );
        assert_eq!(
            err("-A -t 10.10.0.100:80 --check tcp --check-path /"),
            "--check-path: only with --check http"
        );
        assert!(err("-A -t 10.10.0.100:80 --check icmp").contains("unknown check type \"icmp\""));
        assert!(err("-A -t 10.10.0.100:80 --check http --check-expect ok").contains("`ok'"));
        assert!(
            err("-A -t 10.10.0.100:80 --check tcp --check-interval -1").contains("needs a value")
        );
        assert!(err("-A -t 10.10.0.100:80 --check tcp --check-timeout x").contains("`x'"));
        assert!(err("-A -t 10.10.0.100:80 --check tcp --check-rise 1.5").contains("`1.5'"));
        assert!(err("-a -t 10.10.0.100:80 -r 192.168.10.2 --check-port 0").contains("check port"));
        assert_eq!(
            err("-a -t 10.10.0.100:80 -r 192.168.10.2 --check tcp"),
            "Illegal 'check' option with the 'add-server' command"
        );
        assert_eq!(
            err("-A -t 10.10.0.100:80 --check-port 9000"),
            "Illegal 'check-port' option with the 'add-service' command"
        );
    }

    #[test]
    fn no_combination_of_words_panics() {
        let words = [
            "-A",
            "-a",
            "-t",
            "10.0.0.1:80",
            "-p",
            "-M",
            "255.0.0.0",
            "--set",
            "1",
            "-r",
            "-",
            "--",
            "-Lnc",
            "--json",
            "route",
            "neigh",
            "add",
            "=",
            "--weight=",
            "-w",
            "-zé",
            "--sched-flags",
            "sysctl",
        ];
        for a in words {
            for b in words {
                for c in words {
                    let args: Vec<String> = [a, b, c].iter().map(|w| w.to_string()).collect();
                    let _ = parse(&args);
                    let _ = parse(&args[1..]);
                }
            }
        }
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert_eq!(
            err("-A"),
            "You need to supply the 'service-address' option for the 'add-service' command"
        );
        assert_eq!(
            err("-a -t 10.10.0.100:80"),
            "You need to supply the 'real-server' option for the 'add-server' command"
        );
        assert_eq!(
            err("-A -t 10.10.0.100:80 -w 3"),
            "Illegal 'weight' option with the 'add-service' command"
        );
        assert_eq!(
            err("-S --json"),
            "Illegal 'json' option with the 'save' command"
        );
        assert_eq!(
            err("-A -D -t 10.10.0.100:80"),
            "multiple commands specified"
        );
        assert_eq!(
            err("-A -t 10.10.0.100:80 -s rr -s wrr"),
            "multiple 'scheduler' options specified"
        );
        assert_eq!(
            err("-a -t 10.10.0.100:80 -r 192.168.10.2 -m -b"),
            "multiple 'forwarding-method' options specified"
        );
        assert!(err("-A -t 10.10.0.100").contains("has no port"));
        assert!(err("-A -t vip.example.com:80").contains("`vip.example.com:80'"));
        assert!(err("-A -t 10.10.0.100:http").contains("illegal virtual server"));
        assert!(err("-A -t 10.10.0.100:70000").contains("illegal virtual server"));
        assert!(err("-A -t").contains("`-t' needs a value"));
        assert!(err("-A -t -s rr").contains("`-t' needs a value"));
        assert!(err("-a -t 10.10.0.100:80 -r 192.168.10.300").contains("illegal real server"));
        assert!(err("-a -t 10.10.0.100:80 -r 192.168.10.2 -w 65536").contains("illegal weight"));
        assert!(err("-a -t 10.10.0.100:80 -r 192.168.10.2 -w -1").contains("`-w' needs a value"));
        assert!(err("-a -t 10.10.0.100:80 -r 192.168.10.2 -w x").contains("`x'"));
        assert!(err("-A -t 10.10.0.100:80 -s fastest").contains("unknown scheduler \"fastest\""));
        assert!(err("-A -t 10.10.0.100:80 -s rr --sched-flags flag-1").contains("--sched-flags"));
        assert!(err("-A -t 10.10.0.100:80 -p 0").contains("invalid timeout value `0'"));
        assert!(err("-A -t 10.10.0.100:80 -p 99999999").contains("invalid timeout"));
        assert!(err("-A -t 10.10.0.100:80 -p -M 255.0.255.0").contains("persistent mask"));
        assert!(err("-A -t 10.10.0.100:80 -p -M 24").contains("`24'"));
        assert_eq!(err("--set 1 2"), "--set option requires 3 timeout values");
        assert!(err("--set 1 2 x").contains("`x'"));
        assert_eq!(err("-C now"), "unexpected argument now");
        assert_eq!(
            err("-L --stats --rate"),
            "The option 'rate' conflicts with the 'stats' option in the 'list' command"
        );
        assert!(err("-L -c --stats").contains("conflicts"));
        assert!(err("-L --timeout -t 10.10.0.100:80").contains("conflicts"));
        assert_eq!(err("-L --bogus"), "unknown option `--bogus'");
        assert_eq!(err("-Lq"), "unknown option `-q'");
        assert!(err("--stats=1 -L").contains("takes no value"));
        assert!(err("-a -t 10.10.0.100:80 -r 192.168.10.2 -g").contains("direct routing"));
        assert!(err("-a -t 10.10.0.100:80 -r 192.168.10.2 -i").contains("tunnelling"));
        assert!(err("-A -f 1").contains("firewall-mark"));
        assert!(err("--start-daemon master").contains("sync daemon"));
        assert!(err("-n").contains("no command"));
        assert!(err("--add-laddr -t 10.10.0.100:80 -z 192.168.10.100:5").contains("local address"));
        assert!(err("--add-laddr -t 10.10.0.100:80").contains("'local-address'"));
        // Nothing panics on odd input.
        for line in [
            "-",
            "--",
            "-- -A",
            "---",
            "-=",
            "--=",
            "-A -t :",
            "-A -t 1.2.3.4:",
            "-é",
            "-A -tü",
        ] {
            let _ = parse_line(line);
        }
    }
}
