//! The control side: configuration now; the API, CLI and metrics later.
//! Nothing here runs per packet.

pub mod config;
