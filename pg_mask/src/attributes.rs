//! Reading a relation's columns from its tuple descriptor: shared by the `mask_columns` trigger
//! (which columns to mask, how wide) and the ingest's bulk insert (whether a table qualifies).

use pgrx::pg_sys;
use std::ffi::CStr;

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
