//! What a PostgreSQL error means for the feeder: its [`Class`] by SQLSTATE, the
//! `database_error` a reject records, and a one-line explanation that never carries data.
//!
//! Classes (by SQLSTATE, never by message text):
//! - transient: no SQLSTATE (I/O, connection lost), 08 connection, 40001 serialization,
//!   40P01 deadlock, 53 resources, 57P01-57P03 shutdown/starting, 55P03 lock timeout, 55000
//!   and F0 (pg_mask has no key, or its key setting or file is invalid: messages wait in the
//!   queue for the operator rather than become rejects), 58 system;
//! - fatal: 0A feature not supported (pg_mask in a database that is not UTF8), 28
//!   credentials, 3D no database, 42 schema or privilege; a TLS certificate the feeder cannot
//!   trust;
//! - permanent for the rows: 22 data, 23 integrity, 44 check option, 54 program limit, 57014
//!   statement timeout, P0001 a trigger's RAISE;
//! - anything else: unclassified, retried a few times, then isolated like a permanent one.

use crate::store::Class;
use tokio_postgres::error::DbError;

pub fn class_of(e: &tokio_postgres::Error) -> Class {
    let Some(code) = e.code() else {
        if crate::tls::verification_failure(e).is_some() {
            return Class::Fatal;
        }
        return Class::Transient;
    };
    class_by_code(code.code())
}

fn class_by_code(code: &str) -> Class {
    match code {
        "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "55P03" | "55000" => Class::Transient,
        "57014" | "P0001" => Class::Permanent,
        _ => match code.get(..2).unwrap_or("") {
            "08" | "53" | "58" | "F0" => Class::Transient,
            "0A" | "28" | "3D" | "42" => Class::Fatal,
            "22" | "23" | "44" | "54" => Class::Permanent,
            _ => Class::Unclassified(code.to_owned()),
        },
    }
}

/// `SQLSTATE`, or `SQLSTATE constraint "name"` (or `column`, `table`): from the error's
/// fields when the server filled them, else from a DETAIL that starts with that pattern
/// (pg_mask's errors carry the name there). Nothing else of the message or the DETAIL: those
/// may quote the row ("Failing row contains …").
pub fn database_error(db: &DbError) -> String {
    let code = db.code().code();
    let named = db
        .constraint()
        .map(|n| ("constraint", n.to_owned()))
        .or_else(|| db.column().map(|n| ("column", n.to_owned())))
        .or_else(|| db.table().map(|n| ("table", n.to_owned())))
        .filter(|(_, n)| plausible_name(n))
        .or_else(|| db.detail().and_then(name_in_detail));
    match named {
        Some((kind, name)) => format!("{code} {kind} {}", quote(&name)),
        None => code.to_owned(),
    }
}

/// A `constraint "x"`, `column "x"` or `table "x"` at the start of a DETAIL (`""` inside the
/// quotes is one `"`, as in SQL).
fn name_in_detail(detail: &str) -> Option<(&'static str, String)> {
    let (kind, rest) = ["constraint", "column", "table"]
        .into_iter()
        .find_map(|k| detail.strip_prefix(k).and_then(|r| r.strip_prefix(" \"")).map(|r| (k, r)))?;
    let mut name = String::new();
    let mut chars = rest.chars();
    loop {
        match chars.next()? {
            '"' => {
                if chars.as_str().starts_with('"') {
                    chars.next();
                    name.push('"');
                } else {
                    break;
                }
            }
            c => name.push(c),
        }
    }
    plausible_name(&name).then_some((kind, name))
}

/// An identifier PostgreSQL could have made: 1-63 bytes (NAMEDATALEN - 1), no control
/// characters.
fn plausible_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && !name.chars().any(char::is_control)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One line for the log: the server's message for errors about the setup (credentials,
/// schema, resources), but only the SQLSTATE and the named object for errors about the rows,
/// whose message can quote a value (a trigger's RAISE, a type's input error).
pub fn explain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match class_of(e) {
            Class::Permanent | Class::Unclassified(_) => {
                format!("the database refused the rows (SQLSTATE {})", database_error(db))
            }
            _ => match db.hint() {
                Some(hint) => format!("{} ({hint}; SQLSTATE {})", db.message(), db.code().code()),
                None => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
            },
        };
    }
    if let Some(cause) = crate::tls::verification_failure(e) {
        return cause;
    }
    if crate::tls::refused_by_server(e) {
        return "TLS: the server did not take up the TLS that sslmode requires (ssl = off on the \
                server, a Unix socket, or a server that could not start a session); the feeder \
                does not connect without it"
            .to_owned();
    }
    // The I/O cause, instead of tokio-postgres's bare "error connecting to server".
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_only_from_the_start_of_the_detail() {
        assert_eq!(
            name_in_detail(r#"constraint "user_logins_locale_check""#),
            Some(("constraint", "user_logins_locale_check".to_owned()))
        );
        assert_eq!(name_in_detail(r#"column "a""b" is too long"#), Some(("column", "a\"b".into())));
        assert_eq!(name_in_detail(r#"table "t""#), Some(("table", "t".into())));
        assert_eq!(name_in_detail(r#"Failing row contains (constraint "x")."#), None);
        assert_eq!(name_in_detail(r#"constraint "unterminated"#), None);
        assert_eq!(name_in_detail(&format!("constraint \"{}\"", "x".repeat(64))), None);
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn pg_mask_key_problems_wait_and_a_wrong_database_stops() {
        let class = |code: &str| class_by_code(code);
        // No key (55000) or an invalid key ring (F0000): every message would fail, so none
        // may be isolated into a reject; they wait for the operator.
        assert_eq!(class("55000"), Class::Transient);
        assert_eq!(class("F0000"), Class::Transient);
        assert_eq!(class("0A000"), Class::Fatal);
        assert_eq!(class("23514"), Class::Permanent);
        assert_eq!(class("XX000"), Class::Unclassified("XX000".into()));
    }
}
