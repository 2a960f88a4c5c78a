//! pg_mask: deterministic, reversible PII masking inside PostgreSQL, and a masked ingest path
//! for JSON events.
//!
//! Layout: [`guc`] (settings), [`keys`] (the cached key ring), [`error`] (SQLSTATEs and
//! messages), [`functions`] (mask_pii & co.), [`mask_trigger`] (`mask_columns`), [`ingest`] (the
//! COPY-into-a-view ingest path), [`xact`] (once-per-transaction checks). The cryptography and
//! the token format live in `pg_mask_core`, which has no PostgreSQL types; this crate is glue.

use pgrx::prelude::*;

mod attributes;
mod error;
mod functions;
mod guc;
mod ingest;
mod keys;
mod mask_trigger;
mod text;
mod xact;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    keys::init();
    xact::init();
    guc::init();
    ingest::init();
}

/// Required by `cargo pgrx test`; pg_mask's tests run through SQL against a real server
/// (see `integration/`), so there is nothing to set up here.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_mask'"]
    }
}
