//! Property-based fuzzing of everything that reads untrusted input: token decoding (unmask,
//! is_token, remask) and login-event validation. They must never panic, and must only accept
//! what they should. Longer runs: `PROPTEST_CASES=200000 cargo test -p pg_mask_core --test fuzz`.
//! Coverage-guided fuzzing of the same code, with stronger oracles: `pg_mask_core/fuzz/` (`make
//! fuzz`).

use pg_mask_core::login::{self, Limits};
use pg_mask_core::KeyRing;
use proptest::prelude::*;

fn ring() -> KeyRing {
    KeyRing::parse("k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=, k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .expect("test ring")
}

/// Strings that look like tokens: the right prefix and key ids, base64url-ish data.
fn tokenish() -> impl Strategy<Value = String> {
    ("pm1\\.(k1|k2|zz|)\\.[A-Za-z0-9_-]{0,80}", any::<bool>()).prop_map(|(s, dot)| {
        if dot {
            format!("{s}.")
        } else {
            s
        }
    })
}

proptest! {
    #[test]
    fn token_decoding_never_panics_and_rejects_garbage(s in prop_oneof![tokenish(), any::<String>()]) {
        let r = ring();
        let opened = r.unmask(&s);
        prop_assert_eq!(opened.is_ok(), r.is_token(&s));
        prop_assert_eq!(r.is_token_bytes(s.as_bytes()), r.is_token(&s));
        // A random string authenticating would mean the tag check is broken.
        prop_assert!(opened.is_err());
        prop_assert!(r.remask(&s).is_err());
    }

    #[test]
    fn mutated_tokens_never_authenticate(v in ".{0,64}", pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let r = ring();
        let t = r.mask(&v);
        let mut bytes = t.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        if let Ok(m) = String::from_utf8(bytes) {
            prop_assert!(r.unmask(&m).is_err(), "mutated token still opened");
        }
        prop_assert_eq!(r.unmask(&t).ok(), Some(v));
    }

    #[test]
    fn validation_never_panics_on_any_string(body in any::<String>()) {
        let _ = login::parse(&body, &Limits::reference(2));
    }

    #[test]
    fn validation_never_panics_on_json_like_input(
        body in r#"\{("(user_id|ip|locale|device_id|app_version|device_type|x)": ?(null|true|[0-9.e-]{1,8}|"[^"\\]{0,12}"|\[\]|\{\}), ?){0,8}\}?"#
    ) {
        if let Ok(e) = login::parse(&body, &Limits::reference(2)) {
            let user_id = e.text("user_id").unwrap_or_default();
            prop_assert!(!user_id.is_empty());
            prop_assert!(user_id.chars().count() <= 128);
        }
    }
}
