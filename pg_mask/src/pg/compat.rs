//! The PostgreSQL calls whose signatures differ between majors (13 to 18), each behind one
//! function with the same meaning everywhere. Nothing else in pg_mask uses `#[cfg(feature =
//! "pgNN")]`.

use pgrx::pg_sys;
use std::ffi::CStr;

/// `ExecInsertIndexTuples` for a plain insert (no ON CONFLICT): PostgreSQL 14 added the result
/// relation and `update` arguments, 16 `onlySummarizing`. Returns the indexes that need a
/// deferred recheck.
///
/// # Safety
/// `slot` holds a tuple just inserted into the relation of `rri`, whose indexes are open, and
/// on PostgreSQL 13 `rri` is the executor state's current result relation.
pub unsafe fn insert_index_entries(
    rri: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
) -> *mut pg_sys::List {
    let (no_conflict, no_arbiters) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: guaranteed by the caller.
    unsafe {
        #[cfg(feature = "pg13")]
        let recheck = {
            let _ = rri;
            pg_sys::ExecInsertIndexTuples(slot, estate, false, no_conflict, no_arbiters)
        };
        #[cfg(any(feature = "pg14", feature = "pg15"))]
        let recheck = pg_sys::ExecInsertIndexTuples(
            rri,
            slot,
            estate,
            false,
            false,
            no_conflict,
            no_arbiters,
        );
        #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
        let recheck = pg_sys::ExecInsertIndexTuples(
            rri,
            slot,
            estate,
            false,
            false,
            no_conflict,
            no_arbiters,
            false,
        );
        recheck
    }
}

/// Makes the executor state find `rri` where PostgreSQL 13's index insertion looks for it.
///
/// # Safety
/// Both pointers must be valid for the insert they are used in.
pub unsafe fn set_current_result_relation(
    estate: *mut pg_sys::EState,
    rri: *mut pg_sys::ResultRelInfo,
) {
    #[cfg(feature = "pg13")]
    // SAFETY: guaranteed by the caller.
    unsafe {
        (*estate).es_result_relation_info = rri;
    }
    #[cfg(not(feature = "pg13"))]
    let _ = (estate, rri);
}

/// Turns unknown `prefix.*` settings into errors instead of placeholders any role can read
/// (PostgreSQL 15+); older servers can only warn about them.
pub fn reserve_setting_prefix(prefix: &CStr) {
    // SAFETY: called from _PG_init with a NUL-terminated prefix.
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        pg_sys::EmitWarningsOnPlaceholders(prefix.as_ptr());
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        pg_sys::MarkGUCPrefixReserved(prefix.as_ptr());
    }
}

/// Asks for `bytes` of shared memory at the moment each major allows it: from `_PG_init` before
/// PostgreSQL 15, from the `shmem_request_hook` since.
pub fn request_shared_memory(bytes: usize) {
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    // SAFETY: called from _PG_init while shared_preload_libraries is processed.
    unsafe {
        pg_sys::RequestAddinShmemSpace(bytes);
    }
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    // SAFETY: the previous hook is saved and chained; the static is written once, from _PG_init.
    unsafe {
        static mut BYTES: usize = 0;
        static mut PREVIOUS: pg_sys::shmem_request_hook_type = None;
        #[pgrx::pg_guard]
        unsafe extern "C-unwind" fn request() {
            // SAFETY: called once by the postmaster, after _PG_init set both statics.
            unsafe {
                if let Some(previous) = PREVIOUS {
                    previous();
                }
                pg_sys::RequestAddinShmemSpace(BYTES);
            }
        }
        BYTES = bytes;
        PREVIOUS = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request);
    }
}

/// Attribute `i` (0-based) of a tuple descriptor: PostgreSQL 18 put a compact attribute array
/// first and the full `pg_attribute` rows after it.
///
/// # Safety
/// `desc` must be a valid descriptor and `i < natts`.
pub unsafe fn tuple_desc_attr(
    desc: pg_sys::TupleDesc,
    i: usize,
) -> *const pg_sys::FormData_pg_attribute {
    // SAFETY: guaranteed by the caller.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        let attr = (*desc).attrs.as_ptr().add(i);
        #[cfg(feature = "pg18")]
        let attr = (*desc)
            .compact_attrs
            .as_ptr()
            .add((*desc).natts as usize)
            .cast::<pg_sys::FormData_pg_attribute>()
            .add(i);
        attr
    }
}

// The statement hooks. They are plain `extern "C-unwind"` functions, not `#[pg_guard]`ed: an
// error raised by the next hook or by the standard function must pass through unchanged, with
// its context and fields (pgrx's guard would rebuild it from message, detail and hint only).
// Nothing in them has a destructor, so PostgreSQL's longjmp may cross them; what may raise on
// pg_mask's behalf is the guarded `super::hooks::check_*` functions they call first.

static mut PREVIOUS_UTILITY: pg_sys::ProcessUtility_hook_type = None;
static mut PREVIOUS_EXECUTOR_START: pg_sys::ExecutorStart_hook_type = None;

unsafe extern "C-unwind" {
    #[link_name = "standard_ExecutorStart"]
    fn raw_standard_executor_start(query_desc: *mut pg_sys::QueryDesc, eflags: std::ffi::c_int);
}

#[cfg(feature = "pg13")]
unsafe extern "C-unwind" {
    #[link_name = "standard_ProcessUtility"]
    fn raw_standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const std::ffi::c_char,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

#[cfg(not(feature = "pg13"))]
unsafe extern "C-unwind" {
    #[link_name = "standard_ProcessUtility"]
    fn raw_standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

#[cfg(feature = "pg13")]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: PostgreSQL's arguments, passed on unchanged; see the comment above.
    unsafe {
        super::hooks::check_utility(pstmt);
        match PREVIOUS_UTILITY {
            Some(previous) => previous(pstmt, query_string, context, params, query_env, dest, qc),
            None => raw_standard_process_utility(
                pstmt,
                query_string,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    }
}

#[cfg(not(feature = "pg13"))]
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: PostgreSQL's arguments, passed on unchanged; see the comment above.
    unsafe {
        super::hooks::check_utility(pstmt);
        match PREVIOUS_UTILITY {
            Some(previous) => {
                previous(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc)
            }
            None => raw_standard_process_utility(
                pstmt,
                query_string,
                read_only_tree,
                context,
                params,
                query_env,
                dest,
                qc,
            ),
        }
    }
}

unsafe extern "C-unwind" fn executor_start(
    query_desc: *mut pg_sys::QueryDesc,
    eflags: std::ffi::c_int,
) {
    // SAFETY: PostgreSQL's arguments, passed on unchanged; see the comment above.
    unsafe {
        super::hooks::check_executor_start(query_desc);
        match PREVIOUS_EXECUTOR_START {
            Some(previous) => previous(query_desc, eflags),
            None => raw_standard_executor_start(query_desc, eflags),
        }
    }
}

/// Installs the utility and executor-start hooks, chaining any installed before.
pub fn install_statement_hooks() {
    // SAFETY: called once from _PG_init.
    unsafe {
        PREVIOUS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
        PREVIOUS_EXECUTOR_START = pg_sys::ExecutorStart_hook;
        pg_sys::ExecutorStart_hook = Some(executor_start);
    }
}
