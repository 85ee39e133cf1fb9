//! FULLNAT integration tests over the real `sluice` binary, one worker.
//!
//! Each test brings up its own routed testbed (scripts/testbed.sh up --routed): the
//! client at 10.10.0.2, sluice in the lb namespace on lb-wan (10.10.0.1) and lb-lan
//! (192.168.10.1), a router at 192.168.10.254 with no route to 10.10.0.0/24, and real
//! servers r1..rN at 172.16.0.(1+K) behind it. A real server can only answer a
//! connection whose source is one of sluice's local addresses (192.168.10.100/101), so
//! every answer here proves sluice rewrote the source. The tests need root and busy-poll
//! a core: run them with `--test-threads=1` (scripts/test.sh does).

mod common;

use common::{
    fullnat_service, root_or_skip, whoami_full, LbConfig, Sluice, Testbed, CLIENT_ADDR, LADDRS, VIP,
};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// VIP port 80 -> the reals' 8080, rr, from both local addresses.
fn http_service(tb: &Testbed) -> String {
    fullnat_service(
        "10.10.0.100:80",
        "tcp",
        "rr",
        &LADDRS,
        &tb.reals_at(8080, 1),
    )
}

/// The precondition every FULLNAT test leans on: from the router, the client network is
/// unreachable, so a real that answered the client directly could not have been reached.
fn assert_router_cannot_reach_client(tb: &Testbed) {
    let out = tb.exec("rt", &["ip", "route", "get", CLIENT_ADDR]);
    assert!(
        !out.status.success(),
        "the router has a route to the client ({}): the routed topology is not testing FULLNAT",
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

#[test]
fn fullnat_real_sees_a_local_address_not_the_client() {
    if !root_or_skip("fullnat_real_sees_a_local_address_not_the_client") {
        return;
    }
    let tb = Testbed::up_routed(2);
    assert_router_cannot_reach_client(&tb);
    let lb = Sluice::start(&tb, &LbConfig::for_testbed(&tb).render(&http_service(&tb)));

    // Two requests: rr sends them to different reals, so both paths are exercised.
    let mut laddrs_seen = Vec::new();
    let mut reals_seen = BTreeSet::new();
    for _ in 0..2 {
        let body = tb.curl_ok(&format!("http://{VIP}/whoami"));
        let (real, seen, port) = whoami_full(&body);
        assert!(
            real == "r1" || real == "r2",
            "answered by {real:?}: {body:?}"
        );
        assert_ne!(
            seen, CLIENT_ADDR,
            "FULLNAT: the real saw the client's own address: {body:?}"
        );
        assert!(
            LADDRS.contains(&seen.as_str()),
            "the real saw {seen}, which is not one of the local addresses {LADDRS:?}: {body:?}"
        );
        let k: usize = real[1..].parse().expect("real index");
        let log = tb.real_log(k);
        let entry = format!("{seen}:{port} tcp GET /whoami");
        assert!(
            log.lines().any(|l| l == entry),
            "{real}'s request log has no `{entry}`:\n{log}"
        );
        laddrs_seen.push(seen);
        reals_seen.insert(real);
    }
    assert_eq!(
        reals_seen.len(),
        2,
        "rr over 2 reals sent both requests to {reals_seen:?}"
    );
    for k in 1..=tb.reals() {
        let log = tb.real_log(k);
        assert!(
            !log.contains(&format!("{CLIENT_ADDR}:")),
            "r{k} saw the client's address:\n{log}"
        );
    }

    // The router reached the local address through sluice's ARP answer on lb-lan.
    let lb_lan = tb.mac_of("lb", "lb-lan");
    let neigh = tb.exec_ok("rt", &["ip", "neigh", "show", &laddrs_seen[0]]);
    assert!(
        neigh.to_ascii_lowercase().contains(&lb_lan),
        "the router's ARP entry for {} is not lb-lan's MAC {lb_lan}: {neigh:?}",
        laddrs_seen[0]
    );

    let stopped = lb.stop();
    stopped.assert_clean_exit();
    stopped.assert_at_least("conns", 2, "two HTTP connections through the VIP");
    stopped.assert_at_least(
        "in_pkts",
        6,
        "SYN, ACK+request, ACK/FIN client->real, twice",
    );
    stopped.assert_at_least(
        "out_pkts",
        4,
        "SYN-ACK and the response real->client, twice",
    );
    stopped.assert_at_least(
        "arp_requests_answered",
        1,
        "the router asks for the local address it answers to",
    );
    stopped.assert_exactly("steer_misses", 0, "one worker owns every session");
}

#[test]
fn fullnat_bulk_50mb_download_is_intact() {
    if !root_or_skip("fullnat_bulk_50mb_download_is_intact") {
        return;
    }
    let tb = Testbed::up_routed(2);
    let lb = Sluice::start(&tb, &LbConfig::for_testbed(&tb).render(&http_service(&tb)));

    const SIZE: u64 = 50 << 20;
    tb.assert_download_intact("blob", &format!("http://{VIP}/blob"), SIZE);

    let stopped = lb.stop();
    stopped.assert_clean_exit();
    // The reals send with TSO/GSO off, so 50 MiB is at least 50 MiB / 1460 segments.
    stopped.assert_at_least(
        "out_pkts",
        SIZE / 1460,
        "50 MiB real->client in MTU-sized segments",
    );
    stopped.assert_exactly("steer_misses", 0, "one worker owns every session");
}

#[test]
fn fullnat_1000_concurrent_connections_all_complete() {
    if !root_or_skip("fullnat_1000_concurrent_connections_all_complete") {
        return;
    }
    let tb = Testbed::up_routed(2);
    let lb = Sluice::start(&tb, &LbConfig::for_testbed(&tb).render(&http_service(&tb)));

    const CONNS: usize = 1000;
    let run = tb.concurrent(CONNS, &format!("http://{VIP}/whoami"), 40);
    run.assert_all_ok();
    let (r1, r2) = (run.real("r1"), run.real("r2"));
    // rr with one worker alternates exactly; allow slack for the order of arrival.
    assert!(
        r1.abs_diff(CONNS / 2) <= 50,
        "rr over {CONNS} connections gave r1={r1} r2={r2}: {}",
        run.summary
    );
    for (ip, n) in &run.per_client {
        assert!(
            LADDRS.contains(&ip.as_str()),
            "{n} answers saw client {ip}, not a local address: {}",
            run.summary
        );
    }
    eprintln!("{CONNS} concurrent through FULLNAT: {}", run.summary);

    let stopped = lb.stop();
    stopped.assert_clean_exit();
    stopped.assert_at_least("conns", CONNS as u64, "1000 connections through the VIP");
    stopped.assert_exactly("steer_misses", 0, "one worker owns every session");
    stopped.assert_exactly(
        "steer_handoffs",
        0,
        "with one worker there is no other core to hand a packet to",
    );
    stopped.assert_exactly(
        "drop_laddr_exhausted",
        0,
        "2 local addresses x 64512 ports are far from exhausted by 1000 connections",
    );
}

/// Reads lines of `child`'s stdout on a thread, so a test can wait for one with a deadline.
fn stdout_lines(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn fullnat_port_pool_exhaustion_refuses_new_connections_and_keeps_held_ones() {
    if !root_or_skip("fullnat_port_pool_exhaustion_refuses_new_connections_and_keeps_held_ones") {
        return;
    }
    // One real server: sluice's pool (after DPVS's sa_pool) may give the same local
    // (address, port) to connections toward different reals, so only with one real is
    // the pool exactly the 8 ports below, whatever bucket the real hashes to.
    let tb = Testbed::up_routed(1);
    // One local address, ports 40000..=40007: a pool of exactly 8 connections.
    const FIRST: u16 = 40000;
    const LAST: u16 = 40007;
    const POOL: usize = (LAST - FIRST + 1) as usize;
    let laddr = LADDRS[0];
    let services = fullnat_service(
        "10.10.0.100:80",
        "tcp",
        "rr",
        &[laddr],
        &tb.reals_at(8080, 1),
    );
    let lb = Sluice::start(
        &tb,
        &LbConfig::for_testbed(&tb)
            .workers(1)
            .local_port_range(FIRST, LAST)
            .render(&services),
    );

    // Hold POOL connections open: concurrent.py connects them all, prints
    // `connected=N failed=M`, and sends its requests only once `release` exists.
    let release = tb.state_dir().join("release-held");
    let tool = common::script("concurrent.py");
    let url = format!("http://{VIP}/whoami");
    let (mut holder, holder_err) = tb.spawn(
        "client",
        &[
            "python3",
            tool.to_str().expect("utf-8 path"),
            &POOL.to_string(),
            &url,
            "--timeout",
            "40",
            "--hold-until",
            release.to_str().expect("utf-8 path"),
        ],
        "held.err",
    );
    let lines = stdout_lines(&mut holder);
    let connected = lines
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            let _ = holder.kill();
            let _ = holder.wait();
            panic!(
                "the {POOL} held connections did not report within 20 s; stderr:\n{}",
                std::fs::read_to_string(&holder_err).unwrap_or_default()
            )
        });
    assert_eq!(
        connected,
        format!("connected={POOL} failed=0"),
        "could not open {POOL} connections with a pool of {POOL} local ports"
    );

    // The pool is empty: new connections must not get through.
    const REFUSED: usize = 3;
    for i in 0..REFUSED {
        let started = Instant::now();
        let out = tb.curl(&["--connect-timeout", "2", "-m", "3", &url]);
        assert!(
            !out.status.success(),
            "connection {} got through with all {POOL} local ports held: {}",
            POOL + i + 1,
            String::from_utf8_lossy(&out.stdout)
        );
        eprintln!(
            "extra connection {} refused after {:.1} s ({})",
            i + 1,
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    // The held connections still work: release them and let each complete its request.
    std::fs::write(&release, b"").expect("create release file");
    let summary = lines
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no summary from the held connections within 30 s"));
    let status = holder.wait().expect("wait for concurrent.py");
    assert!(
        status.success() && summary.starts_with(&format!("ok={POOL} failed=0")),
        "the held connections did not all complete after the refused attempts ({status}): \
         {summary}\n{}",
        std::fs::read_to_string(&holder_err).unwrap_or_default()
    );

    // Each held request came from the one local address, from 8 distinct ports that
    // are exactly the configured range.
    let mut ports = BTreeSet::new();
    for k in 1..=tb.reals() {
        for line in tb.real_log(k).lines() {
            let (addr, _) = line.split_once(' ').unwrap_or((line, ""));
            let body = format!("r{k} client={addr}");
            let (_, ip, port) = whoami_full(&body);
            assert_eq!(
                ip, laddr,
                "r{k} saw {ip}, not the only local address: {line}"
            );
            ports.insert(port);
        }
    }
    let expected: BTreeSet<u16> = (FIRST..=LAST).collect();
    assert_eq!(
        ports, expected,
        "the held connections' local ports are not exactly [{FIRST}, {LAST}]"
    );

    let stopped = lb.stop();
    stopped.assert_clean_exit();
    stopped.assert_at_least(
        "drop_laddr_exhausted",
        REFUSED as u64,
        "a SYN of each refused connection found the local port pool empty",
    );
    stopped.assert_at_least("conns", POOL as u64, "the held connections");
}
