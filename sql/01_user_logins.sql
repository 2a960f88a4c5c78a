-- pg_mask application schema: the login events table, its rejects, the ingest view, the
-- duplicates view and the app_version helpers. Idempotent: run it as often as you like
-- (scripts/pg.sh schema, or psql -f for each file in order).
CREATE EXTENSION IF NOT EXISTS pg_mask;

-- The reference table, column for column, plus message_id: the SQS MessageId, unique, which is
-- what makes a redelivered message a no-op.
CREATE TABLE IF NOT EXISTS user_logins(
    user_id             varchar(128),
    device_type         varchar(32),
    masked_ip           varchar(256),
    masked_device_id    varchar(256),
    locale              varchar(32),
    app_version         integer,
    create_date         date
);
-- COLLATE "C": message ids are opaque, so compare bytes (memcmp) rather than by locale rules
-- in the unique index every load probes.
ALTER TABLE user_logins ADD COLUMN IF NOT EXISTS message_id text COLLATE "C";
CREATE UNIQUE INDEX IF NOT EXISTS user_logins_message_id_key ON user_logins (message_id);
COMMENT ON COLUMN user_logins.app_version IS
    'major*1000000 + minor*1000 + patch ("2.3.0" = 2003000, "0.96" = 96000); app_version_text() inverts it';
COMMENT ON COLUMN user_logins.create_date IS 'UTC date of the SQS SentTimestamp (load date when absent)';

-- Masking on every write path, whoever writes: INSERT, COPY, UPDATE, INSERT ... SELECT.
-- ENABLE ALWAYS: it fires under session_replication_role = replica too (logical replication's
-- apply, some bulk loaders), where an ordinary trigger would let plaintext through.
CREATE OR REPLACE TRIGGER user_logins_mask
    BEFORE INSERT OR UPDATE ON user_logins
    FOR EACH ROW EXECUTE FUNCTION mask_columns('masked_ip', 'masked_device_id');
ALTER TABLE user_logins ENABLE ALWAYS TRIGGER user_logins_mask;

-- Every message that cannot become a row, kept whole but masked.
CREATE TABLE IF NOT EXISTS user_login_rejects(
    message_id   text COLLATE "C" PRIMARY KEY,
    sent_at      timestamptz,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    reason       text NOT NULL,   -- machine-readable: missing_field, invalid_json, database_error, ...
    detail       text NOT NULL,   -- which field, what was wrong; never the value
    payload      text             -- the whole body as a pg_mask token: unmask_pii(payload)
);
CREATE OR REPLACE TRIGGER user_login_rejects_mask
    BEFORE INSERT OR UPDATE ON user_login_rejects
    FOR EACH ROW EXECUTE FUNCTION mask_columns('payload');
ALTER TABLE user_login_rejects ENABLE ALWAYS TRIGGER user_login_rejects_mask;
