//! Relcache invalidation as a generation number: a cache built from a relation's catalog rows
//! remembers the generation it was built at and rebuilds when it has moved.
//!
//! PostgreSQL calls the callback when a relation's definition changes (ALTER TABLE, CREATE OR
//! REPLACE TRIGGER, a rename, a dropped index, ANALYZE's statistics update) or a schema does
//! (a renamed schema renames every relation in it), in this session at the next command, and
//! from other sessions when this one next takes a lock or starts a transaction. The callback may not touch the catalog or raise, so it only counts; the caches
//! rebuild lazily at their next use. Only relations some cache watches move the counter.

use super::relation::Oid;
use pgrx::pg_sys;
use std::cell::{Cell, RefCell};

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    static WATCHED: RefCell<Vec<Oid>> = const { RefCell::new(Vec::new()) };
}

/// Registers the callbacks; from `_PG_init`, once.
pub fn init() {
    // SAFETY: called once from _PG_init; the callbacks live as long as the library.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache), pg_sys::Datum::from(0));
        // A renamed schema changes a relation's qualified name without touching its relcache
        // entry; schema changes are rare, so any of them moves the generation.
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::NAMESPACEOID as i32,
            Some(on_namespace),
            pg_sys::Datum::from(0),
        );
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_namespace(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    GENERATION.set(GENERATION.get() + 1);
}

/// Moves the generation when `oid`'s definition changes from now on.
pub fn watch(oid: Oid) {
    WATCHED.with_borrow_mut(|w| {
        if !w.contains(&oid) {
            w.push(oid);
        }
    });
}

/// The current generation.
pub fn generation() -> u64 {
    GENERATION.get()
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_relcache(_arg: pg_sys::Datum, relid: Oid) {
    // InvalidOid means "every relation" (after a cache reset).
    let relevant = relid == pg_sys::InvalidOid
        || WATCHED.with(|w| w.try_borrow().map_or(true, |w| w.contains(&relid)));
    if relevant {
        GENERATION.set(GENERATION.get() + 1);
    }
}
