//! Built-in health checks, with keepalived's semantics: each real server
//! of a service with a check is connected to (`tcp`) or asked `GET path`
//! (`http`) every `interval`; after `fall` failures in a row it is taken
//! out of scheduling, after `rise` successes it comes back.
//!
//! - `spec`: a service's check as configured (`[service.check]`, `--check`);
//! - `probe`: one check over a non-blocking kernel socket;
//! - `checker`: the thread that runs every check on its schedule;
//! - `machine`: one real's rise/fall state;
//! - `monitor`: the control plane's side: targets from the state,
//!   outcomes into rise/fall, verdicts back into the state as
//!   `Change::SetHealth` (the one way every change goes), and the views.
//!
//! Checks run on the control side, never on a worker; they reach the reals
//! through the host kernel (the ports' kernel twins), from sluice's
//! interface address on the real's side (`RouteTable::source_for`).

pub mod checker;
pub mod machine;
pub mod monitor;
pub mod probe;
pub mod spec;

pub use monitor::HealthMonitor;
pub use spec::{CheckKind, CheckSpec};
