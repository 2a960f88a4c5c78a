//! `app_version` encoding: `"major.minor[.patch]"` → `major*1_000_000 + minor*1_000 + patch`.
//!
//! The target column is `integer`, and the source sends strings such as `"2.3.0"`, `"0.96"` and
//! `"9.10"`. Each part is 1–3 ASCII digits (0–999), so integer order is version order:
//! `"2.3.0"` → 2003000, `"0.96"` → 96000, `"9.10"` → 9010000, `"2.00"` → 2000000.
//! The inverse is [`decode`] (and the SQL function `app_version_text`).

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("app_version must be major.minor or major.minor.patch, each part 0-999")]
pub struct AppVersionError;

pub fn encode(version: &str) -> Result<i32, AppVersionError> {
    let mut parts = [0i32; 3];
    let mut count = 0;
    for part in version.split('.') {
        if count == 3
            || part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(AppVersionError);
        }
        parts[count] = part.parse::<i32>().map_err(|_| AppVersionError)?;
        count += 1;
    }
    if count < 2 {
        return Err(AppVersionError);
    }
    Ok(parts[0] * 1_000_000 + parts[1] * 1_000 + parts[2])
}

/// `2003000` → `"2.3.0"`; `None` for values no version encodes to.
pub fn decode(code: i32) -> Option<String> {
    if !(0..=999_999_999).contains(&code) {
        return None;
    }
    Some(format!("{}.{}.{}", code / 1_000_000, code / 1_000 % 1_000, code % 1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_from_the_data() {
        assert_eq!(encode("2.3.0"), Ok(2_003_000));
        assert_eq!(encode("0.96"), Ok(96_000));
        assert_eq!(encode("9.10"), Ok(9_010_000));
        assert_eq!(encode("2.00"), Ok(2_000_000));
        assert_eq!(encode("999.999.999"), Ok(999_999_999));
        assert_eq!(decode(2_003_000).as_deref(), Some("2.3.0"));
        assert_eq!(decode(96_000).as_deref(), Some("0.96.0"));
        assert_eq!(decode(-1), None);
    }

    #[test]
    fn order_is_version_order() {
        // Ascending by version; the codes must ascend too.
        let codes =
            ["0.2.6", "0.96", "2.3.0", "9.9", "9.10", "10.0"].map(|s| encode(s).expect("ok"));
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "{codes:?}");
    }

    #[test]
    fn rejects_what_does_not_fit() {
        for bad in [
            "", "2", "1.2.3.4", "1000.0", "1..2", "1.-2", "+1.2", " 1.2", "1.2 ", "a.b", "1.2.",
            "١.٢",
        ] {
            assert_eq!(encode(bad), Err(AppVersionError), "{bad:?}");
        }
    }
}
