-- The ingest relation. A loader does exactly
--     COPY login_ingest (message_id, sent_at, body) FROM STDIN
-- and pg_mask's triggers validate, flatten and mask each body into user_logins or
-- user_login_rejects. Nothing is stored in the view; plaintext never reaches a relation.
-- SELECT * FROM ingest_stats() in the same transaction says what the COPY did.
--
-- database_error: a loader that found the database refuses a message (a constraint, a
-- partition bound) sends it again with this set to the SQLSTATE and the constraint, column or
-- table name, e.g. '23514 constraint "user_logins_locale_check"', and it is stored as a
-- database_error reject instead (README, "Poison messages").
--
-- The trigger names its tables relative to the view's own schema, never through the loader's
-- search_path, and writes them as the view's owner: a loader needs only INSERT on the view.
CREATE OR REPLACE VIEW login_ingest AS
    SELECT NULL::text AS message_id, NULL::timestamptz AS sent_at, NULL::text AS body,
           NULL::text AS database_error
    WHERE false;

CREATE OR REPLACE TRIGGER login_ingest_rows
    INSTEAD OF INSERT ON login_ingest
    FOR EACH ROW EXECUTE FUNCTION ingest_login_events('user_logins', 'user_login_rejects');
CREATE OR REPLACE TRIGGER login_ingest_flush
    AFTER INSERT ON login_ingest
    FOR EACH STATEMENT EXECUTE FUNCTION ingest_flush();
-- Under session_replication_role = replica these triggers do not fire (and a view's triggers
-- cannot be made ENABLE ALWAYS), so pg_mask refuses a load into the view then, with an error
-- that says so, instead of letting it "succeed" with nothing stored.
