//! Token decoding against any input: unmask, is_token and remask must never panic, must agree
//! with each other, and nothing but a real token may authenticate. Any input also masks and
//! unmasks back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pg_mask_core::KeyRing;
use std::sync::OnceLock;

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        KeyRing::parse("k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=, k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .expect("fuzz key ring")
    })
}

fuzz_target!(|data: &[u8]| {
    let ring = ring();
    let as_token = ring.is_token_bytes(data);
    let Ok(s) = std::str::from_utf8(data) else {
        assert!(!as_token, "non-UTF-8 bytes accepted as a token");
        return;
    };
    let opened = ring.unmask(s);
    assert_eq!(opened.is_ok(), ring.is_token(s));
    assert_eq!(as_token, ring.is_token(s));
    match opened {
        // Only a token made with one of the ring's keys opens; then remask is mask(unmask).
        Ok(plain) => assert_eq!(ring.remask(s).ok(), Some(ring.mask(&plain))),
        Err(_) => assert!(ring.remask(s).is_err()),
    }
    let token = ring.mask(s);
    assert!(ring.is_token(&token));
    assert_eq!(ring.unmask(&token).ok().as_deref(), Some(s));
});
