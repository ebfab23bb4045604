//! A runtime with state that survives in-place reloads (docs/rust.md,
//! "In-place reload"): it counts the calls it answered and hands the count
//! to the next version.  Every answer is "<build> <count>", so a client
//! sees both which code answered and that the count went on: build A, or
//! build B with `--features b`.  cfg "fail" makes init fail, to see a
//! reload roll back.
//!
//! ```lua
//! local rt = hotffi.load("/srv/rt/libcounter.so", nil, { unpin = true })
//! rt:count("")                -- true, "A 1"
//! -- rename() build B over /srv/rt/libcounter.so, then
//! assert(rt:__reload())
//! rt:count("")                -- true, "B 2"
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hotffi::{Error, Runtime};

#[cfg(not(feature = "b"))]
const BUILD: &str = "A";
#[cfg(feature = "b")]
const BUILD: &str = "B";

fn init(cfg: Option<&str>, rt: &mut Runtime) -> Result<(), Error> {
    if cfg == Some("fail") {
        return Err(Error::new(7, "told to fail by its configuration"));
    }

    // the previous version's count, if a reload handed it over
    let start = match rt.state() {
        Some(s) => std::str::from_utf8(s)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::new(8, "the state handed over is not a count"))?,
        None => 0,
    };

    let count = Arc::new(AtomicU64::new(start));
    let served = Arc::clone(&count);
    rt.serve(2, move |_req| {
        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(format!("{BUILD} {n}").into_bytes())
    })?;

    // runs once the serving threads are joined: the count is final
    rt.on_retire(move || Some(count.load(Ordering::SeqCst).to_string().into_bytes()));
    Ok(())
}

hotffi::export_runtime!(init, retire);
