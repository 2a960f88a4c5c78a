//! Building `text` datums in PostgreSQL memory without a Rust allocation in between.

use pgrx::pg_sys;

/// A palloc'd text value of `len` bytes written by `fill`, as a Datum.
///
/// # Safety
/// Must be called inside a PostgreSQL memory context (any function or trigger call); the value
/// lives in `CurrentMemoryContext`.
pub unsafe fn new_text(len: usize, fill: impl FnOnce(&mut [u8])) -> pg_sys::Datum {
    let total = pg_sys::VARHDRSZ + len;
    // SAFETY: palloc returns `total` writable bytes or raises; the header is set before use.
    unsafe {
        let ptr = pg_sys::palloc(total).cast::<pg_sys::varlena>();
        pgrx::varlena::set_varsize_4b(ptr, total as i32);
        let data = std::slice::from_raw_parts_mut(ptr.cast::<u8>().add(pg_sys::VARHDRSZ), len);
        fill(data);
        pg_sys::Datum::from(ptr)
    }
}

/// A palloc'd copy of `s` as a text Datum.
///
/// # Safety
/// As [`new_text`].
pub unsafe fn text_datum(s: &str) -> pg_sys::Datum {
    // SAFETY: guaranteed by the caller.
    unsafe { new_text(s.len(), |out| out.copy_from_slice(s.as_bytes())) }
}
