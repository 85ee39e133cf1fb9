//! The data plane: the per-packet pipeline (pure, testable without DPDK),
//! the configuration snapshot it runs on, its counters, the worker loop
//! that feeds it from DPDK ports, and the pump between the workers and the
//! ports' kernel twins.

pub mod budget;
pub mod counters;
pub mod pipeline;
pub mod publish;
pub mod query;
pub mod runtime;
pub mod snapshot;
pub mod stats;
pub mod steering;
pub mod twin_pump;
pub mod worker;

pub use counters::{Counter, Counters};
pub use pipeline::{Io, PacketBuf, Pipeline, RxChecksum};
pub use snapshot::Snapshot;
