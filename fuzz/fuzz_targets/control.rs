//! The control protocol, `sluice ctl` argument and `-R` rule parsing, and
//! sequences of state changes (see `sluice_fuzz::control`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::control::control(data));
