//! The client's address through FULLNAT (issue 11), over the real binary on the routed
//! topology: real servers that read the PROXY protocol v2 header
//! (scripts/proxyserver.py, as nginx's `listen ... proxy_protocol` does) and a raw-socket
//! reader of the TOA option. The reals sit behind a router with no route to the client,
//! so everything they learn of the client comes from what sluice adds. Each test brings
//! up its own testbed (unique namespace names per run, torn down when the test ends);
//! root only, `--test-threads=1`.

mod common;

use common::{
    fullnat_service, root_or_skip, wrk_summary, LbConfig, Sluice, Stopped, Testbed, CLIENT_ADDR,
    LADDRS, VIP,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where the PROXY-reading servers listen on the reals.
const PROXY_PORT: u16 = 9000;
/// The server-speaks-first service's port on the reals, and the VIP's.
const BANNER_PORT: u16 = 2525;

fn proxyserver() -> String {
    common::script("proxyserver.py")
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// A FULLNAT service `vip_port` -> every real's `real_port`, rr, with `client_address`.
fn service(tb: &Testbed, vip_port: u16, real_port: u16, client_address: &str) -> String {
    fullnat_service(
        &format!("{VIP}:{vip_port}"),
        "tcp",
        "rr",
        &LADDRS,
        &tb.reals_at(real_port, 1),
    )
    .replace(
        "scheduler = \"rr\"\n",
        &format!("scheduler = \"rr\"\nclient_address = \"{client_address}\"\n"),
    )
}

/// Starts `args` (after `proxyserver.py`) on real `k`; waits until it listens on `port`
/// (or, with `port` None, until its log says READY). Returns its log.
fn start_on_real(tb: &Testbed, k: usize, args: &[&str], port: Option<u16>, log: &Path) {
    let script = proxyserver();
    let mut full = vec!["python3", script.as_str()];
    full.extend_from_slice(args);
    let (child, _) = tb.spawn(
        &format!("r{k}"),
        &full,
        &format!("proxyserver-r{k}-{}.err", args[0]),
    );
    // The testbed's teardown ends it; nothing to wait for here.
    std::mem::forget(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = match port {
            Some(p) => {
                let out = tb.exec(&format!("r{k}"), &["ss", "-ltnH", &format!("sport = :{p}")]);
                !String::from_utf8_lossy(&out.stdout).trim().is_empty()
            }
            None => common::read_lossy(log).contains("READY"),
        };
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "proxyserver.py {args:?} on r{k} did not start"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The PROXY-reading HTTP server on every real, logging to proxy-rK.log.
fn start_http(tb: &Testbed) -> Vec<PathBuf> {
    let data = tb.data_dir();
    (1..=tb.reals())
        .map(|k| {
            let log = tb.state_dir().join(format!("proxy-r{k}.log"));
            start_on_real(
                tb,
                k,
                &[
                    "http",
                    &format!("r{k}"),
                    &PROXY_PORT.to_string(),
                    data.to_str().unwrap(),
                    log.to_str().unwrap(),
                ],
                Some(PROXY_PORT),
                &log,
            );
            log
        })
        .collect()
}

/// Every line of the reals' PROXY logs.
fn proxy_lines(logs: &[PathBuf]) -> Vec<String> {
    logs.iter()
        .flat_map(|l| {
            common::read_lossy(l)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Asserts every connection the reals saw began with a header naming the client (and
/// the VIP at `vip_port`), from one of sluice's local addresses; returns how many.
fn assert_every_header_names_the_client(logs: &[PathBuf], vip_port: u16) -> usize {
    let lines = proxy_lines(logs);
    let mut n = 0;
    for line in &lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words.first(),
            Some(&"PROXY"),
            "a connection reached a real without the header first: {line}\n{}",
            lines.join("\n")
        );
        let (client, vip, via) = (words[1], words[2], words[4]);
        assert!(
            client.starts_with(&format!("{CLIENT_ADDR}:")),
            "the header named {client}, not the client: {line}"
        );
        assert_eq!(vip, format!("{VIP}:{vip_port}"), "{line}");
        let via_ip = via.rsplit_once(':').unwrap().0;
        assert!(
            LADDRS.contains(&via_ip),
            "FULLNAT: the connection came from {via}, not a local address: {line}"
        );
        n += 1;
    }
    n
}

/// `iptables` in `role`'s namespace, with conntrack accounting on (for `connbytes`).
fn iptables(tb: &Testbed, role: &str, rule: &[&str]) {
    tb.exec_ok(
        role,
        &["sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1"],
    );
    let mut args = vec!["iptables"];
    args.extend_from_slice(rule);
    tb.exec_ok(role, &args);
}

/// Has the router drop, once per connection, the second packet toward the real's `port`
/// (from the local address: the handshake's last ACK, which carries the header).
fn drop_second_packet_at_router(tb: &Testbed, port: u16) {
    let port = port.to_string();
    iptables(
        tb,
        "rt",
        &[
            "-A",
            "FORWARD",
            "-p",
            "tcp",
            "--dport",
            &port,
            "-m",
            "connbytes",
            "--connbytes",
            "2:2",
            "--connbytes-dir",
            "original",
            "--connbytes-mode",
            "packets",
            "-j",
            "DROP",
        ],
    );
}

/// Packets a chain's first rule matched.
fn matched(tb: &Testbed, role: &str, chain: &str) -> u64 {
    let out = tb.exec_ok(role, &["iptables", "-L", chain, "-v", "-x", "-n"]);
    out.lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rule in {role}'s {chain}:\n{out}"))
}

/// `wrk` from the client for 3 s on 8 connections: (requests, errors, summary).
fn wrk(tb: &Testbed, url: &str, close: bool) -> (u64, u64, String) {
    let mut args = vec!["wrk", "-t1", "-c8", "-d3s", "--timeout", "5s"];
    if close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(url);
    let out = Command::new("ip")
        .args(["netns", "exec", &tb.netns("client")])
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (requests, errors) = wrk_summary(&text, &String::from_utf8_lossy(&out.stderr));
    (requests, errors, text)
}

/// A counter of the running sluice (`sluice ctl counters`), once the workers published
/// (every 100 ms).
fn live_counter(lb: &Sluice, name: &str) -> u64 {
    thread::sleep(Duration::from_millis(300));
    let text = lb.ctl_ok(&["counters"]);
    text.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no counter {name} in:\n{text}"))
}

fn stop(lb: Sluice) -> Stopped {
    let stopped = lb.stop();
    stopped.assert_clean_exit();
    stopped.assert_exactly("steer_misses", 0, "one worker owns every session");
    stopped
}

#[test]
fn proxy_v2_every_connection_names_the_client_and_50_mb_arrive_intact() {
    if !root_or_skip("proxy_v2_every_connection_names_the_client_and_50_mb_arrive_intact") {
        return;
    }
    let tb = Testbed::up_routed(2);
    let logs = start_http(&tb);
    let lb = Sluice::start(
        &tb,
        &LbConfig::for_testbed(&tb).render(&service(&tb, 80, PROXY_PORT, "proxy-v2")),
    );
    // The setting as an operator sees it.
    let rules = lb.ctl_ok(&["-S", "-n"]);
    assert!(
        rules.contains(&format!("-A -t {VIP}:80 -s rr --client-address proxy-v2")),
        "{rules}"
    );
    let json = lb.ctl_ok(&["-L", "-n", "--json"]);
    let compact: String = json.split_whitespace().collect();
    assert!(
        compact.contains("\"client_address\":\"proxy-v2\""),
        "{json}"
    );

    // One by one: the answer names the client's own address and port.
    for _ in 0..4 {
        let out = tb.exec_ok(
            "client",
            &[
                "curl",
                "-sS",
                "-f",
                "-m",
                "10",
                "-w",
                " port=%{local_port}",
                &format!("http://{VIP}/whoami"),
            ],
        );
        let (body, port) = out.rsplit_once(" port=").unwrap();
        assert!(
            body.trim()
                .ends_with(&format!("client={CLIENT_ADDR}:{}", port.trim())),
            "the real did not learn the client's address and port: {out:?}"
        );
    }
    // 200 at once: every one names the client.
    const CONNS: usize = 200;
    let run = tb.concurrent(CONNS, &format!("http://{VIP}/whoami"), 60);
    run.assert_all_ok();
    assert_eq!(
        run.per_client.get(CLIENT_ADDR),
        Some(&CONNS),
        "every answer names the client: {}",
        run.summary
    );
    assert_eq!(run.per_client.len(), 1, "{}", run.summary);
    assert!(run.real("r1") > 0 && run.real("r2") > 0, "{}", run.summary);
    tb.assert_download_intact("blob", &format!("http://{VIP}/blob"), 50 << 20);
    // So far 4 + 200 + 1 connections, each with its header.
    assert_eq!(assert_every_header_names_the_client(&logs, 80), CONNS + 5);
    assert_eq!(live_counter(&lb, "proxy_headers_sent"), (CONNS + 5) as u64);
    // Keep-alive and a connection per request, without an error.
    for close in [false, true] {
        let (requests, errors, text) = wrk(&tb, &format!("http://{VIP}/whoami"), close);
        assert!(
            requests > 50,
            "wrk (close: {close}) did too little:\n{text}"
        );
        assert_eq!(errors, 0, "wrk (close: {close}):\n{text}");
    }
    // wrk's connections too: each began with the header.
    let headers = assert_every_header_names_the_client(&logs, 80);
    assert!(headers > CONNS + 100, "{headers} connections logged");

    let stopped = stop(lb);
    let sent = stopped.counter("proxy_headers_sent");
    assert!(
        sent as usize >= headers && sent <= stopped.counter("conns"),
        "{sent} headers for {headers} logged connections\n{}",
        stopped.dump()
    );
    stopped.assert_exactly("drop_mbuf_exhausted", 0, "a buffer for every header");
}

#[test]
fn server_speaks_first_gets_its_header_even_when_the_handshakes_last_ack_is_lost() {
    if !root_or_skip(
        "server_speaks_first_gets_its_header_even_when_the_handshakes_last_ack_is_lost",
    ) {
        return;
    }
    let tb = Testbed::up_routed(1);
    let log = tb.state_dir().join("banner.log");
    start_on_real(
        &tb,
        1,
        &[
            "banner",
            "r1",
            &BANNER_PORT.to_string(),
            log.to_str().unwrap(),
        ],
        Some(BANNER_PORT),
        &log,
    );
    let lb = Sluice::start(
        &tb,
        &LbConfig::for_testbed(&tb).render(&service(&tb, BANNER_PORT, BANNER_PORT, "proxy-v2")),
    );
    // The client sends nothing until the banner came: it names the client's address and
    // port, then a line is answered.
    let client = format!(
        r#"
import socket, sys
for i in range({{n}}):
    s = socket.create_connection(("{VIP}", {BANNER_PORT}), timeout=10)
    port = s.getsockname()[1]
    f = s.makefile("rb")
    banner = f.readline().decode().strip()
    want = "220 r1 client={CLIENT_ADDR}:%d" % port
    if banner != want:
        sys.exit("connection %d: banner %r, expected %r" % (i, banner, want))
    s.sendall(b"HELO sluice\r\n")
    answer = f.readline().decode().strip()
    if answer != "250 HELO sluice":
        sys.exit("connection %d: answer %r" % (i, answer))
    s.close()
print("ok")
"#
    );
    let out = tb.exec_ok("client", &["python3", "-c", &client.replace("{n}", "20")]);
    assert_eq!(out.trim(), "ok");

    // Now the handshake's last ACK, which carries the header, is lost once per
    // connection between sluice and the real (the second packet from the local address,
    // dropped at the router): the real, still waiting for it, sends its SYN-ACK again,
    // the client answers, that ACK carries the header again, and the banner comes.
    drop_second_packet_at_router(&tb, BANNER_PORT);
    let started = Instant::now();
    let out = tb.exec_ok("client", &["python3", "-c", &client.replace("{n}", "3")]);
    assert_eq!(out.trim(), "ok");
    assert_eq!(matched(&tb, "rt", "FORWARD"), 3, "each header dropped once");
    eprintln!(
        "3 banners after a lost header in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let lines = common::read_lossy(&log);
    let headers = assert_every_header_names_the_client(std::slice::from_ref(&log), BANNER_PORT);
    assert_eq!(headers, 23, "{lines}");

    let stopped = stop(lb);
    stopped.assert_exactly("proxy_headers_sent", 23, "one header per connection");
    stopped.assert_at_least(
        "proxy_headers_resent",
        3,
        "the client's answers to the SYN-ACKs sent again carried it again",
    );
}

#[test]
fn a_lost_first_data_segment_or_a_lost_header_and_still_the_header_comes_first() {
    if !root_or_skip("a_lost_first_data_segment_or_a_lost_header_and_still_the_header_comes_first")
    {
        return;
    }
    let tb = Testbed::up_routed(1);
    let logs = start_http(&tb);
    let lb = Sluice::start(
        &tb,
        &LbConfig::for_testbed(&tb).render(&service(&tb, 80, PROXY_PORT, "proxy-v2")),
    );
    let whoami = |n: usize| {
        for _ in 0..n {
            let out = tb.exec_ok(
                "client",
                &[
                    "curl",
                    "-sS",
                    "-f",
                    "-m",
                    "20",
                    "-w",
                    " port=%{local_port}",
                    &format!("http://{VIP}/whoami"),
                ],
            );
            let (body, port) = out.rsplit_once(" port=").unwrap();
            assert_eq!(
                body.trim(),
                format!("r1 client={CLIENT_ADDR}:{}", port.trim()),
                "{out:?}"
            );
        }
    };
    // 1. The client's first data segment (its third packet: the request) is dropped once
    //    in the client's namespace, and retransmitted.
    iptables(
        &tb,
        "client",
        &[
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "--dport",
            "80",
            "-m",
            "connbytes",
            "--connbytes",
            "3:3",
            "--connbytes-dir",
            "original",
            "--connbytes-mode",
            "packets",
            "-m",
            "length",
            "--length",
            "60:65535",
            "-j",
            "DROP",
        ],
    );
    whoami(5);
    assert_eq!(
        matched(&tb, "client", "OUTPUT"),
        5,
        "each request dropped once"
    );
    tb.exec_ok("client", &["iptables", "-F", "OUTPUT"]);

    // 2. The header's own segment (the second packet from the local address: the
    //    handshake's last ACK, carrying it) is dropped once at the router: the real gets
    //    the request out of order, says so, and sluice sends the header again.
    drop_second_packet_at_router(&tb, PROXY_PORT);
    whoami(5);
    assert_eq!(matched(&tb, "rt", "FORWARD"), 5, "each header dropped once");

    let headers = assert_every_header_names_the_client(&logs, 80);
    assert_eq!(headers, 10);
    let stopped = stop(lb);
    stopped.assert_exactly("proxy_headers_sent", 10, "one per connection");
    stopped.assert_at_least(
        "proxy_headers_resent",
        5,
        "the real's ACKs showed the header missing five times",
    );
}

#[test]
fn fast_open_data_on_the_syn_still_reaches_the_real_behind_the_header() {
    if !root_or_skip("fast_open_data_on_the_syn_still_reaches_the_real_behind_the_header") {
        return;
    }
    let tb = Testbed::up_routed(1);
    // The client puts its request on the SYN without a cookie (0x4); the real takes
    // data on a SYN on every listener without one (0x2 | 0x200 | 0x400). Had sluice
    // let the SYN's data through, the real would read it before the header.
    tb.exec_ok("client", &["sysctl", "-qw", "net.ipv4.tcp_fastopen=5"]);
    tb.exec_ok("r1", &["sysctl", "-qw", "net.ipv4.tcp_fastopen=1538"]);
    let logs = start_http(&tb);
    let lb = Sluice::start(
        &tb,
        &LbConfig::for_testbed(&tb).render(&service(&tb, 80, PROXY_PORT, "proxy-v2")),
    );
    const N: usize = 5;
    let client = format!(
        r#"
import socket
for _ in range({N}):
    s = socket.socket()
    s.settimeout(20)
    s.sendto(b"GET /whoami HTTP/1.0\r\n\r\n", socket.MSG_FASTOPEN, ("{VIP}", 80))
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print(s.getsockname()[1], data.split(b"\r\n\r\n", 1)[-1].decode().strip())
    s.close()
"#
    );
    let out = tb.exec_ok("client", &["python3", "-c", &client]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), N, "{out}");
    for line in lines {
        let (port, body) = line.split_once(' ').unwrap();
        assert_eq!(body, format!("r1 client={CLIENT_ADDR}:{port}"), "{out}");
    }
    assert_eq!(assert_every_header_names_the_client(&logs, 80), N);
    let stopped = stop(lb);
    stopped.assert_exactly(
        "proxy_syn_data_trimmed",
        N as u64,
        "every SYN carried the request",
    );
    stopped.assert_exactly("proxy_headers_sent", N as u64, "one per connection");
}

#[test]
fn toa_names_the_client_on_the_first_ack_of_every_connection() {
    if !root_or_skip("toa_names_the_client_on_the_first_ack_of_every_connection") {
        return;
    }
    let tb = Testbed::up_routed(1);
    let log = tb.state_dir().join("toa.log");
    start_on_real(
        &tb,
        1,
        &["toa", &tb.port().to_string(), log.to_str().unwrap()],
        None,
        &log,
    );
    let lb = Sluice::start(
        &tb,
        &LbConfig::for_testbed(&tb).render(&service(&tb, 80, tb.port(), "toa")),
    );
    const CONNS: usize = 50;
    let mut ports = BTreeSet::new();
    for _ in 0..CONNS {
        let out = tb.exec_ok(
            "client",
            &[
                "curl",
                "-sS",
                "-f",
                "-m",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{local_port}",
                &format!("http://{VIP}/whoami"),
            ],
        );
        ports.insert(format!("{CLIENT_ADDR}:{}", out.trim()));
    }
    // The reader sees each connection's first ACK; give the last one a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let seen = loop {
        let text = common::read_lossy(&log);
        let seen: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("TOA "))
            .map(str::to_string)
            .collect();
        if seen.len() >= CONNS || Instant::now() > deadline {
            break seen;
        }
        thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(seen.len(), CONNS, "{}", seen.join("\n"));
    let mut named = BTreeSet::new();
    for line in &seen {
        let words: Vec<&str> = line.split_whitespace().collect();
        let via_ip = words[1].rsplit_once(':').unwrap().0;
        assert!(LADDRS.contains(&via_ip), "not from a local address: {line}");
        let client = words[2].strip_prefix("client=").unwrap();
        assert_ne!(client, "none", "a first ACK without the option: {line}");
        named.insert(client.to_string());
    }
    assert_eq!(
        named, ports,
        "the options name each connection's client address and port"
    );
    // The server itself still sees the local address: that is FULLNAT.
    assert!(!tb.real_log(1).contains(CLIENT_ADDR), "{}", tb.real_log(1));

    let stopped = stop(lb);
    stopped.assert_at_least("toa_added", CONNS as u64, "every first ACK");
    stopped.assert_exactly("toa_no_room", 0, "Linux's ACKs have room");
}
