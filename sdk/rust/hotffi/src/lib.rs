//! Write hotffi runtimes in Rust.
//!
//! A runtime is a `cdylib` that hotffi loads into each nginx worker and
//! hands a task queue; its threads take calls from the queue and answer
//! them.  This crate wraps the C ABI of `include/hotffi.h`:
//!
//! - [`Queue`] and [`Task`]: poll, read the request without copying,
//!   answer exactly once (a dropped task answers itself), check whether
//!   the caller gave up;
//! - [`Queue::serve`] and [`Runtime::serve`]: the usual loop, with a
//!   handler's `Err` and panics turned into failed calls;
//! - [`export_runtime!`]: writes `libffi_init`, and `libffi_fini` joining
//!   the threads, so that `unpin = true` can unload and reload the library;
//!   `export_runtime!(init, retire)` adds `libffi_retire`, so that
//!   `rt:__reload()` hands state over: [`Runtime::on_retire`] gives it,
//!   [`Runtime::state`] receives it;
//! - [`log`], [`Queue::log`] and [`warn!`] and its siblings: lines for
//!   nginx's error log from any thread, at nginx's levels ([`Level`]).
//!
//! ```ignore
//! fn init(_cfg: Option<&str>, rt: &mut hotffi::Runtime) -> Result<(), hotffi::Error> {
//!     rt.serve(2, |req| Ok(req.to_vec()))
//! }
//! hotffi::export_runtime!(init);
//! ```
//!
//! Libraries built with it also load on lua-resty-ffi: the hotffi-only
//! functions are looked up at run time and do nothing there.

mod logging;
mod runtime;
mod shdict;
mod sys;
mod task;

pub use logging::{log, log_fmt, Level, LogTarget};
pub use runtime::Runtime;
pub use shdict::{Dict, DictError, Got, Value};
pub use sys::{ABI_VERSION, TASK_CANCELLED};
pub use task::{CBuf, Error, Queue, Request, Task, RC_DROPPED, RC_ERROR, RC_PANIC};

pub(crate) use runtime::catch_panic;

/// The ABI version of the hotffi that loaded this library, or `None` on a
/// host without `hotffi_abi_version` (lua-resty-ffi).
pub fn host_abi_version() -> Option<i32> {
    sys::abi_version()
}

#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::{fini, init, retire};
}

/// Exports `libffi_init` and `libffi_fini` from a `cdylib`; with
/// `export_runtime!(init, retire)`, also `libffi_retire`.
///
/// `init` is a `fn(Option<&str>, &mut Runtime) -> Result<(), Error>`: it
/// gets the configuration (None for Lua's nil) and starts threads with
/// [`Runtime::spawn`] or [`Runtime::serve`].  It runs on the nginx event
/// loop: start threads and return, never block.  An `Err` fails the load
/// with its message; a panic is caught.  `libffi_fini` joins the threads
/// once hotffi has stopped the queue.
///
/// `export_runtime!(init, retire)` is for runtimes with state to hand over
/// in `rt:__reload()`: `libffi_retire` joins the threads like
/// `libffi_fini`, then gives the next version what the
/// [`Runtime::on_retire`] callback returns ([`Runtime::state`] in its
/// init).  Without `retire`, an init that calls `on_retire` fails.
///
/// Keep `init` free of thread-locals with destructors (`std::thread`,
/// `thread::current()`): on the event loop they would keep the library
/// mapped after `dlclose()` (see docs/rust.md).
#[macro_export]
macro_rules! export_runtime {
    ($init:path) => {
        $crate::export_runtime!(@init $init, false);
        $crate::export_runtime!(@fini);
    };
    ($init:path, retire) => {
        $crate::export_runtime!(@init $init, true);
        $crate::export_runtime!(@fini);

        /// thread: a hotffi reaper thread, after the stop, when
        /// rt:__reload() replaces this version.  tq: borrowed; *state:
        /// malloc()'ed, hotffi's once this returns.
        #[no_mangle]
        pub unsafe extern "C" fn libffi_retire(
            tq: *mut ::std::os::raw::c_void,
            state: *mut *mut ::std::os::raw::c_char,
            len: *mut ::std::os::raw::c_int,
        ) -> ::std::os::raw::c_int {
            $crate::__private::retire(tq, state, len)
        }
    };
    (@init $init:path, $retire:expr) => {
        /// thread: the nginx event loop.  cfg: borrowed; tq: borrowed.
        #[no_mangle]
        pub unsafe extern "C" fn libffi_init(
            cfg: *mut ::std::os::raw::c_char,
            tq: *mut ::std::os::raw::c_void,
        ) -> ::std::os::raw::c_int {
            $crate::__private::init(cfg, tq, $init, $retire)
        }
    };
    (@fini) => {
        /// thread: a hotffi reaper thread, after the stop.  tq: borrowed.
        #[no_mangle]
        pub extern "C" fn libffi_fini(tq: *mut ::std::os::raw::c_void) -> ::std::os::raw::c_int {
            $crate::__private::fini(tq)
        }
    };
}
