//! The verbs beyond ipvsadm, in dpip's (and `ip`'s) style:
//! `route add PREFIX via GW`, `route del PREFIX`, `route show`,
//! `neigh add ADDR lladdr MAC [port N]`, `neigh del ADDR`, `neigh show`,
//! `reload`, `sysctl [NAME [VALUE]]`, `counters`. `--json` goes with the
//! ones that show something.

use super::args::{Command, Edit, UsageError};
use crate::control::state::{Change, RouteSpec};
use crate::net::cidr::Ipv4Cidr;
use crate::wire::EthernetAddress;
use std::net::Ipv4Addr;

const VERBS: [&str; 5] = ["route", "neigh", "reload", "sysctl", "counters"];

const ROUTE_USAGE: &str =
    "usage: route add PREFIX via GATEWAY | route del PREFIX | route show [--json]";
const NEIGH_USAGE: &str =
    "usage: neigh add ADDR lladdr MAC [port N] | neigh del ADDR | neigh show [--json]";

/// Whether `word` starts one of these verbs rather than ipvsadm flags.
pub fn is_verb(word: &str) -> bool {
    VERBS.contains(&word)
}

pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let json = args.iter().any(|a| a == "--json");
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--json")
        .collect();
    let command = match words.as_slice() {
        ["route"] | ["route", "show" | "list"] => return Ok(Command::Routes { json }),
        ["route", "add", prefix, "via", gateway] => Change::AddRoute {
            route: RouteSpec {
                prefix: cidr(prefix)?,
                via: addr(gateway, "route add: gateway")?,
            },
        },
        ["route", "del" | "delete", prefix] => Change::DeleteRoute {
            prefix: cidr(prefix)?,
        },
        ["route", ..] => return Err(UsageError::new(ROUTE_USAGE)),
        ["neigh"] | ["neigh", "show" | "list"] => return Ok(Command::Neighbours { json }),
        ["neigh", "add", address, rest @ ..] => neighbour(address, rest)?,
        ["neigh", "del" | "delete", address] => Change::DeleteNeighbour {
            addr: addr(address, "neigh del")?,
        },
        ["neigh", ..] => return Err(UsageError::new(NEIGH_USAGE)),
        ["reload"] => {
            return no_json(json, "reload").map(|()| Command::Reload);
        }
        ["sysctl"] => {
            return Ok(Command::Sysctl {
                name: None,
                value: None,
                json,
            })
        }
        ["sysctl", setting] => {
            // `sysctl name=value` as sysctl(8) writes it.
            let (name, value) = match setting.split_once('=') {
                Some((n, v)) => (n, Some(sysctl_value(v)?)),
                None => (*setting, None),
            };
            return Ok(Command::Sysctl {
                name: Some(name.to_string()),
                value,
                json,
            });
        }
        ["sysctl", name, value] => {
            return Ok(Command::Sysctl {
                name: Some(name.to_string()),
                value: Some(sysctl_value(value)?),
                json,
            })
        }
        ["sysctl", ..] => return Err(UsageError::new("usage: sysctl [NAME [VALUE]] [--json]")),
        ["counters"] => return Ok(Command::Counters { json }),
        ["counters", ..] => return Err(UsageError::new("usage: counters [--json]")),
        ["reload", ..] => return Err(UsageError::new("usage: reload")),
        _ => return Err(UsageError::new("unknown command; try `sluice ctl --help'")),
    };
    let verb = words.first().copied().unwrap_or("");
    no_json(json, verb)?;
    Ok(Command::Edit(Edit::new(command)))
}

fn no_json(json: bool, verb: &str) -> Result<(), UsageError> {
    if json {
        return Err(UsageError::new(format!(
            "{verb}: --json only goes with what shows something (show, counters, sysctl)"
        )));
    }
    Ok(())
}

/// `ADDR lladdr MAC [port N]`, the pairs in any order.
fn neighbour(address: &str, rest: &[&str]) -> Result<Change, UsageError> {
    let addr = addr(address, "neigh add")?;
    let mut mac = None;
    let mut port = None;
    for pair in rest.chunks(2) {
        match pair {
            ["lladdr", m] if mac.is_none() => {
                mac = Some(m.parse::<EthernetAddress>().map_err(|_| {
                    UsageError::new(format!("neigh add: `{m}' is not a MAC address (lladdr)"))
                })?);
            }
            ["port", p] if port.is_none() => {
                port = Some(p.parse::<u16>().map_err(|_| {
                    UsageError::new(format!("neigh add: `{p}' is not a port number (port)"))
                })?);
            }
            _ => return Err(UsageError::new(NEIGH_USAGE)),
        }
    }
    let mac = mac.ok_or_else(|| UsageError::new(NEIGH_USAGE))?;
    Ok(Change::AddNeighbour { addr, mac, port })
}

fn cidr(text: &str) -> Result<Ipv4Cidr, UsageError> {
    text.parse()
        .map_err(|e| UsageError::new(format!("route: {e}")))
}

fn addr(text: &str, what: &str) -> Result<Ipv4Addr, UsageError> {
    text.parse()
        .map_err(|_| UsageError::new(format!("{what}: `{text}' is not an IPv4 address")))
}

fn sysctl_value(text: &str) -> Result<u64, UsageError> {
    text.parse()
        .map_err(|_| UsageError::new(format!("sysctl: `{text}' is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> Result<Command, UsageError> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    fn change(line: &str) -> Change {
        match parse_line(line) {
            Ok(Command::Edit(e)) => e.change,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn routes() {
        assert_eq!(
            change("route add 172.16.0.0/24 via 192.168.10.254"),
            Change::AddRoute {
                route: RouteSpec {
                    prefix: "172.16.0.0/24".parse().unwrap(),
                    via: "192.168.10.254".parse().unwrap(),
                }
            }
        );
        assert_eq!(
            change("route del 172.16.0.0/24"),
            Change::DeleteRoute {
                prefix: "172.16.0.0/24".parse().unwrap()
            }
        );
        assert_eq!(
            parse_line("route show"),
            Ok(Command::Routes { json: false })
        );
        assert_eq!(
            parse_line("route --json"),
            Ok(Command::Routes { json: true })
        );
        assert!(parse_line("route add 172.16.0.0 via 1.2.3.4")
            .unwrap_err()
            .0
            .contains("172.16.0.0"));
        assert!(parse_line("route add 172.16.0.0/24 via x")
            .unwrap_err()
            .0
            .contains("`x'"));
        assert_eq!(
            parse_line("route add 172.16.0.0/24").unwrap_err().0,
            ROUTE_USAGE
        );
        assert!(parse_line("route del 172.16.0.0/24 --json").is_err());
    }

    #[test]
    fn neighbours() {
        let mac: EthernetAddress = "02:00:00:00:00:fe".parse().unwrap();
        let addr: Ipv4Addr = "192.168.10.254".parse().unwrap();
        assert_eq!(
            change("neigh add 192.168.10.254 lladdr 02:00:00:00:00:fe"),
            Change::AddNeighbour {
                addr,
                mac,
                port: None
            }
        );
        assert_eq!(
            change("neigh add 192.168.10.254 port 1 lladdr 02:00:00:00:00:fe"),
            Change::AddNeighbour {
                addr,
                mac,
                port: Some(1)
            }
        );
        assert_eq!(
            change("neigh del 192.168.10.254"),
            Change::DeleteNeighbour { addr }
        );
        assert_eq!(
            parse_line("neigh show --json"),
            Ok(Command::Neighbours { json: true })
        );
        assert!(parse_line("neigh add 192.168.10.254 lladdr zz")
            .unwrap_err()
            .0
            .contains("`zz'"));
        assert!(
            parse_line("neigh add 192.168.10.254 lladdr 02:00:00:00:00:fe port x")
                .unwrap_err()
                .0
                .contains("`x'")
        );
        assert_eq!(
            parse_line("neigh add 192.168.10.254").unwrap_err().0,
            NEIGH_USAGE
        );
        assert_eq!(
            parse_line("neigh add 192.168.10.254 lladdr 02:00:00:00:00:fe port")
                .unwrap_err()
                .0,
            NEIGH_USAGE
        );
    }

    #[test]
    fn the_rest() {
        assert_eq!(parse_line("reload"), Ok(Command::Reload));
        assert!(parse_line("reload --json").is_err());
        assert!(parse_line("reload now").is_err());
        assert_eq!(
            parse_line("sysctl"),
            Ok(Command::Sysctl {
                name: None,
                value: None,
                json: false
            })
        );
        assert_eq!(
            parse_line("sysctl expire_nodest_conn 1"),
            Ok(Command::Sysctl {
                name: Some("expire_nodest_conn".into()),
                value: Some(1),
                json: false
            })
        );
        assert_eq!(
            parse_line("sysctl expire_nodest_conn=0 --json"),
            Ok(Command::Sysctl {
                name: Some("expire_nodest_conn".into()),
                value: Some(0),
                json: true
            })
        );
        assert!(parse_line("sysctl expire_nodest_conn yes")
            .unwrap_err()
            .0
            .contains("`yes'"));
        assert_eq!(
            parse_line("counters --json"),
            Ok(Command::Counters { json: true })
        );
        assert!(parse_line("counters all").is_err());
    }
}
