//! The `sluice` command: `run` the load balancer, `check` a configuration,
//! `ctl` a running one.

use clap::{Parser, Subcommand};
use sluice::control::config::{Config, ConfigError, DEFAULT_SOCKET, EMBEDDED_DEFAULT};
use sluice::control::ctl;
use sluice::control::metrics::{self, Scrape};
use sluice::control::metrics_http::MetricsListener;
use sluice::control::plane::ControlPlane;
use sluice::control::server::{self, ControlSocket};
use sluice::dataplane::runtime::Dataplane;
use sluice::dataplane::stats::rate_line;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A layer-4 load balancer (IPVS NAT and FULLNAT) on DPDK"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the load balancer until Ctrl-C (SIGINT) or SIGTERM; SIGHUP
    /// reloads the configuration file.
    Run {
        /// Configuration file (TOML). Without it, the embedded demo
        /// configuration (`sluice default-config`) is used.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print a line of rates (packets, connections, sessions, cycles
        /// per packet) every SECS seconds.
        #[arg(long, value_name = "SECS")]
        stats: Option<f64>,
    },
    /// Validate a configuration file and exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the embedded default (demo) configuration.
    DefaultConfig,
    /// Operate a running sluice with ipvsadm's flags (`sluice ctl -L -n`,
    /// `sluice ctl -a -t VIP:PORT -r RIP:PORT -w 2`, ...); `sluice ctl
    /// --help` lists them.
    #[command(disable_help_flag = true)]
    Ctl {
        /// The control socket.
        #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// ipvsadm-style arguments, or `route ...`, `neigh ...`, `reload`,
        /// `sysctl ...`, `counters`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

fn load(path: Option<&PathBuf>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None => Config::parse("<embedded default>", EMBEDDED_DEFAULT),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::DefaultConfig => {
            print!("{EMBEDDED_DEFAULT}");
            ExitCode::SUCCESS
        }
        Command::Check { config } => match load(Some(&config)) {
            Ok(c) => {
                println!(
                    "{}: ok ({} interface(s), {} service(s))",
                    config.display(),
                    c.state.interfaces().len(),
                    c.state.services.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run { config, stats } => run(config, stats),
        Command::Ctl { socket, args } => ctl::run(&socket, &args),
    }
}

/// Set by SIGHUP: reload the configuration file.
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sighup(_: libc::c_int) {
    RELOAD.store(true, Ordering::Relaxed);
}

fn run(path: Option<PathBuf>, stats: Option<f64>) -> ExitCode {
    let config = match load(path.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if path.is_none() {
        log::info!("no --config given: running the embedded default (see `sluice default-config`)");
    }
    let stats_every = match stats {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            eprintln!("error: --stats {s}: must be a positive number of seconds");
            return ExitCode::from(2);
        }
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)) {
        eprintln!("error: cannot install the signal handler: {e}");
        return ExitCode::FAILURE;
    }
    // After ctrlc's handlers: SIGHUP reloads instead of stopping.
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe { libc::signal(libc::SIGHUP, on_sighup as *const () as libc::sighandler_t) };

    // The control endpoints first: a second sluice stops here, before it
    // touches a port.
    let socket = match ControlSocket::bind(&config.control.socket) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut metrics = match config
        .control
        .metrics
        .map(MetricsListener::bind)
        .transpose()
    {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (dataplane, handles) = match Dataplane::start(&config, |facts, workers| {
        ControlPlane::first_snapshot(&config, facts, workers)
    }) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!(
        "control socket {}{}",
        socket.path().display(),
        metrics
            .as_ref()
            .and_then(|m| m.local_addr())
            .map(|a| format!(", metrics on http://{a}/metrics"))
            .unwrap_or_default()
    );
    // The plane puts the configured routes in the kernel (when the ports
    // have twins) before "ready", so that what starts after sluice finds
    // them there, and before its first health check.
    let mut plane = ControlPlane::new(config, path, handles);
    println!("sluice: ready");
    let _ = std::io::stdout().flush();

    // The control socket's, then the metrics listener's and its clients'.
    let mut fds = Vec::new();
    let started = Instant::now();
    let mut last = (started, plane.counters());
    while !stop.load(Ordering::Relaxed) {
        fds.clear();
        fds.push(socket.raw_fd());
        if let Some(m) = &metrics {
            m.raw_fds(&mut fds);
        }
        server::wait_readable(&fds, Duration::from_millis(50));
        socket.serve(|request| plane.handle(request));
        if let Some(m) = &mut metrics {
            m.serve(|| {
                let services = plane.services_view(None).unwrap_or_else(|_| {
                    sluice::control::api::ServicesView {
                        max_sessions: 0,
                        workers: 0,
                        services: Vec::new(),
                    }
                });
                metrics::render(&Scrape {
                    services: &services,
                    counters: &plane.counters(),
                    workers: &plane.worker_counters(),
                    ports: &dataplane.port_stats(),
                    mbufs_in_use: dataplane.mbufs_in_use(),
                    mbufs: dataplane.mbufs(),
                    health_checks: plane.health_checks(),
                })
            });
        }
        if RELOAD.swap(false, Ordering::Relaxed) {
            match plane.reload() {
                Ok(epoch) => log::info!("SIGHUP: configuration reloaded (snapshot {epoch})"),
                Err(e) => log::error!("SIGHUP: reload refused, nothing changed: {e}"),
            }
        }
        plane.tick();
        if let Some(every) = stats_every {
            if last.0.elapsed() >= every {
                let now = plane.counters();
                let secs = last.0.elapsed().as_secs_f64();
                println!(
                    "{}",
                    rate_line(&last.1, &now, secs, started.elapsed().as_secs_f64())
                );
                let _ = std::io::stdout().flush();
                last = (Instant::now(), now);
            }
        }
    }
    drop(socket);
    drop(plane);
    match dataplane.stop() {
        Ok(counters) => {
            println!("sluice counters:");
            for (name, value) in counters.iter() {
                println!("  {name} {value}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
