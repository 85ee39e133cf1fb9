//! Generates bindings to the system DPDK (found by pkg-config) and compiles
//! the C wrappers for DPDK's static-inline functions (`rte_eth_rx_burst`,
//! `rte_pktmbuf_alloc`, ...), which have no symbol to link against.

use std::env;
use std::path::PathBuf;

fn main() {
    let dpdk = pkg_config::Config::new()
        .atleast_version("22.11")
        // The link flags are emitted below, by hand, in the order DPDK needs.
        .cargo_metadata(false)
        .probe("libdpdk")
        .expect("DPDK 22.11 not found by pkg-config (apt-get install libdpdk-dev)");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let wrap_c = out.join("static_fns.c");

    let mut clang_args: Vec<String> = dpdk
        .include_paths
        .iter()
        .map(|p| format!("-I{}", p.display()))
        .collect();
    // Same CPU baseline as DPDK's own pkg-config flags, so inline functions
    // that pick SSE4.2 code paths see the same definitions.
    clang_args.push("-march=corei7".into());

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&clang_args)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_c)
        .allowlist_function("rte_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("rte_.*")
        .allowlist_var("per_lcore_.*")
        .allowlist_var("RING_F_.*")
        // Packed structs rustc cannot lay out: make them opaque blobs.
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed over the DPDK headers");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs");

    let mut build = cc::Build::new();
    build
        .file(&wrap_c)
        .file("shim.c")
        .include(env::current_dir().unwrap())
        .flag("-include")
        .flag("wrapper.h")
        .flag("-march=corei7")
        .flag("-Wno-deprecated-declarations")
        .flag("-Wno-unused-parameter")
        .flag("-Wno-duplicate-decl-specifier")
        .opt_level(3);
    for p in &dpdk.include_paths {
        build.include(p);
    }
    build.compile("dpdk_static_fns");

    // Link every DPDK library, with --no-as-needed so that the shared
    // librte_* stay in the binary's NEEDED list even when nothing references
    // them directly: EAL then finds and loads the PMDs (af_packet, pcap, ...)
    // from its driver directory. `links = "dpdk"` passes the list on to the
    // sluice package, whose build.rs adds the same flags to its own binaries.
    for dir in &dpdk.link_paths {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    // The vdev bus (rte_vdev_init, for the kernel twins made at run time)
    // is a driver library, which libdpdk.pc does not list.
    let mut libs = dpdk.libs.clone();
    if !libs.iter().any(|l| l == "rte_bus_vdev") {
        libs.push("rte_bus_vdev".into());
    }
    for lib in &libs {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    println!("cargo:libs={}", libs.join(" "));
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.c");
}
