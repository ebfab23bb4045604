//! The Rust runtime the tests steer (build/lib/librust_ctl.so), to reach
//! every path of the SDK through its requests:
//!
//! ```text
//! echo:BYTES      answers BYTES
//! fail:RC:TEXT    fails with rc RC and TEXT
//! error:TEXT      fails with a plain message: rc 1
//! panic:TEXT      panics with TEXT
//! drop            drops the task unanswered (it answers itself, rc 3)
//! null            answers no payload
//! empty           answers ""
//! big:N           answers N bytes "0123456789..." built in a CBuf
//! sleep:MS        answers "slept" after MS ms, or "cancelled" as soon as
//!                 the caller gave up
//! cancelled       how many sleeps saw their caller give up
//! cfg             the configuration, or <nil>
//! abi             the host's ABI version
//! log:LEVEL:N:TEXT  writes N lines "TEXT I" (I = 1..N) to nginx's error
//!                 log at LEVEL, through hotffi::log! and its siblings;
//!                 answers "logged N"
//! dict:NAME       the shared dict scenario of 450-languages.t on the
//!                 lua_shared_dict NAME (hotffi::Dict); answers its
//!                 findings, space-separated
//! ```
//!
//! cfg "threads=N" sets the number of threads (default 4); "fail-init"
//! fails libffi_init with a reason, "panic-init" panics in it.

use std::io::Write;
use std::str;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hotffi::{CBuf, Dict, DictError, Error, Got, Level, Queue, Request, Runtime, Task, Value};

struct Ctl {
    queue: Queue,
    cfg: Option<String>,
    cancelled: AtomicUsize,
}

fn init(cfg: Option<&str>, rt: &mut Runtime) -> Result<(), Error> {
    let mut threads = 4;
    match cfg {
        Some("fail-init") => return Err(Error::new(7, "asked to fail by its configuration")),
        Some("panic-init") => panic!("asked to panic by its configuration"),
        Some(c) if c.starts_with("threads=") => {
            threads = c["threads=".len()..].parse()?;
        }
        _ => {}
    }

    let ctl = Arc::new(Ctl {
        queue: rt.queue(),
        cfg: cfg.map(String::from),
        cancelled: AtomicUsize::new(0),
    });

    for _ in 0..threads {
        let ctl = Arc::clone(&ctl);
        rt.spawn(move |queue| {
            while let Some(task) = queue.poll() {
                ctl.dispatch(task);
            }
        })?;
    }
    Ok(())
}

impl Ctl {
    // The commands that need the task itself; the others go through
    // Task::handle, as Queue::serve would do.
    fn dispatch(&self, task: Task) {
        let req = task.req();
        if req == b"drop" {
            drop(task);
        } else if req == b"null" {
            task.respond_none(0);
        } else if let Some(n) = req.strip_prefix(b"big:") {
            let n: usize = str::from_utf8(n)
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            match big(n) {
                Some(buf) => task.respond_buf(0, buf),
                None => task.respond(1, "out of memory"),
            }
        } else {
            task.handle(|req| self.handle(req));
        }
    }

    // log:LEVEL:N:TEXT, through each of the SDK's ways in turn
    fn log(&self, arg: &str) -> Result<Vec<u8>, Error> {
        let mut parts = arg.splitn(3, ':');
        let level = match parts.next().unwrap_or("").parse::<i32>()? {
            4 => Level::Error,
            5 => Level::Warn,
            6 => Level::Notice,
            7 => Level::Info,
            8 => Level::Debug,
            _ => return Err("levels 4..8 only".into()),
        };
        let n: usize = parts.next().unwrap_or("").parse()?;
        let text = parts.next().unwrap_or("");
        let q = self.queue;
        for i in 1..=n {
            match (i % 3, level) {
                (0, _) => q.log(level, format!("{} {}", text, i)),
                (1, Level::Warn) => hotffi::warn!(q, "{} {}", text, i),
                (1, Level::Error) => hotffi::error!(&q, "{} {}", text, i),
                _ => hotffi::log!(q, level, "{} {}", text, i),
            }
        }
        Ok(format!("logged {}", n).into_bytes())
    }

    fn handle(&self, req: &Request) -> Result<Vec<u8>, Error> {
        let (cmd, arg) = match req.iter().position(|&b| b == b':') {
            Some(i) => (&req[..i], &req[i + 1..]),
            None => (&req[..], &b""[..]),
        };

        match cmd {
            b"echo" => Ok(arg.to_vec()),
            b"fail" => {
                let arg = str::from_utf8(arg)?;
                let (rc, text) = arg.split_once(':').unwrap_or((arg, ""));
                Err(Error::new(rc.parse()?, text))
            }
            b"error" => Err(String::from_utf8_lossy(arg).into_owned().into()),
            b"panic" => panic!("{}", String::from_utf8_lossy(arg)),
            b"empty" => Ok(Vec::new()),
            b"sleep" => {
                let ms: u64 = str::from_utf8(arg)?.parse()?;
                let end = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < end {
                    if req.cancelled() {
                        self.cancelled.fetch_add(1, Ordering::Relaxed);
                        return Ok(b"cancelled".to_vec());
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                Ok(b"slept".to_vec())
            }
            b"cancelled" => Ok(self
                .cancelled
                .load(Ordering::Relaxed)
                .to_string()
                .into_bytes()),
            b"log" => self.log(str::from_utf8(arg)?),
            b"dict" => dict_scenario(str::from_utf8(arg)?),
            b"cfg" => Ok(self.cfg.as_deref().unwrap_or("<nil>").as_bytes().to_vec()),
            b"abi" => Ok(match hotffi::host_abi_version() {
                Some(v) => v.to_string().into_bytes(),
                None => b"none".to_vec(),
            }),
            _ => Err(Error::new(3, "unknown command")),
        }
    }
}

// n bytes of "0123456789" repeated, written in place in C memory.
fn big(n: usize) -> Option<CBuf> {
    let mut buf = CBuf::with_capacity(16)?;
    let digits = b"0123456789";
    let mut left = n;
    while left > 0 {
        let k = left.min(digits.len());
        buf.write_all(&digits[..k]).ok()?;
        left -= k;
    }
    Some(buf)
}

// value/flags[/stale] of a get, values as Lua's tostring() writes them
fn show(got: &Got, with_stale: bool) -> String {
    let text = match &got.value {
        Value::Nil => "nil".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => String::from_utf8_lossy(s).into_owned(),
    };
    if with_stale {
        format!("{}/{}/{}", text, got.flags, got.stale)
    } else {
        format!("{}/{}", text, got.flags)
    }
}

// answers dict:NAME: the findings of 450-languages.t's shared dict case
fn dict_scenario(name: &str) -> Result<Vec<u8>, Error> {
    let mut out = vec![match Dict::open("nope") {
        Ok(_) => "nope=found".to_string(),
        Err(_) => "nope=missing".to_string(),
    }];
    let d = Dict::open(name)?;
    // first: a get may evict expired items, as in Lua
    out.push(format!("stale={}", show(&d.get_stale("old")?, true)));
    for key in ["s", "n", "t", "f", "none", "old"] {
        out.push(format!("{}={}", key, show(&d.get(key)?, false)));
    }
    let never = Duration::ZERO;
    d.set("rs", "from-rt", never, 9)?;
    d.set(b"rn", -12.5, never, 0)?;
    d.set("rb", false, never, 0)?;
    let declined = |r: Result<(), DictError>, want: DictError| match r {
        Ok(()) => "true".to_string(),
        Err(e) if e == want => "false".to_string(),
        Err(e) => e.to_string(),
    };
    out.push(format!(
        "add-s={}",
        declined(d.add("s", "x", never, 0), DictError::Exists)
    ));
    out.push(format!(
        "add-new={}",
        declined(d.add("new", &b"x"[..], never, 0), DictError::Exists)
    ));
    out.push(format!(
        "replace-absent={}",
        declined(d.replace("absent", 1, never, 0), DictError::NotFound)
    ));
    out.push(format!(
        "replace-new={}",
        declined(d.replace("new", "y", never, 0), DictError::NotFound)
    ));
    out.push(format!("incr-c={}", d.incr("c", 2.0, Some((10.0, never)))?));
    out.push(format!("incr-c={}", d.incr("c", -0.5, None)?));
    out.push(match d.incr("absent", 1.0, None) {
        Err(DictError::NotFound) => "incr-absent=notfound".to_string(),
        other => format!("incr-absent={:?}", other),
    });
    d.delete("n")?;
    d.set("e", "x", Duration::from_secs(100), 0)?;
    out.push(match d.ttl("e") {
        Some(t) if t > Duration::ZERO && t <= Duration::from_secs(100) => "ttl-e=ok".to_string(),
        other => format!("ttl-e={:?}", other),
    });
    out.push(format!(
        "ttl-rs={}",
        d.ttl("rs").map_or(-1.0, |t| t.as_secs_f64())
    ));
    out.push(format!(
        "ttl-absent={}",
        if d.ttl("absent").is_none() {
            "none"
        } else {
            "some"
        }
    ));
    Ok(out.join(" ").into_bytes())
}

hotffi::export_runtime!(init);
