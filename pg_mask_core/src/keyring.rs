//! The key ring: one active key that masks, older keys that still unmask.
//!
//! Configuration syntax (the same in `pg_mask.keys` and in a key file): entries `kid:key`
//! separated by commas or newlines, `#` starts a comment, blank entries are ignored. `kid` is
//! 1–16 characters of `[A-Za-z0-9_-]`; `key` is 32 bytes in standard or URL-safe base64. The
//! first entry is the active key.
//!
//! This module owns the parsed keys and their cipher instances (the AES key schedule is done
//! once here, not per call). It must never reveal key bytes: `KeyRing`'s `Debug` lists key ids
//! only, and errors point at entry numbers and key ids. Key bytes are wiped as soon as the
//! ciphers hold them, and the ciphers wipe their round keys when a ring is dropped (the `aes`
//! and `polyval` crates' `zeroize` feature). [`redact_key_material`] finds key entries in any
//! text, so that what PostgreSQL logs can be scrubbed of them.

use crate::siv::FixedNonceSiv;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// Length of an AES-256 key.
pub const KEY_BYTES: usize = 32;
/// Longest key id; short ids keep tokens short (each id character is one token character).
pub const MAX_KEY_ID_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("no key is configured")]
    Empty,
    #[error("entry {entry}: expected `key_id:base64_key`")]
    MissingSeparator { entry: usize },
    #[error("entry {entry}: key id must be 1-{MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 _ -")]
    BadKeyId { entry: usize },
    #[error("entry {entry} (key id \"{kid}\"): key is not valid base64")]
    BadBase64 { entry: usize, kid: String },
    #[error("entry {entry} (key id \"{kid}\"): key must be {KEY_BYTES} bytes, found {len}")]
    BadLength { entry: usize, kid: String, len: usize },
    #[error("key id \"{kid}\" appears more than once")]
    DuplicateKeyId { kid: String },
    #[error("the AES-256-GCM-SIV self-test failed; refusing to mask")]
    SelfTest,
    #[error("the operating system's random number generator failed")]
    Random,
}

/// One key: its id and its ready cipher (keys derived, associated data `pm1.<kid>` absorbed).
pub(crate) struct Key {
    pub(crate) id: String,
    pub(crate) cipher: FixedNonceSiv,
}

/// Parsed key ring. The first key is the active one.
pub struct KeyRing {
    keys: Vec<Key>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids only: key bytes never leave this module.
        f.debug_struct("KeyRing").field("key_ids", &self.key_ids().collect::<Vec<_>>()).finish()
    }
}

pub fn is_valid_key_id(kid: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&kid.len())
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl KeyRing {
    /// Parses a key ring specification. An empty specification is [`KeyRingError::Empty`].
    pub fn parse(spec: &str) -> Result<Self, KeyRingError> {
        let mut keys: Vec<Key> = Vec::new();
        let entries = spec
            .lines()
            .map(|line| line.split('#').next().unwrap_or(""))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let entry_no = index + 1;
            let (kid, b64) =
                entry.split_once(':').ok_or(KeyRingError::MissingSeparator { entry: entry_no })?;
            let (kid, b64) = (kid.trim(), b64.trim());
            if !is_valid_key_id(kid) {
                return Err(KeyRingError::BadKeyId { entry: entry_no });
            }
            let bytes = decode_key(b64)
                .ok_or_else(|| KeyRingError::BadBase64 { entry: entry_no, kid: kid.to_owned() })?;
            let bytes = Zeroizing::new(bytes);
            if bytes.len() != KEY_BYTES {
                return Err(KeyRingError::BadLength {
                    entry: entry_no,
                    kid: kid.to_owned(),
                    len: bytes.len(),
                });
            }
            if keys.iter().any(|k| k.id == kid) {
                return Err(KeyRingError::DuplicateKeyId { kid: kid.to_owned() });
            }
            let mut key: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
                KeyRingError::BadLength { entry: entry_no, kid: kid.to_owned(), len: bytes.len() }
            })?;
            let aad = crate::token::associated_data(kid);
            let cipher = FixedNonceSiv::new(&key, crate::token::NONCE, aad.as_bytes());
            key.zeroize();
            let cipher = cipher.ok_or(KeyRingError::SelfTest)?;
            keys.push(Key { id: kid.to_owned(), cipher });
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// The key that masks.
    pub(crate) fn active(&self) -> &Key {
        // `parse` refuses an empty ring, so there is always a first key.
        &self.keys[0]
    }

    pub fn active_key_id(&self) -> &str {
        &self.active().id
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    pub(crate) fn find(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == kid)
    }
}

fn decode_key(b64: &str) -> Option<Vec<u8>> {
    [&STANDARD, &URL_SAFE, &URL_SAFE_NO_PAD].iter().find_map(|engine| engine.decode(b64).ok())
}

/// A fresh random key entry `kid:base64key`, ready to paste into `pg_mask.keys` or a key file.
pub fn generate_entry(kid: &str) -> Result<String, KeyRingError> {
    if !is_valid_key_id(kid) {
        return Err(KeyRingError::BadKeyId { entry: 1 });
    }
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    getrandom::getrandom(key.as_mut()).map_err(|_| KeyRingError::Random)?;
    Ok(format!("{kid}:{}", STANDARD.encode(key.as_ref())))
}

/// Base64 characters of a 32-byte key without padding (standard or URL-safe alphabet).
const KEY_B64_CHARS: usize = 43;

/// `text` with the key of every key-ring entry in it (`kid:base64key`, whitespace allowed
/// around the colon, as the parser allows) replaced by `<redacted>`; `None` if it holds none.
/// For scrubbing what the server logs (a statement, a "parameter changed" line) of keys an
/// operator typed where they should not have.
pub fn redact_key_material(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let is_id = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'_' | b'-');
    // The length of the whitespace ending or starting at `at`, if any: a whitespace character,
    // or a backslash escape of one as an `E'…'` string in a logged statement spells it.
    let escape = |s: &str| ["\\t", "\\n", "\\r", "\\f", "\\v"].contains(&s);
    let space_before = |at: usize| {
        let before = &text[..at];
        if before.len() >= 2 && before.is_char_boundary(at - 2) && escape(&before[at - 2..]) {
            return Some(2);
        }
        before.chars().next_back().filter(|c| c.is_whitespace()).map(char::len_utf8)
    };
    let space_after = |at: usize| {
        let after = &text[at..];
        if after.len() >= 2 && after.is_char_boundary(2) && escape(&after[..2]) {
            return Some(2);
        }
        after.chars().next().filter(|c| c.is_whitespace()).map(char::len_utf8)
    };
    let mut out = String::new();
    let mut copied = 0;
    for colon in b.iter().enumerate().filter(|(_, &c)| c == b':').map(|(i, _)| i) {
        if colon < copied {
            continue;
        }
        let mut id_end = colon;
        while let Some(n) = space_before(id_end) {
            id_end -= n;
        }
        if id_end == 0 || !is_id(b[id_end - 1]) {
            continue;
        }
        let mut start = colon + 1;
        while let Some(n) = space_after(start) {
            start += n;
        }
        let run = b[start..].iter().take_while(|&&c| is_b64(c)).count();
        if run != KEY_B64_CHARS {
            continue;
        }
        let mut end = start + run;
        if b.get(end) == Some(&b'=') {
            end += 1;
        }
        // Byte offsets next to ASCII characters are character boundaries.
        out.push_str(&text[copied..start]);
        out.push_str("<redacted>");
        copied = end;
    }
    (copied > 0).then(|| {
        out.push_str(&text[copied..]);
        out
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K0: &str = "k0:HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

    #[test]
    fn first_entry_is_active() {
        let ring = KeyRing::parse(&format!("{K1}, {K0}")).expect("valid ring");
        assert_eq!(ring.active_key_id(), "k1");
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), ["k1", "k0"]);
    }

    #[test]
    fn newlines_and_comments() {
        let ring = KeyRing::parse(&format!("# rotated 2026-11\n{K1}\n\n{K0} # old\n")).expect("ok");
        assert_eq!(ring.key_ids().count(), 2);
    }

    #[test]
    fn errors_point_at_the_entry_without_key_material() {
        assert_eq!(KeyRing::parse("").unwrap_err(), KeyRingError::Empty);
        assert_eq!(KeyRing::parse(" # nothing").unwrap_err(), KeyRingError::Empty);
        assert_eq!(
            KeyRing::parse("justakey").unwrap_err(),
            KeyRingError::MissingSeparator { entry: 1 }
        );
        assert_eq!(
            KeyRing::parse(&format!("{K1},bad id:AAAA")).unwrap_err(),
            KeyRingError::BadKeyId { entry: 2 }
        );
        let err = KeyRing::parse("k1:not*base64!").unwrap_err();
        assert!(matches!(err, KeyRingError::BadBase64 { entry: 1, .. }));
        assert!(!err.to_string().contains("not*base64"));
        let short = KeyRing::parse("k1:AAECAwQ=").unwrap_err();
        assert_eq!(short, KeyRingError::BadLength { entry: 1, kid: "k1".into(), len: 5 });
        assert!(!short.to_string().contains("AAECAwQ"));
        assert!(matches!(
            KeyRing::parse(&format!("{K1},{K1}")).unwrap_err(),
            KeyRingError::DuplicateKeyId { .. }
        ));
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let ring = KeyRing::parse(K1).expect("ok");
        let shown = format!("{ring:?}");
        assert!(shown.contains("k1"));
        assert!(!shown.contains("AAECAwQF"));
    }

    #[test]
    fn key_material_is_found_and_redacted_anywhere() {
        let line = format!("ALTER SYSTEM SET pg_mask.keys = '{K1}, {K0}'");
        let redacted = redact_key_material(&line).expect("found");
        assert_eq!(redacted, "ALTER SYSTEM SET pg_mask.keys = 'k1:<redacted>, k0:<redacted>'");
        let spaced = "keys: k2 : HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
        assert_eq!(redact_key_material(spaced).as_deref(), Some("keys: k2 : <redacted>"));
        let tabbed = "E'k1:\tHxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE='::int";
        assert_eq!(redact_key_material(tabbed).as_deref(), Some("E'k1:\t<redacted>'::int"));
        let escaped = r"SELECT E'k1:\tHxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE='::int";
        assert_eq!(
            redact_key_material(escaped).as_deref(),
            Some(r"SELECT E'k1:\t<redacted>'::int")
        );
        let nbsp = "k1\u{a0}:\u{a0}HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE";
        assert!(!redact_key_material(nbsp).unwrap_or_default().contains("HxweH"));
        let url_safe = "k3:HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE";
        assert_eq!(redact_key_material(url_safe).as_deref(), Some("k3:<redacted>"));
        for clean in [
            "",
            "parameter \"pg_mask.keys\" cannot be changed now",
            "a:b",
            "12:30:45",
            "pm1.k1.Mf10RWUpNagzbi-m6rWBqA-P8KOhPRLj_sNmDLTExA",
        ] {
            assert_eq!(redact_key_material(clean), None, "{clean}");
        }
        let generated = generate_entry("k9").expect("ok");
        assert_eq!(redact_key_material(&generated).as_deref(), Some("k9:<redacted>"));
    }

    #[test]
    fn generated_entries_parse_and_differ() {
        let a = generate_entry("k9").expect("ok");
        let b = generate_entry("k9").expect("ok");
        assert_ne!(a, b);
        assert_eq!(KeyRing::parse(&a).expect("parses").active_key_id(), "k9");
        assert!(generate_entry("bad id").is_err());
    }
}
