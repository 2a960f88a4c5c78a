//! Login validation against any body, with serde_json's own reading as the oracle: a body is
//! accepted only if it is a JSON object whose fields say exactly what the event holds; a body
//! that is not JSON is an `invalid_json` reject; and a reject's detail never repeats a value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_mask_core::login::{self, Limits, RejectReason};
use pg_mask_core::schema::{Kind, FIELDS};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    let limits = Limits::reference(2);
    let parsed = login::parse(body, &limits);
    let oracle = serde_json::from_str::<Value>(body);
    // Where serde_json's Value is stricter than the grammar or than the validation means to be,
    // its error is no evidence either way: a number beyond f64 (`1e10000`), which the validation
    // only ever skips or calls a number; and nesting deeper than 128 or a lone surrogate escape,
    // which the validation refuses in the fields it reads but skips in unknown fields.
    const NOT_EVIDENCE: [&str; 5] = [
        "number out of range",
        "recursion limit exceeded",
        "lone leading surrogate in hex escape",
        "unexpected end of hex escape",
        "invalid unicode code point",
    ];
    if matches!(&oracle, Err(e) if NOT_EVIDENCE.iter().any(|m| e.to_string().starts_with(m))) {
        return;
    }
    match (&parsed, &oracle) {
        (Ok(event), Ok(Value::Object(fields))) => {
            let text = |name: &str| match fields.get(name) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_str()),
                Some(other) => panic!("{name} accepted as text: {other}"),
            };
            let user_id = event.text("user_id").expect("user_id is required");
            assert!(!user_id.is_empty() && user_id.chars().count() <= 128);
            for field in FIELDS {
                match field.kind {
                    Kind::Version => {
                        let version = text(field.json).map(|v| {
                            pg_mask_core::app_version::encode(v).expect("accepted version encodes")
                        });
                        assert_eq!(version, event.int(field.json));
                    }
                    kind => {
                        assert_eq!(text(field.json), event.text(field.json));
                        if let (Kind::Masked, Some(v)) = (kind, event.text(field.json)) {
                            assert!(v.len() <= 170 && !v.contains('\0'));
                        }
                    }
                }
            }
        }
        (Ok(_), Ok(other)) => panic!("a JSON {other} accepted as an event"),
        (Ok(_), Err(e)) => panic!("accepted a body serde_json rejects: {e}"),
        (Err(reject), Err(_)) => assert_eq!(reject.reason, RejectReason::InvalidJson),
        (Err(reject), Ok(value)) => {
            assert_ne!(reject.reason, RejectReason::InvalidJson, "valid JSON called invalid");
            // Rejects are stored and logged: the detail names fields and rules, never values.
            if let Value::Object(fields) = value {
                // Details are fixed texts of letters, digits and `_:,.+-`; a value with any
                // other character cannot appear in one by coincidence.
                let telling = |v: &&str| {
                    v.len() >= 6
                        && v.chars().any(|c| !c.is_ascii_alphanumeric() && !" _:,.+-".contains(c))
                };
                for v in fields.values().filter_map(Value::as_str).filter(telling) {
                    assert!(!reject.detail.contains(v), "a reject detail repeats a value");
                }
            }
        }
    }
});
