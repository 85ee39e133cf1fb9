//! The TOML loader: any text into `Config::parse` (see
//! `sluice_fuzz::control` for the invariants).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::control::config(data));
