//! The SDK against a fake host: the four lua-resty-ffi functions are
//! defined here, over a queue of our own, so that tasks, answers, dropped
//! tasks, panics and the thread glue can be checked without nginx.
//! (hotffi's own optional functions are absent here, as on lua-resty-ffi.)

use std::collections::VecDeque;
use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::{Condvar, Mutex};

use hotffi::{CBuf, Error, Level, Queue, Runtime, Task, RC_DROPPED, RC_PANIC};

struct FakeTask {
    req: Vec<u8>,
}

struct FakeQueue {
    tasks: Mutex<(VecDeque<*mut FakeTask>, bool)>, // tasks, stopped
    cond: Condvar,
}

unsafe impl Sync for FakeQueue {}

// What respond() received: (request, rc, answer or None).
static ANSWERS: Mutex<Vec<(Vec<u8>, i32, Option<Vec<u8>>)>> = Mutex::new(Vec::new());

#[no_mangle]
extern "C" fn ngx_http_lua_ffi_task_poll(tq: *mut c_void) -> *mut c_void {
    let q = unsafe { &*(tq as *const FakeQueue) };
    let mut guard = q.tasks.lock().unwrap();
    loop {
        if let Some(t) = guard.0.pop_front() {
            return t as *mut c_void;
        }
        if guard.1 {
            return std::ptr::null_mut();
        }
        guard = q.cond.wait(guard).unwrap();
    }
}

#[no_mangle]
extern "C" fn ngx_http_lua_ffi_get_req(task: *mut c_void, len: *mut c_int) -> *mut c_char {
    let t = unsafe { &mut *(task as *mut FakeTask) };
    unsafe { *len = t.req.len() as c_int };
    t.req.as_mut_ptr() as *mut c_char
}

extern "C" {
    fn free(p: *mut c_void);
    fn strlen(s: *const c_char) -> usize;
}

#[no_mangle]
extern "C" fn ngx_http_lua_ffi_respond(task: *mut c_void, rc: c_int, rsp: *mut c_char, len: c_int) {
    // Both are ours now, as they would be hotffi's.
    let t = unsafe { Box::from_raw(task as *mut FakeTask) };
    let answer = if rsp.is_null() {
        None
    } else {
        let n = if len <= 0 {
            unsafe { strlen(rsp) }
        } else {
            len as usize
        };
        let bytes = unsafe { std::slice::from_raw_parts(rsp as *const u8, n) }.to_vec();
        unsafe { free(rsp as *mut c_void) };
        Some(bytes)
    };
    ANSWERS.lock().unwrap().push((t.req, rc, answer));
}

fn queue_with(reqs: &[&[u8]], stopped: bool) -> &'static FakeQueue {
    let tasks = reqs
        .iter()
        .map(|r| Box::into_raw(Box::new(FakeTask { req: r.to_vec() })))
        .collect();
    Box::leak(Box::new(FakeQueue {
        tasks: Mutex::new((tasks, stopped)),
        cond: Condvar::new(),
    }))
}

fn raw(q: &'static FakeQueue) -> *mut c_void {
    q as *const FakeQueue as *mut c_void
}

fn answer_to(req: &[u8]) -> (i32, Option<Vec<u8>>) {
    let answers = ANSWERS.lock().unwrap();
    let a = answers.iter().find(|a| a.0 == req).expect("answered");
    (a.1, a.2.clone())
}

// Tests run in parallel, and ANSWERS is shared: every test uses requests
// of its own.

#[test]
fn serve_answers_errors_and_panics() {
    let q = queue_with(
        &[b"t1 ok", b"t1 err", b"t1 rc", b"t1 panic", b"t1 \0bin"],
        true,
    );
    let queue = unsafe { Queue::from_raw(raw(q)) }.unwrap();
    queue.serve(|req| match &req[..] {
        b"t1 err" => Err("plain".into()),
        b"t1 rc" => Err(Error::new(9, "nine")),
        b"t1 panic" => panic!("boom {}", 1),
        other => Ok(other.to_vec()),
    });
    assert_eq!(answer_to(b"t1 ok"), (0, Some(b"t1 ok".to_vec())));
    assert_eq!(answer_to(b"t1 err"), (1, Some(b"plain".to_vec())));
    assert_eq!(answer_to(b"t1 rc"), (9, Some(b"nine".to_vec())));
    assert_eq!(
        answer_to(b"t1 panic"),
        (RC_PANIC, Some(b"panic: boom 1".to_vec()))
    );
    assert_eq!(answer_to(b"t1 \0bin"), (0, Some(b"t1 \0bin".to_vec())));
}

#[test]
fn empty_answer_is_an_empty_string_not_nil() {
    let q = queue_with(&[b"t2 empty", b"t2 none"], true);
    let queue = unsafe { Queue::from_raw(raw(q)) }.unwrap();
    let t: Task = queue.poll().unwrap();
    t.respond(0, Vec::new());
    queue.poll().unwrap().respond_none(4);
    assert!(queue.poll().is_none());
    assert_eq!(answer_to(b"t2 empty"), (0, Some(Vec::new())));
    assert_eq!(answer_to(b"t2 none"), (4, None));
}

#[test]
fn poll_batch_without_the_host_function_takes_one_at_a_time() {
    let q = queue_with(&[b"t5 one", b"t5 two"], true);
    let queue = unsafe { Queue::from_raw(raw(q)) }.unwrap();
    let mut tasks = Vec::new();
    assert!(queue.poll_batch(&mut tasks, 8));
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].req(), b"t5 one");
    for t in tasks.drain(..) {
        t.respond(0, b"1".to_vec());
    }
    assert!(queue.poll_batch(&mut tasks, 8));
    assert_eq!(tasks[0].req(), b"t5 two");
    for t in tasks.drain(..) {
        t.respond(0, b"2".to_vec());
    }
    assert!(!queue.poll_batch(&mut tasks, 8));
    assert!(tasks.is_empty());
    assert_eq!(answer_to(b"t5 one"), (0, Some(b"1".to_vec())));
    assert_eq!(answer_to(b"t5 two"), (0, Some(b"2".to_vec())));
}

#[test]
fn logging_without_the_host_function_does_nothing() {
    let q = queue_with(&[], true);
    let queue = unsafe { Queue::from_raw(raw(q)) }.unwrap();
    // every form compiles, and none reaches a host that lacks hotffi_log
    hotffi::log(queue, Level::Notice, "plain");
    hotffi::log(None, Level::Debug, b"no runtime, \0 bytes");
    queue.log(Level::Info, String::from("owned"));
    hotffi::log!(queue, Level::Crit, "{} {}", "formatted", 1);
    hotffi::error!(&queue, "literal");
    hotffi::warn!(None, "no runtime {}", 2);
    hotffi::notice!(queue, "");
    hotffi::info!(queue, "{:?}", Level::Info);
    hotffi::debug!(queue, "x");
    assert!(Level::Error < Level::Warn);
}

#[test]
fn a_dropped_task_answers_itself() {
    let q = queue_with(&[b"t3 drop"], true);
    let queue = unsafe { Queue::from_raw(raw(q)) }.unwrap();
    let task = queue.poll().unwrap();
    assert_eq!(task.req(), b"t3 drop");
    assert!(!task.cancelled(), "no hotffi_task_cancelled here: false");
    drop(task);
    let (rc, msg) = answer_to(b"t3 drop");
    assert_eq!(rc, RC_DROPPED);
    assert_eq!(msg.unwrap(), b"hotffi: task dropped without an answer");
}

#[test]
fn cbuf_grows_and_keeps_a_nul() {
    let mut buf = CBuf::with_capacity(1).unwrap();
    for i in 0..1000u32 {
        buf.try_extend(i.to_string().as_bytes()).unwrap();
    }
    let want: String = (0..1000u32).map(|i| i.to_string()).collect();
    assert_eq!(&buf[..], want.as_bytes());
    let (p, len) = buf.into_raw();
    assert_eq!(len, want.len());
    assert_eq!(unsafe { strlen(p) }, len);
    unsafe { free(p as *mut c_void) };
}

fn init(cfg: Option<&str>, rt: &mut Runtime) -> Result<(), Error> {
    match cfg {
        Some("fail") => {
            rt.serve(2, |req| Ok(req.to_vec()))?;
            Err(Error::new(6, "failing after starting threads"))
        }
        Some("panic") => panic!("init panics"),
        _ => rt.serve(3, |req| Ok([b"re: ", &req[..]].concat())),
    }
}

hotffi::export_runtime!(init);

#[test]
fn exported_init_and_fini_join_the_threads() {
    let q = queue_with(&[b"t5 a", b"t5 b", b"t5 c"], false);
    assert_eq!(unsafe { libffi_init(std::ptr::null_mut(), raw(q)) }, 0);

    // the stop, as hotffi delivers it before calling libffi_fini
    q.tasks.lock().unwrap().1 = true;
    q.cond.notify_all();
    assert_eq!(libffi_fini(raw(q)), 0);

    assert!(q.tasks.lock().unwrap().0.is_empty());
    assert_eq!(answer_to(b"t5 b"), (0, Some(b"re: t5 b".to_vec())));
}

#[test]
fn exported_init_reports_failures() {
    let fail = CString::new("fail").unwrap();
    let q = queue_with(&[], true);
    assert_eq!(
        unsafe { libffi_init(fail.as_ptr() as *mut c_char, raw(q)) },
        6
    );
    // the threads it started are still joined
    assert_eq!(libffi_fini(raw(q)), 0);

    let panic = CString::new("panic").unwrap();
    let q = queue_with(&[], true);
    assert_eq!(
        unsafe { libffi_init(panic.as_ptr() as *mut c_char, raw(q)) },
        RC_PANIC
    );
    assert_eq!(libffi_fini(raw(q)), 0);

    let bad = b"\xff\0";
    assert_eq!(
        unsafe { libffi_init(bad.as_ptr() as *mut c_char, raw(q)) },
        1
    );
}

// A runtime with state: it counts its answers and hands the count over.
mod counting {
    use std::os::raw::{c_char, c_int, c_void};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use hotffi::{Error, Runtime};

    pub fn init(cfg: Option<&str>, rt: &mut Runtime) -> Result<(), Error> {
        // no hotffi_state() in this fake host, as on lua-resty-ffi
        assert!(rt.state().is_none());
        let start = cfg.and_then(|c| c.parse().ok()).unwrap_or(0);
        let count = Arc::new(AtomicU64::new(start));
        let c = Arc::clone(&count);
        rt.serve(2, move |_req| {
            Ok(format!("n {}", c.fetch_add(1, Ordering::SeqCst) + 1).into_bytes())
        })?;
        match cfg {
            Some("none") => rt.on_retire(|| None),
            Some("panic") => rt.on_retire(|| panic!("retire panics")),
            _ => rt.on_retire(move || Some(count.load(Ordering::SeqCst).to_string().into_bytes())),
        }
        Ok(())
    }

    // The glue export_runtime!(init, retire) writes, under other names:
    // one cdylib (this test binary) can only have one libffi_init.
    pub unsafe fn start(cfg: *mut c_char, tq: *mut c_void) -> c_int {
        hotffi::__private::init(cfg, tq, init, true)
    }

    // export_runtime!(init), which has no libffi_retire
    pub unsafe fn start_plain(cfg: *mut c_char, tq: *mut c_void) -> c_int {
        hotffi::__private::init(cfg, tq, init, false)
    }

    pub unsafe fn retire(tq: *mut c_void, state: *mut *mut c_char, len: *mut c_int) -> c_int {
        hotffi::__private::retire(tq, state, len)
    }
}

fn stop(q: &FakeQueue) {
    q.tasks.lock().unwrap().1 = true;
    q.cond.notify_all();
}

#[test]
fn retire_joins_the_threads_then_hands_the_state_over() {
    let q = queue_with(&[b"r1 a", b"r1 b", b"r1 c"], false);
    let cfg = CString::new("40").unwrap();
    assert_eq!(
        unsafe { counting::start(cfg.as_ptr() as *mut c_char, raw(q)) },
        0
    );

    stop(q);
    let mut state: *mut c_char = std::ptr::null_mut();
    let mut len: c_int = -1;
    assert_eq!(unsafe { counting::retire(raw(q), &mut state, &mut len) }, 0);

    // every task taken was answered before retire read the count
    assert!(q.tasks.lock().unwrap().0.is_empty());
    assert_eq!(len, 2);
    let got = unsafe { std::slice::from_raw_parts(state as *const u8, 3) }.to_vec();
    assert_eq!(got, b"43\0", "the count, NUL-terminated");
    unsafe { free(state as *mut c_void) };
}

#[test]
fn retire_without_state_or_with_a_panic() {
    let none = CString::new("none").unwrap();
    let q = queue_with(&[], true);
    assert_eq!(
        unsafe { counting::start(none.as_ptr() as *mut c_char, raw(q)) },
        0
    );
    let mut state: *mut c_char = 1 as *mut c_char;
    let mut len: c_int = -1;
    assert_eq!(unsafe { counting::retire(raw(q), &mut state, &mut len) }, 0);
    assert!(state.is_null());
    assert_eq!(len, 0);

    let panic = CString::new("panic").unwrap();
    let q = queue_with(&[], true);
    assert_eq!(
        unsafe { counting::start(panic.as_ptr() as *mut c_char, raw(q)) },
        0
    );
    assert_eq!(
        unsafe { counting::retire(raw(q), &mut state, &mut len) },
        RC_PANIC
    );
    assert!(state.is_null());

    // a queue this library never started: nothing to hand over
    let q = queue_with(&[], true);
    assert_eq!(unsafe { counting::retire(raw(q), &mut state, &mut len) }, 0);
    assert!(state.is_null());
}

#[test]
fn fini_drops_the_retire_callback_without_calling_it() {
    let q = queue_with(&[], true);
    let cfg = CString::new("panic").unwrap();
    assert_eq!(
        unsafe { counting::start(cfg.as_ptr() as *mut c_char, raw(q)) },
        0
    );
    // the callback would panic if called: fini must not call it
    assert_eq!(libffi_fini(raw(q)), 0);
    let mut state: *mut c_char = std::ptr::null_mut();
    let mut len: c_int = 0;
    assert_eq!(unsafe { counting::retire(raw(q), &mut state, &mut len) }, 0);
    assert!(state.is_null());
}

#[test]
fn on_retire_without_retire_exported_fails_the_load() {
    let q = queue_with(&[], true);
    assert_eq!(
        unsafe { counting::start_plain(std::ptr::null_mut(), raw(q)) },
        1
    );
    // the threads it started are still joined
    assert_eq!(libffi_fini(raw(q)), 0);
}
