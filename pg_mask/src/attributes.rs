//! A table by name and its columns, read from the relcache: shared by the `mask_columns` trigger
//! (which columns to mask, how wide) and the ingest (the widths its validation enforces, and
//! whether a table qualifies for the bulk insert).

use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// Opens the table `name` (quoted, possibly schema-qualified, resolved like `name::regclass`)
/// under `lockmode`, runs `f` on it and closes it again; the lock is kept until the transaction
/// ends. `None` if there is no such relation.
///
/// # Safety
/// Must be called inside a transaction; `f` must not keep the relation.
pub unsafe fn with_table<T>(
    name: &str,
    lockmode: u32,
    f: impl FnOnce(pg_sys::Relation) -> T,
) -> Option<T> {
    let name = CString::new(name).ok()?;
    // SAFETY: catalog lookups inside a transaction; the relation is locked before it is opened.
    unsafe {
        let range_var = pg_sys::makeRangeVarFromNameList(qualified_name_list(&name));
        let relid = pg_sys::RangeVarGetRelidExtended(
            range_var,
            lockmode as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        );
        if relid == pg_sys::InvalidOid {
            return None;
        }
        let rel = pg_sys::table_open(relid, pg_sys::NoLock as pg_sys::LOCKMODE);
        let result = f(rel);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        Some(result)
    }
}

/// `stringToQualifiedNameList`, which takes an error context from PostgreSQL 16 on.
///
/// # Safety
/// Must be called inside a transaction.
unsafe fn qualified_name_list(name: &CStr) -> *mut pg_sys::List {
    // SAFETY: a NUL-terminated name; errors raise.
    unsafe {
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        let list = pg_sys::stringToQualifiedNameList(name.as_ptr());
        #[cfg(any(feature = "pg16", feature = "pg17"))]
        let list = pg_sys::stringToQualifiedNameList(name.as_ptr(), std::ptr::null_mut());
        list
    }
}

/// Attribute `attnum` (1-based) of `tupdesc`, unless it is out of range or dropped.
pub fn attr(
    tupdesc: pg_sys::TupleDesc,
    attnum: usize,
) -> Option<&'static pg_sys::FormData_pg_attribute> {
    // SAFETY: bounds-checked against natts; attributes live as long as the descriptor, which
    // outlives the trigger or flush that reads them.
    unsafe {
        if attnum == 0 || attnum > (*tupdesc).natts as usize {
            return None;
        }
        let a = &*(*tupdesc).attrs.as_ptr().add(attnum - 1);
        (!a.attisdropped).then_some(a)
    }
}

/// The live attributes of `tupdesc` with their 1-based numbers.
pub fn attrs(
    tupdesc: pg_sys::TupleDesc,
) -> impl Iterator<Item = (usize, &'static pg_sys::FormData_pg_attribute)> {
    // SAFETY: natts of a valid descriptor.
    let natts = unsafe { (*tupdesc).natts } as usize;
    (1..=natts).filter_map(move |n| attr(tupdesc, n).map(|a| (n, a)))
}

pub fn name(attr: &pg_sys::FormData_pg_attribute) -> &[u8] {
    // SAFETY: NameData is NUL-terminated.
    unsafe { CStr::from_ptr(attr.attname.data.as_ptr()) }.to_bytes()
}

/// The width of a text-like column: `Some(Some(n))` for `varchar(n)`, `Some(None)` for `text`
/// and unbounded `varchar`, `None` for any other type.
pub fn text_width(attr: &pg_sys::FormData_pg_attribute) -> Option<Option<usize>> {
    match attr.atttypid {
        pg_sys::TEXTOID => Some(None),
        pg_sys::VARCHAROID if attr.atttypmod >= pg_sys::VARHDRSZ as i32 => {
            Some(Some((attr.atttypmod - pg_sys::VARHDRSZ as i32) as usize))
        }
        pg_sys::VARCHAROID => Some(None),
        _ => None,
    }
}
