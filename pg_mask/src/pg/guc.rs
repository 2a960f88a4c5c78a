//! The string settings that name or hold key material, defined with `DefineCustomStringVariable`
//! directly: pgrx's wrapper has no show or check hook, and these need both.
//!
//! Each is `PGC_SIGHUP` and superuser-only, hidden from `SHOW ALL`; a redacted one shows
//! `(set)` instead of its value, even to a superuser. A setting may have a function called
//! from its check hook, which PostgreSQL runs for every value the setting takes: at start, and
//! at every reload for each setting in the configuration files, changed or not (which is what
//! lets `pg_mask.key_command` run again at each reload).

use pgrx::pg_sys;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::{addr_of_mut, null_mut};

/// The settings defined here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secret {
    Keys,
    KeyFile,
    KeyCommand,
}

const COUNT: usize = 3;

impl Secret {
    fn index(self) -> usize {
        self as usize
    }
}

/// How a setting is defined.
pub struct Definition {
    pub name: &'static CStr,
    pub short: &'static CStr,
    pub long: &'static CStr,
    /// `SHOW` prints `(set)` or nothing, never the value.
    pub redacted: bool,
    /// `ALTER SYSTEM` refuses it, so it never lands in `postgresql.auto.conf` inside PGDATA.
    pub refuse_alter_system: bool,
    /// Called with every new value (see the module comment); must not raise.
    pub on_value: Option<fn(&[u8])>,
}

static mut VALUES: [*mut c_char; COUNT] = [null_mut(); COUNT];
/// What a setting's check hook calls with each new value.
type OnValue = Option<fn(&[u8])>;

static mut ON_VALUE: [OnValue; COUNT] = [None; COUNT];

const REDACTED: &CStr = c"(set)";
const EMPTY: &CStr = c"";

unsafe extern "C-unwind" fn show<const I: usize>() -> *const c_char {
    // SAFETY: the GUC machinery owns the pointer and only replaces it between commands.
    let set = unsafe { !VALUES[I].is_null() && *VALUES[I] != 0 };
    if set {
        REDACTED.as_ptr()
    } else {
        EMPTY.as_ptr()
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check<const I: usize>(
    newval: *mut *mut c_char,
    _extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: the GUC machinery passes a pointer to the candidate value (NULL or a C string);
    // ON_VALUE is written once, from _PG_init, before any value is checked.
    unsafe {
        if let Some(f) = ON_VALUE[I] {
            let value = if newval.is_null() || (*newval).is_null() {
                &[][..]
            } else {
                CStr::from_ptr(*newval).to_bytes()
            };
            f(value);
        }
    }
    true
}

/// Defines `setting`; from `_PG_init`, once per setting.
pub fn define(setting: Secret, d: Definition) {
    let mut flags =
        pg_sys::GUC_SUPERUSER_ONLY | pg_sys::GUC_NO_SHOW_ALL | pg_sys::GUC_NOT_IN_SAMPLE;
    if d.refuse_alter_system {
        flags |= pg_sys::GUC_DISALLOW_IN_AUTO_FILE;
    }
    let i = setting.index();
    let show_hook: pg_sys::GucShowHook =
        if d.redacted { Some([show::<0>, show::<1>, show::<2>][i]) } else { None };
    let check_hook: pg_sys::GucStringCheckHook =
        d.on_value.map(|_| [check::<0>, check::<1>, check::<2>][i] as _);
    // SAFETY: called once per setting from _PG_init; the statics live as long as the process.
    unsafe {
        ON_VALUE[i] = d.on_value;
        pg_sys::DefineCustomStringVariable(
            d.name.as_ptr(),
            d.short.as_ptr(),
            d.long.as_ptr(),
            addr_of_mut!(VALUES[i]),
            c"".as_ptr(),
            pg_sys::GucContext::PGC_SIGHUP,
            flags as i32,
            check_hook,
            None,
            show_hook,
        );
    }
}

/// The current value of `setting`, `None` when empty or only whitespace. The bytes are valid
/// until the next configuration reload, which cannot happen while a caller holds them within
/// one function call.
pub fn value(setting: Secret) -> Option<&'static [u8]> {
    // SAFETY: reading the pointer the GUC machinery maintains (NULL or a C string).
    let raw = unsafe { VALUES[setting.index()] };
    if raw.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string owned by the GUC machinery.
    let bytes = unsafe { CStr::from_ptr(raw) }.to_bytes();
    (!bytes.iter().all(u8::is_ascii_whitespace)).then_some(bytes)
}
