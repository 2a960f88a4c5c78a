//! Catching PostgreSQL errors without losing what they say.
//!
//! pgrx turns an error raised inside PostgreSQL into a Rust panic that keeps only the SQLSTATE,
//! message, detail and hint; the constraint, column and table names are gone by the time Rust
//! sees it. [`catching`] pushes an error context callback that copies those fields while the
//! error is still being built (context callbacks run in `errfinish`, before the longjmp), so the
//! caller learns which constraint refused a row.
//!
//! [`in_subtransaction`] runs a closure in a subtransaction, the way PL/pgSQL's `BEGIN …
//! EXCEPTION` block does, and rolls it back on error. [`rethrow_as`] catches an error only to
//! raise another one in its place (no subtransaction: the transaction is aborting anyway).

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::ffi::CStr;
use std::panic::AssertUnwindSafe;

/// What an error said, as captured when it was raised.
#[derive(Clone, Debug, Default)]
pub struct ErrorFields {
    /// The SQLSTATE, packed as PostgreSQL packs it.
    pub sqlstate: i32,
    pub message: Option<String>,
    /// The message's text domain: `postgres-NN` for the server's own messages.
    pub domain: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub constraint: Option<String>,
}

impl ErrorFields {
    /// The SQLSTATE as its five characters.
    pub fn sqlstate_text(&self) -> String {
        // PGUNSIXBIT: six bits per character, first character lowest.
        (0..5).map(|i| (((self.sqlstate >> (6 * i)) & 0x3f) as u8 + b'0') as char).collect()
    }

    /// Whether PostgreSQL itself raised it (not a PL/pgSQL `RAISE` or an extension).
    pub fn raised_by_the_server(&self) -> bool {
        self.domain.as_deref().is_some_and(|d| d.starts_with("postgres-"))
    }
}

/// An error caught by [`in_subtransaction`] or [`rethrow_as`].
pub struct Caught {
    pub code: PgSqlErrorCode,
    /// The fields captured when it was raised; `None` if it was raised by pg_mask's own Rust
    /// code rather than inside PostgreSQL.
    pub fields: Option<ErrorFields>,
    original: CaughtError,
}

impl Caught {
    /// Whether pg_mask's own code raised it (a `MaskError`), not PostgreSQL.
    pub fn is_ours(&self) -> bool {
        self.fields.is_none()
    }

    /// Raises the error again, as it was, fields included for an outer catcher.
    pub fn rethrow(self) -> ! {
        let Caught { fields, original, .. } = self;
        CAPTURED.with_borrow_mut(|c| *c = fields);
        original.rethrow()
    }
}

thread_local! {
    static CAPTURED: RefCell<Option<ErrorFields>> = const { RefCell::new(None) };
}

fn text(ptr: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: NULL or a NUL-terminated string of the copied ErrorData.
    (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned())
}

/// The error context callback: copies the fields of an ERROR being raised.
#[pg_guard]
unsafe extern "C-unwind" fn capture(_arg: *mut std::ffi::c_void) {
    // SAFETY: called by errfinish with an error on the error-data stack; CopyErrorData copies it
    // into the current memory context, which must not be ErrorContext, hence the switch.
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let data = pg_sys::CopyErrorData();
        pg_sys::MemoryContextSwitchTo(old);
        let e = &*data;
        // Context callbacks also run for notices and warnings: keep errors only.
        if e.elevel >= pg_sys::PGERROR as i32 {
            let fields = ErrorFields {
                sqlstate: e.sqlerrcode,
                message: text(e.message),
                domain: text(e.domain),
                table: text(e.table_name),
                column: text(e.column_name),
                constraint: text(e.constraint_name),
            };
            let _ = CAPTURED.try_with(|c| c.try_borrow_mut().map(|mut c| *c = Some(fields)));
        }
        pg_sys::FreeErrorData(data);
    }
}

/// Pops the capture callback off the error context stack when dropped, on unwind too.
struct CaptureGuard {
    previous: *mut pg_sys::ErrorContextCallback,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        // SAFETY: restores the stack as it was before `catching` pushed its entry.
        unsafe { pg_sys::error_context_stack = self.previous };
    }
}

fn caught(e: CaughtError) -> Caught {
    let code = match &e {
        CaughtError::PostgresError(r)
        | CaughtError::ErrorReport(r)
        | CaughtError::RustPanic { ereport: r, .. } => r.sql_error_code(),
    };
    let fields = match &e {
        CaughtError::PostgresError(_) => CAPTURED.with_borrow_mut(Option::take),
        _ => None,
    };
    Caught { code, fields, original: e }
}

/// Runs `f` with the capture callback on the error context stack.
fn with_capture<R>(f: impl FnOnce() -> R) -> R {
    CAPTURED.with_borrow_mut(|c| *c = None);
    let mut entry = pg_sys::ErrorContextCallback {
        // SAFETY: reading the current top of the stack.
        previous: unsafe { pg_sys::error_context_stack },
        callback: Some(capture),
        arg: std::ptr::null_mut(),
    };
    let _guard = CaptureGuard { previous: entry.previous };
    // SAFETY: `entry` outlives `f` (the guard pops it before `entry` goes out of scope).
    unsafe { pg_sys::error_context_stack = &mut entry };
    f()
}

/// Runs `f` in a subtransaction: committed if `f` returns, rolled back if it raises. The same
/// dance as PL/pgSQL's `BEGIN … EXCEPTION`: keeps the caller's memory context and resource
/// owner. Must be called inside a transaction (every SQL-callable entry point is).
pub fn in_subtransaction<R>(f: impl FnOnce() -> R) -> Result<R, Box<Caught>> {
    // SAFETY: plain reads/writes of backend globals, as PostgreSQL's own PLs do; the
    // subtransaction is released or rolled back on every path before this returns.
    unsafe {
        let old_cx = pg_sys::CurrentMemoryContext;
        let old_owner = pg_sys::CurrentResourceOwner;
        let restore = move || {
            pg_sys::MemoryContextSwitchTo(old_cx);
            pg_sys::CurrentResourceOwner = old_owner;
        };
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(old_cx);
        PgTryBuilder::new(AssertUnwindSafe(move || {
            let r = with_capture(f);
            pg_sys::ReleaseCurrentSubTransaction();
            restore();
            Ok(r)
        }))
        .catch_others(move |e| {
            let c = caught(e);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            restore();
            Err(Box::new(c))
        })
        .execute()
    }
}

/// Runs `f`; if it raises, raises what `replace` makes of the error instead. `replace` must
/// raise (it returns `Infallible`, which no value has): without a subtransaction the
/// transaction cannot go on.
pub fn rethrow_as<R>(
    f: impl FnOnce() -> R,
    replace: impl FnOnce(Caught) -> std::convert::Infallible,
) -> R {
    // catch_others takes an FnMut; it is called once, so the closure moves out of the cell.
    let replace = AssertUnwindSafe(std::cell::Cell::new(Some(replace)));
    PgTryBuilder::new(AssertUnwindSafe(|| with_capture(f)))
        .catch_others(move |e| match replace.take() {
            Some(replace) => match replace(caught(e)) {},
            None => e.rethrow(),
        })
        .execute()
}
