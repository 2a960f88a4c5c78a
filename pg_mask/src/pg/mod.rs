//! Every call into PostgreSQL that needs `unsafe`, in one place.
//!
//! Each module wraps one kind of interop behind functions whose signatures carry the contract:
//! borrows are tied to what owns the memory (a relation's attributes live as long as the
//! borrowed relation), and the few `unsafe fn`s left say in `# Safety` what the caller must
//! guarantee. Version differences between PostgreSQL majors live in [`compat`] only. The rest of
//! pg_mask reads as safe Rust on top of these modules and never touches `pg_sys` pointers.
//!
//! - [`relation`]: a table or view opened by OID or borrowed from a trigger, its attributes and
//!   triggers, and table names resolved without `search_path`.
//! - [`trigger`]: a trigger call as a safe value: its event, relation, arguments and row.
//! - [`tuple`]: deforming and forming heap tuples, reading and building text values.
//! - [`multi_insert`]: COPY's multi-insert into a plain heap table.
//! - [`subxact`]: running a closure in a subtransaction, keeping the error's fields.
//! - [`security`]: running a closure as another role, with a fixed `search_path`.
//! - [`xact`]: transaction and subtransaction callbacks, the transaction counter.
//! - [`inval`]: relcache invalidation, as a generation number caches compare.
//! - [`hooks`]: the server log hook and the utility hook.
//! - [`guc`]: defining the secret settings with show and check hooks.
//! - [`shmem`]: the shared-memory slot the postmaster fills with the key ring of `key_command`.
//! - [`compat`]: the calls whose signatures differ between PostgreSQL 13 and 18.

pub mod compat;
pub mod guc;
pub mod hooks;
pub mod inval;
pub mod multi_insert;
pub mod relation;
pub mod security;
pub mod shmem;
pub mod subxact;
pub mod trigger;
pub mod tuple;
pub mod xact;

/// Whether the current database stores text as UTF-8: pg_mask reads text bytes as UTF-8, and
/// in another encoding the same bytes mean other characters.
pub fn database_is_utf8() -> bool {
    // SAFETY: a plain read of the backend's database encoding.
    unsafe { pgrx::pg_sys::GetDatabaseEncoding() == pgrx::pg_sys::pg_enc::PG_UTF8 as i32 }
}

/// `true` in the postmaster (and in a single-user backend), where the key command runs.
pub fn is_postmaster() -> bool {
    // SAFETY: a plain global set once at process start.
    unsafe { !pgrx::pg_sys::IsUnderPostmaster }
}

/// `true` while `shared_preload_libraries` is being processed (only in the postmaster).
pub fn preloading() -> bool {
    // SAFETY: a plain global flag set by the postmaster while it loads preload libraries.
    unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress }
}
