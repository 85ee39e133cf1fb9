//! The `config` and `control` targets: the TOML loader, the control
//! protocol's requests, `sluice ctl`'s argument and `-R` rule parsing, and
//! the state changes they make.
//!
//! Invariants, beyond "no panic":
//! - a configuration that loads re-validates the same: its state's
//!   `to_changes()` applied to an empty state of the same interfaces gives
//!   the same state, and loading the same text again gives the same config;
//! - every state `State::apply` accepts holds together (its route table
//!   builds) and round-trips through `to_changes()` likewise; a change
//!   refused leaves the state as it was (`apply` takes `&self`; `apply_all`
//!   of a batch that fails at change i equals none of it);
//! - a request that parses survives its own JSON: serialized again (as
//!   `sluice ctl` sends it) it parses to the same request.

use crate::net::Reader;
use sluice::control::api::{self, Envelope, Request};
use sluice::control::config::Config;
use sluice::control::ctl::{args, rules};
use sluice::control::slots::RealSlots;
use sluice::control::state::{Change, State};
use sluice::dataplane::snapshot::{Inputs, PortFacts, Snapshot};
use sluice::wire::EthernetAddress;
use std::sync::OnceLock;

/// The configuration the control target's changes start from.
pub const BASE: &str = include_str!("../pipeline.toml");

fn base() -> &'static Config {
    static BASE_CONFIG: OnceLock<Config> = OnceLock::new();
    BASE_CONFIG.get_or_init(|| Config::parse("base.toml", BASE).expect("base config"))
}

/// Checks a state the validator or `apply` accepted.
pub fn check_state(state: &State, dataplane: &sluice::control::config::DataplaneConfig) {
    state
        .route_table()
        .unwrap_or_else(|e| panic!("an accepted state whose routes do not build: {e}"));
    let empty = State::new(state.interfaces().to_vec(), state.max_reals());
    let changes = state.to_changes();
    match empty.apply_all(&changes) {
        Ok(again) => assert_eq!(&again, state, "to_changes() does not rebuild the state"),
        Err((i, e)) => panic!(
            "to_changes() of an accepted state is refused at {i} ({:?}): {e}",
            changes[i]
        ),
    }
    // What the control plane then does with it: real server slots and a
    // snapshot for the workers (an error is fine, a panic is not).
    let mut slots = RealSlots::new(dataplane.max_reals);
    if slots.assign(state, 1).is_ok() {
        let ports = state
            .interfaces()
            .iter()
            .map(|i| i.port)
            .max()
            .map_or(0, |p| usize::from(p) + 1);
        if ports <= 64 {
            let facts: Vec<PortFacts> = (0..ports)
                .map(|p| PortFacts {
                    mac: EthernetAddress([0x02, 0, 0, 0, 0, p as u8]),
                    tx_checksum_offload: p % 2 == 1,
                    rx_partial_checksums: false,
                    kernel_twin: p % 2 == 0,
                })
                .collect();
            let _ = Snapshot::from_inputs(&Inputs {
                dataplane,
                synproxy: &Default::default(),
                state,
                slots: &slots,
                expire_nodest_conn: false,
                retired: &[],
                ports: &facts,
                workers: 2,
                epoch: 1,
            });
        }
    }
}

/// The `config` target: TOML text into the loader.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse("fuzz.toml", text) else {
        return;
    };
    check_state(&config.state, &config.dataplane);
    let again = Config::parse("fuzz.toml", text).expect("the same text parses twice");
    assert_eq!(again.state, config.state);
    assert_eq!(again.dataplane, config.dataplane);
    assert_eq!(again.synproxy, config.synproxy);
    assert_eq!(again.control, config.control);
    assert_eq!(again.kernel, config.kernel);
    assert_eq!(again.eal, config.eal);
    // What a reload compares.
    let _ = config.restart_only_difference(base());
}

/// Applies `changes` one by one to `state`, checking each accepted state;
/// then the batch as one, which must equal the one-by-one result up to the
/// first refusal.
fn apply_changes(state: &State, changes: &[Change]) -> State {
    let dataplane = &base().dataplane;
    let mut s = state.clone();
    let mut first_refused = None;
    for (i, c) in changes.iter().enumerate() {
        let before = s.clone();
        match s.apply(c) {
            Ok(next) => {
                check_state(&next, dataplane);
                s = next;
            }
            Err(_) => {
                assert_eq!(s, before);
                first_refused.get_or_insert(i);
            }
        }
    }
    match (state.apply_all(changes), first_refused) {
        (Ok(all), None) => assert_eq!(all, s, "a batch differs from its changes one by one"),
        (Err((i, _)), Some(j)) => assert_eq!(i, j, "a batch fails elsewhere than one by one"),
        (Ok(_), Some(j)) => panic!("a batch passed though its change {j} is refused"),
        (Err((i, e)), None) => panic!("a batch fails at {i} ({e}) though each change passes"),
    }
    s
}

/// Words the argument decoder picks from: `sluice ctl`'s flags and verbs,
/// and values of the base configuration (and some that are not).
const WORDS: &[&str] = &[
    "-A",
    "-E",
    "-D",
    "-C",
    "-a",
    "-e",
    "-d",
    "-t",
    "-u",
    "-s",
    "-r",
    "-w",
    "-m",
    "-b",
    "-p",
    "-M",
    "-L",
    "-l",
    "-n",
    "-c",
    "-S",
    "-R",
    "-Z",
    "--set",
    "--add-laddr",
    "--del-laddr",
    "--get-laddr",
    "-z",
    "--stats",
    "--rate",
    "--sched-flags",
    "--synproxy",
    "--json",
    "--tcp-service",
    "--udp-service",
    "--real-server",
    "--weight=3",
    "-w0",
    "-Ln",
    "route",
    "add",
    "del",
    "show",
    "via",
    "neigh",
    "lladdr",
    "port",
    "reload",
    "sysctl",
    "counters",
    "expire_nodest_conn",
    "1",
    "0",
    "10.10.0.100:80",
    "10.10.0.100:443",
    "10.10.0.100:53",
    "10.10.0.100:90",
    "10.10.0.100:81",
    "10.10.0.101:80",
    "10.10.0.100",
    "192.168.10.2:8080",
    "192.168.10.3:8080",
    "192.168.10.4:8080",
    "172.16.0.2:8080",
    "192.168.10.100",
    "192.168.10.101",
    "192.168.10.102",
    "10.10.0.1",
    "172.16.0.0/24",
    "0.0.0.0/0",
    "192.168.10.254",
    "10.10.0.254",
    "02:00:00:00:00:21",
    "ff:ff:ff:ff:ff:ff",
    "rr",
    "wrr",
    "lc",
    "wlc",
    "sh",
    "dh",
    "mh",
    "sed",
    "nq",
    "sh-fallback,sh-port",
    "mh-port",
    "on",
    "off",
    "auto",
    "60",
    "300",
    "255.255.255.0",
    "900",
    "120",
    "65535",
    "65536",
    "-1",
    "",
];

/// Decodes command lines of `WORDS` (a byte each; 0xff ends a line; 0xfe
/// takes the next bytes as a word of their own).
fn lines(r: &mut Reader) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    while !r.is_empty() && out.len() <= 64 {
        match r.u8() {
            0xff => out.push(Vec::new()),
            0xfe => {
                let n = usize::from(r.u8() % 32);
                let w = String::from_utf8_lossy(r.bytes(n)).into_owned();
                out.last_mut().unwrap().push(w);
            }
            b => out
                .last_mut()
                .unwrap()
                .push(WORDS[usize::from(b) % WORDS.len()].to_string()),
        }
    }
    out
}

/// The `control` target: the first byte picks what the rest is.
pub fn control(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let state = &base().state;
    match mode % 4 {
        // A request on the control socket.
        0 => {
            let Ok(request) = api::parse_request(rest) else {
                return;
            };
            let json = serde_json::to_vec(&Envelope {
                version: api::VERSION,
                request: request.clone(),
            })
            .expect("a request serializes");
            assert_eq!(
                api::parse_request(&json).as_ref(),
                Ok(&request),
                "a request does not survive its own JSON: {}",
                String::from_utf8_lossy(&json)
            );
            if let Request::Apply { changes } = &request {
                apply_changes(state, changes);
            }
        }
        // `sluice ctl` command lines, each change applied as it would be.
        1 => {
            let mut r = Reader::new(rest);
            let mut changes = Vec::new();
            let mut modes = rules::Modes::new(None);
            for words in lines(&mut r) {
                if let Ok(args::Command::Edit(edit)) = args::parse(&words) {
                    changes.push(modes.resolve(&edit));
                }
            }
            apply_changes(state, &changes);
        }
        // `-R` input as text.
        2 => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(rules) = rules::parse(&text) {
                let mut modes = rules::Modes::new(None);
                let changes: Vec<Change> = rules.iter().map(|r| modes.resolve(&r.edit)).collect();
                apply_changes(state, &changes);
            }
        }
        // Arbitrary argument words.
        _ => {
            let text = String::from_utf8_lossy(rest);
            let words: Vec<String> = text.split('\0').map(String::from).collect();
            let _ = args::parse(&words);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_state_round_trips() {
        check_state(&base().state, &base().dataplane);
        config(BASE.as_bytes());
    }

    #[test]
    fn ctl_lines_make_changes() {
        let idx = |w: &str| WORDS.iter().position(|x| *x == w).unwrap() as u8;
        let mut data = vec![1];
        for w in [
            "-a",
            "-t",
            "10.10.0.100:80",
            "-r",
            "192.168.10.4:8080",
            "-w",
            "60",
        ] {
            data.push(idx(w));
        }
        data.push(0xff);
        for w in ["-D", "-t", "10.10.0.100:443"] {
            data.push(idx(w));
        }
        control(&data);
        let text = b"\x02-A -t 10.10.0.100:99 -s rr\n-a -t 10.10.0.100:99 -r 192.168.10.2:80\n";
        control(text);
        let req = br#"{"version":1,"request":"apply","changes":[{"op":"clear"}]}"#;
        control(&[&[0u8][..], req].concat());
    }
}
