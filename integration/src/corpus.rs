//! A corpus of hostile message bodies, each with the outcome the ingest path must give it:
//! `None` for a row, `Some(reason)` for a reject with that reason.

pub struct Case {
    pub body: String,
    pub expect: Option<&'static str>,
}

fn case(body: impl Into<String>, expect: Option<&'static str>) -> Case {
    Case { body: body.into(), expect }
}

const FIELDS: [&str; 6] = ["user_id", "app_version", "device_type", "ip", "locale", "device_id"];

fn valid_fields(i: usize) -> Vec<(&'static str, String)> {
    vec![
        ("user_id", format!("\"hostile-{i}\"")),
        ("app_version", "\"2.3.0\"".into()),
        ("device_type", "\"android\"".into()),
        ("ip", format!("\"198.18.{}.{}\"", i / 256 % 256, i % 256)),
        ("locale", "\"RU\"".into()),
        ("device_id", format!("\"999-{:02}-{:04}\"", i % 100, i % 10_000)),
    ]
}

fn object(fields: &[(&str, String)]) -> String {
    let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// At least 200 hostile bodies. `sqs_safe` leaves out what SQS itself refuses to carry (control
/// characters other than tab, LF and CR, and on fauxqs characters above the BMP).
pub fn hostile(sqs_safe: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    // Truncated JSON at every position of a valid body.
    let full = object(&valid_fields(next()));
    for cut in (0..full.len() - 1).step_by(2) {
        out.push(case(&full[..cut], Some("invalid_json")));
    }
    // Wrong JSON types in every field.
    for field in FIELDS {
        for v in ["42", "-1.5e300", "true", "false", "[]", "[\"1.2.3.4\"]", "{}", "{\"a\": 1}"] {
            let mut f = valid_fields(next());
            f.iter_mut().filter(|(k, _)| *k == field).for_each(|(_, val)| *val = v.into());
            out.push(case(object(&f), Some("wrong_type")));
        }
    }
    // Nulls and missing fields in every field: only user_id is required.
    for field in FIELDS {
        let expect = if field == "user_id" { Some("missing_field") } else { None };
        let mut f = valid_fields(next());
        f.iter_mut().filter(|(k, _)| *k == field).for_each(|(_, val)| *val = "null".into());
        out.push(case(object(&f), expect));
        let f: Vec<_> = valid_fields(next()).into_iter().filter(|(k, _)| *k != field).collect();
        out.push(case(object(&f), expect));
    }
    // Duplicated keys.
    for field in FIELDS {
        let mut f = valid_fields(next());
        let dup = f.iter().find(|(k, _)| *k == field).cloned().expect("field");
        f.push(dup);
        out.push(case(object(&f), Some("duplicate_field")));
    }
    // Lengths at and over the column limits.
    for (field, limit) in [("user_id", 128), ("device_type", 32), ("locale", 32)] {
        for (len, expect) in
            [(limit, None), (limit + 1, Some("too_long")), (10_000, Some("too_long"))]
        {
            let mut f = valid_fields(next());
            f.iter_mut()
                .filter(|(k, _)| *k == field)
                .for_each(|(_, val)| *val = format!("\"{}\"", "x".repeat(len)));
            out.push(case(object(&f), expect));
        }
    }
    for field in ["ip", "device_id"] {
        let mut f = valid_fields(next());
        f.iter_mut()
            .filter(|(k, _)| *k == field)
            .for_each(|(_, val)| *val = format!("\"{}\"", "9".repeat(300)));
        out.push(case(object(&f), Some("too_long")));
    }
    // 256 kB bodies, valid and not.
    let pad = "p".repeat(256 * 1024 - 200);
    let mut f = valid_fields(next());
    f.push(("padding", format!("\"{pad}\"")));
    out.push(case(object(&f), None));
    out.push(case(format!("{{\"user_id\": \"u\", \"padding\": \"{pad}"), Some("invalid_json")));
    // Deep nesting.
    let mut f = valid_fields(next());
    f.push(("deep", format!("{}{}", "[".repeat(5_000), "]".repeat(5_000))));
    out.push(case(object(&f), None));
    out.push(case(format!("{}{}", "[".repeat(5_000), "]".repeat(5_000)), Some("not_an_object")));
    out.push(case("[".repeat(5_000), Some("invalid_json")));
    // Control characters: raw ones are invalid JSON; escaped ones are text.
    for c in [1u8, 8, 9, 10, 13, 27, 31] {
        // SQS carries only tab, LF and CR below U+0020.
        if !sqs_safe || matches!(c, 9 | 10 | 13) {
            out.push(case(format!("{{\"user_id\": \"a{}b\"}}", c as char), Some("invalid_json")));
        }
        out.push(case(format!("{{\"user_id\": \"a\\u{c:04x}b\"}}"), None));
    }
    if !sqs_safe {
        out.push(case("{\"user_id\": \"a\\u0000b\"}", Some("invalid_text")));
    }
    // Every unicode plane.
    let planes: &[char] = if sqs_safe {
        &['é', 'Ж', '中', '\u{FFFD}', '\u{E000}']
    } else {
        &[
            'é',
            'Ж',
            '中',
            '\u{FFFD}',
            '\u{E000}',
            '🦀',
            '\u{20000}',
            '\u{30000}',
            '\u{E0001}',
            '\u{F0000}',
            '\u{10FFFD}',
        ]
    };
    for c in planes {
        out.push(case(format!("{{\"user_id\": \"plane-{c}\", \"locale\": \"{c}\"}}"), None));
    }
    out.push(case("{\"user_id\": \"\\ud800\"}", Some("invalid_json")));
    // SQL-looking and COPY-looking text.
    for s in [
        "'); DROP TABLE user_logins; --",
        "\\\\.",
        "\\\\N",
        "$$;$$",
        "E'\\\\x00'",
        "\\t\\n",
        "%s%n%x",
    ] {
        out.push(case(format!("{{\"user_id\": \"{s}\", \"ip\": \"{s}\"}}"), None));
    }
    // Bad versions, empty and odd bodies.
    for v in ["1", "1.2.3.4", "a.b", "1000.0", "-1.0", "", "1..2", " 1.2"] {
        let mut f = valid_fields(next());
        f.iter_mut()
            .filter(|(k, _)| *k == "app_version")
            .for_each(|(_, val)| *val = format!("\"{v}\""));
        out.push(case(object(&f), Some("invalid_app_version")));
    }
    for (b, e) in [
        ("", "invalid_json"),
        ("   ", "invalid_json"),
        ("\u{FEFF}{\"user_id\": \"bom\"}", "invalid_json"),
        ("null", "not_an_object"),
        ("true", "not_an_object"),
        ("123", "not_an_object"),
        ("\"just a string\"", "not_an_object"),
        ("{\"user_id\": \"\"}", "empty_field"),
        ("{\"foo\": \"oops_wrong_msg_type\", \"bar\": \"123\"}", "missing_field"),
    ] {
        if sqs_safe && b.trim().is_empty() {
            continue; // SQS refuses empty bodies itself
        }
        out.push(case(b, Some(e)));
    }
    out
}
