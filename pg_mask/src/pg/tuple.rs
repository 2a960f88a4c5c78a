//! Heap tuples as rows of values: deformed once, read as text where the column is text, some
//! values replaced, formed once. Used by the `mask_columns` trigger, whose per-row cost is most
//! of what masking adds to a COPY (see README: one deform, one buffer for every token, one form).
//!
//! The row checks each column's type before it hands out bytes, so a caller that is wrong about
//! a column (its cache went stale after an `ALTER TABLE`) gets `None`, never a misread datum.

use super::relation::{text_width, Oid};
use pgrx::pg_sys;

/// Tables up to this many attributes are deformed into arrays on the stack; wider ones use palloc.
const STACK_ATTRIBUTES: usize = 64;

/// A deformed heap tuple.
pub struct Row<'t> {
    desc: pg_sys::TupleDesc,
    tuple: pg_sys::HeapTuple,
    values: &'t mut [pg_sys::Datum],
    nulls: &'t mut [bool],
}

/// Deforms `tuple` and runs `f` on it.
///
/// # Safety
/// `tuple` must be a valid heap tuple described by `desc`, both alive for the call (a row
/// trigger's tuple and its relation's descriptor are).
pub unsafe fn with_row<R>(
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    f: impl FnOnce(&mut Row<'_>) -> R,
) -> R {
    // SAFETY: natts of a valid descriptor.
    let natts = unsafe { (*desc).natts } as usize;
    let mut stack_values = [pg_sys::Datum::from(0usize); STACK_ATTRIBUTES];
    let mut stack_nulls = [false; STACK_ATTRIBUTES];
    let (values, nulls): (&mut [pg_sys::Datum], &mut [bool]) = if natts <= STACK_ATTRIBUTES {
        (&mut stack_values[..natts], &mut stack_nulls[..natts])
    } else {
        // SAFETY: palloc'd arrays of natts elements, alive for this call.
        unsafe {
            (
                std::slice::from_raw_parts_mut(
                    pg_sys::palloc0(natts * std::mem::size_of::<pg_sys::Datum>()).cast(),
                    natts,
                ),
                std::slice::from_raw_parts_mut(pg_sys::palloc0(natts).cast(), natts),
            )
        }
    };
    // SAFETY: both arrays have natts entries; `desc` describes `tuple` (caller's contract).
    unsafe { pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr()) };
    f(&mut Row { desc, tuple, values, nulls })
}

impl<'t> Row<'t> {
    /// The attribute `attnum` (1-based) if it exists, is live, and is text or varchar.
    fn text_column(&self, attnum: usize) -> Option<usize> {
        // SAFETY: natts of a valid descriptor.
        let natts = unsafe { (*self.desc).natts } as usize;
        if attnum == 0 || attnum > natts {
            return None;
        }
        // SAFETY: attnum - 1 < natts.
        let attr = unsafe { &*super::compat::tuple_desc_attr(self.desc, attnum - 1) };
        (!attr.attisdropped && text_width(attr.atttypid, attr.atttypmod).is_some())
            .then_some(attnum - 1)
    }

    /// The bytes of text column `attnum`; `None` if it is NULL or not a text column.
    pub fn text(&self, attnum: usize) -> Option<&'t [u8]> {
        let i = self.text_column(attnum)?;
        if self.nulls[i] {
            return None;
        }
        // SAFETY: a non-null text/varchar datum of the deformed tuple.
        Some(unsafe { varlena_bytes(self.values[i]) })
    }

    /// Whether text column `attnum` holds, byte for byte in its stored form, what it holds in
    /// `old` (an UPDATE's old row, same descriptor). An unchanged value keeps its TOAST pointer or
    /// its bytes, so this never needs to detoast.
    ///
    /// # Safety
    /// `old` must be a valid heap tuple described by this row's descriptor.
    pub unsafe fn unchanged_from(&self, attnum: usize, old: pg_sys::HeapTuple) -> bool {
        let Some(i) = self.text_column(attnum) else { return false };
        if self.nulls[i] {
            return false;
        }
        let mut old_null = false;
        // SAFETY: the caller's contract; attnum was checked against the descriptor.
        let old_datum =
            unsafe { pg_sys::heap_getattr(old, attnum as i32, self.desc, &mut old_null) };
        // SAFETY: both are varlena datums of one text column.
        !old_null && unsafe { same_varlena(self.values[i], old_datum) }
    }

    /// Replaces text columns with new values written in place: `columns` lists (attnum, byte
    /// length) and `fill(k, out)` writes the `k`th value into `out`. One palloc holds them all.
    /// Columns that are not text are left alone (and not passed to `fill`).
    pub fn replace_texts(
        &mut self,
        columns: &[(usize, usize)],
        mut fill: impl FnMut(usize, &mut [u8]),
    ) {
        let targets: Vec<(usize, usize, usize)> = columns
            .iter()
            .enumerate()
            .filter_map(|(k, &(attnum, len))| self.text_column(attnum).map(|i| (k, i, len)))
            .collect();
        let bytes: usize = targets.iter().map(|&(_, _, len)| aligned_text_size(len)).sum();
        if bytes == 0 {
            return;
        }
        // SAFETY: `bytes` covers every value at its aligned offset; each is a complete text
        // varlena before it is stored in `values`.
        unsafe {
            let buffer = pg_sys::palloc(bytes).cast::<u8>();
            let mut offset = 0;
            for (k, i, len) in targets {
                let text = buffer.add(offset).cast::<pg_sys::varlena>();
                pgrx::varlena::set_varsize_4b(text, (pg_sys::VARHDRSZ + len) as i32);
                let out =
                    std::slice::from_raw_parts_mut(text.cast::<u8>().add(pg_sys::VARHDRSZ), len);
                fill(k, out);
                self.values[i] = pg_sys::Datum::from(text);
                self.nulls[i] = false;
                offset += aligned_text_size(len);
            }
        }
    }

    /// A new tuple from the (possibly replaced) values, keeping the original's identity (its
    /// ctid, self pointer and table OID), as `heap_modify_tuple` does.
    pub fn form(&mut self) -> pg_sys::HeapTuple {
        // SAFETY: values/nulls have natts entries for `desc`; the original tuple is valid.
        unsafe {
            let new = pg_sys::heap_form_tuple(
                self.desc,
                self.values.as_mut_ptr(),
                self.nulls.as_mut_ptr(),
            );
            (*(*new).t_data).t_ctid = (*(*self.tuple).t_data).t_ctid;
            (*new).t_self = (*self.tuple).t_self;
            (*new).t_tableOid = (*self.tuple).t_tableOid;
            new
        }
    }
}

/// Bytes a text varlena of `len` payload bytes takes in the value buffer (8-byte aligned).
fn aligned_text_size(len: usize) -> usize {
    (pg_sys::VARHDRSZ + len).next_multiple_of(8)
}

/// The bytes of a text/varchar datum, detoasted only if it is compressed or stored out of line
/// (a plain in-line value, as COPY and INSERT pass them, is read where it is).
///
/// # Safety
/// `datum` must be a non-null varlena datum; the bytes live as long as the current call.
pub unsafe fn varlena_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    use pgrx::varlena::{varatt_is_1b_e, varatt_is_4b_c, vardata_any, varsize_any_exhdr};
    // SAFETY: guaranteed by the caller.
    unsafe {
        let mut ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
        if varatt_is_4b_c(ptr) || varatt_is_1b_e(ptr) {
            ptr = pg_sys::pg_detoast_datum_packed(ptr);
        }
        std::slice::from_raw_parts(vardata_any(ptr).cast::<u8>(), varsize_any_exhdr(ptr))
    }
}

/// Byte-wise equality of two varlena datums in their stored form.
///
/// # Safety
/// Both datums must be non-null varlena datums.
unsafe fn same_varlena(a: pg_sys::Datum, b: pg_sys::Datum) -> bool {
    let (pa, pb) = (a.cast_mut_ptr::<pg_sys::varlena>(), b.cast_mut_ptr::<pg_sys::varlena>());
    if pa == pb {
        return true;
    }
    // SAFETY: guaranteed by the caller.
    unsafe {
        let (la, lb) = (pgrx::varlena::varsize_any(pa), pgrx::varlena::varsize_any(pb));
        la == lb
            && std::slice::from_raw_parts(pa as *const u8, la)
                == std::slice::from_raw_parts(pb as *const u8, lb)
    }
}

/// A palloc'd copy of `s` as a text datum, in the current memory context.
pub fn text_datum(s: &str) -> pg_sys::Datum {
    let total = pg_sys::VARHDRSZ + s.len();
    // SAFETY: palloc returns `total` writable bytes or raises; the header is set before use.
    unsafe {
        let ptr = pg_sys::palloc(total).cast::<pg_sys::varlena>();
        pgrx::varlena::set_varsize_4b(ptr, total as i32);
        std::ptr::copy_nonoverlapping(s.as_ptr(), ptr.cast::<u8>().add(pg_sys::VARHDRSZ), s.len());
        pg_sys::Datum::from(ptr)
    }
}

/// The value of attribute `attnum` of `tuple` as bytes, if it is a non-null text or varchar.
///
/// # Safety
/// `tuple` must be a valid heap tuple described by `desc`; the bytes live for the current call.
pub unsafe fn text_attribute<'a>(
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    attnum: usize,
) -> Option<&'a [u8]> {
    // SAFETY: natts of a valid descriptor; the attribute is checked before it is read.
    unsafe {
        if attnum == 0 || attnum > (*desc).natts as usize {
            return None;
        }
        let attr = &*super::compat::tuple_desc_attr(desc, attnum - 1);
        text_width(attr.atttypid, attr.atttypmod)?;
        let mut is_null = false;
        let datum = pg_sys::heap_getattr(tuple, attnum as i32, desc, &mut is_null);
        (!is_null).then(|| varlena_bytes(datum))
    }
}

/// The value of attribute `attnum` of `tuple` as a `timestamptz` (microseconds since 2000), if
/// it is a non-null `timestamptz`.
///
/// # Safety
/// `tuple` must be a valid heap tuple described by `desc`.
pub unsafe fn timestamptz_attribute(
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    attnum: usize,
) -> Option<i64> {
    // SAFETY: as above; a timestamptz datum is a by-value int64.
    unsafe {
        if attnum == 0 || attnum > (*desc).natts as usize {
            return None;
        }
        let attr = &*super::compat::tuple_desc_attr(desc, attnum - 1);
        if attr.atttypid != pg_sys::TIMESTAMPTZOID {
            return None;
        }
        let mut is_null = false;
        let datum = pg_sys::heap_getattr(tuple, attnum as i32, desc, &mut is_null);
        (!is_null).then(|| datum.value() as i64)
    }
}

/// The type of attribute `attnum` (1-based), if it is live.
///
/// # Safety
/// `desc` must be a valid tuple descriptor.
pub unsafe fn attribute_type(desc: pg_sys::TupleDesc, attnum: usize) -> Option<Oid> {
    // SAFETY: bounds-checked against natts.
    unsafe {
        if attnum == 0 || attnum > (*desc).natts as usize {
            return None;
        }
        let attr = &*super::compat::tuple_desc_attr(desc, attnum - 1);
        (!attr.attisdropped).then_some(attr.atttypid)
    }
}

/// Number of attributes (dropped ones included) of a descriptor.
///
/// # Safety
/// `desc` must be a valid tuple descriptor.
pub unsafe fn attribute_count(desc: pg_sys::TupleDesc) -> usize {
    // SAFETY: guaranteed by the caller.
    unsafe { (*desc).natts as usize }
}
