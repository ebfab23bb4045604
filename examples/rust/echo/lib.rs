//! The smallest Rust runtime (build/lib/librust_echo.so): every request is
//! answered with its own bytes.
//!
//! ```lua
//! local rt = require("resty.hotffi").load("rust_echo")      -- one thread
//! local rt4 = require("resty.hotffi").load("rust_echo", "4") -- four
//! local ok, res = rt:echo("hello")                          -- true, "hello"
//! ```

use hotffi::{Error, Runtime};

// thread: the nginx event loop: start the threads and return.
fn init(cfg: Option<&str>, rt: &mut Runtime) -> Result<(), Error> {
    let threads = match cfg {
        Some(n) => n.parse().map_err(|_| format!("bad thread count {n:?}"))?,
        None => 1,
    };
    rt.serve(threads, |req| Ok(req.to_vec()))
}

// libffi_init, and libffi_fini joining the threads: the library can be
// unloaded with unpin = true.
hotffi::export_runtime!(init);
