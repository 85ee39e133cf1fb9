//! DPDK call failures, with DPDK's own reason text.

use std::ffi::CStr;
use std::fmt;

/// A failed DPDK call: which call, and the errno-style code it gave.
#[derive(Debug, Clone)]
pub struct DpdkError {
    pub call: String,
    pub code: i32,
}

impl DpdkError {
    pub fn new(call: impl Into<String>, code: i32) -> Self {
        DpdkError {
            call: call.into(),
            code: code.abs(),
        }
    }

    /// For calls that report failure through `rte_errno`.
    pub fn from_errno(call: impl Into<String>) -> Self {
        // SAFETY: reads this thread's rte_errno through the C shim.
        let code = unsafe { dpdk_sys::sluice_rte_errno() };
        Self::new(call, code)
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: rte_strerror returns a pointer to a static or thread-local
        // NUL-terminated string for any code.
        let text = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(self.code)) };
        write!(f, "{} failed: {}", self.call, text.to_string_lossy())
    }
}

impl std::error::Error for DpdkError {}
