//! Live packet capture: `dpdk-dumpcap` attached to a running sluice.
//!
//! dpdk-dumpcap is a DPDK secondary process: it maps sluice's hugepage memory through
//! EAL's shared files (/var/run/dpdk/PREFIX) and asks sluice's pdump server to copy a
//! port's rx and tx bursts into a ring of its own. So sluice runs here on hugepages with
//! shared files under a unique `--file-prefix` (not the `--no-huge --no-shconf` of the
//! other namespace tests), and the test checks that what dumpcap writes is what went
//! through: a curl's SYN and GET, on the client side and, translated, on the real
//! server side. Needs root and 64 free 2 MiB hugepages (scripts/setup-host.sh reserves
//! 512); run with `--test-threads=1` like the other namespace tests.

mod common;

use common::{
    read_lossy, require_free_hugepages, root_or_skip, service, signal, wait_timeout, whoami,
    EalFiles, LbConfig, Sluice, Testbed, CLIENT_ADDR, VIP,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const DUMPCAP: &str = "/usr/bin/dpdk-dumpcap";
/// 2 MiB pages: sluice takes about 23 (its mbuf pool is most of it), dumpcap about 8
/// (its own ring and copy pool); the rest is margin.
const HUGEPAGES_NEEDED: u64 = 64;
/// What dumpcap prints on stderr once the capture callbacks are in place.
const CAPTURING: &str = "Packets captured:";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `dpdk-dumpcap` writing one port's traffic to a pcapng file.
struct Dumpcap {
    child: Option<Child>,
    file: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Dumpcap {
    /// Starts capturing `interface` (a port name or index) of the primary process with
    /// `file_prefix` into `file` and waits until dumpcap says the capture runs. The
    /// duration bound is a backstop: the test stops it with SIGINT.
    fn start(file_prefix: &str, interface: &str, file: &Path) -> Dumpcap {
        let stem = file.with_extension("");
        let stdout = stem.with_extension("dumpcap.out");
        let stderr = stem.with_extension("dumpcap.err");
        let mut cmd = Command::new(DUMPCAP);
        cmd.arg(format!("--file-prefix={file_prefix}"))
            .args(["-i", interface, "-a", "duration:60", "-w"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("create dumpcap stdout file"))
            .stderr(fs::File::create(&stderr).expect("create dumpcap stderr file"));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let mut dumpcap = Dumpcap {
            child: Some(child),
            file: file.to_path_buf(),
            stdout,
            stderr,
        };
        dumpcap.wait_capturing();
        dumpcap
    }

    fn output(&self) -> String {
        format!(
            "--- dumpcap stdout\n{}\n--- dumpcap stderr\n{}",
            read_lossy(&self.stdout),
            read_lossy(&self.stderr)
        )
    }

    fn wait_capturing(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while !read_lossy(&self.stderr).contains(CAPTURING) {
            let child = self.child.as_mut().expect("dumpcap child");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "dpdk-dumpcap exited ({status}) before capturing\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "dpdk-dumpcap did not start capturing within {} s\n{}",
                START_TIMEOUT.as_secs(),
                self.output()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the capture as an operator would (Ctrl-C) and returns `tcpdump -nr FILE`.
    fn stop(mut self) -> String {
        // dumpcap drains its ring continuously; give the last packets a moment.
        thread::sleep(Duration::from_millis(300));
        self.interrupt();
        let out = Command::new("tcpdump")
            .arg("-nr")
            .arg(&self.file)
            .stdin(Stdio::null())
            .output()
            .expect("run tcpdump");
        assert!(
            out.status.success(),
            "tcpdump -r {:?}: {}\n{}\n{}",
            self.file,
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.output()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the capture (Ctrl-C) without reading what it wrote.
    fn stop_only(mut self) {
        self.interrupt();
    }

    /// SIGINT, then waits for a clean exit.
    fn interrupt(&mut self) {
        let mut child = self.child.take().expect("dumpcap already stopped");
        signal(child.id(), "-INT");
        let status = wait_timeout(&mut child, STOP_TIMEOUT).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "dpdk-dumpcap ignored SIGINT for {} s\n{}",
                STOP_TIMEOUT.as_secs(),
                self.output()
            )
        });
        assert!(
            status.success(),
            "dpdk-dumpcap: {status}\n{}",
            self.output()
        );
    }
}

impl Drop for Dumpcap {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if thread::panicking() {
                eprintln!("{}", self.output());
            }
        }
    }
}

/// Asserts that `dump` (tcpdump -n output) holds a SYN from the client to `dst` and the
/// client's `GET /whoami`, and returns the client port the SYN came from.
fn assert_syn_and_get(dump: &str, dst: &str, what: &str) -> String {
    let syn = dump
        .lines()
        .find(|l| {
            l.contains(&format!(" IP {CLIENT_ADDR}."))
                && l.contains(&format!(" > {dst}: Flags [S],"))
        })
        .unwrap_or_else(|| panic!("{what}: no SYN {CLIENT_ADDR} > {dst} in the capture:\n{dump}"));
    let client_port = syn
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{CLIENT_ADDR}.")))
        .expect("client port in the SYN line")
        .to_string();
    let from = format!(" IP {CLIENT_ADDR}.{client_port} > {dst}: ");
    assert!(
        dump.lines()
            .any(|l| l.starts_with(|c: char| c.is_ascii_digit())
                && l.contains(&from)
                && l.contains("HTTP: GET /whoami")),
        "{what}: no GET /whoami from {CLIENT_ADDR}.{client_port} to {dst} in the capture:\n{dump}"
    );
    client_port
}

#[test]
fn dumpcap_captures_a_curl_through_the_vip_on_both_ports() {
    const TEST: &str = "dumpcap_captures_a_curl_through_the_vip_on_both_ports";
    if !root_or_skip(TEST) {
        return;
    }
    assert!(
        Path::new(DUMPCAP).exists(),
        "{DUMPCAP} is missing: apt-get install dpdk-dev (scripts/setup-host.sh does)"
    );
    require_free_hugepages(TEST, HUGEPAGES_NEEDED);
    let tb = Testbed::up(1);
    // Dropped after sluice: removes the hugepage files and runtime dir EAL leaves.
    let eal_files = EalFiles::new(tb.name());
    let prefix = eal_files.prefix().to_string();
    let toml = LbConfig::new().shared_memory(&prefix).render(&service(
        "10.10.0.100:80",
        "tcp",
        "rr",
        &[("192.168.10.2:8080", 1)],
    ));
    let lb = Sluice::start(&tb, &toml);
    // sluice names the command to run; the test runs exactly that.
    let announced = format!("dpdk-dumpcap --file-prefix={prefix} -i net_af_packet0 -w FILE.pcapng");
    assert!(
        lb.stderr().contains(&announced),
        "sluice did not log `{announced}`:\n{}",
        lb.stderr()
    );

    // The client side (port 0): the client talks to the VIP.
    let wan = Dumpcap::start(
        &prefix,
        "net_af_packet0",
        &tb.state_dir().join("wan.pcapng"),
    );
    let (real, seen) = whoami(&tb.curl_ok(&format!("http://{VIP}/whoami")));
    assert_eq!((real.as_str(), seen.as_str()), ("r1", CLIENT_ADDR));
    let dump = wan.stop();
    let port = assert_syn_and_get(&dump, &format!("{VIP}.80"), "port 0 (client side)");
    // Both directions are captured: the VIP's SYN-ACK back to the client.
    assert!(
        dump.lines()
            .any(|l| l.contains(&format!(" IP {VIP}.80 > {CLIENT_ADDR}.{port}: Flags [S.],"))),
        "port 0: no SYN-ACK from the VIP (tx side) in the capture:\n{dump}"
    );

    // A second capture after the first one ended (its callbacks must be gone, or
    // enabling again fails), on the real-server side (port 1, by index): the same kind
    // of connection, translated to the real server.
    let lan = Dumpcap::start(&prefix, "1", &tb.state_dir().join("lan.pcapng"));
    tb.curl_ok(&format!("http://{VIP}/whoami"));
    let dump = lan.stop();
    assert_syn_and_get(&dump, "192.168.10.2.8080", "port 1 (real-server side)");
    assert!(
        !dump.contains(&format!("> {VIP}.80:")),
        "port 1 saw untranslated packets to the VIP:\n{dump}"
    );

    let stopped = lb.stop();
    stopped.assert_clean_exit();
    stopped.assert_at_least("conns", 2, "two curls through the VIP");
    drop(eal_files);
}

/// Stopping a capture while the workers copy packets into dumpcap's pool at full speed:
/// DPDK 22.11's own pdump server answers the stop while a worker may still be inside the
/// capture callback, and dumpcap then frees that pool under it (a SIGSEGV about one stop in
/// four at 5 Mpps). sluice's server answers once no worker can be inside. net_null feeds
/// the worker tens of millions of packets a second (all dropped as not for sluice, but
/// each rx burst goes through the capture callback first).
#[test]
fn stopping_captures_at_full_rate_never_crashes_sluice() {
    const TEST: &str = "stopping_captures_at_full_rate_never_crashes_sluice";
    const ROUNDS: usize = 20;
    if !root_or_skip(TEST) {
        return;
    }
    assert!(
        Path::new(DUMPCAP).exists(),
        "{DUMPCAP} is missing (apt-get install dpdk-dev)"
    );
    require_free_hugepages(TEST, HUGEPAGES_NEEDED);
    let tb = Testbed::up(1);
    let eal_files = EalFiles::new(tb.name());
    let prefix = eal_files.prefix().to_string();
    let toml = format!(
        "[dpdk]\neal = [\"-l\", \"0-1\", \"--no-pci\", \"--file-prefix={prefix}\", \"--vdev=net_null0\"]\n\n\
         [[interface]]\nport = 0\naddrs = [\"10.10.0.1/24\"]\n\n{}",
        service("10.10.0.100:80", "tcp", "rr", &[("10.10.0.2:8080", 1)])
    );
    let mut lb = Sluice::start(&tb, &toml);
    for round in 1..=ROUNDS {
        let file = tb.state_dir().join(format!("null-{round}.pcapng"));
        let capture = Dumpcap::start(&prefix, "0", &file);
        thread::sleep(Duration::from_millis(150));
        capture.stop_only();
        let _ = fs::remove_file(&file);
        assert!(
            lb.is_running(),
            "sluice died when capture {round} of {ROUNDS} stopped\n{}",
            lb.stderr()
        );
    }
    let stopped = lb.stop();
    stopped.assert_clean_exit();
    stopped.assert_at_least("rx_packets", 1_000_000, "net_null at full rate");
    let started = stopped.stderr.matches("capture: started on port 0").count();
    let ended = stopped.stderr.matches("capture: stopped on port 0").count();
    assert_eq!(
        (started, ended),
        (ROUNDS, ROUNDS),
        "sluice did not log every capture start and stop\n{}",
        stopped.dump()
    );
    drop(eal_files);
}

#[test]
fn without_shared_files_sluice_says_capture_is_unavailable() {
    const TEST: &str = "without_shared_files_sluice_says_capture_is_unavailable";
    if !root_or_skip(TEST) {
        return;
    }
    let tb = Testbed::up(1);
    // The default test set-up: --no-huge --no-shconf.
    let toml = LbConfig::new().render(&service(
        "10.10.0.100:80",
        "tcp",
        "rr",
        &[("192.168.10.2:8080", 1)],
    ));
    let lb = Sluice::start(&tb, &toml);
    let log = lb.stderr();
    assert!(
        log.contains("packet capture unavailable: EAL runs with --no-huge"),
        "sluice did not say why capture is unavailable:\n{log}"
    );
    assert!(!log.contains("dpdk-dumpcap --file-prefix"), "{log}");
    lb.stop().assert_clean_exit();
}
