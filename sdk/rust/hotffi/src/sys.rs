//! The C side: include/hotffi.h and the few libc functions the SDK needs,
//! declared by hand so that the crate has no dependencies.

use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `HOTFFI_ABI_VERSION` of the include/hotffi.h this crate follows.
pub const ABI_VERSION: i32 = 2;

/// `HOTFFI_TASK_CANCELLED`: the rc hotffi itself puts on a task nobody
/// waits for any more.
pub const TASK_CANCELLED: i32 = -100;

// lua-resty-ffi's names, provided by hotffi (or lua-resty-ffi).  They are
// undefined in the runtime library and bound by the dynamic linker at
// dlopen() time, from the nginx module that nginx loads RTLD_GLOBAL.
extern "C" {
    /// Blocks for the next task; NULL once the runtime was unloaded.
    /// tq: borrowed.  Returns a task the caller owns until respond().
    pub fn ngx_http_lua_ffi_task_poll(tq: *mut c_void) -> *mut c_void;

    /// The request of a task, borrowed from it until respond().
    pub fn ngx_http_lua_ffi_get_req(task: *mut c_void, len: *mut c_int) -> *mut c_char;

    /// Answers a task.  task and rsp (malloc()'ed or NULL): ownership
    /// passes to hotffi, which free()s rsp.
    pub fn ngx_http_lua_ffi_respond(task: *mut c_void, rc: c_int, rsp: *mut c_char, rsp_len: c_int);
}

// libc (glibc or musl): hotffi free()s responses, so they come from malloc().
extern "C" {
    pub fn malloc(size: usize) -> *mut c_void;
    pub fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    pub fn free(ptr: *mut c_void);
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

// pthread_t is an unsigned long on glibc and a pointer on musl: the same
// size on Linux.  Raw pthreads rather than std::thread: see runtime.rs.
pub type PthreadT = usize;

extern "C" {
    pub fn pthread_create(
        thread: *mut PthreadT,
        attr: *const c_void,
        start: extern "C" fn(*mut c_void) -> *mut c_void,
        arg: *mut c_void,
    ) -> c_int;
    pub fn pthread_join(thread: PthreadT, retval: *mut *mut c_void) -> c_int;
}

// hotffi's own functions do not exist on lua-resty-ffi.  Linking them
// would make every SDK runtime fail to load there, so they are looked up
// once with dlsym(RTLD_DEFAULT): a library built with this crate loads on
// both hosts, and the hotffi-only features quietly do nothing on the other.

const UNRESOLVED: usize = 0;
const ABSENT: usize = 1;

pub(crate) struct Optional {
    name: &'static [u8], // NUL-terminated
    addr: AtomicUsize,   // UNRESOLVED, ABSENT or the function's address
}

impl Optional {
    pub(crate) const fn new(name: &'static [u8]) -> Optional {
        Optional {
            name,
            addr: AtomicUsize::new(UNRESOLVED),
        }
    }

    pub(crate) fn get(&self) -> Option<usize> {
        let mut addr = self.addr.load(Ordering::Acquire);
        if addr == UNRESOLVED {
            // RTLD_DEFAULT is NULL on glibc and musl.  Two threads may race
            // here; both store the same answer.
            let p = unsafe { dlsym(std::ptr::null_mut(), self.name.as_ptr() as *const c_char) };
            addr = if p.is_null() { ABSENT } else { p as usize };
            self.addr.store(addr, Ordering::Release);
        }
        if addr == ABSENT {
            None
        } else {
            Some(addr)
        }
    }
}

static ABI_VERSION_FN: Optional = Optional::new(b"hotffi_abi_version\0");
static TASK_CANCELLED_FN: Optional = Optional::new(b"hotffi_task_cancelled\0");
static INIT_ERROR_FN: Optional = Optional::new(b"hotffi_init_error\0");
static STATE_FN: Optional = Optional::new(b"hotffi_state\0");
static POLL_BATCH_FN: Optional = Optional::new(b"hotffi_task_poll_batch\0");
static LOG_FN: Optional = Optional::new(b"hotffi_log\0");

/// hotffi_abi_version(), or None on a host without it.
pub fn abi_version() -> Option<i32> {
    ABI_VERSION_FN.get().map(|addr| {
        let f: extern "C" fn() -> c_int = unsafe { std::mem::transmute(addr) };
        f()
    })
}

/// hotffi_task_cancelled(task); false on a host without it.
///
/// # Safety
/// task must be a task polled and not yet answered.
pub unsafe fn task_cancelled(task: *mut c_void) -> bool {
    match TASK_CANCELLED_FN.get() {
        Some(addr) => {
            let f: unsafe extern "C" fn(*mut c_void) -> c_int = std::mem::transmute(addr);
            f(task) != 0
        }
        None => false,
    }
}

/// hotffi_init_error(tq, msg); nothing on a host without it.
///
/// # Safety
/// tq must be the queue libffi_init() was given, and this must run inside
/// libffi_init().  msg: borrowed, NUL-terminated; hotffi copies it.
pub unsafe fn init_error(tq: *mut c_void, msg: *const c_char) {
    if let Some(addr) = INIT_ERROR_FN.get() {
        let f: unsafe extern "C" fn(*mut c_void, *const c_char) = std::mem::transmute(addr);
        f(tq, msg)
    }
}

/// hotffi_state(tq, &len): the blob the previous version handed over from
/// its libffi_retire(), as (pointer, len); None when there is none or on a
/// host without it (lua-resty-ffi).
///
/// # Safety
/// tq must be the queue libffi_init() was given, and this must run inside
/// libffi_init().  The memory is borrowed until libffi_init() returns.
pub unsafe fn state(tq: *mut c_void) -> Option<(*const c_char, usize)> {
    let addr = STATE_FN.get()?;
    let f: unsafe extern "C" fn(*mut c_void, *mut c_int) -> *const c_char =
        std::mem::transmute(addr);
    let mut len: c_int = 0;
    let p = f(tq, &mut len);
    if p.is_null() {
        None
    } else {
        Some((p, len.max(0) as usize))
    }
}

/// hotffi_task_poll_batch(tq, tasks, max): up to max tasks, oldest first,
/// blocking until there is one; 0 at the stop.  On a host without it, one
/// task at a time through ngx_http_lua_ffi_task_poll().
///
/// # Safety
/// tq must be a live queue; tasks must have room for max (>= 1) pointers,
/// and the tasks written there are the caller's until respond().
pub unsafe fn task_poll_batch(tq: *mut c_void, tasks: *mut *mut c_void, max: c_int) -> c_int {
    match POLL_BATCH_FN.get() {
        Some(addr) => {
            let f: unsafe extern "C" fn(*mut c_void, *mut *mut c_void, c_int) -> c_int =
                std::mem::transmute(addr);
            f(tq, tasks, max)
        }
        None => {
            let p = ngx_http_lua_ffi_task_poll(tq);
            *tasks = p;
            c_int::from(!p.is_null())
        }
    }
}

/// hotffi_log(tq, level, msg, len); nothing on a host without it.
///
/// # Safety
/// tq must be NULL or a live queue.  msg: borrowed for the call (hotffi
/// copies it), len bytes; len must be > 0, since 0 means NUL-terminated.
pub unsafe fn log(tq: *mut c_void, level: c_int, msg: *const c_char, len: c_int) {
    if let Some(addr) = LOG_FN.get() {
        let f: unsafe extern "C" fn(*mut c_void, c_int, *const c_char, c_int) =
            std::mem::transmute(addr);
        f(tq, level, msg, len)
    }
}
