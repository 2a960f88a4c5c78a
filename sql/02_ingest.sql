-- The ingest relation. A loader does exactly
--     COPY login_ingest (message_id, sent_at, body) FROM STDIN
-- and pg_mask's triggers validate, flatten and mask each body into user_logins or
-- user_login_rejects. Nothing is stored in the view; plaintext never reaches a relation.
-- SELECT * FROM ingest_stats() in the same transaction says what the COPY did.
CREATE OR REPLACE VIEW login_ingest AS
    SELECT NULL::text AS message_id, NULL::timestamptz AS sent_at, NULL::text AS body
    WHERE false;

CREATE OR REPLACE TRIGGER login_ingest_rows
    INSTEAD OF INSERT ON login_ingest
    FOR EACH ROW EXECUTE FUNCTION ingest_login_events('user_logins', 'user_login_rejects');
CREATE OR REPLACE TRIGGER login_ingest_flush
    AFTER INSERT ON login_ingest
    FOR EACH STATEMENT EXECUTE FUNCTION ingest_flush();
