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
//! The cipher is [`crate::siv`], which is RFC 8452 AES-256-GCM-SIV with the per-nonce keys
//! derived once; any RFC 8452 implementation (e.g. the `aes-gcm-siv` crate) with nonce 0 and
//! associated data `pm1.<kid>` opens these tokens.
//!
//! Errors never contain the token's plaintext or key material.

use crate::keyring::{Key, KeyRing};
use crate::siv::TAG_BYTES;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Version prefix of every token this crate writes.
pub const PREFIX: &str = "pm1";
/// The fixed nonce that makes AES-GCM-SIV deterministic (see the module comment).
pub(crate) const NONCE: [u8; 12] = [0; 12];

/// The associated data bound into every token of key `kid`: `pm1.<kid>`.
pub(crate) fn associated_data(kid: &str) -> String {
    format!("{PREFIX}.{kid}")
}

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
/// `kid_len` characters; `None` if not even an empty value's token fits.
pub const fn max_plaintext_len(kid_len: usize, max_token_chars: usize) -> Option<usize> {
    let overhead = PREFIX.len() + 2 + kid_len;
    if max_token_chars <= overhead {
        return None;
    }
    let data_bytes = (max_token_chars - overhead) * 3 / 4;
    if data_bytes < TAG_BYTES {
        None
    } else {
        Some(data_bytes - TAG_BYTES)
    }
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
        let mut out = vec![0u8; self.mask_len(plaintext.len())];
        self.mask_into(plaintext.as_bytes(), &mut out);
        // The token is ASCII by construction (prefix, key id and base64url).
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the token of `plaintext` to `out`: the ingest keeps a row's values in one
    /// `String`, and a token per field would otherwise be an allocation of its own.
    pub fn mask_append(&self, plaintext: &str, out: &mut String) {
        let key = self.active();
        out.reserve(self.mask_len(plaintext.len()));
        out.push_str(PREFIX);
        out.push('.');
        out.push_str(&key.id);
        out.push('.');
        with_sealed(key, plaintext.as_bytes(), |sealed| URL_SAFE_NO_PAD.encode_string(sealed, out));
    }

    /// Length of the token of an `n`-byte plaintext under the active key.
    pub fn mask_len(&self, n: usize) -> usize {
        token_len(self.active().id.len(), n)
    }

    /// Writes the token of `plaintext` into `out`, which must be exactly
    /// [`mask_len`](Self::mask_len)`(plaintext.len())` bytes (so a caller can write straight
    /// into a PostgreSQL text value without an intermediate `String`).
    pub fn mask_into(&self, plaintext: &[u8], out: &mut [u8]) {
        seal_into(self.active(), plaintext, out)
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

    /// [`is_token`](Self::is_token) for raw bytes (PostgreSQL text without a UTF-8 check).
    pub fn is_token_bytes(&self, value: &[u8]) -> bool {
        value.starts_with(b"pm1.") && std::str::from_utf8(value).is_ok_and(|v| self.open(v).is_ok())
    }

    /// Re-encrypts a token under the active key (a no-op for tokens already under it).
    pub fn remask(&self, token: &str) -> Result<String, TokenError> {
        let parts = split(token)?;
        let bytes = self.open(token)?;
        if parts.kid == self.active_key_id() {
            return Ok(token.to_owned());
        }
        let mut out = vec![0u8; self.mask_len(bytes.len())];
        self.mask_into(&bytes, &mut out);
        String::from_utf8(out).map_err(|_| TokenError::Malformed)
    }

    fn open(&self, token: &str) -> Result<Vec<u8>, TokenError> {
        let parts = split(token)?;
        let key =
            self.find(parts.kid).ok_or_else(|| TokenError::UnknownKey(parts.kid.to_owned()))?;
        // The key's cipher has `pm1.<kid>` bound in; `parts.aad` is that same text.
        debug_assert_eq!(parts.aad, associated_data(&key.id));
        let mut sealed = URL_SAFE_NO_PAD.decode(parts.data).map_err(|_| TokenError::Malformed)?;
        let split_at = sealed.len().checked_sub(TAG_BYTES).ok_or(TokenError::Malformed)?;
        let tag: [u8; TAG_BYTES] =
            sealed[split_at..].try_into().map_err(|_| TokenError::Malformed)?;
        sealed.truncate(split_at);
        key.cipher.decrypt_in_place(&mut sealed, &tag).map_err(|_| TokenError::Authentication)?;
        Ok(sealed)
    }
}

/// Plaintexts up to this size are sealed in a stack buffer (IPs, device ids); longer ones on the heap.
const STACK_SEAL: usize = 240;

/// Calls `f` with `plaintext` sealed under `key` (ciphertext then tag), on the stack when it is
/// small.
fn with_sealed<R>(key: &Key, plaintext: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    let mut stack = [0u8; STACK_SEAL + TAG_BYTES];
    let mut heap = Vec::new();
    let sealed: &mut [u8] = if plaintext.len() <= STACK_SEAL {
        &mut stack[..plaintext.len() + TAG_BYTES]
    } else {
        heap.resize(plaintext.len() + TAG_BYTES, 0);
        &mut heap
    };
    let (body, tag_out) = sealed.split_at_mut(plaintext.len());
    body.copy_from_slice(plaintext);
    tag_out.copy_from_slice(&key.cipher.encrypt_in_place(body));
    f(sealed)
}

fn seal_into(key: &Key, plaintext: &[u8], out: &mut [u8]) {
    let head = PREFIX.len() + 1 + key.id.len() + 1;
    out[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
    out[PREFIX.len()] = b'.';
    out[PREFIX.len() + 1..head - 1].copy_from_slice(key.id.as_bytes());
    out[head - 1] = b'.';
    // `out` is sized by token_len, which is exactly the unpadded base64 length.
    with_sealed(key, plaintext, |sealed| {
        let _ = URL_SAFE_NO_PAD.encode_slice(sealed, &mut out[head..]);
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
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
        for value in ["199.172.111.135", "", "ünïcødé 🦀 ∑", "593-47-5928", &"x".repeat(10_000)]
        {
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
    fn mask_append_appends_the_same_token() {
        let r = ring(K1);
        let mut out = String::from("id-");
        for value in ["199.172.111.135", "", &"y".repeat(5_000)] {
            let start = out.len();
            r.mask_append(value, &mut out);
            assert_eq!(&out[start..], r.mask(value));
        }
        assert!(out.starts_with("id-pm1.k1."));
    }

    #[test]
    fn ipv4_token_is_short() {
        let t = ring(K1).mask("199.172.111.135");
        assert_eq!(t.len(), 49);
        let fits = max_plaintext_len(2, 256).unwrap_or(0);
        assert!(fits >= 170);
        assert!(token_len(2, fits) <= 256);
        assert!(token_len(2, fits + 1) > 256);
        assert_eq!(max_plaintext_len(2, 10), None);
        // An empty value's token under `k1` is 29 characters: nothing fits in 28, "" in 29.
        assert_eq!(max_plaintext_len(2, 28), None);
        assert_eq!(max_plaintext_len(2, 29), Some(0));
        assert_eq!(token_len(2, 0), 29);
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
        assert_eq!(
            ring(&format!("{K1},{K2}")).unmask(&relabelled),
            Err(TokenError::Authentication)
        );
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
