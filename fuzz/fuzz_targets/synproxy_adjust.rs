//! The SYN proxy's sequence translation (`lb::synproxy::adjust`): any
//! segment and splice (see `sluice_fuzz::adjust`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_fuzz::adjust::run(data));
