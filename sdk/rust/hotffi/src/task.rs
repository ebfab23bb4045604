//! Queues, tasks and answers: the safe face of the C ABI.

use std::ffi::CString;
use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr::NonNull;
use std::slice;

use crate::sys;

/// rc of a failed call whose [`Error`] gave none (and of plain errors).
pub const RC_ERROR: i32 = 1;
/// rc of a call whose handler panicked.
pub const RC_PANIC: i32 = 2;
/// rc of a task dropped without an answer (see [`Task`]).
pub const RC_DROPPED: i32 = 3;

/// The task queue hotffi hands to `libffi_init`.  It is borrowed from
/// hotffi and stays valid until [`Queue::poll`] returns `None` (and, with
/// `libffi_fini`, until that returns).  Copy it to every polling thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue(NonNull<c_void>);

// The ABI's poll is thread-safe: a queue may be polled from any thread.
unsafe impl Send for Queue {}
unsafe impl Sync for Queue {}

impl Queue {
    /// Wraps the `tq` pointer `libffi_init` received; None if it is NULL.
    ///
    /// # Safety
    /// tq must be a queue hotffi (or lua-resty-ffi) handed to this library
    /// and must not be used after the stop and libffi_fini.
    pub unsafe fn from_raw(tq: *mut c_void) -> Option<Queue> {
        NonNull::new(tq).map(Queue)
    }

    /// The raw `tq` pointer, borrowed.
    pub fn as_ptr(&self) -> *mut c_void {
        self.0.as_ptr()
    }

    /// Takes the next task, blocking this thread until there is one.
    /// `None` means the runtime was unloaded: stop polling; every later
    /// poll returns `None` as well.
    pub fn poll(&self) -> Option<Task> {
        // The task is ours until respond(), which Task guarantees.
        let p = unsafe { sys::ngx_http_lua_ffi_task_poll(self.as_ptr()) };
        NonNull::new(p).map(|ptr| Task { ptr })
    }

    /// Takes up to `max` tasks at once (at least one, at most 64), oldest
    /// first, into `out` (cleared first), blocking this thread until there
    /// is one; one lock round trip for the lot.  `false` means the runtime
    /// was unloaded, as [`Queue::poll`]'s `None`.  Each task is answered on
    /// its own.  On a host without `hotffi_task_poll_batch` (lua-resty-ffi)
    /// it takes one task at a time.  Useful for a loop that hands tasks to
    /// workers of its own; a thread that runs each handler itself gains
    /// nothing over `poll`, and holding several tasks would keep them from
    /// the queue's other threads.
    pub fn poll_batch(&self, out: &mut Vec<Task>, max: usize) -> bool {
        let mut ptrs = [std::ptr::null_mut::<c_void>(); 64];
        let max = max.clamp(1, ptrs.len());
        out.clear();
        // ptrs: written by hotffi; each task is ours until respond().
        let n = unsafe { sys::task_poll_batch(self.as_ptr(), ptrs.as_mut_ptr(), max as c_int) };
        for p in &ptrs[..n.max(0) as usize] {
            if let Some(ptr) = NonNull::new(*p) {
                out.push(Task { ptr });
            }
        }
        !out.is_empty()
    }

    /// Answers every task with `handler` on this thread until the runtime
    /// is unloaded.  A handler's `Err` fails its call with the error's rc
    /// and message; a panic fails it with [`RC_PANIC`] and the panic's
    /// message; either way the loop goes on.
    pub fn serve<H>(&self, handler: H)
    where
        H: Fn(&Request) -> Result<Vec<u8>, Error>,
    {
        while let Some(task) = self.poll() {
            task.handle(&handler);
        }
    }
}

/// One call, from [`Queue::poll`] until it is answered.
///
/// Every task must be answered exactly once: the `respond*` methods consume
/// it, and a task dropped unanswered (an early return, a panic) answers
/// itself with [`RC_DROPPED`], so no caller waits for its timeout.
#[derive(Debug)]
pub struct Task {
    ptr: NonNull<c_void>, // hotffi's task; ours until respond()
}

// A task may be handed to another thread, which then owns it.
unsafe impl Send for Task {}

impl Task {
    /// The request, borrowed from hotffi: valid until the task is answered,
    /// which the borrow checker enforces.  May contain NUL bytes.  A call
    /// made without a request (nil in Lua) gives an empty slice.
    pub fn req(&self) -> &[u8] {
        let mut len: c_int = 0;
        let p = unsafe { sys::ngx_http_lua_ffi_get_req(self.ptr.as_ptr(), &mut len) };
        if p.is_null() || len <= 0 {
            return &[];
        }
        unsafe { slice::from_raw_parts(p as *const u8, len as usize) }
    }

    /// True once the caller gave up (timeout, the request ended).  Long
    /// work may check it and answer early; an answer is still required.
    /// Always false on lua-resty-ffi.
    pub fn cancelled(&self) -> bool {
        unsafe { sys::task_cancelled(self.ptr.as_ptr()) }
    }

    /// Answers with `rc` (0: success) and a copy of `rsp` in malloc()'ed
    /// memory; an empty `rsp` gives Lua `""`.
    pub fn respond<B: AsRef<[u8]>>(self, rc: i32, rsp: B) {
        match CBuf::from_slice(rsp.as_ref()) {
            Some(buf) => self.respond_buf(rc, buf),
            None => self.respond_none(RC_ERROR),
        }
    }

    /// Answers with `rc` (0: success) and a buffer already in C memory,
    /// without copying it.
    pub fn respond_buf(self, rc: i32, buf: CBuf) {
        let (p, len) = buf.into_raw();
        if len > i32::MAX as usize {
            unsafe { sys::free(p as *mut c_void) };
            self.respond(RC_ERROR, "hotffi: response larger than 2 GiB - 1");
            return;
        }
        // p: ownership passes to hotffi, which free()s it.  len 0 means
        // "NUL-terminated", and CBuf always keeps a NUL after its bytes.
        self.respond_raw(rc, p, len as c_int);
    }

    /// Answers with `rc` and no payload: Lua sees nil.
    pub fn respond_none(self, rc: i32) {
        self.respond_raw(rc, std::ptr::null_mut(), 0);
    }

    fn respond_raw(self, rc: i32, rsp: *mut c_char, len: c_int) {
        // No Drop after this: the task belongs to hotffi from here on.
        let task = ManuallyDrop::new(self);
        unsafe { sys::ngx_http_lua_ffi_respond(task.ptr.as_ptr(), rc, rsp, len) };
    }

    /// Runs `handler` on the request and answers with its result; panics
    /// become failed calls (see [`Queue::serve`]).
    pub fn handle<H>(self, handler: H)
    where
        H: FnOnce(&Request) -> Result<Vec<u8>, Error>,
    {
        let result = {
            let req = Request { task: &self };
            crate::catch_panic(|| handler(&req))
        };
        match result {
            Ok(Ok(rsp)) => self.respond(0, rsp),
            Ok(Err(e)) => self.respond(e.rc, e.msg),
            Err(msg) => self.respond(RC_PANIC, msg),
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // Answered here only if no respond*() consumed it.  The message is
        // copied, since hotffi free()s whatever it gets; out of memory, the
        // task is answered with no payload.
        let (p, len) = CBuf::from_slice(b"hotffi: task dropped without an answer")
            .map_or((std::ptr::null_mut(), 0), CBuf::into_raw);
        unsafe { sys::ngx_http_lua_ffi_respond(self.ptr.as_ptr(), RC_DROPPED, p, len as c_int) };
    }
}

/// What a handler sees: the request bytes (through `Deref`) and whether the
/// caller still waits.
pub struct Request<'a> {
    task: &'a Task,
}

impl<'a> Request<'a> {
    /// The request bytes, valid while the handler runs.
    pub fn bytes(&self) -> &'a [u8] {
        self.task.req()
    }

    /// True once the caller gave up: stop early, any answer will do.
    pub fn cancelled(&self) -> bool {
        self.task.cancelled()
    }
}

impl Deref for Request<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.task.req()
    }
}

/// A failed call: Lua sees `false, rc, msg`.  `rc` should be positive
/// (hotffi's own codes are negative).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub rc: i32,
    pub msg: String,
}

impl Error {
    pub fn new<S: Into<String>>(rc: i32, msg: S) -> Error {
        Error {
            rc,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rc {})", self.msg, self.rc)
    }
}

impl From<&str> for Error {
    fn from(msg: &str) -> Error {
        Error::new(RC_ERROR, msg)
    }
}

impl From<String> for Error {
    fn from(msg: String) -> Error {
        Error::new(RC_ERROR, msg)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::new(RC_ERROR, e.to_string())
    }
}

impl From<std::str::Utf8Error> for Error {
    fn from(e: std::str::Utf8Error) -> Error {
        Error::new(RC_ERROR, e.to_string())
    }
}

impl From<std::num::ParseIntError> for Error {
    fn from(e: std::num::ParseIntError) -> Error {
        Error::new(RC_ERROR, e.to_string())
    }
}

/// A growable byte buffer in malloc()'ed memory, for answers built in place
/// and handed to hotffi without a copy ([`Task::respond_buf`]).  It keeps
/// one spare byte for a terminating NUL.
pub struct CBuf {
    ptr: NonNull<u8>, // malloc()'ed; ours until into_raw()
    len: usize,
    cap: usize, // bytes usable before the NUL's byte
}

// Plain malloc()'ed memory, owned by the value.
unsafe impl Send for CBuf {}

impl CBuf {
    /// An empty buffer with room for `cap` bytes; None when out of memory.
    pub fn with_capacity(cap: usize) -> Option<CBuf> {
        let p = unsafe { sys::malloc(cap.checked_add(1)?) } as *mut u8;
        let ptr = NonNull::new(p)?;
        unsafe { *ptr.as_ptr() = 0 };
        Some(CBuf { ptr, len: 0, cap })
    }

    /// A copy of `bytes`; None when out of memory.
    pub fn from_slice(bytes: &[u8]) -> Option<CBuf> {
        let mut buf = CBuf::with_capacity(bytes.len())?;
        buf.try_extend(bytes).ok()?;
        Some(buf)
    }

    /// Appends `bytes`, growing the buffer; Err when out of memory.
    pub fn try_extend(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let need = self
            .len
            .checked_add(bytes.len())
            .ok_or("hotffi: buffer too large")?;
        if need > self.cap {
            let cap = need.max(self.cap.saturating_mul(2));
            let size = cap.checked_add(1).ok_or("hotffi: buffer too large")?;
            let p = unsafe { sys::realloc(self.ptr.as_ptr() as *mut c_void, size) } as *mut u8;
            // On failure realloc() leaves the old block alone: still ours.
            self.ptr = NonNull::new(p).ok_or("hotffi: out of memory")?;
            self.cap = cap;
        }
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(self.len),
                bytes.len(),
            );
            self.len = need;
            *self.ptr.as_ptr().add(self.len) = 0;
        }
        Ok(())
    }

    /// Gives up the memory: the caller frees it with free(), or passes it
    /// on to hotffi, which does.  The bytes are followed by a NUL.
    pub fn into_raw(self) -> (*mut c_char, usize) {
        let buf = ManuallyDrop::new(self);
        (buf.ptr.as_ptr() as *mut c_char, buf.len)
    }
}

impl Deref for CBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        unsafe { slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::io::Write for CBuf {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.try_extend(bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::OutOfMemory, e.msg))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for CBuf {
    fn drop(&mut self) {
        unsafe { sys::free(self.ptr.as_ptr() as *mut c_void) };
    }
}

/// Says why `libffi_init` fails; see [`crate::export_runtime`], which calls
/// it for an init function's `Err`.
pub(crate) fn init_error(queue: Queue, msg: &str) {
    // NULs would cut the message short: replace them.
    let msg = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    unsafe { sys::init_error(queue.as_ptr(), msg.as_ptr()) };
}
