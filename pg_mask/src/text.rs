//! Building `text` datums in PostgreSQL memory.

use pgrx::pg_sys;

/// A palloc'd copy of `s` as a text Datum, in `CurrentMemoryContext`.
///
/// # Safety
/// Must be called inside a PostgreSQL memory context (any function or trigger call).
pub unsafe fn text_datum(s: &str) -> pg_sys::Datum {
    let total = pg_sys::VARHDRSZ + s.len();
    // SAFETY: palloc returns `total` writable bytes or raises; the header is set before use.
    unsafe {
        let ptr = pg_sys::palloc(total).cast::<pg_sys::varlena>();
        pgrx::varlena::set_varsize_4b(ptr, total as i32);
        std::ptr::copy_nonoverlapping(s.as_ptr(), ptr.cast::<u8>().add(pg_sys::VARHDRSZ), s.len());
        pg_sys::Datum::from(ptr)
    }
}
