//! Every pg_mask setting, registered once from `_PG_init`.
//!
//! The key settings are the reason this module exists: they are `PGC_SIGHUP` (postgresql.conf
//! or `ALTER SYSTEM`, then `pg_reload_conf()`), so they can never be put in
//! `ALTER DATABASE/ROLE … SET`, whose values any role can read from `pg_db_role_setting`; they are
//! `GUC_SUPERUSER_ONLY` and `GUC_NO_SHOW_ALL`, so `SHOW`, `current_setting()` and `pg_settings`
//! refuse or hide them for other roles; and their show hook prints `(set)` instead of the value,
//! so even a superuser's `SHOW` never puts key material on a screen or in a log.
//!
//! They are defined with `DefineCustomStringVariable` directly because pgrx's wrapper has no
//! show hook. This module must never hand a key value to anything but [`crate::keys`].

use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::{c_char, CStr};
use std::ptr::{addr_of_mut, null_mut};

/// `pg_mask.keys`: the key ring itself, `kid:base64key, …`; the first key masks.
static mut KEYS: *mut c_char = null_mut();
/// `pg_mask.key_file`: path of a file (mode 0600, owned by the server's user) holding the key
/// ring in the same syntax; the natural home for a Docker secret.
static mut KEY_FILE: *mut c_char = null_mut();

/// `pg_mask.ingest_batch_rows`: rows an ingest trigger buffers before it writes them out.
/// One set-based INSERT per 10k rows measured 5.7 s per 300k rows against 7.6 s for an INSERT per
/// row (shared/MEASURED.md); bigger buffers only cost memory.
pub static INGEST_BATCH_ROWS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

const REDACTED: &CStr = c"(set)";
const UNSET: &CStr = c"";

unsafe extern "C-unwind" fn show_redacted_keys() -> *const c_char {
    // SAFETY: the GUC machinery owns the pointer and only replaces it between commands.
    let set = unsafe { !KEYS.is_null() && *KEYS != 0 };
    if set {
        REDACTED.as_ptr()
    } else {
        UNSET.as_ptr()
    }
}

pub fn init() {
    let secret_flags =
        (pg_sys::GUC_SUPERUSER_ONLY | pg_sys::GUC_NO_SHOW_ALL | pg_sys::GUC_NOT_IN_SAMPLE) as i32;
    // SAFETY: called once from _PG_init; the statics live for the life of the process.
    unsafe {
        pg_sys::DefineCustomStringVariable(
            c"pg_mask.keys".as_ptr(),
            c"pg_mask key ring: key_id:base64_key entries, the first one masks.".as_ptr(),
            c"Superuser-only and never shown. Set in postgresql.conf or with ALTER SYSTEM, then reload."
                .as_ptr(),
            addr_of_mut!(KEYS),
            c"".as_ptr(),
            pg_sys::GucContext::PGC_SIGHUP,
            secret_flags,
            None,
            None,
            Some(show_redacted_keys),
        );
        pg_sys::DefineCustomStringVariable(
            c"pg_mask.key_file".as_ptr(),
            c"Path of a file holding the pg_mask key ring (mode 0600).".as_ptr(),
            c"Used when pg_mask.keys is empty; the file is read again when it changes.".as_ptr(),
            addr_of_mut!(KEY_FILE),
            c"".as_ptr(),
            pg_sys::GucContext::PGC_SIGHUP,
            secret_flags,
            None,
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"pg_mask.ingest_batch_rows",
        c"Rows an ingest trigger buffers before writing them out.",
        c"Larger batches amortise the INSERT; the buffer lives in backend memory.",
        &INGEST_BATCH_ROWS,
        1,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    // SAFETY: reserving our prefix turns unknown pg_mask.* names into errors instead of
    // placeholders that any role could read (PostgreSQL 15+; older servers only warn).
    #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
    unsafe {
        pg_sys::MarkGUCPrefixReserved(c"pg_mask".as_ptr())
    };
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    unsafe {
        pg_sys::EmitWarningsOnPlaceholders(c"pg_mask".as_ptr())
    };
}

fn current(setting: *mut c_char) -> Option<&'static [u8]> {
    if setting.is_null() {
        return None;
    }
    // SAFETY: GUC string values are NUL-terminated and stay valid until the next reload, which
    // cannot happen while a caller holds this slice within one function call.
    let bytes = unsafe { CStr::from_ptr(setting) }.to_bytes();
    (!bytes.iter().all(u8::is_ascii_whitespace)).then_some(bytes)
}

/// The raw `pg_mask.keys` value, `None` when empty. Only [`crate::keys`] may call this.
pub(crate) fn keys_setting() -> Option<&'static [u8]> {
    // SAFETY: reading the pointer the GUC machinery maintains.
    current(unsafe { KEYS })
}

/// The `pg_mask.key_file` path, `None` when empty.
pub(crate) fn key_file_setting() -> Option<&'static [u8]> {
    // SAFETY: as above.
    current(unsafe { KEY_FILE })
}
