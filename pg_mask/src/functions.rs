//! The SQL functions: `mask_pii`, `unmask_pii`, `is_masked`, `remask`, `generate_mask_key` and
//! `mask_key_ids`. Thin glue over [`pg_mask_core`]; every error goes out through
//! [`MaskError::report`].
//!
//! All depend on the key settings, so they are STABLE, not IMMUTABLE: an index or a generated
//! column over them would go stale after a key rotation.
//!
//! Who may call what is part of the threat model (README, "Who can learn what"): a function that
//! turns a plaintext of the caller's choice into its token is a dictionary oracle, so `mask_pii`,
//! `remask` and the trigger functions are revoked from PUBLIC here and granted on purpose.

use crate::error::{MaskError, OrReport};
use crate::keys;
use pgrx::prelude::*;

/// The longest token PostgreSQL can hold: a varlena is at most 1 GB, header included.
const MAX_TOKEN_BYTES: usize = (1 << 30) - 1 - 4;

/// Refuses a value whose token (`token_len` bytes) PostgreSQL could not store, before anything
/// is allocated for it.
pub fn check_maskable(what: &'static str, bytes: usize, token_len: usize) -> Result<(), MaskError> {
    if token_len > MAX_TOKEN_BYTES {
        return Err(MaskError::TooLargeToMask { what, bytes });
    }
    Ok(())
}

/// Masks `value` under the active key: deterministic, reversible, NULL in → NULL out.
#[pg_extern(stable, strict, parallel_safe)]
fn mask_pii(value: &str) -> String {
    keys::with_ring(|ring| {
        check_maskable("the value", value.len(), ring.mask_len(value.len()))?;
        Ok(ring.mask(value))
    })
    .and_then(|r| r)
    .or_report()
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

/// A new random key entry `key_id:base64key`, to paste into a key file.
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

// A database in another encoding is refused when the extension is created (and every masking
// call checks it too, for a database created from a template that already had it).
extension_sql!(
    r#"
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() <> 'UTF8' THEN
        RAISE EXCEPTION 'pg_mask needs a database whose encoding is UTF8, not %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported';
    END IF;
END
$$;
"#,
    name = "require_utf8",
    bootstrap,
);

// The privileges of this version; pg_mask--0.1.0--0.2.0.sql applies the same to an upgraded
// installation. Functions re-declared with CREATE OR REPLACE in later update scripts keep them.
extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION mask_pii(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION unmask_pii(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION remask(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION mask_key_ids() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION mask_columns() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ingest_login_events() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ingest_flush() FROM PUBLIC;
COMMENT ON FUNCTION mask_pii(text) IS 'Deterministic, reversible AES-256-GCM-SIV mask: pm1.<key id>.<base64url>. A lookup right: GRANT EXECUTE only to roles that may find rows by a known value';
COMMENT ON FUNCTION unmask_pii(text) IS 'Original value of a pg_mask token; GRANT EXECUTE to the roles allowed to see PII';
COMMENT ON FUNCTION remask(text) IS 'Re-encrypts a pg_mask token under the active key (key rotation); for the table owner';
"#,
    name = "privileges",
    finalize,
);
