//! Harness for the namespace integration tests: a testbed of network namespaces
//! (scripts/testbed.sh) and the real `sluice` binary running inside it.
//!
//! Every test brings up its own testbed under a unique name and tears it down on drop,
//! also when the test panics. The tests need root; see [`root_or_skip`].
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
pub const CLIENT_ADDR: &str = "10.10.0.2";
pub const VIP: &str = "10.10.0.100";
/// FULLNAT local addresses the tests give sluice (on lb-lan's subnet, 192.168.10.0/24).
pub const LADDRS: [&str; 2] = ["192.168.10.100", "192.168.10.101"];
/// The routed topology's router, on the lan side: sluice's next hop to the reals.
pub const ROUTER_LAN_ADDR: &str = "192.168.10.254";
/// The routed topology's real-server subnet, behind the router.
pub const ROUTED_REAL_NET: &str = "172.16.0.0/24";

const READY_LINE: &str = "sluice: ready";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const STATE_ROOT: &str = "/tmp/sluice-testbed";

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn script(name: &str) -> PathBuf {
    repo_root().join("scripts").join(name)
}

fn is_root() -> bool {
    // The effective uid is the second field of the Uid line.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Whether a namespace test may run. Not root and `CI` unset: prints why and returns false
/// (the test then returns early). Not root in CI: fails, because CI must run these tests.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root (network namespaces, DPDK af_packet) and CI is set: these tests must run in CI, not skip");
    }
    // Straight to stderr: libtest captures eprintln! of passing tests, and a skip should show.
    let _ = writeln!(
        std::io::stderr(),
        "{test}: SKIPPED: needs root (network namespaces, DPDK af_packet); run scripts/test.sh as root"
    );
    false
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Testbeds left behind by test processes that died without unwinding (SIGKILL, Ctrl-C):
/// their names are `sl<pid>x<n>`, so a dead pid marks them stale.
fn remove_stale_testbeds() {
    let out = run(Command::new("ip").args(["netns", "list"]));
    let mut stale: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let ns = line.split_whitespace().next().unwrap_or("");
        let Some(name) = ns.split('-').next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("sl") else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('x') else {
            continue;
        };
        let (Ok(pid), true) = (pid.parse::<u32>(), n.chars().all(|c| c.is_ascii_digit())) else {
            continue;
        };
        if !n.is_empty() && !pid_alive(pid) && !stale.iter().any(|s| s == name) {
            stale.push(name.to_string());
        }
    }
    for name in stale {
        eprintln!("removing stale testbed {name}");
        run(Command::new(script("testbed.sh")).args(["down", &name]));
    }
}

/// One testbed: `NAME-client`, `NAME-lb`, `NAME-sw`, `NAME-r1..rN`, plus `NAME-rt` when
/// routed (see scripts/testbed.sh).
pub struct Testbed {
    name: String,
    reals: usize,
    port: u16,
    routed: bool,
    dir: PathBuf,
    next_sluice: AtomicUsize,
}

impl Testbed {
    /// Brings up the flat (NAT) testbed with `reals` real servers serving HTTP on port 8080:
    /// the reals are on lb-lan's subnet at 192.168.10.(1+K) and route back through sluice.
    pub fn up(reals: usize) -> Testbed {
        Testbed::up_with(reals, 8080, false)
    }

    pub fn up_with_port(reals: usize, port: u16) -> Testbed {
        Testbed::up_with(reals, port, false)
    }

    /// Brings up the routed (FULLNAT) testbed: the reals sit at 172.16.0.(1+K) behind a
    /// router (`rt`, 192.168.10.254 on the lan bridge) that has no route to the client
    /// network, so only traffic sourced from sluice's local addresses can be answered.
    pub fn up_routed(reals: usize) -> Testbed {
        Testbed::up_with(reals, 8080, true)
    }

    pub fn up_with(reals: usize, port: u16, routed: bool) -> Testbed {
        Testbed::up_full(reals, port, routed, true)
    }

    /// The flat testbed with checksum and segmentation offloads turned off on every veth
    /// (`testbed.sh --offloads off`); the others keep the kernel's defaults, as containers do.
    pub fn up_offloads_off(reals: usize) -> Testbed {
        Testbed::up_full(reals, 8080, false, false)
    }

    fn up_full(reals: usize, port: u16, routed: bool, default_offloads: bool) -> Testbed {
        remove_stale_testbeds();
        let name = format!(
            "sl{}x{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let testbed = Testbed {
            dir: Path::new(STATE_ROOT).join(&name),
            name,
            reals,
            port,
            routed,
            next_sluice: AtomicUsize::new(0),
        };
        let reals_arg = reals.to_string();
        let port_arg = port.to_string();
        let mut args = vec![
            "up",
            &testbed.name,
            "--reals",
            &reals_arg,
            "--port",
            &port_arg,
        ];
        if routed {
            args.push("--routed");
        }
        if !default_offloads {
            args.extend(["--offloads", "off"]);
        }
        let out = run(Command::new(script("testbed.sh")).args(&args));
        if !out.status.success() {
            // `up` tears down after itself; dropping `testbed` makes sure.
            panic!(
                "{}",
                describe(&format!("testbed.sh up {}", testbed.name), &out)
            );
        }
        testbed
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn reals(&self) -> usize {
        self.reals
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this is the routed (FULLNAT) topology.
    pub fn is_routed(&self) -> bool {
        self.routed
    }

    /// Real server `k`'s address (1-based): 192.168.10.(1+k) flat, 172.16.0.(1+k) routed.
    pub fn real_addr(&self, k: usize) -> String {
        assert!((1..=self.reals).contains(&k), "no real server r{k}");
        if self.routed {
            format!("172.16.0.{}", 1 + k)
        } else {
            format!("192.168.10.{}", 1 + k)
        }
    }

    /// Every real server as `("IP:PORT", weight)`, for a `[[service]]` block.
    pub fn reals_at(&self, port: u16, weight: u32) -> Vec<(String, u32)> {
        (1..=self.reals)
            .map(|k| (format!("{}:{port}", self.real_addr(k)), weight))
            .collect()
    }

    /// The namespace of a role: client, lb, sw, rt (routed), r1..rN.
    pub fn netns(&self, role: &str) -> String {
        format!("{}-{}", self.name, role)
    }

    /// /tmp/sluice-testbed/NAME: pids, logs, configs. Removed by `down`.
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// Files the real servers serve (all of them share it).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Real server `k`'s request log: one `IP:PORT tcp GET /path` or `IP:PORT udp LEN` a line.
    pub fn real_log(&self, k: usize) -> String {
        fs::read_to_string(self.dir.join(format!("r{k}.log"))).unwrap_or_default()
    }

    /// Runs `args` inside the namespace of `role`.
    pub fn exec(&self, role: &str, args: &[&str]) -> Output {
        assert!(!args.is_empty(), "exec: no command");
        run(Command::new("ip")
            .args(["netns", "exec", &self.netns(role)])
            .args(args))
    }

    /// Like [`Testbed::exec`], but panics (with the output) unless it exits 0; returns stdout.
    pub fn exec_ok(&self, role: &str, args: &[&str]) -> String {
        let out = self.exec(role, args);
        if !out.status.success() {
            panic!("{}", describe(&format!("in {role}: {args:?}"), &out));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The MAC address of `iface` in the namespace of `role`, lowercase `aa:bb:..`.
    pub fn mac_of(&self, role: &str, iface: &str) -> String {
        let out = run(Command::new("ip").args([
            "-n",
            &self.netns(role),
            "-o",
            "link",
            "show",
            "dev",
            iface,
        ]));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        while let Some(word) = words.next() {
            if word == "link/ether" {
                if let Some(mac) = words.next() {
                    return mac.to_ascii_lowercase();
                }
            }
        }
        panic!(
            "{}",
            describe(&format!("no MAC for {iface} in {role}"), &out)
        );
    }

    /// `curl` from the client namespace (silent, errors shown, bounded in time).
    pub fn curl(&self, args: &[&str]) -> Output {
        let mut full = vec!["curl", "-sS", "--connect-timeout", "10", "-m", "60"];
        full.extend_from_slice(args);
        self.exec("client", &full)
    }

    /// GET `url` from the client; panics unless it succeeds; returns the body.
    pub fn curl_ok(&self, url: &str) -> String {
        let out = self.curl(&["-f", url]);
        if !out.status.success() {
            panic!("{}", describe(&format!("curl {url} from client"), &out));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `args` inside the namespace of `role` without waiting; stdout is piped,
    /// stderr goes to a file in the state dir (returned). The caller waits for the child.
    pub fn spawn(&self, role: &str, args: &[&str], stderr_name: &str) -> (Child, PathBuf) {
        assert!(!args.is_empty(), "spawn: no command");
        let stderr_path = self.dir.join(stderr_name);
        let stderr = fs::File::create(&stderr_path)
            .unwrap_or_else(|e| panic!("create {stderr_path:?}: {e}"));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns(role)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        (child, stderr_path)
    }

    /// Writes `size` random bytes to the reals' data dir as `name`, downloads
    /// `http://VIP[:port]/name` (`url`) from the client and asserts the copy is whole and
    /// identical (sha256). Returns how long the download took.
    pub fn assert_download_intact(&self, name: &str, url: &str, size: u64) -> Duration {
        let blob = self.data_dir().join(name);
        {
            let mut random = fs::File::open("/dev/urandom").expect("open /dev/urandom");
            let mut file = fs::File::create(&blob).expect("create blob");
            let copied =
                std::io::copy(&mut Read::take(&mut random, size), &mut file).expect("write blob");
            assert_eq!(copied, size);
        }
        let download = self.dir.join(format!("{name}.download"));
        let started = Instant::now();
        let out = self.curl(&[
            "-f",
            "-m",
            "50",
            "-o",
            download.to_str().expect("utf-8 path"),
            url,
        ]);
        let elapsed = started.elapsed();
        assert!(
            out.status.success(),
            "curl of the {size}-byte file {url} failed after {:.1} s ({}): {}",
            elapsed.as_secs_f64(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let got = fs::metadata(&download).map(|m| m.len()).unwrap_or(0);
        assert_eq!(got, size, "downloaded {got} bytes of {size} from {url}");
        assert_eq!(
            sha256_of(&download),
            sha256_of(&blob),
            "the {size}-byte file from {url} came through sluice corrupted"
        );
        let _ = fs::remove_file(&download);
        eprintln!(
            "{size} bytes through {url} in {:.2} s ({:.0} Mbit/s)",
            elapsed.as_secs_f64(),
            size as f64 * 8.0 / elapsed.as_secs_f64() / 1e6
        );
        elapsed
    }

    /// Stops real server `k` (its HTTP server and UDP echo): connections to it are refused.
    pub fn stop_real(&self, k: usize) {
        let out =
            run(Command::new(script("testbed.sh")).args(["stop-real", &self.name, &k.to_string()]));
        if !out.status.success() {
            panic!(
                "{}",
                describe(&format!("testbed.sh stop-real {} {k}", self.name), &out)
            );
        }
    }

    /// Starts real server `k` again; returns once it listens.
    pub fn start_real(&self, k: usize) {
        let out = run(Command::new(script("testbed.sh")).args([
            "start-real",
            &self.name,
            &k.to_string(),
        ]));
        if !out.status.success() {
            panic!(
                "{}",
                describe(&format!("testbed.sh start-real {} {k}", self.name), &out)
            );
        }
    }

    /// Makes real server `k` answer `GET /health` with `status` (None: 200 again).
    pub fn set_health_status(&self, k: usize, status: Option<u16>) {
        let path = self.data_dir().join(format!("health-r{k}"));
        match status {
            Some(s) => fs::write(&path, s.to_string()).expect("write the health file"),
            None => {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Runs scripts/concurrent.py in the client: `count` connections to `url` opened at
    /// once, then one request on each. Does not assert; see [`Concurrent::assert_all_ok`].
    pub fn concurrent(&self, count: usize, url: &str, timeout_s: u32) -> Concurrent {
        let tool = script("concurrent.py");
        let out = self.exec(
            "client",
            &[
                "python3",
                tool.to_str().expect("utf-8 path"),
                &count.to_string(),
                url,
                "--timeout",
                &timeout_s.to_string(),
            ],
        );
        Concurrent::parse(count, url, &out)
    }
}

/// (requests, errors) from wrk's summary on `stdout` (errors: socket errors of every kind
/// plus non-2xx/3xx responses); panics, showing both outputs, when there is no summary.
pub fn wrk_summary(stdout: &str, stderr: &str) -> (u64, u64) {
    let requests = stdout
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no wrk summary:\n{stdout}{stderr}"));
    let mut errors = 0;
    if let Some(l) = stdout.lines().find(|l| l.contains("Socket errors:")) {
        errors += l
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum::<u64>();
    }
    // "Non-2xx or 3xx responses: N": only the last number counts.
    if let Some(l) = stdout.lines().find(|l| l.contains("Non-2xx")) {
        errors += l
            .split_whitespace()
            .last()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
    }
    (requests, errors)
}

/// Parses a `/whoami` body, `NAME client=IP:PORT`, into (NAME, IP).
pub fn whoami(body: &str) -> (String, String) {
    let (name, ip, _port) = whoami_full(body);
    (name, ip)
}

/// Parses a `/whoami` body, `NAME client=IP:PORT`, into (NAME, IP, PORT).
pub fn whoami_full(body: &str) -> (String, String, u16) {
    let line = body.trim();
    let (name, rest) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("not a whoami answer: {body:?}"));
    let addr = rest
        .strip_prefix("client=")
        .unwrap_or_else(|| panic!("not a whoami answer: {body:?}"));
    let (ip, port) = addr
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no client port in {body:?}"));
    let port = port
        .parse()
        .unwrap_or_else(|_| panic!("bad client port in {body:?}"));
    (name.to_string(), ip.to_string(), port)
}

pub fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {path:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// The result of one scripts/concurrent.py run.
pub struct Concurrent {
    pub count: usize,
    pub url: String,
    pub ok: usize,
    pub failed: usize,
    /// Answers per real server name (r1, r2, ...).
    pub per_real: HashMap<String, usize>,
    /// The client addresses the reals reported, with how many answers each.
    pub per_client: HashMap<String, usize>,
    pub elapsed_s: f64,
    pub summary: String,
    pub output: String,
}

impl Concurrent {
    /// Reads concurrent.py's summary line (its last stdout line: `ok=N failed=M rK=..
    /// client:IP=.. elapsed=S`); panics if there is none.
    pub fn parse(count: usize, url: &str, out: &Output) -> Concurrent {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let output = describe(&format!("concurrent.py {count} {url}"), out);
        let summary = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("ok="))
            .unwrap_or_else(|| panic!("no summary line from concurrent.py\n{output}"))
            .to_string();
        let mut result = Concurrent {
            count,
            url: url.to_string(),
            ok: 0,
            failed: 0,
            per_real: HashMap::new(),
            per_client: HashMap::new(),
            elapsed_s: 0.0,
            summary: summary.clone(),
            output,
        };
        for field in summary.split_whitespace() {
            let Some((key, value)) = field.split_once('=') else {
                panic!("bad field {field:?} in {summary:?}");
            };
            match key {
                "ok" => result.ok = value.parse().expect("ok=N"),
                "failed" => result.failed = value.parse().expect("failed=N"),
                "elapsed" => result.elapsed_s = value.parse().expect("elapsed=S"),
                _ => {
                    let n: usize = value
                        .parse()
                        .unwrap_or_else(|_| panic!("bad count {field:?} in {summary:?}"));
                    match key.strip_prefix("client:") {
                        Some(ip) => result.per_client.insert(ip.to_string(), n),
                        None => result.per_real.insert(key.to_string(), n),
                    };
                }
            }
        }
        result
    }

    /// Asserts that every one of the `count` requests completed, and that the answers
    /// named real servers (so the bodies were `/whoami` answers, not something else).
    pub fn assert_all_ok(&self) {
        assert!(
            self.ok == self.count && self.failed == 0,
            "{} of {} simultaneous connections to {} completed ({}):\n{}",
            self.ok,
            self.count,
            self.url,
            self.summary,
            self.output
        );
        let named: usize = self.per_real.values().sum();
        assert_eq!(
            named,
            self.count,
            "{} answers did not name a real server: {}",
            self.count - named,
            self.summary
        );
    }

    /// Answers from real `name` (r1, r2, ...).
    pub fn real(&self, name: &str) -> usize {
        self.per_real.get(name).copied().unwrap_or(0)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if thread::panicking() {
            for k in 1..=self.reals {
                eprintln!("--- r{k} request log\n{}", self.real_log(k));
            }
        }
        let out = run(Command::new(script("testbed.sh")).args(["down", &self.name]));
        if !out.status.success() {
            eprintln!(
                "{}",
                describe(&format!("testbed.sh down {}", self.name), &out)
            );
        }
    }
}

/// A sluice configuration for a testbed: lb-wan = port 0 with 10.10.0.1/24, lb-lan =
/// port 1 with 192.168.10.1/24, `workers` worker lcores (each port gets a queue pair per
/// worker), and on the routed topology a route to the reals' subnet via the router.
#[derive(Clone, Debug)]
pub struct LbConfig {
    workers: usize,
    routed: bool,
    local_port_range: Option<(u16, u16)>,
    shared_memory: Option<String>,
}

impl Default for LbConfig {
    fn default() -> Self {
        LbConfig::new()
    }
}

impl LbConfig {
    /// One worker, flat topology (what [`config`] renders).
    pub fn new() -> LbConfig {
        LbConfig {
            workers: 1,
            routed: false,
            local_port_range: None,
            shared_memory: None,
        }
    }

    /// For `testbed`'s topology: routed testbeds get the route to 172.16.0.0/24.
    pub fn for_testbed(testbed: &Testbed) -> LbConfig {
        LbConfig {
            routed: testbed.is_routed(),
            ..LbConfig::new()
        }
    }

    /// Number of worker lcores (1 or more).
    pub fn workers(mut self, workers: usize) -> LbConfig {
        assert!(workers >= 1, "at least one worker");
        self.workers = workers;
        self
    }

    /// Adds `[[route]] 172.16.0.0/24 via 192.168.10.254` (the routed topology).
    pub fn routed(mut self, routed: bool) -> LbConfig {
        self.routed = routed;
        self
    }

    /// `dataplane.local_port_range = [first, last]` (FULLNAT local ports).
    pub fn local_port_range(mut self, first: u16, last: u16) -> LbConfig {
        self.local_port_range = Some((first, last));
        self
    }

    /// EAL on hugepages with its shared files under `--file-prefix=PREFIX`, instead of
    /// `--no-huge --no-shconf`: what a secondary process such as `dpdk-dumpcap` needs to
    /// attach. Pair it with [`EalFiles`], which removes what EAL leaves behind.
    pub fn shared_memory(mut self, file_prefix: &str) -> LbConfig {
        self.shared_memory = Some(file_prefix.to_string());
        self
    }

    /// The `dpdk.eal` arguments. One worker: `-l 0-1`. N workers: `--lcores=0@0,1@0,2@1,..`
    /// (main lcore 0 on CPU 0, where it mostly sleeps; worker lcore K on CPU (K-1) mod
    /// CPUs) and `qpairs=N` on each af_packet vdev. Memory: `--no-huge -m 512 --no-shconf`
    /// (nothing shared, nothing left behind), or hugepages and shared files with
    /// [`LbConfig::shared_memory`].
    pub fn eal(&self) -> Vec<String> {
        let mut eal: Vec<String> = Vec::new();
        if self.workers == 1 {
            eal.extend(["-l".to_string(), "0-1".to_string()]);
        } else {
            let cpus = thread::available_parallelism().map_or(1, |n| n.get());
            let mut lcores = String::from("--lcores=0@0");
            for k in 1..=self.workers {
                lcores.push_str(&format!(",{k}@{}", (k - 1) % cpus));
            }
            eal.push(lcores);
        }
        eal.push("--no-pci".to_string());
        match &self.shared_memory {
            Some(prefix) => eal.push(format!("--file-prefix={prefix}")),
            None => eal.extend(
                ["--no-huge", "-m", "512", "--no-shconf"]
                    .iter()
                    .map(|s| s.to_string()),
            ),
        }
        let qpairs = if self.workers == 1 {
            String::new()
        } else {
            format!(",qpairs={}", self.workers)
        };
        eal.push(format!("--vdev=net_af_packet0,iface=lb-wan{qpairs}"));
        eal.push(format!("--vdev=net_af_packet1,iface=lb-lan{qpairs}"));
        eal
    }

    /// The whole TOML, with `services` ([[service]] blocks, verbatim) at the end.
    pub fn render(&self, services: &str) -> String {
        let eal = self
            .eal()
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut toml = format!("[dpdk]\neal = [{eal}]\n\n");
        if let Some((first, last)) = self.local_port_range {
            toml.push_str(&format!(
                "[dataplane]\nlocal_port_range = [{first}, {last}]\n\n"
            ));
        }
        toml.push_str(
            "[[interface]]\nport = 0\naddrs = [\"10.10.0.1/24\"]\n\n\
             [[interface]]\nport = 1\naddrs = [\"192.168.10.1/24\"]\n\n",
        );
        if self.routed {
            toml.push_str(&format!(
                "[[route]]\nprefix = \"{ROUTED_REAL_NET}\"\nvia = \"{ROUTER_LAN_ADDR}\"\n\n"
            ));
        }
        toml.push_str(services);
        toml.push('\n');
        toml
    }
}

/// The standard testbed config (lb-wan = port 0 with 10.10.0.1, lb-lan = port 1 with
/// 192.168.10.1, one worker) followed by `services` ([[service]] blocks, verbatim).
pub fn config(services: &str) -> String {
    LbConfig::new().render(services)
}

/// How a service forwards: IPVS NAT, or FULLNAT from the given local addresses.
#[derive(Clone, Copy, Debug)]
pub enum Mode<'a> {
    Nat,
    FullNat { laddrs: &'a [&'a str] },
}

/// A `[[service]]` block in `mode` on `vip` ("IP:PORT") over `reals` (("IP:PORT", weight)).
pub fn service_in<R: AsRef<str>>(
    mode: Mode,
    vip: &str,
    proto: &str,
    scheduler: &str,
    reals: &[(R, u32)],
) -> String {
    let mut s = format!("[[service]]\nvip = \"{vip}\"\nproto = \"{proto}\"\n");
    match mode {
        Mode::Nat => s.push_str("mode = \"nat\"\n"),
        Mode::FullNat { laddrs } => {
            let list = laddrs
                .iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ");
            s.push_str(&format!("mode = \"fullnat\"\nladdrs = [{list}]\n"));
        }
    }
    s.push_str(&format!("scheduler = \"{scheduler}\"\n"));
    for (addr, weight) in reals {
        s.push_str(&format!(
            "[[service.real]]\naddr = \"{}\"\nweight = {weight}\n",
            addr.as_ref()
        ));
    }
    s.push('\n');
    s
}

/// A NAT-mode `[[service]]` block on `vip` ("IP:PORT") over `reals` (("IP:PORT", weight)).
pub fn service<R: AsRef<str>>(
    vip: &str,
    proto: &str,
    scheduler: &str,
    reals: &[(R, u32)],
) -> String {
    service_in(Mode::Nat, vip, proto, scheduler, reals)
}

/// A FULLNAT `[[service]]` block from `laddrs` on `vip` over `reals`.
pub fn fullnat_service<R: AsRef<str>>(
    vip: &str,
    proto: &str,
    scheduler: &str,
    laddrs: &[&str],
    reals: &[(R, u32)],
) -> String {
    service_in(Mode::FullNat { laddrs }, vip, proto, scheduler, reals)
}

/// A running `sluice run --config FILE` inside the lb namespace.
pub struct Sluice {
    child: Option<Child>,
    config: PathBuf,
    /// Its control socket (in the testbed's state dir unless the config
    /// names one).
    socket: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

/// What a stopped sluice left: exit status, the counters it printed, its output.
pub struct Stopped {
    pub status: ExitStatus,
    /// True when it did not exit within 15 s of SIGINT and was killed.
    pub killed: bool,
    pub counters: HashMap<String, u64>,
    pub stdout: String,
    pub stderr: String,
}

pub fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Sends SIGHUP to `pid` (sluice reloads its configuration file).
pub fn signal_hup(pid: u32) {
    signal(pid, "-HUP");
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => return None,
        }
    }
}

/// Parses the `sluice counters:` block: one `  <name> <value>` line per counter.
pub fn parse_counters(stdout: &str) -> HashMap<String, u64> {
    let mut counters = HashMap::new();
    let mut in_block = false;
    for line in stdout.lines() {
        if line.trim_end() == "sluice counters:" {
            in_block = true;
            continue;
        }
        if !in_block {
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(name), Some(value), None) if line.starts_with(char::is_whitespace) => {
                if let Ok(value) = value.parse() {
                    counters.insert(name.to_string(), value);
                }
            }
            _ => in_block = false,
        }
    }
    counters
}

impl Sluice {
    /// Writes `config_toml` into the testbed's state dir, starts sluice in the lb namespace
    /// and waits (at most 30 s) for `sluice: ready`. Panics with its output otherwise.
    pub fn start(testbed: &Testbed, config_toml: &str) -> Sluice {
        let n = testbed.next_sluice.fetch_add(1, Ordering::Relaxed);
        let dir = testbed.state_dir();
        let config = dir.join(format!("sluice-{n}.toml"));
        let stdout_path = dir.join(format!("sluice-{n}.out"));
        let stderr_path = dir.join(format!("sluice-{n}.err"));
        // Each sluice gets its own control socket, unless the test chose one.
        let mut socket = dir.join(format!("sluice-{n}.sock"));
        let mut toml = config_toml.to_string();
        match toml.lines().find_map(|l| {
            l.trim()
                .strip_prefix("socket = \"")
                .and_then(|r| r.strip_suffix('"'))
        }) {
            Some(chosen) => socket = PathBuf::from(chosen),
            None if !toml.contains("[control]") => {
                toml.push_str(&format!("\n[control]\nsocket = \"{}\"\n", socket.display()));
            }
            None => {
                toml = toml.replacen(
                    "[control]\n",
                    &format!("[control]\nsocket = \"{}\"\n", socket.display()),
                    1,
                );
            }
        }
        fs::write(&config, &toml).unwrap_or_else(|e| panic!("write {config:?}: {e}"));
        let stdout = fs::File::create(&stdout_path).expect("create sluice stdout file");
        let stderr = fs::File::create(&stderr_path).expect("create sluice stderr file");
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &testbed.netns("lb"),
            SLUICE,
            "run",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        // `ip netns exec` execs sluice, so this pid is sluice's.
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let mut sluice = Sluice {
            child: Some(child),
            config,
            socket,
            stdout_path,
            stderr_path,
        };
        sluice.wait_ready();
        sluice
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.stdout().lines().any(|l| l.trim_end() == READY_LINE) {
                return;
            }
            let child = self.child.as_mut().expect("sluice child");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                panic!(
                    "sluice exited before `{READY_LINE}` ({status})\n{}",
                    self.output_dump()
                );
            }
            if Instant::now() >= deadline {
                if let Some(mut child) = self.child.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                panic!(
                    "sluice not ready within {} s\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.output_dump()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Its control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs `sluice ctl --socket SOCKET ARGS...` (on the host: the socket is
    /// a file, reachable from any namespace).
    pub fn ctl(&self, args: &[&str]) -> Output {
        run(Command::new(SLUICE)
            .arg("ctl")
            .arg("--socket")
            .arg(&self.socket)
            .args(args))
    }

    /// `ctl` that must succeed; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        if !out.status.success() {
            panic!(
                "{}\n{}",
                describe(&format!("sluice ctl {args:?}"), &out),
                self.output_dump()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    fn output_dump(&self) -> String {
        format!(
            "--- sluice stdout\n{}\n--- sluice stderr\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Sends SIGINT and waits for exit; SIGKILL after 15 s (and says so).
    pub fn stop(mut self) -> Stopped {
        let mut child = self.child.take().expect("sluice already stopped");
        let mut killed = false;
        let status = match child.try_wait() {
            Ok(Some(status)) => {
                eprintln!("sluice had already exited ({status}) before stop");
                status
            }
            _ => {
                signal(child.id(), "-INT");
                match wait_timeout(&mut child, STOP_TIMEOUT) {
                    Some(status) => status,
                    None => {
                        eprintln!(
                            "sluice did not exit within {} s of SIGINT: sending SIGKILL",
                            STOP_TIMEOUT.as_secs()
                        );
                        killed = true;
                        let _ = child.kill();
                        child.wait().expect("wait for killed sluice")
                    }
                }
            }
        };
        let stdout = self.stdout();
        let stderr = self.stderr();
        Stopped {
            status,
            killed,
            counters: parse_counters(&stdout),
            stdout,
            stderr,
        }
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
            if thread::panicking() {
                eprintln!("{}", self.output_dump());
            }
        }
    }
}

impl Stopped {
    /// The counter `name`; panics (showing the output) when sluice did not print it.
    pub fn counter(&self, name: &str) -> u64 {
        match self.counters.get(name) {
            Some(&v) => v,
            None => panic!("sluice printed no counter `{name}`\n{}", self.dump()),
        }
    }

    /// Asserts counter `name` >= `min`; `why` says what the test did to expect it.
    pub fn assert_at_least(&self, name: &str, min: u64, why: &str) {
        let value = self.counter(name);
        assert!(
            value >= min,
            "counter {name} = {value}, expected >= {min} ({why})\n{}",
            self.dump()
        );
    }

    /// Asserts counter `name` == `expected`; `why` says why it must be exactly that.
    pub fn assert_exactly(&self, name: &str, expected: u64, why: &str) {
        let value = self.counter(name);
        assert!(
            value == expected,
            "counter {name} = {value}, expected exactly {expected} ({why})\n{}",
            self.dump()
        );
    }

    /// Asserts a clean stop: exit 0 on SIGINT, not killed.
    pub fn assert_clean_exit(&self) {
        assert!(
            !self.killed,
            "sluice ignored SIGINT for 15 s and was killed\n{}",
            self.dump()
        );
        assert!(
            self.status.success(),
            "sluice exited with {}\n{}",
            self.status,
            self.dump()
        );
    }

    pub fn dump(&self) -> String {
        format!(
            "status: {}{}\n--- sluice stdout\n{}\n--- sluice stderr (last 60 lines)\n{}",
            self.status,
            if self.killed {
                " (killed after SIGINT timeout)"
            } else {
                ""
            },
            self.stdout,
            tail(&self.stderr, 60)
        )
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where EAL keeps a primary process's shared files (config, memory maps, the IPC socket)
/// when it runs as root.
const EAL_RUNTIME_ROOT: &str = "/var/run/dpdk";

/// The mount points of every hugetlbfs.
fn hugetlbfs_mounts() -> Vec<PathBuf> {
    fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == "hugetlbfs").then(|| PathBuf::from(dir))
        })
        .collect()
}

/// Free 2 MiB hugepages, and whether a 2 MiB hugetlbfs is mounted for EAL to use.
fn free_2m_hugepages() -> (u64, bool) {
    let free = fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let default_2m = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Hugepagesize:") && l.contains(" 2048 kB"));
    let mounted = fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[2] == "hugetlbfs"
                && (f[3].contains("pagesize=2M") || (!f[3].contains("pagesize=") && default_2m))
        });
    (free, mounted)
}

/// Panics, saying what to do, unless at least `pages` 2 MiB hugepages are free and a
/// hugetlbfs for them is mounted. scripts/setup-host.sh reserves 512 and mounts
/// /dev/hugepages; a test that needs hugepages must not quietly pass without them.
pub fn require_free_hugepages(test: &str, pages: u64) {
    let (free, mounted) = free_2m_hugepages();
    assert!(
        mounted,
        "{test}: needs a hugetlbfs of 2 MiB pages mounted (e.g. /dev/hugepages); none is in \
         /proc/mounts. Run scripts/setup-host.sh, or: mkdir -p /dev/hugepages && \
         mount -t hugetlbfs nodev /dev/hugepages"
    );
    assert!(
        free >= pages,
        "{test}: needs {pages} free 2 MiB hugepages ({} MiB) for sluice and dpdk-dumpcap, \
         but only {free} are free (/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages). \
         Run scripts/setup-host.sh (reserves 512), or raise /proc/sys/vm/nr_hugepages; \
         leftover files of dead DPDK processes in the hugetlbfs mounts also hold pages",
        pages * 2
    );
}

/// The files a DPDK primary process with `--file-prefix=PREFIX` leaves behind (EAL does not
/// remove them at exit): hugepage files `PREFIXmap_*` in every hugetlbfs mount, which keep
/// their pages reserved, and the runtime directory /var/run/dpdk/PREFIX. Removed on drop,
/// so declare it before the process that creates them (it must drop after that process).
pub struct EalFiles {
    prefix: String,
}

impl EalFiles {
    /// Also removes the files of earlier test processes that died without cleaning up
    /// (prefixes `sl<pid>x<n>` of a dead pid, as the testbed names).
    pub fn new(prefix: &str) -> EalFiles {
        if let Ok(entries) = fs::read_dir(EAL_RUNTIME_ROOT) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = test_prefix_pid(&name) {
                    if !pid_alive(pid) {
                        eprintln!("removing EAL files of dead test process {pid} ({name})");
                        remove_eal_files(&name);
                    }
                }
            }
        }
        EalFiles {
            prefix: prefix.to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// The pid in a test prefix `sl<pid>x<n>`.
fn test_prefix_pid(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix("sl")?.split_once('x')?;
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

fn remove_eal_files(prefix: &str) {
    let map_prefix = format!("{prefix}map_");
    for mount in hugetlbfs_mounts() {
        if let Ok(entries) = fs::read_dir(&mount) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&map_prefix) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
    let _ = fs::remove_dir_all(Path::new(EAL_RUNTIME_ROOT).join(prefix));
}

impl Drop for EalFiles {
    fn drop(&mut self) {
        remove_eal_files(&self.prefix);
    }
}
