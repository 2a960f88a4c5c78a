//! pg_mask's error type: one variant per thing that can go wrong, each with its SQLSTATE, a
//! one-line message that says what to fix, and a hint where one helps.
//!
//! Messages name settings, key ids, tables and columns, never key material or a value being
//! masked or unmasked: they reach clients and the server log.

use pg_mask_core::{KeyRingError, TokenError};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

const KEY_HINT: &str =
    "Set pg_mask.keys (or pg_mask.key_file) in postgresql.conf or with ALTER SYSTEM, \
then SELECT pg_reload_conf(). SELECT generate_mask_key('k1') makes a key.";

#[derive(Debug, Clone, thiserror::Error)]
pub enum MaskError {
    #[error("pg_mask must be loaded through shared_preload_libraries")]
    NotPreloaded,
    #[error("pg_mask has no key: pg_mask.keys and pg_mask.key_file are both empty")]
    NoKey,
    #[error("pg_mask.keys and pg_mask.key_file are both set; set only one")]
    BothKeySources,
    #[error("invalid pg_mask.keys: {0}")]
    BadKeys(KeyRingError),
    #[error("invalid pg_mask.key_file \"{path}\": {problem}")]
    BadKeyFile { path: String, problem: String },
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("{0}")]
    Trigger(String),
    #[error("mask_columns: column \"{column}\" of \"{table}\" does not exist")]
    UnknownColumn { table: String, column: String },
    #[error("mask_columns: column \"{column}\" of \"{table}\" is {type_name}; only text and varchar columns can be masked")]
    NotText { table: String, column: String, type_name: String },
    #[error("mask_columns: the token for column \"{column}\" would be {len} characters, but the column allows {max}")]
    TokenTooLong { column: String, len: usize, max: usize },
    #[error("ingest: message_id must not be null")]
    NullMessageId,
    #[error("ingest: rows are buffered but were never written; the view needs an AFTER INSERT FOR EACH STATEMENT trigger that runs ingest_flush()")]
    Unflushed,
    #[error("ingest: could not write a batch: {0}")]
    Spi(String),
}

impl MaskError {
    fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            MaskError::NotPreloaded => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            MaskError::NoKey | MaskError::BothKeySources => {
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            MaskError::BadKeys(_) | MaskError::BadKeyFile { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
            MaskError::Token(TokenError::Malformed) => ERRCODE_INVALID_TEXT_REPRESENTATION,
            MaskError::Token(TokenError::UnknownKey(_)) => ERRCODE_INVALID_PARAMETER_VALUE,
            MaskError::Token(TokenError::Authentication) => ERRCODE_DATA_CORRUPTED,
            MaskError::Token(TokenError::NotText) => ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            MaskError::Trigger(_) => ERRCODE_TRIGGERED_ACTION_EXCEPTION,
            MaskError::UnknownColumn { .. } => ERRCODE_UNDEFINED_COLUMN,
            MaskError::NotText { .. } => ERRCODE_DATATYPE_MISMATCH,
            MaskError::TokenTooLong { .. } => ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            MaskError::NullMessageId => ERRCODE_NOT_NULL_VIOLATION,
            MaskError::Unflushed => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            MaskError::Spi(_) => ERRCODE_INTERNAL_ERROR,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            MaskError::NotPreloaded => Some(
                "Add pg_mask to shared_preload_libraries in postgresql.conf and restart the server; \
                 without it the key settings are unprotected placeholders.",
            ),
            MaskError::NoKey | MaskError::BadKeys(_) | MaskError::BothKeySources => Some(KEY_HINT),
            MaskError::BadKeyFile { .. } => Some(
                "The file must hold key_id:base64_key entries, be owned by the server's OS user and have mode 0600.",
            ),
            MaskError::Token(TokenError::UnknownKey(_)) => {
                Some("Add the retired key back to the end of the key ring to unmask old tokens.")
            }
            MaskError::TokenTooLong { .. } => {
                Some("Widen the column or use a shorter key id; see the token length formula in the README.")
            }
            _ => None,
        }
    }

    /// Raises this error as a PostgreSQL ERROR; never returns.
    pub fn report(self) -> ! {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), "pg_mask");
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ereport(ERROR) does not return")
    }
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
