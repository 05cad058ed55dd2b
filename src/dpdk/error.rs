//! DPDK error codes as `Result`s carrying DPDK's own error string.

use std::ffi::CStr;

use super::ffi;

/// A failed DPDK call: what zerohop was doing, the code, and DPDK's words.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message} (DPDK error {code})")]
pub struct DpdkError {
    /// What was being attempted, e.g. `rte_eth_dev_start(port left)`.
    pub what: String,
    /// The positive errno-style code.
    pub code: i32,
    /// `rte_strerror(code)`.
    pub message: String,
}

/// Result of a DPDK call.
pub type Result<T> = std::result::Result<T, DpdkError>;

impl DpdkError {
    /// Build an error from a (positive or negative) DPDK error code.
    pub fn from_code(what: impl Into<String>, code: i32) -> Self {
        let code = code.abs();
        Self {
            what: what.into(),
            code,
            message: strerror(code),
        }
    }

    /// Build an error from `rte_errno`, for calls that return NULL or -1.
    pub fn from_errno(what: impl Into<String>) -> Self {
        // SAFETY: reads the calling thread's rte_errno through the shim.
        let code = unsafe { ffi::zh_errno() };
        Self::from_code(what, code)
    }
}

/// Return DPDK's description of an error code.
pub fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string for any input value.
    unsafe {
        let p = ffi::rte_strerror(code);
        if p.is_null() {
            return format!("error {code}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Turn DPDK's "negative errno on failure" return convention into a `Result`.
pub(crate) trait RteReturn {
    /// `Ok(value)` when non-negative, else the error with `what` as context.
    fn rte_ok(self, what: impl FnOnce() -> String) -> Result<i32>;
}

impl RteReturn for i32 {
    fn rte_ok(self, what: impl FnOnce() -> String) -> Result<i32> {
        if self < 0 {
            Err(DpdkError::from_code(what(), self))
        } else {
            Ok(self)
        }
    }
}
