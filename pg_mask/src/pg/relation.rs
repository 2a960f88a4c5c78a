//! A table or view, opened by OID or borrowed from a trigger, read from the relcache: its kind,
//! owner, attributes, triggers and unique indexes. Everything handed out borrows from the
//! [`Relation`], so nothing outlives the relcache entry it points into.
//!
//! Tables are found by OID or by name in one given schema ([`table_in_schema`]), never through
//! the caller's `search_path`: a temporary table that shadows a name must not divert rows.

use pgrx::pg_sys;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;

pub use pg_sys::Oid;

/// The lock a caller takes on a relation it opens; kept until the transaction ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// What a query that reads the table takes.
    Read,
    /// What an INSERT takes.
    Write,
}

impl Lock {
    fn mode(self) -> pg_sys::LOCKMODE {
        (match self {
            Lock::Read => pg_sys::AccessShareLock,
            Lock::Write => pg_sys::RowExclusiveLock,
        }) as pg_sys::LOCKMODE
    }
}

/// What kind of relation this is (`pg_class.relkind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Table,
    PartitionedTable,
    View,
    ForeignTable,
    Other,
}

/// A relation: opened by [`Relation::open`] (closed on drop, lock kept) or borrowed for `'a`.
pub struct Relation<'a> {
    raw: NonNull<pg_sys::RelationData>,
    close_on_drop: bool,
    _borrow: PhantomData<&'a pg_sys::RelationData>,
}

impl Relation<'static> {
    /// Opens relation `oid` under `lock`; `None` if it no longer exists.
    ///
    /// Must be called inside a transaction (every SQL-callable entry point is).
    pub fn open(oid: Oid, lock: Lock) -> Option<Self> {
        // SAFETY: try_relation_open returns NULL for a missing relation and raises otherwise;
        // the relation stays valid until table_close in Drop.
        let raw = unsafe { pg_sys::try_relation_open(oid, lock.mode()) };
        NonNull::new(raw).map(|raw| Relation { raw, close_on_drop: true, _borrow: PhantomData })
    }
}

impl<'a> Relation<'a> {
    /// Borrows a relation PostgreSQL handed us (a trigger's `tg_relation`).
    ///
    /// # Safety
    /// `raw` must be a valid, open relation that stays open for `'a`.
    pub unsafe fn borrowed(raw: pg_sys::Relation) -> Option<Relation<'a>> {
        NonNull::new(raw).map(|raw| Relation { raw, close_on_drop: false, _borrow: PhantomData })
    }

    fn data(&self) -> &pg_sys::RelationData {
        // SAFETY: valid while self lives (constructor contracts).
        unsafe { self.raw.as_ref() }
    }

    fn class(&self) -> &pg_sys::FormData_pg_class {
        // SAFETY: every open relation has its pg_class row in rd_rel.
        unsafe { &*self.data().rd_rel }
    }

    pub(crate) fn as_ptr(&self) -> pg_sys::Relation {
        self.raw.as_ptr()
    }

    pub fn oid(&self) -> Oid {
        self.data().rd_id
    }

    pub fn owner(&self) -> Oid {
        self.class().relowner
    }

    pub fn namespace(&self) -> Oid {
        self.class().relnamespace
    }

    pub fn name(&self) -> String {
        // SAFETY: relname is a NUL-terminated NameData.
        unsafe { CStr::from_ptr(self.class().relname.data.as_ptr()) }.to_string_lossy().into_owned()
    }

    /// `schema.table`, each part quoted as needed: the text to put in SQL.
    pub fn qualified_name(&self) -> String {
        let schema = namespace_name(self.namespace()).unwrap_or_default();
        format!(
            "{}.{}",
            pgrx::spi::quote_identifier(&schema),
            pgrx::spi::quote_identifier(self.name())
        )
    }

    pub fn kind(&self) -> Kind {
        match self.class().relkind as u8 {
            pg_sys::RELKIND_RELATION => Kind::Table,
            pg_sys::RELKIND_PARTITIONED_TABLE => Kind::PartitionedTable,
            pg_sys::RELKIND_VIEW => Kind::View,
            pg_sys::RELKIND_FOREIGN_TABLE => Kind::ForeignTable,
            _ => Kind::Other,
        }
    }

    pub fn is_partition(&self) -> bool {
        self.class().relispartition
    }

    /// Whether rows are stored by the heap access method (not columnar or another AM).
    pub fn is_heap(&self) -> bool {
        self.class().relam == pg_sys::HEAP_TABLE_AM_OID
    }

    pub fn has_rules(&self) -> bool {
        self.class().relhasrules
    }

    pub fn has_row_security(&self) -> bool {
        self.class().relrowsecurity
    }

    fn constraints(&self) -> Option<&pg_sys::TupleConstr> {
        // SAFETY: rd_att is valid; constr is NULL or points into it.
        unsafe { (*self.data().rd_att).constr.as_ref() }
    }

    /// NOT NULL or CHECK constraints that an insert must check per row.
    pub fn has_row_constraints(&self) -> bool {
        self.constraints().is_some_and(|c| c.has_not_null || c.num_check > 0)
    }

    pub fn has_stored_generated_columns(&self) -> bool {
        self.constraints().is_some_and(|c| c.has_generated_stored)
    }

    /// The live (not dropped) attributes, in order.
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'_>> {
        tuple_desc_attributes(self.data().rd_att)
    }

    /// The live attribute numbered `attnum` (1-based).
    pub fn attribute_at(&self, attnum: usize) -> Option<Attribute<'_>> {
        // SAFETY: rd_att is the relation's valid descriptor.
        let natts = unsafe { (*self.data().rd_att).natts } as usize;
        if attnum == 0 || attnum > natts {
            return None;
        }
        // SAFETY: attnum - 1 < natts.
        let raw = unsafe { &*super::compat::tuple_desc_attr(self.data().rd_att, attnum - 1) };
        (!raw.attisdropped).then_some(Attribute { raw })
    }

    /// Whether the current role (after any `SET ROLE` or owner switch) may INSERT into it.
    pub fn current_role_may_insert(&self) -> bool {
        // SAFETY: an ACL check on an existing relation for the current user.
        unsafe {
            pg_sys::pg_class_aclcheck(self.oid(), pg_sys::GetUserId(), pg_sys::ACL_INSERT as _)
                == pg_sys::AclResult::ACLCHECK_OK
        }
    }

    /// The live attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<Attribute<'_>> {
        self.attributes().find(|a| a.name() == name.as_bytes())
    }

    /// The relation's triggers.
    pub fn triggers(&self) -> impl Iterator<Item = TriggerInfo<'_>> {
        let desc = self.data().trigdesc;
        let triggers: &[pg_sys::Trigger] = if desc.is_null() {
            &[]
        } else {
            // SAFETY: numtriggers entries, valid with the relcache entry.
            unsafe { std::slice::from_raw_parts((*desc).triggers, (*desc).numtriggers as usize) }
        };
        triggers.iter().map(|raw| TriggerInfo { raw })
    }

    /// Unique indexes an `ON CONFLICT (columns)` could use as arbiter: valid, immediate, no
    /// expressions, no predicate. Each as its key columns' names.
    pub fn unique_index_columns(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        // SAFETY: the index list of an open relation is a palloc'd List of OIDs; each index is
        // opened and closed under the lock the caller holds on the table.
        unsafe {
            let list = pg_sys::RelationGetIndexList(self.as_ptr());
            let len = if list.is_null() { 0 } else { (*list).length as usize };
            for i in 0..len {
                let oid = (*(*list).elements.add(i)).oid_value;
                let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
                let form = &*(*index).rd_index;
                let usable = form.indisunique
                    && form.indimmediate
                    && form.indisvalid
                    && pg_sys::heap_attisnull(
                        (*index).rd_indextuple,
                        pg_sys::Anum_pg_index_indexprs as i32,
                        std::ptr::null_mut(),
                    )
                    && pg_sys::heap_attisnull(
                        (*index).rd_indextuple,
                        pg_sys::Anum_pg_index_indpred as i32,
                        std::ptr::null_mut(),
                    );
                if usable {
                    let keys = form.indkey.values.as_slice(form.indnkeyatts as usize);
                    let names: Option<Vec<String>> = keys
                        .iter()
                        .map(|&attnum| {
                            self.attributes()
                                .find(|a| a.number() == attnum as usize)
                                .map(|a| String::from_utf8_lossy(a.name()).into_owned())
                        })
                        .collect();
                    out.extend(names);
                }
                pg_sys::index_close(index, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            }
            if !list.is_null() {
                pg_sys::list_free(list);
            }
        }
        out
    }
}

impl Drop for Relation<'_> {
    fn drop(&mut self) {
        if self.close_on_drop {
            // SAFETY: opened by Relation::open; the lock stays until the transaction ends.
            unsafe { pg_sys::relation_close(self.raw.as_ptr(), pg_sys::NoLock as pg_sys::LOCKMODE) }
        }
    }
}

/// The live attributes of a tuple descriptor, borrowed for as long as the descriptor.
pub(crate) fn tuple_desc_attributes<'a>(
    desc: pg_sys::TupleDesc,
) -> impl Iterator<Item = Attribute<'a>> {
    // SAFETY: natts of a valid descriptor, which callers borrow for 'a.
    let natts = unsafe { (*desc).natts } as usize;
    (0..natts).filter_map(move |i| {
        // SAFETY: i < natts.
        let raw = unsafe { &*super::compat::tuple_desc_attr(desc, i) };
        (!raw.attisdropped).then_some(Attribute { raw })
    })
}

/// One attribute (column) of a relation.
#[derive(Clone, Copy)]
pub struct Attribute<'a> {
    raw: &'a pg_sys::FormData_pg_attribute,
}

impl<'a> Attribute<'a> {
    /// 1-based attribute number.
    pub fn number(&self) -> usize {
        self.raw.attnum as usize
    }

    pub fn name(&self) -> &'a [u8] {
        // SAFETY: NameData is NUL-terminated.
        unsafe { CStr::from_ptr(self.raw.attname.data.as_ptr()) }.to_bytes()
    }

    pub fn type_oid(&self) -> Oid {
        self.raw.atttypid
    }

    pub fn typmod(&self) -> i32 {
        self.raw.atttypmod
    }

    /// A default, an identity or a generated expression fills it when an INSERT leaves it out.
    pub fn is_filled_by_default(&self) -> bool {
        self.raw.atthasdef || self.raw.attidentity != 0 || self.raw.attgenerated != 0
    }

    /// Whether its type is a domain (whose constraints and default an INSERT applies).
    pub fn is_domain(&self) -> bool {
        // SAFETY: a type cache lookup of an existing type.
        unsafe { pg_sys::get_typtype(self.type_oid()) as u8 == pg_sys::TYPTYPE_DOMAIN }
    }

    /// The width of a text-like column: `Some(Some(n))` for `varchar(n)`, `Some(None)` for
    /// `text` and unbounded `varchar`, `None` for any other type.
    pub fn text_width(&self) -> Option<Option<usize>> {
        text_width(self.type_oid(), self.typmod())
    }
}

/// [`Attribute::text_width`] for a type and typmod.
pub fn text_width(type_oid: Oid, typmod: i32) -> Option<Option<usize>> {
    match type_oid {
        pg_sys::TEXTOID => Some(None),
        pg_sys::VARCHAROID if typmod >= pg_sys::VARHDRSZ as i32 => {
            Some(Some((typmod - pg_sys::VARHDRSZ as i32) as usize))
        }
        pg_sys::VARCHAROID => Some(None),
        _ => None,
    }
}

/// One trigger of a relation.
pub struct TriggerInfo<'a> {
    raw: &'a pg_sys::Trigger,
}

impl<'a> TriggerInfo<'a> {
    pub fn fires_on_insert(&self) -> bool {
        self.raw.tgtype as u32 & pg_sys::TRIGGER_TYPE_INSERT != 0
    }

    /// Whether the trigger runs the C function at `address` (how pg_mask recognises its own
    /// trigger functions, whatever schema or name they were created under).
    pub fn calls(&self, address: *const ()) -> bool {
        let mut finfo = pg_sys::FmgrInfo::default();
        // SAFETY: fmgr_info looks the function up in the catalog; it raises if it is gone,
        // which cannot happen while the trigger exists.
        unsafe { pg_sys::fmgr_info(self.raw.tgfoid, &mut finfo) };
        finfo.fn_addr.is_some_and(|f| f as *const () == address)
    }

    pub fn args(&self) -> Vec<&'a [u8]> {
        trigger_args(self.raw)
    }
}

/// The arguments of a trigger, borrowed from it.
pub fn trigger_args(trigger: &pg_sys::Trigger) -> Vec<&[u8]> {
    if trigger.tgnargs <= 0 || trigger.tgargs.is_null() {
        return Vec::new();
    }
    // SAFETY: tgnargs NUL-terminated strings, valid with the trigger.
    unsafe {
        std::slice::from_raw_parts(trigger.tgargs, trigger.tgnargs as usize)
            .iter()
            .map(|&a| CStr::from_ptr(a).to_bytes())
            .collect()
    }
}

/// A type's name as SQL writes it (`bigint`, `character varying(10)`).
pub fn type_name(type_oid: Oid, typmod: i32) -> String {
    // SAFETY: format_type_with_typemod handles any OID and returns a palloc'd C string.
    unsafe { CStr::from_ptr(pg_sys::format_type_with_typemod(type_oid, typmod)) }
        .to_string_lossy()
        .into_owned()
}

/// The name of schema `oid`, if it exists.
pub fn namespace_name(oid: Oid) -> Option<String> {
    // SAFETY: get_namespace_name returns NULL for a missing schema, else a palloc'd string.
    let raw = unsafe { pg_sys::get_namespace_name(oid) };
    // SAFETY: a NUL-terminated string when not NULL.
    (!raw.is_null()).then(|| unsafe { CStr::from_ptr(raw) }.to_string_lossy().into_owned())
}

/// The relation `name` in schema `schema`, or in `default_schema` when `schema` is `None`;
/// `None` if there is none. No `search_path` is consulted.
pub fn table_in_schema(schema: Option<&str>, name: &str, default_schema: Oid) -> Option<Oid> {
    let name = CString::new(name).ok()?;
    let namespace = match schema {
        None => default_schema,
        Some(s) => {
            let s = CString::new(s).ok()?;
            // SAFETY: NUL-terminated; missing_ok returns InvalidOid instead of raising.
            unsafe { pg_sys::get_namespace_oid(s.as_ptr(), true) }
        }
    };
    if namespace == pg_sys::InvalidOid {
        return None;
    }
    // SAFETY: NUL-terminated; returns InvalidOid when there is no such relation.
    let oid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), namespace) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// Whether the current database has extension `name` installed.
pub fn extension_installed(name: &CStr) -> bool {
    // SAFETY: missing_ok: returns InvalidOid instead of raising.
    unsafe { pg_sys::get_extension_oid(name.as_ptr(), true) != pg_sys::InvalidOid }
}

/// Takes `lock` on relation `oid` (kept until the transaction ends), which also processes
/// pending invalidation messages, so caches learn of DDL committed by other sessions.
pub fn lock(oid: Oid, lock: Lock) {
    // SAFETY: LockRelationOid works on any OID inside a transaction.
    unsafe { pg_sys::LockRelationOid(oid, lock.mode()) }
}
