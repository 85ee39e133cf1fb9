//! The per-packet pipeline: two workers with sessions, neighbours and
//! FULLNAT pools populated, driven by frames in both directions (see
//! `sluice_fuzz::pipeline` for the operations and the invariants).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::pipeline::run(data));
