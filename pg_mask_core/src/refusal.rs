//! A loader's report that the database refused a message: the `database_error` column of the
//! ingest view.
//!
//! When a batch fails with an error that will repeat (a constraint the message violates, a
//! partition bound, a statement timeout), the loader isolates the message and sends it again
//! with `database_error` set, and the ingest stores it as a `database_error` reject instead of
//! loading it. The text is `SQLSTATE` alone or `SQLSTATE kind "name"` (kind `constraint`,
//! `column` or `table`), e.g. `23514 constraint "user_logins_locale_check"`.
//!
//! The reject's detail is stored in clear, so it is rebuilt from the parsed parts, never copied:
//! anything that does not parse becomes a fixed text, and a value a careless loader put there
//! cannot reach the table.

/// What the database refused a message with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The five-character SQLSTATE; `None` when the report did not parse.
    pub sqlstate: Option<String>,
    /// `("constraint", name)`, `("column", name)` or `("table", name)`.
    pub object: Option<(&'static str, String)>,
}

/// Longest SQL identifier PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_NAME: usize = 63;
const KINDS: [&str; 3] = ["constraint", "column", "table"];

impl Refusal {
    /// Parses a report; never fails (an unparsable report gives a refusal without parts).
    pub fn parse(report: &str) -> Refusal {
        Self::try_parse(report.trim()).unwrap_or(Refusal { sqlstate: None, object: None })
    }

    fn try_parse(report: &str) -> Option<Refusal> {
        let (code, rest) = match report.split_once(' ') {
            Some((code, rest)) => (code, Some(rest.trim())),
            None => (report, None),
        };
        if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) {
            return None;
        }
        let object = match rest {
            None | Some("") => None,
            Some(rest) => {
                let (kind, name) = rest.split_once(' ')?;
                let kind = KINDS.into_iter().find(|k| *k == kind)?;
                let name = name.trim().strip_prefix('"')?.strip_suffix('"')?;
                // An identifier as PostgreSQL writes one unquoted: a value (an IP, a device id)
                // cannot pass for one by accident.
                let plain = |c: char| c.is_alphanumeric() || c == '_';
                let starts_well = name.starts_with(|c: char| c.is_alphabetic() || c == '_');
                if !starts_well || name.len() > MAX_NAME || !name.chars().all(plain) {
                    return None;
                }
                Some((kind, name.to_owned()))
            }
        };
        Some(Refusal { sqlstate: Some(code.to_owned()), object })
    }

    /// The reject's detail, built only from the parsed parts.
    pub fn detail(&self) -> String {
        match (&self.sqlstate, &self.object) {
            (None, _) => "the database refused the message (the loader's report was not in the \
                          form SQLSTATE [constraint|column|table \"name\"])"
                .to_owned(),
            (Some(code), None) => format!("the database refused the message: SQLSTATE {code}"),
            (Some(code), Some((kind, name))) => {
                format!("the database refused the message: SQLSTATE {code}, {kind} \"{name}\"")
            }
        }
    }
}

/// The constraint an integrity error's message names, when the error itself lost the field:
/// Citus relays a shard's error with its message only. PostgreSQL quotes the constraint last
/// (`… violates check constraint "name"`); a shard's name carries the shard id after an
/// underscore, as the relation's does, and the logical name is returned without it.
pub fn constraint_in_message(message: &str) -> Option<String> {
    let quoted: Vec<&str> = message.split('"').skip(1).step_by(2).collect();
    let name = *quoted.last()?;
    if !message.contains("constraint") || quoted.len() < 2 || name.is_empty() {
        return None;
    }
    let shard_suffix = |s: &str| {
        s.rsplit_once('_')
            .filter(|(_, id)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .map(|(_, id)| id.to_owned())
    };
    let relation = quoted[0];
    Some(match (shard_suffix(relation), shard_suffix(name)) {
        (Some(a), Some(b)) if a == b => name[..name.len() - b.len() - 1].to_owned(),
        _ => name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse_into_their_parts() {
        let r = Refusal::parse(r#"23514 constraint "user_logins_locale_check""#);
        assert_eq!(r.sqlstate.as_deref(), Some("23514"));
        assert_eq!(r.object, Some(("constraint", "user_logins_locale_check".to_owned())));
        assert_eq!(
            r.detail(),
            r#"the database refused the message: SQLSTATE 23514, constraint "user_logins_locale_check""#
        );
        assert_eq!(
            Refusal::parse("57014").detail(),
            "the database refused the message: SQLSTATE 57014"
        );
    }

    #[test]
    fn a_relayed_shard_error_names_the_logical_constraint() {
        let citus = r#"new row for relation "user_logins_102017" violates check constraint "no_web_102017""#;
        assert_eq!(constraint_in_message(citus).as_deref(), Some("no_web"));
        let plain = r#"new row for relation "user_logins" violates check constraint "check_2024""#;
        assert_eq!(constraint_in_message(plain).as_deref(), Some("check_2024"));
        let unique =
            r#"duplicate key value violates unique constraint "user_logins_message_id_key""#;
        assert_eq!(constraint_in_message(unique), None, "one quoted name: nothing to compare");
        assert_eq!(constraint_in_message("value too long for type character varying(32)"), None);
    }

    #[test]
    fn anything_else_never_reaches_the_detail() {
        for bad in [
            "",
            "2351",
            "23514x",
            r#"23514 constraint "199.172.111.135""#,
            r#"23514 value "secret""#,
            r#"23514 constraint "a b""#,
            r#"23514 constraint unquoted"#,
            r#"23514 column "593-47-5928""#,
            r#"23514 column "5934759""#,
            "ip=199.172.111.135",
        ] {
            let r = Refusal::parse(bad);
            assert!(r.sqlstate.is_none() || r.object.is_none(), "{bad}");
            assert!(!r.detail().contains("199") && !r.detail().contains("593"), "{bad}");
            assert!(!r.detail().contains("secret"), "{bad}");
        }
    }
}
