//! The server log hook: every message PostgreSQL writes passes through [`on_log`] first, in
//! every process that preloaded pg_mask (the postmaster included, which logs "parameter …
//! changed to …" on reload).
//!
//! What it does is decided by [`pg_mask_core::log_scrub`]: COPY row data and key material are
//! cut from the message, detail, hint and context; a statement that holds key material is not
//! appended to the log (`STATEMENT:`) and is replaced in `pg_stat_activity`; and the refusal of
//! `ALTER SYSTEM SET pg_mask.keys` gets a hint that says where keys belong.
//!
//! The hook changes the error data in place, which is also what the client receives.
//!
//! The statement hooks ([`check_utility`], [`check_executor_start`], installed by
//! [`super::compat::install_statement_hooks`]) refuse a load into an ingest view while
//! `session_replication_role` is `replica`: INSTEAD OF triggers do not fire then (and a view's
//! triggers cannot be made `ENABLE ALWAYS`), so the load would "succeed" with nothing stored.
//! Anything else passes straight through.

use pg_mask_core::keyring::redact_key_material;
use pg_mask_core::log_scrub;
use pgrx::pg_sys;
use std::borrow::Cow;
use std::ffi::{c_char, CStr, CString};

static mut PREVIOUS: pg_sys::emit_log_hook_type = None;

/// The hint added when `ALTER SYSTEM` refuses `pg_mask.keys`.
const KEYS_HINT: &CStr = c"pg_mask.keys cannot be set with ALTER SYSTEM: that would write the key into postgresql.auto.conf inside the data directory, and so into every base backup. Put the key ring in a file outside the data directory (mode 0600, owned by the server's OS user) and set pg_mask.key_file, or set pg_mask.key_command.";

/// Installs the hooks; from `_PG_init`, once.
pub fn init() {
    // SAFETY: called once from _PG_init; the previous hook is chained.
    unsafe {
        PREVIOUS = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(on_log);
    }
    super::compat::install_statement_hooks();
}

fn replica_role() -> bool {
    // SAFETY: a plain read of an integer setting.
    unsafe { pg_sys::SessionReplicationRole == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as i32 }
}

/// Raises if relation `relid` is an ingest view (its triggers run pg_mask's row trigger).
fn refuse_ingest_under_replica(relid: pg_sys::Oid) {
    let Some(rel) = super::relation::Relation::open(relid, super::relation::Lock::Read) else {
        return;
    };
    let ingest = crate::ingest::row_trigger_address();
    if rel.kind() == super::relation::Kind::View && rel.triggers().any(|t| t.calls(ingest)) {
        crate::error::MaskError::ReplicaRole { view: rel.name() }.report();
    }
}

/// Before a utility statement: refuses `COPY <ingest view> FROM` under the replica role.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn check_utility(pstmt: *mut pg_sys::PlannedStmt) {
    if !replica_role() {
        return;
    }
    // SAFETY: PostgreSQL's planned utility statement; a CopyStmt's relation is a RangeVar.
    unsafe {
        let stmt = (*pstmt).utilityStmt;
        if stmt.is_null() || (*stmt).type_ != pg_sys::NodeTag::T_CopyStmt {
            return;
        }
        let copy = stmt.cast::<pg_sys::CopyStmt>();
        if !(*copy).is_from || (*copy).relation.is_null() {
            return;
        }
        let relid = pg_sys::RangeVarGetRelidExtended(
            (*copy).relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        if relid != pg_sys::InvalidOid {
            refuse_ingest_under_replica(relid);
        }
    }
}

/// Before a query runs: refuses a query that writes an ingest view under the replica role.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn check_executor_start(query_desc: *mut pg_sys::QueryDesc) {
    if !replica_role() {
        return;
    }
    // SAFETY: PostgreSQL's query descriptor; result relations index its range table.
    unsafe {
        // Every command type: an INSERT in a data-modifying CTE runs under a SELECT.
        let stmt = (*query_desc).plannedstmt;
        if stmt.is_null() {
            return;
        }
        let rtable = (*stmt).rtable;
        let results = (*stmt).resultRelations;
        if rtable.is_null() || results.is_null() {
            return;
        }
        for i in 0..(*results).length as usize {
            let index = (*(*results).elements.add(i)).int_value as usize;
            if index == 0 || index > (*rtable).length as usize {
                continue;
            }
            let rte =
                (*(*rtable).elements.add(index - 1)).ptr_value.cast::<pg_sys::RangeTblEntry>();
            if !rte.is_null() && (*rte).relid != pg_sys::InvalidOid {
                refuse_ingest_under_replica((*rte).relid);
            }
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_log(edata: *mut pg_sys::ErrorData) {
    // SAFETY: PostgreSQL passes the error being reported, valid for the call.
    if let Some(e) = unsafe { edata.as_mut() } {
        scrub(e);
    }
    // SAFETY: the previous hook, if any, takes the same argument; its errors become ours.
    unsafe {
        if let Some(previous) = PREVIOUS {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| previous(edata));
        }
    }
}

fn text(ptr: *const c_char) -> Option<Cow<'static, str>> {
    // SAFETY: NULL or a NUL-terminated string of the error being reported.
    (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) }.to_string_lossy())
}

/// A copy of `s` in ErrorContext, which lives until the error has been reported.
fn error_string(s: &str) -> *mut c_char {
    let c = CString::new(s.replace('\0', "")).unwrap_or_default();
    // SAFETY: pstrdup copies into the current context, switched to ErrorContext around it.
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::ErrorContext);
        let copy = pg_sys::pstrdup(c.as_ptr());
        pg_sys::MemoryContextSwitchTo(old);
        copy
    }
}

fn scrub(e: &mut pg_sys::ErrorData) {
    // An error raised while COPY read its input: its message may quote a field's value, and
    // its detail the row ("Failing row contains (…)").
    let in_copy = text(e.context).is_some_and(|c| log_scrub::in_copy(&c));
    for field in [&mut e.message, &mut e.detail, &mut e.detail_log, &mut e.hint, &mut e.context] {
        if let Some(clean) = text(*field).and_then(|t| log_scrub::scrub(&t)) {
            *field = error_string(&clean);
        }
    }
    // Class 22, data exceptions: the input errors that quote a field's value.
    let class = |code: i32| code & 0xfff;
    let data_exception =
        class(e.sqlerrcode) == class(pgrx::PgSqlErrorCode::ERRCODE_DATA_EXCEPTION as i32);
    if in_copy && data_exception {
        if let Some(clean) = text(e.message).and_then(|t| log_scrub::scrub_copy_message(&t)) {
            e.message = error_string(&clean);
        }
    }
    if in_copy {
        for field in [&mut e.detail, &mut e.detail_log] {
            if text(*field).is_some_and(|d| d.contains('(') || d.contains('"')) {
                *field = error_string("(detail hidden by pg_mask: it may quote the row)");
            }
        }
    }
    // A failing statement of a load into an ingest view holds the bodies it loads.
    if crate::ingest::statement_running() {
        e.hide_stmt = true;
    }
    // The logger appends the statement itself (to errors and, depending on
    // log_min_error_statement, to other levels): hide it if it holds a key.
    // SAFETY: debug_query_string is NULL or the statement being executed.
    let query = text(unsafe { pg_sys::debug_query_string });
    let redacted = (!e.hide_stmt).then(|| query.as_deref().and_then(redact_key_material)).flatten();
    if let Some(redacted) = redacted {
        e.hide_stmt = true;
        let redacted = CString::new(redacted.replace('\0', "")).unwrap_or_default();
        // SAFETY: replaces this backend's pg_stat_activity text (a no-op outside a backend).
        unsafe {
            pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, redacted.as_ptr())
        };
    }
    let cant_change =
        e.sqlerrcode == pgrx::PgSqlErrorCode::ERRCODE_CANT_CHANGE_RUNTIME_PARAM as i32;
    if cant_change
        && e.hint.is_null()
        && text(e.message).is_some_and(|m| m.contains("\"pg_mask.keys\""))
        && query.is_some_and(|q| q.to_ascii_lowercase().contains("alter system"))
    {
        e.hint = error_string(&KEYS_HINT.to_string_lossy());
    }
}
