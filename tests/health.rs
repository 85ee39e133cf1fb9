//! Health checks over the real `sluice` binary: real servers stopped, broken and
//! restarted under a checked service, in NAT and in FULLNAT's routed topology, and a
//! service whose reals are all down. Namespace tests (scripts/testbed.sh), root only;
//! each brings up its own testbed and tears it down, also when it fails.
//!
//! The checks run in the host kernel of sluice's namespace, with ordinary sockets, through
//! the ports' kernel twins (and, in one test, with no twin at all).

mod common;

use common::{
    config, fullnat_service, root_or_skip, service, whoami, LbConfig, Sluice, Testbed, LADDRS, VIP,
};
use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

/// The checks' timing in these tests: a check every 0.5 s that gives up after 0.5 s,
/// two in a row to change a real's state.
const INTERVAL: Duration = Duration::from_millis(500);
const TIMEOUT: Duration = Duration::from_millis(500);
const RISE: u32 = 2;
const FALL: u32 = 2;

/// What the control loop adds to a verdict before the workers act on it: its tick
/// (50 ms), the snapshot's pickup (a burst), and a loaded 2-core machine's slack.
const SLACK: Duration = Duration::from_millis(400);

/// `[service.check]` for the block just before it.
fn check(kind: &str) -> String {
    let path = if kind == "http" {
        "path = \"/health\"\nexpect = 200\n"
    } else {
        ""
    };
    format!(
        "[service.check]\ntype = \"{kind}\"\n{path}interval = {}\ntimeout = {}\nrise = {RISE}\nfall = {FALL}\n\n",
        INTERVAL.as_secs_f64(),
        TIMEOUT.as_secs_f64()
    )
}

/// VIP:80 over every real's 8080, rr, checked with `kind`.
fn checked_service(tb: &Testbed, kind: &str) -> String {
    let block = if tb.is_routed() {
        fullnat_service(
            "10.10.0.100:80",
            "tcp",
            "rr",
            &LADDRS,
            &tb.reals_at(8080, 1),
        )
    } else {
        service("10.10.0.100:80", "tcp", "rr", &tb.reals_at(8080, 1))
    };
    block + &check(kind)
}

/// For the test without kernel twins: gives the host kernel in sluice's namespace its
/// own way to the reals, the lan-side address on the veth DPDK drives through af_packet
/// (which it then shares with sluice, as before twins existed). The kernel must not route
/// what it sees on lb-lan for others (the reals' NAT replies to the clients): forwarding
/// on, with no route to the clients, it would answer them with ICMP unreachables.
fn kernel_address_without_twin(tb: &Testbed) {
    tb.exec_ok("lb", &["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    tb.exec_ok(
        "lb",
        &["ip", "addr", "add", "192.168.10.1/24", "dev", "lb-lan"],
    );
}

/// The source addresses real `k` saw `GET /health` from (its request log).
fn check_sources(tb: &Testbed, k: usize) -> Vec<String> {
    let mut sources: Vec<String> = tb
        .real_log(k)
        .lines()
        .filter(|l| l.ends_with(" tcp GET /health"))
        .filter_map(|l| Some(l.split(':').next()?.to_string()))
        .collect();
    sources.sort();
    sources.dedup();
    sources
}

/// The health view of real `addr` in `-L -n --json`.
fn health_of(lb: &Sluice, addr: &str) -> serde_json::Value {
    let json = lb.ctl_ok(&["-L", "-n", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    v["services"][0]["reals"]
        .as_array()
        .expect("reals")
        .iter()
        .find(|r| r["addr"] == addr)
        .unwrap_or_else(|| panic!("no real {addr} in {json}"))["health"]
        .clone()
}

/// Waits until `addr`'s health says `up`; returns how long it took.
fn wait_health(lb: &Sluice, addr: &str, up: bool, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let h = health_of(lb, addr);
        if h["up"] == up {
            return started.elapsed();
        }
        if started.elapsed() > within {
            panic!(
                "{addr} not {} within {within:?}: {h}\n{}",
                if up { "up" } else { "down" },
                lb.ctl_ok(&["-L", "-n"])
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every real has passed a check (the first checks run at start).
fn wait_checked(lb: &Sluice, tb: &Testbed) {
    for k in 1..=tb.reals() {
        let addr = format!("{}:8080", tb.real_addr(k));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let h = health_of(lb, &addr);
            if h["up"] == true && h["successes"].as_u64().unwrap_or(0) >= 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} never passed a check: {h}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `n` curls of /whoami, one after the other: answers per real; panics on a failure.
fn curls(tb: &Testbed, n: usize) -> HashMap<String, usize> {
    let mut per_real = HashMap::new();
    for i in 0..n {
        let out = tb.curl(&["-f", &format!("http://{VIP}/whoami")]);
        assert!(
            out.status.success(),
            "curl {} of {n} failed: {}\n{}",
            i + 1,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let (real, _) = whoami(&String::from_utf8_lossy(&out.stdout));
        *per_real.entry(real).or_default() += 1;
    }
    per_real
}

/// The `Health` column of `addr`'s row in `-L -n`.
fn health_cell(listing: &str, addr: &str) -> String {
    let row = listing
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("-> {addr}")))
        .unwrap_or_else(|| panic!("no row for {addr} in:\n{listing}"));
    row.split_whitespace().skip(6).collect::<Vec<_>>().join(" ")
}

/// Log lines of sluice's that contain `text`.
fn log_lines(lb: &Sluice, text: &str) -> usize {
    lb.stderr().lines().filter(|l| l.contains(text)).count()
}

/// A stopped real is out within `interval x fall + timeout`; every new connection goes
/// to the others; restarted, it is back after `rise` checks.
fn stop_and_restart(tb: &Testbed, lb: &Sluice) {
    let (r1, r1_name) = (format!("{}:8080", tb.real_addr(1)), "r1");
    wait_checked(lb, tb);
    let before = curls(tb, 3 * tb.reals());
    assert!(before.len() == tb.reals(), "every real answers: {before:?}");

    let stopped_at = Instant::now();
    tb.stop_real(1);
    let bound = INTERVAL * FALL + TIMEOUT;
    wait_health(lb, &r1, false, bound + SLACK);
    let took = stopped_at.elapsed();
    assert!(took <= bound + SLACK, "r1 out after {took:?}");
    eprintln!("r1 stopped: out of scheduling after {took:?} (bound {bound:?})");
    // Every new connection within the bound goes to the others.
    thread::sleep((bound + SLACK).saturating_sub(stopped_at.elapsed()));
    let during = curls(tb, 40);
    assert_eq!(during.get(r1_name), None, "r1 is down: {during:?}");
    assert_eq!(during.values().sum::<usize>(), 40);
    let listing = lb.ctl_ok(&["-L", "-n"]);
    let cell = health_cell(&listing, &r1);
    assert!(
        cell.starts_with("down fail") && cell.contains("connect: refused"),
        "{listing}"
    );
    assert_eq!(
        log_lines(lb, &format!("real {r1} of tcp 10.10.0.100:80 is down")),
        1
    );

    let started_at = Instant::now();
    tb.start_real(1);
    wait_health(lb, &r1, true, INTERVAL * (RISE + 1) + SLACK);
    let took = started_at.elapsed();
    eprintln!("r1 restarted: back after {took:?} (rise {RISE} x {INTERVAL:?})");
    thread::sleep(SLACK);
    let after = curls(tb, 3 * tb.reals());
    assert_eq!(
        after.get(r1_name),
        Some(&3),
        "rr gives r1 its share again: {after:?}"
    );
    assert_eq!(
        log_lines(lb, &format!("real {r1} of tcp 10.10.0.100:80 is up again")),
        1
    );
}

#[test]
fn http_check_takes_a_stopped_real_out_and_brings_it_back() {
    if !root_or_skip("http_check_takes_a_stopped_real_out_and_brings_it_back") {
        return;
    }
    let tb = Testbed::up(3);
    let lb = Sluice::start(&tb, &config(&checked_service(&tb, "http")));
    stop_and_restart(&tb, &lb);
    // The checks went through the lan port's twin, from sluice's address there.
    for k in 1..=tb.reals() {
        assert_eq!(check_sources(&tb, k), ["192.168.10.1"], "r{k}");
    }
    let stopped = lb.stop();
    stopped.assert_clean_exit();
    stopped.assert_exactly("reset_no_real_server", 0, "r2 and r3 stayed up");
}

#[test]
fn checks_run_from_the_hosts_own_address_without_kernel_twins() {
    if !root_or_skip("checks_run_from_the_hosts_own_address_without_kernel_twins") {
        return;
    }
    let tb = Testbed::up(2);
    kernel_address_without_twin(&tb);
    let toml = config(&checked_service(&tb, "http")) + "\n[kernel]\ntwins = false\n";
    let lb = Sluice::start(&tb, &toml);
    stop_and_restart(&tb, &lb);
    for k in 1..=tb.reals() {
        assert_eq!(check_sources(&tb, k), ["192.168.10.1"], "r{k}");
    }
    lb.stop().assert_clean_exit();
}

#[test]
fn tcp_check_in_fullnat_routed_topology() {
    if !root_or_skip("tcp_check_in_fullnat_routed_topology") {
        return;
    }
    let tb = Testbed::up_routed(2);
    let toml = LbConfig::for_testbed(&tb).render(&checked_service(&tb, "tcp"));
    let lb = Sluice::start(&tb, &toml);
    stop_and_restart(&tb, &lb);
    lb.stop().assert_clean_exit();
}

#[test]
fn a_real_answering_500_is_taken_out_and_shown_everywhere() {
    if !root_or_skip("a_real_answering_500_is_taken_out_and_shown_everywhere") {
        return;
    }
    let tb = Testbed::up(2);
    let toml =
        config(&checked_service(&tb, "http")) + "\n[control]\nmetrics = \"127.0.0.1:9188\"\n";
    let lb = Sluice::start(&tb, &toml);
    wait_checked(&lb, &tb);
    let r2 = format!("{}:8080", tb.real_addr(2));

    let broken_at = Instant::now();
    tb.set_health_status(2, Some(500));
    wait_health(&lb, &r2, false, INTERVAL * FALL + TIMEOUT + SLACK);
    eprintln!("r2 answering 500: out after {:?}", broken_at.elapsed());
    thread::sleep(SLACK);
    // It still serves; its check says otherwise, so it gets nothing new.
    let direct = tb.exec_ok("r2", &["curl", "-sS", "-f", "http://127.0.0.1:8080/whoami"]);
    assert!(direct.starts_with("r2 "), "{direct}");
    let during = curls(&tb, 40);
    assert_eq!(during.get("r1"), Some(&40), "{during:?}");

    // -L: ipvsadm's columns, the configured weight, then the health.
    let listing = lb.ctl_ok(&["-L", "-n"]);
    assert!(
        listing
            .lines()
            .nth(2)
            .unwrap()
            .ends_with("InActConn Health"),
        "{listing}"
    );
    let row: Vec<&str> = listing
        .lines()
        .find(|l| l.contains(&format!("-> {r2}")))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[2..4],
        ["Masq", "1"],
        "the configured weight stays: {listing}"
    );
    assert!(
        health_cell(&listing, &r2).contains("http status 500"),
        "{listing}"
    );
    // --json.
    let h = health_of(&lb, &r2);
    assert_eq!(h["up"], false);
    assert_eq!(h["last_failure"], "http status 500");
    assert!(h["failures"].as_u64().unwrap() >= u64::from(FALL), "{h}");
    // /metrics.
    let body = tb.exec_ok(
        "lb",
        &["curl", "-sS", "-f", "http://127.0.0.1:9188/metrics"],
    );
    let up = |addr: &str| {
        body.lines()
            .find(|l| {
                l.starts_with("sluice_real_up{")
                    && l.contains(&format!("remote_address=\"{addr}\""))
            })
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("no sluice_real_up for {addr} in\n{body}"))
            .to_string()
    };
    assert_eq!(up(&tb.real_addr(2)), "0");
    assert_eq!(up(&tb.real_addr(1)), "1");
    let failures: u64 = body
        .lines()
        .find(|l| l.starts_with("sluice_health_check_failures_total "))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("no check failures counter in\n{body}"));
    assert!(failures >= u64::from(FALL));

    tb.set_health_status(2, None);
    wait_health(&lb, &r2, true, INTERVAL * (RISE + 1) + SLACK);
    thread::sleep(SLACK);
    let after = curls(&tb, 10);
    assert_eq!(after.get("r2"), Some(&5), "{after:?}");
    lb.stop().assert_clean_exit();
}

#[test]
fn with_every_real_down_clients_are_refused_at_once() {
    if !root_or_skip("with_every_real_down_clients_are_refused_at_once") {
        return;
    }
    let tb = Testbed::up(2);
    let lb = Sluice::start(&tb, &config(&checked_service(&tb, "tcp")));
    wait_checked(&lb, &tb);
    tb.stop_real(1);
    tb.stop_real(2);
    for k in 1..=2 {
        let addr = format!("{}:8080", tb.real_addr(k));
        wait_health(&lb, &addr, false, INTERVAL * FALL + TIMEOUT + SLACK);
    }
    thread::sleep(SLACK);
    for i in 0..10 {
        let started = Instant::now();
        let out = tb.curl(&["--connect-timeout", "5", &format!("http://{VIP}/whoami")]);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // curl's exit code 7: could not connect (refused).
        assert_eq!(out.status.code(), Some(7), "attempt {i}: {stderr}");
        assert!(
            took < Duration::from_millis(500),
            "attempt {i} took {took:?}: a reset, not a timeout, was expected ({stderr})"
        );
        if i == 0 {
            eprintln!("refused in {took:?}: {}", stderr.trim());
        }
    }
    // One back: served again.
    tb.start_real(2);
    wait_health(
        &lb,
        &format!("{}:8080", tb.real_addr(2)),
        true,
        INTERVAL * (RISE + 1) + SLACK,
    );
    thread::sleep(SLACK);
    assert_eq!(curls(&tb, 4).get("r2"), Some(&4));
    let stopped = lb.stop();
    stopped.assert_clean_exit();
    stopped.assert_at_least("reset_no_real_server", 10, "ten refused connections");
}

#[test]
fn configuration_changes_keep_each_reals_health() {
    if !root_or_skip("configuration_changes_keep_each_reals_health") {
        return;
    }
    let tb = Testbed::up(3);
    let lb = Sluice::start(&tb, &config(&checked_service(&tb, "http")));
    wait_checked(&lb, &tb);
    let (r1, r2, r3) = (
        format!("{}:8080", tb.real_addr(1)),
        format!("{}:8080", tb.real_addr(2)),
        format!("{}:8080", tb.real_addr(3)),
    );
    tb.stop_real(1);
    wait_health(&lb, &r1, false, INTERVAL * FALL + TIMEOUT + SLACK);
    let down_logs = log_lines(&lb, &format!("real {r1} of tcp 10.10.0.100:80 is down"));

    // An operator's change to another real, a reload of the same file, a removed and a
    // re-added third real: r1 stays down and nothing flaps.
    lb.ctl_ok(&["-e", "-t", "10.10.0.100:80", "-r", &r2, "-m", "-w", "3"]);
    lb.ctl_ok(&["reload"]);
    lb.ctl_ok(&["-d", "-t", "10.10.0.100:80", "-r", &r3]);
    lb.ctl_ok(&["-a", "-t", "10.10.0.100:80", "-r", &r3, "-m"]);
    let h = health_of(&lb, &r1);
    assert_eq!(h["up"], false, "{h}");
    assert!(
        h["failures"].as_u64().unwrap() >= u64::from(FALL),
        "counts kept: {h}"
    );
    assert_eq!(health_of(&lb, &r3)["up"], true, "an added real starts up");
    thread::sleep(INTERVAL * 2);
    assert_eq!(health_of(&lb, &r1)["up"], false);
    assert_eq!(
        log_lines(&lb, &format!("real {r1} of tcp 10.10.0.100:80 is down")),
        down_logs,
        "each transition is logged once"
    );
    assert_eq!(
        log_lines(&lb, "is up again"),
        0,
        "nothing came back: {}",
        lb.stderr()
    );
    // -S saves the check and not the verdict.
    let rules = lb.ctl_ok(&["-S", "-n"]);
    assert!(
        rules
            .contains("--check http --check-path /health --check-interval 0.5 --check-timeout 0.5"),
        "{rules}"
    );
    assert!(rules.contains(&format!("-r {r1} -m -w 1")), "{rules}");
    // A changed check (a TCP connect now) starts r1's counts again; it stays down until
    // the new check passes `rise` times.
    lb.ctl_ok(&[
        "-E",
        "-t",
        "10.10.0.100:80",
        "-s",
        "rr",
        "--check",
        "tcp",
        "--check-interval",
        "0.5",
        "--check-timeout",
        "0.5",
    ]);
    let h = health_of(&lb, &r1);
    assert_eq!(h["up"], false, "{h}");
    tb.start_real(1);
    wait_health(&lb, &r1, true, INTERVAL * (RISE + 1) + SLACK);
    // No check: every real is up, nothing is shown.
    lb.ctl_ok(&["-E", "-t", "10.10.0.100:80", "-s", "rr"]);
    let listing = lb.ctl_ok(&["-L", "-n"]);
    assert!(!listing.contains("Health"), "{listing}");
    lb.stop().assert_clean_exit();
}
