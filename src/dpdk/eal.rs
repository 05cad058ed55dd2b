//! The Environment Abstraction Layer: initialised once per process.

use std::ffi::{CString, NulError};
use std::os::raw::c_char;
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::{DpdkError, Result};
use super::ffi;

/// Set by the first `Eal::init` and never cleared: EAL cannot be initialised
/// twice in a process, not even after cleanup.
static EAL_USED: AtomicBool = AtomicBool::new(false);

/// The initialised EAL. Dropping it runs `rte_eal_cleanup`; no DPDK object
/// may be used afterwards.
pub struct Eal {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Eal {
    /// Initialise EAL from `args` (as on a DPDK command line, program name
    /// first).
    ///
    /// # Errors
    /// A second call in the same process, an argument with a NUL byte, or
    /// `rte_eal_init` failing (its reason comes from `rte_errno`).
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal> {
        if EAL_USED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError {
                what: "rte_eal_init".into(),
                code: libc::EALREADY,
                message: "EAL was already initialised in this process".into(),
            });
        }
        let cargs: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_ref()))
            .collect::<std::result::Result<_, NulError>>()
            .map_err(|_| DpdkError {
                what: "rte_eal_init".into(),
                code: libc::EINVAL,
                message: "an EAL argument contains a NUL byte".into(),
            })?;
        let mut argv: Vec<*mut c_char> = cargs.iter().map(|c| c.as_ptr() as *mut c_char).collect();
        argv.push(std::ptr::null_mut());
        let argc = cargs.len() as i32;
        // SAFETY: argv holds argc valid NUL-terminated strings (owned by cargs,
        // alive for the call) and a terminating NULL. EAL may permute argv but
        // does not keep the pointers past init.
        let rc = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(DpdkError::from_errno(format!(
                "rte_eal_init({})",
                args.iter()
                    .map(|a| a.as_ref())
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
        Ok(Eal {
            _not_send: std::marker::PhantomData,
        })
    }

    /// Register the calling (non-EAL) thread so it gets an lcore id and a
    /// mempool cache. Unregistered when the guard drops.
    ///
    /// # Errors
    /// No free lcore id (RTE_MAX_LCORE reached).
    pub fn register_thread() -> Result<ThreadRegistration> {
        // SAFETY: registers the current thread with EAL; EAL is initialised
        // (workers are only spawned after Eal::init succeeded).
        let rc = unsafe { ffi::rte_thread_register() };
        if rc < 0 {
            return Err(DpdkError::from_errno("rte_thread_register"));
        }
        Ok(ThreadRegistration {
            _not_send: std::marker::PhantomData,
        })
    }

    /// Return the calling thread's lcore id (`LCORE_ID_ANY` if unregistered).
    pub fn lcore_id() -> u32 {
        // SAFETY: reads a thread-local through the shim.
        unsafe { ffi::zh_lcore_id() }
    }

    /// Return the NUMA socket of the calling thread (`SOCKET_ID_ANY` → 0).
    pub fn socket_id() -> i32 {
        // SAFETY: plain query of the calling thread's socket.
        let s = unsafe { ffi::rte_socket_id() } as i32;
        if s < 0 {
            0
        } else {
            s
        }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: EAL was initialised by this value; the runtime drops every
        // DPDK object (ports, mempools) before the Eal.
        let rc = unsafe { ffi::rte_eal_cleanup() };
        if rc < 0 {
            tracing::warn!("rte_eal_cleanup failed: {}", super::error::strerror(rc));
        }
    }
}

/// A registered EAL thread; unregisters on drop (must drop on the same thread,
/// hence not `Send`).
pub struct ThreadRegistration {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for ThreadRegistration {
    fn drop(&mut self) {
        // SAFETY: this thread was registered by Eal::register_thread.
        unsafe { ffi::rte_thread_unregister() };
    }
}
