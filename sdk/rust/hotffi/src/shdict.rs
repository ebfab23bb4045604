//! Shared dicts: the `lua_shared_dict` zones of nginx.conf, read and
//! written from any thread with the meaning `ngx.shared.DICT` gives them in
//! Lua, over hotffi_shdict_*() (include/hotffi.h).  Values are what Lua
//! holds ([`Value`]); each call takes the zone's lock for one operation, as
//! a Lua call does (docs/api.md, "Shared dicts").  The functions are looked
//! up at run time: on a host without them (lua-resty-ffi) [`Dict::open`]
//! says so.  See docs/rust.md.

use std::fmt;
use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::time::Duration;

use crate::sys::{free, Optional};

const NIL: c_int = 0;
const BOOLEAN: c_int = 1;
const NUMBER: c_int = 3;
const STRING: c_int = 4;

const OK: c_int = 0;
const DECLINED: c_int = -5;

const SET: c_int = 0;
const SAFE_SET: c_int = 1;
const ADD: c_int = 2;
const SAFE_ADD: c_int = 3;
const REPLACE: c_int = 4;

/// hotffi_shdict_value_t
#[repr(C)]
struct CValue {
    kind: c_int,
    number: f64,
    str_: *mut c_char, // from get: malloc()'ed, ours to free()
    len: usize,
    flags: c_uint,
    stale: c_int,
}

impl CValue {
    fn empty() -> CValue {
        CValue {
            kind: NIL,
            number: 0.0,
            str_: std::ptr::null_mut(),
            len: 0,
            flags: 0,
            stale: 0,
        }
    }
}

static OPEN: Optional = Optional::new(b"hotffi_shdict\0");
static GET: Optional = Optional::new(b"hotffi_shdict_get\0");
static STORE: Optional = Optional::new(b"hotffi_shdict_store\0");
static INCR: Optional = Optional::new(b"hotffi_shdict_incr\0");
static TTL: Optional = Optional::new(b"hotffi_shdict_ttl\0");

type OpenFn = unsafe extern "C" fn(*const c_char) -> *mut c_void;
type GetFn = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    usize,
    c_int,
    *mut CValue,
    *mut c_char,
    usize,
) -> c_int;
type StoreFn = unsafe extern "C" fn(
    *mut c_void,
    c_int,
    *const c_char,
    usize,
    *const CValue,
    f64,
    *mut c_int,
    *mut c_char,
    usize,
) -> c_int;
type IncrFn = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    usize,
    f64,
    *mut f64,
    c_int,
    f64,
    f64,
    *mut c_int,
    *mut c_char,
    usize,
) -> c_int;
type TtlFn = unsafe extern "C" fn(*mut c_void, *const c_char, usize) -> f64;

/// A value as Lua holds it in a shared dict.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// no such key (or expired); storing it deletes the key
    Nil,
    Bool(bool),
    /// a Lua number
    Number(f64),
    /// a Lua string: any bytes
    String(Vec<u8>),
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::Number(n)
    }
}
impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::Number(n.into())
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.as_bytes().to_vec())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s.into_bytes())
    }
}
impl From<&[u8]> for Value {
    fn from(s: &[u8]) -> Value {
        Value::String(s.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(s: Vec<u8>) -> Value {
        Value::String(s)
    }
}

/// What [`Dict::get`] and [`Dict::get_stale`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct Got {
    pub value: Value,
    pub flags: u32,
    /// get_stale only: the value had expired
    pub stale: bool,
}

/// Why a shared dict call did not do what it was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DictError {
    /// add: the key exists
    Exists,
    /// replace, incr without init, ttl: no such key
    NotFound,
    /// anything else, in lua-nginx-module's words ("no memory", ...)
    Failed(String),
}

impl fmt::Display for DictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DictError::Exists => f.write_str("exists"),
            DictError::NotFound => f.write_str("not found"),
            DictError::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for DictError {}

impl From<DictError> for crate::Error {
    fn from(e: DictError) -> crate::Error {
        crate::Error::new(1, e.to_string())
    }
}

fn failed(buf: &[u8]) -> DictError {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    DictError::Failed(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn seconds(t: Duration) -> f64 {
    t.as_secs_f64()
}

/// One `lua_shared_dict` zone; Send and Sync, good for the worker's life.
#[derive(Clone, Copy, Debug)]
pub struct Dict {
    zone: *mut c_void, // hotffi's, never dereferenced here
}

// hotffi_shdict_*() are thread-safe: the zone's lock orders the callers
unsafe impl Send for Dict {}
unsafe impl Sync for Dict {}

impl Dict {
    /// The zone `name`; an error when nginx.conf has none by that name or
    /// the host is not hotffi.
    pub fn open(name: &str) -> Result<Dict, DictError> {
        let addrs = [OPEN.get(), GET.get(), STORE.get(), INCR.get(), TTL.get()];
        if addrs.iter().any(Option::is_none) {
            return Err(DictError::Failed(
                "the host has no hotffi_shdict (not hotffi?)".into(),
            ));
        }
        let mut cname = name.as_bytes().to_vec();
        if cname.contains(&0) {
            return Err(DictError::Failed(format!(
                "no lua_shared_dict named {:?}",
                name
            )));
        }
        cname.push(0);
        let open: OpenFn = unsafe { std::mem::transmute(addrs[0].unwrap()) };
        let zone = unsafe { open(cname.as_ptr() as *const c_char) };
        if zone.is_null() {
            return Err(DictError::Failed(format!(
                "no lua_shared_dict named {:?}",
                name
            )));
        }
        Ok(Dict { zone })
    }

    fn do_get(&self, key: &[u8], stale: bool) -> Result<Got, DictError> {
        // GET was found by open(): a Dict exists only then
        let f: GetFn = unsafe { std::mem::transmute(GET.get().unwrap()) };
        let mut v = CValue::empty();
        let mut err = [0u8; 128];
        let rc = unsafe {
            f(
                self.zone,
                key.as_ptr() as *const c_char,
                key.len(),
                c_int::from(stale),
                &mut v,
                err.as_mut_ptr() as *mut c_char,
                err.len(),
            )
        };
        if rc != OK {
            return Err(failed(&err));
        }
        let value = match v.kind {
            BOOLEAN => Value::Bool(v.number != 0.0),
            NUMBER => Value::Number(v.number),
            STRING => {
                let bytes =
                    unsafe { std::slice::from_raw_parts(v.str_ as *const u8, v.len) }.to_vec();
                unsafe { free(v.str_ as *mut c_void) }; // malloc()'ed by hotffi, ours
                Value::String(bytes)
            }
            _ => Value::Nil,
        };
        Ok(Got {
            value,
            flags: v.flags,
            stale: v.stale != 0,
        })
    }

    /// DICT:get(key): Value::Nil when there is no such key or it expired.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Got, DictError> {
        self.do_get(key.as_ref(), false)
    }

    /// DICT:get_stale(key): also an expired value not yet evicted.
    pub fn get_stale(&self, key: impl AsRef<[u8]>) -> Result<Got, DictError> {
        self.do_get(key.as_ref(), true)
    }

    fn store(
        &self,
        op: c_int,
        key: &[u8],
        value: Value,
        exptime: Duration,
        flags: u32,
    ) -> Result<(), DictError> {
        let f: StoreFn = unsafe { std::mem::transmute(STORE.get().unwrap()) };
        let mut v = CValue::empty();
        v.flags = flags;
        match &value {
            Value::Nil => {}
            Value::Bool(b) => {
                v.kind = BOOLEAN;
                v.number = if *b { 1.0 } else { 0.0 };
            }
            Value::Number(n) => {
                v.kind = NUMBER;
                v.number = *n;
            }
            Value::String(s) => {
                v.kind = STRING;
                v.str_ = s.as_ptr() as *mut c_char; // borrowed for the call
                v.len = s.len();
            }
        }
        let mut err = [0u8; 128];
        let rc = unsafe {
            f(
                self.zone,
                op,
                key.as_ptr() as *const c_char,
                key.len(),
                &v,
                seconds(exptime),
                std::ptr::null_mut(),
                err.as_mut_ptr() as *mut c_char,
                err.len(),
            )
        };
        match rc {
            OK => Ok(()),
            DECLINED if op == REPLACE => Err(DictError::NotFound),
            DECLINED => Err(DictError::Exists),
            _ => Err(failed(&err)),
        }
    }

    /// DICT:set(key, value, exptime, flags): exptime zero never expires;
    /// Value::Nil deletes.  Other items may be evicted to make room.
    pub fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Value>,
        exptime: Duration,
        flags: u32,
    ) -> Result<(), DictError> {
        self.store(SET, key.as_ref(), value.into(), exptime, flags)
    }

    /// DICT:safe_set(): set that never evicts ("no memory" instead).
    pub fn safe_set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Value>,
        exptime: Duration,
        flags: u32,
    ) -> Result<(), DictError> {
        self.store(SAFE_SET, key.as_ref(), value.into(), exptime, flags)
    }

    /// DICT:add(): only when the key does not exist, else DictError::Exists.
    pub fn add(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Value>,
        exptime: Duration,
        flags: u32,
    ) -> Result<(), DictError> {
        self.store(ADD, key.as_ref(), value.into(), exptime, flags)
    }

    /// DICT:safe_add(): add that never evicts.
    pub fn safe_add(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Value>,
        exptime: Duration,
        flags: u32,
    ) -> Result<(), DictError> {
        self.store(SAFE_ADD, key.as_ref(), value.into(), exptime, flags)
    }

    /// DICT:replace(): only when the key exists, else DictError::NotFound.
    pub fn replace(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Value>,
        exptime: Duration,
        flags: u32,
    ) -> Result<(), DictError> {
        self.store(REPLACE, key.as_ref(), value.into(), exptime, flags)
    }

    /// DICT:delete(key).
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<(), DictError> {
        self.store(SET, key.as_ref(), Value::Nil, Duration::ZERO, 0)
    }

    /// DICT:incr(key, by[, init, init_ttl]): the new value.  With init
    /// None, a missing key is DictError::NotFound; with Some((init, ttl))
    /// it starts at init (expiring after ttl, zero never).
    pub fn incr(
        &self,
        key: impl AsRef<[u8]>,
        by: f64,
        init: Option<(f64, Duration)>,
    ) -> Result<f64, DictError> {
        let f: IncrFn = unsafe { std::mem::transmute(INCR.get().unwrap()) };
        let key = key.as_ref();
        let (has_init, init, ttl) = match init {
            Some((n, t)) => (1, n, seconds(t)),
            None => (0, 0.0, 0.0),
        };
        let mut out = 0.0;
        let mut err = [0u8; 128];
        let rc = unsafe {
            f(
                self.zone,
                key.as_ptr() as *const c_char,
                key.len(),
                by,
                &mut out,
                has_init,
                init,
                ttl,
                std::ptr::null_mut(),
                err.as_mut_ptr() as *mut c_char,
                err.len(),
            )
        };
        match rc {
            OK => Ok(out),
            DECLINED => Err(DictError::NotFound),
            _ => Err(failed(&err)),
        }
    }

    /// DICT:ttl(key): the time left, zero for a key that never expires,
    /// None for no such key.
    pub fn ttl(&self, key: impl AsRef<[u8]>) -> Option<Duration> {
        let f: TtlFn = unsafe { std::mem::transmute(TTL.get().unwrap()) };
        let key = key.as_ref();
        let left = unsafe { f(self.zone, key.as_ptr() as *const c_char, key.len()) };
        if left < 0.0 {
            None
        } else {
            Some(Duration::from_secs_f64(left))
        }
    }
}
