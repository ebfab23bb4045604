//! Lines for nginx's error log, from any thread: [`log`], [`Queue::log`]
//! and the macros [`log!`](crate::log!), [`error!`](crate::error!),
//! [`warn!`](crate::warn!), [`notice!`](crate::notice!),
//! [`info!`](crate::info!) and [`debug!`](crate::debug!), in the spirit of
//! the `log` crate's but naming the queue they log for.
//!
//! Each line goes through `hotffi_log()` (include/hotffi.h): copied, then
//! written by the worker's event loop with nginx's own logger, marked with
//! the runtime's name and version, filtered by the `error_log` level,
//! never blocking; a full buffer drops lines and says how many.  On a host
//! without it (lua-resty-ffi) nothing is written.

use std::fmt;
use std::os::raw::{c_char, c_int};

use crate::sys;
use crate::task::Queue;

/// A line's level: nginx's, as `error_log` names them, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Emerg = 1,
    Alert = 2,
    Crit = 3,
    Error = 4,
    Warn = 5,
    Notice = 6,
    Info = 7,
    Debug = 8,
}

/// Whom a line is for: a [`Queue`] (or `&Queue`), whose runtime's name and
/// version mark it, or `None` for a line of no runtime.
pub trait LogTarget {
    /// The raw `tq`, or NULL.
    fn tq(&self) -> *mut std::os::raw::c_void;
}

impl LogTarget for Queue {
    fn tq(&self) -> *mut std::os::raw::c_void {
        self.as_ptr()
    }
}

impl LogTarget for &Queue {
    fn tq(&self) -> *mut std::os::raw::c_void {
        self.as_ptr()
    }
}

impl LogTarget for Option<Queue> {
    fn tq(&self) -> *mut std::os::raw::c_void {
        self.map_or(std::ptr::null_mut(), |q| q.as_ptr())
    }
}

// "" for an empty line: a byte array rather than a C string literal,
// which needs a newer Rust than Debian 12's
static EMPTY: [u8; 1] = [0];

/// Writes `msg` as one line of nginx's error log at `level`.  Any bytes;
/// a line longer than hotffi keeps (about 1900 bytes) is cut with a
/// marker.  Never blocks.
pub fn log<T: LogTarget, M: AsRef<[u8]>>(target: T, level: Level, msg: M) {
    let msg = msg.as_ref();
    // len 0 means NUL-terminated to hotffi_log(): pass "" for an empty line
    let (p, len): (*const c_char, usize) = if msg.is_empty() {
        (EMPTY.as_ptr().cast(), 0)
    } else {
        (msg.as_ptr().cast(), msg.len().min(c_int::MAX as usize))
    };
    // msg: borrowed for the call, copied by hotffi
    unsafe { sys::log(target.tq(), level as c_int, p, len as c_int) }
}

/// [`log`] of formatted arguments: what the macros call.  A literal
/// (`info!(q, "ready")`) is not copied on the way.
pub fn log_fmt<T: LogTarget>(target: T, level: Level, args: fmt::Arguments) {
    match args.as_str() {
        Some(s) => log(target, level, s),
        None => log(target, level, fmt::format(args)),
    }
}

impl Queue {
    /// [`log`] for this queue's runtime.
    pub fn log<M: AsRef<[u8]>>(&self, level: Level, msg: M) {
        log(*self, level, msg)
    }
}

/// `log!(queue, Level::Notice, "fmt", args...)`: one line at a level;
/// `queue` is a [`Queue`], `&Queue`, or `None` for no runtime.
#[macro_export]
macro_rules! log {
    ($target:expr, $level:expr, $($arg:tt)+) => {
        $crate::log_fmt($target, $level, ::std::format_args!($($arg)+))
    };
}

/// `error!(queue, "fmt", args...)`: [`log!`](crate::log!) at `Level::Error`.
#[macro_export]
macro_rules! error {
    ($target:expr, $($arg:tt)+) => {
        $crate::log!($target, $crate::Level::Error, $($arg)+)
    };
}

/// `warn!(queue, "fmt", args...)`: [`log!`](crate::log!) at `Level::Warn`.
#[macro_export]
macro_rules! warn {
    ($target:expr, $($arg:tt)+) => {
        $crate::log!($target, $crate::Level::Warn, $($arg)+)
    };
}

/// `notice!(queue, "fmt", args...)`: at `Level::Notice`.
#[macro_export]
macro_rules! notice {
    ($target:expr, $($arg:tt)+) => {
        $crate::log!($target, $crate::Level::Notice, $($arg)+)
    };
}

/// `info!(queue, "fmt", args...)`: at `Level::Info`.
#[macro_export]
macro_rules! info {
    ($target:expr, $($arg:tt)+) => {
        $crate::log!($target, $crate::Level::Info, $($arg)+)
    };
}

/// `debug!(queue, "fmt", args...)`: at `Level::Debug`.
#[macro_export]
macro_rules! debug {
    ($target:expr, $($arg:tt)+) => {
        $crate::log!($target, $crate::Level::Debug, $($arg)+)
    };
}
