//! The `sluice` command: `run` the load balancer, `check` a configuration.

use clap::{Parser, Subcommand};
use sluice::control::config::{Config, ConfigError, EMBEDDED_DEFAULT};
use sluice::dataplane::runtime;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A layer-4 load balancer (IPVS NAT) on DPDK"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the load balancer until Ctrl-C (SIGINT) or SIGTERM.
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
                    c.interfaces.len(),
                    c.services.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run { config, stats } => run(config.as_ref(), stats),
    }
}

fn run(path: Option<&PathBuf>, stats: Option<f64>) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if path.is_none() {
        log::info!("no --config given: running the embedded default (see `sluice default-config`)");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed)) {
        eprintln!("error: cannot install the signal handler: {e}");
        return ExitCode::FAILURE;
    }
    let ready = || {
        println!("sluice: ready");
        let _ = std::io::stdout().flush();
    };
    let stats_every = match stats {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            eprintln!("error: --stats {s}: must be a positive number of seconds");
            return ExitCode::from(2);
        }
        None => None,
    };
    match runtime::run(&config, stop, stats_every, ready) {
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
