//! `sluice ctl`: ipvsadm's verbs and flags, spoken to a running sluice over
//! its control socket, answered in ipvsadm's layouts.
//!
//! - `args`: ipvsadm's command line -> a `Command` (`verbs`: the dpip-style
//!   `route`, `neigh`, `reload`, `sysctl`, `counters`);
//! - here: a `Command` -> requests (`api::Request`) -> text;
//! - `print`: ipvsadm's tables from the server's views;
//! - `rules`: `-S` and `-R`;
//! - `usage`: `--help`.
//!
//! Exit codes as ipvsadm's: 0 done, 2 a bad command line, 1 anything else
//! (sluice unreachable, or it refused the request).

pub mod args;
pub mod print;
pub mod rules;
mod usage;
mod verbs;

use crate::control::api::{Answer, Request, Response, ServicesView};
use crate::control::server;
use crate::control::state::{Change, ServiceKey};
use args::{Command, List, ListView};
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::ExitCode;

/// The switches `sysctl` with no name shows (the server's known settings).
const SYSCTLS: [&str; 1] = ["expire_nodest_conn"];

/// Why a command did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A bad command line or `-R` rule: exit 2.
    Usage(String),
    /// sluice refused the request (`Response::Error`): exit 1.
    Refused(String),
    /// sluice could not be asked, or answered nonsense: exit 1.
    Unreachable(String),
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Usage(_) => ExitCode::from(2),
            Failure::Refused(_) | Failure::Unreachable(_) => ExitCode::from(1),
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Refused(m) | Failure::Unreachable(m) => m,
        }
    }
}

/// One request to sluice and its answer (`server::call` on the socket; a
/// fake in tests).
pub type Call<'a> = dyn FnMut(&Request) -> Result<Response, String> + 'a;

/// `sluice ctl [--socket PATH] ARGS...`.
pub fn run(socket: &Path, args: &[String]) -> ExitCode {
    let result = args::parse(args)
        .map_err(|e| Failure::Usage(e.0))
        .and_then(|command| {
            let mut call = |request: &Request| server::call(socket, request);
            execute(&command, &mut call, &mut io::stdin().lock())
        });
    match result {
        Ok(text) => {
            let mut stdout = io::stdout().lock();
            // A closed pipe (`sluice ctl -L | head -1`) is not worth a panic.
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(1),
            }
        }
        Err(failure) => {
            eprintln!("sluice ctl: {}", failure.message());
            failure.exit_code()
        }
    }
}

/// Does `command`: asks sluice through `call` (reading `-R` rules from
/// `stdin`) and returns what to print.
pub fn execute(
    command: &Command,
    call: &mut Call,
    stdin: &mut dyn Read,
) -> Result<String, Failure> {
    match command {
        Command::Help => Ok(usage::text()),
        Command::Version => Ok(usage::version()),
        Command::Edit(edit) => {
            let change = if edit.follows_service {
                // The service's mode as it stands; if it cannot be had, the
                // apply below says why.
                let current = edit
                    .service()
                    .and_then(|key| services(call, Some(key)).ok());
                rules::Modes::new(current.as_ref()).resolve(edit)
            } else {
                edit.change.clone()
            };
            apply(call, vec![change])?;
            Ok(String::new())
        }
        Command::List(list) => list_view(call, list),
        Command::GetLaddr { service, json } => {
            let answer = ask(call, &Request::Services { service: *service })?;
            match (&answer, json) {
                (_, true) => to_json(&answer),
                (Answer::Services(view), false) => Ok(print::laddrs(view, true)),
                _ => Err(unexpected(&answer)),
            }
        }
        Command::Zero { service } => match ask(call, &Request::Zero { service: *service })? {
            Answer::Done { .. } => Ok(String::new()),
            other => Err(unexpected(&other)),
        },
        Command::Save => {
            let view = services(call, None)?;
            match ask(call, &Request::Timeouts)? {
                Answer::Timeouts(t) => Ok(rules::save(&view, &t)),
                other => Err(unexpected(&other)),
            }
        }
        Command::Restore => restore(call, stdin),
        Command::Routes { json } => {
            let answer = ask(call, &Request::Routes)?;
            match (&answer, json) {
                (_, true) => to_json(&answer),
                (Answer::Routes { routes }, false) => Ok(print::routes(routes)),
                _ => Err(unexpected(&answer)),
            }
        }
        Command::Neighbours { json } => {
            let answer = ask(call, &Request::Neighbours)?;
            match (&answer, json) {
                (_, true) => to_json(&answer),
                (Answer::Neighbours { neighbours }, false) => Ok(print::neighbours(neighbours)),
                _ => Err(unexpected(&answer)),
            }
        }
        Command::Reload => match ask(call, &Request::Reload)? {
            Answer::Applied { .. } => Ok(String::new()),
            other => Err(unexpected(&other)),
        },
        Command::Sysctl { name, value, json } => {
            let names: Vec<&str> = match name {
                Some(n) => vec![n.as_str()],
                None => SYSCTLS.to_vec(),
            };
            let mut answers = Vec::new();
            for n in names {
                answers.push(ask(
                    call,
                    &Request::Sysctl {
                        name: n.to_string(),
                        value: *value,
                    },
                )?);
            }
            if *json {
                return match answers.as_slice() {
                    [one] => to_json(one),
                    many => to_json(&many),
                };
            }
            let mut out = String::new();
            for answer in &answers {
                match answer {
                    Answer::Sysctl { name, value } => out.push_str(&print::sysctl(name, *value)),
                    other => return Err(unexpected(other)),
                }
            }
            Ok(out)
        }
        Command::Counters { json } => {
            let answer = ask(call, &Request::Counters)?;
            match (&answer, json) {
                (_, true) => to_json(&answer),
                (Answer::Counters { counters }, false) => Ok(print::counters(counters)),
                _ => Err(unexpected(&answer)),
            }
        }
    }
}

fn list_view(call: &mut Call, list: &List) -> Result<String, Failure> {
    let request = match list.view {
        ListView::Services | ListView::Stats | ListView::Rate => Request::Services {
            service: list.service,
        },
        ListView::Timeouts => Request::Timeouts,
        ListView::Connections => Request::Connections {
            service: list.service,
        },
    };
    let answer = ask(call, &request)?;
    if list.json {
        return to_json(&answer);
    }
    match &answer {
        Answer::Services(view) => Ok(print::services(view, list)),
        Answer::Timeouts(t) => Ok(print::timeouts(t)),
        Answer::Connections { connections } => Ok(print::connections(connections)),
        _ => Err(unexpected(&answer)),
    }
}

/// `-R`: every rule from stdin as one batch.
fn restore(call: &mut Call, stdin: &mut dyn Read) -> Result<String, Failure> {
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .map_err(|e| Failure::Usage(format!("-R: cannot read the rules from stdin: {e}")))?;
    let rules = rules::parse(&text).map_err(|e| Failure::Usage(e.to_string()))?;
    if rules.is_empty() {
        return Ok(String::new());
    }
    let current = if rules::needs_modes(&rules) {
        Some(services(call, None)?)
    } else {
        None
    };
    let changes = rules::changes(&rules, current.as_ref());
    let lines: Vec<usize> = rules.iter().map(|r| r.line).collect();
    match apply(call, changes) {
        Err(Failure::Refused(e)) => Err(Failure::Refused(format!(
            "{} (nothing was applied)",
            rules::locate(&e, &lines)
        ))),
        other => other.map(|_| String::new()),
    }
}

fn apply(call: &mut Call, changes: Vec<Change>) -> Result<u64, Failure> {
    match ask(call, &Request::Apply { changes })? {
        Answer::Applied { epoch, .. } => Ok(epoch),
        other => Err(unexpected(&other)),
    }
}

fn services(call: &mut Call, service: Option<ServiceKey>) -> Result<ServicesView, Failure> {
    match ask(call, &Request::Services { service })? {
        Answer::Services(view) => Ok(view),
        other => Err(unexpected(&other)),
    }
}

fn ask(call: &mut Call, request: &Request) -> Result<Answer, Failure> {
    match call(request) {
        Ok(Response::Ok(answer)) => Ok(answer),
        Ok(Response::Error { error }) => Err(Failure::Refused(error)),
        Err(e) => Err(Failure::Unreachable(e)),
    }
}

fn unexpected(answer: &Answer) -> Failure {
    Failure::Unreachable(format!(
        "sluice answered something this client does not expect here: {}",
        serde_json::to_string(answer).unwrap_or_default()
    ))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map(|mut text| {
            text.push('\n');
            text
        })
        .map_err(|e| Failure::Unreachable(format!("cannot print the answer as JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::api::TimeoutsView;
    use crate::lb::service::ForwardMode;

    /// A fake sluice: answers from `reply`, remembers what it was asked.
    struct Fake {
        asked: Vec<Request>,
        reply: Box<Call<'static>>,
    }

    impl Fake {
        fn new(reply: impl FnMut(&Request) -> Result<Response, String> + 'static) -> Fake {
            Fake {
                asked: Vec::new(),
                reply: Box::new(reply),
            }
        }

        fn run(&mut self, line: &str, stdin: &str) -> Result<String, Failure> {
            let args: Vec<String> = line.split_whitespace().map(String::from).collect();
            let command = args::parse(&args).map_err(|e| Failure::Usage(e.0))?;
            let asked = &mut self.asked;
            let reply = &mut self.reply;
            let mut call = |r: &Request| {
                asked.push(r.clone());
                reply(r)
            };
            execute(&command, &mut call, &mut stdin.as_bytes())
        }
    }

    fn applied() -> Result<Response, String> {
        Ok(Response::Ok(Answer::Applied {
            applied: 1,
            epoch: 2,
        }))
    }

    fn sample() -> Response {
        Response::Ok(Answer::Services(print::tests::sample()))
    }

    #[test]
    fn a_real_without_a_mode_asks_for_its_service() {
        let mut fake = Fake::new(|r| match r {
            Request::Services { .. } => Ok(sample()),
            _ => applied(),
        });
        assert_eq!(
            fake.run("-a -t 10.10.0.101:443 -r 192.168.10.9", ""),
            Ok(String::new())
        );
        assert_eq!(fake.asked.len(), 2);
        match &fake.asked[1] {
            Request::Apply { changes } => match changes.as_slice() {
                [Change::AddReal { real, .. }] => {
                    assert_eq!(real.mode, ForwardMode::FullNat);
                    assert_eq!(real.addr, "192.168.10.9:443".parse().unwrap());
                }
                c => panic!("{c:?}"),
            },
            r => panic!("{r:?}"),
        }
        // With -m given, no question first.
        fake.asked.clear();
        fake.run("-a -t 10.10.0.101:443 -r 192.168.10.9 -m", "")
            .unwrap();
        assert_eq!(fake.asked.len(), 1);
        // An unknown service: NAT, and the server's refusal is the answer.
        let mut fake = Fake::new(|r| match r {
            Request::Services { .. } => Ok(Response::error("no service tcp 10.10.0.1:80")),
            _ => Ok(Response::error("no service tcp 10.10.0.1:80")),
        });
        assert_eq!(
            fake.run("-a -t 10.10.0.1:80 -r 192.168.10.9", ""),
            Err(Failure::Refused("no service tcp 10.10.0.1:80".into()))
        );
    }

    #[test]
    fn listings_print_tables_or_json() {
        let mut fake = Fake::new(|r| match r {
            Request::Services { .. } => Ok(sample()),
            Request::Timeouts => Ok(Response::Ok(Answer::Timeouts(TimeoutsView {
                tcp: 900,
                tcp_fin: 120,
                udp: 300,
            }))),
            Request::Connections { .. } => Ok(Response::Ok(Answer::Connections {
                connections: vec![],
            })),
            _ => Err("unexpected".into()),
        });
        let text = fake.run("-L -n", "").unwrap();
        assert!(
            text.starts_with("IP Virtual Server version 1.2.1 (size=262144) [sluice "),
            "{text}"
        );
        assert!(text.contains("TCP  10.10.0.100:80 wrr\n"), "{text}");
        let json = fake.run("-Ln --json", "").unwrap();
        let back: ServicesView = serde_json::from_str(&json).unwrap();
        assert_eq!(back, print::tests::sample());
        assert_eq!(
            fake.run("-L --timeout", "").unwrap(),
            "Timeout (tcp tcpfin udp): 900 120 300\n"
        );
        assert!(fake
            .run("-L --timeout --json", "")
            .unwrap()
            .contains("\"tcp_fin\": 120"));
        assert!(fake
            .run("-Lnc", "")
            .unwrap()
            .starts_with("IPVS connection entries\n"));
        assert!(fake
            .run("--get-laddr", "")
            .unwrap()
            .starts_with("VIP:VPORT"));
        let saved = fake.run("-S -n", "").unwrap();
        assert!(
            saved.contains("-A -t 10.10.0.101:443 -s mh --sched-flags mh-port -p 600\n"),
            "{saved}"
        );
        assert!(
            saved.contains("--add-laddr -z 192.168.10.101 -t 10.10.0.101:443\n"),
            "{saved}"
        );
    }

    #[test]
    fn restore_is_one_batch_and_errors_name_lines() {
        let mut fake = Fake::new(|r| match r {
            Request::Apply { changes } if changes.len() == 3 => Ok(Response::error(
                "change 2 of 3: no service tcp 10.10.0.100:81",
            )),
            Request::Apply { .. } => applied(),
            _ => Err("unexpected".into()),
        });
        let rules =
            "# comment\n-A -t 10.10.0.100:80 -s rr\n-a -t 10.10.0.100:80 -r 192.168.10.2 -m\n";
        assert_eq!(fake.run("-R", rules), Ok(String::new()));
        assert_eq!(fake.asked.len(), 1);
        let bad = "-C\n\n-a -t 10.10.0.100:81 -r 192.168.10.2 -m\n-A -t 10.10.0.100:80\n";
        assert_eq!(
            fake.run("-R", bad),
            Err(Failure::Refused(
                "line 3: no service tcp 10.10.0.100:81 (nothing was applied)".into()
            ))
        );
        // A rule that does not parse: nothing is sent.
        fake.asked.clear();
        assert_eq!(
            fake.run("-R", "-C\n-A -t 10.10.0.100\n"),
            Err(Failure::Usage(
                "line 2: -t: `10.10.0.100' has no port; sluice services are VIP:PORT (port-0 services are not supported)".into()
            ))
        );
        assert!(fake.asked.is_empty());
        assert_eq!(fake.run("-R", "\n# nothing\n"), Ok(String::new()));
        assert!(fake.asked.is_empty());
    }

    #[test]
    fn failures_and_their_exit_codes() {
        let mut fake =
            Fake::new(|_| Err("cannot reach sluice at /tmp/x.sock: No such file".into()));
        let e = fake.run("-L -n", "").unwrap_err();
        assert_eq!(
            e,
            Failure::Unreachable("cannot reach sluice at /tmp/x.sock: No such file".into())
        );
        assert_eq!(e.exit_code(), ExitCode::from(1));
        let mut fake = Fake::new(|_| Ok(Response::error("no service tcp 10.10.0.100:81")));
        let e = fake.run("-D -t 10.10.0.100:81", "").unwrap_err();
        assert_eq!(e, Failure::Refused("no service tcp 10.10.0.100:81".into()));
        assert_eq!(e.exit_code(), ExitCode::from(1));
        assert_eq!(Failure::Usage(String::new()).exit_code(), ExitCode::from(2));
        // An answer of the wrong kind is reported, not a panic.
        let mut fake = Fake::new(|_| applied());
        assert!(matches!(
            fake.run("-L -n", ""),
            Err(Failure::Unreachable(_))
        ));
        assert!(matches!(fake.run("-Z", ""), Err(Failure::Unreachable(_))));
    }

    #[test]
    fn verbs_beyond_ipvsadm() {
        let mut fake = Fake::new(|r| match r {
            Request::Sysctl { name, value } => Ok(Response::Ok(Answer::Sysctl {
                name: name.clone(),
                value: value.unwrap_or(0),
            })),
            Request::Counters => Ok(Response::Ok(Answer::Counters {
                counters: vec![("rx_packets".into(), 3)],
            })),
            Request::Reload => Ok(Response::Ok(Answer::Applied {
                applied: 0,
                epoch: 4,
            })),
            Request::Apply { .. } => applied(),
            _ => Err("unexpected".into()),
        });
        assert_eq!(
            fake.run("sysctl", ""),
            Ok("expire_nodest_conn = 0\n".into())
        );
        assert_eq!(
            fake.run("sysctl expire_nodest_conn 1", ""),
            Ok("expire_nodest_conn = 1\n".into())
        );
        assert!(fake
            .run("sysctl expire_nodest_conn --json", "")
            .unwrap()
            .contains("\"value\": 0"));
        assert_eq!(fake.run("counters", ""), Ok("rx_packets 3\n".into()));
        assert_eq!(fake.run("reload", ""), Ok(String::new()));
        assert_eq!(
            fake.run("route add 172.16.0.0/24 via 192.168.10.254", ""),
            Ok(String::new())
        );
        assert!(matches!(fake.asked.last(), Some(Request::Apply { .. })));
        assert!(fake
            .run("--help", "")
            .unwrap()
            .contains("-A|E -t|u service-address"));
    }
}
