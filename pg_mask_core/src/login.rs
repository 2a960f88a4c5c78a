//! Validation of one SQS login-event body into the `user_logins` columns.
//!
//! Policy, set by the real data (`data/sample_messages.jsonl`):
//! - the body is one JSON object; unknown extra fields are ignored: skipped by the JSON reader
//!   without being decoded, so their nesting depth and the surrogate pairs in their strings'
//!   `\u` escapes are not checked (those in the known fields are);
//! - `user_id` is required and non-empty; every other field may be missing or `null`;
//! - every field that is present must be a JSON string (numbers, booleans, arrays and objects
//!   where a string belongs are rejected, not coerced);
//! - a field given twice is rejected (which one would be meant is ambiguous);
//! - lengths fit the columns: `user_id` 128, `device_type` 32, `locale` 32 characters; `ip` and
//!   `device_id` at most the caller's limit in bytes (so that their tokens fit `varchar(256)`);
//! - text may not contain U+0000 (PostgreSQL text cannot hold it);
//! - `app_version` must encode (see [`crate::app_version`]).
//!
//! A reject's `detail` names the field and the rule, never the value: rejects are stored and
//! logged, and the value may be personal data.

use crate::app_version;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// Column limits the validation enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub user_id_chars: usize,
    pub device_type_chars: usize,
    pub locale_chars: usize,
    /// Longest `ip` / `device_id` in bytes whose token still fits its column.
    pub masked_bytes: usize,
}

impl Limits {
    /// The reference `user_logins` table, with the masked-value limit supplied by the caller.
    pub const fn user_logins(masked_bytes: usize) -> Self {
        Limits { user_id_chars: 128, device_type_chars: 32, locale_chars: 32, masked_bytes }
    }
}

/// A valid login event, borrowing from the body where JSON escapes allow. Its `Debug` output
/// hides `ip` and `device_id`.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginEvent<'a> {
    pub user_id: Cow<'a, str>,
    pub device_type: Option<Cow<'a, str>>,
    pub ip: Option<Cow<'a, str>>,
    pub locale: Option<Cow<'a, str>>,
    pub device_id: Option<Cow<'a, str>>,
    pub app_version: Option<i32>,
}

impl std::fmt::Debug for LoginEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<Cow<'_, str>>| v.as_ref().map(|_| "<personal data>");
        f.debug_struct("LoginEvent")
            .field("user_id", &self.user_id)
            .field("device_type", &self.device_type)
            .field("ip", &hidden(&self.ip))
            .field("locale", &self.locale)
            .field("device_id", &hidden(&self.device_id))
            .field("app_version", &self.app_version)
            .finish()
    }
}

/// Why a body cannot become a row. The string forms are stored in the rejects table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    InvalidJson,
    NotAnObject,
    DuplicateField,
    MissingField,
    EmptyField,
    WrongType,
    TooLong,
    InvalidText,
    InvalidAppVersion,
}

impl RejectReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::DuplicateField => "duplicate_field",
            RejectReason::MissingField => "missing_field",
            RejectReason::EmptyField => "empty_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::TooLong => "too_long",
            RejectReason::InvalidText => "invalid_text",
            RejectReason::InvalidAppVersion => "invalid_app_version",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: RejectReason,
    /// Human-readable: which field, what was wrong. Never contains a value.
    pub detail: String,
}

impl Reject {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Reject { reason, detail: detail.into() }
    }
}

/// Parses and validates one message body.
pub fn parse<'a>(body: &'a str, limits: &Limits) -> Result<LoginEvent<'a>, Reject> {
    let raw = match serde_json::from_str::<Top<'_>>(body) {
        Ok(Top::Object(raw)) => raw,
        Ok(Top::Other(kind)) => {
            return Err(Reject::new(
                RejectReason::NotAnObject,
                format!("body is a JSON {kind}, expected an object"),
            ))
        }
        // serde_json's syntax messages are fixed texts plus a position, never input text.
        Err(e) => return Err(Reject::new(RejectReason::InvalidJson, format!("invalid JSON: {e}"))),
    };
    if let Some(field) = raw.duplicate {
        return Err(Reject::new(
            RejectReason::DuplicateField,
            format!("field {field} appears more than once"),
        ));
    }
    let user_id = text("user_id", raw.user_id, limits.user_id_chars, Unit::Chars)?
        .ok_or_else(|| Reject::new(RejectReason::MissingField, "missing field user_id"))?;
    if user_id.is_empty() {
        return Err(Reject::new(RejectReason::EmptyField, "field user_id is empty"));
    }
    let app_version = match text("app_version", raw.app_version, usize::MAX, Unit::Chars)? {
        None => None,
        Some(v) => Some(app_version::encode(&v).map_err(|e| {
            Reject::new(RejectReason::InvalidAppVersion, format!("field app_version: {e}"))
        })?),
    };
    Ok(LoginEvent {
        user_id,
        device_type: text("device_type", raw.device_type, limits.device_type_chars, Unit::Chars)?,
        ip: text("ip", raw.ip, limits.masked_bytes, Unit::Bytes)?,
        locale: text("locale", raw.locale, limits.locale_chars, Unit::Chars)?,
        device_id: text("device_id", raw.device_id, limits.masked_bytes, Unit::Bytes)?,
        app_version,
    })
}

#[derive(Clone, Copy)]
enum Unit {
    Chars,
    Bytes,
}

fn text<'a>(
    name: &str,
    field: Field<'a>,
    limit: usize,
    unit: Unit,
) -> Result<Option<Cow<'a, str>>, Reject> {
    let value = match field {
        Field::Missing | Field::Null => return Ok(None),
        Field::Other(kind) => {
            return Err(Reject::new(
                RejectReason::WrongType,
                format!("field {name}: expected a string, got {kind}"),
            ))
        }
        Field::Text(value) => value,
    };
    if value.contains('\0') {
        return Err(Reject::new(
            RejectReason::InvalidText,
            format!("field {name} contains U+0000, which PostgreSQL text cannot store"),
        ));
    }
    let (len, unit_name) = match unit {
        // Byte length bounds the character count, so skip counting when it is already short.
        Unit::Chars if value.len() <= limit => (0, "characters"),
        Unit::Chars => (value.chars().count(), "characters"),
        Unit::Bytes => (value.len(), "bytes"),
    };
    if len > limit {
        return Err(Reject::new(
            RejectReason::TooLong,
            format!("field {name} is {len} {unit_name}, limit {limit}"),
        ));
    }
    Ok(Some(value))
}

/// One field as found in the body (no `Debug`: it holds raw values).
#[derive(Default)]
enum Field<'a> {
    #[default]
    Missing,
    Null,
    Text(Cow<'a, str>),
    /// Present with a non-string JSON type, named here.
    Other(&'static str),
}

#[derive(Default)]
struct RawLogin<'a> {
    user_id: Field<'a>,
    app_version: Field<'a>,
    device_type: Field<'a>,
    ip: Field<'a>,
    locale: Field<'a>,
    device_id: Field<'a>,
    duplicate: Option<&'static str>,
}

enum Top<'a> {
    Object(RawLogin<'a>),
    Other(&'static str),
}

/// A string that borrows from the input when it has no escapes (serde's own `Cow<str>` always
/// allocates).
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Field::Other("boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Field::Other("number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Field::Other("number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Field::Other("number"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other("array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Other("object"))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut raw = RawLogin::default();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let (name, slot): (&'static str, &mut Field<'de>) = match key.as_ref() {
                        "user_id" => ("user_id", &mut raw.user_id),
                        "app_version" => ("app_version", &mut raw.app_version),
                        "device_type" => ("device_type", &mut raw.device_type),
                        "ip" => ("ip", &mut raw.ip),
                        "locale" => ("locale", &mut raw.locale),
                        "device_id" => ("device_id", &mut raw.device_id),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let value = map.next_value::<Field<'de>>()?;
                    if matches!(slot, Field::Missing) {
                        *slot = value;
                    } else if raw.duplicate.is_none() {
                        raw.duplicate = Some(name);
                    }
                }
                Ok(Top::Object(raw))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Top::Other("array"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Top::Other("string"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Top::Other("boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Top::Other("number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Top::Other("number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Top::Other("number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Top::Other("null"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits::user_logins(170);

    fn reject(body: &str) -> Reject {
        parse(body, &LIMITS).expect_err("should be rejected")
    }

    #[test]
    fn sample_message_parses_and_borrows() {
        let body = r#"{"user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae", "app_version": "2.3.0", "device_type": "android", "ip": "199.172.111.135", "locale": "RU", "device_id": "593-47-5928"}"#;
        let e = parse(body, &LIMITS).expect("valid");
        assert_eq!(e.user_id, "424cdd21-063a-43a7-b91b-7ca1a833afae");
        assert!(matches!(e.ip, Some(Cow::Borrowed("199.172.111.135"))));
        assert_eq!(e.app_version, Some(2_003_000));
        assert_eq!(e.locale.as_deref(), Some("RU"));
        let shown = format!("{e:?}");
        assert!(
            !shown.contains("199.172") && !shown.contains("593-47"),
            "Debug hides personal data: {shown}"
        );
    }

    #[test]
    fn every_sample_line_has_its_expected_outcome() {
        let data = include_str!("../../data/sample_messages.jsonl");
        let (mut ok, mut bad) = (0, Vec::new());
        for line in data.lines() {
            match parse(line, &LIMITS) {
                Ok(_) => ok += 1,
                Err(r) => bad.push(r),
            }
        }
        assert_eq!(ok, 99);
        assert_eq!(bad, [Reject::new(RejectReason::MissingField, "missing field user_id")]);
    }

    #[test]
    fn null_and_missing_optional_fields() {
        let e = parse(r#"{"user_id":"u","locale":null}"#, &LIMITS).expect("valid");
        assert_eq!(e.locale, None);
        assert_eq!(e.ip, None);
        assert_eq!(e.app_version, None);
        assert_eq!(reject(r#"{"user_id":null}"#).reason, RejectReason::MissingField);
        assert_eq!(reject(r#"{"user_id":""}"#).reason, RejectReason::EmptyField);
    }

    #[test]
    fn escapes_unicode_and_extra_fields() {
        let e = parse(
            r#"{"user_id":"a\tb\u00e9\ud83e\udd80","ip":"1.2.3.4","extra":{"deep":[1,2,{"x":null}]}}"#,
            &LIMITS,
        )
        .expect("valid");
        assert_eq!(e.user_id, "a\tbé🦀");
        let e = parse(r#"{"user\u005fid":"x'; DROP TABLE user_logins; --"}"#, &LIMITS).expect("ok");
        assert_eq!(e.user_id, "x'; DROP TABLE user_logins; --");
    }

    #[test]
    fn each_bad_shape_has_a_precise_reason() {
        let cases = [
            ("", RejectReason::InvalidJson),
            ("{", RejectReason::InvalidJson),
            ("not json", RejectReason::InvalidJson),
            (r#"{"user_id":"a"} trailing"#, RejectReason::InvalidJson),
            ("{\"user_id\":\"a\u{1}\"}", RejectReason::InvalidJson),
            ("[1,2]", RejectReason::NotAnObject),
            ("\"str\"", RejectReason::NotAnObject),
            ("42", RejectReason::NotAnObject),
            ("null", RejectReason::NotAnObject),
            (r#"{"user_id":"a","ip":"1","ip":"2"}"#, RejectReason::DuplicateField),
            (r#"{"user_id":"a","user_id":"a"}"#, RejectReason::DuplicateField),
            (r#"{"user_id":42}"#, RejectReason::WrongType),
            (r#"{"user_id":"a","ip":[1]}"#, RejectReason::WrongType),
            (r#"{"user_id":"a","app_version":2.3}"#, RejectReason::WrongType),
            (r#"{"user_id":"a","locale":true}"#, RejectReason::WrongType),
            (r#"{"user_id":"a","device_id":{}}"#, RejectReason::WrongType),
            (r#"{"user_id":"a\u0000b"}"#, RejectReason::InvalidText),
            (r#"{"user_id":"a","app_version":"1.2.3.4"}"#, RejectReason::InvalidAppVersion),
            (r#"{"user_id":"a","app_version":"1000.1"}"#, RejectReason::InvalidAppVersion),
        ];
        for (body, reason) in cases {
            assert_eq!(
                parse(body, &LIMITS).map(|_| ()).map_err(|r| r.reason),
                Err(reason),
                "{body:?}"
            );
        }
        assert_eq!(
            reject(r#"{"user_id":5}"#).detail,
            "field user_id: expected a string, got number"
        );
    }

    #[test]
    fn lengths_fit_the_columns() {
        let long_user = format!(r#"{{"user_id":"{}"}}"#, "é".repeat(129));
        assert_eq!(reject(&long_user).detail, "field user_id is 129 characters, limit 128");
        let fits = format!(r#"{{"user_id":"{}"}}"#, "é".repeat(128));
        assert!(parse(&fits, &LIMITS).is_ok(), "128 two-byte characters fit varchar(128)");
        let long_ip = format!(r#"{{"user_id":"u","ip":"{}"}}"#, "1".repeat(171));
        assert_eq!(reject(&long_ip).reason, RejectReason::TooLong);
        let long_dt = format!(r#"{{"user_id":"u","device_type":"{}"}}"#, "x".repeat(33));
        assert_eq!(reject(&long_dt).reason, RejectReason::TooLong);
    }

    #[test]
    fn deep_nesting_and_huge_bodies_are_answers_not_crashes() {
        // Unknown fields are skipped without recursion, however deep.
        let deep = format!(r#"{{"user_id":"u","x":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep, &LIMITS).is_ok());
        let deep_ip =
            format!(r#"{{"user_id":"u","ip":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(reject(&deep_ip).reason, RejectReason::WrongType);
        let unbalanced = format!(r#"{{"user_id":"u","x":{}}}"#, "[".repeat(10_000));
        assert_eq!(reject(&unbalanced).reason, RejectReason::InvalidJson);
        assert_eq!(reject(&"[".repeat(100_000)).reason, RejectReason::InvalidJson);
        let huge = format!(r#"{{"user_id":"u","pad":"{}"}}"#, "x".repeat(256 * 1024));
        assert!(parse(&huge, &LIMITS).is_ok());
    }

    #[test]
    fn unknown_fields_are_skipped_not_decoded() {
        // Found by the login fuzz target, against serde_json's Value as the oracle: a lone
        // surrogate escape rejects a message only in a field the validation reads.
        assert!(parse(r#"{"user_id":"u","x":"\ud800"}"#, &LIMITS).is_ok());
        assert_eq!(reject(r#"{"user_id":"u","ip":"\ud800"}"#).reason, RejectReason::InvalidJson);
        assert_eq!(reject(r#"{"user_id":"u","x":"\uZZZZ"}"#).reason, RejectReason::InvalidJson);
    }

    #[test]
    fn details_never_contain_values() {
        for body in [
            r#"{"user_id":"u","ip":["199.1.1.1"]}"#,
            r#"{"user_id":"u","ip":"199.1.1.1","ip":"199.1.1.1"}"#,
            r#"{"user_id":"u","app_version":"199.1.1.1"}"#,
            r#"{"user_id":"199.1.1.1", "#,
        ] {
            assert!(!reject(body).detail.contains("199"), "{body}");
        }
    }
}
