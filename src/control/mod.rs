//! The control side, on the main lcore, never on a worker: the desired
//! state and the one way it changes (`state`), the TOML that declares it
//! (`config`), real server counter slots (`slots`), the control plane that
//! publishes snapshots and answers requests (`plane`), the socket protocol
//! (`api`) and server (`server`), the `sluice ctl` client (`ctl`), the
//! Prometheus exposition (`metrics`) and its HTTP listener
//! (`metrics_http`), the real servers' health checks (`health`), and the
//! control socket's bounded request read (`timed_read`). Nothing here runs
//! per packet.

pub mod api;
pub mod config;
pub mod ctl;
pub mod health;
pub mod metrics;
pub mod metrics_http;
pub mod plane;
pub mod server;
pub mod slots;
pub mod state;
pub mod timed_read;
