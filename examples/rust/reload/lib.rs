//! Two versions of one library, to show a reload of the code itself
//! without restarting nginx (docs/rust.md, "Reloading the code"): version
//! A answers "A <n>", version B (built with `--features b`) "B <n>", where
//! n counts the calls this copy of the library has answered -- a fresh
//! copy starts again from 1.
//!
//! ```lua
//! local rt = hotffi.load("/srv/rt/libreload.so", nil, { unpin = true })
//! rt:version("")              -- true, "A 1"
//! rt:__unload()               -- once retired, the file is dlclose()'d
//! -- rename() version B over /srv/rt/libreload.so, then
//! hotffi.load("/srv/rt/libreload.so", nil, { unpin = true }):version("")
//! -- true, "B 1"
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use hotffi::{Error, Runtime};

#[cfg(not(feature = "b"))]
const VERSION: &str = "A";
#[cfg(feature = "b")]
const VERSION: &str = "B";

// Lives in the library's data: a reloaded copy starts from zero.
static CALLS: AtomicU64 = AtomicU64::new(0);

fn init(_cfg: Option<&str>, rt: &mut Runtime) -> Result<(), Error> {
    rt.serve(1, |_req| {
        let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(format!("{VERSION} {n}").into_bytes())
    })
}

// libffi_fini joins the thread: hotffi may then dlclose() the library.
hotffi::export_runtime!(init);
