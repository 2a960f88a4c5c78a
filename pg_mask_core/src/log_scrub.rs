//! What PostgreSQL is about to log, scrubbed of personal data and key material.
//!
//! The extension's log hook applies these to every message, detail, hint and context line the
//! server writes. Two things are scrubbed:
//! - COPY's context line (`COPY login_ingest, line 1: "…the whole row…"` or `…, column body:
//!   "…value…"`) loses the quoted row data and keeps the table, line number and column: a COPY of
//!   personal data that fails for one row must not copy that row into the server log. PostgreSQL
//!   prints no row data for binary COPY; text and CSV COPY print it for every error, whoever
//!   raised it.
//! - key-ring entries (`kid:base64key`) anywhere, with [`crate::keyring::redact_key_material`],
//!   and the value in the postmaster's `parameter "pg_mask.keys" changed to "…"` line (for
//!   `pg_mask.key_command` too, whose command line may carry a secret store's token).

use crate::keyring::redact_key_material;

/// What a scrubbed COPY context line ends with.
pub const HIDDEN: &str = " (row data hidden by pg_mask)";

/// Where the row data of a COPY line, or the value in an input error, starts: the first `: `,
/// or an opening quotation mark in translations that drop the colon.
fn data_start(line: &str) -> Option<usize> {
    [": ", "\"", "«", "»", "“", "„", "「"].iter().filter_map(|m| line.find(m)).min()
}

/// Whether an error's context says it was raised while COPY read its input.
pub fn in_copy(context: &str) -> bool {
    context.split('\n').any(|line| line.starts_with("COPY "))
}

/// `context` with the row data of its COPY line cut off, and every line after it dropped (a
/// quoted CSV field or an unterminated quote puts more input lines there); `None` if there was
/// no COPY line with data.
///
/// COPY's line starts with `COPY <table>, ` in every translation PostgreSQL ships. The lines
/// after it would be outer callers' (a PL/pgSQL function that ran `COPY … FROM 'file'`), which
/// are lost too: better than the row.
pub fn scrub_copy_context(context: &str) -> Option<String> {
    let lines: Vec<&str> = context.split('\n').collect();
    let at = lines.iter().position(|l| l.starts_with("COPY "))?;
    let line = lines[at];
    if line.ends_with(HIDDEN) && at + 1 == lines.len() {
        return None;
    }
    let kept = match data_start(line) {
        Some(cut) => format!("{}{HIDDEN}", &line[..cut]),
        None if at + 1 == lines.len() => return None,
        None => line.to_owned(),
    };
    let mut out: Vec<String> = lines[..at].iter().map(|l| (*l).to_owned()).collect();
    out.push(kept);
    Some(out.join("\n"))
}

/// An error message raised while COPY read its input, with the value it quotes cut off
/// (`invalid input syntax for type … : "…value…"`, `invalid byte sequence for encoding …: 0x…`);
/// `None` if it quotes nothing after a colon. For data exceptions (SQLSTATE class 22) only: the
/// caller checks, so that other errors keep their whole message.
pub fn scrub_copy_message(message: &str) -> Option<String> {
    let cut = message.find(": ")?;
    Some(format!("{} (value hidden by pg_mask)", &message[..cut]))
}

/// The settings whose values a log line must never show.
const SECRET_SETTINGS: [&str; 2] = ["\"pg_mask.keys\"", "\"pg_mask.key_command\""];

/// `text` with the value of a secret setting's "changed to" report hidden; `None` if it is not
/// one. The value is the last quoted part of the line, whatever the translation around it.
pub fn scrub_setting_change(text: &str) -> Option<String> {
    let name = SECRET_SETTINGS.iter().find(|n| text.contains(*n))?;
    let after_name = text.find(name)? + name.len();
    let open = text[after_name..].find('"')? + after_name;
    let close = text.rfind('"').filter(|&c| c > open)?;
    Some(format!("{}\"(hidden by pg_mask)\"{}", &text[..open], &text[close + 1..]))
}

/// `text` with key material, secret settings' values and COPY row data removed; `None` if it
/// needed none of that.
pub fn scrub(text: &str) -> Option<String> {
    let mut changed = None;
    for step in [redact_key_material, scrub_setting_change, scrub_copy_context] {
        if let Some(s) = step(changed.as_deref().unwrap_or(text)) {
            changed = Some(s);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_lines_keep_position_and_lose_data() {
        let ctx = r#"COPY login_ingest, line 1: "m1	2024-01-01	{"ip":"198.51.100.233"}""#;
        assert_eq!(
            scrub_copy_context(ctx).as_deref(),
            Some("COPY login_ingest, line 1 (row data hidden by pg_mask)")
        );
        let col = r#"COPY login_ingest, line 3, column body: "{"device_id":"593-47-5928"}""#;
        assert_eq!(
            scrub_copy_context(col).as_deref(),
            Some("COPY login_ingest, line 3, column body (row data hidden by pg_mask)")
        );
        let nested = "PL/pgSQL function f() line 3 at EXECUTE\nCOPY t, line 2: \"1.2.3.4\"\nSQL statement \"x\"";
        assert_eq!(
            scrub_copy_context(nested).as_deref(),
            Some("PL/pgSQL function f() line 3 at EXECUTE\nCOPY t, line 2 (row data hidden by pg_mask)")
        );
        let german = "COPY login_ingest, Zeile 1: »198.51.100.233«";
        assert!(!scrub_copy_context(german).unwrap_or_default().contains("198"));
    }

    #[test]
    fn multi_line_input_and_values_in_messages_are_cut() {
        let csv =
            "COPY login_ingest, line 1: \",2024-01-01,\"{\n\"\"ip\"\":\"\"198.51.100.221\"\"}\"\"";
        let out = scrub_copy_context(csv).unwrap_or_default();
        assert_eq!(out, "COPY login_ingest, line 1 (row data hidden by pg_mask)");
        assert!(in_copy(csv));
        assert_eq!(
            scrub_copy_message("invalid input syntax for type timestamp with time zone: \"{\"ip\":\"198.51.100.204\"}\"").as_deref(),
            Some("invalid input syntax for type timestamp with time zone (value hidden by pg_mask)")
        );
        assert_eq!(scrub_copy_message("missing data for column \"body\""), None);
        assert_eq!(scrub_copy_message("extra data after last expected column"), None);
    }

    #[test]
    fn lines_without_data_are_left_alone() {
        assert_eq!(scrub_copy_context("COPY login_ingest, line 1, column body"), None);
        assert_eq!(scrub_copy_context("SQL statement \"COPY t FROM STDIN\""), None);
        assert_eq!(scrub_copy_context(""), None);
        let once = scrub_copy_context("COPY t, line 1: \"x\"").unwrap_or_default();
        assert_eq!(scrub_copy_context(&once), None, "idempotent");
    }

    #[test]
    fn secret_settings_changes_hide_the_value() {
        assert_eq!(
            scrub("parameter \"pg_mask.key_command\" changed to \"vault read -field=ring secret/x token=s.abc\"").as_deref(),
            Some("parameter \"pg_mask.key_command\" changed to \"(hidden by pg_mask)\"")
        );
        assert_eq!(
            scrub_setting_change("parameter \"pg_mask.keys\" changed to \"k1:short\"").as_deref(),
            Some("parameter \"pg_mask.keys\" changed to \"(hidden by pg_mask)\"")
        );
        assert_eq!(
            scrub_setting_change("parameter \"pg_mask.key_file\" changed to \"/etc/k\""),
            None
        );
        assert_eq!(scrub_setting_change("parameter \"pg_mask.keys\" cannot be changed now"), None);
    }

    #[test]
    fn keys_and_copy_data_together() {
        let s = "COPY t, line 1: \"k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"";
        let out = scrub(s).unwrap_or_default();
        assert!(!out.contains("AAECAwQF"), "{out}");
        assert_eq!(scrub("nothing to see"), None);
        let stmt = "statement: ALTER SYSTEM SET pg_mask.keys = 'k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8='";
        assert_eq!(
            scrub(stmt).as_deref(),
            Some("statement: ALTER SYSTEM SET pg_mask.keys = 'k1:<redacted>'")
        );
    }
}
