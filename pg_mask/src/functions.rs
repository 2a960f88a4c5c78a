//! The SQL functions: `mask_pii`, `unmask_pii`, `is_masked`, `remask`, `generate_mask_key` and
//! `mask_key_ids`. Thin glue over [`pg_mask_core`]; every error goes out through
//! [`MaskError::report`].
//!
//! All depend on the key settings, so they are STABLE, not IMMUTABLE: an index or a generated
//! column over them would go stale after a key rotation.

use crate::error::{MaskError, OrReport};
use crate::keys;
use pgrx::prelude::*;

/// Masks `value` under the active key: deterministic, reversible, NULL in → NULL out.
#[pg_extern(stable, strict, parallel_safe)]
fn mask_pii(value: &str) -> String {
    keys::with_ring(|ring| ring.mask(value)).or_report()
}

/// Recovers the original of a token. EXECUTE is revoked from PUBLIC by the extension script.
#[pg_extern(stable, strict, parallel_safe)]
fn unmask_pii(masked: &str) -> String {
    let ring = keys::current_ring().or_report();
    ring.unmask(masked).map_err(MaskError::from).or_report()
}

/// True only for a token that authenticates under one of the configured keys.
#[pg_extern(stable, strict, parallel_safe)]
fn is_masked(value: &str) -> bool {
    keys::with_ring(|ring| ring.is_token(value)).or_report()
}

/// Re-encrypts a token under the active key, for key rotation.
#[pg_extern(stable, strict, parallel_safe)]
fn remask(masked: &str) -> String {
    let ring = keys::current_ring().or_report();
    ring.remask(masked).map_err(MaskError::from).or_report()
}

/// A new random key entry `key_id:base64key`, to paste into pg_mask.keys or a key file.
#[pg_extern(volatile, strict, parallel_safe)]
fn generate_mask_key(key_id: default!(&str, "'k1'")) -> String {
    pg_mask_core::keyring::generate_entry(key_id).map_err(MaskError::BadKeys).or_report()
}

/// The configured key ids, the active one first. Superuser-only (revoked from PUBLIC); shows ids,
/// never keys. Useful to confirm a reload took effect.
#[pg_extern(stable, parallel_safe)]
fn mask_key_ids() -> Vec<String> {
    keys::with_ring(|ring| ring.key_ids().map(str::to_owned).collect()).or_report()
}

extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION unmask_pii(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION mask_key_ids() FROM PUBLIC;
COMMENT ON FUNCTION mask_pii(text) IS 'Deterministic, reversible AES-256-GCM-SIV mask: pm1.<key id>.<base64url>';
COMMENT ON FUNCTION unmask_pii(text) IS 'Original value of a pg_mask token; GRANT EXECUTE to the roles allowed to see PII';
"#,
    name = "privileges",
    finalize,
);
