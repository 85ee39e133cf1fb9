//! The bare-metal kit in `deploy/`: each script in `--dry-run` on this machine (which has
//! no NIC to bind, and here no IOMMU), and on fake /sys, /proc and /etc trees
//! (`SLUICE_SYS`, `SLUICE_PROC`, `SLUICE_ETC`) that walk every branch of their checks.
//! Dry runs need no root. The tests that make a network namespace, or run a script for
//! real against a fake tree (the scripts refuse to change anything unless root), need it.

mod common;

use common::{repo_root, root_or_skip, SLUICE};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn kit(name: &str) -> PathBuf {
    repo_root().join("deploy").join(name)
}

/// What a script printed (stdout and stderr, in that order) and its exit status.
struct Run {
    code: i32,
    out: String,
}

impl Run {
    fn has(&self, text: &str) -> &Run {
        assert!(
            self.out.contains(text),
            "expected `{text}` in the output:\n{}",
            self.out
        );
        self
    }

    fn lacks(&self, text: &str) -> &Run {
        assert!(
            !self.out.contains(text),
            "did not expect `{text}` in the output:\n{}",
            self.out
        );
        self
    }

    fn exits(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit status {} instead of {code}; output:\n{}",
            self.code, self.out
        );
        self
    }
}

fn run_in(netns: Option<&str>, script: &str, args: &[&str], env: &[(&str, &Path)]) -> Run {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(kit(script));
            c
        }
        None => Command::new(kit(script)),
    };
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("run {script}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn run(script: &str, args: &[&str], env: &[(&str, &Path)]) -> Run {
    run_in(None, script, args, env)
}

/// A scratch directory for a fake tree, removed on drop.
struct Scratch(PathBuf);

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "sluice-deploy-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Writes `content` at `rel`, creating the directories on the way.
    fn file(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, content).expect("write fake file");
        p
    }

    fn dir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).expect("mkdir");
        p
    }

    fn link(&self, rel: &str, target: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        symlink(target, &p).expect("symlink");
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).expect("read fake file")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn read_trimmed(path: &str) -> String {
    fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn cmdline_has(param: &str) -> bool {
    read_trimmed("/proc/cmdline")
        .split_whitespace()
        .any(|w| w.starts_with(&format!("{param}=")))
}

// ---- hugepages.sh ----

#[test]
fn hugepages_dry_run_on_this_machine_says_what_it_would_do_and_changes_nothing() {
    let nr = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
    let before = read_trimmed(nr);
    let have: u64 = before.parse().expect("2 MiB hugepages in sysfs");
    let sysctl_file = Path::new("/etc/sysctl.d/80-sluice-hugepages.conf");
    let sysctl_before = fs::read_to_string(sysctl_file).ok();
    // More than anyone reserves here, so the dry run has something to do (another
    // program may change the reservation meanwhile: only "want" is asserted exactly).
    let want = (have + 100_000).to_string();

    let r = run("hugepages.sh", &["--dry-run", "--pages-2m", &want], &[]);
    r.exits(0)
        .has("hugepages: dry run: nothing will be changed")
        .has(&format!(" reserved, {want} asked"))
        .has(&format!("dry run: would write {want} to {nr}"))
        .has(&format!("vm.nr_hugepages = {want}"))
        .has("1 GiB pages: none asked");

    // 1 GiB pages: guidance for the kernel command line, and "not in place" (status 1).
    let r = run("hugepages.sh", &["--dry-run", "--pages-1g", "2"], &[]);
    if !Path::new("/sys/kernel/mm/hugepages/hugepages-1048576kB").exists() {
        r.exits(1).has("1 GiB pages: this CPU or kernel has none");
    } else if !read_trimmed("/proc/cmdline").contains("hugepagesz=1G hugepages=") {
        r.exits(1)
            .has("add to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub:")
            .has("    hugepagesz=1G hugepages=2")
            .has("left to do:");
    }

    assert_ne!(
        read_trimmed(nr),
        want,
        "a dry run wrote {nr} (it held {before})"
    );
    assert_eq!(
        fs::read_to_string(sysctl_file).ok(),
        sysctl_before,
        "a dry run changed {sysctl_file:?}"
    );
}

/// /sys, /proc and /etc for hugepages.sh: no pages reserved yet, both sizes mounted (so
/// the script never mounts anything for real), 1 GiB pages on the kernel command line.
fn fake_hugepage_tree(t: &Scratch) -> Vec<(&'static str, PathBuf)> {
    for size in ["2048kB", "1048576kB"] {
        t.file(
            &format!("sys/kernel/mm/hugepages/hugepages-{size}/nr_hugepages"),
            "0\n",
        );
        t.file(
            &format!("sys/kernel/mm/hugepages/hugepages-{size}/free_hugepages"),
            "0\n",
        );
    }
    t.file(
        "proc/meminfo",
        "MemTotal: 65536000 kB\nHugepagesize:       2048 kB\n",
    );
    t.file(
        "proc/mounts",
        "sysfs /sys sysfs rw 0 0\n\
         hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n\
         hugetlbfs /dev/hugepages1G hugetlbfs rw,relatime,pagesize=1024M 0 0\n",
    );
    t.file("proc/cmdline", "ro quiet hugepagesz=1G hugepages=2\n");
    t.dir("etc");
    vec![
        ("SLUICE_SYS", t.path("sys")),
        ("SLUICE_PROC", t.path("proc")),
        ("SLUICE_ETC", t.path("etc")),
    ]
}

fn env_of<'a>(v: &'a [(&'static str, PathBuf)]) -> Vec<(&'static str, &'a Path)> {
    v.iter().map(|(k, p)| (*k, p.as_path())).collect()
}

#[test]
fn hugepages_on_a_fake_tree_reserves_persists_and_is_safe_to_rerun() {
    if !root_or_skip("hugepages_on_a_fake_tree_reserves_persists_and_is_safe_to_rerun") {
        return;
    }
    let t = Scratch::new();
    let env = fake_hugepage_tree(&t);
    let env = env_of(&env);
    let args = ["--pages-2m", "128", "--pages-1g", "2"];

    run("hugepages.sh", &args, &env)
        .exits(0)
        .has("2 MiB pages: now 128 reserved")
        .has("80-sluice-hugepages.conf")
        .has("2 MiB pages: mounted at /dev/hugepages")
        .has("1 GiB pages: now 2 reserved")
        .has("the kernel command line reserves 2 at boot")
        .has("1 GiB pages: mounted at /dev/hugepages1G")
        .has("done: hugepages reserved and mounted");
    assert_eq!(
        t.read("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
            .trim(),
        "128"
    );
    assert!(t
        .read("etc/sysctl.d/80-sluice-hugepages.conf")
        .contains("\nvm.nr_hugepages = 128"));

    // Again: nothing left to do, nothing rewritten.
    run("hugepages.sh", &args, &env)
        .exits(0)
        .has("2 MiB pages: 128 reserved (0 free), 128 asked: nothing to do now")
        .has("80-sluice-hugepages.conf: up to date")
        .has("1 GiB pages: 2 reserved, 2 asked: nothing to do now");

    // Never lowers a reservation; a dry run with more changes nothing.
    run("hugepages.sh", &["--pages-2m", "64"], &env)
        .exits(0)
        .has("128 reserved (0 free), 64 asked: nothing to do now");
    run("hugepages.sh", &["--dry-run", "--pages-2m", "256"], &env)
        .exits(0)
        .has("would write 256 to");
    assert_eq!(
        t.read("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
            .trim(),
        "128"
    );
    assert!(t
        .read("etc/sysctl.d/80-sluice-hugepages.conf")
        .contains("\nvm.nr_hugepages = 64"));

    // A default hugepage size of 1 GiB: vm.nr_hugepages would count those.
    t.file("proc/meminfo", "Hugepagesize:    1048576 kB\n");
    run("hugepages.sh", &["--dry-run", "--pages-2m", "64"], &env)
        .exits(1)
        .has("not writing")
        .has("hugepagesz=2M hugepages=64");
}

// ---- bind-nics.sh ----

#[test]
fn bind_nics_dry_run_on_this_machine_with_no_nic_listed_says_so_and_checks_the_iommu() {
    let example = kit("etc/nics.conf.example");
    let r = run(
        "bind-nics.sh",
        &["--dry-run", "--config", example.to_str().expect("utf-8")],
        &[],
    );
    r.exits(0)
        .has("bind-nics: dry run: nothing will be changed")
        .has(&format!(
            "no NIC listed in {}: nothing to bind",
            example.display()
        ));
    let groups = fs::read_dir("/sys/kernel/iommu_groups")
        .map(|d| d.count())
        .unwrap_or(0);
    if groups == 0 {
        r.has("IOMMU: off: no IOMMU groups in /sys/kernel/iommu_groups")
            .has("vfio-pci needs the IOMMU")
            .has("Unsafe last resort")
            .has("enable_unsafe_noiommu_mode");
    } else {
        r.has(&format!("IOMMU: on ({groups} groups"));
    }

    // A missing list is no NIC listed, too (the unit must not fail on a fresh install).
    run(
        "bind-nics.sh",
        &["--dry-run", "--config", "/nonexistent/nics.conf"],
        &[],
    )
    .exits(0)
    .has("no NIC list at /nonexistent/nics.conf")
    .has("nothing to bind");
}

#[test]
fn bind_nics_refuses_vfio_pci_with_the_iommu_off() {
    let t = Scratch::new();
    t.dir("sys/kernel/iommu_groups");
    t.file("proc/cmdline", "ro quiet\n");
    t.file("proc/cpuinfo", "vendor_id\t: GenuineIntel\n");
    let list = t.file("nics.conf", "0000:03:00.0\n");
    let env = [
        ("SLUICE_SYS", t.path("sys")),
        ("SLUICE_PROC", t.path("proc")),
    ];
    run(
        "bind-nics.sh",
        &["--dry-run", "--config", list.to_str().expect("utf-8")],
        &env_of(&env),
    )
    .exits(1)
    .has("IOMMU: off")
    .has("add 'intel_iommu=on iommu=pt' to GRUB_CMDLINE_LINUX_DEFAULT")
    .has("enable_unsafe_noiommu_mode")
    .has("FAIL: not binding to vfio-pci with the IOMMU off")
    .lacks("would run");

    // The unsafe no-IOMMU mode, once turned on, lets it go ahead (with a warning).
    t.file(
        "sys/module/vfio/parameters/enable_unsafe_noiommu_mode",
        "Y\n",
    );
    t.dir("sys/bus/pci/drivers/vfio-pci");
    t.dir("sys/bus/pci/devices/0000:03:00.0");
    run(
        "bind-nics.sh",
        &["--dry-run", "--config", list.to_str().expect("utf-8")],
        &env_of(&env),
    )
    .has("vfio no-IOMMU mode is enabled (unsafe): binding anyway")
    .has("0000:03:00.0: on no driver: binding to vfio-pci");
}

/// A network namespace with an interface that has an address (one end of a veth pair:
/// the kernel here has no dummy driver), removed on drop.
struct Netns(String);

impl Netns {
    fn with_addressed_dummy(name: &str, ifname: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "delete", name]).output();
        let ns = Netns(name.to_string());
        for args in [
            vec!["netns", "add", name],
            vec![
                "-n", name, "link", "add", ifname, "type", "veth", "peer", "name", "slpeer0",
            ],
            vec!["-n", name, "addr", "add", "10.99.0.1/24", "dev", ifname],
            vec!["-n", name, "link", "set", ifname, "up"],
        ] {
            let out = Command::new("ip").args(&args).output().expect("run ip");
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

#[test]
fn bind_nics_dry_run_on_a_fake_tree_handles_each_kind_of_nic() {
    if !root_or_skip("bind_nics_dry_run_on_a_fake_tree_handles_each_kind_of_nic") {
        return;
    }
    assert!(
        Path::new("/usr/bin/dpdk-devbind.py").exists(),
        "/usr/bin/dpdk-devbind.py is missing: apt-get install dpdk (scripts/setup-host.sh does)"
    );
    let t = Scratch::new();
    for d in ["vfio-pci", "ixgbe", "mlx5_core"] {
        t.dir(&format!("sys/bus/pci/drivers/{d}"));
    }
    // PCI device `addr` on `driver`, with kernel interface `ifname`, in IOMMU `group`.
    let device = |addr: &str, driver: &str, ifname: &str, group: &str| {
        t.dir(&format!("sys/bus/pci/devices/{addr}"));
        if !driver.is_empty() {
            t.link(
                &format!("sys/bus/pci/devices/{addr}/driver"),
                &format!("../../drivers/{driver}"),
            );
        }
        if !ifname.is_empty() {
            t.dir(&format!("sys/bus/pci/devices/{addr}/net/{ifname}"));
        }
        if !group.is_empty() {
            t.link(
                &format!("sys/bus/pci/devices/{addr}/iommu_group"),
                &format!("../../../../kernel/iommu_groups/{group}"),
            );
            t.link(
                &format!("sys/kernel/iommu_groups/{group}/devices/{addr}"),
                &format!("../../../../bus/pci/devices/{addr}"),
            );
        }
    };
    // Two ports of one NIC in group 7, a third function of it left on ixgbe; the first
    // port's interface has an address (in the test's own network namespace).
    device("0000:03:00.0", "ixgbe", "sldummy0", "7");
    device("0000:03:00.1", "ixgbe", "slidle0", "7");
    device("0000:03:00.2", "ixgbe", "slother0", "7");
    device("0000:04:00.0", "vfio-pci", "", "8");
    device("0000:05:00.0", "mlx5_core", "enp5s0f0np0", "9");
    t.file("proc/cmdline", "ro quiet intel_iommu=on iommu=pt\n");
    t.file("proc/cpuinfo", "vendor_id\t: GenuineIntel\n");
    let list = t.file(
        "nics.conf",
        "# sluice's NICs\n\
         0000:03:00.0\n\
         03:00.1 vfio-pci   # short form, as lspci prints\n\
         0000:04:00.0\n\
         0000:05:00.0\n\
         0000:99:00.0\n\
         not-an-address\n",
    );
    let ns = Netns::with_addressed_dummy(&format!("slbind{}", std::process::id()), "sldummy0");
    let env = [
        ("SLUICE_SYS", t.path("sys")),
        ("SLUICE_PROC", t.path("proc")),
    ];
    let r = run_in(
        Some(&ns.0),
        "bind-nics.sh",
        &["--dry-run", "--config", list.to_str().expect("utf-8")],
        &env_of(&env),
    );
    r.exits(1)
        .has("IOMMU: on (3 groups")
        .has("'not-an-address' is not a PCI address")
        .has("driver vfio-pci: loaded")
        .has("FAIL: 0000:03:00.0 (sldummy0): in use by the kernel (it has addresses or routes): not binding it")
        .has("0000:03:00.1 (slidle0): on ixgbe: binding to vfio-pci")
        .has("dry run: would run: /usr/bin/dpdk-devbind.py -b vfio-pci 0000:03:00.1")
        .has("warning: 0000:03:00.1 shares IOMMU group 7 with 0000:03:00.2 (on ixgbe)")
        .has("0000:04:00.0: already bound to vfio-pci")
        .has("0000:05:00.0 (enp5s0f0np0): Mellanox NIC on mlx5_core")
        .has("FAIL: 0000:99:00.0: no such PCI device")
        .lacks("-b vfio-pci 0000:03:00.0")
        .lacks("-b vfio-pci 0000:05:00.0")
        .lacks("running:");
    // Nothing was rebound.
    let driver = fs::read_link(t.path("sys/bus/pci/devices/0000:03:00.1/driver")).expect("link");
    assert!(driver.ends_with("ixgbe"), "{driver:?}");
}

// ---- cpu-check.sh ----

fn toml_with_eal(t: &Scratch, name: &str, eal: &[&str]) -> PathBuf {
    let list = eal
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    t.file(name, &format!("[dpdk]\neal = [{list}, \"--no-pci\"]\n"))
}

#[test]
fn cpu_check_on_this_machine_names_what_is_missing_for_a_sample_config() {
    let t = Scratch::new();
    // Main lcore 0, one worker on CPU 1: fits any machine of two CPUs or more.
    let config = toml_with_eal(&t, "two.toml", &["-l", "0-1"]);
    let r = run(
        "cpu-check.sh",
        &["--dry-run", "--config", config.to_str().expect("utf-8")],
        &[],
    );
    r.has("main lcore 0 on CPU 0; worker lcore(s) 1 on CPU(s) 1")
        .has("ok: worker CPU(s) 1 are online");
    let mut all_there = true;
    for p in ["isolcpus", "nohz_full", "rcu_nocbs"] {
        if !cmdline_has(p) {
            r.has(&format!(
                "MISSING: {p} is not on the kernel command line (needed for CPU(s) 1)"
            ));
            all_there = false;
        }
    }
    if !all_there {
        r.exits(1)
            .has("isolcpus=1 nohz_full=1 rcu_nocbs=1 irqaffinity=0")
            .has("update-grub");
    }
    if r.code == 1 {
        r.has("not everything is in place for the workers on CPU(s) 1. To do:");
    } else {
        r.exits(0).has("everything is in place");
    }

    // The kit's own example (workers on CPUs 2 and 3).
    let example = kit("etc/sluice.toml.example");
    let r = run(
        "cpu-check.sh",
        &["--config", example.to_str().expect("utf-8")],
        &[],
    );
    r.has("main lcore 0 on CPU 0; worker lcore(s) 2-3 on CPU(s) 2-3");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 4 {
        r.exits(1)
            .has("MISSING: worker CPU(s)")
            .has("are not online here");
    }
}

/// An 8-CPU machine: isolcpus and nohz_full set for CPUs 2-3 but not rcu_nocbs, two IRQs
/// allowed on the workers, irqbalance running, CPU 2 on the powersave governor.
fn fake_cpu_tree(t: &Scratch) -> Vec<(&'static str, PathBuf)> {
    t.file("sys/devices/system/cpu/online", "0-7\n");
    t.file(
        "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
        "powersave\n",
    );
    t.file(
        "sys/devices/system/cpu/cpu3/cpufreq/scaling_governor",
        "performance\n",
    );
    t.file(
        "proc/cmdline",
        "BOOT_IMAGE=/vmlinuz ro isolcpus=managed_irq,domain,2-3 nohz_full=2-3 quiet\n",
    );
    for (irq, affinity, name) in [
        ("24", "0-3", "eth0-TxRx-0"),
        ("25", "0-1", "ahci"),
        ("26", "3", "nvme0q3"),
    ] {
        t.file(
            &format!("proc/irq/{irq}/smp_affinity_list"),
            &format!("{affinity}\n"),
        );
        t.dir(&format!("proc/irq/{irq}/{name}"));
    }
    t.file("proc/4242/comm", "irqbalance\n");
    t.file("proc/1/comm", "systemd\n");
    t.dir("etc/default");
    vec![
        ("SLUICE_SYS", t.path("sys")),
        ("SLUICE_PROC", t.path("proc")),
        ("SLUICE_ETC", t.path("etc")),
    ]
}

#[test]
fn cpu_check_on_a_fake_tree_reports_each_gap_then_passes_once_fixed() {
    let t = Scratch::new();
    let env = fake_cpu_tree(&t);
    let env = env_of(&env);
    let example = kit("etc/sluice.toml.example");
    let config = example.to_str().expect("utf-8");

    run("cpu-check.sh", &["--config", config], &env)
        .exits(1)
        .has("main lcore 0 on CPU 0; worker lcore(s) 2-3 on CPU(s) 2-3")
        .has("ok: worker CPU(s) 2-3 are online")
        .has("ok: isolcpus=managed_irq,domain,2-3 covers the worker CPU(s) 2-3")
        .has("ok: nohz_full=2-3 covers the worker CPU(s) 2-3")
        .has("MISSING: rcu_nocbs is not on the kernel command line (needed for CPU(s) 2-3)")
        .has("MISSING: 2 IRQ(s) may be delivered to worker CPU(s) 2-3: 24 (eth0-TxRx-0), 26 (nvme0q3)")
        .has("MISSING: irqbalance is running (pid 4242)")
        .has("IRQBALANCE_BANNED_CPULIST=2-3")
        .has("MISSING: CPU 2: frequency governor powersave, not performance")
        .has("ok: CPU 3: governor performance")
        .has("isolcpus=2-3 nohz_full=2-3 rcu_nocbs=2-3 irqaffinity=0-1,4-7")
        .lacks("25 (ahci)");

    // --fix --dry-run: says what it would change, changes nothing.
    let irq24 = "proc/irq/24/smp_affinity_list";
    let gov2 = "sys/devices/system/cpu/cpu2/cpufreq/scaling_governor";
    run(
        "cpu-check.sh",
        &["--config", config, "--fix", "--dry-run"],
        &env,
    )
    .exits(1)
    .has(&format!(
        "dry run: would write 0-1,4-7 to {} (IRQ 24 eth0-TxRx-0)",
        t.path(irq24).display()
    ))
    .has(&format!(
        "dry run: would write performance to {} (now powersave)",
        t.path(gov2).display()
    ));
    assert_eq!(t.read(irq24).trim(), "0-3");
    assert_eq!(t.read(gov2).trim(), "powersave");

    // --fix: IRQs moved, governor set; the command line and irqbalance are left to do.
    run("cpu-check.sh", &["--config", config, "--fix"], &env)
        .exits(1)
        .has("fixed: IRQ 24 now on CPU(s) 0-1,4-7")
        .has("fixed: CPU 2 governor performance (was powersave)")
        .has("ok: no IRQ is delivered to worker CPU(s) 2-3")
        .has("MISSING: rcu_nocbs");
    assert_eq!(t.read(irq24).trim(), "0-1,4-7");
    assert_eq!(t.read(gov2).trim(), "performance");

    // The rest by hand, as the guidance says: then everything is in place.
    t.file(
        "proc/cmdline",
        "ro isolcpus=managed_irq,domain,2-3 nohz_full=2-3 rcu_nocbs=2-3\n",
    );
    t.file("etc/default/irqbalance", "IRQBALANCE_BANNED_CPULIST=2-3\n");
    run("cpu-check.sh", &["--config", config], &env)
        .exits(0)
        .has("ok: rcu_nocbs=2-3 covers")
        .has("irqbalance is running (pid 4242) with IRQBALANCE_BANNED_CPULIST=2-3")
        .has("everything is in place for the workers on CPU(s) 2-3")
        .lacks("MISSING");
}

#[test]
fn cpu_check_reads_every_form_of_the_eal_lcores() {
    let t = Scratch::new();
    let env = fake_cpu_tree(&t);
    let env = env_of(&env);
    let cases: [(&[&str], &str); 6] = [
        (
            &["-l", "1,4-5"],
            "main lcore 1 on CPU 1; worker lcore(s) 4-5 on CPU(s) 4-5",
        ),
        (
            &["-l0,6"],
            "main lcore 0 on CPU 0; worker lcore(s) 6 on CPU(s) 6",
        ),
        (
            &["-c", "0x0d"],
            "main lcore 0 on CPU 0; worker lcore(s) 2-3 on CPU(s) 2-3",
        ),
        (
            &["--lcores=0@0,1@4,2@5"],
            "main lcore 0 on CPU 0; worker lcore(s) 1-2 on CPU(s) 4-5",
        ),
        (
            &["--lcores", "(0-1)@0,2@(6-7)"],
            "main lcore 0 on CPU 0; worker lcore(s) 1-2 on CPU(s) 0,6-7",
        ),
        (
            &["-l", "0-3", "--main-lcore", "3"],
            "main lcore 3 on CPU 3; worker lcore(s) 0-2 on CPU(s) 0-2",
        ),
    ];
    for (i, (eal, expected)) in cases.iter().enumerate() {
        let config = toml_with_eal(&t, &format!("c{i}.toml"), eal);
        run(
            "cpu-check.sh",
            &["--config", config.to_str().expect("utf-8")],
            &env,
        )
        .has(expected);
    }
    // A worker on the main lcore's CPU is reported.
    let config = toml_with_eal(&t, "shared.toml", &["--lcores=(0-1)@0,2@(6-7)"]);
    run(
        "cpu-check.sh",
        &["--config", config.to_str().expect("utf-8")],
        &env,
    )
    .exits(1)
    .has("MISSING: worker lcore(s) share CPU(s) 0 with the main lcore");
    // No lcores at all: EAL would poll on every CPU.
    let config = t.file("none.toml", "[dpdk]\neal = [\"--no-pci\"]\n");
    run(
        "cpu-check.sh",
        &["--config", config.to_str().expect("utf-8")],
        &env,
    )
    .has("give no -l, -c or --lcores, so EAL takes every CPU (0-7)");
    // An unreadable configuration is status 2.
    let config = t.file("bad.toml", "[dpdk\n");
    run(
        "cpu-check.sh",
        &["--config", config.to_str().expect("utf-8")],
        &env,
    )
    .exits(2)
    .has("cannot read the EAL lcores");
}

// ---- the units, the example configuration, install.sh ----

#[test]
fn systemd_units_verify_and_say_what_the_service_needs() {
    let units: Vec<PathBuf> = [
        "sluice.service",
        "sluice-bind-nics.service",
        "dev-hugepages1G.mount",
    ]
    .iter()
    .map(|u| kit("systemd").join(u))
    .collect();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze (package systemd)");
    // The executables are only there once installed; anything else is a real problem.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !(l.contains("Command /usr/local/bin/sluice is not executable")
                || l.contains("Command /usr/local/sbin/sluice-") && l.contains("is not executable"))
        })
        .collect();
    assert!(problems.is_empty(), "systemd-analyze verify:\n{stderr}");

    let service = fs::read_to_string(&units[0]).expect("read sluice.service");
    for line in [
        "Restart=on-failure",
        "LimitMEMLOCK=infinity",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/local/bin/sluice run --config /etc/sluice/sluice.toml",
        "Requires=sluice-bind-nics.service",
        "After=sluice-bind-nics.service dev-hugepages1G.mount",
        "RequiresMountsFor=/dev/hugepages",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "sluice.service has no line `{line}`:\n{service}"
        );
    }
    let bind = fs::read_to_string(&units[1]).expect("read sluice-bind-nics.service");
    assert!(bind.contains("Type=oneshot") && bind.contains("--config /etc/sluice/nics.conf"));
}

#[test]
fn the_example_configuration_is_valid() {
    let out = Command::new(SLUICE)
        .args(["check", "--config"])
        .arg(kit("etc/sluice.toml.example"))
        .output()
        .expect("run sluice check");
    assert!(
        out.status.success(),
        "sluice check: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn install_into_a_destdir_is_safe_to_rerun_and_keeps_the_configuration() {
    let t = Scratch::new();
    let dest = t.dir("root");
    let env = [("DESTDIR", dest.as_path())];
    let args = ["--binary", SLUICE];

    run("install.sh", &["--dry-run", "--binary", SLUICE], &env)
        .exits(0)
        .has("dry run: would install")
        .lacks("installed ");
    assert!(!dest.join("usr").exists(), "a dry run installed files");

    run("install.sh", &args, &env)
        .exits(0)
        .has("installed ")
        .has("not touching systemd");
    for (file, mode) in [
        ("usr/local/bin/sluice", 0o755),
        ("usr/local/sbin/sluice-hugepages", 0o755),
        ("usr/local/sbin/sluice-bind-nics", 0o755),
        ("usr/local/sbin/sluice-cpu-check", 0o755),
        ("etc/systemd/system/sluice.service", 0o644),
        ("etc/systemd/system/sluice-bind-nics.service", 0o644),
        ("etc/systemd/system/dev-hugepages1G.mount", 0o644),
        ("etc/modules-load.d/sluice-vfio.conf", 0o644),
        ("etc/sluice/sluice.toml", 0o644),
        ("etc/sluice/nics.conf", 0o644),
        ("usr/local/share/doc/sluice/deploy-README.md", 0o644),
    ] {
        let meta = fs::metadata(dest.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, mode, "mode of {file}");
    }
    assert!(
        fs::read_to_string(dest.join("etc/modules-load.d/sluice-vfio.conf"))
            .expect("read")
            .lines()
            .any(|l| l == "vfio-pci")
    );

    // The operator edits the configuration; a rerun changes nothing and keeps it.
    fs::write(dest.join("etc/sluice/sluice.toml"), "# mine\n").expect("edit");
    run("install.sh", &args, &env)
        .exits(0)
        .has("sluice.toml: exists, kept")
        .has("sluice-cpu-check: up to date")
        .lacks("installed ");
    assert_eq!(
        fs::read_to_string(dest.join("etc/sluice/sluice.toml")).expect("read"),
        "# mine\n"
    );
}
