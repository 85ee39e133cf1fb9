//! The SYN proxy with real clients, real servers and a real SYN flood
//! (hping3). Namespace tests over the real binary; root only.

mod common;

use common::{
    config, fullnat_service, root_or_skip, whoami, LbConfig, Sluice, Testbed, LADDRS, VIP,
};
use std::fs;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// VIP:80 -> r1, r2 with `synproxy = MODE`.
fn proxied(mode: &str) -> String {
    format!(
        "[[service]]\nvip = \"10.10.0.100:80\"\nproto = \"tcp\"\nscheduler = \"rr\"\n\
         synproxy = {mode}\n\
         [[service.real]]\naddr = \"192.168.10.2:8080\"\n\
         [[service.real]]\naddr = \"192.168.10.3:8080\"\n"
    )
}

#[test]
fn proxied_connections_carry_http_and_50_mb_intact() {
    if !root_or_skip("proxied_connections_carry_http_and_50_mb_intact") {
        return;
    }
    let tb = Testbed::up(2);
    let lb = Sluice::start(&tb, &config(&proxied("true")));
    for _ in 0..4 {
        let (real, seen) = whoami(&tb.curl_ok(&format!("http://{VIP}/whoami")));
        assert!(real == "r1" || real == "r2");
        assert_eq!(seen, "10.10.0.2", "NAT through the proxy keeps the client");
    }
    tb.assert_download_intact(
        "proxied.bin",
        &format!("http://{VIP}/proxied.bin"),
        50 << 20,
    );
    let c = tb.concurrent(200, &format!("http://{VIP}/whoami"), 60);
    c.assert_all_ok();
    let stopped = lb.stop();
    stopped.assert_clean_exit();
    stopped.assert_at_least(
        "synproxy_cookies_sent",
        205,
        "every SYN answered with a cookie",
    );
    stopped.assert_at_least("synproxy_handshakes", 205, "every connection spliced");
    stopped.assert_exactly(
        "drop_synproxy_bad_cookie",
        0,
        "real clients echo their cookie",
    );
}

#[test]
fn proxied_fullnat_on_the_routed_topology() {
    if !root_or_skip("proxied_fullnat_on_the_routed_topology") {
        return;
    }
    let tb = Testbed::up_routed(2);
    let mut service = fullnat_service(
        "10.10.0.100:80",
        "tcp",
        "rr",
        &LADDRS,
        &tb.reals_at(8080, 1),
    );
    service = service.replace(
        "scheduler = \"rr\"\n",
        "scheduler = \"rr\"\nsynproxy = true\n",
    );
    let lb = Sluice::start(&tb, &LbConfig::for_testbed(&tb).render(&service));
    let (_, seen) = whoami(&tb.curl_ok(&format!("http://{VIP}/whoami")));
    assert!(LADDRS.contains(&seen.as_str()), "the real saw {seen}");
    tb.assert_download_intact("fn.bin", &format!("http://{VIP}/fn.bin"), 20 << 20);
    let stopped = lb.stop();
    stopped.assert_clean_exit();
    stopped.assert_at_least("synproxy_handshakes", 2, "both connections spliced");
}

/// `hping3` flooding the VIP with spoofed-source SYNs for `secs` seconds.
fn flood(tb: &Testbed, secs: u64) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", &tb.netns("client")])
        .args([
            "timeout",
            &format!("{secs}"),
            "hping3",
            "-S",
            "--flood",
            "--rand-source",
            "-p",
            "80",
            VIP,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run hping3 (apt-get install hping3)")
}

fn rss_kb(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_spoofed_syn_flood_does_not_take_the_service_down() {
    if !root_or_skip("a_spoofed_syn_flood_does_not_take_the_service_down") {
        return;
    }
    let tb = Testbed::up(2);
    // The default: "auto".
    let lb = Sluice::start(&tb, &config(&proxied("\"auto\"")));
    let pid = lb.pid().unwrap();
    // A download that is established before the flood and runs through it.
    let size = 30u64 << 20;
    let blob = tb.data_dir().join("during.bin");
    {
        let mut f = fs::File::create(&blob).unwrap();
        let mut r = fs::File::open("/dev/urandom").unwrap();
        std::io::copy(&mut std::io::Read::take(&mut r, size), &mut f).unwrap();
    }
    let out = tb.state_dir().join("during.download");
    let mut download = Command::new("ip")
        .args(["netns", "exec", &tb.netns("client")])
        .args(["curl", "-sS", "-f", "--limit-rate", "3M", "-m", "60", "-o"])
        .arg(&out)
        .arg(format!("http://{VIP}/during.bin"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(500));
    let rss_before = rss_kb(pid);

    let mut hping = flood(&tb, 10);
    thread::sleep(Duration::from_millis(500));
    // A real client during the flood: one connection at a time.
    let started = Instant::now();
    let (mut tried, mut served) = (0, 0);
    while started.elapsed() < Duration::from_secs(8) {
        tried += 1;
        let r = tb.curl(&[
            "--connect-timeout",
            "3",
            "-m",
            "5",
            "-f",
            &format!("http://{VIP}/whoami"),
        ]);
        if r.status.success() {
            served += 1;
        }
    }
    let rss_during = rss_kb(pid);
    let _ = hping.wait();
    eprintln!("during the flood: {served} of {tried} connections served; RSS {rss_before} -> {rss_during} kB");
    assert!(
        served * 100 >= tried * 95,
        "only {served} of {tried} connections completed during the flood"
    );
    // Right after it: all of them.
    let c = tb.concurrent(50, &format!("http://{VIP}/whoami"), 30);
    c.assert_all_ok();
    let status = download.wait().unwrap();
    assert!(
        status.success(),
        "the download established before the flood failed"
    );
    assert_eq!(common::sha256_of(&out), common::sha256_of(&blob));
    assert!(
        rss_during < rss_before + 16 * 1024,
        "memory grew from {rss_before} to {rss_during} kB under the flood"
    );
    let stopped = lb.stop();
    stopped.assert_clean_exit();
    let cookies = stopped.counter("synproxy_cookies_sent");
    eprintln!(
        "synproxy_cookies_sent {cookies} (~{} per second), engaged {}, evicted {}, sessions_live {}",
        cookies / 10,
        stopped.counter("synproxy_engaged"),
        stopped.counter("sessions_evicted"),
        stopped.counter("sessions_live"),
    );
    stopped.assert_at_least("synproxy_engaged", 1, "the flood engaged the proxy");
    stopped.assert_at_least(
        "synproxy_cookies_sent",
        10_000,
        "the flood's SYNs were answered",
    );
}
