//! Every pg_mask setting, registered once from `_PG_init`, with a getter each.
//!
//! The key settings are why this module exists. They are `PGC_SIGHUP` (postgresql.conf, then
//! `pg_reload_conf()`), so they can never be put in `ALTER DATABASE/ROLE … SET`, whose values
//! any role can read from `pg_db_role_setting`; superuser-only and hidden from `SHOW ALL`; and
//! `pg_mask.keys` and `pg_mask.key_command` show `(set)`, never their value, even to a
//! superuser. `pg_mask.keys` also refuses `ALTER SYSTEM`, which would write the key into
//! `postgresql.auto.conf` inside the data directory and so into every base backup.
//!
//! Only [`crate::keys`] reads the key settings.

use crate::keys;
use crate::pg::compat::reserve_setting_prefix;
use crate::pg::guc::{self, Definition, Secret};
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::time::Duration;

/// `pg_mask.ingest_batch_rows`: rows an ingest trigger buffers before it writes them out.
/// One set-based INSERT per 10k rows measured 5.7 s per 300k rows against 7.6 s for an INSERT per
/// row (shared/MEASURED.md); bigger buffers only cost memory.
static INGEST_BATCH_ROWS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `pg_mask.key_command_timeout`: seconds the key command may run before it is killed.
static KEY_COMMAND_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(10);

pub fn init() {
    GucRegistry::define_int_guc(
        c"pg_mask.ingest_batch_rows",
        c"Rows an ingest trigger buffers before writing them out.",
        c"Larger batches amortise the INSERT; the buffer lives in backend memory.",
        &INGEST_BATCH_ROWS,
        1,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    // Defined before pg_mask.key_command, whose check hook (which runs the command) reads it.
    GucRegistry::define_int_guc(
        c"pg_mask.key_command_timeout",
        c"Seconds pg_mask.key_command may run before it is killed.",
        c"The postmaster waits for the command at start and at each reload.",
        &KEY_COMMAND_TIMEOUT,
        1,
        600,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    guc::define(
        Secret::Keys,
        Definition {
            name: c"pg_mask.keys",
            short: c"pg_mask key ring: key_id:base64_key entries, the first one masks.",
            long:
                c"Superuser-only and never shown; refused by ALTER SYSTEM. Prefer pg_mask.key_file.",
            redacted: true,
            refuse_alter_system: true,
            on_value: None,
        },
    );
    guc::define(
        Secret::KeyFile,
        Definition {
            name: c"pg_mask.key_file",
            short: c"Path of a file holding the pg_mask key ring (mode 0600).",
            long: c"Read again when the file changes (checked once per transaction).",
            redacted: false,
            refuse_alter_system: false,
            on_value: None,
        },
    );
    guc::define(
        Secret::KeyCommand,
        Definition {
            name: c"pg_mask.key_command",
            short: c"Shell command whose standard output is the pg_mask key ring.",
            long: c"Run by the postmaster at start and at each reload, never per session or transaction.",
            redacted: true,
            refuse_alter_system: false,
            on_value: Some(keys::command::on_setting),
        },
    );
    reserve_setting_prefix(c"pg_mask");
}

/// Rows an ingest trigger buffers before it writes them out.
pub fn ingest_batch_rows() -> usize {
    INGEST_BATCH_ROWS.get().max(1) as usize
}

/// How long the key command may run.
pub fn key_command_timeout() -> Duration {
    Duration::from_secs(KEY_COMMAND_TIMEOUT.get().max(1) as u64)
}

/// The raw `pg_mask.keys` value, `None` when empty. Only [`crate::keys`] may call this.
pub(crate) fn keys() -> Option<&'static [u8]> {
    guc::value(Secret::Keys)
}

/// The `pg_mask.key_file` path, `None` when empty.
pub(crate) fn key_file() -> Option<&'static [u8]> {
    guc::value(Secret::KeyFile)
}

/// The `pg_mask.key_command` command line, `None` when empty.
pub(crate) fn key_command() -> Option<&'static [u8]> {
    guc::value(Secret::KeyCommand)
}
