//! pg_mask: deterministic, reversible PII masking inside PostgreSQL, and a masked ingest path
//! for JSON events.
//!
//! Layout: [`settings`] (every setting), [`keys`] (the key ring and where it comes from),
//! [`error`] (SQLSTATEs and messages), [`functions`] (mask_pii & co. and their privileges),
//! [`mask_trigger`] (`mask_columns`), [`ingest`] (the COPY-into-a-view ingest path), and [`pg`],
//! the only module that touches PostgreSQL through `unsafe`. The cryptography, the token format,
//! the login validation and the column description live in `pg_mask_core`, which has no
//! PostgreSQL types; this crate is glue.

use pgrx::prelude::*;

mod error;
mod functions;
mod ingest;
mod keys;
mod mask_trigger;
mod pg;
mod settings;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // keys first: it reserves shared memory, which is only possible while preloading, before the
    // key command's setting is defined (its check hook runs the command).
    keys::init();
    pg::xact::init();
    pg::inval::init();
    pg::hooks::init();
    settings::init();
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
