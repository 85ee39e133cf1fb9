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

/// One testbed: `NAME-client`, `NAME-lb`, `NAME-sw`, `NAME-r1..rN` (see scripts/testbed.sh).
pub struct Testbed {
    name: String,
    reals: usize,
    port: u16,
    dir: PathBuf,
    next_sluice: AtomicUsize,
}

impl Testbed {
    /// Brings up a testbed with `reals` real servers serving HTTP on port 8080.
    pub fn up(reals: usize) -> Testbed {
        Testbed::up_with_port(reals, 8080)
    }

    pub fn up_with_port(reals: usize, port: u16) -> Testbed {
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
            next_sluice: AtomicUsize::new(0),
        };
        let out = run(Command::new(script("testbed.sh")).args([
            "up",
            &testbed.name,
            "--reals",
            &reals.to_string(),
            "--port",
            &port.to_string(),
        ]));
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

    /// The namespace of a role: client, lb, sw, r1..rN.
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

/// The standard testbed config (lb-wan = port 0 with 10.10.0.1, lb-lan = port 1 with
/// 192.168.10.1) followed by `services` ([[service]] blocks, verbatim).
pub fn config(services: &str) -> String {
    format!(
        r#"[dpdk]
eal = ["-l", "0-1", "--no-pci", "--no-huge", "-m", "512", "--no-shconf", "--vdev=net_af_packet0,iface=lb-wan", "--vdev=net_af_packet1,iface=lb-lan"]

[[interface]]
port = 0
addrs = ["10.10.0.1/24"]

[[interface]]
port = 1
addrs = ["192.168.10.1/24"]

{services}
"#
    )
}

/// A NAT-mode `[[service]]` block on `vip` ("IP:PORT") over `reals` (("IP:PORT", weight)).
pub fn service(vip: &str, proto: &str, scheduler: &str, reals: &[(&str, u32)]) -> String {
    let mut s = format!(
        "[[service]]\nvip = \"{vip}\"\nproto = \"{proto}\"\nmode = \"nat\"\nscheduler = \"{scheduler}\"\n"
    );
    for (addr, weight) in reals {
        s.push_str(&format!(
            "[[service.real]]\naddr = \"{addr}\"\nweight = {weight}\n"
        ));
    }
    s.push('\n');
    s
}

/// A running `sluice run --config FILE` inside the lb namespace.
pub struct Sluice {
    child: Option<Child>,
    config: PathBuf,
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

fn read_lossy(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
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
        fs::write(&config, config_toml).unwrap_or_else(|e| panic!("write {config:?}: {e}"));
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
