-- pg_mask 0.1.0 -> 0.2.0 (ALTER EXTENSION pg_mask UPDATE).
--
-- Every function keeps its name and signature, and the 0.2.0 library serves both versions, so
-- nothing is dropped and nothing is re-created: tables, their mask_columns triggers, the ingest
-- view's triggers and every stored token stay as they are.
--
-- What changes is who may call what. In 0.1.0 any role could turn a plaintext of its choice
-- into its token (mask_pii, or a TEMP table with a mask_columns trigger, or a TEMP view with the
-- ingest triggers): a dictionary oracle. 0.2.0 revokes those from PUBLIC; grants made to named
-- roles are kept (README: "Who can learn what").
REVOKE EXECUTE ON FUNCTION mask_pii(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION unmask_pii(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION remask(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION mask_key_ids() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION mask_columns() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ingest_login_events() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ingest_flush() FROM PUBLIC;
COMMENT ON FUNCTION mask_pii(text) IS 'Deterministic, reversible AES-256-GCM-SIV mask: pm1.<key id>.<base64url>. A lookup right: GRANT EXECUTE only to roles that may find rows by a known value';
COMMENT ON FUNCTION remask(text) IS 'Re-encrypts a pg_mask token under the active key (key rotation); for the table owner';
