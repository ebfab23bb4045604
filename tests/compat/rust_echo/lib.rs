//! A runtime written the way lua-resty-ffi runtimes are, from its ABI
//! description alone: the three functions are declared here and nothing
//! comes from hotffi (build/lib/libffi_rust_echo.so).  It checks that such
//! libraries work on hotffi unmodified (tests/nginx/420-compat.t).
//!
//! Requests: "cfg" answers the configuration (or "<nil>"), "fail:TEXT"
//! fails with rc 1 and TEXT, anything else is echoed back.  cfg may name a
//! number of threads ("threads=4"); the default is one.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::ptr;
use std::slice;
use std::thread;

extern "C" {
    fn ngx_http_lua_ffi_task_poll(tq: *mut c_void) -> *mut c_void;
    fn ngx_http_lua_ffi_get_req(tsk: *mut c_void, len: *mut c_int) -> *mut c_char;
    fn ngx_http_lua_ffi_respond(tsk: *mut c_void, rc: c_int, rsp: *mut c_char, rsp_len: c_int);
    fn malloc(size: usize) -> *mut c_void;
}

// The queue pointer, sent to the polling threads.
struct Tq(*mut c_void);
unsafe impl Send for Tq {}

// The host free()s the answer: it is copied into malloc()'ed memory, with
// a NUL so that an empty answer is "" (rsp_len 0 means NUL-terminated).
unsafe fn respond(task: *mut c_void, rc: c_int, b: &[u8]) {
    let rsp = malloc(b.len() + 1) as *mut u8;
    if rsp.is_null() {
        ngx_http_lua_ffi_respond(task, 1, ptr::null_mut(), 0);
        return;
    }
    ptr::copy_nonoverlapping(b.as_ptr(), rsp, b.len());
    *rsp.add(b.len()) = 0;
    ngx_http_lua_ffi_respond(task, rc, rsp as *mut c_char, b.len() as c_int);
}

unsafe fn serve(tq: Tq, cfg: Option<String>) {
    loop {
        let task = ngx_http_lua_ffi_task_poll(tq.0);
        if task.is_null() {
            // unloaded: never touch tq again
            return;
        }

        let mut len: c_int = 0;
        let p = ngx_http_lua_ffi_get_req(task, &mut len);
        let req: &[u8] = if p.is_null() || len <= 0 {
            &[]
        } else {
            slice::from_raw_parts(p as *const u8, len as usize)
        };

        if req == b"cfg" {
            respond(task, 0, cfg.as_deref().unwrap_or("<nil>").as_bytes());
        } else if let Some(text) = req.strip_prefix(b"fail:") {
            respond(task, 1, text);
        } else {
            respond(task, 0, req);
        }
    }
}

/// # Safety
/// Called by the host with a NUL-terminated cfg (or NULL) and its queue.
#[no_mangle]
pub unsafe extern "C" fn libffi_init(cfg: *mut c_char, tq: *mut c_void) -> c_int {
    // cfg is freed by the host once we return: keep a copy.
    let cfg = if cfg.is_null() {
        None
    } else {
        Some(CStr::from_ptr(cfg).to_string_lossy().into_owned())
    };

    let threads = cfg
        .as_deref()
        .and_then(|c| c.strip_prefix("threads="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);

    for _ in 0..threads {
        let tq = Tq(tq);
        let cfg = cfg.clone();
        thread::spawn(move || unsafe { serve(tq, cfg) });
    }
    0
}
