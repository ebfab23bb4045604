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
use crate::task::{init_error, CBuf, Error, Queue, Request, RC_ERROR, RC_PANIC};

/// What a runtime's retire callback returns: the state for the next
/// version (`None`: none).
type RetireBox = Box<dyn FnOnce() -> Option<Vec<u8>> + Send>;

/// A runtime being started by `libffi_init`: its queue, the threads that
/// `libffi_fini` (or `libffi_retire`) joins, and its retire callback.
pub struct Runtime {
    queue: Queue,
    threads: Vec<sys::PthreadT>,
    retire: Option<RetireBox>,
    // hotffi_state(): borrowed from hotffi until libffi_init returns,
    // which is as long as this Runtime lives.
    state: Option<(*const c_char, usize)>,
}

impl Runtime {
    fn new(queue: Queue) -> Runtime {
        Runtime {
            queue,
            threads: Vec::new(),
            retire: None,
            state: None,
        }
    }

    /// The runtime's task queue.
    pub fn queue(&self) -> Queue {
        self.queue
    }

    /// The state the previous version handed over when `rt:__reload()`
    /// replaced it (what its [`Runtime::on_retire`] callback returned), or
    /// `None`: a first load, a reload with `state = false`, a previous
    /// version without a retire callback, or a host without in-place
    /// reload (lua-resty-ffi).  A rolled-back reload gives the same state
    /// to the old version again.  Borrowed for `init` only: copy it.
    pub fn state(&self) -> Option<&[u8]> {
        // p, len: valid until libffi_init returns; self does not outlive it.
        self.state.map(|(p, len)| {
            if len == 0 {
                &[][..]
            } else {
                unsafe { std::slice::from_raw_parts(p as *const u8, len) }
            }
        })
    }

    /// Sets what this version hands to the next one when `rt:__reload()`
    /// replaces it.  `f` runs on a hotffi thread once the queue is stopped
    /// and every thread of this runtime has been joined (so what they
    /// shared is quiet); its bytes reach the next version's
    /// [`Runtime::state`].  A panic in `f` fails the reload, which restarts
    /// this version without state.  Not called on unload, or on a reload
    /// with `state = false`: then `f` is dropped.  A later call replaces
    /// an earlier one.
    pub fn on_retire<F>(&mut self, f: F)
    where
        F: FnOnce() -> Option<Vec<u8>> + Send + 'static,
    {
        self.retire = Some(Box::new(f));
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

// What libffi_fini or libffi_retire must end, per runtime of this library
// not ended yet.
struct Started {
    tq: usize, // hotffi's queue, a key only: never dereferenced here
    threads: Vec<sys::PthreadT>,
    retire: Option<RetireBox>,
}

// The runtimes of this library, by queue.  A registry of our own rather
// than hotffi_tq_set_data(), which lua-resty-ffi does not have.
static STARTED: Mutex<Vec<Started>> = Mutex::new(Vec::new());

// Takes tq's entry out of the registry and joins its threads (without the
// lock held: another runtime may start meanwhile).  thread: a hotffi
// reaper, after the stop, so every thread's poll returns NULL.
fn end(tq: *mut c_void) -> Option<RetireBox> {
    let entry = {
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        started
            .iter()
            .position(|s| s.tq == tq as usize)
            .map(|i| started.swap_remove(i))
    };
    let entry = entry?;
    for tid in entry.threads {
        unsafe { sys::pthread_join(tid, ptr::null_mut()) };
    }
    entry.retire
}

/// The body of the `libffi_init` that [`crate::export_runtime`] writes;
/// `retire_exported` says whether it writes `libffi_retire` too, which
/// [`Runtime::on_retire`] needs.
///
/// # Safety
/// cfg: NULL or a NUL-terminated string, borrowed for this call only; tq:
/// the queue hotffi handed over.  thread: the nginx event loop.
#[doc(hidden)]
pub unsafe fn init(
    cfg: *mut c_char,
    tq: *mut c_void,
    f: fn(Option<&str>, &mut Runtime) -> Result<(), Error>,
    retire_exported: bool,
) -> c_int {
    let queue = match Queue::from_raw(tq) {
        Some(q) => q,
        None => return RC_ERROR,
    };
    let mut rt = Runtime::new(queue);
    rt.state = sys::state(tq);

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
        f(cfg, &mut rt)?;
        if rt.retire.is_some() && !retire_exported {
            // hotffi would never call it: say so now, not at the reload
            return Err(Error::new(
                RC_ERROR,
                "Runtime::on_retire() needs hotffi::export_runtime!(init, retire)",
            ));
        }
        Ok(())
    });

    rt.state = None;

    if !rt.threads.is_empty() || rt.retire.is_some() {
        // Never poisoned (nothing panics while holding it), but a lost
        // entry would leave threads running in an unmapped library.
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        started.push(Started {
            tq: tq as usize,
            threads: rt.threads,
            retire: rt.retire,
        });
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
    // the retire callback, if any, is dropped: no next version wants it
    drop(end(tq));
    0
}

/// The body of the `libffi_retire` that `export_runtime!(init, retire)`
/// writes:
/// joins the runtime's threads, then hands what its retire callback
/// returns to hotffi, copied into malloc()'ed memory.
///
/// # Safety
/// state and len: valid for writes.  thread: a hotffi reaper thread, after
/// the stop was delivered.
#[doc(hidden)]
pub unsafe fn retire(tq: *mut c_void, state: *mut *mut c_char, len: *mut c_int) -> c_int {
    *state = ptr::null_mut();
    *len = 0;

    let f = match end(tq) {
        Some(f) => f,
        None => return 0,
    };

    let bytes = match catch_panic(f) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return 0,
        Err(msg) => {
            // the reload's error only names the rc: the reason goes here
            eprintln!("hotffi: a retire callback ended by a {msg}");
            return RC_PANIC;
        }
    };

    let n = match c_int::try_from(bytes.len()) {
        Ok(n) => n,
        Err(_) => {
            eprintln!("hotffi: a retire callback returned 2 GiB or more");
            return RC_ERROR;
        }
    };

    // a NUL after the bytes (CBuf keeps one), for C successors that read
    // them as a string
    let buf = match CBuf::from_slice(&bytes) {
        Some(buf) => buf,
        None => return RC_ERROR,
    };
    // ownership passes to hotffi, which free()s it
    *state = buf.into_raw().0;
    *len = n;
    0
}
