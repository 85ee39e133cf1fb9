//! connbench: a closed-loop TCP connection generator and responder on DPDK,
//! in the spirit of dperf, for measuring what a new connection costs sluice.
//!
//! One DPDK process with two ports. On the client port it emulates clients
//! that each keep one connection to the VIP open at a time (a window of W
//! slots): SYN, ACK + request, FIN after the response, done, and the slot
//! opens the next one. On the server port it emulates the real servers as a
//! stateless responder (SYN-ACK, response + FIN, ACK of the client's FIN).
//! It answers ARP for every address it emulates.
//!
//! Layout: `frame` (bytes: build and parse segments and ARP), `client` (the
//! connection table and its state machine), `server` (the responder),
//! `engine` (the DPDK poll loop that ties them to the ports), `stats`.

pub mod client;
pub mod engine;
pub mod frame;
pub mod server;
pub mod stats;
