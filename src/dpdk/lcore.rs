//! Running closures on EAL worker lcores.

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
    /// per-lcore mempool caches and `rte_lcore_id()` work).
    pub fn launch(lcore: u32, f: impl FnOnce() -> R + Send + 'static) -> Result<Self, DpdkError> {
        let result = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&result);
        let job: Job = Box::new(move || {
            // A panic must not unwind into EAL's C frames; it ends the
            // worker and `join` reports None.
            if let Ok(r) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                if let Ok(mut s) = slot.lock() {
                    *s = Some(r);
                }
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

    /// Waits for the closure to return. None if it panicked.
    pub fn join(self) -> Option<R> {
        // SAFETY: waits on an lcore we launched.
        unsafe { sys::rte_eal_wait_lcore(self.lcore) };
        self.result.lock().ok().and_then(|mut s| s.take())
    }
}
