//! A runtime's threads, and the glue behind `export_runtime!`.
//!
//! Threads are started with pthread_create() rather than std::thread,
//! because of how a library is unloaded.  glibc keeps a library mapped
//! while any thread still has a thread-local destructor of it pending, and
//! std::thread::spawn() registers one on the *spawning* thread -- the nginx
//! event loop, which never exits.  The library would then survive its
//! dlclose(), and `unpin = true` would silently reload the old code.  With
//! raw pthreads, Rust code runs only on the runtime's own threads, whose
//! destructors have run by the time libffi_fini() has joined them.

use std::any::Any;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::{Arc, Mutex};

use crate::sys;
use crate::task::{init_error, Error, Queue, Request, RC_ERROR, RC_PANIC};

/// A runtime being started by `libffi_init`: its queue and the threads
/// that `libffi_fini` joins.
pub struct Runtime {
    queue: Queue,
    threads: Vec<sys::PthreadT>,
}

impl Runtime {
    fn new(queue: Queue) -> Runtime {
        Runtime {
            queue,
            threads: Vec::new(),
        }
    }

    /// The runtime's task queue.
    pub fn queue(&self) -> Queue {
        self.queue
    }

    /// Starts a thread running `f(queue)`; it should poll until the queue
    /// says stop.  `libffi_fini` joins it.  A panic that escapes `f` ends
    /// the thread, not the process.
    pub fn spawn<F>(&mut self, f: F) -> Result<(), Error>
    where
        F: FnOnce(Queue) + Send + 'static,
    {
        let queue = self.queue;
        let body: Box<dyn FnOnce() + Send> = Box::new(move || f(queue));
        // arg: ownership passes to the new thread (thread_main), or comes
        // back to us if it could not start.
        let arg = Box::into_raw(Box::new(body)) as *mut c_void;
        let mut tid: sys::PthreadT = 0;

        let rc = unsafe { sys::pthread_create(&mut tid, ptr::null(), thread_main, arg) };
        if rc != 0 {
            drop(unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() + Send>) });
            return Err(Error::new(
                RC_ERROR,
                format!("pthread_create() failed: {rc}"),
            ));
        }

        self.threads.push(tid);
        Ok(())
    }

    /// Starts `threads` threads that answer every task with `handler` (see
    /// [`Queue::serve`]): a handler's `Err` or panic fails its call only.
    pub fn serve<H>(&mut self, threads: usize, handler: H) -> Result<(), Error>
    where
        H: Fn(&Request) -> Result<Vec<u8>, Error> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        for _ in 0..threads.max(1) {
            let handler = Arc::clone(&handler);
            self.spawn(move |queue| queue.serve(|req| handler(req)))?;
        }
        Ok(())
    }
}

extern "C" fn thread_main(arg: *mut c_void) -> *mut c_void {
    // arg: ours, from Runtime::spawn.
    let body = unsafe { Box::from_raw(arg as *mut Box<dyn FnOnce() + Send>) };
    // Nothing may unwind out of an extern "C" function.
    if let Err(msg) = catch_panic(body) {
        eprintln!("hotffi: a runtime thread ended by a {msg}");
    }
    ptr::null_mut()
}

/// Runs `f`, turning a panic into "panic: <message>".
pub(crate) fn catch_panic<R, F: FnOnce() -> R>(f: F) -> Result<R, String> {
    panic::catch_unwind(AssertUnwindSafe(f))
        .map_err(|payload| format!("panic: {}", panic_message(&*payload)))
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(not a string)"
    }
}

// The threads of every runtime of this library that libffi_fini has not
// joined yet, by queue.  A registry of our own rather than
// hotffi_tq_set_data(), which lua-resty-ffi does not have.
static STARTED: Mutex<Vec<(usize, Vec<sys::PthreadT>)>> = Mutex::new(Vec::new());

/// The body of the `libffi_init` that [`crate::export_runtime`] writes.
///
/// # Safety
/// cfg: NULL or a NUL-terminated string, borrowed for this call only; tq:
/// the queue hotffi handed over.  thread: the nginx event loop.
#[doc(hidden)]
pub unsafe fn init(
    cfg: *mut c_char,
    tq: *mut c_void,
    f: fn(Option<&str>, &mut Runtime) -> Result<(), Error>,
) -> c_int {
    let queue = match Queue::from_raw(tq) {
        Some(q) => q,
        None => return RC_ERROR,
    };
    let mut rt = Runtime::new(queue);

    // rt lives outside the closure: threads started before a failure or a
    // panic must still be joined by libffi_fini (hotffi calls it then too).
    let result = catch_panic(|| {
        let cfg = if cfg.is_null() {
            None
        } else {
            // cfg: borrowed, hotffi frees it when we return.
            match CStr::from_ptr(cfg).to_str() {
                Ok(s) => Some(s),
                Err(_) => return Err(Error::new(RC_ERROR, "configuration is not UTF-8")),
            }
        };
        f(cfg, &mut rt)
    });

    if !rt.threads.is_empty() {
        // Never poisoned (nothing panics while holding it), but a lost
        // entry would leave threads running in an unmapped library.
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        started.push((tq as usize, rt.threads));
    }

    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            init_error(queue, &e.msg);
            if e.rc == 0 {
                RC_ERROR
            } else {
                e.rc
            }
        }
        Err(msg) => {
            init_error(queue, &msg);
            RC_PANIC
        }
    }
}

/// The body of the `libffi_fini` that [`crate::export_runtime`] writes:
/// joins the runtime's threads.  thread: a hotffi reaper thread, after the
/// stop was delivered, so every thread's poll returns NULL and the joins end.
#[doc(hidden)]
pub fn fini(tq: *mut c_void) -> c_int {
    let threads = {
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        match started.iter().position(|(q, _)| *q == tq as usize) {
            Some(i) => started.swap_remove(i).1,
            None => Vec::new(),
        }
    };

    // Joined without the lock held: another runtime may start meanwhile.
    for tid in threads {
        unsafe { sys::pthread_join(tid, ptr::null_mut()) };
    }
    0
}
