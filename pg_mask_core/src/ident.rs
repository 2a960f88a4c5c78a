//! SQL identifiers as PostgreSQL reads them in a qualified name (`schema.table`): unquoted parts
//! are folded to lower case, quoted parts keep their case and may hold dots and `""` for a
//! quote, and each part is cut to 63 bytes (NAMEDATALEN - 1) on a character boundary.
//!
//! The ingest path resolves the table names in its trigger's arguments with this, in a schema it
//! chooses, instead of asking PostgreSQL to look them up through the caller's `search_path`.

const MAX_BYTES: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("an empty name")]
    Empty,
    #[error("an unterminated quoted name")]
    Unterminated,
    #[error("a character that needs quoting outside quotes")]
    Unexpected,
}

/// The parts of a possibly qualified name.
pub fn split_qualified(name: &str) -> Result<Vec<String>, IdentError> {
    let mut parts = Vec::new();
    let mut chars = name.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(IdentError::Unterminated),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return Err(IdentError::Unexpected);
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(IdentError::Empty);
        }
        parts.push(truncate(part));
        match chars.next() {
            None => return Ok(parts),
            Some('.') => {}
            Some(_) => return Err(IdentError::Unexpected),
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_BYTES {
        let mut end = MAX_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_fold_and_unquote_as_postgresql_does() {
        assert_eq!(split_qualified("user_logins"), Ok(vec!["user_logins".to_owned()]));
        assert_eq!(
            split_qualified("Public.User_Logins"),
            Ok(vec!["public".into(), "user_logins".into()])
        );
        assert_eq!(
            split_qualified(r#""My Schema"."a.b""c""#),
            Ok(vec!["My Schema".into(), "a.b\"c".into()])
        );
        assert_eq!(split_qualified(&"x".repeat(70)).map(|p| p[0].len()), Ok(63));
        assert_eq!(split_qualified(""), Err(IdentError::Empty));
        assert_eq!(split_qualified("a..b"), Err(IdentError::Empty));
        assert_eq!(split_qualified("\"open"), Err(IdentError::Unterminated));
        assert_eq!(split_qualified("a b"), Err(IdentError::Unexpected));
        assert_eq!(
            split_qualified("pg_temp.user_logins"),
            Ok(vec!["pg_temp".into(), "user_logins".into()])
        );
    }
}
