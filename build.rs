//! Links sluice's binaries and tests against every DPDK library with
//! `--no-as-needed`.
//!
//! rustc links with `--as-needed`, which drops the shared librte_* libraries
//! that no symbol references; without them EAL never loads the PMDs from its
//! driver directory and `rte_eth_dev_count_avail()` sees no vdev. Link args
//! from a dependency's build script do not reach this package's binaries, so
//! dpdk-sys hands the list over (`links = "dpdk"` -> DEP_DPDK_LIBS) and we add
//! it here.

fn main() {
    // Without these, cargo reruns this script (and rebuilds sluice) when any
    // file of the package changes: docs, scripts, the fuzz corpus.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_DPDK_LIBS");
    let libs = std::env::var("DEP_DPDK_LIBS").unwrap_or_default();
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    for lib in libs.split_whitespace() {
        println!("cargo:rustc-link-arg=-l{lib}");
    }
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}
