//! Validation of one SQS login-event body into the `user_logins` columns.
//!
//! Which fields exist, which column each fills and how it is stored comes from
//! [`crate::schema::FIELDS`]; this module only knows the rules. Policy, set by the real data
//! (`data/sample_messages.jsonl`):
//! - the body is one JSON object; unknown extra fields are ignored: skipped by the JSON reader
//!   without being decoded, so their nesting depth and the surrogate pairs in their strings'
//!   `\u` escapes are not checked (those in the known fields are);
//! - a required field (`user_id`) must be present and non-empty; every other field may be
//!   missing or `null`;
//! - every field that is present must be a JSON string (numbers, booleans, arrays and objects
//!   where a string belongs are rejected, not coerced);
//! - a field given twice is rejected (which one would be meant is ambiguous);
//! - lengths fit the columns: text fields in characters, masked fields in bytes (so that their
//!   tokens fit the column), as [`Limits`] says;
//! - text may not contain U+0000 (PostgreSQL text cannot hold it);
//! - a version field must encode (see [`crate::app_version`]).
//!
//! A reject's `detail` names the field and the rule, never the value: rejects are stored and
//! logged, and the value may be personal data.

use crate::app_version;
use crate::schema::{self, Kind, SqlType, FIELDS, N};
use crate::token::max_plaintext_len;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// How long a field's value may be: characters for a text field, bytes for a masked one (the
/// longest plaintext whose token still fits its column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unbounded,
    Max(usize),
    /// The column is too narrow for any token: every value is too long.
    NothingFits,
}

/// The limit of each field, in [`FIELDS`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max: [Limit; N],
}

impl Limits {
    /// Limits for columns of these widths in characters (`None`: text or unbounded varchar),
    /// with tokens made under a key id of `kid_len` characters.
    pub fn for_columns(widths: &[Option<usize>; N], kid_len: usize) -> Self {
        let mut max = [Limit::Unbounded; N];
        for (i, f) in FIELDS.iter().enumerate() {
            max[i] = match (f.kind, widths[i]) {
                (_, None) | (Kind::Version, _) => Limit::Unbounded,
                (Kind::Text, Some(w)) => Limit::Max(w),
                (Kind::Masked, Some(w)) => {
                    max_plaintext_len(kid_len, w).map_or(Limit::NothingFits, Limit::Max)
                }
            };
        }
        Limits { max }
    }

    /// The limits of the reference `user_logins` table (`sql/01_user_logins.sql`).
    pub fn reference(kid_len: usize) -> Self {
        let widths = FIELDS.map(|f| match f.sql_type {
            SqlType::Varchar(n) => Some(n),
            SqlType::Integer => None,
        });
        Self::for_columns(&widths, kid_len)
    }
}

/// One validated field value.
#[derive(Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// A text or masked field, borrowing from the body where JSON escapes allow. A masked
    /// field's value is still plaintext here: the caller masks it.
    Text(Cow<'a, str>),
    /// An encoded version.
    Int(i32),
}

impl Value<'_> {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            Value::Int(_) => None,
        }
    }

    pub fn as_int(&self) -> Option<i32> {
        match self {
            Value::Int(v) => Some(*v),
            Value::Text(_) => None,
        }
    }
}

/// A valid login event: one optional value per [`FIELDS`] entry, in that order. Its `Debug`
/// output hides the masked fields.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginEvent<'a> {
    pub values: [Option<Value<'a>>; N],
}

impl<'a> LoginEvent<'a> {
    /// The value of the field whose JSON key is `json`, as text.
    pub fn text(&self, json: &str) -> Option<&str> {
        schema::field_index(json).and_then(|i| self.values[i].as_ref()).and_then(Value::as_text)
    }

    /// The value of the field whose JSON key is `json`, as an encoded integer.
    pub fn int(&self, json: &str) -> Option<i32> {
        schema::field_index(json).and_then(|i| self.values[i].as_ref()).and_then(Value::as_int)
    }
}

impl fmt::Debug for LoginEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("LoginEvent");
        for (field, value) in FIELDS.iter().zip(&self.values) {
            match (field.kind, value) {
                (_, None) => s.field(field.json, &None::<()>),
                (Kind::Masked, Some(_)) => s.field(field.json, &"<personal data>"),
                (_, Some(Value::Text(t))) => s.field(field.json, t),
                (_, Some(Value::Int(v))) => s.field(field.json, v),
            };
        }
        s.finish()
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
    /// The database refused the message (a constraint, a partition bound, a timeout): set by the
    /// loader through the ingest view, never by this validation.
    DatabaseError,
}

impl RejectReason {
    /// Every reason, for documentation and tests.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::InvalidJson,
        RejectReason::NotAnObject,
        RejectReason::DuplicateField,
        RejectReason::MissingField,
        RejectReason::EmptyField,
        RejectReason::WrongType,
        RejectReason::TooLong,
        RejectReason::InvalidText,
        RejectReason::InvalidAppVersion,
        RejectReason::DatabaseError,
    ];

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
            RejectReason::DatabaseError => "database_error",
        }
    }

    /// The reason stored as `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: RejectReason,
    /// Human-readable: which field, what was wrong. Never contains a value.
    pub detail: String,
}

impl Reject {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
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
    let mut values: [Option<Value<'a>>; N] = Default::default();
    for (i, (spec, found)) in FIELDS.iter().zip(raw.fields).enumerate() {
        let unit = if spec.kind == Kind::Masked { Unit::Bytes } else { Unit::Chars };
        let text = text(spec.json, found, limits.max[i], unit)?;
        if spec.required {
            match &text {
                None => {
                    return Err(Reject::new(
                        RejectReason::MissingField,
                        format!("missing field {}", spec.json),
                    ))
                }
                Some(t) if t.is_empty() => {
                    return Err(Reject::new(
                        RejectReason::EmptyField,
                        format!("field {} is empty", spec.json),
                    ))
                }
                Some(_) => {}
            }
        }
        values[i] = match (spec.kind, text) {
            (_, None) => None,
            (Kind::Version, Some(v)) => Some(Value::Int(app_version::encode(&v).map_err(|e| {
                Reject::new(RejectReason::InvalidAppVersion, format!("field {}: {e}", spec.json))
            })?)),
            (_, Some(t)) => Some(Value::Text(t)),
        };
    }
    Ok(LoginEvent { values })
}

#[derive(Clone, Copy)]
enum Unit {
    Chars,
    Bytes,
}

fn text<'a>(
    name: &str,
    field: Field<'a>,
    limit: Limit,
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
    let limit = match limit {
        Limit::Unbounded => return Ok(Some(value)),
        Limit::NothingFits => {
            return Err(Reject::new(
                RejectReason::TooLong,
                format!("field {name}: its column is too narrow for any token"),
            ))
        }
        Limit::Max(limit) => limit,
    };
    let (len, unit_name) = match unit {
        // Byte length bounds the character count, so skip counting when it is already short.
        Unit::Chars if value.len() <= limit => (0, "characters"),
        Unit::Chars => (value.chars().count(), "characters"),
        Unit::Bytes => (value.len(), "bytes"),
    };
    // The detail says the limit, not the length: it is stored in clear, and a masked value's
    // length is otherwise revealed only in steps of three bytes.
    if len > limit {
        return Err(Reject::new(
            RejectReason::TooLong,
            format!("field {name} is longer than {limit} {unit_name}"),
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
    /// One slot per [`FIELDS`] entry.
    fields: [Field<'a>; N],
    /// The first known field found twice.
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
                    let Some(i) = schema::field_index(&key) else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    let (name, slot) = (FIELDS[i].json, &mut raw.fields[i]);
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

    fn limits() -> Limits {
        Limits::reference(2)
    }

    fn reject(body: &str) -> Reject {
        parse(body, &limits()).expect_err("should be rejected")
    }

    #[test]
    fn sample_message_parses_and_borrows() {
        let body = r#"{"user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae", "app_version": "2.3.0", "device_type": "android", "ip": "199.172.111.135", "locale": "RU", "device_id": "593-47-5928"}"#;
        let e = parse(body, &limits()).expect("valid");
        assert_eq!(e.text("user_id"), Some("424cdd21-063a-43a7-b91b-7ca1a833afae"));
        let ip = crate::schema::field_index("ip").expect("ip is a field");
        assert!(matches!(e.values[ip], Some(Value::Text(Cow::Borrowed("199.172.111.135")))));
        assert_eq!(e.int("app_version"), Some(2_003_000));
        assert_eq!(e.text("locale"), Some("RU"));
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
            match parse(line, &limits()) {
                Ok(_) => ok += 1,
                Err(r) => bad.push(r),
            }
        }
        assert_eq!(ok, 99);
        assert_eq!(bad, [Reject::new(RejectReason::MissingField, "missing field user_id")]);
    }

    #[test]
    fn null_and_missing_optional_fields() {
        let e = parse(r#"{"user_id":"u","locale":null}"#, &limits()).expect("valid");
        assert_eq!(e.text("locale"), None);
        assert_eq!(e.text("ip"), None);
        assert_eq!(e.int("app_version"), None);
        assert_eq!(reject(r#"{"user_id":null}"#).reason, RejectReason::MissingField);
        assert_eq!(reject(r#"{"user_id":""}"#).reason, RejectReason::EmptyField);
    }

    #[test]
    fn escapes_unicode_and_extra_fields() {
        let e = parse(
            r#"{"user_id":"a\tb\u00e9\ud83e\udd80","ip":"1.2.3.4","extra":{"deep":[1,2,{"x":null}]}}"#,
            &limits(),
        )
        .expect("valid");
        assert_eq!(e.text("user_id"), Some("a\tbé🦀"));
        let e =
            parse(r#"{"user\u005fid":"x'; DROP TABLE user_logins; --"}"#, &limits()).expect("ok");
        assert_eq!(e.text("user_id"), Some("x'; DROP TABLE user_logins; --"));
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
                parse(body, &limits()).map(|_| ()).map_err(|r| r.reason),
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
        assert_eq!(reject(&long_user).detail, "field user_id is longer than 128 characters");
        let fits = format!(r#"{{"user_id":"{}"}}"#, "é".repeat(128));
        assert!(parse(&fits, &limits()).is_ok(), "128 two-byte characters fit varchar(128)");
        let long_ip = format!(r#"{{"user_id":"u","ip":"{}"}}"#, "1".repeat(171));
        assert_eq!(reject(&long_ip).reason, RejectReason::TooLong);
        let long_dt = format!(r#"{{"user_id":"u","device_type":"{}"}}"#, "x".repeat(33));
        assert_eq!(reject(&long_dt).reason, RejectReason::TooLong);
    }

    #[test]
    fn deep_nesting_and_huge_bodies_are_answers_not_crashes() {
        // Unknown fields are skipped without recursion, however deep.
        let deep = format!(r#"{{"user_id":"u","x":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep, &limits()).is_ok());
        let deep_ip =
            format!(r#"{{"user_id":"u","ip":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(reject(&deep_ip).reason, RejectReason::WrongType);
        let unbalanced = format!(r#"{{"user_id":"u","x":{}}}"#, "[".repeat(10_000));
        assert_eq!(reject(&unbalanced).reason, RejectReason::InvalidJson);
        assert_eq!(reject(&"[".repeat(100_000)).reason, RejectReason::InvalidJson);
        let huge = format!(r#"{{"user_id":"u","pad":"{}"}}"#, "x".repeat(256 * 1024));
        assert!(parse(&huge, &limits()).is_ok());
    }

    #[test]
    fn unknown_fields_are_skipped_not_decoded() {
        // Found by the login fuzz target, against serde_json's Value as the oracle: a lone
        // surrogate escape rejects a message only in a field the validation reads.
        assert!(parse(r#"{"user_id":"u","x":"\ud800"}"#, &limits()).is_ok());
        assert_eq!(reject(r#"{"user_id":"u","ip":"\ud800"}"#).reason, RejectReason::InvalidJson);
        assert_eq!(reject(r#"{"user_id":"u","x":"\uZZZZ"}"#).reason, RejectReason::InvalidJson);
    }

    #[test]
    fn limits_follow_the_column_widths() {
        let reference = limits();
        assert_eq!(
            reference.max[crate::schema::field_index("user_id").unwrap_or(0)],
            Limit::Max(128)
        );
        assert_eq!(reference.max[crate::schema::field_index("ip").unwrap_or(0)], Limit::Max(170));
        let mut narrow_ip = [None; N];
        narrow_ip[crate::schema::field_index("ip").unwrap_or(0)] = Some(20);
        let none_fits = Limits::for_columns(&narrow_ip, 2);
        assert_eq!(
            parse(r#"{"user_id":"u","ip":""}"#, &none_fits).map(|_| ()).map_err(|r| r.reason),
            Err(RejectReason::TooLong),
            "not even an empty value's token fits varchar(20)"
        );
        let mut widths = [None; N];
        widths[crate::schema::field_index("device_type").unwrap_or(0)] = Some(3);
        let narrow = Limits::for_columns(&widths, 2);
        assert_eq!(parse(r#"{"user_id":"u","device_type":"ios"}"#, &narrow).map(|_| ()), Ok(()));
        assert_eq!(
            parse(r#"{"user_id":"u","device_type":"android"}"#, &narrow)
                .map(|_| ())
                .map_err(|r| r.reason),
            Err(RejectReason::TooLong)
        );
        for reason in RejectReason::ALL {
            assert_eq!(RejectReason::from_name(reason.as_str()), Some(reason));
        }
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
