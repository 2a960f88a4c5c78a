//! pg_mask's error type: one variant per thing that can go wrong, each with its own SQLSTATE, a
//! one-line message that says what to fix, and a hint where one helps.
//!
//! The SQLSTATE classes are chosen for the loader that reads them: a configuration problem is
//! class 42, 55 or F0 (nothing a message can fix: stop, or wait for the operator), a problem with
//! one message's data is class 22 or 23 (isolate that message). Messages name settings, key
//! ids, tables and columns, never key material or a value being masked or unmasked: they reach
//! clients and the server log.

use crate::pg::subxact::Caught;
use pg_mask_core::{KeyRingError, TokenError};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

const KEY_HINT: &str =
    "Put the key ring in a file outside the data directory (mode 0600, owned by \
the server's OS user), set pg_mask.key_file in postgresql.conf, then SELECT pg_reload_conf(). \
See the README's \"Keys\" section.";

#[derive(Debug, Clone, thiserror::Error)]
pub enum MaskError {
    #[error("pg_mask must be loaded through shared_preload_libraries")]
    NotPreloaded,
    #[error(
        "pg_mask has no key: pg_mask.keys, pg_mask.key_file and pg_mask.key_command are all empty"
    )]
    NoKey,
    #[error("more than one of pg_mask.keys, pg_mask.key_file and pg_mask.key_command is set; set exactly one")]
    MoreThanOneKeySource,
    #[error("invalid pg_mask.keys: {0}")]
    BadKeys(KeyRingError),
    #[error("invalid pg_mask.key_file \"{path}\": {problem}")]
    BadKeyFile { path: String, problem: String },
    #[error("pg_mask.key_command {0}")]
    KeyCommandFailed(String),
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("pg_mask needs a database whose encoding is UTF8")]
    NotUtf8,
    #[error("{what} is {bytes} bytes; its token would exceed PostgreSQL's 1 GB limit for a value")]
    TooLargeToMask { what: &'static str, bytes: usize },
    #[error("{function} must be {expected}")]
    WrongTriggerUse { function: &'static str, expected: &'static str },
    #[error("{function}: {problem}")]
    BadTriggerArguments { function: &'static str, problem: String },
    #[error("mask_columns: column \"{column}\" of \"{table}\" does not exist")]
    UnknownColumn { table: String, column: String },
    #[error("mask_columns: column \"{column}\" of \"{table}\" is {type_name}; only text and varchar columns can be masked")]
    NotText { table: String, column: String, type_name: String },
    #[error("mask_columns: the token for column \"{column}\" would be {len} characters, but the column allows {max}")]
    TokenTooLong { column: String, len: usize, max: usize },
    #[error("ingest: an ingest view must have the columns (message_id text, sent_at timestamptz, body text[, database_error text])")]
    BadViewShape,
    #[error(
        "ingest: table {name} (the {role} table named by the ingest view's trigger) does not exist"
    )]
    MissingTable { role: &'static str, name: String },
    #[error("ingest: table {table} has no column \"{column}\"")]
    MissingColumn { table: String, column: String },
    #[error("ingest: table {table} needs a unique index on message_id (or on message_id and its partition key) so that a redelivered message is skipped")]
    NoArbiterIndex { table: String },
    #[error("ingest: cannot load into {view} while session_replication_role is replica: its INSTEAD OF triggers would not fire and nothing would be stored")]
    ReplicaRole { view: String },
    #[error("ingest: message_id must not be null")]
    NullMessageId,
    #[error("ingest: rows are buffered but were never written; the view needs an AFTER INSERT FOR EACH STATEMENT trigger that runs ingest_flush()")]
    Unflushed,
    #[error("ingest: writing to {table} failed: {reason}")]
    Refused {
        code: PgSqlErrorCode,
        table: String,
        reason: String,
        /// `constraint "x"`, `column "x"` or `table "x"`: a name, never a value.
        object: Option<String>,
    },
    #[error("ingest: could not write a batch: {0}")]
    Spi(String),
}

impl MaskError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            MaskError::NotPreloaded
            | MaskError::NoKey
            | MaskError::MoreThanOneKeySource
            | MaskError::KeyCommandFailed(_)
            | MaskError::ReplicaRole { .. }
            | MaskError::Unflushed => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            // Not class 22: a loader isolates a message its data makes fail, but a bad key ring
            // fails every message; like a missing key, it waits for the operator.
            MaskError::BadKeys(_) | MaskError::BadKeyFile { .. } => ERRCODE_CONFIG_FILE_ERROR,
            MaskError::Token(TokenError::Malformed) => ERRCODE_INVALID_TEXT_REPRESENTATION,
            MaskError::Token(TokenError::UnknownKey(_)) => ERRCODE_INVALID_PARAMETER_VALUE,
            MaskError::Token(TokenError::Authentication) => ERRCODE_DATA_CORRUPTED,
            MaskError::Token(TokenError::NotText) => ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            MaskError::TooLargeToMask { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            MaskError::NotUtf8 => ERRCODE_FEATURE_NOT_SUPPORTED,
            MaskError::WrongTriggerUse { .. } => ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            MaskError::BadTriggerArguments { .. } | MaskError::BadViewShape => {
                ERRCODE_INVALID_OBJECT_DEFINITION
            }
            MaskError::UnknownColumn { .. } | MaskError::MissingColumn { .. } => {
                ERRCODE_UNDEFINED_COLUMN
            }
            MaskError::NotText { .. } => ERRCODE_DATATYPE_MISMATCH,
            MaskError::TokenTooLong { .. } => ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            MaskError::MissingTable { .. } => ERRCODE_UNDEFINED_TABLE,
            MaskError::NoArbiterIndex { .. } => ERRCODE_INVALID_COLUMN_REFERENCE,
            MaskError::NullMessageId => ERRCODE_NOT_NULL_VIOLATION,
            MaskError::Refused { code, .. } => *code,
            MaskError::Spi(_) => ERRCODE_INTERNAL_ERROR,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            MaskError::Refused { code, .. } if !refused_by_the_data(*code) => None,
            MaskError::NotUtf8 => Some(
                "Create the database with ENCODING 'UTF8': in another encoding a value's bytes mean other characters, and masks and lengths would be wrong.",
            ),
            MaskError::NotPreloaded => Some(
                "Add pg_mask to shared_preload_libraries in postgresql.conf and restart the server; \
                 without it the key settings are unprotected placeholders.",
            ),
            MaskError::NoKey | MaskError::BadKeys(_) | MaskError::MoreThanOneKeySource => {
                Some(KEY_HINT)
            }
            MaskError::BadKeyFile { .. } => Some(
                "The file must hold key_id:base64_key entries, be owned by the server's OS user and have mode 0600.",
            ),
            MaskError::KeyCommandFailed(_) => Some(
                "Fix the command (the server log has its standard error), then SELECT pg_reload_conf() to run it again.",
            ),
            MaskError::Token(TokenError::UnknownKey(_)) => {
                Some("Add the retired key back to the end of the key ring to unmask old tokens.")
            }
            MaskError::TokenTooLong { .. } => {
                Some("Widen the column or use a shorter key id; see the token length formula in the README.")
            }
            MaskError::ReplicaRole { .. } => {
                Some("SET session_replication_role = origin for the load.")
            }
            MaskError::Refused { .. } => Some(
                "The feeder isolates such a message and stores it as a database_error reject; \
                 a plain COPY must leave it out.",
            ),
            _ => None,
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            MaskError::Refused { object: Some(object), .. } => Some(object.clone()),
            _ => None,
        }
    }

    /// The error an ingest target's table raised, without anything that could hold a value: the
    /// SQLSTATE, the server's own message where it names only objects, and the name of the
    /// constraint, column or table. (PostgreSQL's DETAIL, "Failing row contains (…)", would hand a
    /// loader the tokens of the values it sent.)
    pub fn refused(table: &str, caught: &Caught) -> MaskError {
        let fields = caught.fields.as_ref();
        let class = fields.map(|f| f.sqlstate_text()).unwrap_or_default();
        // Messages of these classes, from the server itself, name relations, constraints,
        // columns, functions and types, never values.
        let names_only = matches!(
            &class.get(..2),
            Some("0A" | "23" | "25" | "40" | "42" | "53" | "54" | "55" | "57" | "XX")
        ) || class == "22001";
        let reason = match fields.and_then(|f| f.message.clone()) {
            Some(m) if names_only && fields.is_some_and(|f| f.raised_by_the_server()) => m,
            _ => format!("SQLSTATE {}", if class.is_empty() { "XX000" } else { &class }),
        };
        let object = fields.and_then(|f| {
            let quoted = |kind: &str, name: &Option<String>| {
                name.as_ref().map(|n| format!("{kind} \"{}\"", n.replace('"', "")))
            };
            let from_message = || {
                f.message
                    .as_deref()
                    .filter(|_| class.starts_with("23") && f.raised_by_the_server())
                    .and_then(pg_mask_core::refusal::constraint_in_message)
            };
            quoted("constraint", &f.constraint)
                .or_else(|| quoted("constraint", &from_message()))
                .or_else(|| quoted("column", &f.column))
                .or_else(|| quoted("table", &f.table))
        });
        MaskError::Refused { code: caught.code, table: table.to_owned(), reason, object }
    }

    /// Raises this error as a PostgreSQL ERROR; never returns.
    pub fn report(self) -> ! {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), "pg_mask");
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        if let Some(detail) = self.detail() {
            report = report.set_detail(detail);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ereport(ERROR) does not return")
    }
}

/// Whether an error a table raised is about the rows (a constraint, a partition bound, a value,
/// a timeout) rather than the setup: a loader can isolate the message that caused it.
fn refused_by_the_data(code: PgSqlErrorCode) -> bool {
    use PgSqlErrorCode::*;
    let class_of = |c: PgSqlErrorCode| c as i32 & 0xfff;
    let class = class_of(code);
    [
        ERRCODE_DATA_EXCEPTION,
        ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION,
        ERRCODE_WITH_CHECK_OPTION_VIOLATION,
        ERRCODE_PROGRAM_LIMIT_EXCEEDED,
    ]
    .into_iter()
    .any(|c| class_of(c) == class)
        || code == ERRCODE_QUERY_CANCELED
}

/// `result.or_report()`: the value, or the error raised as a PostgreSQL ERROR.
pub trait OrReport<T> {
    fn or_report(self) -> T;
}

impl<T> OrReport<T> for Result<T, MaskError> {
    fn or_report(self) -> T {
        self.unwrap_or_else(|e| e.report())
    }
}
