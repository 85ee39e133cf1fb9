//! Live packet capture with `dpdk-dumpcap`: the capture server of the
//! primary process.
//!
//! dpdk-dumpcap is a DPDK secondary process. It attaches to sluice's shared
//! memory through EAL's runtime directory (`/var/run/dpdk/PREFIX`), makes its
//! own ring and mempool there, and asks sluice over EAL's IPC socket (the
//! `mp_pdump` action) to add rx/tx callbacks to a port's queues; the
//! callbacks copy each burst into that ring. `rte_pdump_init` sets up the
//! shared statistics and the action; [`server`] then takes the action over,
//! so that stopping a capture cannot crash a worker (see there).
//!
//! What it costs while nobody captures: per packet, nothing that is not paid
//! already. `rte_eth_rx_burst`/`rte_eth_tx_burst` always load the queue's
//! callback pointer (DPDK is built with `RTE_ETHDEV_RXTX_CALLBACKS`) and
//! branch on it being NULL; only a running capture sets it. Per process:
//! `rte_pdump_init` reserves one 4 MiB memzone (capture statistics for every
//! port and queue) and an IPC action is registered. The IPC thread
//! (`rte_mp_handle`, blocked in `recvmsg`), the shared files and the
//! hugepages belong to EAL's shared mode itself, which capture needs.

mod server;

use super::Eal;
use dpdk_sys as sys;
use log::{info, warn};
use std::ffi::CStr;
use std::path::{Path, PathBuf};

/// Whether `dpdk-dumpcap` can attach to this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capture {
    /// The capture server is up; dumpcap attaches with `--file-prefix=PREFIX`.
    Available { file_prefix: String },
    /// Capture cannot work with this EAL set-up (or its set-up failed).
    Unavailable { reason: String },
}

/// Starts the capture server when EAL runs in a mode a secondary process can
/// attach to (hugepages, shared config), and logs either the `dpdk-dumpcap`
/// command to use or why capture is unavailable. Never fails: capture is a
/// diagnostic, not a reason to stop the load balancer.
pub fn serve(eal: &Eal) -> Capture {
    let capture = start(eal);
    match &capture {
        Capture::Available { file_prefix } => {
            let ports = port_names(eal);
            let first = ports.first().map_or("0", |(_, name)| name.as_str());
            let listing: Vec<String> = ports
                .iter()
                .map(|(id, name)| format!("{id} {name}"))
                .collect();
            info!(
                "packet capture available: dpdk-dumpcap --file-prefix={file_prefix} -i {first} -w FILE.pcapng \
                 (ports: {}; add -c N or -a duration:S to stop; no cost until a capture starts)",
                listing.join(", ")
            );
        }
        Capture::Unavailable { reason } => warn_or_info(reason),
    }
    capture
}

fn warn_or_info(reason: &str) {
    // The test set-ups use --no-huge/--no-shconf on purpose: say it plainly,
    // but as information; a failed set-up in a mode that should work is a warning.
    if reason.starts_with("rte_pdump_init") {
        warn!("packet capture unavailable: {reason}");
    } else {
        info!("packet capture unavailable: {reason}");
    }
}

fn start(eal: &Eal) -> Capture {
    let unavailable = |reason: &str| Capture::Unavailable {
        reason: reason.to_string(),
    };
    if !has_hugepages(eal) {
        return unavailable(
            "EAL runs with --no-huge, and a secondary process (dpdk-dumpcap) can only map \
             memory that lives in hugepage files; run with hugepages and a unique --file-prefix",
        );
    }
    let dir = runtime_dir(eal);
    // EAL creates its IPC socket only when it keeps shared config: not with
    // --no-shconf or --in-memory. Without it no secondary can talk to us.
    if !dir.join("mp_socket").exists() {
        return unavailable(
            "EAL runs without shared files (--no-shconf or --in-memory), so a secondary \
             process (dpdk-dumpcap) cannot attach; drop them and give a unique --file-prefix",
        );
    }
    // SAFETY: EAL is initialised (the Eal proves it) and this runs on the
    // main lcore before any worker starts; rte_pdump_init only reserves a
    // memzone and registers an IPC action.
    let rc = unsafe { sys::rte_pdump_init() };
    if rc != 0 {
        let err = super::DpdkError::from_errno("rte_pdump_init");
        return unavailable(&err.to_string());
    }
    if let Err(e) = server::install() {
        return unavailable(&format!(
            "rte_pdump_init done, but the capture server failed: {e}"
        ));
    }
    Capture::Available {
        file_prefix: file_prefix_of(&dir),
    }
}

/// EAL's file prefix is the last component of its runtime directory
/// (`/var/run/dpdk/PREFIX`, or under `$XDG_RUNTIME_DIR` when not root).
fn file_prefix_of(runtime_dir: &Path) -> String {
    runtime_dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rte".to_string())
}

fn has_hugepages(_eal: &Eal) -> bool {
    // SAFETY: plain getter of EAL's configuration, set by rte_eal_init.
    unsafe { sys::rte_eal_has_hugepages() != 0 }
}

fn runtime_dir(_eal: &Eal) -> PathBuf {
    // SAFETY: EAL is initialised; the function returns a pointer to a static
    // NUL-terminated buffer that EAL filled in at start and never frees.
    let dir = unsafe { CStr::from_ptr(sys::rte_eal_get_runtime_dir()) };
    PathBuf::from(dir.to_string_lossy().into_owned())
}

/// Every port with its device name (what `dpdk-dumpcap -i` takes).
fn port_names(eal: &Eal) -> Vec<(u16, String)> {
    (0..eal.port_count())
        .map(|id| {
            let mut buf = [0 as std::ffi::c_char; sys::RTE_ETH_NAME_MAX_LEN as usize];
            // SAFETY: buf has room for RTE_ETH_NAME_MAX_LEN bytes, which is
            // what rte_eth_dev_get_name_by_port writes at most (NUL included).
            let rc = unsafe { sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) };
            let name = if rc == 0 {
                // SAFETY: on success buf holds a NUL-terminated name.
                unsafe { CStr::from_ptr(buf.as_ptr()) }
                    .to_string_lossy()
                    .into_owned()
            } else {
                id.to_string()
            };
            (id, name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::file_prefix_of;
    use std::path::Path;

    #[test]
    fn file_prefix_is_the_runtime_dir_name() {
        assert_eq!(file_prefix_of(Path::new("/var/run/dpdk/sluice")), "sluice");
        assert_eq!(file_prefix_of(Path::new("/run/user/0/dpdk/rte")), "rte");
        assert_eq!(file_prefix_of(Path::new("/")), "rte");
    }
}
