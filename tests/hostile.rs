//! Hostile traffic over the real `sluice` binary (issue 9): ARP claims from
//! the client side change nothing sluice sends, a claim on the VIP is
//! counted as a conflict, forged sources and source routes are dropped and
//! counted, and after all of it every packet buffer is back in the pool.
//!
//! Each test brings up its own namespace testbed (scripts/testbed.sh) and
//! needs root; run them with `--test-threads=1`.

mod common;

use common::{root_or_skip, service, whoami, LbConfig, Sluice, Testbed, VIP};
use std::thread;
use std::time::{Duration, Instant};

/// VIP port 80 -> r1 and r2 (port 8080), round robin.
fn http_service() -> String {
    service(
        "10.10.0.100:80",
        "tcp",
        "rr",
        &[("192.168.10.2:8080", 1), ("192.168.10.3:8080", 1)],
    )
}

/// Where sluice serves its metrics inside the lb namespace.
const METRICS: &str = "127.0.0.1:9180";

/// The standard config with `workers` workers.
fn config(workers: usize, services: &str) -> String {
    LbConfig::new().workers(workers).render(services)
}

/// The standard config with reverse path filtering strict on the client
/// side and metrics on.
fn hardened(workers: usize, services: &str) -> String {
    config(workers, services)
        .replacen(
            "addrs = [\"10.10.0.1/24\"]\n",
            "addrs = [\"10.10.0.1/24\"]\nrp_filter = \"strict\"\n",
            1,
        )
        .replacen(
            "[[interface]]",
            &format!("[control]\nmetrics = \"{METRICS}\"\n\n[[interface]]"),
            1,
        )
}

fn hostile_py() -> String {
    common::script("hostile.py")
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// One gauge from sluice's /metrics (fetched inside the lb namespace).
fn metric(tb: &Testbed, name: &str) -> u64 {
    let body = tb.exec_ok(
        "lb",
        &[
            "curl",
            "-sS",
            "-m",
            "5",
            &format!("http://{METRICS}/metrics"),
        ],
    );
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
}

/// Waits (up to `limit`) for the pool's in-use count to come down to
/// `baseline`; returns the last value read.
fn mbufs_settle(tb: &Testbed, baseline: u64, limit: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let now = metric(tb, "sluice_mbufs_in_use");
        if now <= baseline || start.elapsed() >= limit {
            return now;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn client_side_arp_claims_change_nothing_sluice_sends() {
    if root_or_skip("client_side_arp_claims_change_nothing_sluice_sends") {
        arp_claims(1);
    }
}

/// Two workers: what one learns (or refuses) the other does too, and the
/// listing shows one entry per real that both workers hold.
#[test]
fn client_side_arp_claims_change_nothing_with_two_workers() {
    if root_or_skip("client_side_arp_claims_change_nothing_with_two_workers") {
        arp_claims(2);
    }
}

fn arp_claims(workers: usize) {
    let tb = Testbed::up(2);
    let lb = Sluice::start(&tb, &config(workers, &http_service()));
    // Both reals resolved before the claims start (the 6 of 10
    // came from connections scheduled to an entry the claim rewrote).
    for _ in 0..2 {
        tb.curl_ok(&format!("http://{VIP}/whoami"));
    }
    let tool = hostile_py();
    let (mut claims, claims_err) = tb.spawn(
        "client",
        &[
            "python3", &tool, "claim", "eth0", "--every", "0.2", "--for", "12",
        ],
        "claims.err",
    );
    thread::sleep(Duration::from_millis(500));
    let mut served = 0;
    let mut per_real = [0; 2];
    for i in 0..20 {
        let out = tb.curl(&["-f", &format!("http://{VIP}/whoami")]);
        if out.status.success() {
            let (real, seen) = whoami(&String::from_utf8_lossy(&out.stdout));
            assert_eq!(seen, "10.10.0.2", "request {i}");
            served += 1;
            per_real[usize::from(real == "r2")] += 1;
        } else {
            eprintln!(
                "request {i} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
    let claimed = claims.wait().expect("wait for hostile.py claim");
    assert!(
        claimed.success(),
        "hostile.py claim failed: {}",
        std::fs::read_to_string(&claims_err).unwrap_or_default()
    );
    eprintln!(
        "served {served} of 20 during the claims (r1 {}, r2 {})",
        per_real[0], per_real[1]
    );
    // The neighbour table still has each real on the real servers' side,
    // at its own MAC, and nothing learned for them on the client side.
    let neigh = lb.ctl_ok(&["neigh", "show"]);
    eprintln!("neigh show:\n{neigh}");
    for (k, addr) in [(1, "192.168.10.2"), (2, "192.168.10.3")] {
        let mac = tb.mac_of(&format!("r{k}"), "eth0");
        let lines: Vec<&str> = neigh
            .lines()
            .filter(|l| l.starts_with(&format!("{addr} ")))
            .collect();
        assert_eq!(lines.len(), 1, "{addr} once in:\n{neigh}");
        assert!(
            lines[0].contains(&format!("lladdr {mac} port 1 ")),
            "{addr} moved:\n{neigh}"
        );
        if workers == 2 {
            assert!(lines[0].ends_with("workers 0,1"), "{addr}:\n{neigh}");
        }
    }
    assert!(
        !neigh.lines().any(|l| l.starts_with("10.10.0.100 ")),
        "the VIP was learned:\n{neigh}"
    );
    let stopped = lb.stop();
    stopped.assert_clean_exit();
    assert_eq!(
        served, 20,
        "{served} of 20 connections served during the claims (r1 {}, r2 {})",
        per_real[0], per_real[1]
    );
    // rr over two reals: both served throughout (each worker has its own
    // rr, so with two the split is only roughly even).
    if workers == 1 {
        assert_eq!(per_real, [10, 10]);
    } else {
        assert!(per_real[0] >= 5 && per_real[1] >= 5, "{per_real:?}");
    }
    stopped.assert_at_least("arp_conflicts", 40, "a claim on the VIP every 200 ms");
    stopped.assert_at_least(
        "arp_off_subnet",
        80,
        "two claims on the reals every 200 ms, from the wrong side",
    );
    stopped.assert_at_least("garp_sent", 10, "each conflict defended once a second");
    assert!(
        stopped
            .stderr
            .contains("claims 10.10.0.100, one of our addresses"),
        "the conflict is logged:\n{}",
        stopped.dump()
    );
    let logged = stopped
        .stderr
        .lines()
        .filter(|l| l.contains("claims 10.10.0.100"))
        .count();
    assert!(
        (1..=2).contains(&logged),
        "logged {logged} times in 12 s (at most once per 10 s):\n{}",
        stopped.dump()
    );
}

#[test]
fn forged_sources_and_source_routes_are_dropped_and_every_mbuf_comes_back() {
    if root_or_skip("forged_sources_and_source_routes_are_dropped_and_every_mbuf_comes_back") {
        forged_sources(1);
    }
}

/// Two workers: handoff rings in play, the same account.
#[test]
fn forged_sources_and_every_mbuf_comes_back_with_two_workers() {
    if root_or_skip("forged_sources_and_every_mbuf_comes_back_with_two_workers") {
        forged_sources(2);
    }
}

fn forged_sources(workers: usize) {
    let tb = Testbed::up(2);
    let lb = Sluice::start(&tb, &hardened(workers, &http_service()));
    let baseline = metric(&tb, "sluice_mbufs_in_use");
    let total = metric(&tb, "sluice_mbufs");
    eprintln!("mbufs in use at start: {baseline} of {total}");

    let lb_mac = tb.mac_of("lb", "lb-wan");
    const N: usize = 50;
    let kinds = [
        "own-vip",
        "own-wan",
        "own-lan",
        "martian-zero",
        "martian-lo",
        "martian-mc",
        "martian-bc",
        "other-side",
        "lsrr",
        "ssrr",
        "rr",
    ];
    let tool = hostile_py();
    let mut args = vec!["python3", &tool, "spoof", "eth0", &lb_mac];
    args.extend(kinds);
    let count = N.to_string();
    args.extend(["--count", &count]);
    let out = tb.exec_ok("client", &args);
    assert_eq!(out.lines().count(), kinds.len(), "hostile.py spoof:\n{out}");

    // Then real traffic, all of it served: the filters take nothing else.
    let c = tb.concurrent(50, &format!("http://{VIP}/whoami"), 20);
    c.assert_all_ok();
    tb.assert_download_intact("blob", &format!("http://{VIP}/blob"), 5 << 20);

    // Every buffer back: nothing is left queued, handed or leaked.
    let after = mbufs_settle(&tb, baseline, Duration::from_secs(10));
    let stopped = lb.stop();
    stopped.assert_clean_exit();
    assert_eq!(
        after, baseline,
        "sluice_mbufs_in_use {after} after the traffic, {baseline} before"
    );
    let n = N as u64;
    stopped.assert_exactly("drop_own_source", 3 * n, "VIP, wan and lan addresses");
    stopped.assert_exactly(
        "drop_martian_source",
        4 * n,
        "0/8, 127/8, 224/4, 255.255.255.255",
    );
    stopped.assert_exactly(
        "drop_rp_filter",
        n,
        "a real servers' subnet source on the client side (rp_filter strict)",
    );
    stopped.assert_exactly("drop_source_route", 3 * n, "LSRR, SSRR, record route");
    stopped.assert_exactly("drop_pending_budget", 0, "no ARP backlog");
    stopped.assert_exactly("steer_misses", 0, "the owner is found both ways");
}
