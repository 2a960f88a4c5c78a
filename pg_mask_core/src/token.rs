//! The masked-token format and the deterministic cipher behind it.
//!
//! A token is `pm1.<kid>.<data>` where `data` is URL-safe base64 without padding of the
//! AES-256-GCM-SIV ciphertext followed by its 16-byte tag. The nonce is fixed (all zero), which
//! makes the scheme a deterministic AEAD (RFC 8452 §9): equal plaintexts under one key give equal
//! tokens, and nothing else is revealed but the length. The associated data is `pm1.<kid>`, so a
//! token cannot be relabelled to another key id or version.
//!
//! Length: `5 + len(kid) + ceil(4 * (n + 16) / 3)` characters for an `n`-byte plaintext; a
//! 15-character IPv4 address under key id `k1` is 49 characters.
//!
//! Errors never contain the token's plaintext or key material.

use crate::keyring::{Key, KeyRing};
use aes_gcm_siv::aead::{Aead, Payload};
use aes_gcm_siv::Nonce;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Version prefix of every token this crate writes.
pub const PREFIX: &str = "pm1";
const TAG_BYTES: usize = 16;
/// The fixed nonce that makes AES-GCM-SIV deterministic (see the module comment).
const NONCE: [u8; 12] = [0; 12];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a pg_mask token (expected pm1.<key id>.<data>)")]
    Malformed,
    #[error("token was masked with key id \"{0}\", which is not in the key ring")]
    UnknownKey(String),
    #[error("token failed authentication: it was altered, truncated or masked with another key")]
    Authentication,
    #[error("unmasked value is not valid UTF-8 text")]
    NotText,
}

/// Characters in the token of an `plaintext_len`-byte value under a `kid_len`-character key id.
pub const fn token_len(kid_len: usize, plaintext_len: usize) -> usize {
    PREFIX.len() + 1 + kid_len + 1 + (4 * (plaintext_len + TAG_BYTES)).div_ceil(3)
}

/// Longest plaintext, in bytes, whose token fits in `max_token_chars` under a key id of
/// `kid_len` characters (0 if none fits).
pub const fn max_plaintext_len(kid_len: usize, max_token_chars: usize) -> usize {
    let overhead = PREFIX.len() + 2 + kid_len;
    if max_token_chars <= overhead {
        return 0;
    }
    let data_bytes = (max_token_chars - overhead) * 3 / 4;
    data_bytes.saturating_sub(TAG_BYTES)
}

/// The parts of a token, borrowed from it; `data` is still base64.
struct Parts<'a> {
    kid: &'a str,
    aad: &'a str,
    data: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, TokenError> {
    let rest = token
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_prefix('.'))
        .ok_or(TokenError::Malformed)?;
    let (kid, data) = rest.split_once('.').ok_or(TokenError::Malformed)?;
    if !crate::keyring::is_valid_key_id(kid) || data.len() < (4 * TAG_BYTES).div_ceil(3) {
        return Err(TokenError::Malformed);
    }
    let aad = &token[..PREFIX.len() + 1 + kid.len()];
    Ok(Parts { kid, aad, data })
}

impl KeyRing {
    /// Masks `plaintext` under the active key.
    pub fn mask(&self, plaintext: &str) -> String {
        seal(self.active(), plaintext.as_bytes())
    }

    /// Recovers the plaintext of a token masked under any key in the ring.
    pub fn unmask(&self, token: &str) -> Result<String, TokenError> {
        let bytes = self.open(token)?;
        String::from_utf8(bytes).map_err(|_| TokenError::NotText)
    }

    /// True only for a token that authenticates under a key of the ring.
    pub fn is_token(&self, value: &str) -> bool {
        // Cheap rejection of ordinary values before any decoding.
        value.starts_with("pm1.") && self.open(value).is_ok()
    }

    /// Re-encrypts a token under the active key (a no-op for tokens already under it).
    pub fn remask(&self, token: &str) -> Result<String, TokenError> {
        let parts = split(token)?;
        let bytes = self.open(token)?;
        if parts.kid == self.active_key_id() {
            return Ok(token.to_owned());
        }
        Ok(seal(self.active(), &bytes))
    }

    fn open(&self, token: &str) -> Result<Vec<u8>, TokenError> {
        let parts = split(token)?;
        let key = self.find(parts.kid).ok_or_else(|| TokenError::UnknownKey(parts.kid.to_owned()))?;
        let sealed = URL_SAFE_NO_PAD.decode(parts.data).map_err(|_| TokenError::Malformed)?;
        key.cipher
            .decrypt(Nonce::from_slice(&NONCE), Payload { msg: &sealed, aad: parts.aad.as_bytes() })
            .map_err(|_| TokenError::Authentication)
    }
}

fn seal(key: &Key, plaintext: &[u8]) -> String {
    let aad = format!("{PREFIX}.{}", key.id);
    let sealed = key
        .cipher
        .encrypt(Nonce::from_slice(&NONCE), Payload { msg: plaintext, aad: aad.as_bytes() })
        // aes-gcm-siv only fails for plaintexts over 2^36 bytes; PostgreSQL values stop at 1 GB.
        .unwrap_or_default();
    let mut token = String::with_capacity(token_len(key.id.len(), plaintext.len()));
    token.push_str(&aad);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&sealed, &mut token);
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
    const K1_OTHER: &str = "k1:HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

    fn ring(spec: &str) -> KeyRing {
        KeyRing::parse(spec).expect("test key ring parses")
    }

    #[test]
    fn round_trip_and_determinism() {
        let r = ring(K1);
        for value in ["199.172.111.135", "", "ünïcødé 🦀 ∑", "593-47-5928", &"x".repeat(10_000)] {
            let t = r.mask(value);
            assert_eq!(t, r.mask(value), "deterministic");
            assert_eq!(t.len(), token_len(2, value.len()), "length formula");
            assert!(t.starts_with("pm1.k1."));
            assert_eq!(r.unmask(&t).expect("unmasks"), value);
            assert!(r.is_token(&t));
            assert!(!t.contains(value) || value.is_empty());
        }
    }

    #[test]
    fn ipv4_token_is_short() {
        let t = ring(K1).mask("199.172.111.135");
        assert_eq!(t.len(), 49);
        assert!(max_plaintext_len(2, 256) >= 170);
        assert!(token_len(2, max_plaintext_len(2, 256)) <= 256);
        assert!(token_len(2, max_plaintext_len(2, 256) + 1) > 256);
        assert_eq!(max_plaintext_len(2, 10), 0);
    }

    #[test]
    fn different_keys_different_tokens() {
        assert_ne!(ring(K1).mask("1.2.3.4"), ring(K1_OTHER).mask("1.2.3.4"));
        assert_ne!(ring(K1).mask("1.2.3.4"), ring(K1).mask("1.2.3.5"));
    }

    #[test]
    fn tampering_and_truncation_are_detected() {
        let r = ring(K1);
        let t = r.mask("199.172.111.135");
        // Flip each data character in turn.
        let data_start = "pm1.k1.".len();
        for i in data_start..t.len() {
            let mut bytes = t.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).expect("ascii");
            assert!(r.unmask(&tampered).is_err(), "tampered at {i}");
            assert!(!r.is_token(&tampered));
        }
        for cut in 0..t.len() {
            assert!(r.unmask(&t[..cut]).is_err(), "truncated at {cut}");
        }
        assert_eq!(r.unmask("hello"), Err(TokenError::Malformed));
        assert_eq!(r.unmask("pm1.k1.!!!!!!!!!!!!!!!!!!!!!!!!!!"), Err(TokenError::Malformed));
    }

    #[test]
    fn foreign_and_unknown_keys() {
        let t = ring(K1_OTHER).mask("1.2.3.4");
        assert_eq!(ring(K1).unmask(&t), Err(TokenError::Authentication));
        let t2 = ring(K2).mask("1.2.3.4");
        assert_eq!(ring(K1).unmask(&t2), Err(TokenError::UnknownKey("k2".into())));
        // Relabelling a token to another key id breaks authentication.
        let relabelled = t2.replacen("pm1.k2.", "pm1.k1.", 1);
        assert_eq!(ring(&format!("{K1},{K2}")).unmask(&relabelled), Err(TokenError::Authentication));
    }

    #[test]
    fn errors_do_not_leak_plaintext() {
        let t = ring(K1).mask("secret-value");
        let err = ring(K1_OTHER).unmask(&t).unwrap_err().to_string();
        assert!(!err.contains("secret"));
    }

    #[test]
    fn rotation() {
        let old = ring(K1);
        let new = ring(&format!("{K2},{K1}"));
        let old_token = old.mask("10.0.0.1");
        assert_eq!(new.unmask(&old_token).expect("old tokens still unmask"), "10.0.0.1");
        let moved = new.remask(&old_token).expect("remask");
        assert!(moved.starts_with("pm1.k2."));
        assert_eq!(moved, new.mask("10.0.0.1"));
        assert_eq!(new.remask(&moved).expect("idempotent"), moved);
        assert!(old.unmask(&moved).is_err());
    }
}
