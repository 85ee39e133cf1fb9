//! Running closures on EAL worker lcores.
//!
//! A closure that panics aborts the whole process, with a message naming
//! it. A worker that died quietly would leave its rx queues undrained (a
//! black hole for every flow the NIC hashes there) while the process looks
//! alive; its sessions are gone and nothing else can take its queues over.
//! Aborting makes the failure visible at once to whatever supervises sluice
//! (systemd's Restart=, a container runtime), which starts a whole one.

use super::DpdkError;
use dpdk_sys as sys;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

/// The worker lcores EAL was given (every lcore in `-l` but the main one).
pub fn worker_lcores() -> Vec<u32> {
    let mut out = Vec::new();
    // SAFETY: EAL is initialised; rte_get_next_lcore walks its lcore table.
    let mut id = unsafe { sys::rte_get_next_lcore(u32::MAX, 1, 0) };
    while id < sys::RTE_MAX_LCORE {
        out.push(id);
        // SAFETY: as above.
        id = unsafe { sys::rte_get_next_lcore(id, 1, 0) };
    }
    out
}

type Job = Box<dyn FnOnce() + Send>;

extern "C" fn trampoline(arg: *mut c_void) -> i32 {
    // SAFETY: arg is the Box<Job> leaked by launch, received exactly once.
    let job = unsafe { Box::from_raw(arg as *mut Job) };
    job();
    0
}

/// A closure running on an lcore; `join` waits for it and returns its result.
pub struct LcoreJoin<R> {
    lcore: u32,
    result: Arc<Mutex<Option<R>>>,
}

impl<R: Send + 'static> LcoreJoin<R> {
    /// Runs `f` on worker lcore `lcore`, a real EAL lcore thread (so
    /// per-lcore mempool caches and `rte_lcore_id()` work). If `f` panics
    /// the process aborts, naming `name` (see the module documentation).
    pub fn launch(
        lcore: u32,
        name: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<Self, DpdkError> {
        let result = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&result);
        let name = format!("{name} (lcore {lcore})");
        let job: Job = Box::new(move || {
            let r = run_or_abort(&name, f);
            if let Ok(mut s) = slot.lock() {
                *s = Some(r);
            }
        });
        let arg = Box::into_raw(Box::new(job)) as *mut c_void;
        // SAFETY: trampoline takes ownership of arg when it runs; if launch
        // fails it never runs and we take it back.
        let rc = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if rc < 0 {
            // SAFETY: not launched, so we still own arg.
            drop(unsafe { Box::from_raw(arg as *mut Job) });
            return Err(DpdkError::new(
                format!("rte_eal_remote_launch(lcore {lcore})"),
                rc,
            ));
        }
        Ok(LcoreJoin { lcore, result })
    }

    /// Waits for the closure to return. None only if its result was lost
    /// (a poisoned lock); a panic never returns here, it aborted.
    pub fn join(self) -> Option<R> {
        // SAFETY: waits on an lcore we launched.
        unsafe { sys::rte_eal_wait_lcore(self.lcore) };
        self.result.lock().ok().and_then(|mut s| s.take())
    }
}

/// Runs `f`; if it panics, says so on stderr naming `name` and aborts the
/// process. A panic must not unwind into EAL's C frames anyway, and a
/// worker that is gone must not look alive. The panic's own message has
/// already been printed by the panic hook.
pub fn run_or_abort<R>(name: &str, f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            // eprintln! is enough: stderr is unbuffered, and abort flushes
            // nothing else that matters (counters die with the process).
            eprintln!(
                "sluice: {name} panicked: aborting, so that a supervisor restarts sluice \
                 rather than its queues going unserved"
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Set in the child process this test starts.
    const CHILD: &str = "SLUICE_TEST_PANICKING_WORKER";

    #[test]
    fn a_panicking_worker_aborts_the_process_naming_it() {
        if std::env::var_os(CHILD).is_some() {
            // In the child: a worker closure that panics.
            run_or_abort("worker 3 (lcore 4)", || -> u32 { panic!("boom") });
            unreachable!("run_or_abort returned after a panic");
        }
        // Run this very test again in a child process: the abort must take
        // the child down with SIGABRT, and its stderr name the worker.
        let exe = std::env::current_exe().expect("test binary");
        let out = Command::new(exe)
            .args([
                "--exact",
                "dpdk::lcore::tests::a_panicking_worker_aborts_the_process_naming_it",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .expect("run the test binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
        assert!(stderr.contains("boom"), "the panic message: {stderr}");
        assert!(
            stderr.contains("sluice: worker 3 (lcore 4) panicked: aborting"),
            "{stderr}"
        );
        // A closure that returns is untouched.
        assert_eq!(run_or_abort("worker 0", || 7), 7);
    }
}
